"""OpenTelemetry: one job's spans form one trace, from the HTTP request through the Redis Stream
to every worker stage, and a live session's from its opening to its score; exported over OTLP
only when an endpoint is set. Spans are read from the SDK's in-memory exporter."""
from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.testclient import TestClient

from batch import tracing
from batch.connection import close, connect
from batch.jobs import JobStore
from tests.test_batch_service import submit, wait_for
from tests.test_live import app_client, collect_until_final, pcm
from tests.test_webhooks import Receiver
from web.app import create_app

EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """The in-memory exporter behind this process's tracer provider (installed on first use: a
    process has one provider, so later tests of the same run are traced too)."""
    if not getattr(EXPORTER, "installed", False):
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            provider = TracerProvider()
            trace.set_tracer_provider(provider)
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        EXPORTER.installed = True
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()


def span_named(exporter: InMemorySpanExporter, name: str, timeout: float = 20.0, **attributes) -> ReadableSpan:
    """The finished span ``name`` with ``attributes``, waiting for it (a worker's span ends after the job)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for span in exporter.get_finished_spans():
            if span.name == name and all(span.attributes.get(k) == v for k, v in attributes.items()):
                return span
        time.sleep(0.05)
    raise AssertionError(f"no span {name} {attributes}: {[s.name for s in exporter.get_finished_spans()]}")


def children(exporter: InMemorySpanExporter, parent: ReadableSpan) -> dict[str, ReadableSpan]:
    return {s.name: s for s in exporter.get_finished_spans()
            if s.parent is not None and s.parent.span_id == parent.context.span_id}


def assert_child(span: ReadableSpan, parent: ReadableSpan) -> None:
    assert span.context.trace_id == parent.context.trace_id, (span.name, parent.name)
    assert span.parent is not None and span.parent.span_id == parent.context.span_id, (span.name, parent.name)


def test_one_job_is_one_trace_from_the_request_through_every_stage(spans, settings, beat_wav):
    logged: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = logged.append
    handler.addFilter(tracing.LogContext())
    worker_log = logging.getLogger("drumscribe.worker")
    worker_log.addHandler(handler)
    worker_log.setLevel(logging.INFO)
    try:
        with TestClient(create_app(settings)) as client:
            job_id = submit(client, beat_wav, title="Traced").json()["id"]
            assert wait_for(client, job_id)["status"] == "succeeded"
            job = span_named(spans, "job", **{"drumscribe.job_id": job_id})
    finally:
        worker_log.removeHandler(handler)

    request = span_named(spans, "POST /api/v1/jobs")
    assert request.parent is None and request.kind == trace.SpanKind.SERVER
    assert request.attributes["http.route"] == "/api/v1/jobs"
    queue = span_named(spans, "queue", **{"drumscribe.job_id": job_id})
    assert_child(queue, request)
    assert queue.kind == trace.SpanKind.PRODUCER
    assert_child(job, queue)  # the worker thread shares no context with the request: only the message
    assert job.kind == trace.SpanKind.CONSUMER and job.attributes["drumscribe.status"] == "succeeded"
    stages = children(spans, job)
    assert {"decode", "detect", "score"} <= set(stages), set(stages)
    assert stages["decode"].end_time <= stages["detect"].start_time <= stages["detect"].end_time <= stages["score"].start_time
    assert_child(children(spans, stages["score"])["render"], stages["score"])
    assert all(s.end_time <= job.end_time for s in stages.values())

    attempt = next(r for r in logged if r.msg.startswith("job %s attempt"))
    assert attempt.trace_id == trace.format_trace_id(job.context.trace_id) and attempt.job_id == job_id


def test_each_webhook_attempt_is_a_span_of_the_jobs_trace(spans, settings, beat_wav):
    hooked = dataclasses.replace(settings, webhook_allow_private=True, webhook_first_retry_seconds=0.1)
    with Receiver([500]) as receiver, TestClient(create_app(hooked)) as client:
        job_id = submit(client, beat_wav, webhook_url=receiver.url).json()["id"]
        receiver.wait(2)
        queue = span_named(spans, "queue", **{"drumscribe.job_id": job_id})
        attempts = [span_named(spans, "webhook", **{"drumscribe.job_id": job_id, "drumscribe.attempt": n})
                    for n in (1, 2)]
    for attempt in attempts:
        assert_child(attempt, queue)
        assert attempt.kind == trace.SpanKind.CLIENT and attempt.attributes["drumscribe.event"] == "job.succeeded"
    assert [a.attributes["http.response.status_code"] for a in attempts] == [500, 200]
    assert [a.status.status_code for a in attempts] == [trace.StatusCode.ERROR, trace.StatusCode.UNSET]


def test_the_queued_message_carries_the_trace_context(spans, settings):
    client = connect(settings)
    try:
        store = JobStore(client, settings)
        store.ensure_queue()
        with tracing.tracer.start_as_current_span("caller") as caller:
            job_id = store.create({"kind": "upload", "file": "x.wav"}, {})
        (_, message), = client.xrange(settings.stream_name)
        assert message["job"] == job_id
        version, trace_id, parent_id, flags = message["traceparent"].split("-")
        queue = span_named(spans, "queue", **{"drumscribe.job_id": job_id})
        assert trace_id == trace.format_trace_id(caller.get_span_context().trace_id)
        assert parent_id == trace.format_span_id(queue.context.span_id)  # the worker's span hangs under the queue span
        assert store.claim("w").trace == {"traceparent": message["traceparent"]}
    finally:
        close(client)


def test_a_live_session_is_traced_from_its_opening_to_its_score(spans, settings, beat_wav):
    data = pcm(beat_wav, "s16le", 1, 48000)[: 48000 * 2 * 4]  # 4 s
    with app_client(settings) as client, client.websocket_connect("/api/v1/stream") as ws:
        ws.send_json({"type": "start", "sample_rate": 48000, "channels": 1, "encoding": "s16le"})
        session_id = ws.receive_json()["session_id"]
        for start in range(0, len(data), 3840):
            ws.send_bytes(data[start:start + 3840])
        ws.send_json({"type": "stop"})
        _, others = collect_until_final(ws)
        final = others[-1]
        assert final["type"] == "final" and final["status"] == "succeeded", final
        job = span_named(spans, "job", **{"drumscribe.job_id": final["job_id"]})
    opened = span_named(spans, "live.open", **{"drumscribe.session_id": session_id})
    connection = span_named(spans, "WEBSOCKET /api/v1/stream")
    assert_child(opened, connection)
    finalize = span_named(spans, "live.finalize", **{"drumscribe.session_id": session_id})
    assert_child(finalize, opened)
    assert finalize.attributes["drumscribe.job_id"] == final["job_id"]
    queue = span_named(spans, "queue", **{"drumscribe.job_id": final["job_id"]})
    assert_child(queue, finalize)
    assert_child(job, queue)
    assert {"decode", "detect", "score"} <= set(children(spans, job))


class Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver: keeps each export request's body."""

    bodies: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:
        self.bodies.append((self.path, self.rfile.read(int(self.headers["content-length"]))))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


