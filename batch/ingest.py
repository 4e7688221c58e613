"""Getting a recording onto disk: streamed uploads with a size limit, and YouTube links.

Links are checked before anything is fetched: http(s) only, no credentials, and the host
must be on the allow-list (YouTube's hosts by default). IP literals, ``localhost`` and
hosts resolving to private, loopback or link-local addresses are refused unless the
operator listed that exact host. Downloads go through the ``yt-dlp`` library, audio only
and without post-processing, so no ``ffmpeg`` binary is needed: PyAV decodes the result.
"""
from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from urllib.parse import urlsplit

from batch.config import YOUTUBE_HOSTS
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
    """The URL, if it may be fetched; else ``IngestError`` (400) saying why."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise IngestError(400, "invalid_url", "that is not a valid link") from None
    if parts.scheme not in ("http", "https"):
        raise IngestError(400, "invalid_url", "only http and https links are accepted")
    if not host:
        raise IngestError(400, "invalid_url", "the link has no host")
    if parts.username or parts.password:
        raise IngestError(400, "invalid_url", "links with a user name or password are refused")
    if host not in allowed_hosts:
        raise IngestError(400, "host_not_allowed", f"links to {host} are not accepted; use a YouTube link")
    if _is_internal(host) and not _listed_literally(host, allowed_hosts):
        raise IngestError(400, "host_not_allowed", f"{host} is a local or private address")
    return url.strip()


def _listed_literally(host: str, allowed_hosts: tuple[str, ...]) -> bool:
    """True only for a local name or address the operator listed on purpose (tests, intranets)."""
    return host in allowed_hosts and host not in YOUTUBE_HOSTS


def _is_internal(host: str) -> bool:
    """An IP literal, localhost, or a name that resolves to a non-public address."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True  # links name hosts; bare addresses are refused
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False  # unresolvable here; the download will fail with its own message
    return any(not ipaddress.ip_address(a.split("%")[0]).is_global for a in addresses)


async def save_upload(chunks, dest: Path, limit: int) -> int:
    """Write an async iterator of byte chunks to ``dest``; ``TooLarge`` past ``limit`` bytes."""
    size = 0
    with dest.open("wb") as f:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise TooLarge(limit)
            f.write(chunk)
    return size


def audio_error_status(error: AudioError) -> int:
    """The HTTP status for an unusable recording."""
    return {"unsupported_media": 415, "too_long": 413, "not_found": 400}.get(error.code, 422)


def download(url: str, folder: Path, max_bytes: int, max_seconds: float) -> Path:
    """Fetch the audio of ``url`` into ``folder`` with yt-dlp; returns the file."""
    import yt_dlp

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
        with yt_dlp.YoutubeDL(options) as ydl:
            info = ydl.extract_info(url, download=True)
    except yt_dlp.utils.DownloadError as error:
        message = str(error).removeprefix("ERROR: ")
        raise AudioError("unsupported_media", f"could not download the link: {message}") from None
    reason = too_long(info or {}, incomplete=False)
    if reason:
        raise AudioError("too_long", reason)
    files = [p for p in folder.glob("download.*") if not p.name.endswith((".part", ".ytdl"))]
    if not files:
        raise AudioError("unsupported_media", "the link gave no audio (too large, or not a video)")
    return files[0]
