"""Quantized bars as a music21 drum-set score, and the drum-set metadata of its MusicXML.

Hands are voice 1 (stems up), feet voice 2 (stems down). A note lasts to the next note of
its voice within the beat, rests fill the gaps, so beams and tuplets fall by beat.
music21 writes one instrument per part and keys instruments by class, which cannot
describe a drum set; ``add_drum_kit`` rewrites the exported part's instruments.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from fractions import Fraction

from music21 import beam, clef, duration, instrument, metadata, meter, note, percussion, stream, tempo

from models.beats import Grid
from batch.score.kit import FEET, HANDS, KIT, Drum, drum_by_look
from batch.score.quantize import Bar, Note

# Durations written as one symbol, longest first: a note never ties, the rest of a gap is rests.
WRITABLE = tuple(Fraction(x) for x in ("4", "3", "2", "3/2", "1", "3/4", "2/3", "1/2", "1/3", "1/4"))
MIDI_DRUM_CHANNEL = 10  # counted from one, as MusicXML does


def build_score(grid: Grid, bars: list[Bar], title: str) -> stream.Score:
    """One percussion part, bars numbered from ``bars[0].index + 1``."""
    score = stream.Score()
    score.metadata = metadata.Metadata(title=title)
    score.metadata.addContributor(metadata.Contributor(role="transcriber", name="DrumScribe"))
    part = stream.Part(id="P1")
    part.partName, part.partAbbreviation = "Drumset", "D. Set"
    drums = instrument.UnpitchedPercussion()
    drums.instrumentName = "Drumset"
    part.insert(0, drums)
    signature = meter.TimeSignature(grid.time_signature)
    for i, bar in enumerate(bars):
        measure = stream.Measure(number=bar.index + 1)
        if i == 0:
            measure.insert(0, clef.PercussionClef())
            measure.insert(0, signature)
            beat = grid.beat_ql
            measure.insert(0, tempo.MetronomeMark(number=round(grid.bpm / float(beat)),
                                                  referent=duration.Duration(beat)))
        for voice in (HANDS, FEET):
            notes = [n for n in bar.notes if KIT[n.instrument].voice == voice]
            if notes or voice == HANDS:
                measure.insert(0, _voice(voice, notes, grid, signature))
        part.append(measure)
    score.insert(0, part)
    return score


def _voice(number: int, notes: list[Note], grid: Grid, signature: meter.TimeSignature) -> stream.Voice:
    """One voice of one bar: chords at the notes' positions, rests between, beat by beat;
    beamed by the time signature's groups (what ``makeBeams`` does, without its slow
    context searches and stem changes)."""
    voice = stream.Voice(id=str(number))
    at: dict[Fraction, list[Note]] = defaultdict(list)
    for n in notes:
        at[n.position].append(n)
    beat, bar_ql = grid.beat_ql, grid.bar_ql
    if not at:
        rest = note.Rest(quarterLength=bar_ql)
        rest.fullMeasure = True
        voice.insert(0, rest)
        return voice
    beats = int(bar_ql / beat)
    empty = [not any(j * beat <= p < (j + 1) * beat for p in at) for j in range(beats)]
    j = 0
    while j < beats:
        start = j * beat
        if empty[j]:
            span = 2 if beats == 4 and j % 2 == 0 and empty[j + 1] else 1  # half-bar rests in 4/4, 12/8
            _rests(voice, start, span * beat)
            j += span
            continue
        positions = sorted(p for p in at if start <= p < start + beat)
        _rests(voice, start, positions[0] - start)
        for p, following in zip(positions, positions[1:] + [start + beat]):
            length = next(d for d in WRITABLE if d <= following - p)
            voice.insert(p, _chord(at[p], length, number))
            _rests(voice, p + length, following - p - length)
        j += 1
    written = list(voice.notesAndRests)
    for element, beams in zip(written, signature.getBeams(written)):
        element.beams = beams or beam.Beams()
    stream.makeNotation.makeTupletBrackets(voice, inPlace=True)
    return voice


def _rests(voice: stream.Voice, start: Fraction, length: Fraction) -> None:
    while length > 0:
        piece = next(d for d in WRITABLE if d <= length)
        voice.insert(start, note.Rest(quarterLength=piece))
        start, length = start + piece, length - piece


def _chord(notes: list[Note], length: Fraction, voice: int) -> note.NotRest:
    heads = []
    for n in sorted(notes, key=lambda n: (KIT[n.instrument].octave, KIT[n.instrument].step)):
        drum = KIT[n.instrument]
        head = note.Unpitched(displayName=f"{drum.step}{drum.octave}")
        head.notehead = drum.notehead
        head.noteheadParenthesis = drum.parentheses
        heads.append(head)
    written = heads[0] if len(heads) == 1 else percussion.PercussionChord(heads)
    written.quarterLength = length
    written.stemDirection = "up" if voice == HANDS else "down"
    return written


def add_drum_kit(root: ET.Element) -> None:
    """Make the exported MusicXML a drum set: a score-instrument and MIDI sound per drum
    (channel 10, midi-unpitched = GM note + 1) and an ``<instrument id>`` on every note,
    read back from each note's staff position, notehead and voice."""
    score_part = root.find("part-list/score-part")
    score_part.set("id", "P1")
    root.find("part").set("id", "P1")
    for old in score_part.findall("score-instrument") + score_part.findall("midi-instrument"):
        score_part.remove(old)
    drums: dict[str, Drum] = {}
    for drum in KIT.values():
        drums.setdefault(drum.xml_id, drum)
    for drum in drums.values():
        ET.SubElement(ET.SubElement(score_part, "score-instrument", id=drum.xml_id), "instrument-name").text = drum.name
    for drum in drums.values():
        midi = ET.SubElement(score_part, "midi-instrument", id=drum.xml_id)
        ET.SubElement(midi, "midi-channel").text = str(MIDI_DRUM_CHANNEL)
        ET.SubElement(midi, "midi-unpitched").text = str(drum.gm + 1)
    for element in root.iter("note"):
        unpitched = element.find("unpitched")
        if unpitched is None:
            continue
        notehead = element.find("notehead")
        drum = drum_by_look(unpitched.findtext("display-step"), int(unpitched.findtext("display-octave")),
                            notehead.text if notehead is not None else "normal",
                            notehead is not None and notehead.get("parentheses") == "yes",
                            int(element.findtext("voice", "1")))
        children = list(element)
        voice = element.find("voice")
        at = children.index(voice) if voice is not None else children.index(element.find("duration")) + 1
        element.insert(at, ET.Element("instrument", id=drum.xml_id))
