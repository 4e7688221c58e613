"""Who may use the API: API keys (``DRUMSCRIBE_AUTH=keys``), or anyone, rate-limited per address.

With keys, every request under ``/api/v1`` carries ``Authorization: Bearer KEY``; without a
valid one it is answered 401 ``unauthorized``, before its body is read. A browser cannot set
that header on a link, an ``EventSource``, an image or a WebSocket, so the page keeps the key in
the cookie ``drumscribe_key`` (``SameSite=Strict``, so other sites' pages never send it; the
Guard refuses their writes anyway), which counts the same. Open without a key:
``/api/v1/config`` (it tells the page whether to ask for one), ``/api/v1/health`` (its status,
for load balancers; the details only for an operator key) and the WebSocket handshake of
``/api/v1/stream``: a live session's key is checked with its ``start`` message (the header, the
cookie, or ``"key"`` in ``start``; see ``live_admission``). ``/metrics`` needs an operator key
(``keys create NAME --operator``).
A key's jobs and live sessions are its own: handlers ask ``key_name(request)`` and answer
another key's job as they answer an unknown id.

With keys off, the work requests (job submissions, WebRTC offers, live sessions) of each client
address draw on a token bucket in Redis (``quotas.AddressBuckets``); past it, 429
``rate_limited`` with ``Retry-After``.
"""
from __future__ import annotations

import json

import redis
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from batch import keys
from batch.keys import ApiKey
from stream.addresses import client_key
from stream.gateway import POLICY, ProtocolError
from web.errors import CLOSE, REDIS_RETRY_SECONDS, ApiError
from web.http_settings import HttpSettings
from web.quotas import AddressBuckets, JobSlots, Lease, SessionLeases, retry_after

API = "/api/v1/"
OPEN_PATHS = ("/api/v1/config", "/api/v1/health", "/api/v1/stream")
WORK = {("POST", "/api/v1/jobs"), ("POST", "/api/v1/rtc/offer")}
STATE = "api_key"  # the scope state's entry for the request's key
COOKIE = "drumscribe_key"  # the page's copy of its key, for what a browser sends without headers


