"""Hits as a General MIDI drum track (channel 10) with velocities and tempo."""
from __future__ import annotations

from pathlib import Path

import mido

from models.peaks import Hit
from models.vocab import GM_NOTE

TICKS_PER_BEAT = 480
DRUM_CHANNEL = 9  # channel 10 counted from one
NOTE_SECONDS = 0.05


def hits_to_midi(hits: list[Hit], bpm: float = 120.0) -> mido.MidiFile:
    """A type-0 MIDI file; times are exact in seconds at the given tempo."""
    tempo = mido.bpm2tempo(bpm)
    events: list[tuple[float, int, mido.Message]] = []
    for hit in hits:
        note = GM_NOTE[hit.instrument]
        velocity = max(1, min(127, round(hit.velocity * 127)))
        events.append((hit.t, 1, mido.Message("note_on", channel=DRUM_CHANNEL, note=note, velocity=velocity)))
        events.append((hit.t + NOTE_SECONDS, 0, mido.Message("note_off", channel=DRUM_CHANNEL, note=note, velocity=0)))
    events.sort(key=lambda item: (item[0], item[1]))
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=tempo, time=0)])
    last_tick = 0
    for seconds, _, message in events:
        tick = round(mido.second2tick(seconds, TICKS_PER_BEAT, tempo))
        track.append(message.copy(time=max(0, tick - last_tick)))
        last_tick = max(last_tick, tick)
    midi = mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_BEAT)
    midi.tracks.append(track)
    return midi


def write_midi(hits: list[Hit], path: Path, bpm: float = 120.0) -> None:
    hits_to_midi(hits, bpm).save(path)
