"""The batch HTTP API: submit, inspect, follow, download, cancel and delete jobs."""
from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path

import redis
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from batch.ingest import IngestError, audio_error_status, check_url
from batch import webhooks
from batch.jobs import FINAL_STATES, JobNotFound, JobStore
from batch.links import LinkRefused
from batch.keys import ApiKey
from batch.score import FILES as OUTPUT_FILES
from batch.storage import ByteRange, RangeNotSatisfiable, attachment
from models.audio import AudioError, read_audio
from web.access import api_key, key_name
from web.errors import CLOSE, REDIS_RETRY_SECONDS, ApiError
from web.quotas import retry_after
from web.uploads import read_link, read_upload

BYTE_RANGE = re.compile(r"bytes=(\d+)-(\d*)")
MEDIA_TYPES = {
    "musicxml": "application/vnd.recordare.musicxml+xml",
    "pdf": "application/pdf",
    "midi": "audio/midi",
    "midi_quantized": "audio/midi",
    "json": "application/json",
}
EVENT_POLL_SECONDS = 0.25
EVENT_KEEPALIVE_SECONDS = 15.0
JOB_RETRY_SECONDS = 10  # Retry-After of a key over its job limit: a short job's time


def _store(request: Request) -> JobStore:
    return request.app.state.store


async def visible_job(request: Request) -> dict:
    """The job, if the request's key may see it (another key's job is as unknown as a wrong id)."""
    try:
        return await run_in_threadpool(_store(request).public, request.path_params["job_id"], key_name(request))
    except JobNotFound:
        raise ApiError(404, "not_found", "no such job") from None


async def submit(request: Request) -> Response:
    """Queue a job; on any failure (a refused body, a client gone, Redis down) its files go too.
    An upload is checked in a workspace (the job's folder, or a temporary one beside a bucket)
    and stored before the job is queued."""
    store, storage = _store(request), request.app.state.storage
    key, slots = api_key(request), request.app.state.quotas.jobs
    if key is not None and not await run_in_threadpool(slots.has_room, key):
        raise _too_many_jobs(key, CLOSE)  # before the body is read
    job_id = store.new_id()
    try:
        with storage.workspace(job_id) as folder:
            source, options = await _intake(request, folder)
            await _check_webhook(request, options)
            if options.get("separate") == "on" and not _separation_possible(request):
                raise ApiError(422, "separation_unavailable",
                               f"separate=on, but drum separation is unavailable: {request.app.state.separation.reason}; "
                               "submit with separate=auto or off")
            if source["kind"] == "upload":
                await run_in_threadpool(storage.publish, job_id, folder, [source["file"]])
        if key is not None and not await run_in_threadpool(slots.take, key, job_id):
            raise _too_many_jobs(key)
        await run_in_threadpool(store.create, source, options, job_id, key.name if key is not None else "")
    except BaseException:
        with contextlib.suppress(OSError):  # a store that fails now leaves an orphan for the sweep
            await run_in_threadpool(storage.delete, job_id)
        raise
    return JSONResponse({"id": job_id, "status": "queued"}, status_code=202,
                        headers={"Location": f"/api/v1/jobs/{job_id}"})


def _too_many_jobs(key: ApiKey, headers: dict[str, str] | None = None) -> ApiError:
    return ApiError(429, "too_many_jobs", f"this key has its limit of {key.max_jobs} jobs queued or running; "
                    "submit again when one has ended", {**retry_after(JOB_RETRY_SECONDS), **(headers or {})})


