"""What a worker does with one job: fetch, decode, [separate], detect, score, write.

Each stage reports progress through ``report(stage, fraction)``; a report that returns
False means the job was cancelled (or handed to another worker) and the pipeline stops.
Each stage is also a span (``batch.tracing``), a child of the span current when it starts.
A live session's recording is queued as a job and goes through the same stages.

``run_stages`` runs only the stages a worker takes (``batch.stages``) and returns what the next
stage needs (``Carry``), which goes to the next worker as one file of the job (``dump``/``load``).
"""
from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from batch import tracing
from batch.ingest import download
from batch.score import make_score, write_outputs
from batch.separate import decide_separation, separate
from batch.stages import STAGES, following
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


@dataclass(frozen=True)
class Carry:
    """What one stage hands the next. Between workers it is a file of the job (``dump``, ``load``)."""

    title: str
    duration: float                  # of the source, in seconds
    rate: int                        # the source's sample rate
    audio: np.ndarray | None = None  # what detect reads: the source, or its separated drums
    audio_rate: int = 0
    decision: dict | None = None     # the result's ``separation``
    hits: list[Hit] | None = None
    result: dict | None = None       # the result JSON, once scored


def handoff_file(stage: str) -> str:
    """The job's file that carries it into ``stage`` on another worker."""
    return f"handoff-{stage}.npz"


HANDOFF_FILES = tuple(handoff_file(stage) for stage in STAGES[1:])


def dump(carry: Carry, path: Path) -> None:
    """Write ``carry`` as one .npz: the audio as float32 samples, the rest as JSON (exact floats)."""
    meta = {"title": carry.title, "duration": carry.duration, "rate": carry.rate, "audio_rate": carry.audio_rate,
            "decision": carry.decision, "hits": None if carry.hits is None else [asdict(h) for h in carry.hits]}
    arrays = {"meta": np.array(json.dumps(meta))}
    if carry.audio is not None:
        arrays["audio"] = np.asarray(carry.audio, dtype=np.float32)
    with path.open("wb") as file:
        np.savez(file, **arrays)


def load(path: Path) -> Carry:
    with np.load(path, allow_pickle=False) as arrays:
        meta = json.loads(str(arrays["meta"]))
        audio = arrays["audio"] if "audio" in arrays else None
    hits = None if meta["hits"] is None else [Hit(**hit) for hit in meta["hits"]]
    return Carry(meta["title"], meta["duration"], meta["rate"], audio, meta["audio_rate"], meta["decision"], hits)


@dataclass(frozen=True)
class Work:
    """What a job's stages use besides what they hand each other."""

    detector: Detector
    source: dict
    options: dict
    folder: Path
    max_bytes: int
    max_seconds: float
    separation: Separation | None = None


def _decode(work: Work, clock: StageClock) -> Carry:
    source = work.source
    if source["kind"] == "url":
        clock.enter("download")
        downloads = work.folder / "download"
        shutil.rmtree(downloads, ignore_errors=True)  # a retried attempt starts clean
        downloads.mkdir(parents=True)
        path = download(source["url"], downloads, work.max_bytes, work.max_seconds)
    else:
        path = work.folder / source["file"]
    clock.enter("decode")
    try:
        audio, rate = read_audio(path, max_seconds=work.max_seconds)
    except AudioError as error:  # our file names (input.mp3, recording.wav) mean nothing to users
        reason = str(error).removeprefix(f"{path.name}: ")
        raise AudioError(error.code, f"the recording cannot be used: {reason}") from None
    title = work.options.get("title") or source.get("name") or "Drum score"
    return Carry(title, len(audio) / rate, rate, audio, rate)


def _separate(carry: Carry, work: Work, clock: StageClock) -> Carry:
    """Decided where separation is loaded: a worker that takes this stage (a GPU's) has the weights."""
    decision = decide_separation(work.options.get("separate", "off"), work.separation, carry.audio, carry.audio_rate)
    if not decision["applied"]:
        return replace(carry, decision=decision)
    clock.enter("separate")
    drums, rate = separate(work.separation, carry.audio, carry.audio_rate, clock.at)
    return replace(carry, audio=drums, audio_rate=rate, decision=decision)


def _detect(carry: Carry, detector: Detector, clock: StageClock) -> Carry:
    clock.enter("detect")
    hits = detect(detector, resample(carry.audio, carry.audio_rate, detector.card.sample_rate), clock.at)
    return replace(carry, hits=hits, audio=None)  # the score needs no audio: a handoff stays small


def _score(carry: Carry, detector: Detector, folder: Path, clock: StageClock, extra: dict | None) -> dict:
    clock.enter("score")
    score = make_score(carry.hits, carry.duration, title=carry.title)
    result = build_result(carry.hits, carry.duration, carry.rate, detector.card, score.grid.bpm,
                          score.grid.time_signature, title=carry.title, **(extra or {}))
    clock.at(0.3)
    with tracing.tracer.start_as_current_span("render"):  # MusicXML, PDF, MIDI and JSON
        write_outputs(score, carry.hits, folder, result)
    clock.close()
    return result


def run_stages(first: str, stages: Collection[str], carry: Carry | None, work: Work,
               clock: StageClock) -> tuple[str | None, Carry]:
    """Run the job from stage ``first`` for as long as its stages are in ``stages``. Returns the
    next stage, for a worker that takes it, and what to hand it; (None, carry with the result) when
    every output is written into ``work.folder``."""
    stage: str | None = first
    while stage is not None and stage in stages:
        if stage == "decode":
            carry = _decode(work, clock)
        elif stage == "separate":
            carry = _separate(carry, work, clock)
        elif stage == "detect":
            carry = _detect(carry, work.detector, clock)
        else:
            carry = replace(carry, result=_score(carry, work.detector, work.folder, clock,
                                                 {"separation": carry.decision}))
        stage = following(stage)
    clock.close()  # the last stage's time and span end here, before a handoff
    return stage, carry


def run_job(detector: Detector, source: dict, options: dict, folder: Path, clock: StageClock,
            max_bytes: int, max_seconds: float, separation: Separation | None = None) -> dict:
    """The whole batch pipeline for one job; returns the result JSON.

    ``SeparationUnavailable`` when the job asks for ``separate=on`` and ``separation`` has none.
    """
    work = Work(detector, source, options, folder, max_bytes, max_seconds, separation)
    return run_stages(STAGES[0], STAGES, None, work, clock)[1].result
