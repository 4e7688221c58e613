"""A random band (bass, chords, pad, lead) in General MIDI, so the model hears drums in songs."""
from __future__ import annotations

from pathlib import Path

import mido
import numpy as np

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
BASS_PROGRAMS = tuple(range(32, 40))
CHORD_PROGRAMS = (0, 1, 2, 4, 5, 16, 17, 24, 25, 26, 27, 28, 29, 30)
PAD_PROGRAMS = (48, 49, 50, 52, 61, 88, 89, 90, 91)
LEAD_PROGRAMS = (40, 56, 57, 64, 65, 66, 71, 73, 80, 81, 82, 85)
TICKS = 480


def _chord(scale: tuple[int, ...], degree: int, root: int) -> list[int]:
    return [root + scale[(degree + step) % 7] + 12 * ((degree + step) // 7) for step in (0, 2, 4)]


def write_band(path: Path, bpm: float, beats_per_bar: int, seconds: float, rng: np.random.Generator) -> None:
    """Write a random progression played by up to four GM instruments for ``seconds``."""
    scale = MAJOR if rng.random() < 0.6 else MINOR
    key = int(rng.integers(40, 52))
    degrees = rng.choice(7, size=4)
    beat = 60.0 / bpm
    n_bars = int(np.ceil(seconds / (beat * beats_per_bar))) + 1
    notes: list[tuple[int, int, int, int, int]] = []  # (channel, start tick, length, note, velocity)

    def add_part(channel: int, program: int, make) -> None:
        notes.append((channel, -1, 0, program, 0))
        for bar in range(n_bars):
            make(channel, bar * beats_per_bar * TICKS, _chord(scale, int(degrees[bar % 4]), key))

    def bass(channel, start, chord):
        step = TICKS // int(rng.choice([1, 2]))
        for tick in range(start, start + beats_per_bar * TICKS, step):
            if rng.random() < 0.85:
                note = chord[0] - 12 + (7 if rng.random() < 0.2 else 0)
                notes.append((channel, tick, int(step * 0.9), note, int(rng.integers(60, 110))))

    def chords(channel, start, chord):
        step = TICKS // int(rng.choice([1, 2]))
        for tick in range(start, start + beats_per_bar * TICKS, step):
            if rng.random() < 0.6:
                for note in chord:
                    notes.append((channel, tick, int(step * 0.8), note + 12, int(rng.integers(45, 95))))

    def pad(channel, start, chord):
        for note in chord:
            notes.append((channel, start, beats_per_bar * TICKS, note + 12, int(rng.integers(40, 80))))

    def lead(channel, start, chord):
        tick = start
        while tick < start + beats_per_bar * TICKS:
            length = TICKS // int(rng.choice([1, 2, 4])) * int(rng.choice([1, 1, 2]))
            if rng.random() < 0.75:
                note = key + 24 + scale[int(rng.integers(7))]
                notes.append((channel, tick, int(length * 0.9), note, int(rng.integers(55, 110))))
            tick += length

    parts = [(bass, BASS_PROGRAMS), (chords, CHORD_PROGRAMS), (pad, PAD_PROGRAMS), (lead, LEAD_PROGRAMS)]
    chosen = [part for part in parts if rng.random() < 0.7] or [parts[int(rng.integers(4))]]
    for channel, (make, programs) in enumerate(chosen):
        add_part(channel, int(rng.choice(programs)), make)

    messages: list[tuple[int, int, mido.Message]] = []
    for channel, tick, length, note, velocity in notes:
        if tick < 0:
            messages.append((0, 0, mido.Message("program_change", channel=channel, program=note)))
            continue
        messages.append((tick, 2, mido.Message("note_on", channel=channel, note=note, velocity=velocity)))
        messages.append((tick + length, 1, mido.Message("note_off", channel=channel, note=note, velocity=0)))
    messages.sort(key=lambda item: (item[0], item[1]))
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0)])
    last = 0
    for tick, _, message in messages:
        track.append(message.copy(time=tick - last))
        last = tick
    midi = mido.MidiFile(ticks_per_beat=TICKS)
    midi.tracks.append(track)
    midi.save(path)
