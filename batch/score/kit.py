"""The drum set as notation programs expect it: staff position, notehead, voice, GM sound.

One table serves quantizing (which notes share a staff line), engraving and the MusicXML
drum-set metadata, so the three cannot disagree. Positions and noteheads follow the design
(MuseScore's default drum set). Side stick uses an x head: the design allows "slashed",
but Verovio draws that as a plain head, indistinguishable from the snare in the PDF.
"""
from __future__ import annotations

from dataclasses import dataclass

from models.vocab import GM_NOTE

HANDS, FEET = 1, 2  # MusicXML voices: stems up, stems down


@dataclass(frozen=True)
class Drum:
    instrument: str  # the hit instrument (models.vocab)
    name: str  # <instrument-name> in the score's drum set
    step: str
    octave: int
    notehead: str  # MusicXML <notehead> value
    voice: int
    parentheses: bool = False

    @property
    def gm(self) -> int:
        return GM_NOTE[self.instrument]

    @property
    def line(self) -> tuple[int, str, int]:
        """Voice and staff position: two drums on one line in one voice cannot sound together."""
        return self.voice, self.step, self.octave

    @property
    def xml_id(self) -> str:
        """Score-instrument id, one per GM sound (a ghost snare is the snare played softly)."""
        return f"P1-I{self.gm + 1}"


KIT: dict[str, Drum] = {drum.instrument: drum for drum in (
    Drum("kick", "Bass Drum", "F", 4, "normal", FEET),
    Drum("hihat_pedal", "Pedal Hi-Hat", "D", 4, "x", FEET),
    Drum("snare", "Acoustic Snare", "C", 5, "normal", HANDS),
    Drum("snare_rim", "Side Stick", "C", 5, "x", HANDS),
    Drum("snare_ghost", "Acoustic Snare", "C", 5, "normal", HANDS, parentheses=True),
    Drum("hihat_closed", "Closed Hi-Hat", "G", 5, "x", HANDS),
    Drum("hihat_open", "Open Hi-Hat", "G", 5, "circle-x", HANDS),
    Drum("ride", "Ride Cymbal", "F", 5, "x", HANDS),
    Drum("ride_bell", "Ride Bell", "F", 5, "diamond", HANDS),
    Drum("crash", "Crash Cymbal", "A", 5, "x", HANDS),
    Drum("china", "Chinese Cymbal", "B", 5, "x", HANDS),
    Drum("splash", "Splash Cymbal", "C", 6, "x", HANDS),
    Drum("tom_high", "High Tom", "E", 5, "normal", HANDS),
    Drum("tom_mid", "Mid Tom", "D", 5, "normal", HANDS),
    Drum("tom_low", "Floor Tom", "A", 4, "normal", HANDS),
)}
# A model that only knows families names the family; write its most common drum.
FAMILY_DEFAULT = {"kick": "kick", "snare": "snare", "hihat": "hihat_closed", "tom": "tom_mid", "cymbal": "crash"}


def drum_of(instrument: str, family: str) -> Drum:
    """The kit drum for a hit's instrument, falling back on its family's usual drum."""
    return KIT.get(instrument) or KIT[FAMILY_DEFAULT[family]]


def drum_by_look(step: str, octave: int, notehead: str, parentheses: bool, voice: int) -> Drum:
    """The drum an exported note stands for, read back from how it is drawn."""
    return _BY_LOOK[(step, octave, notehead, parentheses, voice)]


_BY_LOOK = {(d.step, d.octave, d.notehead, d.parentheses, d.voice): d for d in KIT.values()}
assert len(_BY_LOOK) == len(KIT), "two drums look alike on the staff"
