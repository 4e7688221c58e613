"""Limits of the live gateway, from environment variables with documented defaults."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

# A live session's recording becomes a batch job, which refuses audio over DRUMSCRIBE_MAX_SECONDS;
# sessions therefore end this much before that limit, so a session that runs out of time is
# still scored.
BATCH_MARGIN_SECONDS = 1.0


@dataclass(frozen=True)
class LiveSettings:
    max_sessions: int = 64
    max_per_client: int = 4                  # open sessions per client address (WebSocket and WebRTC)
    max_frame_bytes: int = 64 * 1024
    max_text_bytes: int = 4096               # a text message (start, stop) larger than this is refused
    max_session_seconds: float = 20 * 60.0   # of audio; the session then stops and finalizes
    idle_timeout: float = 30.0               # seconds without a message before the session ends
    min_audio_seconds: float = 1.0           # audio each pace window must bring; 0: no minimum rate
    pace_window: float = 10.0                # seconds of wall time per minimum-rate check
    pace_grace: float = 10.0                 # seconds after ready before the first window starts
    notation_every: float = 4.0              # seconds of audio between notation updates; 0: never
    notation_grace: float = 2.0              # how long `stop` waits for a notation update under way
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
            max_per_client=int(env("DRUMSCRIBE_LIVE_MAX_PER_CLIENT", "4")),
            max_session_seconds=float(env("DRUMSCRIBE_LIVE_MAX_SECONDS", str(20 * 60))),
            idle_timeout=float(env("DRUMSCRIBE_LIVE_IDLE_SECONDS", "30")),
            min_audio_seconds=float(env("DRUMSCRIBE_LIVE_MIN_AUDIO_SECONDS", "1")),
            pace_window=float(env("DRUMSCRIBE_LIVE_PACE_SECONDS", "10")),
            pace_grace=float(env("DRUMSCRIBE_LIVE_PACE_GRACE_SECONDS", "10")),
            notation_every=float(env("DRUMSCRIBE_LIVE_NOTATION_SECONDS", "4")),
            notation_grace=float(env("DRUMSCRIBE_LIVE_NOTATION_GRACE_SECONDS", "2")),
            separation_batch=int(env("DRUMSCRIBE_LIVE_SEPARATION_BATCH", "16")),
            finalize_timeout=float(env("DRUMSCRIBE_LIVE_FINALIZE_SECONDS", "120")),
        )

    def within(self, batch_max_seconds: float) -> "LiveSettings":
        """These settings with the session limit strictly inside the batch limit of the jobs that score them."""
        limit = min(self.max_session_seconds, batch_max_seconds - BATCH_MARGIN_SECONDS)
        if not limit > 0:
            raise ValueError(f"live sessions would have no audio at all: DRUMSCRIBE_LIVE_MAX_SECONDS must be over 0 "
                             f"and DRUMSCRIBE_MAX_SECONDS over {BATCH_MARGIN_SECONDS:g}")
        return dataclasses.replace(self, max_session_seconds=limit)
