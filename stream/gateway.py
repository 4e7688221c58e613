"""The live gateway: the WebSocket protocol of the design on top of ``LiveRunner``.

client → ``start`` (text), PCM frames (binary), ``stop`` (text)
server → ``ready``, ``hits``, ``tempo``, ``notation``, ``final``, ``error``

Close codes: 1000 after ``final``; 1003 for wrong data (binary before ``start``,
malformed or too deeply nested JSON, unknown messages, a bad ``start``); 1008 for policy
(idle, too long, too slow, too many sessions from one address, no valid API key, the key's
live limit, the address's rate limit); 1009 for a frame or text message over the limit; 1011
when the score could not be queued, the recording cannot be written, or anything unforeseen
went wrong; 1013 when the gateway is full or Redis cannot check the session's API key. Every
session that got ``ready`` is recorded to disk as it streams and finalized, however it ends,
and stays reachable by its ``session_id``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from opentelemetry import trace
from starlette.websockets import WebSocket, WebSocketDisconnect

from models.detector import Detector
from models.separation import Separator
from stream import bounded_json
from stream.addresses import client_key
from stream.batcher import InferenceBatcher
from stream.config import LiveSettings
from stream.pace import SessionTooSlow
from stream.pcm import FormatError, StartMessage
from stream.recording import Recording
from stream.runner import Finalizer, LiveRunner, Scorer, SessionTooLong
from stream.separated import SeparatedRunner, SeparatedSession
from stream.session import LiveSession

if TYPE_CHECKING:
    from stream.separation_batcher import SeparationBatcher

log = logging.getLogger("drumscribe.live")
tracer = trace.get_tracer("drumscribe.live")

NORMAL, WRONG_DATA, POLICY, TOO_BIG, SERVER_ERROR, TRY_AGAIN = 1000, 1003, 1008, 1009, 1011, 1013
FAILURES_KEPT = 1000  # sessions whose finalizing failed, remembered for ``GET /sessions/{id}``
FINALIZE_FAILED = "the score could not be queued; the recording is kept on the server"
JSON_CLOSE = {"too_large": ("too_big", TOO_BIG), "too_deep": ("too_deep", WRONG_DATA),
              "invalid_json": ("invalid_json", WRONG_DATA)}


class Grant(Protocol):
    """A session's admission: the API key it belongs to ('' without keys), and its slot to release."""

    owner: str

    async def release(self) -> None: ...


Admission = Callable[[dict], Awaitable[Grant]]


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, close: int) -> None:
        super().__init__(message)
        self.code, self.close = code, close


