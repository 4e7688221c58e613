"""The Starlette application: the batch API, health and metrics, and in-process workers.

With no ``REDIS_URL`` the app starts an embedded Redis and one worker thread; with one,
it only serves the API and ``drumscribe worker`` processes do the work. Either way the
code path is the same: only the connection differs.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import FileResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from batch.config import Settings
from batch.connection import close, connect, patient_twin
from batch.jobs import JobStore
from batch.score import notation_svg
from batch.storage import open_storage
from batch.worker import Worker
from models.detector import Detector
from models.separation import Separation, load_separation
from stream.config import LiveSettings
from stream.gateway import Gateway
from stream.scorer import LiveScorer
from web import access, http_tracing, jobs_api, live, preview, recordings, rtc
from web.live import SessionFinalizer
from web.errors import HANDLERS
from web.guard import Guard
from web.http_settings import HttpSettings
from web.pacing import BodyPace
from web.status import health, metrics

log = logging.getLogger("drumscribe.app")

STATIC = Path(__file__).parent / "static"


async def index(request) -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def create_app(settings: Settings | None = None, detector: Detector | None = None,
               live_settings: LiveSettings | None = None, separation: Separation | None = None,
               http_settings: HttpSettings | None = None) -> Starlette:
    """The app; ``separation`` defaults to what ``load_separation`` finds (unavailable without weights)."""
    settings = settings or Settings.from_env()
    live_settings = live_settings or LiveSettings.from_env()
    http_settings = http_settings or HttpSettings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        settings.jobs_dir.mkdir(parents=True, exist_ok=True)
        client = connect(settings, patient=False)  # a request waits on Redis about 2 s at most
        store = JobStore(client, settings)
        worker_client = patient_twin(client)  # in-process workers ride out longer faults
        app.state.settings, app.state.store = settings, store
        app.state.quotas = quotas = access.Quotas(client, http_settings)
        renewing = asyncio.get_running_loop().create_task(quotas.sessions.renew_forever())
        app.state.storage = storage = open_storage(settings)
        app.state.detector = detector or Detector()
        app.state.separation = separation or load_separation()
        if not app.state.separation.available:
            log.info("drum separation unavailable: %s", app.state.separation.reason)
        workers = [Worker(JobStore(worker_client, settings), app.state.detector, settings, separation=app.state.separation,
                          storage=storage) for _ in range(settings.in_process_workers)]
        threads = [threading.Thread(target=w.run, name=f"worker-{i}", daemon=True) for i, w in enumerate(workers)]
        for thread in threads:
            thread.start()
        app.state.workers = workers
        scorer = LiveScorer(notation_svg)  # the live tempo, and the notation unless it is turned off
        finalizer = SessionFinalizer(store, settings, live_settings.finalize_timeout, storage)
        app.state.gateway = Gateway(app.state.detector, live_settings, finalizer,
                                    scorer=scorer, separator=app.state.separation.separator)
        app.state.rtc = rtc.RtcPeers()
        try:
            yield
        finally:
            await app.state.rtc.close()  # WebRTC peers first: their sessions finalize with the gateway's
            await app.state.gateway.shutdown()
            await finalizer.close()
            renewing.cancel()
            scorer.close()
            for worker in workers:
                worker.stop.set()
            for thread in threads:
                thread.join(timeout=30)
            worker_client.close()
            close(client)

    routes = [
        Mount("/api/v1", routes=[*jobs_api.routes, *preview.routes, *recordings.routes, *live.routes, *rtc.routes,
                               *access.routes, Route("/health", health)]),
        Route("/metrics", metrics),
        Route("/", index),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    # A request's span (when tracing is on) around everything; Host/Origin next: a refused
    # request is not read at all; then the API key (or the anonymous rate limit); then the body's pace.
    middleware = [*http_tracing.middleware(), Middleware(Guard, settings=http_settings),
                  Middleware(access.Access, settings=http_settings), Middleware(BodyPace, settings=http_settings)]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=HANDLERS, middleware=middleware)
    app.state.http = http_settings
    return app
