"""Request bodies must keep coming: an idle timeout and a minimum average rate, else 408.

Without them a client that sends an upload at 1 KB/s, or stops halfway, holds a connection,
a task and a half-written job folder for as long as it likes. Only the time spent waiting
for the client counts toward the rate (not the time the app takes between reads), and the
rate is judged only after a grace period, so a short pause on a good connection is fine.
The 408 carries ``Connection: close``: the rest of the body is not waited for.
"""
from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web.errors import CLOSE, ApiError
from web.http_settings import HttpSettings


class PacedBody:
    """``receive`` for one request, timed until its body is complete."""

    def __init__(self, receive: Receive, settings: HttpSettings) -> None:
        self.receive, self.settings = receive, settings
        self.done = False
        self.received = 0
        self.waited = 0.0

    async def __call__(self) -> Message:
        if self.done:
            return await self.receive()
        s = self.settings
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            message = await asyncio.wait_for(self.receive(), s.body_idle_timeout)
        except asyncio.TimeoutError:
            raise ApiError(408, "timeout", f"no part of the request body came for {s.body_idle_timeout:g} s",
                           CLOSE) from None
        self.waited += loop.time() - started
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.done = True
            return message
        self.received += len(message.get("body", b""))
        if self.waited > s.body_rate_grace and self.received < s.min_body_rate * self.waited:
            raise ApiError(408, "too_slow", f"the request body came slower than {s.min_body_rate / 1024:g} KB/s",
                           CLOSE)
        return message


class BodyPace:
    def __init__(self, app: ASGIApp, settings: HttpSettings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            receive = PacedBody(receive, self.settings)
        await self.app(scope, receive, send)
