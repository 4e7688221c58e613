"""Score time (quarter notes from the start of the score) to recording time (seconds).

Verovio's timemap counts in quarter notes and, for milliseconds, plays the score at its one
metronome mark; a drummer drifts. The result JSON has the time of every bar and beat of the
score, so each bar start is pinned to its downbeat and each beat to its beat, and times in
between are interpolated (linearly extrapolated past the ends). A result without beats (a
job scored before they were recorded) falls back to its tempo from the recording's start.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def score_clock(measure_starts: Sequence[float], end: float, result: dict) -> Callable[[float], float]:
    """Seconds at a score time, for a score whose measures start at ``measure_starts`` and end
    at ``end`` (quarter notes, from verovio's timemap), scored into ``result``."""
    quarters, seconds = anchors(measure_starts, end, result.get("downbeats", []), result.get("beats", []))
    if len(quarters) < 2:
        quarters, seconds = [0.0, 1.0], [0.0, 60.0 / float(result.get("bpm") or 120.0)]
    q, t = np.array(quarters), np.array(seconds)

    def clock(quarter: float) -> float:
        if quarter < q[0]:
            at = t[0] + (quarter - q[0]) * (t[1] - t[0]) / (q[1] - q[0])
        elif quarter > q[-1]:
            at = t[-1] + (quarter - q[-1]) * (t[-1] - t[-2]) / (q[-1] - q[-2])
        else:
            at = float(np.interp(quarter, q, t))
        return round(float(at), 4)

    return clock


def anchors(measure_starts: Sequence[float], end: float, downbeats: Sequence[float],
            beats: Sequence[float]) -> tuple[list[float], list[float]]:
    """(quarter, second) pairs: each measure's start at its downbeat, and the beats that fall
    inside a bar spread evenly over its quarters (a bar's beats are equal in score time)."""
    quarters: list[float] = []
    seconds: list[float] = []
    bars = min(len(measure_starts), len(downbeats))
    for i in range(bars):
        start = float(measure_starts[i])
        stop = float(measure_starts[i + 1]) if i + 1 < len(measure_starts) else float(end)
        later = downbeats[i + 1] if i + 1 < bars else float("inf")
        inside = [b for b in beats if downbeats[i] < b < later]
        quarters.append(start)
        seconds.append(float(downbeats[i]))
        for k, beat in enumerate(inside, start=1):
            quarters.append(start + k * (stop - start) / (len(inside) + 1))
            seconds.append(float(beat))
    return quarters, seconds
