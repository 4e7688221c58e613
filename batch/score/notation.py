"""Quantized bars as a music21 drum-set score, and the drum-set metadata of its MusicXML.

Hands are voice 1 (stems up), feet voice 2 (stems down). A note lasts to the next note of
its voice within the beat, rests fill the gaps, so beams and tuplets fall by beat: every
triplet beat gets its own bracket of eighth-note triplets (above for the hands, below for
the feet, so a kick triplet's "3" never lands among the hi-hats). Where both voices sound
in a bar their rests move apart (the hands' up, the feet's down) instead of meeting
mid-staff among the other voice's notes and flags.

music21 writes one instrument per part and keys instruments by class, which cannot
describe a drum set; ``add_drum_kit`` rewrites the exported part's instruments, and
``place_directions`` sets the tempo and feel marks above the staff, with a swing for playback.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from fractions import Fraction

from music21 import beam, clef, duration, expressions, instrument, metadata, meter, note, percussion, stream, tempo

from batch.score.feel import SHUFFLE, STRAIGHT, SWING
from batch.score.kit import FEET, HANDS, KIT, Drum, drum_by_look
from batch.score.quantize import Bar, Note
from models.beats import Grid

# Durations written as one symbol, longest first: a note never ties, the rest of a gap is rests.
WRITABLE = tuple(Fraction(x) for x in ("4", "3", "2", "3/2", "1", "3/4", "2/3", "1/2", "1/3", "1/4"))
MIDI_DRUM_CHANNEL = 10  # counted from one, as MusicXML does
# Staff steps from the middle line for a voice's rests when both voices sound in the bar:
# where MuseScore puts them itself (``render`` moves Verovio's short rests further out).
REST_SHIFT = {HANDS: 2, FEET: -2}
TUPLET_PLACEMENT = {HANDS: "above", FEET: "below"}
FEEL_WORDS = {SWING: "Swing", SHUFFLE: "Shuffle"}
# MuseScore 3 names a drum part's sound after the first instrument a note names; a hidden
# rest naming this neutral one first makes its mixer say "Drumset", not "Acoustic Snare".
KIT_ID, KIT_NAME = "P1-I0", "Drumset"


def build_score(grid: Grid, bars: list[Bar], title: str, feel: str = STRAIGHT) -> stream.Score:
    """One percussion part, bars numbered from ``bars[0].index + 1``; a swing marking when
    ``feel`` is swing or shuffle (its eighths are then written straight and played long-short)."""
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
            if feel in FEEL_WORDS:
                measure.insert(0, expressions.TextExpression(FEEL_WORDS[feel]))
        voices = [v for v in (HANDS, FEET) if v == HANDS or any(KIT[n.instrument].voice == v for n in bar.notes)]
        for voice in voices:
            notes = [n for n in bar.notes if KIT[n.instrument].voice == voice]
            measure.insert(0, _voice(voice, notes, grid, signature, len(voices) > 1))
        part.append(measure)
    score.insert(0, part)
    return score


def _voice(number: int, notes: list[Note], grid: Grid, signature: meter.TimeSignature,
           shared: bool) -> stream.Voice:
    """One voice of one bar: chords at the notes' positions, rests between, beat by beat;
    beamed by the time signature's groups (what ``makeBeams`` does, without its slow
    context searches and stem changes). ``shared``: the other voice sounds in this bar too."""
    voice = stream.Voice(id=str(number))
    at: dict[Fraction, list[Note]] = defaultdict(list)
    for n in notes:
        at[n.position].append(n)
    beat, bar_ql = grid.beat_ql, grid.bar_ql
    shared_voice = number if shared else None
    if not at:
        rest = note.Rest(quarterLength=bar_ql)
        rest.fullMeasure = True
        rest.stepShift = REST_SHIFT[number] if shared else 0
        voice.insert(0, rest)
        return voice
    beats = int(bar_ql / beat)
    empty = [not any(j * beat <= p < (j + 1) * beat for p in at) for j in range(beats)]
    j = 0
    while j < beats:
        start = j * beat
        if empty[j]:
            span = 2 if beats == 4 and j % 2 == 0 and empty[j + 1] else 1  # half-bar rests in 4/4, 12/8
            _rests(voice, start, span * beat, shared_voice)
            j += span
            continue
        positions = sorted(p for p in at if start <= p < start + beat)
        _rests(voice, start, positions[0] - start, shared_voice)
        for p, following in zip(positions, positions[1:] + [start + beat]):
            length = next(d for d in WRITABLE if d <= following - p)
            for grace in _graces(at[p], number):
                voice.insert(p, grace)
            voice.insert(p, _chord(at[p], length, number))
            _rests(voice, p + length, following - p - length, shared_voice)
        j += 1
    written = [element for element in voice.notesAndRests if not element.duration.isGrace]
    for element, beams in zip(written, signature.getBeams(written)):
        element.beams = beams or beam.Beams()
    _bracket_triplets(written, beat, TUPLET_PLACEMENT[number])
    return voice


def _rests(voice: stream.Voice, start: Fraction, length: Fraction, shared_voice: int | None) -> None:
    """Rests filling ``length`` from ``start``, moved to ``shared_voice``'s side of the staff."""
    while length > 0:
        piece = next(d for d in WRITABLE if d <= length)
        rest = note.Rest(quarterLength=piece)
        if shared_voice is not None:
            rest.stepShift = REST_SHIFT[shared_voice]
        voice.insert(start, rest)
        start, length = start + piece, length - piece


