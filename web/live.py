"""The live gateway's ties to the rest of the app: finalize through the batch queue, notation,
and ``/api/v1/sessions/{id}``.

A session's recording is written losslessly into a new job's folder as it streams; once the
session stops (or is abandoned) it is queued like an upload, so a batch worker scores it with
the same code and model, and the ``final`` message waits for that job. A session that sent
no audio leaves no folder; one whose job could not be queued keeps its recording and is
reported ``failed`` by ``/api/v1/sessions/{id}``.
"""
from __future__ import annotations

import asyncio
import time

import redis
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from batch.config import Settings
from batch.jobs import FINAL_STATES, JobNotFound, JobStore
from stream.pcm import PcmFormat
from stream.recording import Recording
from stream.session import LiveSession
from web.errors import ApiError

SCORE_FORMATS = ("musicxml", "pdf", "midi")
QUEUE_RETRY_FIRST, QUEUE_RETRY_MAX = 0.5, 5.0  # seconds between tries to queue through a Redis outage


def downloads(job_id: str) -> dict[str, str]:
    return {fmt: f"/api/v1/jobs/{job_id}/download/{fmt}" for fmt in SCORE_FORMATS}


class SessionFinalizer:
    """Queue a live session's recording as a batch job and wait for its score."""

    def __init__(self, store: JobStore, settings: Settings, timeout: float, poll: float = 0.05) -> None:
        self.store, self.settings, self.timeout, self.poll = store, settings, timeout, poll

    @property
    def max_seconds(self) -> float:
        """The batch limit, which a session's recording must stay inside (see ``LiveSettings.within``)."""
        return self.settings.max_seconds

    def recording(self, fmt: PcmFormat) -> Recording:
        """The session's recording in the folder of the job that will score it."""
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
        title = time.strftime("Live session %Y-%m-%d %H:%M", time.localtime(time.time() - session.seconds))
        source = {"kind": "upload", "file": name, "name": title, "session_id": session.id}
        # A separated session's score is made from its recording separated again, whole-file windows.
        options = {"separate": "on" if session.separate else "off", "title": title}
        await self._queue(source, options, job_id, session.id)
        job = await self._wait(job_id)
        message = {"job_id": job_id, "status": job["status"], "downloads": downloads(job_id)}
        if job["error"]:
            message["error"] = job["error"]
        return message

    async def _queue(self, source: dict, options: dict, job_id: str, session_id: str) -> None:
        """Queue the job, retrying through a passing Redis outage until the timeout; a refusal
        (or an outage that outlasts it) is raised, and the recording stays in its folder."""
        deadline, delay = time.monotonic() + self.timeout, QUEUE_RETRY_FIRST
        while True:
            try:
                await run_in_threadpool(self.store.create, source, options, job_id)
                await run_in_threadpool(self.store.link_session, session_id, job_id)
                return
            except (redis.ConnectionError, redis.TimeoutError):
                if time.monotonic() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(QUEUE_RETRY_MAX, delay * 2)

    async def _wait(self, job_id: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            job = await run_in_threadpool(self.store.public, job_id)
            if job["status"] in FINAL_STATES or time.monotonic() > deadline:
                return job
            await asyncio.sleep(self.poll)


async def show_session(request: Request) -> Response:
    store: JobStore = request.app.state.store
    session_id = request.path_params["session_id"]
    failed = request.app.state.gateway.failures.get(session_id)
    if failed is not None:
        return JSONResponse(failed)
    try:
        job_id = await run_in_threadpool(store.job_of_session, session_id)
        job = await run_in_threadpool(store.public, job_id)
    except JobNotFound:
        live = request.app.state.gateway.sessions.get(session_id)
        if live is None:
            raise ApiError(404, "not_found", "no such session") from None
        return JSONResponse({"session_id": session_id, "status": "live", "seconds": round(live.session.seconds, 3),
                             "hits_total": len(live.session.hits)})
    return JSONResponse({"session_id": session_id, "status": job["status"], "job_id": job_id, "job": job,
                         "downloads": downloads(job_id)})


async def live_socket(websocket: WebSocket) -> None:
    await websocket.app.state.gateway.serve(websocket)


routes = [
    Route("/sessions/{session_id:str}", show_session, methods=["GET"]),
    WebSocketRoute("/stream", live_socket),
]
