"""JSON request bodies: read within a size cap as they stream in, parsed within a nesting
budget (``stream.bounded_json``), then validated by a pydantic schema.

The cap is counted on the bytes received, not on ``Content-Length``, so a chunked body
(no length at all) is cut off at the cap like any other. A schema failure names the
fields and what is wrong with them, never echoing the (possibly huge) values.
"""
from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from stream.bounded_json import JsonRejected, loads
from web.errors import CLOSE, ApiError

Model = TypeVar("Model", bound=BaseModel)


def too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"the JSON body is over {limit // 1024} KB", CLOSE)


async def read_json(request: Request, max_bytes: int) -> Any:
    """The parsed body, or ``ApiError`` 413 ``too_large``, 400 ``invalid_json`` or ``too_deep``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large(max_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise too_large(max_bytes)
    try:
        return loads(bytes(body), max_bytes)
    except JsonRejected as error:
        raise ApiError(400, error.code, error.message) from None


def validate(model: type[Model], data: Any, code: str) -> Model:
    """``data`` as ``model``, or ``ApiError`` 400 ``code`` listing each field's fault."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        faults = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in error.errors(include_input=False)]
        raise ApiError(400, code, "; ".join(faults[:5])) from None
