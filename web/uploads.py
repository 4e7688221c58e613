"""Reading a job submission: a multipart upload streamed to disk, or a JSON body with a link.

While an upload streams in, its job folder is touched every ``TOUCH_SECONDS`` (Starlette
spools the file part elsewhere until the body is complete, so the folder itself would look
idle): the retention sweep removes only folders idle for its grace, and a slow 200 MB upload
can take longer than that.

Both are validated by schema: ``separate`` one of auto/on/off, ``title`` at most
``MAX_TITLE`` characters (a file name's longest, as the page sends a file's name), a link
at most ``batch.links.MAX_URL_CHARS`` characters, a ``webhook_url`` of the same form as a link
(``batch.links.parse``), and nothing else.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from batch.ingest import TooLarge
from batch.links import MAX_URL_CHARS, LinkRefused, parse
from web.bodies import read_json, validate
from web.errors import ApiError

MULTIPART_SLACK = 64 * 1024  # headers and boundaries around the file part
MAX_TITLE = 256
TOUCH_SECONDS = 2.0  # how often a job folder is marked busy while its upload streams


class JobOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    separate: Literal["auto", "on", "off"] = "auto"
    title: str = Field(default="", max_length=MAX_TITLE)
    webhook_url: str = Field(default="", max_length=MAX_URL_CHARS)

    @field_validator("webhook_url")
    @classmethod
    def _webhook_link(cls, url: str) -> str:
        """The form of a link (http(s), no credentials...) in normal form; its address is checked later."""
        try:
            return parse(url).url if url else ""
        except LinkRefused as error:
            raise ValueError(str(error)) from None

    def as_dict(self) -> dict:
        return {"separate": self.separate, "title": self.title, **({"webhook_url": self.webhook_url} if self.webhook_url else {})}


class LinkSubmission(JobOptions):
    url: str = Field(min_length=1, max_length=MAX_URL_CHARS)


async def _limited(request: Request, limit: int, folder: Path):
    """The body's chunks up to ``limit`` bytes, touching ``folder`` as they come."""
    size, touched = 0, time.monotonic()
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(limit - MULTIPART_SLACK)
        if time.monotonic() - touched >= TOUCH_SECONDS:
            os.utime(folder)  # still arriving: not an orphan for the retention sweep
            touched = time.monotonic()
        yield chunk


async def read_upload(request: Request, folder: Path, limit: int) -> tuple[Path, str, dict]:
    """Save the ``file`` part into ``folder``; returns (path, original name, options)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + MULTIPART_SLACK:
        raise TooLarge(limit)
    parser = MultiPartParser(request.headers, _limited(request, limit + MULTIPART_SLACK, folder), max_files=1, max_fields=10)
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise ApiError(400, "invalid_upload", str(error)) from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "invalid_upload", "send the recording as a multipart field named 'file'")
        fields = {key: value for key, value in form.multi_items() if key != "file"}
        options = validate(JobOptions, fields, "invalid_option").as_dict()
        name = Path(upload.filename or "upload").name
        path = folder / ("input" + Path(name).suffix.lower()[:8])
        with path.open("wb") as out:
            shutil.copyfileobj(upload.file, out, 1024 * 1024)
    finally:
        await form.close()
    if path.stat().st_size > limit:
        raise TooLarge(limit)
    return path, name, options


async def read_link(request: Request, max_json_bytes: int) -> tuple[str, dict]:
    """The ``url`` and options of a JSON submission."""
    link = validate(LinkSubmission, await read_json(request, max_json_bytes), "invalid_request")
    return link.url, link.as_dict()
