"""The live gateway's ties to the rest of the app: finalize through the batch queue, notation,
and ``/api/v1/sessions/{id}``.

A session's recording is written losslessly into a new job's folder as it streams (on this
machine, whatever the storage); once the session stops (or is abandoned) it is stored with the
job's files and queued like an upload, so a batch worker scores it with
the same code and model, and the ``final`` message waits for that job. A session that sent
no audio leaves no folder. One whose job could not be queued keeps its recording: it is
recorded as a ``failed`` job with the recording as its input, retried in the background
until Redis takes it (until then the gateway remembers it in memory), so the retention
sweep keeps its folder like any failed job's and ``/api/v1/sessions/{id}`` answers
``failed`` after a restart too.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import redis
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from batch.config import Settings
from batch.jobs import FINAL_STATES, JobNotFound, JobStore
from batch.storage import Storage, spool
from stream.gateway import FINALIZE_FAILED
from stream.pcm import PcmFormat
from stream.recording import Recording
from stream.session import LiveSession
from web.access import key_name, live_admission
from web.errors import ApiError

SCORE_FORMATS = ("musicxml", "pdf", "midi", "midi_quantized")
QUEUE_RETRY_FIRST, QUEUE_RETRY_MAX = 0.5, 5.0  # seconds between tries to queue through a Redis outage
KEEP_RETRY_MAX = 60.0  # the longest pause between tries to record a session that could not be queued

log = logging.getLogger("drumscribe.live")


def downloads(job_id: str) -> dict[str, str]:
    return {fmt: f"/api/v1/jobs/{job_id}/download/{fmt}" for fmt in SCORE_FORMATS}


def session_title(started: float, session_id: str) -> str:
    """The score's title: when the session started, to the second, and the start of its id, so
    two sessions of the same minute (or second) get different titles and file names."""
    return time.strftime(f"Live session %Y-%m-%d %H:%M:%S ({session_id[:6]})", time.localtime(started))


class SessionFinalizer:
    """Queue a live session's recording as a batch job and wait for its score."""

    def __init__(self, store: JobStore, settings: Settings, timeout: float, storage: Storage | None = None,
                 poll: float = 0.05) -> None:
        self.store, self.settings, self.timeout, self.poll = store, settings, timeout, poll
        self.storage = storage or spool(settings)
        self._keeping: set[asyncio.Task] = set()

    @property
    def max_seconds(self) -> float:
        """The batch limit, which a session's recording must stay inside (see ``LiveSettings.within``)."""
        return self.settings.max_seconds

    def recording(self, fmt: PcmFormat) -> Recording:
        """The session's recording in the folder of the job that will score it (on this machine; with
        a bucket, it is stored there when the session ends)."""
        folder = self.settings.jobs_dir / self.store.new_id()
        folder.mkdir(parents=True)
        try:
            return Recording(folder, fmt)
        except OSError:
            folder.rmdir()
            raise

    async def __call__(self, session: LiveSession) -> dict:
        recording = session.recording
        await run_in_threadpool(recording.close)
        if session.samples_in == 0:
            await run_in_threadpool(recording.discard)
            return {"job_id": None, "status": "empty", "downloads": {}}
        job_id, name = recording.folder.name, recording.name
        title = session_title(time.time() - session.seconds, session.id)
        source = {"kind": "upload", "file": name, "name": title, "session_id": session.id}
        # A separated session's score is made from its recording separated again, whole-file windows.
        options = {"separate": "on" if session.separate else "off", "title": title}
        try:
            await run_in_threadpool(self.storage.publish, job_id, recording.folder, [name])
            with contextlib.suppress(OSError):  # the spool's folder, empty once its recording went to a bucket
                recording.folder.rmdir()
            await self._queue(source, options, job_id, session.id, session.owner)
        except Exception:
            self._keep_later(source, options, job_id, session.id, session.owner)
            raise
        job = await self._wait(job_id)
        message = {"job_id": job_id, "status": job["status"], "downloads": downloads(job_id)}
        if job["error"]:
            message["error"] = job["error"]
        return message

    async def _queue(self, source: dict, options: dict, job_id: str, session_id: str, key_name: str) -> None:
        """Queue the job, retrying through a passing Redis outage until the timeout; a refusal
        (or an outage that outlasts it) is raised, and the recording stays in its folder."""
        deadline, delay = time.monotonic() + self.timeout, QUEUE_RETRY_FIRST
        while True:
            try:
                await run_in_threadpool(self.store.create, source, options, job_id, key_name)
                await run_in_threadpool(self.store.link_session, session_id, job_id)
                return
            except (redis.ConnectionError, redis.TimeoutError):
                if time.monotonic() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(QUEUE_RETRY_MAX, delay * 2)

    def _keep_later(self, source: dict, options: dict, job_id: str, session_id: str, key_name: str) -> None:
        task = asyncio.get_running_loop().create_task(self._keep(source, options, job_id, session_id, key_name))
        self._keeping.add(task)
        task.add_done_callback(self._keeping.discard)

    async def _keep(self, source: dict, options: dict, job_id: str, session_id: str, key_name: str) -> None:
        """Record the session's job as failed (nothing if it was queued after all) and link the
        session to it, retrying with backoff until Redis takes both or the app stops."""
        delay = QUEUE_RETRY_FIRST
        while True:
            try:
                await run_in_threadpool(self.store.create_failed, source, options, job_id, FINALIZE_FAILED, key_name)
                await run_in_threadpool(self.store.link_session, session_id, job_id)
                return
            except redis.RedisError as error:
                log.warning("session %s: cannot record its failed job yet (%s); retrying in %g s",
                            session_id, type(error).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(KEEP_RETRY_MAX, delay * 2)

    async def close(self) -> None:
        """Stop the background tries (the app is stopping); a folder left unrecorded is an orphan."""
        for task in list(self._keeping):
            task.cancel()
        await asyncio.gather(*self._keeping, return_exceptions=True)

    async def _wait(self, job_id: str) -> dict:
        """The job once it ends, or as last seen at the timeout. The job is queued and will be
        scored whatever happens here, so a Redis fault while waiting only means asking again."""
        deadline = time.monotonic() + self.timeout
        job = {"status": "queued", "error": None}  # as it was queued, until Redis says more
        while True:
            try:
                job = await run_in_threadpool(self.store.public, job_id)
            except (redis.ConnectionError, redis.TimeoutError):
                pass
            if job["status"] in FINAL_STATES or time.monotonic() > deadline:
                return job
            await asyncio.sleep(self.poll)


async def show_session(request: Request) -> Response:
    """A session of the request's key (with keys on; another key's is answered as unknown)."""
    store: JobStore = request.app.state.store
    gateway = request.app.state.gateway
    session_id, owner = request.path_params["session_id"], key_name(request)
    try:  # the job first: a session remembered as failed in memory may have its job recorded since
        job_id = await run_in_threadpool(store.job_of_session, session_id)
        job = await run_in_threadpool(store.public, job_id, owner)
    except (JobNotFound, redis.ConnectionError, redis.TimeoutError) as error:
        failed = gateway.failures.get(session_id)  # what this process knows answers even with Redis down
        if failed is not None and owner in (None, failed["owner"]):
            return JSONResponse({name: value for name, value in failed.items() if name != "owner"})
        live = gateway.sessions.get(session_id)
        if live is not None and owner not in (None, live.session.owner):
            live = None
        if live is None:
            if isinstance(error, JobNotFound):
                raise ApiError(404, "not_found", "no such session") from None
            raise
        return JSONResponse({"session_id": session_id, "status": "live", "seconds": round(live.session.seconds, 3),
                             "hits_total": len(live.session.hits)})
    return JSONResponse({"session_id": session_id, "status": job["status"], "job_id": job_id, "job": job,
                         "downloads": downloads(job_id)})


async def live_socket(websocket: WebSocket) -> None:
    await websocket.app.state.gateway.serve(websocket, live_admission(websocket))


routes = [
    Route("/sessions/{session_id:str}", show_session, methods=["GET"]),
    WebSocketRoute("/stream", live_socket),
]
