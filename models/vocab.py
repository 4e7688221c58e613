"""The drum vocabulary: families the model detects, finer instruments it labels, GM notes."""
from __future__ import annotations

FAMILIES: tuple[str, ...] = ("kick", "snare", "hihat", "tom", "cymbal")

# Instruments the network tells apart; each belongs to one family.
INSTRUMENTS: tuple[str, ...] = (
    "kick",
    "snare", "snare_rim",
    "hihat_closed", "hihat_open", "hihat_pedal",
    "tom_high", "tom_mid", "tom_low",
    "crash", "ride", "ride_bell",
)

FAMILY_OF: dict[str, str] = {
    "kick": "kick", "snare": "snare", "snare_rim": "snare", "snare_ghost": "snare",
    "hihat_closed": "hihat", "hihat_open": "hihat", "hihat_pedal": "hihat",
    "tom_high": "tom", "tom_mid": "tom", "tom_low": "tom",
    "crash": "cymbal", "ride": "cymbal", "ride_bell": "cymbal", "china": "cymbal", "splash": "cymbal",
}

# General MIDI drum note written for each instrument (MIDI out, MusicXML playback).
GM_NOTE: dict[str, int] = {
    "kick": 36, "snare": 38, "snare_rim": 37, "snare_ghost": 38,
    "hihat_closed": 42, "hihat_open": 46, "hihat_pedal": 44,
    "tom_high": 48, "tom_mid": 47, "tom_low": 43,
    "crash": 49, "ride": 51, "ride_bell": 53, "china": 52, "splash": 55,
}

# General MIDI drum notes read as instruments (the Groove MIDI kit's mapping included).
INSTRUMENT_OF_GM: dict[int, str] = {
    35: "kick", 36: "kick",
    38: "snare", 40: "snare", 37: "snare_rim", 39: "snare_rim",
    42: "hihat_closed", 22: "hihat_closed", 46: "hihat_open", 26: "hihat_open", 44: "hihat_pedal",
    48: "tom_high", 50: "tom_high", 45: "tom_mid", 47: "tom_mid", 41: "tom_low", 43: "tom_low", 58: "tom_low",
    49: "crash", 57: "crash", 55: "crash", 52: "crash",
    51: "ride", 59: "ride", 53: "ride_bell",
}
