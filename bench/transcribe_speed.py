"""× real time and peak memory of whole-file transcription, on one core and on two, and the
wall time of a whole ``drumscribe transcribe FILE -o out.json`` process, start-up included.

Each measurement runs in a fresh process pinned to the cores (``taskset``) with
onnxruntime limited to as many threads; reported figures are medians of the runs. The
whole-process runs follow one unmeasured warm-up (so the OS file cache is warm) and also
report their user+sys CPU time, which a busy machine disturbs less than wall time.
Usage: ``python bench/transcribe_speed.py [--seconds 120] [--process-seconds 30] [--runs 5]``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import numpy as np, soundfile as sf
from models.audio import load_audio
from models.detector import Detector
from models.runtime import HitModel
path, threads = sys.argv[1], int(sys.argv[2])
detector = Detector(HitModel(threads=threads))
start = time.perf_counter()
audio = load_audio(path, detector.card.sample_rate)
hits = detector.transcribe(audio)
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "audio_seconds": len(audio) / detector.card.sample_rate,
                  "hits": len(hits), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def drumscribe() -> list[str]:
    """The installed ``drumscribe`` command beside this Python, else the module it runs."""
    script = Path(sys.executable).parent / "drumscribe"
    return [str(script)] if script.exists() else [sys.executable, "-m", "web.cli"]


def make_input(seconds: float, folder: Path) -> Path:
    """A drum loop with noise, long enough to measure, written as 44.1 kHz WAV."""
    import numpy as np
    import soundfile as sf

    from models.audio import resample
    from models.features import SAMPLE_RATE
    from models.synthetic import rock_beat

    loop, _ = rock_beat(bars=8, bpm=100)
    repeats = int(np.ceil(seconds * SAMPLE_RATE / len(loop)))
    audio = np.tile(loop, repeats)[: int(seconds * SAMPLE_RATE)]
    audio += np.random.default_rng(0).standard_normal(len(audio)).astype(np.float32) * 0.01
    path = folder / f"bench-{seconds:g}s.wav"
    sf.write(path, resample(audio, SAMPLE_RATE, 44100), 44100)
    return path


def measure(path: Path, cores: str, threads: int) -> dict:
    out = subprocess.run(["taskset", "-c", cores, sys.executable, "-c", CHILD, str(path), str(threads)],
                         check=True, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_process(path: Path, out: Path) -> dict:
    """Wall and user+sys CPU seconds of one ``drumscribe transcribe`` process on core 0."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(["taskset", "-c", "0", *drumscribe(), "transcribe", str(path), "-o", str(out)],
                   check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--process-seconds", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = make_input(args.seconds, Path(tmp))
        print(f"input: {args.seconds:.0f} s WAV at 44.1 kHz (decode + resample + features + network + peaks)")
        print(f"{'cores':>5} {'median s':>9} {'x real time':>12} {'peak RSS MB':>12}")
        for cores, threads in (("0", 1), ("0,1", 2)):
            runs = [measure(path, cores, threads) for _ in range(args.runs)]
            median = statistics.median(run["seconds"] for run in runs)
            rss = statistics.median(run["peak_rss_mb"] for run in runs)
            print(f"{threads:>5} {median:>9.3f} {runs[0]['audio_seconds'] / median:>12.0f} {rss:>12.0f}")
        path = make_input(args.process_seconds, Path(tmp))
        measure_process(path, Path(tmp) / "out.json")  # warm-up: the OS file cache, not measured
        runs = [measure_process(path, Path(tmp) / "out.json") for _ in range(args.runs)]
        print(f"\nwhole process, one core: taskset -c 0 drumscribe transcribe {args.process_seconds:.0f}s.wav "
              f"-o out.json: median {statistics.median(r['wall'] for r in runs):.3f} s wall, "
              f"{statistics.median(r['cpu'] for r in runs):.3f} s user+sys "
              f"(runs: {', '.join(format(r['wall'], '.2f') for r in runs)})")


if __name__ == "__main__":
    main()
