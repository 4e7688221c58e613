"""Batch job throughput with 1, 2 and 4 worker processes (``drumscribe worker``, not threads).

The API runs in this process on an embedded Redis, without workers of its own; N ``drumscribe
worker`` processes share its Redis and data folder, as a deployment's workers would. Once every
worker reads the queue, ``--jobs`` uploads of a ``--seconds``-long drum recording are submitted
at once through the HTTP API and timed until the last has its MusicXML, PDF, MIDI and JSON.
A row gives medians over ``--runs`` runs: jobs per minute (all jobs over the time from the first
submission to the last job's end) and the median job's latency (its submission to its success).
Workers start before the clock does. ``--split`` adds rows where half the processes take
``decode,score`` and half ``separate,detect`` (docker-compose.yml's CPU and GPU pools, here all on
this machine's CPU), so each job is handed on twice.

Usage: ``python bench/jobs.py [--processes 1 2 4] [--jobs 8] [--seconds 60] [--runs 3] [--split]``.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from starlette.testclient import TestClient

from batch.config import Settings
from batch.connection import url_of
from models.synthetic import rock_beat
from web.app import create_app

POOLS = ("decode,score", "separate,detect")


def make_recording(seconds: float, folder: Path) -> Path:
    loop, _ = rock_beat(bars=8, bpm=100, rate=44100)
    audio = np.tile(loop, int(np.ceil(seconds * 44100 / len(loop))))[: int(seconds * 44100)]
    path = folder / "bench.flac"
    sf.write(path, audio, 44100)
    return path


def start_workers(stage_sets: list[str | None], redis_url: str, data: Path) -> list[subprocess.Popen]:
    """``drumscribe worker`` processes, one per entry (None: every stage)."""
    env = {**os.environ, "REDIS_URL": redis_url, "DRUMSCRIBE_DATA": str(data), "DRUMSCRIBE_STORAGE": "local"}
    return [subprocess.Popen([sys.executable, "-m", "web.cli", "worker", *(["--stages", stages] if stages else [])],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for stages in stage_sets]


def run_once(stage_sets: list[str | None], jobs: int, recording: Path, folder: Path) -> tuple[float, list[float]]:
    settings = dataclasses.replace(Settings(), data_dir=folder, workers=0)
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        store = client.app.state.store
        workers = start_workers(stage_sets, url_of(store.redis), folder)
        try:
            deadline = time.monotonic() + 300
            while len(store.live_workers()) < len(workers):  # loaded and reading the queue
                if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                    raise RuntimeError("the workers did not start")
                time.sleep(0.2)
            started = time.perf_counter()
            submitted = {}
            for _ in range(jobs):
                with recording.open("rb") as f:
                    job = client.post("/api/v1/jobs", files={"file": (recording.name, f, "audio/flac")}).json()
                submitted[job["id"]] = time.perf_counter()
            done: dict[str, float] = {}
            while len(done) < jobs:
                for job_id in submitted.keys() - done.keys():
                    status = client.get(f"/api/v1/jobs/{job_id}").json()["status"]
                    if status in ("succeeded", "failed"):
                        assert status == "succeeded", client.get(f"/api/v1/jobs/{job_id}").json()
                        done[job_id] = time.perf_counter()
                time.sleep(0.05)
            total = time.perf_counter() - started
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(timeout=60)
        return total, [done[j] - submitted[j] for j in submitted]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--split", action="store_true", help="also half decode,score and half separate,detect")
    args = parser.parse_args()
    configurations: list[tuple[str, list[str | None]]] = [("all", [None] * n) for n in args.processes]
    if args.split:
        configurations += [(" + ".join(POOLS), [POOLS[i % 2] for i in range(n)]) for n in args.processes if n >= 2]
    with tempfile.TemporaryDirectory() as tmp:
        recording = make_recording(args.seconds, Path(tmp))
        print(f"{args.jobs} jobs of {args.seconds:g} s audio each, median of {args.runs} runs; "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
        print("| worker processes | stages | jobs/min | × real time (all jobs) | median job latency s |")
        print("| --- | --- | --- | --- | --- |")
        for index, (name, stage_sets) in enumerate(configurations):
            totals, latencies = [], []
            for run in range(args.runs):
                total, each = run_once(stage_sets, args.jobs, recording, Path(tmp) / f"{index}-{run}")
                totals.append(total)
                latencies.append(statistics.median(each))
            total = statistics.median(totals)
            print(f"| {len(stage_sets)} | {name} | {60 * args.jobs / total:.1f} "
                  f"| {args.jobs * args.seconds / total:.0f}× | {statistics.median(latencies):.2f} |", flush=True)
        print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
