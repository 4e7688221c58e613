"""The score's two MIDI files: the performance (every hit at its recorded time,
``models.midi.performance_midi``) and the score as written, both on the score's bar lines
and the tracked tempo map, so the written notes line up with the recording too."""
from __future__ import annotations

import dataclasses
from fractions import Fraction

import mido

from batch.score.feel import STRAIGHT
from batch.score.kit import KIT, drum_of
from batch.score.quantize import Bar
from models import midi
from models.beats import Grid
from models.midi import DrumNote, drum_midi, lead_in, tempo_map
from models.peaks import Hit

WRITTEN_LENGTH = 1 / 8  # quarters a written note sounds (drums ring on regardless)
GRACE_BEFORE = 1 / 16  # quarters between a flam's or drag's grace notes and their main note
SWUNG_EIGHTH = (Fraction(1, 2), Fraction(2, 3))  # where a swung score's off-beat eighth is played


def performance_midi(grid: Grid, hits: list[Hit]) -> mido.MidiFile:
    """The hits as played; a family-only hit sounds as the drum the score writes for it."""
    kit_hits = [dataclasses.replace(hit, instrument=drum_of(hit.instrument, hit.family).instrument) for hit in hits]
    return midi.performance_midi(grid, kit_hits)


def written_midi(grid: Grid, bars: list[Bar], feel: str, hits: list[Hit]) -> mido.MidiFile:
    """The notes where the score writes them (a swung score's eighths played long-short,
    flams and drags with their grace notes), in the same bars and tempo as ``performance_midi``."""
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
            for k, velocity in enumerate(n.graces):
                before = at - (len(n.graces) - k) * GRACE_BEFORE
                notes.append(DrumNote(before, before + GRACE_BEFORE, gm, velocity))
    return drum_midi(notes, tempo_map(grid, start), (grid.beats_per_bar, grid.beat_unit))