def _bracket_triplets(written: list[note.GeneralNote], beat: Fraction, placement: str) -> None:
    """One bracket of eighth-note triplets per triplet beat, on the voice's stem side.

    music21 would read a quarter-eighth triplet as a quarter-note triplet and may run one
    bracket across two beats; notation programs then draw brackets of changing widths."""
    by_beat: dict[int, list[note.GeneralNote]] = defaultdict(list)
    for element in written:
        by_beat[int(Fraction(element.offset) // beat)].append(element)
    for members in by_beat.values():
        if not any(element.duration.tuplets for element in members):
            continue
        for k, element in enumerate(members):
            triplet = duration.Tuplet(3, 2, "eighth")
            triplet.type = "start" if k == 0 else "stop" if k == len(members) - 1 else None
            triplet.bracket, triplet.placement = True, placement
            written_type = "quarter" if Fraction(element.quarterLength) == Fraction(2, 3) else "eighth"
            element.duration = duration.Duration(type=written_type)
            element.duration.appendTuplet(triplet)


def _graces(notes: list[Note], voice: int) -> list[note.Unpitched]:
    """The grace notes of the flams and drags among one position's notes: a flam's one
    slashed eighth, a drag's beamed sixteenths."""
    graces = []
    for n in notes:
        strokes = []
        for _ in n.graces:
            grace = _head(KIT[n.instrument]).getGrace(appoggiatura=False)
            grace.duration.type = "eighth" if len(n.graces) == 1 else "16th"
            grace.duration.slash = len(n.graces) == 1
            grace.stemDirection = "up" if voice == HANDS else "down"
            strokes.append(grace)
        if len(strokes) > 1:
            for k, grace in enumerate(strokes):
                grace.beams.fill("16th", "start" if k == 0 else "stop" if k == len(strokes) - 1 else "continue")
        graces += strokes
    return graces


def _head(drum: Drum) -> note.Unpitched:
    head = note.Unpitched(displayName=f"{drum.step}{drum.octave}")
    head.notehead = drum.notehead
    head.noteheadParenthesis = drum.parentheses
    return head


def _chord(notes: list[Note], length: Fraction, voice: int) -> note.NotRest:
    heads = [_head(KIT[n.instrument])
             for n in sorted(notes, key=lambda n: (KIT[n.instrument].octave, KIT[n.instrument].step))]
    written = heads[0] if len(heads) == 1 else percussion.PercussionChord(heads)
    written.quarterLength = length
    written.stemDirection = "up" if voice == HANDS else "down"
    return written


def place_directions(root: ET.Element) -> None:
    """Tempo marks above the staff (MuseScore puts a direction without a placement below).
    A feel mark joins the tempo mark ("Shuffle ♩ = 110", as drum charts write it; on its own
    Verovio sets it among the first notes) with a ``<sound><swing>``: eighths played 2:1."""
    directions = list(root.iter("direction"))
    for direction in directions:
        direction.set("placement", "above")
    tempo = next((d for d in directions if d.find("direction-type/metronome") is not None), None)
    feel = next((d for d in directions if d.findtext("direction-type/words") in FEEL_WORDS.values()), None)
    if tempo is None or feel is None:
        return
    words = feel.find("direction-type")
    words.find("words").text += " "  # MuseScore runs the words into the metronome mark otherwise
    feel.remove(words)
    tempo.insert(0, words)
    root.find("part/measure").remove(feel)  # both open the first bar
    sound = tempo.find("sound")
    if sound is None:
        sound = ET.SubElement(tempo, "sound")
    swing = ET.SubElement(sound, "swing")
    ET.SubElement(swing, "first").text = "2"
    ET.SubElement(swing, "second").text = "1"
    ET.SubElement(swing, "swing-type").text = "eighth"


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
    ET.SubElement(ET.SubElement(score_part, "score-instrument", id=KIT_ID), "instrument-name").text = KIT_NAME
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
    _name_the_kit_first(root.find("part/measure"))


def _name_the_kit_first(measure: ET.Element) -> None:
    """Open the first bar with a hidden whole-bar rest in a voice of its own that names the
    neutral kit instrument, then step back to the bar's start."""
    attributes = measure.find("attributes")
    time = attributes.find("time")
    length = int(attributes.findtext("divisions")) * 4 * int(time.findtext("beats")) // int(time.findtext("beat-type"))
    hidden = ET.Element("note", {"print-object": "no"})
    ET.SubElement(hidden, "rest", measure="yes")
    ET.SubElement(hidden, "duration").text = str(length)
    ET.SubElement(hidden, "instrument", id=KIT_ID)
    ET.SubElement(hidden, "voice").text = "3"
    backup = ET.Element("backup")
    ET.SubElement(backup, "duration").text = str(length)
    at = list(measure).index(measure.find("note"))
    measure[at:at] = [hidden, backup]
