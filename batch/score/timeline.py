"""When the score's beats and bars fall in the recording, for the result JSON.

The page's player moves its cursor by these times (a drifting drummer's bar 40 is not where
one average tempo puts it), and they are the tracker's answer to compare with annotated beats.
"""
from __future__ import annotations

import numpy as np

from models.beats import Grid


def seconds_at(grid: Grid, quarters: np.ndarray) -> np.ndarray:
    """The times at which the grid reaches ``quarters`` (counted from its first downbeat): the
    inverse of ``Grid.quarters``, extrapolating with the end periods as it does."""
    pulses = np.asarray(grid.pulse_times)
    index = np.asarray(quarters, dtype=float) / float(grid.pulse_ql)
    last = len(pulses) - 1
    times = np.interp(index, np.arange(len(pulses), dtype=float), pulses)
    times = np.where(index < 0, pulses[0] + index * (pulses[1] - pulses[0]), times)
    return np.where(index > last, pulses[-1] + (index - last) * (pulses[-1] - pulses[-2]), times)


def beat_times(grid: Grid, first_bar: int, bars: int) -> dict[str, list[float]]:
    """``beats``: the time of every counted beat of the score's ``bars`` bars, from bar
    ``first_bar`` (0 = the grid's first downbeat); ``downbeats``: the time each bar starts."""
    beats_per_bar = int(round(grid.bar_ql / grid.beat_ql))
    beats = float(first_bar * grid.bar_ql) + np.arange(bars * beats_per_bar) * float(grid.beat_ql)
    times = [round(float(t), 4) for t in seconds_at(grid, beats)]
    return {"beats": times, "downbeats": times[::beats_per_bar]}