async def _intake(request: Request, folder: Path) -> tuple[dict, dict]:
    """The job's source and options, read from an upload or a link, as ``ApiError`` when refused."""
    settings = request.app.state.settings
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith("multipart/form-data"):
            path, name, options = await read_upload(request, folder, settings.max_upload_bytes)
            await run_in_threadpool(read_audio, path, settings.max_seconds)
            return {"kind": "upload", "file": path.name, "name": name}, options
        if content_type.startswith("application/json"):
            url, options = await read_link(request, request.app.state.http.max_json_bytes)
            url = await run_in_threadpool(check_url, url, settings.allowed_hosts)
            return {"kind": "url", "url": url}, options
    except AudioError as error:
        reason = str(error).split(": ", 1)[-1]  # drop our internal file name
        raise ApiError(audio_error_status(error), error.code, f"the recording cannot be used: {reason}") from None
    except IngestError as error:
        raise ApiError(error.status, error.code, str(error)) from None
    raise ApiError(415, "unsupported_media", "send multipart/form-data with a file, or JSON with a url")


async def _check_webhook(request: Request, options: dict) -> None:
    """Refuse a webhook to a private, loopback or link-local address now (it is checked again at
    every delivery, as names may move), unless the operator allows them."""
    if options.get("webhook_url"):
        try:
            await run_in_threadpool(webhooks.check_url, options["webhook_url"],
                                    request.app.state.settings.webhook_allow_private)
        except LinkRefused as error:
            raise ApiError(400, "webhook_not_allowed", f"webhook_url: {error}") from None


def _separation_possible(request: Request) -> bool:
    """Whether a ``separate=on`` job can run. Without ``REDIS_URL`` every worker is in this process
    and has this process's separation; with it, workers elsewhere may have weights this API lacks,
    so the job is queued and such a worker fails it with a clear error if it has none."""
    settings = request.app.state.settings
    return request.app.state.separation.available or settings.redis_url is not None


async def list_jobs(request: Request) -> Response:
    """The newest jobs: the request's key's own with keys on."""
    return JSONResponse({"jobs": await run_in_threadpool(_store(request).recent, 20, key_name(request))})


async def show(request: Request) -> Response:
    return JSONResponse(await visible_job(request))


async def events(request: Request) -> Response:
    """Server-sent events: the job's state, polled every ``EVENT_POLL_SECONDS``, each time it
    changed, until the job ends (a stage shorter than the poll may pass unseen). A Redis fault
    midway ends the stream with an ``unavailable`` event (the client may reconnect), not a
    broken response."""
    first = await visible_job(request)
    store, job_id = _store(request), first["id"]

    async def stream():
        last, quiet = None, 0.0
        while True:
            try:
                job = await run_in_threadpool(store.public, job_id)
            except JobNotFound:
                yield "event: deleted\ndata: {}\n\n"
                return
            except (redis.ConnectionError, redis.TimeoutError):
                yield f'event: unavailable\ndata: {{"retry_after": {REDIS_RETRY_SECONDS}}}\n\n'
                return
            if job != last:
                yield f"data: {json.dumps(job)}\n\n"
                last, quiet = job, 0.0
            if job["status"] in FINAL_STATES:
                return
            await asyncio.sleep(EVENT_POLL_SECONDS)
            quiet += EVENT_POLL_SECONDS
            if quiet >= EVENT_KEEPALIVE_SECONDS:
                yield ": keep-alive\n\n"
                quiet = 0.0

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def gone() -> ApiError:
    return ApiError(410, "gone", "the job's files are gone")


def finished_file(job: dict, fmt: str) -> tuple[str, str]:
    """The stored name and media type of a succeeded job's output ``fmt``."""
    if fmt not in MEDIA_TYPES:
        raise ApiError(404, "not_found", f"unknown format {fmt!r}; one of {', '.join(MEDIA_TYPES)}")
    if job["status"] != "succeeded":
        raise ApiError(409, "not_ready", f"the job is {job['status']}; results exist once it has succeeded")
    return OUTPUT_FILES[fmt], MEDIA_TYPES[fmt]


def _byte_range(request: Request) -> ByteRange | None:
    """The one byte range a request asks for (``bytes=first-`` or ``bytes=first-last``, as media
    players seek); None for the whole file, which is also the answer to ranges of other forms."""
    match = BYTE_RANGE.fullmatch(request.headers.get("range", "").strip())
    if match is None or (match[2] and int(match[2]) < int(match[1])):
        return None
    return int(match[1]), int(match[2]) if match[2] else None