CHILD = """
import sys
from opentelemetry import trace
from batch import tracing
from web import http_tracing
on = tracing.configure("drumscribe-test")
print(on, tracing.enabled(), len(http_tracing.middleware()))
with tracing.tracer.start_as_current_span("exported"):
    print(bool(tracing.carrier()))
if on:
    trace.get_tracer_provider().shutdown()
"""


def run_child(env: dict[str, str]) -> list[str]:
    import os

    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", CHILD], env={**clean, **env}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_off_without_an_endpoint_and_exported_over_otlp_with_one():
    assert run_child({}) == ["False", "False", "0", "False"]  # no provider, no middleware, no trace fields

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        assert run_child({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}) == ["True", "True", "1", "True"]
    finally:
        server.shutdown()
    (path, body), = Collector.bodies
    assert path == "/v1/traces"
    request = ExportTraceServiceRequest.FromString(body)
    resource = request.resource_spans[0]
    assert {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"] == "drumscribe-test"
    assert [s.name for s in resource.scope_spans[0].spans] == ["exported"]


def test_a_webrtc_session_is_traced_from_its_offer_to_its_score(spans, settings):
    import asyncio

    from models.synthetic import rock_beat
    from tests.conftest import RunningServer
    from tests.test_rtc import RATE, rtc_session

    audio, _ = rock_beat(bars=2, bpm=120, rate=RATE)
    with RunningServer(create_app(settings)) as server:
        async def run() -> dict:
            messages, pc = await rtc_session(server.http, audio)
            await pc.close()
            return messages[-1]

        final = asyncio.run(run())
        assert final["type"] == "final" and final["status"] == "succeeded", final
        job = span_named(spans, "job", **{"drumscribe.job_id": final["job_id"]})
    offer = span_named(spans, "POST /api/v1/rtc/offer")
    opened = span_named(spans, "live.open", **{"drumscribe.session_id": final["session_id"]})
    assert_child(opened, offer)
    finalize = span_named(spans, "live.finalize", **{"drumscribe.session_id": final["session_id"]})
    assert_child(finalize, opened)
    assert_child(span_named(spans, "queue", **{"drumscribe.job_id": final["job_id"]}), finalize)
    assert job.context.trace_id == offer.context.trace_id
