"""Hits snapped to written positions: sixteenths or triplets, chosen beat by beat.

Choosing per beat rather than per bar lets a bar of sixteenths end in a triplet fill. A
beat goes to triplets only when they fit clearly better than sixteenths (or, in a
recording that moves in triplets, unless sixteenths fit clearly better). Compound metres
(6/8, 12/8) are written in sixteenths only. In a swung recording (``batch.score.feel``) a
triplet beat without its middle note is a pair of swung eighths: its last third is
written halfway through the beat.

Two more things are read from the hits, not their positions: a snare far softer than the
recording's usual snare is a ghost note, and strokes on one snare or tom closer than a flam's
spread are one note with grace notes before it (one for a flam, two for a drag).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction
from math import floor
from statistics import median

from batch.score.kit import drum_of
from models.beats import EARLY, Grid
from models.peaks import Hit

CLEARLY = 0.5  # the other grid must have at most half the timing error to win
GHOST_SHARE = 0.45  # a snare below this share of the recording's median snare velocity is a ghost
FLAM_SECONDS = 0.045  # two strokes on one drum this close are a flam (MDB's are 30-40 ms apart)
FLAMMED = ("snare", "tom")
SWUNG = Fraction(2, 3)  # where a swung eighth falls in the beat


@dataclass(frozen=True)
class Note:
    bar: int
    position: Fraction  # quarter notes from the bar's downbeat
    instrument: str  # a kit drum (family-only hits become that family's usual drum)
    velocity: float
    graces: tuple[float, ...] = ()  # a flam's or drag's grace notes before it: their velocities


@dataclass(frozen=True)
class Bar:
    index: int  # from zero; the score numbers bars from one
    notes: tuple[Note, ...]  # by position


def quantize(hits: list[Hit], grid: Grid, until: float | None = None, swung: bool = False) -> list[Bar]:
    """Bars from the first downbeat through the last note's, and all bars completed by
    ``until`` seconds (a recording's silent bars, not the part bar its last note rings into).

    Two hits on one staff line of one voice at one position become one note, the louder.
    ``swung``: write long-short triplet pairs as eighths (the score carries a swing marking).
    """
    beat = grid.beat_ql
    compound = beat != 1
    hits, graces = _flams(sorted(hits, key=lambda hit: hit.t))
    ghost_below = _ghost_velocity(hits)
    by_beat: dict[int, list[tuple[float, Hit]]] = defaultdict(list)  # beat -> (quarters into it, hit)
    for q, hit in zip(grid.quarters([hit.t for hit in hits]).tolist(), hits):
        index = floor((q + EARLY) / beat)
        by_beat[index].append((q - index * float(beat), hit))
    kept: dict[tuple, Note] = {}
    for index, members in by_beat.items():
        denominator = 4 if compound else _division([rel for rel, _ in members], 3 if swung else grid.subdivision)
        slots = [Fraction(round(rel * denominator), denominator) for rel, _ in members]
        if swung and denominator == 3 and Fraction(1, 3) not in slots:
            slots = [Fraction(1, 2) if slot == SWUNG else slot for slot in slots]
        for slot, (_, hit) in zip(slots, members):
            instrument = "snare_ghost" if hit.instrument in ("snare", "snare_ghost") and hit.velocity < ghost_below \
                else hit.instrument
            drum = drum_of(instrument, hit.family)
            written = index * beat + slot
            bar = int(written // grid.bar_ql)
            if bar < 0:
                continue
            note = Note(bar, written - bar * grid.bar_ql, drum.instrument, hit.velocity, graces.get(id(hit), ()))
            key = (bar, note.position, drum.line)
            if key not in kept or kept[key].velocity < note.velocity:
                kept[key] = note
    notes_by_bar: dict[int, list[Note]] = defaultdict(list)
    for note in kept.values():
        notes_by_bar[note.bar].append(note)
    count = max(grid.bars_done(until) if until is not None else 0, max(notes_by_bar, default=-1) + 1, 1)
    return [Bar(i, tuple(sorted(notes_by_bar.get(i, ()), key=lambda n: (n.position, n.instrument))))
            for i in range(count)]


def _flams(hits: list[Hit]) -> tuple[list[Hit], dict[int, tuple[float, ...]]]:
    """The hits less the grace strokes of flams and drags, and the grace velocities by id
    of their main hit (a stroke close after another takes over its graces)."""
    graces: dict[int, tuple[float, ...]] = {}
    dropped: set[int] = set()
    last_on: dict[tuple, Hit] = {}
    for hit in hits:
        line = drum_of(hit.instrument, hit.family).line
        before = last_on.get(line)
        if hit.family in FLAMMED and before is not None and hit.t - before.t < FLAM_SECONDS:
            graces[id(hit)] = graces.pop(id(before), ()) + (before.velocity,)
            dropped.add(id(before))
        last_on[line] = hit
    return [hit for hit in hits if id(hit) not in dropped], graces


def _ghost_velocity(hits: list[Hit]) -> float:
    """The velocity under which a snare is a ghost note; notated ghosts (``snare_ghost``) always are."""
    snares = [hit.velocity for hit in hits if hit.instrument == "snare"]
    return GHOST_SHARE * median(snares) if snares else 0.0


def _division(positions: list[float], subdivision: int) -> int:
    """4 (sixteenths) or 3 (triplets) for one beat's positions, biased to the recording's feel."""
    sixteenths = sum(abs(p * 4 - round(p * 4)) / 4 for p in positions)
    triplets = sum(abs(p * 3 - round(p * 3)) / 3 for p in positions)
    if subdivision == 3:
        return 4 if sixteenths < CLEARLY * triplets else 3
    return 3 if triplets < CLEARLY * sixteenths else 4