async def send_stored(request: Request, job_id: str, name: str, media_type: str, filename: str | None = None) -> Response:
    """A stored file: served from the local folder, streamed from the bucket (a byte range of it
    too), or, for a download with ``DRUMSCRIBE_S3_PRESIGN_SECONDS`` set, a redirect to a presigned
    URL of the bucket."""
    storage, presign_seconds = request.app.state.storage, request.app.state.settings.presign_seconds
    path = storage.path(job_id, name)
    byte_range = _byte_range(request)
    if path is not None:
        if not path.is_file():
            raise gone()
        size = path.stat().st_size
        if byte_range is not None and byte_range[0] >= size:  # FileResponse's own 416 is not JSON
            raise _unsatisfiable(size)
        return FileResponse(path, media_type=media_type, filename=filename)
    if filename and presign_seconds > 0:
        if not await run_in_threadpool(storage.exists, job_id, name):
            raise gone()
        url = await run_in_threadpool(storage.presign, job_id, name, filename, media_type, presign_seconds)
        return RedirectResponse(url, status_code=307)
    try:
        blob = await run_in_threadpool(storage.open, job_id, name, byte_range)
    except FileNotFoundError:
        raise gone() from None
    except RangeNotSatisfiable as error:
        raise _unsatisfiable(error.total) from None
    headers = {"Content-Length": str(blob.size), "Accept-Ranges": "bytes"}
    if byte_range is not None:
        headers["Content-Range"] = blob.content_range
    if filename:
        headers["Content-Disposition"] = attachment(filename)
    return StreamingResponse(blob.chunks, status_code=206 if byte_range else 200, media_type=media_type,
                             headers=headers)


def _unsatisfiable(total: int) -> ApiError:
    """416 with the file's size, which HTTP asks for so that a client (the page's player) learns it."""
    return ApiError(416, "range_not_satisfiable", "the byte range starts past the end of the file",
                    {"Content-Range": f"bytes */{total}"})


async def result(request: Request) -> Response:
    job = await visible_job(request)
    return await send_stored(request, job["id"], *finished_file(job, "json"))


def file_stem(title: str) -> str:
    """A download's file name from the job's title: letters, digits, ``-_ .()`` and spaces kept,
    a time's colons as dots (``17.05.43``), anything else ``_``; no leading dot (a hidden file)."""
    kept = "".join(c if c.isalnum() or c in "-_ .()" else "." if c == ":" else "_" for c in title)
    return kept[:60].strip().lstrip(".")


async def download(request: Request) -> Response:
    job = await visible_job(request)
    name, media_type = finished_file(job, request.path_params["fmt"])
    stem = file_stem(job["title"] or "drumscribe") or "drumscribe"
    variant = " (quantized)" if request.path_params["fmt"] == "midi_quantized" else ""  # beside the performance MIDI
    return await send_stored(request, job["id"], name, media_type, filename=f"{stem}{variant}{Path(name).suffix}")


async def remove(request: Request) -> Response:
    """Cancel a queued or running job; delete a finished one with its files."""
    job = await visible_job(request)
    store = _store(request)
    if job["status"] not in FINAL_STATES:
        return JSONResponse(await run_in_threadpool(store.cancel, job["id"]))
    await run_in_threadpool(store.delete, job["id"])
    await run_in_threadpool(request.app.state.storage.delete, job["id"])
    return JSONResponse({"id": job["id"], "deleted": True})


routes = [
    Route("/jobs", submit, methods=["POST"]),
    Route("/jobs", list_jobs, methods=["GET"]),
    Route("/jobs/{job_id:str}", show, methods=["GET"]),
    Route("/jobs/{job_id:str}", remove, methods=["DELETE"]),
    Route("/jobs/{job_id:str}/events", events, methods=["GET"]),
    Route("/jobs/{job_id:str}/result", result, methods=["GET"]),
    Route("/jobs/{job_id:str}/download/{fmt:str}", download, methods=["GET"]),
]
