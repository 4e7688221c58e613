"""Drives one live session: audio in, hit/tempo/notation messages out, finalize at the end.

Transport-free: the WebSocket endpoint and the WebRTC peer both feed ``audio`` and call
``stop``; messages leave through the ``emit`` callback they supply. Each runner handles
its frames in order, sharing the network with every other session through the batcher.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from opentelemetry import trace
from opentelemetry.context import Context

from models.peaks import Hit
from models.runtime import Step
from stream.batcher import InferenceBatcher
from stream.config import LiveSettings
from stream.pace import MinimumRate
from stream.pcm import PcmFormat
from stream.recording import Recording
from stream.scorer import ScoreUpdate
from stream.session import LiveSession

log = logging.getLogger("drumscribe.live")
tracer = trace.get_tracer("drumscribe.live")

Emit = Callable[[dict], None]


class Scorer(Protocol):
    """The beat tracker and the notation, run off the hit path (``stream.scorer.LiveScorer``)."""

    async def update(self, hits: list[Hit], seconds: float, notation: bool) -> ScoreUpdate:
        """The session's tempo so far and, with ``notation``, its last completed bars as SVG."""


class Finalizer(Protocol):
    """Where sessions are recorded and how a finished one is scored."""

    @property
    def max_seconds(self) -> float:
        """The batch limit: the longest recording it can score."""

    def recording(self, fmt: PcmFormat) -> Recording:
        """A new recording for a session, on disk from its first frame."""

    def __call__(self, session: LiveSession) -> Awaitable[dict]:
        """Score the ended session's recording; the links for its ``final`` message."""


class SessionTooLong(Exception):
    pass


class LiveRunner:
    def __init__(self, session: LiveSession, batcher: InferenceBatcher, settings: LiveSettings, emit: Emit,
                 finalizer: Finalizer, scorer: Scorer | None = None) -> None:
        self.session, self.batcher, self.settings = session, batcher, settings
        self.emit, self.finalizer, self.scorer = emit, finalizer, scorer
        self._score_task: asyncio.Task | None = None
        self._tempo_due = self._notation_due = False  # asked for, not yet sent to the scorer
        self._notation_at = 0.0
        self._last_bar = -1
        self._final: asyncio.Task | None = None
        self.client: str | None = None  # the address whose per-client share the session counts in
        self.pace = MinimumRate(settings.min_audio_seconds, settings.pace_window, settings.pace_grace)
        self.trace_context: Context | None = None  # the session's open span: the parent of its finalize span

    @property
    def open(self) -> bool:
        """Still taking audio (not finalizing)."""
        return self._final is None

    async def audio(self, data: bytes) -> None:
        """One frame of PCM; sends the hits it makes certain. ``SessionTooLong`` at the limit."""
        await self.advance(self.session.accept(data))

    def check_pace(self) -> None:
        """``SessionTooSlow`` when the last pace window brought too little audio."""
        self.pace.check(self.session.seconds)

    async def advance(self, step: Step | None) -> None:
        """Run the network step a frame made (if any), send its hits, tempo and notation."""
        if step is not None:
            self._send_hits(self.session.take(await self.batcher.run(step)))
        self._maybe_score()
        if self.session.full:
            raise SessionTooLong(f"sessions are limited to {self.settings.max_session_seconds:g} s of audio")

    def _send_hits(self, hits: list[Hit]) -> None:
        if hits:
            self.emit({"type": "hits", "hits": [hit.to_dict() for hit in hits]})

    def _maybe_score(self) -> None:
        """Ask for the tempo (every few seconds, from a few hits on) and the notation (every
        ``notation_every`` seconds). One request runs at a time; what comes due meanwhile is
        asked for, together, when it ends."""
        if self.scorer is None:
            return
        self._tempo_due |= self.session.tempo_due()
        every = self.settings.notation_every
        if every > 0 and self.session.seconds - self._notation_at >= every:
            self._notation_at, self._notation_due = self.session.seconds, True
        if (self._tempo_due or self._notation_due) and (self._score_task is None or self._score_task.done()):
            self._score_task = asyncio.get_running_loop().create_task(self._score())

    async def _score(self) -> None:
        """One beat-tracker run over the whole session so far per request, in the scorer's
        process: it never holds back any session's hits."""
        while self._tempo_due or self._notation_due:
            tempo, notation = self._tempo_due, self._notation_due
            self._tempo_due = self._notation_due = False
            hits, seconds = list(self.session.hits), self.session.seconds
            try:
                update = await self.scorer.update(hits, seconds, notation)
            except Exception:
                log.exception("tempo or notation failed for session %s", self.session.id)
                return
            if tempo and self.session.tempo_moved(update.bpm):
                self.emit({"type": "tempo", "bpm": update.bpm})
            if update.notation is not None and update.notation[1] > self._last_bar:
                self._last_bar = update.notation[1]
                self.emit({"type": "notation", "svg": update.notation[0], "bar": update.notation[1]})

    async def drain(self) -> None:
        """The end of the audio: send every hit still held back for look-ahead."""
        tail = self.session.end()
        if tail is not None:
            self._send_hits(self.session.take(await self.batcher.run(tail)))
        self._send_hits(self.session.finish(await self.batcher.run(self.session.final_step())))

    def finalize(self) -> asyncio.Task:
        """Start (once) saving and scoring the recording; the task's result is the ``final`` message."""
        if self._final is None:
            self._final = asyncio.get_running_loop().create_task(self._finalize())
        return self._final

    async def _finalize(self) -> dict:
        with tracer.start_as_current_span("live.finalize", context=self.trace_context,
                                          attributes={"drumscribe.session_id": self.session.id}) as span:
            try:
                if self._score_task is not None:  # let an update under way land before ``final``
                    await asyncio.wait([self._score_task], timeout=self.settings.notation_grace)
                    self._score_task.cancel()
                await self.drain()
            except Exception:  # the last hits are lost, but never the recording: it is scored all the same
                log.exception("draining session %s failed", self.session.id)
            links = await self.finalizer(self.session)
            span.set_attributes({"drumscribe.job_id": links.get("job_id") or "", "drumscribe.status": links.get("status", "")})
            return {"type": "final", "session_id": self.session.id, "hits_total": len(self.session.hits), **links}
