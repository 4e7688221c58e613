"""OpenTelemetry tracing: a job's trace from the HTTP request through the queue and every stage.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set:
then ``configure`` installs the SDK's tracer provider with a batching OTLP/HTTP exporter, which
reads the standard ``OTEL_*`` variables (headers, service name, sampler). Otherwise no provider
is installed and every span below is the API's no-op: nothing is recorded, nothing is sent, and
``carrier()`` is empty, so queued jobs carry no trace fields either.

The trace context crosses the Redis Stream as W3C ``traceparent`` (and ``tracestate``) fields of
the queued message: ``carrier()`` when a job is queued, ``extract()`` when a worker claims it.
Log lines carry the trace id of the current span and the job id of ``job_scope``
(``LogContext``, ``LOG_FORMAT``).
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from contextvars import ContextVar

from opentelemetry import context, propagate, trace
from opentelemetry.trace import Span, Status, StatusCode

tracer = trace.get_tracer("drumscribe")
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s [trace=%(trace_id)s job=%(job_id)s] %(message)s"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_job_id: ContextVar[str] = ContextVar("drumscribe_job_id", default="")


def configure(service_name: str) -> bool:
    """Install the OTLP exporting provider when an endpoint is configured; True if it did.
    ``OTEL_SERVICE_NAME`` overrides ``service_name``; ``OTEL_SDK_DISABLED=true`` keeps it off."""
    if not any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
        return False
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name})
    provider = TracerProvider(resource=resource)  # flushed and shut down at exit
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True


def enabled() -> bool:
    """Whether a real tracer provider is installed (by ``configure`` or a test)."""
    return not isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


def carrier() -> dict[str, str]:
    """The current trace context as W3C fields (``traceparent``, ``tracestate``); {} when off."""
    fields: dict[str, str] = {}
    propagate.inject(fields)
    return fields


def extract(fields: dict[str, str]) -> context.Context:
    """The context a queued message carried (an empty one if it carried none)."""
    return propagate.extract(fields)


def fail(span: Span, message: str) -> None:
    span.set_status(Status(StatusCode.ERROR, message))


@contextlib.contextmanager
def job_scope(job_id: str) -> Iterator[None]:
    """Log lines inside name ``job_id`` (see ``LogContext``)."""
    token = _job_id.set(job_id)
    try:
        yield
    finally:
        _job_id.reset(token)


class LogContext(logging.Filter):
    """Adds ``trace_id`` (32 hex digits, '-' outside a span) and ``job_id`` ('-') to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        span_context = trace.get_current_span().get_span_context()
        record.trace_id = trace.format_trace_id(span_context.trace_id) if span_context.is_valid else "-"
        record.job_id = _job_id.get() or "-"
        return True


def configure_logging(level: int = logging.INFO) -> None:
    """The commands' logging: ``LOG_FORMAT`` on stderr, every line with its trace and job ids."""
    logging.basicConfig(level=level, format=LOG_FORMAT)
    for handler in logging.getLogger().handlers:
        handler.addFilter(LogContext())