class Gateway:
    """Shared by all live sessions of a process: the batchers (network, separation), one registry, the limits.

    ``finalizer`` records and scores the sessions; its batch limit bounds theirs. Without one
    (benchmarks) sessions are neither recorded nor scored.
    """

    def __init__(self, detector: Detector, settings: LiveSettings, finalizer: Finalizer | None,
                 scorer: Scorer | None = None, separator: Separator | None = None) -> None:
        self.detector = detector
        self.settings = settings.within(finalizer.max_seconds) if finalizer is not None else settings
        self.finalizer, self.scorer = finalizer, scorer
        self.separation_available = separator is not None
        self.batcher = InferenceBatcher(detector.model, max_wait=settings.batch_wait)
        self.separation: SeparationBatcher | None = None
        if separator is not None:  # sessions that start with "separate": true use it; torch only then
            from stream import separation_batcher

            self.separation = separation_batcher.SeparationBatcher(separator, settings.separation_wait, settings.separation_batch)
        self.sessions: dict[str, LiveRunner] = {}
        self.failures: OrderedDict[str, dict] = OrderedDict()  # session id -> its state, once finalizing failed
        self._finalizing: set[asyncio.Task] = set()
        self._closed: weakref.WeakSet[LiveRunner] = weakref.WeakSet()  # runners whose finalize is watched

    def ready_message(self, session: LiveSession) -> dict:
        return {"type": "ready", "session_id": session.id, "lookahead_ms": session.lookahead_ms,
                "sample_rate": self.detector.card.sample_rate, "separate": session.separate,
                "separation_available": self.separation_available}

    def admit(self, client: str, start: dict, emit, owner: str = "") -> LiveRunner:
        """``open_session`` for a client address, the session belonging to the API key named ``owner``
        ('' without keys); ``ProtocolError`` when that address has its share open."""
        held = sum(1 for runner in self.sessions.values() if runner.client == client and runner.open)
        if held >= self.settings.max_per_client:
            raise ProtocolError("busy", f"at most {self.settings.max_per_client} live sessions per client address; "
                                "stop one first", POLICY)
        runner = self.open_session(start, emit)
        runner.client, runner.session.owner = client, owner
        return runner

    def open_session(self, start: dict, emit) -> LiveRunner:
        """A runner for a ``start`` message; ``ProtocolError`` when full or the message is wrong.
        Its span is the parent of the session's finalize span (``LiveRunner.trace_context``)."""
        with tracer.start_as_current_span("live.open") as span:
            runner = self._open_session(start, emit)
            span.set_attributes({"drumscribe.session_id": runner.session.id, "drumscribe.separate": runner.session.separate})
            runner.trace_context = trace.set_span_in_context(span)
        return runner

    def _open_session(self, start: dict, emit) -> LiveRunner:
        if len(self.sessions) >= self.settings.max_sessions:
            raise ProtocolError("busy", "the live gateway is full; try again shortly", TRY_AGAIN)
        try:
            message = StartMessage.parse(start)
        except FormatError as error:
            raise ProtocolError("invalid_start", str(error), WRONG_DATA) from None
        fmt, limit = message.format, self.settings.max_session_seconds
        recording = self._recording(message)
        if message.separate and self.separation is not None:  # without a separator, ready says "separate": false
            session = SeparatedSession(self.detector, fmt, self.separation.separator, recording=recording,
                                       max_seconds=limit)
            runner = SeparatedRunner(session, self.batcher, self.separation, self.settings, emit, self.finalizer,
                                     self.scorer)
        else:
            session = LiveSession(self.detector, fmt, recording=recording, max_seconds=limit)
            runner = LiveRunner(session, self.batcher, self.settings, emit, self.finalizer, self.scorer)
        self.sessions[session.id] = runner
        return runner

    def _recording(self, message: StartMessage) -> Recording | None:
        if self.finalizer is None:
            return None
        try:
            return self.finalizer.recording(message.format)
        except OSError as error:  # a full or read-only disk: no session rather than one that cannot be kept
            log.error("cannot start a live recording: %r", error)
            raise ProtocolError("unavailable", "the server cannot record right now; try again later",
                                TRY_AGAIN) from None

    def close_session(self, runner: LiveRunner) -> None:
        """Finish the session in the background (the client may be gone) and forget it once done.
        Called again for the same runner (after ``stop``, then on the way out) it does nothing."""
        if runner in self._closed:
            return
        self._closed.add(runner)
        task = runner.finalize()
        self._finalizing.add(task)

        def forget(done: asyncio.Task) -> None:
            self._finalizing.discard(done)
            self.sessions.pop(runner.session.id, None)
            if not done.cancelled() and done.exception() is not None:
                log.error("finalizing session %s failed: %r", runner.session.id, done.exception())
                self._remember_failure(runner)

        task.add_done_callback(forget)

    def _remember_failure(self, runner: LiveRunner) -> None:
        """Keep a failed session answerable by id (its recording stays in its folder on disk)."""
        session = runner.session
        self.failures[session.id] = {"session_id": session.id, "status": "failed", "error": FINALIZE_FAILED,
                                     "seconds": round(session.seconds, 3), "hits_total": len(session.hits),
                                     "owner": session.owner}
        while len(self.failures) > FAILURES_KEPT:
            self.failures.popitem(last=False)

    async def _final(self, runner: LiveRunner) -> dict:
        """Finalize after ``stop`` and wait for the ``final`` message."""
        self.close_session(runner)
        try:
            return await asyncio.wait_for(asyncio.shield(runner.finalize()), self.settings.finalize_timeout)
        except asyncio.TimeoutError:
            raise
        except Exception:
            raise ProtocolError("finalize_failed", f"{FINALIZE_FAILED} (session {runner.session.id})",
                                SERVER_ERROR) from None

    async def shutdown(self) -> None:
        for runner in list(self.sessions.values()):
            self.close_session(runner)
        if self._finalizing:
            await asyncio.wait(self._finalizing, timeout=self.settings.finalize_timeout)
        self.batcher.close()
        if self.separation is not None:
            self.separation.close()

    async def serve(self, websocket: WebSocket, admission: Admission | None = None) -> None:
        """One WebSocket connection, from ``start`` to close; ``admission`` checks the ``start``
        message (an API key, its limits) and gives the session's ``Grant``, released at the end."""
        await websocket.accept()
        connection = _Connection(websocket, self.settings)
        runner: LiveRunner | None = None
        grant: Grant | None = None
        client = client_key(websocket.client.host) if websocket.client is not None else ""
        try:
            start = await connection.start()
            if admission is not None:
                grant = await admission(start)
            runner = self.admit(client, start, connection.emit, grant.owner if grant is not None else "")
            connection.emit(self.ready_message(runner.session))
            while True:
                kind, payload = await connection.receive(until=runner.pace.deadline)
                if kind == "bytes":
                    await runner.audio(payload)
                runner.check_pace()
                if kind != "text":
                    continue
                if payload.get("type") != "stop":
                    raise ProtocolError("unexpected_message", f"unexpected message {payload.get('type')!r}", WRONG_DATA)
                connection.emit(await self._final(runner))
                await connection.close(NORMAL)
                return
        except ProtocolError as error:
            connection.emit({"type": "error", "code": error.code, "message": str(error)})
            await connection.close(error.close)
        except SessionTooLong as error:
            connection.emit({"type": "error", "code": "too_long", "message": str(error)})
            await connection.close(POLICY)
        except SessionTooSlow as error:
            connection.emit({"type": "error", "code": "too_slow", "message": str(error)})
            await connection.close(POLICY)
        except (WebSocketDisconnect, ConnectionError):
            pass
        except asyncio.TimeoutError:
            connection.emit({"type": "error", "code": "finalize_timeout", "message": "the score is still being made; "
                             "fetch it later by session id"})
            await connection.close(POLICY)
        except OSError as error:  # the recording could not be written (a full or failing disk)
            log.error("live session %s: the recording cannot be written: %r", _session_id(runner), error)
            connection.emit({"type": "error", "code": "recording_failed",
                             "message": "the server cannot write this session's recording; try again later"})
            await connection.close(SERVER_ERROR)
        except Exception:
            log.exception("live session %s failed", _session_id(runner))
            connection.emit({"type": "error", "code": "internal", "message": "the live session failed on the server"})
            await connection.close(SERVER_ERROR)
        finally:
            if runner is not None:
                self.close_session(runner)  # no-op after stop: finalize runs once
            if grant is not None:
                await grant.release()
            connection.abandon()


