"""A span for each HTTP request and WebSocket connection, when tracing is on.

OpenTelemetry's ASGI middleware does the work (W3C context from the request's headers, the
HTTP semantic conventions); it is added only when a tracer provider is installed, so an app
without tracing pays nothing per request. Spans are named by route template
(``POST /api/v1/jobs/{job_id}``), not by path, so one job's id does not make a span name of
its own. A WebSocket's per-message spans are left out: a live session sends 50 frames a second.
"""
from __future__ import annotations

import re

from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import Scope

from batch import tracing

_CONVERTER = re.compile(r"{(\w+):\w+}")


def _template(routes: list[BaseRoute], scope: Scope, prefix: str = "") -> str | None:
    """The template of the route ``scope`` reaches, through mounts; None when none matches."""
    for route in routes:
        match, child = route.matches(scope)
        if match == Match.NONE:
            continue
        path = prefix + getattr(route, "path", "")
        if isinstance(route, Mount):
            return _template(route.routes, {**scope, **child}, path) or path + "/{path}"
        return path
    return None


def span_details(scope: Scope) -> tuple[str, dict]:
    """(span name, attributes) of a request: method and route template."""
    app = scope.get("app")
    route = _template(app.routes, scope) if app is not None else None
    route = _CONVERTER.sub(r"{\1}", route) if route else None
    method = scope.get("method", "WEBSOCKET") if scope["type"] == "http" else "WEBSOCKET"
    return (f"{method} {route}" if route else method), ({"http.route": route} if route else {})


def middleware() -> list[Middleware]:
    """The tracing middleware, or none when no tracer provider is installed."""
    if not tracing.enabled():
        return []
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.util.http import get_excluded_urls

    return [Middleware(OpenTelemetryMiddleware, default_span_details=span_details,
                       excluded_urls=get_excluded_urls("ASGI"), exclude_spans=["receive", "send"])]
