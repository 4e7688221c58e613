"""Drum notes as a General MIDI drum track (channel 10) with a tempo map and a time signature.

Notes are placed in quarter notes, not seconds: a score's bar lines are then the MIDI
file's bar lines, and a tempo map that follows the drummer makes those quarters sound at
the recording's times. ``performance_midi`` does that for hits on a tracked beat grid: the
file starts on the grid's first downbeat, or a whole bar earlier for every bar a hit comes
before the first bar (a hit only ``EARLY`` quarters early, which a score writes on its
downbeat, sounds at the file's start), and has one tempo per tracked pulse, the piecewise-linear
mapping ``Grid.quarters`` uses, so every hit sounds at its recorded time to a tick.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import ceil

import mido
import numpy as np

from models.beats import EARLY, Grid
from models.peaks import Hit
from models.vocab import GM_NOTE

TICKS_PER_BEAT = 960  # a tick is 0.52 ms at 60 bpm: rounding keeps hit times within 1 ms
DRUM_CHANNEL = 9  # channel 10 counted from one
NOTE_SECONDS = 0.05


@dataclass(frozen=True)
class DrumNote:
    start: float  # quarter notes from the file's start
    end: float
    note: int  # General MIDI drum note
    velocity: float  # 0..1


def drum_midi(notes: list[DrumNote], tempos: list[tuple[float, float]],
              time_signature: tuple[int, int] = (4, 4)) -> mido.MidiFile:
    """A type-0 MIDI file; ``tempos`` are (quarter note, quarter notes per minute) changes,
    the first at 0 (a tempo applies until the next)."""
    numerator, denominator = time_signature
    compound = denominator == 8 and numerator % 3 == 0
    events: list[tuple[int, int, mido.Message | mido.MetaMessage]] = [
        (0, 0, mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator,
                                clocks_per_click=36 if compound else 24 * 4 // denominator))]
    last = None
    for quarter, bpm in tempos:
        tempo = mido.bpm2tempo(bpm)
        if tempo != last:
            events.append((_tick(quarter), 0, mido.MetaMessage("set_tempo", tempo=tempo)))
            last = tempo
    for drum in notes:
        velocity = max(1, min(127, round(drum.velocity * 127)))
        start, end = _tick(drum.start), max(_tick(drum.end), _tick(drum.start) + 1)
        events.append((start, 2, mido.Message("note_on", channel=DRUM_CHANNEL, note=drum.note, velocity=velocity)))
        events.append((end, 1, mido.Message("note_off", channel=DRUM_CHANNEL, note=drum.note, velocity=0)))
    events.sort(key=lambda item: (item[0], item[1]))
    track, now = mido.MidiTrack(), 0
    for tick, _, message in events:
        track.append(message.copy(time=tick - now))
        now = tick
    midi = mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_BEAT)
    midi.tracks.append(track)
    return midi


def performance_midi(grid: Grid, hits: list[Hit]) -> mido.MidiFile:
    """Every hit at its recorded time, on the grid's bar lines and tempo map (instruments
    with a General MIDI note: map family-only hits to a drum first)."""
    start = lead_in(grid, hits)
    times = [hit.t for hit in hits]
    on, off = grid.quarters(times) + start, grid.quarters([t + NOTE_SECONDS for t in times]) + start
    notes = [DrumNote(a, b, GM_NOTE[hit.instrument], hit.velocity) for a, b, hit in zip(on.tolist(), off.tolist(), hits)]
    return drum_midi(notes, tempo_map(grid, start), (grid.beats_per_bar, grid.beat_unit))


def lead_in(grid: Grid, hits: list[Hit]) -> float:
    """Quarter notes from the file's start to the grid's first downbeat: whole bars, as
    many as hits more than ``EARLY`` quarters before the first bar need."""
    if not hits:
        return 0.0
    before = -float(grid.quarters(min(hit.t for hit in hits))) - EARLY
    return float(grid.bar_ql) * max(0, ceil(before / float(grid.bar_ql)))


def tempo_map(grid: Grid, start: float) -> list[tuple[float, float]]:
    """(quarters from the file's start, quarter notes per minute): one per tracked pulse,
    the first pulse's tempo from the file's start, the last one's after the last pulse."""
    per_minute = 60.0 * float(grid.pulse_ql) / np.diff(np.asarray(grid.pulse_times))
    quarters = start + np.arange(len(per_minute)) * float(grid.pulse_ql)
    quarters[0] = 0.0
    return list(zip(quarters.tolist(), per_minute.tolist()))


def _tick(quarters: float) -> int:
    return max(0, round(quarters * TICKS_PER_BEAT))
