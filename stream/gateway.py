"""The live gateway: the WebSocket protocol of the design on top of ``LiveRunner``.

client → ``start`` (text), PCM frames (binary), ``stop`` (text)
server → ``ready``, ``hits``, ``tempo``, ``notation``, ``final``, ``error``

Close codes: 1000 after ``final``; 1003 for wrong data (binary before ``start``,
malformed JSON, unknown messages, a bad format); 1008 for policy (idle, too long);
1009 for a frame over the limit; 1013 when the gateway is full. Every session that got
``ready`` is finalized, however it ends, and stays reachable by its ``session_id``.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING

from starlette.websockets import WebSocket, WebSocketDisconnect

from models.detector import Detector
from models.separation import Separator
from stream.batcher import InferenceBatcher
from stream.config import LiveSettings
from stream.pcm import FormatError, PcmFormat
from stream.runner import Finalizer, LiveRunner, NotationRenderer, SessionTooLong
from stream.separated import SeparatedRunner, SeparatedSession
from stream.session import LiveSession

if TYPE_CHECKING:
    from stream.separation_batcher import SeparationBatcher

log = logging.getLogger("drumscribe.live")

NORMAL, WRONG_DATA, POLICY, TOO_BIG, TRY_AGAIN = 1000, 1003, 1008, 1009, 1013


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, close: int) -> None:
        super().__init__(message)
        self.code, self.close = code, close


class Gateway:
    """Shared by all live sessions of a process: the batchers (network, separation), one registry, the limits."""

    def __init__(self, detector: Detector, settings: LiveSettings, finalizer: Finalizer,
                 notation: NotationRenderer | None = None, separator: Separator | None = None) -> None:
        self.detector, self.settings = detector, settings
        self.finalizer, self.notation = finalizer, notation
        self.separation_available = separator is not None
        self.batcher = InferenceBatcher(detector.model, max_wait=settings.batch_wait)
        self.separation: SeparationBatcher | None = None
        if separator is not None:  # sessions that start with "separate": true use it; torch only then
            from stream.separation_batcher import SeparationBatcher

            self.separation = SeparationBatcher(separator, settings.separation_wait, settings.separation_batch)
        self.sessions: dict[str, LiveRunner] = {}
        self._finalizing: set[asyncio.Task] = set()

    def ready_message(self, session: LiveSession) -> dict:
        return {"type": "ready", "session_id": session.id, "lookahead_ms": session.lookahead_ms,
                "sample_rate": self.detector.card.sample_rate, "separate": session.separate,
                "separation_available": self.separation_available}

    def open_session(self, start: dict, emit) -> LiveRunner:
        """A runner for a ``start`` message; ``ProtocolError`` when full or the format is wrong."""
        if len(self.sessions) >= self.settings.max_sessions:
            raise ProtocolError("busy", "the live gateway is full; try again shortly", TRY_AGAIN)
        try:
            fmt = PcmFormat.parse(start)
        except FormatError as error:
            raise ProtocolError("invalid_format", str(error), WRONG_DATA) from None
        separate = start.get("separate", False)
        if not isinstance(separate, bool):
            raise ProtocolError("invalid_format", "separate must be true or false", WRONG_DATA)
        if separate and self.separation is not None:  # without a separator, ready says "separate": false
            session = SeparatedSession(self.detector, fmt, self.separation.separator)
            runner = SeparatedRunner(session, self.batcher, self.separation, self.settings, emit, self.finalizer,
                                     self.notation)
        else:
            session = LiveSession(self.detector, fmt)
            runner = LiveRunner(session, self.batcher, self.settings, emit, self.finalizer, self.notation)
        self.sessions[session.id] = runner
        return runner

    def close_session(self, runner: LiveRunner) -> None:
        """Finish the session in the background (the client may be gone) and forget it once done."""
        task = runner.finalize()
        self._finalizing.add(task)

        def forget(done: asyncio.Task) -> None:
            self._finalizing.discard(done)
            self.sessions.pop(runner.session.id, None)
            if not done.cancelled() and done.exception() is not None:
                log.error("finalizing session %s failed: %r", runner.session.id, done.exception())

        task.add_done_callback(forget)

    async def shutdown(self) -> None:
        for runner in list(self.sessions.values()):
            self.close_session(runner)
        if self._finalizing:
            await asyncio.wait(self._finalizing, timeout=self.settings.finalize_timeout)
        self.batcher.close()
        if self.separation is not None:
            self.separation.close()

    async def serve(self, websocket: WebSocket) -> None:
        """One WebSocket connection, from ``start`` to close."""
        await websocket.accept()
        connection = _Connection(websocket, self.settings)
        runner: LiveRunner | None = None
        try:
            runner = self.open_session(await connection.start(), connection.emit)
            connection.emit(self.ready_message(runner.session))
            while True:
                kind, payload = await connection.receive()
                if kind == "bytes":
                    await runner.audio(payload)
                    continue
                if payload.get("type") != "stop":
                    raise ProtocolError("unexpected_message", f"unexpected message {payload.get('type')!r}", WRONG_DATA)
                self.close_session(runner)
                final = await asyncio.wait_for(asyncio.shield(runner.finalize()), self.settings.finalize_timeout)
                connection.emit(final)
                await connection.close(NORMAL)
                return
        except ProtocolError as error:
            connection.emit({"type": "error", "code": error.code, "message": str(error)})
            await connection.close(error.close)
        except SessionTooLong as error:
            connection.emit({"type": "error", "code": "too_long", "message": str(error)})
            await connection.close(POLICY)
        except (WebSocketDisconnect, ConnectionError):
            pass
        except asyncio.TimeoutError:
            connection.emit({"type": "error", "code": "finalize_timeout", "message": "the score is still being made; "
                             "fetch it later by session id"})
            await connection.close(POLICY)
        finally:
            if runner is not None:
                self.close_session(runner)  # no-op after stop: finalize runs once
            connection.abandon()


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

    async def receive(self) -> tuple[str, bytes | dict]:
        if self.overflowed:
            raise ConnectionError("client is not reading its messages")
        try:
            message = await asyncio.wait_for(self.websocket.receive(), self.settings.idle_timeout)
        except asyncio.TimeoutError:
            raise ProtocolError("idle", f"no audio for {self.settings.idle_timeout:g} s", POLICY) from None
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        data = message.get("bytes")
        if data is not None:
            if len(data) > self.settings.max_frame_bytes:
                raise ProtocolError("too_big", f"frames are limited to {self.settings.max_frame_bytes} bytes", TOO_BIG)
            return "bytes", data
        try:
            payload = json.loads(message.get("text") or "")
        except json.JSONDecodeError:
            raise ProtocolError("invalid_json", "a text message must be a JSON object", WRONG_DATA) from None
        if not isinstance(payload, dict):
            raise ProtocolError("invalid_json", "a text message must be a JSON object", WRONG_DATA)
        return "text", payload

    async def close(self, code: int) -> None:
        """Send what is queued, then the close frame; give up on a client that does not read."""
        self.outbox.put_nowait(code)
        try:
            await asyncio.wait_for(asyncio.shield(self.sender), timeout=5)
        except (asyncio.TimeoutError, Exception):
            pass

    def abandon(self) -> None:
        if not self.sender.done():
            self.sender.cancel()
