"""The score's two MIDI files: the performance (every hit at its recorded time) and the
score as written, both on the score's bar lines.

A MIDI file counts in quarter notes from its start, so bar lines agree with the score when
the file starts on one of the score's downbeats: the first one, or a whole bar earlier for
every bar a hit comes before the score's first bar (hits the score leaves out). A first hit
only a little early, which the score writes on its downbeat, sounds at the file's start. The tempo map has one tempo per tracked pulse, the
same piecewise-linear mapping ``Grid.quarters`` uses, so the performance's hits sound at
their recorded times (to a tick) and the written notes follow the drummer's tempo.
"""
from __future__ import annotations

from fractions import Fraction
from math import ceil

import mido
import numpy as np

from batch.score.feel import STRAIGHT
from batch.score.kit import KIT, drum_of
from batch.score.quantize import EARLY, Bar
from models.beats import Grid
from models.midi import NOTE_SECONDS, DrumNote, drum_midi
from models.peaks import Hit
from models.vocab import GM_NOTE

WRITTEN_LENGTH = 1 / 8  # quarters a written note sounds (drums ring on regardless)
GRACE_BEFORE = 1 / 16  # quarters a flam's grace note sounds before its main note
SWUNG_EIGHTH = (Fraction(1, 2), Fraction(2, 3))  # where a swung score's off-beat eighth is played


def lead_in(grid: Grid, hits: list[Hit]) -> float:
    """Quarter notes from the file's start to the score's first downbeat: whole bars, as
    many as hits before the score's first bar need."""
    if not hits:
        return 0.0
    early = -float(grid.quarters(min(hit.t for hit in hits))) - EARLY
    return float(grid.bar_ql) * max(0, ceil(early / float(grid.bar_ql)))


def tempo_map(grid: Grid, start: float) -> list[tuple[float, float]]:
    """(quarters from the file's start, quarter notes per minute): one per tracked pulse,
    the first pulse's tempo from the file's start, the last one's after the last pulse."""
    pulses = np.asarray(grid.pulse_times)
    per_minute = 60.0 * float(grid.pulse_ql) / np.diff(pulses)
    quarters = start + np.arange(len(per_minute)) * float(grid.pulse_ql)
    quarters[0] = 0.0
    return list(zip(quarters.tolist(), per_minute.tolist()))


def performance_midi(grid: Grid, hits: list[Hit]) -> mido.MidiFile:
    """Every hit at its recorded time, on the score's bar lines."""
    start = lead_in(grid, hits)
    times = [hit.t for hit in hits]
    on, off = grid.quarters(times) + start, grid.quarters([t + NOTE_SECONDS for t in times]) + start
    notes = [DrumNote(a, b, GM_NOTE[drum_of(hit.instrument, hit.family).instrument], hit.velocity)
             for a, b, hit in zip(on.tolist(), off.tolist(), hits)]
    return drum_midi(notes, tempo_map(grid, start), (grid.beats_per_bar, grid.beat_unit))


def written_midi(grid: Grid, bars: list[Bar], feel: str, hits: list[Hit]) -> mido.MidiFile:
    """The notes where the score writes them (a swung score's eighths played long-short,
    flams with their grace note), in the same bars and tempo as ``performance_midi``."""
    start = lead_in(grid, hits)
    notes = []
    for bar in bars:
        for n in bar.notes:
            position = n.position
            if feel != STRAIGHT and position % 1 == SWUNG_EIGHTH[0]:
                position += SWUNG_EIGHTH[1] - SWUNG_EIGHTH[0]
            at = start + float(bar.index * grid.bar_ql + position)
            gm = KIT[n.instrument].gm
            notes.append(DrumNote(at, at + WRITTEN_LENGTH, gm, n.velocity))
            if n.grace is not None:
                notes.append(DrumNote(at - GRACE_BEFORE, at, gm, n.grace))
    return drum_midi(notes, tempo_map(grid, start), (grid.beats_per_bar, grid.beat_unit))
