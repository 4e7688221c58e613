"""The API's one error shape: ``{"error": {"code", "message"}}`` with a fitting 4xx or 5xx status."""
from __future__ import annotations

import logging

import redis.exceptions
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from batch.jobs import JobNotFound
from batch.storage import StorageError

log = logging.getLogger("drumscribe.api")

REDIS_RETRY_SECONDS = 5
CLOSE = {"Connection": "close"}  # with an answer given before the body was read: it is not waited for


class ApiError(Exception):
    """An answer to the client; ``headers`` go with it (``Connection: close`` for a body left unread)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


async def api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail))


async def job_not_found(request: Request, exc: Exception) -> JSONResponse:
    """A job that went between a handler's lookup and its next step (deleted, expired): gone, not a fault."""
    return error_response(404, "not_found", "no such job")


async def redis_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """Redis down or too slow: the job store is out for now, which is not the request's fault."""
    log.warning("%s %s: Redis unavailable: %s", request.method, request.url.path, type(exc).__name__)
    return error_response(503, "unavailable", "the job store is unavailable; try again shortly",
                          {"Retry-After": str(REDIS_RETRY_SECONDS)})


async def storage_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The bucket is unreachable or refused us: out for now, not the request's fault."""
    log.warning("%s %s: storage unavailable: %s", request.method, request.url.path, exc)
    return error_response(503, "unavailable", "the file store is unavailable; try again shortly",
                          {"Retry-After": str(REDIS_RETRY_SECONDS)})


async def client_gone(request: Request, exc: Exception) -> Response:
    """The client left mid-body (a cancelled upload): worth a line, not a traceback; nobody reads the answer."""
    log.info("%s %s: the client disconnected before its request body was read", request.method, request.url.path)
    return Response(status_code=400)


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """Anything unforeseen still answers in the error shape (the traceback is logged by the server)."""
    return error_response(500, "internal", "the server failed to answer this request")


HANDLERS = {
    ApiError: api_error,
    HTTPException: http_error,
    JobNotFound: job_not_found,
    redis.exceptions.ConnectionError: redis_unavailable,
    redis.exceptions.TimeoutError: redis_unavailable,
    StorageError: storage_unavailable,
    ClientDisconnect: client_gone,
    Exception: internal_error,
}