def _session_id(runner: LiveRunner | None) -> str:
    return runner.session.id if runner is not None else "(not started)"


class _Connection:
    """Reads frames with the idle timeout and size limit; sends through a bounded outbox.

    The outbox is drained by its own task, so a client that stops reading stalls only
    its own sender; once the outbox overflows, the connection is dropped.
    """

    def __init__(self, websocket: WebSocket, settings: LiveSettings) -> None:
        self.websocket, self.settings = websocket, settings
        self.outbox: asyncio.Queue[dict | int] = asyncio.Queue()
        self.sender = asyncio.get_running_loop().create_task(self._send_all())
        self.overflowed = False
        self.last_message = time.monotonic()

    def emit(self, message: dict) -> None:
        if self.outbox.qsize() >= self.settings.outbox_limit:
            self.overflowed = True
            return
        self.outbox.put_nowait(message)

    async def _send_all(self) -> None:
        while True:
            item = await self.outbox.get()
            if isinstance(item, int):
                await self.websocket.close(item)
                return
            await self.websocket.send_text(json.dumps(item))

    async def start(self) -> dict:
        kind, payload = await self.receive()
        if kind == "bytes":
            raise ProtocolError("not_started", "send a start message before audio", WRONG_DATA)
        if payload.get("type") != "start":
            raise ProtocolError("not_started", "the first message must be start", WRONG_DATA)
        return payload

    async def receive(self, until: float = math.inf) -> tuple[str, bytes | dict | None]:
        """The next message as ("bytes", data) or ("text", object); ("tick", None) when the
        monotonic time ``until`` comes first; ``ProtocolError`` after the idle timeout."""
        if self.overflowed:
            raise ConnectionError("client is not reading its messages")
        idle_at = self.last_message + self.settings.idle_timeout
        try:
            wait = max(0.0, min(idle_at, until) - time.monotonic())
            message = await asyncio.wait_for(self.websocket.receive(), wait)
        except asyncio.TimeoutError:
            if until < idle_at:
                return "tick", None
            raise ProtocolError("idle", f"no audio for {self.settings.idle_timeout:g} s", POLICY) from None
        self.last_message = time.monotonic()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        data = message.get("bytes")
        if data is not None:
            if len(data) > self.settings.max_frame_bytes:
                raise ProtocolError("too_big", f"frames are limited to {self.settings.max_frame_bytes} bytes", TOO_BIG)
            return "bytes", data
        try:
            # the limit is in bytes, as the README says: UTF-8 bytes, not characters
            payload = bounded_json.loads((message.get("text") or "").encode(), self.settings.max_text_bytes)
        except bounded_json.JsonRejected as error:
            code, close = JSON_CLOSE[error.code]
            raise ProtocolError(code, f"{error.message}; a text message must be a small JSON object", close) from None
        if not isinstance(payload, dict):
            raise ProtocolError("invalid_json", "a text message must be a JSON object", WRONG_DATA)
        return "text", payload

    async def close(self, code: int) -> None:
        """Send what is queued, then the close frame; give up on a client that does not read."""
        self.outbox.put_nowait(code)
        try:
            await asyncio.wait_for(asyncio.shield(self.sender), timeout=5)
        except Exception:
            pass

    def abandon(self) -> None:
        if not self.sender.done():
            self.sender.cancel()
