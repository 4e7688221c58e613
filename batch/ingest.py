"""Getting a recording onto disk: streamed uploads with a size limit, and YouTube links.

Links are checked before anything is queued (``batch.links``: length, http(s), no credentials,
no port but the default, an allowed host, public addresses) and stored in normal form. Downloads
go through the ``yt-dlp`` library (``batch.fetch``): YouTube's extractors only for YouTube links,
every request and redirect checked before it is sent, audio only and without post-processing,
so no ``ffmpeg`` binary is needed: PyAV decodes the result. A failed download's message is
ours or the server's status, never a URL it was sent to.
"""
from __future__ import annotations

import re
from pathlib import Path

from batch.links import LinkRefused, check_link, parse
from models.audio import AudioError


class IngestError(Exception):
    """Input refused before any work is queued; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class TooLarge(IngestError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "too_large", f"the upload is larger than the limit of {limit // (1024 * 1024)} MB")


def check_url(url: str, allowed_hosts: tuple[str, ...]) -> str:
    """The link in normal form, if it may be fetched; else ``IngestError`` (400) saying why."""
    try:
        return check_link(url, allowed_hosts).url
    except LinkRefused as error:
        raise IngestError(400, error.code, str(error)) from None


def audio_error_status(error: AudioError) -> int:
    """The HTTP status for an unusable recording."""
    return {"unsupported_media": 415, "too_long": 413, "too_large": 413, "not_found": 400}.get(error.code, 422)


def download(url: str, folder: Path, max_bytes: int, max_seconds: float) -> Path:
    """Fetch the audio of ``url`` (as ``check_url`` left it) into ``folder``; returns the file."""
    import yt_dlp

    from batch.fetch import GuardedYoutubeDL

    def too_long(info: dict, *, incomplete: bool) -> str | None:
        duration = info.get("duration")
        if duration and duration > max_seconds:
            return f"the video is longer than the limit of {max_seconds / 60:g} minutes"
        return None

    options = {
        "format": "bestaudio/best",
        "outtmpl": str(folder / "download.%(ext)s"),
        "noplaylist": True,
        "max_filesize": max_bytes,
        "match_filter": too_long,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "postprocessors": [],
        "socket_timeout": 30,
        "retries": 2,
        "cachedir": False,
    }
    try:
        link = parse(url)
    except LinkRefused as error:  # a job queued before links were normalised
        raise AudioError("unsupported_media", f"could not download the link: {error}") from None
    try:
        with GuardedYoutubeDL(link, options) as ydl:
            info = ydl.extract_info(url, download=False, process=False) or {}
            if info.get("_type") in ("playlist", "multi_video"):
                raise AudioError("unsupported_media", "the link is a playlist or channel; link one video")
            info = ydl.process_ie_result(info, download=True) or {}
    except yt_dlp.utils.DownloadError as error:
        raise AudioError("unsupported_media", f"could not download the link: {_reason(error)}") from None
    reason = too_long(info, incomplete=False)
    if reason:
        raise AudioError("too_long", reason)
    files = [p for p in folder.glob("download.*") if not p.name.endswith((".part", ".ytdl"))]
    if not files:
        raise AudioError("unsupported_media", "the link gave no audio (too large, or not a video)")
    return files[0]


_URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE)


def _reason(error: Exception) -> str:
    """Why a download failed, fit to show anyone: no URL it was sent to, no internal host."""
    from yt_dlp.networking.exceptions import HTTPError, TransportError

    from batch.fetch import FetchRefused

    for cause in _causes(error):
        if isinstance(cause, FetchRefused):
            return str(cause)
        if isinstance(cause, HTTPError):
            return f"the server answered HTTP {cause.status}"
        if isinstance(cause, TransportError):
            return "the server could not be reached"
    return _URL.sub("(a link)", str(error).removeprefix("ERROR: "))


def _causes(error: Exception) -> list[BaseException]:
    """``error`` and what caused it, as yt-dlp chains them (``exc_info``, ``cause``, ``__cause__``)."""
    found: list[BaseException] = []
    pending: list[BaseException | None] = [error]
    while pending and len(found) < 16:
        item = pending.pop(0)
        if item is None or any(item is seen for seen in found):
            continue
        found.append(item)
        exc_info = getattr(item, "exc_info", None)
        pending += [exc_info[1] if isinstance(exc_info, tuple) else None, getattr(item, "cause", None),
                    item.__cause__, item.__context__]
    return found
