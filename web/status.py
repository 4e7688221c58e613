"""``/api/v1/health`` and ``/metrics``: what an operator and Prometheus look at.

Both are open to anyone who can reach the server, so they show counts, not worker host
names and PIDs or Redis' address in an error; ``DRUMSCRIBE_HEALTH_DETAILS=1`` adds those
to ``/health`` where only operators can reach it. With API keys on, ``/health`` shows them to
an operator key only, and ``/metrics`` answers only an operator key (``web.access``).

Health is ``ok``; ``degraded`` (still HTTP 200: the API takes jobs, but no worker has read the
queue within the heartbeat TTL, or none runs one of the stages (``worker --stages``), so jobs
stop; ``reason`` says which); or
``unavailable`` (HTTP 503: Redis does not answer). Every figure costs O(1) Redis work per request.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from batch.jobs import JobStore
from models.detector import Detector
from models.separation import Separation
from web.access import is_operator


def _health(store: JobStore, detector: Detector, separation: Separation, details: bool) -> dict:
    try:
        store.redis.ping()
        redis_ok, workers = True, store.live_workers()
        by_stage = store.live_workers_by_stage()
        waiting, running = store.queue_depth()
    except Exception as error:  # any Redis failure is exactly what health must report
        redis = {"ok": False, "error": str(error) if details else type(error).__name__}
        return {"status": "unavailable", "redis": redis, "separation": separation.status()}
    card = detector.card
    unserved = [stage for stage, count in by_stage.items() if not count]
    report = {
        "status": "ok" if workers and not unserved else "degraded",
        "redis": {"ok": redis_ok, "embedded": hasattr(store.redis, "embedded_server")},
        "workers": {"alive": len(workers), "by_stage": by_stage, **({"names": sorted(workers)} if details else {})},
        "queue": {"waiting": waiting, "running": running},
        "model": {"name": card.name, "version": card.version, "lookahead_ms": card.lookahead_ms,
                  "sample_rate": card.sample_rate},
        "separation": separation.status(),
    }
    if not workers:
        report["reason"] = (f"{waiting} waiting job(s), and no worker reads the queue" if waiting
                            else "no worker reads the queue: new jobs would wait")
    elif unserved:
        report["reason"] = f"no worker runs the {', '.join(unserved)} stage(s): jobs would stop there"
    return report


async def health(request: Request) -> Response:
    state = request.app.state
    # with keys on, the details are an operator key's; with keys off, DRUMSCRIBE_HEALTH_DETAILS=1 shows them
    details = is_operator(request) if state.http.keys_required else state.http.health_details
    report = await run_in_threadpool(_health, state.store, state.detector, state.separation, details)
    return JSONResponse(report, status_code=200 if report["status"] != "unavailable" else 503)


class ServiceCollector:
    """Reads the shared figures from Redis at scrape time, so any API replica reports them all."""

    def __init__(self, store: JobStore, detector: Detector) -> None:
        self.store, self.detector = store, detector

    def collect(self):
        jobs = GaugeMetricFamily("drumscribe_jobs", "Jobs held in Redis (within retention) by state", labels=["state"])
        for state, count in self.store.count_by_state().items():
            jobs.add_metric([state], count)
        yield jobs
        waiting, running = self.store.queue_depth()
        yield GaugeMetricFamily("drumscribe_queue_waiting", "Queued entries no worker has taken", value=waiting)
        yield GaugeMetricFamily("drumscribe_queue_running", "Entries held by a worker", value=running)
        yield GaugeMetricFamily("drumscribe_workers", "Workers that read the queue within the heartbeat TTL",
                               value=len(self.store.live_workers()))
        stages = SummaryMetricFamily("drumscribe_stage_seconds", "Time spent per pipeline stage", labels=["stage"])
        for stage, (total, count) in self.store.stage_totals().items():
            stages.add_metric([stage], count_value=count, sum_value=total)
        yield stages
        model = self.detector.model
        yield CounterMetricFamily("drumscribe_inference_seconds", "Network time in this process",
                                  value=model.inference_seconds)
        yield CounterMetricFamily("drumscribe_inference_calls", "Network calls in this process",
                                  value=model.inference_calls)


async def metrics(request: Request) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(request.app.state.store, request.app.state.detector))
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
