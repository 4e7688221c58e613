"""Drum performances from the Groove MIDI Dataset as (time, instrument, velocity) events."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import mido

from models.peaks import Hit
from models.vocab import FAMILY_OF, INSTRUMENT_OF_GM


@dataclass(frozen=True)
class Performance:
    midi_path: Path
    bpm: float
    beats_per_bar: int
    split: str


@dataclass(frozen=True)
class DrumEvent:
    time: float
    instrument: str
    velocity: float  # 0..1


def list_performances(root: Path) -> list[Performance]:
    with open(root / "info.csv", newline="") as handle:
        return [
            Performance(root / row["midi_filename"], float(row["bpm"]),
                        int(row["time_signature"].split("-")[0]), row["split"])
            for row in csv.DictReader(handle)
        ]


def read_events(path: Path) -> list[DrumEvent]:
    """Every drum note-on the vocabulary knows, in seconds from the file's start."""
    events, now = [], 0.0
    for message in mido.MidiFile(path):
        now += message.time
        if message.type == "note_on" and message.velocity > 0 and message.note in INSTRUMENT_OF_GM:
            events.append(DrumEvent(now, INSTRUMENT_OF_GM[message.note], message.velocity / 127))
    return events


def performed_hits(events: list[DrumEvent]) -> list[Hit]:
    """The events as the hits a perfect detector would report (the beat tracker's own input)."""
    return [Hit(e.time, e.instrument, FAMILY_OF[e.instrument], e.velocity, 1.0) for e in events]
