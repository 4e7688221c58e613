"""The minimum data rate of a live session.

A session holds a slot of the gateway (and of its client's per-address share) for as long
as its connection lives; a client that sends 2 bytes every 25 s never trips the idle
timeout and holds its slots forever. After a grace period, every window of wall time must
therefore bring at least a set amount of audio.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable


class SessionTooSlow(Exception):
    pass


class MinimumRate:
    """``check`` raises ``SessionTooSlow`` once a window has passed with too little audio;
    ``deadline`` is when the current window ends (a transport waits no longer for a frame)."""

    def __init__(self, min_audio_seconds: float, window: float, grace: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.min_audio, self.window, self.clock = min_audio_seconds, window, clock
        self.deadline = clock() + grace + window if min_audio_seconds > 0 else math.inf
        self._audio_at_window_start = 0.0

    def check(self, audio_seconds: float) -> None:
        """``audio_seconds``: all the session has received so far."""
        if self.clock() < self.deadline:
            return
        got = audio_seconds - self._audio_at_window_start
        if got < self.min_audio:
            raise SessionTooSlow(f"{got:.2f} s of audio in the last {self.window:g} s; a session must send at "
                                 f"least {self.min_audio:g} s of audio every {self.window:g} s")
        self._audio_at_window_start = audio_seconds
        self.deadline = self.clock() + self.window
