"""Limits of the live gateway, from environment variables with documented defaults."""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class LiveSettings:
    max_sessions: int = 64
    max_frame_bytes: int = 64 * 1024
    max_session_seconds: float = 20 * 60.0   # of audio; the session then stops and finalizes
    idle_timeout: float = 30.0               # seconds without a message before the session ends
    notation_every: float = 4.0              # seconds of audio between notation updates; 0: never
    outbox_limit: int = 1000                 # unsent messages before a non-reading client is dropped
    batch_wait: float = 0.002                # how long a window waits for others to share its batch
    separation_wait: float = 0.005           # the same for a Demucs window of a separated session
    separation_batch: int = 16               # the most Demucs windows in one model call
    finalize_timeout: float = 120.0          # how long `stop` (and shutdown) wait for the finished score

    @classmethod
    def from_env(cls) -> "LiveSettings":
        env = os.environ.get
        return cls(
            max_sessions=int(env("DRUMSCRIBE_LIVE_MAX_SESSIONS", "64")),
            max_session_seconds=float(env("DRUMSCRIBE_LIVE_MAX_SECONDS", str(20 * 60))),
            idle_timeout=float(env("DRUMSCRIBE_LIVE_IDLE_SECONDS", "30")),
            notation_every=float(env("DRUMSCRIBE_LIVE_NOTATION_SECONDS", "4")),
            separation_batch=int(env("DRUMSCRIBE_LIVE_SEPARATION_BATCH", "16")),
            finalize_timeout=float(env("DRUMSCRIBE_LIVE_FINALIZE_SECONDS", "120")),
        )
