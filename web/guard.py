"""The Host and Origin checks, and the security headers of every HTTP response.

A pure ASGI middleware, so it sees WebSocket handshakes as well as HTTP requests:

- ``Host`` must be a valid ``name[:port]`` (no user info, path or other stray characters:
  ``localhost:1@evil.example`` is refused) with an allowed name (DNS rebinding: an
  attacker's name resolved to this server must not reach the API) -> else 400, or a refused
  handshake. An allowed entry with a port (``drums.example:8443``) allows that port only.
- A request that changes state (any method but GET, HEAD, OPTIONS) and every WebSocket
  handshake, when it carries an ``Origin``, must come from the app's own origin or an
  allowed one (cross-site request forgery: any page a user visits can POST a form here)
  -> else 403, or a refused handshake (close 1008 before accept, which uvicorn answers 403),
  so the live gateway never says ``ready`` to a foreign page. Without ``Origin`` (curl,
  scripts; browsers always send it on these requests) a browser's ``Sec-Fetch-Site:
  cross-site`` still refuses it.
"""
from __future__ import annotations

import json
import logging
import re
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from batch.links import DEFAULT_PORTS
from web.http_settings import HttpSettings

log = logging.getLogger("drumscribe.guard")

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
WS_SCHEMES = {"ws": "http", "wss": "https"}

# The page loads only its own script, worklet and stylesheet; live notation is shown from
# blob: URLs, score pages are fetched from this origin and shown inline (their <style> dropped),
# the player plays a job's recording from this origin, and the live transports connect to
# this origin ('self' covers ws:/wss: to it).
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; media-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# A score page opened on its own: its inline styles may apply, nothing may run or load.
SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; frame-ancestors 'none'"
HEADERS = {
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"same-origin",
    b"x-frame-options": b"DENY",
    b"cross-origin-opener-policy": b"same-origin",
    b"cross-origin-resource-policy": b"same-origin",
    b"permissions-policy": b"microphone=(self), camera=(), geolocation=()",
}


def origin_of(value: str) -> str | None:
    """``scheme://host[:port]`` in lower case, the default port dropped; None if it is no origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = WS_SCHEMES.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{scheme}://{host}" + (f":{port}" if port and port != DEFAULT_PORTS[scheme] else "")


_HOST = re.compile(r"(?P<name>\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(?::(?P<port>[0-9]{1,5}))?")


def parse_host(host_header: str) -> tuple[str, int | None] | None:
    """(name, port) of a ``Host`` value in lower case: ``[::1]:8000`` -> (``[::1]``, 8000),
    ``Example.org`` -> (``example.org``, None); None unless it is exactly ``name[:port]``."""
    found = _HOST.fullmatch(host_header.strip().lower())
    if found is None:
        return None
    port = int(found["port"]) if found["port"] else None
    if port is not None and not 0 < port < 65536:
        return None
    return found["name"], port


def host_allowed(name: str, port: int | None, allowed: tuple[str, ...]) -> bool:
    """Whether an entry allows the name: ``*``, the name, ``*.suffix``, or ``name:port`` for that port."""
    for pattern in allowed:
        if pattern == "*" or pattern == name or (port is not None and pattern == f"{name}:{port}"):
            return True
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
    return False


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class Guard:
    def __init__(self, app: ASGIApp, settings: HttpSettings) -> None:
        self.app, self.settings = app, settings
        self.origins = {o for o in map(origin_of, settings.allowed_origins) if o}
        for entry in settings.allowed_origins:
            if origin_of(entry) is None:
                log.warning("DRUMSCRIBE_ALLOWED_ORIGINS: %r is not an origin (scheme://host[:port], e.g. "
                            "https://drums.example.com); it allows nothing", entry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is not None:
            status, code, message = refusal
            log.info("refused %s %s: %s", scope["type"], scope["path"], message)
            if scope["type"] == "websocket":
                await receive()  # websocket.connect
                await send({"type": "websocket.close", "code": 1008, "reason": code})
                return
            await self.respond(send, status, code, message)
            return
        if scope["type"] == "http":
            send = self.with_headers(send)
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        host = parse_host(_header(scope, b"host") or "")
        if host is None or not host_allowed(*host, self.settings.allowed_hosts):
            return 400, "host_not_allowed", "this server does not answer to that Host name"
        if scope["type"] == "http" and scope["method"] in SAFE_METHODS:
            return None
        origin = _header(scope, b"origin")
        if origin is None:
            if _header(scope, b"sec-fetch-site") == "cross-site":
                return 403, "cross_origin", "requests from other sites are refused"
            return None
        scheme = WS_SCHEMES.get(scope["scheme"], scope["scheme"])
        found = origin_of(origin)
        name, port = host  # validated above: the own origin cannot be steered by stray characters
        own = origin_of(f"{scheme}://{name}" + (f":{port}" if port is not None else ""))
        if found is None or (found != own and found not in self.origins):
            return 403, "cross_origin", "requests from other origins are refused; see DRUMSCRIBE_ALLOWED_ORIGINS"
        return None

    def with_headers(self, send: Send) -> Send:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {key.lower() for key, _ in headers}
                content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                policy = SVG_CSP if content_type.startswith(b"image/svg") else PAGE_CSP
                extra = {**HEADERS, b"content-security-policy": policy.encode()}
                headers += [(key, value) for key, value in extra.items() if key not in present]
                message = {**message, "headers": headers}
            await send(message)

        return sending

    async def respond(self, send: Send, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        await self.with_headers(send)({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
