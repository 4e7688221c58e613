"""What a worker does with one job: fetch, decode, [separate], detect, score, write.

Each stage reports progress through ``report(stage, fraction)``; a report that returns
False means the job was cancelled (or handed to another worker) and the pipeline stops.
Each stage is also a span (``batch.tracing``), a child of the span current when it starts.
The same ``finalize`` turns a live session's recording into scores.
"""
from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from batch import tracing
from batch.ingest import download
from batch.score import make_score, write_outputs
from batch.separate import decide_separation, separate
from models.audio import AudioError, read_audio, resample
from models.detector import Detector, hit_order
from models.peaks import Hit
from models.result import build_result
from models.separation import Separation

Report = Callable[[str, float], bool]
DETECT_CHUNK_SECONDS = 30.0


class Cancelled(Exception):
    """The job was cancelled, or another worker now owns it: stop without writing results."""


class StageClock:
    """Times stages and forwards progress; raises ``Cancelled`` when a report is refused.

    Used as a context manager, so the span of a stage that raised ends too (with the error).
    """

    def __init__(self, report: Report, record: Callable[[str, float], None] | None = None) -> None:
        self.report, self.record = report, record
        self.stage, self.started = "", 0.0
        self._span: tracing.Span | None = None
        self._token: object = None

    def __enter__(self) -> "StageClock":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if isinstance(error, Cancelled) and self._span is not None:
            self._span.set_attribute("drumscribe.cancelled", True)
        elif error is not None and self._span is not None:
            self._span.record_exception(error)
            tracing.fail(self._span, f"{type(error).__name__}: {error}")
        self._end_span()

    def enter(self, stage: str) -> None:
        self.close()
        self.stage, self.started = stage, time.perf_counter()
        self._span = tracing.tracer.start_span(stage, attributes={"drumscribe.stage": stage})
        self._token = tracing.context.attach(tracing.trace.set_span_in_context(self._span))
        self.at(0.0)

    def at(self, fraction: float) -> None:
        if not self.report(self.stage, round(float(fraction), 3)):
            raise Cancelled(self.stage)

    def close(self) -> None:
        try:
            if self.stage and self.record:
                self.record(self.stage, time.perf_counter() - self.started)
        finally:
            self.stage = ""
            self._end_span()

    def _end_span(self) -> None:
        if self._span is not None:
            tracing.context.detach(self._token)
            self._span.end()
            self._span = None


def detect(detector: Detector, audio: np.ndarray, progress: Callable[[float], None]) -> list[Hit]:
    """``detector.transcribe`` in chunks, so progress can be shown (streaming equals offline)."""
    stream = detector.stream()
    step = int(DETECT_CHUNK_SECONDS * detector.card.sample_rate)
    hits: list[Hit] = []
    for start in range(0, len(audio), step):
        hits += stream.push(audio[start:start + step])
        progress(min(1.0, (start + step) / max(1, len(audio))))
    hits += stream.flush()
    return sorted(hits, key=hit_order)


def finalize(detector: Detector, source: np.ndarray, source_rate: int, folder: Path, title: str,
             clock: StageClock, hits: list[Hit] | None = None,
             detect_from: tuple[np.ndarray, int] | None = None, extra: dict | None = None) -> dict:
    """Detect (unless ``hits`` are given) in ``detect_from`` (the separated drums and their rate;
    default the source), score and write every output into ``folder``."""
    if hits is None:
        clock.enter("detect")
        audio, rate = detect_from or (source, source_rate)
        hits = detect(detector, resample(audio, rate, detector.card.sample_rate), clock.at)
    clock.enter("score")
    duration = len(source) / source_rate
    score = make_score(hits, duration, title=title)
    result = build_result(hits, duration, source_rate, detector.card, score.grid.bpm,
                          score.grid.time_signature, title=title, **(extra or {}))
    clock.at(0.3)
    with tracing.tracer.start_as_current_span("render"):  # MusicXML, PDF, MIDI and JSON
        write_outputs(score, hits, folder, result)
    clock.close()
    return result


def run_job(detector: Detector, source: dict, options: dict, folder: Path, clock: StageClock,
            max_bytes: int, max_seconds: float, separation: Separation | None = None) -> dict:
    """The whole batch pipeline for one job; returns the result JSON.

    ``SeparationUnavailable`` when the job asks for ``separate=on`` and ``separation`` has none.
    """
    if source["kind"] == "url":
        clock.enter("download")
        downloads = folder / "download"
        shutil.rmtree(downloads, ignore_errors=True)  # a retried attempt starts clean
        downloads.mkdir(parents=True)
        path = download(source["url"], downloads, max_bytes, max_seconds)
    else:
        path = folder / source["file"]
    clock.enter("decode")
    try:
        audio, rate = read_audio(path, max_seconds=max_seconds)
    except AudioError as error:  # our file names (input.mp3, recording.wav) mean nothing to users
        reason = str(error).removeprefix(f"{path.name}: ")
        raise AudioError(error.code, f"the recording cannot be used: {reason}") from None
    title = options.get("title") or source.get("name") or "Drum score"
    decision = decide_separation(options.get("separate", "off"), separation, audio, rate)
    drums = None
    if decision["applied"]:
        clock.enter("separate")
        drums = separate(separation, audio, rate, clock.at)
    return finalize(detector, audio, rate, folder, title, clock, detect_from=drums,
                    extra={"separation": decision})
