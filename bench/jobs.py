"""Batch job throughput with one and with two in-process workers (embedded Redis).

Submits ``--jobs`` uploads of a ``--seconds``-long drum recording at once through the HTTP
API and times until the last one has its MusicXML, PDF, MIDI and JSON; repeats ``--runs``
times and reports medians. Usage: ``python bench/jobs.py [--jobs 8] [--seconds 60] [--runs 3]``.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from starlette.testclient import TestClient

from batch.config import Settings
from models.synthetic import rock_beat
from web.app import create_app


def make_recording(seconds: float, folder: Path) -> Path:
    loop, _ = rock_beat(bars=8, bpm=100, rate=44100)
    audio = np.tile(loop, int(np.ceil(seconds * 44100 / len(loop))))[: int(seconds * 44100)]
    path = folder / "bench.flac"
    sf.write(path, audio, 44100)
    return path


def run_once(workers: int, jobs: int, recording: Path, folder: Path) -> tuple[float, list[float]]:
    settings = dataclasses.replace(Settings(), data_dir=folder, workers=workers)
    with TestClient(create_app(settings)) as client:
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
        return total, [done[j] - submitted[j] for j in submitted]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        recording = make_recording(args.seconds, Path(tmp))
        print(f"{args.jobs} jobs of {args.seconds:g} s audio each, median of {args.runs} runs")
        print("| workers | jobs/min | × real time (all jobs) | median job latency s |")
        print("| --- | --- | --- | --- |")
        for workers in (1, 2):
            totals, latencies = [], []
            for run in range(args.runs):
                total, each = run_once(workers, args.jobs, recording, Path(tmp) / f"w{workers}-{run}")
                totals.append(total)
                latencies.append(statistics.median(each))
            total = statistics.median(totals)
            print(f"| {workers} | {60 * args.jobs / total:.1f} | {args.jobs * args.seconds / total:.0f}× "
                  f"| {statistics.median(latencies):.2f} |")


if __name__ == "__main__":
    main()