def bearer(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer KEY`` header."""
    scheme, _, credentials = (authorization or "").partition(" ")
    return credentials.strip() or None if scheme.lower() == "bearer" else None


def presented(connection: HTTPConnection) -> str | None:
    """The key a request or handshake carries: the ``Authorization`` header, else the page's cookie."""
    return bearer(connection.headers.get("authorization")) or connection.cookies.get(COOKIE) or None


class Quotas:
    """The app's limits, on its Redis client."""

    def __init__(self, client: redis.Redis, settings: HttpSettings) -> None:
        self.redis = client
        self.jobs = JobSlots(client)
        self.sessions = SessionLeases(client, settings.live_lease_seconds)
        self.buckets = AddressBuckets(client, settings.anonymous_burst, settings.anonymous_per_minute)

    def lookup(self, key: str | None) -> ApiKey | None:
        return keys.lookup(self.redis, key) if key else None


class Access:
    """ASGI middleware for HTTP requests: authenticate with keys on, meter work requests with keys off."""

    def __init__(self, app: ASGIApp, settings: HttpSettings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        quotas: Quotas = scope["app"].state.quotas
        try:
            if self.settings.keys_required:
                await self.authenticate(scope, quotas, path)
            elif (scope["method"], path.rstrip("/")) in WORK:
                await meter(quotas, _address(scope), fail_open=path.rstrip("/") != "/api/v1/jobs")
        except ApiError as error:
            unread = scope["method"] not in ("GET", "HEAD", "OPTIONS")  # a body may follow: it is not waited for
            await _respond(send, error, CLOSE if unread else {})
            return
        await self.app(scope, receive, send)

    async def authenticate(self, scope: Scope, quotas: Quotas, path: str) -> None:
        needed = path == "/metrics" or (path.startswith(API) and path.rstrip("/") not in OPEN_PATHS)
        carried = presented(HTTPConnection(scope))
        # the page and its files need no key: a cookie sent with them is not looked up
        if carried is None or not (needed or path.startswith(API)):
            key = None
        else:
            try:
                key = await run_in_threadpool(quotas.lookup, carried)
            except (redis.ConnectionError, redis.TimeoutError):
                if needed:
                    raise ApiError(503, "unavailable", "the key store is unavailable; try again shortly",
                                   {"Retry-After": str(REDIS_RETRY_SECONDS)}) from None
                key = None  # an open path (health, config) answers as it would without a key
        if key is None and needed:
            raise ApiError(401, "unauthorized", "send a valid API key: Authorization: Bearer KEY",
                           {"WWW-Authenticate": 'Bearer realm="drumscribe"'})
        scope.setdefault("state", {})[STATE] = key
        if path == "/metrics" and not key.operator:
            raise ApiError(403, "forbidden", "metrics are for operator keys")


async def meter(quotas: Quotas, address: str, fail_open: bool) -> None:
    """Take a token of ``address``'s bucket, or ``ApiError`` 429. When Redis does not answer, a job
    submission (which needs Redis anyway) gets 503; a live session goes ahead unmetered."""
    try:
        wait = await run_in_threadpool(quotas.buckets.wait, address)
    except (redis.ConnectionError, redis.TimeoutError):
        if fail_open:
            return
        raise ApiError(503, "unavailable", "the job store is unavailable; try again shortly",
                       {"Retry-After": str(REDIS_RETRY_SECONDS)}) from None
    if wait > 0:
        raise ApiError(429, "rate_limited", "too many requests from this address; slow down", retry_after(wait))


def api_key(connection: HTTPConnection) -> ApiKey | None:
    """The request's valid key; None with keys off (or on an open path without one)."""
    return connection.scope.get("state", {}).get(STATE)


def key_name(connection: HTTPConnection) -> str | None:
    """Whose jobs and sessions this request may see: its key's name, or None (everyone's) with keys off."""
    if not connection.app.state.http.keys_required:
        return None
    key = api_key(connection)
    return key.name if key is not None else ""


def is_operator(connection: HTTPConnection) -> bool:
    key = api_key(connection)
    return key is not None and key.operator


async def live_lease(request: Request) -> Lease:
    """A live session's slot for the request's key (WebRTC offers), or ``ApiError`` 429 ``busy``."""
    key = api_key(request)
    if key is None:
        return Lease()
    lease = await request.app.state.quotas.sessions.acquire(key)
    if lease is None:
        raise ApiError(429, "busy", f"this key holds its limit of {key.max_sessions} live sessions; stop one first",
                       retry_after(request.app.state.http.live_lease_seconds / 3))
    return lease


def live_admission(websocket: WebSocket):
    """The gateway's check of a WebSocket session's ``start``: its key (``Authorization`` or the
    cookie on the handshake, or ``"key"`` in ``start``) and its key's live limit with keys on; the address's
    bucket with keys off. ``ProtocolError`` (close 1008) ``unauthorized``, ``busy``, ``rate_limited``."""
    app, settings = websocket.app, websocket.app.state.http

    async def admit(start: dict) -> Lease:
        quotas: Quotas = app.state.quotas
        if not settings.keys_required:
            try:
                await meter(quotas, _address(websocket.scope), fail_open=True)
            except ApiError as error:
                raise ProtocolError(error.code, error.message, POLICY) from None
            return Lease()
        carried = presented(websocket) or start.get("key")
        try:
            key = await run_in_threadpool(quotas.lookup, carried if isinstance(carried, str) else None)
            lease = await quotas.sessions.acquire(key) if key is not None else None
        except (redis.ConnectionError, redis.TimeoutError):
            raise ProtocolError("unavailable", "the key store is unavailable; try again shortly", 1013) from None
        if key is None:
            raise ProtocolError("unauthorized", "send a valid API key: \"key\" in the start message", POLICY)
        if lease is None:
            raise ProtocolError("busy", f"this key holds its limit of {key.max_sessions} live sessions; stop one first",
                                POLICY)
        return lease

    return admit


def _address(scope: Scope) -> str:
    client = scope.get("client")
    return client_key(client[0]) if client else ""


async def _respond(send: Send, error: ApiError, extra: dict[str, str]) -> None:
    body = json.dumps({"error": {"code": error.code, "message": error.message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in {**(error.headers or {}), **extra}.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def config(request: Request) -> Response:
    """What the page needs to know before its first request: whether to ask for a key."""
    return JSONResponse({"auth": "keys" if request.app.state.http.keys_required else "off"})


routes = [Route("/config", config, methods=["GET"])]
