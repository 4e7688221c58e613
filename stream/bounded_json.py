"""JSON from untrusted clients, parsed only within a size and nesting budget.

``json.loads`` recurses once per nesting level, so 5,000 ``[`` in 10 KB raise
``RecursionError`` (not ``JSONDecodeError``) deep inside the parser. The depth is measured
first, in one pass over the text that skips string contents, so a hostile body never
reaches the recursive parser. Shared by the HTTP API and the live gateway.
"""
from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32


class JsonRejected(ValueError):
    """The text is not JSON, too large, or nested too deeply; ``code`` names which."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def nesting_depth(text: str) -> int:
    """The deepest ``[``/``{`` nesting outside string literals."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def loads(data: str | bytes, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``data`` or raise ``JsonRejected`` (codes ``too_large``, ``too_deep``, ``invalid_json``)."""
    if len(data) > max_bytes:
        raise JsonRejected("too_large", f"the JSON is over {max_bytes} bytes")
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise JsonRejected("invalid_json", "the JSON is not UTF-8") from None
    if nesting_depth(text) > max_depth:
        raise JsonRejected("too_deep", f"the JSON nests deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise JsonRejected("invalid_json", "the body is not valid JSON") from None
