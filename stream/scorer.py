"""Live tempo and notation off the hit path: a pre-started, low-priority process runs them.

Rendering a few bars (music21 + verovio) takes about 40 ms of pure Python, and the beat
tracker behind the tempo about 5 ms a session each time; both hold the GIL all along. In the
gateway's process, even in a thread, they would hold back every session's hits (32 sessions
on 2 cores: p95 latency 90 ms without the tempo, 300 ms with it in a thread; see
``bench/live.py``). In a process of its own, at a lower CPU priority, they only use what the
hit path leaves. Started with the app, not at the first session, so the first update is not
late by the seconds it takes to import the renderer.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import NamedTuple

from models.beats import Grid, estimate_grid
from models.peaks import Hit

Rendered = tuple[str, int] | None  # (svg, number of the last bar shown), or None before the first bar
Render = Callable[[list[Hit], float, Grid], Rendered]


class ScoreUpdate(NamedTuple):
    bpm: float  # the tempo the score and the notation would write for the session so far
    notation: Rendered  # None when not asked for, or before the first bar ends


def _start(niceness: int, parent: int) -> None:
    """In the scorer's process: a lower priority, and no life beyond the server's."""
    os.nice(niceness)
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: int) -> None:
    """A killed server cannot stop its pool: the orphaned process notices and leaves."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _update(render: Render, hits: list[Hit], seconds: float, notation: bool) -> ScoreUpdate:
    """One beat-tracker run gives the tempo and, when asked, the grid the bars are drawn on."""
    grid = estimate_grid(hits, seconds)
    return ScoreUpdate(grid.bpm, render(hits, seconds, grid) if notation else None)


class LiveScorer:
    """``await scorer.update(hits, seconds, notation)`` runs in the background process, one call
    at a time."""

    def __init__(self, render: Render, niceness: int = 10) -> None:
        self._render = render
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_start, initargs=(niceness, os.getpid()))
        # start the process and import the renderer now
        self._warm = self._pool.submit(_update, render, [], 0.0, True)

    async def update(self, hits: list[Hit], seconds: float, notation: bool) -> ScoreUpdate:
        return await asyncio.wrap_future(self._pool.submit(_update, self._render, hits, seconds, notation))

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until the process has started and imported the renderer (tests, benchmarks)."""
        self._warm.result(timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
