"""The trace of one batch job: its spans and their durations, from the SDK's in-memory exporter.

The app runs in this process (embedded Redis in a temporary folder, one in-process worker);
one upload of a synthetic rock beat goes through ``POST /api/v1/jobs``, the Redis Stream and the
worker's stages. Prints one row per span of the job's trace, indented under its parent:

    .venv/bin/python bench/trace_job.py --seconds 60

With ``--stages decode,score separate,detect`` the job passes in-process workers of those stages
instead (``drumscribe worker --stages``), one ``job`` span per hop.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DRUMSCRIBE_ALLOWED_HOSTS", "testserver")  # the test client's Host


def run_job(seconds: float, folder: Path, exporter: InMemorySpanExporter,
            stage_sets: list[str]) -> tuple[str, list[ReadableSpan]]:
    import threading

    from starlette.testclient import TestClient

    from batch.config import Settings
    from batch.jobs import JobStore
    from batch.stages import parse_stages
    from batch.worker import Worker
    from models.synthetic import rock_beat
    from web.app import create_app

    bars = max(1, round(seconds / 2.4))  # a bar of 4/4 at 100 bpm is 2.4 s
    audio, _ = rock_beat(bars=bars, bpm=100, rate=44100)
    wav = folder / "beat.wav"
    sf.write(wav, np.stack([audio, audio], axis=1), 44100)
    settings = dataclasses.replace(Settings(), data_dir=folder / "data", workers=0 if stage_sets else 1)
    with TestClient(create_app(settings)) as client:
        workers = [Worker(JobStore(client.app.state.store.redis, settings), client.app.state.detector, settings,
                          stages=parse_stages(stages)) for stages in stage_sets]
        threads = [threading.Thread(target=worker.run, daemon=True) for worker in workers]
        for thread in threads:
            thread.start()
        with wav.open("rb") as f:
            job_id = client.post("/api/v1/jobs", files={"file": (wav.name, f, "audio/wav")}).json()["id"]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            done = [s for s in exporter.get_finished_spans()  # the span of the hop that ended the job
                    if s.name == "job" and s.attributes.get("drumscribe.job_id") == job_id
                    and "drumscribe.status" in s.attributes]
            if done:
                break
            time.sleep(0.05)
        else:
            raise SystemExit(f"job {job_id} did not finish: {client.get(f'/api/v1/jobs/{job_id}').json()}")
        status = client.get(f"/api/v1/jobs/{job_id}").json()["status"]
        for worker in workers:
            worker.stop.set()
        for thread in threads:
            thread.join(timeout=30)
    trace_id = done[0].context.trace_id
    return status, [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]


def table(spans: list[ReadableSpan]) -> list[str]:
    """Rows of the trace, depth first in start order: name (indented under its parent), kind,
    start since the trace's first span and duration, in ms."""
    start = min(s.start_time for s in spans)
    by_parent: dict[int | None, list[ReadableSpan]] = {}
    for span in spans:
        by_parent.setdefault(span.parent.span_id if span.parent else None, []).append(span)
    rows = [f"{'span':<28} {'kind':<9} {'start ms':>9} {'duration ms':>12}"]

    def walk(parent: int | None, depth: int) -> None:
        for span in sorted(by_parent.get(parent, []), key=lambda s: s.start_time):
            rows.append(f"{'  ' * depth + span.name:<28} {span.kind.name.lower():<9} "
                        f"{(span.start_time - start) / 1e6:>9.1f} {(span.end_time - span.start_time) / 1e6:>12.1f}")
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the recording (default %(default)s)")
    parser.add_argument("--stages", nargs="*", default=[], metavar="STAGE,...",
                        help="one in-process worker per stage set, e.g. decode,score separate,detect")
    args = parser.parse_args()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    with tempfile.TemporaryDirectory() as folder:
        status, spans = run_job(args.seconds, Path(folder), exporter, args.stages)
    print(f"one job of {args.seconds:g} s of audio, {status}; trace {trace.format_trace_id(spans[0].context.trace_id)}, "
          f"{len(spans)} spans")
    print("\n".join(table(spans)))


if __name__ == "__main__":
    main()
