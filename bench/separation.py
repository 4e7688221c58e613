"""× real time of drum separation: whole files (batch windows) and live windows, on CPU or GPU.

Models measured:
- ``tiny``: the ~6 k-parameter HTDemucs the tests build (1 s segment): the cost of our own code;
- ``htdemucs-shape``: an untrained HTDemucs with htdemucs' architecture (42 M parameters, 7.8 s
  segment): the same arithmetic as the real model, so the same speed, without its weights;
- ``real``: the weights ``models.separation.load_separation`` finds, when there are any.

Offline = ``Separator.separate`` over ``--seconds`` of a synthetic band (the model's own window,
overlap 0.25). Live = a ``StreamingSeparator`` with the live window (1 s, overlap 0.25) fed 20 ms
pieces, timed over ``--live-windows`` windows; a live session keeps up only above 1×. Each is
measured after one warm-up window. Usage:
``python bench/separation.py [--seconds 30] [--live-windows 6] [--threads 2] [--models tiny,htdemucs-shape,real]``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.separation import LIVE_OVERLAP, LIVE_WINDOW_SECONDS, Separator, load_separation  # noqa: E402
from models.synthetic import rock_beat  # noqa: E402

SOURCES = ["drums", "bass", "other", "vocals"]


def band(seconds: float, rate: int = 44100) -> np.ndarray:
    bars = int(seconds / 2.4) + 1
    drums, _ = rock_beat(bars=bars, bpm=100, rate=rate)
    drums = drums[:int(seconds * rate)]
    t = np.arange(len(drums)) / rate
    bass = 0.3 * np.sin(2 * np.pi * 110 * t) * (1 + np.sin(2 * np.pi * 0.5 * t)) / 2
    return (drums + bass).astype(np.float32)


def build(kind: str, device: str) -> Separator | None:
    from demucs.htdemucs import HTDemucs
    import torch

    torch.manual_seed(0)
    if kind == "tiny":
        model = HTDemucs(SOURCES, channels=4, depth=2, nfft=512, segment=1, dconv_comp=2, t_layers=0)
    elif kind == "htdemucs-shape":
        model = HTDemucs(SOURCES, segment=Fraction(39, 5), bottom_channels=512, dconv_mode=3)
    elif kind == "real":
        separation = load_separation(device=device)
        if not separation.available:
            print(f"real: skipped ({separation.reason})", file=sys.stderr)
            return None
        return separation.separator
    else:
        raise SystemExit(f"unknown model {kind}")
    return Separator(model.eval(), kind, device=device)


def measure(separator: Separator, seconds: float, live_windows: int) -> dict:
    rate = separator.samplerate
    audio = band(seconds, rate)
    warm = separator.stream()
    warm.push(audio[:int(warm.segment)])  # one window: allocations, kernels, caches

    start = time.perf_counter()
    separator.separate(audio)
    offline = time.perf_counter() - start

    stream = separator.stream(LIVE_WINDOW_SECONDS, LIVE_OVERLAP)
    piece = int(0.02 * rate)
    needed = stream.segment + (live_windows - 1) * stream.stride
    live_audio = band(needed / rate + 0.1, rate)
    start, per_window, done = time.perf_counter(), [], 0
    for i in range(0, len(live_audio), piece):
        before = time.perf_counter()
        stream.push(live_audio[i:i + piece])
        if stream.windows_run > done:
            per_window.append(time.perf_counter() - before)
            done = stream.windows_run
        if done >= live_windows:
            break
    live = time.perf_counter() - start
    advanced = done * stream.stride / rate  # each window makes one stride of audio final
    return {
        "model": separator.name, "device": separator.device, "half": separator.half,
        "parameters_m": round(sum(p.numel() for m, _ in separator.members for p in m.parameters()) / 1e6, 3),
        "offline_seconds": seconds, "offline_x_realtime": round(seconds / offline, 2),
        "live_window_s": LIVE_WINDOW_SECONDS, "live_overlap": LIVE_OVERLAP, "live_windows": done,
        "live_x_realtime": round(advanced / live, 2),
        "live_ms_per_window": round(1000 * float(np.median(per_window)), 1),
        "live_added_lookahead_ms": round(1000 * stream.lookahead_samples / rate),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="offline audio length")
    parser.add_argument("--live-windows", type=int, default=6, help="live windows to time")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when torch sees one)")
    parser.add_argument("--models", default="tiny,htdemucs-shape,real")
    args = parser.parse_args()
    import torch

    from models.separation import pick_device

    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    print(f"torch {torch.__version__}, device {device}, {args.threads} CPU threads", file=sys.stderr)
    for kind in args.models.split(","):
        separator = build(kind.strip(), device)
        if separator is not None:
            print(json.dumps(measure(separator, args.seconds, args.live_windows)), flush=True)


if __name__ == "__main__":
    main()
