"""Reading a job submission: a multipart upload streamed to disk, or a JSON body with a link."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from batch.ingest import TooLarge
from web.errors import ApiError

MULTIPART_SLACK = 64 * 1024  # headers and boundaries around the file part
SEPARATE_CHOICES = ("auto", "on", "off")
MAX_TITLE = 200


def options_of(fields: dict) -> dict:
    separate = str(fields.get("separate") or "auto")
    if separate not in SEPARATE_CHOICES:
        raise ApiError(400, "invalid_option", f"separate must be one of {', '.join(SEPARATE_CHOICES)}")
    title = str(fields.get("title") or "").strip()[:MAX_TITLE]
    return {"separate": separate, "title": title}


async def _limited(request: Request, limit: int):
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(limit - MULTIPART_SLACK)
        yield chunk


async def read_upload(request: Request, folder: Path, limit: int) -> tuple[Path, str, dict]:
    """Save the ``file`` part into ``folder``; returns (path, original name, options)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + MULTIPART_SLACK:
        raise TooLarge(limit)
    parser = MultiPartParser(request.headers, _limited(request, limit + MULTIPART_SLACK), max_files=1, max_fields=10)
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise ApiError(400, "invalid_upload", str(error)) from None
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise ApiError(400, "invalid_upload", "send the recording as a multipart field named 'file'")
    name = Path(upload.filename or "upload").name
    path = folder / ("input" + Path(name).suffix.lower()[:8])
    try:
        with path.open("wb") as out:
            shutil.copyfileobj(upload.file, out, 1024 * 1024)
    finally:
        await form.close()
    if path.stat().st_size > limit:
        raise TooLarge(limit)
    return path, name, options_of(dict(form))


async def read_link(request: Request) -> tuple[str, dict]:
    """The ``url`` and options of a JSON submission."""
    try:
        body = json.loads(await request.body() or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("url"), str):
        raise ApiError(400, "invalid_request", 'send {"url": "https://www.youtube.com/watch?v=..."} or a file upload')
    return body["url"], options_of(body)
