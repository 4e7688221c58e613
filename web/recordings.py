"""``GET /api/v1/jobs/{id}/audio``: the job's recording, for the page's player.

The recording is the job's input as it was stored: an upload (``input.*``), a live session's
``recording.flac`` or ``.wav``, or, for a link fetched on this machine, the downloaded file
(a bucket keeps no downloads). Served as stored, with byte ranges (seeking) from a local folder
or a bucket alike. The media type comes from an allow-list of audio and video suffixes, anything else
is ``application/octet-stream``: an upload named ``x.html`` is never served as a page.
"""
from __future__ import annotations

import json
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batch.jobs import JobNotFound
from web.errors import ApiError
from web.jobs_api import send_stored, visible_job

AUDIO_TYPES = {
    ".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".oga": "audio/ogg",
    ".opus": "audio/ogg", ".m4a": "audio/mp4", ".aac": "audio/aac", ".webm": "audio/webm", ".weba": "audio/webm",
    ".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".mkv": "video/x-matroska",
}
DOWNLOADS = "download"  # where a link's file is fetched into, in the job's folder (batch.pipeline)


def recording_name(request: Request, job_id: str) -> str | None:
    """The stored name of the job's recording; None when it keeps none."""
    try:
        source = json.loads(request.app.state.store.get(job_id)["source"])
    except JobNotFound:
        return None
    if "file" in source:
        return source["file"]
    folder = request.app.state.storage.path(job_id, DOWNLOADS)
    if folder is None or not folder.is_dir():
        return None
    fetched = sorted(p for p in folder.glob("download.*") if p.suffix.lower() in AUDIO_TYPES)
    return f"{DOWNLOADS}/{fetched[0].name}" if fetched else None


async def audio(request: Request) -> Response:
    job = await visible_job(request)
    name = await run_in_threadpool(recording_name, request, job["id"])
    if name is None:
        raise ApiError(404, "not_found", "this job keeps no recording")
    media_type = AUDIO_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")
    return await send_stored(request, job["id"], name, media_type)


routes = [Route("/jobs/{job_id:str}/audio", audio, methods=["GET"])]
