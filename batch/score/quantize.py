"""Hits snapped to written positions: sixteenths or triplets, chosen beat by beat.

Choosing per beat rather than per bar lets a bar of sixteenths end in a triplet fill. A
beat goes to triplets only when they fit clearly better than sixteenths (or, in a
recording that moves in triplets, unless sixteenths fit clearly better). Compound metres
(6/8, 12/8) are written in sixteenths only.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction
from math import floor

from models.beats import Grid
from batch.score.kit import drum_of
from models.peaks import Hit

CLEARLY = 0.5  # the other grid must have at most half the timing error to win
EARLY = 1 / 8  # quarters: a hit this much before a beat is that beat's (half a sixteenth)


@dataclass(frozen=True)
class Note:
    bar: int
    position: Fraction  # quarter notes from the bar's downbeat
    instrument: str  # a kit drum (family-only hits become that family's usual drum)
    velocity: float


@dataclass(frozen=True)
class Bar:
    index: int  # from zero; the score numbers bars from one
    notes: tuple[Note, ...]  # by position


def quantize(hits: list[Hit], grid: Grid, until: float | None = None) -> list[Bar]:
    """Bars from the first downbeat through the last note's, and all bars completed by
    ``until`` seconds (a recording's silent bars, not the part bar its last note rings into).

    Two hits on one staff line of one voice at one position become one note, the louder.
    """
    beat = grid.beat_ql
    compound = beat != 1
    by_beat: dict[int, list[tuple[float, Hit]]] = defaultdict(list)  # beat -> (quarters into it, hit)
    for q, hit in zip(grid.quarters([hit.t for hit in hits]).tolist(), hits):
        index = floor((q + EARLY) / beat)
        by_beat[index].append((q - index * float(beat), hit))
    kept: dict[tuple, Note] = {}
    for index, members in by_beat.items():
        denominator = 4 if compound else _division([rel for rel, _ in members], grid.subdivision)
        for rel, hit in members:
            drum = drum_of(hit.instrument, hit.family)
            written = index * beat + Fraction(round(rel * denominator), denominator)
            bar = int(written // grid.bar_ql)
            if bar < 0:
                continue
            note = Note(bar, written - bar * grid.bar_ql, drum.instrument, hit.velocity)
            key = (bar, note.position, drum.line)
            if key not in kept or kept[key].velocity < note.velocity:
                kept[key] = note
    notes_by_bar: dict[int, list[Note]] = defaultdict(list)
    for note in kept.values():
        notes_by_bar[note.bar].append(note)
    count = max(grid.bars_done(until) if until is not None else 0, max(notes_by_bar, default=-1) + 1, 1)
    return [Bar(i, tuple(sorted(notes_by_bar.get(i, ()), key=lambda n: (n.position, n.instrument))))
            for i in range(count)]


def _division(positions: list[float], subdivision: int) -> int:
    """4 (sixteenths) or 3 (triplets) for one beat's positions, biased to the recording's feel."""
    sixteenths = sum(abs(p * 4 - round(p * 4)) / 4 for p in positions)
    triplets = sum(abs(p * 3 - round(p * 3)) / 3 for p in positions)
    if subdivision == 3:
        return 4 if sixteenths < CLEARLY * triplets else 3
    return 3 if triplets < CLEARLY * sixteenths else 4
