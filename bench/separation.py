"""× real time and live session capacity of drum separation, on CPU or GPU.

Models measured:
- ``tiny``: the ~6 k-parameter HTDemucs the tests build (1 s segment): the cost of our own code;
- ``htdemucs-shape``: an untrained HTDemucs with htdemucs' architecture (42 M parameters, 7.8 s
  segment): the same arithmetic as the real model, so the same speed, without its weights;
- ``real``: the weights ``models.separation.load_separation`` finds, when there are any.

Offline = ``Separator.separate`` over ``--seconds`` of a synthetic band (the model's own window,
overlap 0.25). Live = a ``StreamingSeparator`` with the live window (1 s, overlap 0.25) fed 20 ms
pieces, timed over ``--live-windows`` windows; a live session keeps up only above 1×. Each is
measured after one warm-up window.

Capacity (``--sessions 1,2,4,8``) = N live sessions through the real gateway (``Gateway.open_session``
and ``runner.audio``, everything but the WebSocket), each fed ``--seconds`` of a 48 kHz beat in 20 ms
frames on a real-time schedule, once without separation and once with it per model; separated
sessions share one ``SeparationBatcher``. A window's latency is from the arrival (due time) of the
frame that completed it to the return of that frame's processing: separation, queueing behind other
sessions' windows, the detector. A session keeps real time when no window's latency exceeds the
window stride (0.75 s): otherwise the next window queues behind it and the delay grows without end.
× real time = audio separated per second the separation thread was busy (all sessions together).
Usage: ``python bench/separation.py [--seconds 30] [--live-windows 6] [--threads 2]
[--models tiny,htdemucs-shape,real] [--sessions 1,2,4,8]``.
"""
from __future__ import annotations

import argparse
import asyncio
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


LIVE_RATE, FRAME_SECONDS = 48000, 0.02


class Timed:
    """``Separator.drums_batch`` with the seconds it kept the separation thread busy."""

    def __init__(self, separator: Separator) -> None:
        self.call, self.busy = separator.drums_batch, 0.0
        separator.drums_batch = self  # type: ignore[method-assign]

    def __call__(self, windows):
        start = time.perf_counter()
        try:
            return self.call(windows)
        finally:
            self.busy += time.perf_counter() - start


async def paced(gateway, n: int, audio: np.ndarray, separate: bool) -> list[list[float]]:
    """N sessions fed ``audio`` in real time; per session the latency of each frame that completed a
    separation window (each frame, without separation)."""
    frame = int(LIVE_RATE * FRAME_SECONDS)
    start_at = time.perf_counter() + 0.2
    offsets = np.linspace(0, FRAME_SECONDS, n, endpoint=False)  # sessions do not send in lockstep
    start = {"type": "start", "sample_rate": LIVE_RATE, "channels": 1, "encoding": "f32le", "separate": separate}

    async def session(offset: float) -> list[float]:
        runner = gateway.open_session(start, lambda message: None)
        windows = runner.session.input.separator if separate else None
        latencies = []
        for begin in range(0, len(audio), frame):
            due = start_at + offset + (begin + frame) / LIVE_RATE
            if due > time.perf_counter():
                await asyncio.sleep(due - time.perf_counter())
            before = windows.windows_run if windows else 0
            await runner.audio(audio[begin:begin + frame].tobytes())
            if windows is None or windows.windows_run > before:
                latencies.append(time.perf_counter() - due)
        await runner.drain()
        return latencies

    return await asyncio.gather(*(session(o) for o in offsets))


def capacity(detector, separator: Separator | None, sessions: list[int], seconds: float) -> None:
    """Print a row per N: window latency percentiles, sessions that kept real time, × real time."""
    from stream.config import LiveSettings
    from stream.gateway import Gateway

    audio = band(seconds, LIVE_RATE)
    timed = None
    if separator is not None:
        warm = separator.stream(LIVE_WINDOW_SECONDS, LIVE_OVERLAP)
        warm.push(audio[:warm.segment])  # one window first: allocations, kernels, caches
        timed = Timed(separator)
    stride = (1 - LIVE_OVERLAP) * LIVE_WINDOW_SECONDS
    for n in sessions:
        gateway = Gateway(detector, LiveSettings(notation_every=0, max_sessions=max(64, n)), None,
                          separator=separator)
        if timed is not None:
            timed.busy = 0.0
        results = asyncio.run(paced(gateway, n, audio, separator is not None))
        gateway.batcher.close()
        latencies = np.concatenate(results) * 1000
        kept = sum(1 for r in results if max(r) <= stride)
        row = {"model": separator.name if separator else "none (detector only)", "sessions": n,
               "window_ms_p50": round(float(np.percentile(latencies, 50)), 1),
               "window_ms_p95": round(float(np.percentile(latencies, 95)), 1),
               "window_ms_max": round(float(latencies.max()), 1), "kept_real_time": f"{kept}/{n}"}
        if timed is not None:
            batcher = gateway.separation
            row.update(windows=batcher.items, batches=batcher.batches, largest_batch=batcher.largest,
                       x_realtime=round(n * seconds / timed.busy, 2))
            batcher.close()
        print(json.dumps(row), flush=True)
        if kept < n:
            break  # more sessions only fall further behind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="offline audio length; with --sessions, each session's")
    parser.add_argument("--live-windows", type=int, default=6, help="live windows to time")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when torch sees one)")
    parser.add_argument("--models", default="tiny,htdemucs-shape,real")
    parser.add_argument("--sessions", default="", help="capacity instead: N live sessions, e.g. 1,2,4,8 "
                        "(--seconds of audio each)")
    args = parser.parse_args()
    import torch

    from models.separation import pick_device

    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    print(f"torch {torch.__version__}, device {device}, {args.threads} CPU threads", file=sys.stderr)
    sessions = [int(n) for n in args.sessions.split(",") if n]
    if sessions:
        from models.detector import Detector

        detector = Detector()
        capacity(detector, None, sessions, args.seconds)
    for kind in args.models.split(","):
        separator = build(kind.strip(), device)
        if separator is None:
            continue
        if sessions:
            capacity(detector, separator, sessions, args.seconds)
        else:
            print(json.dumps(measure(separator, args.seconds, args.live_windows)), flush=True)


if __name__ == "__main__":
    main()
