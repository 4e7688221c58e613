"""A random band (bass, chords, pad, lead) and hand percussion in General MIDI.

The band lets the model hear drums in songs. Strummed and choked guitar chords (``strums``)
and hand percussion (tambourine, shakers, cowbell, clave, wood block, clap, guiro) are sounds that look
like hi-hats, cymbals or snares and are none of them: the model learns to leave them out.
"""
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
GUITAR_PROGRAMS = range(24, 32)
# GM percussion notes that are not drum-kit pieces: tambourine, cowbell, cabasa, maracas,
# claves, wood blocks, hand clap, short guiro.
PERCUSSION_NOTES = (54, 54, 54, 56, 69, 70, 70, 75, 76, 77, 39, 73)
DRUM_KIT_PROGRAMS = (0, 8, 16, 24, 25, 32, 40, 48)
PERCUSSION_CHANNEL = 9
TICKS = 480
Note = tuple[int, int, int, int, int]  # (channel, start tick, length, note, velocity); tick -1: program


def _chord(scale: tuple[int, ...], degree: int, root: int) -> list[int]:
    return [root + scale[(degree + step) % 7] + 12 * ((degree + step) // 7) for step in (0, 2, 4)]


def write_band(path: Path, bpm: float, beats_per_bar: int, seconds: float, rng: np.random.Generator,
               strums: bool = False) -> None:
    """Write a random progression played by up to four GM instruments for ``seconds``.

    ``strums``: guitar chords are strummed (strings a few ms apart, up and down) in varied
    rhythms, among them off-beat chops and sixteenths, the way real guitars are played.
    """
    scale = MAJOR if rng.random() < 0.6 else MINOR
    key = int(rng.integers(40, 52))
    degrees = rng.choice(7, size=4)
    beat = 60.0 / bpm
    n_bars = int(np.ceil(seconds / (beat * beats_per_bar))) + 1
    notes: list[Note] = []
    programs: dict[int, int] = {}

    def add_part(channel: int, program: int, make) -> None:
        programs[channel] = program
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
        if strums and programs[channel] in GUITAR_PROGRAMS:
            strum(channel, start, chord)
            return
        step = TICKS // int(rng.choice([1, 2]))
        for tick in range(start, start + beats_per_bar * TICKS, step):
            if rng.random() < 0.6:
                for note in chord:
                    notes.append((channel, tick, int(step * 0.8), note + 12, int(rng.integers(45, 95))))

    def strum(channel, start, chord):
        step = TICKS // int(rng.choice([1, 2, 4]))
        offbeat_only = rng.random() < 0.3  # reggae/ska chops
        length = step * (rng.uniform(0.15, 0.4) if rng.random() < 0.5 else 0.9)
        voicing = [chord[0], chord[0] + 7, chord[0] + 12, chord[1] + 12, chord[2] + 12, chord[0] + 24]
        for index, tick in enumerate(range(start, start + beats_per_bar * TICKS, step)):
            if (offbeat_only and index % 2 == 0) or rng.random() > 0.8:
                continue
            spread = rng.uniform(0.004, 0.02) / beat * TICKS  # seconds between strings, in ticks
            order = voicing if index % 2 == 0 else voicing[::-1]
            velocity = int(rng.integers(50, 115))
            for string, note in enumerate(order):
                notes.append((channel, tick + int(string * spread), max(10, int(length)), note, velocity))

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
    for channel, (make, choices) in enumerate(chosen):
        add_part(channel, int(rng.choice(choices)), make)

    _save(path, bpm, notes)


def percussion_pattern(bpm: float, beats_per_bar: int, seconds: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    """One hand-percussion part in a steady, humanized rhythm: (seconds, velocity 0..1) per stroke."""
    beat = 60.0 / bpm
    subdivision = int(rng.choice([1, 2, 2, 4, 4]))
    backbeat_only = subdivision == 1 and rng.random() < 0.5  # tambourine on 2 and 4
    level = rng.uniform(0.4, 0.87)
    strokes = []
    for index in range(int(np.ceil(seconds / beat)) * subdivision):
        if (backbeat_only and (index % beats_per_bar) % 2 == 0) or rng.random() < 0.1:
            continue
        accent = 1.0 if index % subdivision == 0 else rng.uniform(0.5, 0.85)
        time = max(0.0, index * beat / subdivision + rng.normal(0, 0.008))
        strokes.append((time, float(np.clip(level * accent * rng.uniform(0.85, 1.15), 0.08, 1.0))))
    return strokes


def write_percussion(path: Path, bpm: float, beats_per_bar: int, seconds: float, rng: np.random.Generator) -> None:
    """Write one or two General MIDI hand-percussion parts (channel 10)."""
    notes: list[Note] = [(PERCUSSION_CHANNEL, -1, 0, int(rng.choice(DRUM_KIT_PROGRAMS)), 0)]
    for _ in range(int(rng.integers(1, 3))):
        note = int(rng.choice(PERCUSSION_NOTES))
        for time, velocity in percussion_pattern(bpm, beats_per_bar, seconds, rng):
            notes.append((PERCUSSION_CHANNEL, int(time * bpm / 60.0 * TICKS), TICKS // 8, note, int(velocity * 127)))
    _save(path, bpm, notes)


def _save(path: Path, bpm: float, notes: list[Note]) -> None:
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
