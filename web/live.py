"""The live gateway's ties to the rest of the app: finalize through the batch queue, notation,
and ``/api/v1/sessions/{id}``.

A stopped (or abandoned) session's recording is saved losslessly into a new job's folder
and queued like an upload, so a batch worker scores it with the same code and model; the
``final`` message waits for that job.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import soundfile as sf
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from batch.config import Settings
from batch.jobs import FINAL_STATES, JobNotFound, JobStore
from stream.session import LiveSession
from web.errors import ApiError

SCORE_FORMATS = ("musicxml", "pdf", "midi")


def save_recording(session: LiveSession, folder: Path) -> str:
    """Write what the client sent, bit-exact (so the batch job hears what the live session
    heard): FLAC for 16-bit input, float WAV otherwise."""
    audio, rate = session.recording(), session.fmt.sample_rate
    if session.fmt.encoding == "s16le":
        sf.write(folder / "recording.flac", audio, rate, subtype="PCM_16")
        return "recording.flac"
    sf.write(folder / "recording.wav", audio, rate, subtype="FLOAT")
    return "recording.wav"


def downloads(job_id: str) -> dict[str, str]:
    return {fmt: f"/api/v1/jobs/{job_id}/download/{fmt}" for fmt in SCORE_FORMATS}


class SessionFinalizer:
    """Queue a live session's recording as a batch job and wait for its score."""

    def __init__(self, store: JobStore, settings: Settings, timeout: float, poll: float = 0.05) -> None:
        self.store, self.settings, self.timeout, self.poll = store, settings, timeout, poll

    async def __call__(self, session: LiveSession) -> dict:
        if session.samples_in == 0:
            return {"job_id": None, "status": "empty", "downloads": {}}
        job_id = self.store.new_id()
        folder = self.settings.jobs_dir / job_id
        folder.mkdir(parents=True)
        name = await run_in_threadpool(save_recording, session, folder)
        title = time.strftime("Live session %Y-%m-%d %H:%M", time.localtime(time.time() - session.seconds))
        source = {"kind": "upload", "file": name, "name": title, "session_id": session.id}
        # A separated session's score is made from its recording separated again, whole-file windows.
        options = {"separate": "on" if session.separate else "off", "title": title}
        await run_in_threadpool(self.store.create, source, options, job_id)
        await run_in_threadpool(self.store.link_session, session.id, job_id)
        job = await self._wait(job_id)
        message = {"job_id": job_id, "status": job["status"], "downloads": downloads(job_id)}
        if job["error"]:
            message["error"] = job["error"]
        return message

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
