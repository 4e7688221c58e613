"""The uvicorn server of ``drumscribe serve``, with the HTTP limits uvicorn has no setting for.

uvicorn limits the request line and headers in size (h11's incomplete event size) and idle
keep-alive connections in time, but not how long a client may take to send its headers: a
client trickling a header a minute holds its connection forever. ``EdgeProtocol`` gives each
request ``header_timeout`` seconds from when the connection is ready for it, and answers a
request that is not valid HTTP (``Content-Length: abc``) with the API's JSON error shape
instead of uvicorn's plain text. It is uvicorn's h11 protocol, as the size limit needs h11.
"""
from __future__ import annotations

import asyncio
import functools
import json

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from web.http_settings import HttpSettings

WS_MAX_BYTES = 1 << 20  # a WebSocket message; live frames are far smaller


class EdgeProtocol(H11Protocol):
    def __init__(self, *args, header_timeout: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.header_timer: asyncio.TimerHandle | None = None

    def _arm_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
        self.header_timer = self.loop.call_later(self.header_timeout, self._headers_overdue)

    def _headers_overdue(self) -> None:
        """Close the connection if it still waits for a request's headers (none in progress, not upgraded)."""
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and not self.transport.is_closing() and self.transport.get_protocol() is self:
            self.logger.info("closing a connection that sent no complete request in %g s", self.header_timeout)
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        body = json.dumps({"error": {"code": "bad_request", "message": "the request is not valid HTTP"}}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                      h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()


def server_config(app: ASGIApp, host: str, port: int, http: HttpSettings, **options) -> uvicorn.Config:
    """The uvicorn configuration of ``serve``; ``options`` for the rest (log settings, say)."""
    return uvicorn.Config(
        app, host=host, port=port,
        http=functools.partial(EdgeProtocol, header_timeout=http.header_timeout),  # type: ignore[arg-type]
        timeout_keep_alive=http.keep_alive_timeout,  # type: ignore[arg-type]  (uvicorn takes seconds as a float)
        h11_max_incomplete_event_size=http.max_header_bytes,
        ws_max_size=WS_MAX_BYTES,
        ws_per_message_deflate=False,  # PCM frames do not compress: deflate would only cost CPU per frame
        server_header=False,
        **options,
    )
