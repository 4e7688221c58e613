import json
import os
import random
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from fractions import Fraction

import mido
import pytest
from music21 import converter, note, percussion

from batch.score import make_score, notation_svg, write_outputs
from models.beats import estimate_grid
from batch.score.kit import drum_by_look
from batch.score.quantize import quantize
from batch.score.render import svg_pages
from models.midi import DRUM_CHANNEL, TICKS_PER_BEAT
from models.peaks import Hit
from models.vocab import FAMILY_OF, GM_NOTE


def hit(t: float, instrument: str, velocity: float = 0.8) -> Hit:
    return Hit(t, instrument, FAMILY_OF.get(instrument, instrument), velocity, 0.9)


def groove(bpm: float = 100.0, bars: int = 4, start: float = 0.5, jitter: float = 0.008, seed: int = 1,
           drift: float = 0.0) -> list[Hit]:
    """Hi-hat eighths, kick on 1 and 3, snare on 2 and 4; a crash on the first downbeat, an
    open hi-hat closing bar 2, and in bar 4 a tom fill: four sixteenths, then a triplet.
    ``drift`` speeds the tempo up by that fraction over the whole groove."""
    rng = random.Random(seed)
    beat, total = 60.0 / bpm, 4 * bars

    def at(q: float) -> float:
        return start + beat * q - beat * drift * q * q / (2 * total) + rng.gauss(0, jitter)

    hits = [hit(at(0), "crash", 1.0)]
    for b in range(bars):
        fill = b % 4 == 3
        for e in range(8):
            q = 4 * b + e / 2
            if not (fill and e >= 4):
                hits.append(hit(at(q), "hihat_open" if (b % 4 == 1 and e == 7) else "hihat_closed", 0.5))
            if e in (0, 4):
                hits.append(hit(at(q), "kick", 0.9))
            if e in (2, 6):
                hits.append(hit(at(q), "snare", 0.85))
        if fill:
            hits += [hit(at(4 * b + 2 + s / 4), "tom_high", 0.7) for s in range(4)]
            hits += [hit(at(4 * b + 3 + s / 3), "tom_low", 0.75) for s in range(3)]
    return sorted(hits, key=lambda h: h.t)


def waltz(bpm: float = 120.0, bars: int = 8, start: float = 0.3) -> list[Hit]:
    rng, beat, hits = random.Random(2), 60.0 / bpm, []
    for i in range(3 * bars):
        t = start + i * beat
        hits.append(hit(t + rng.gauss(0, 0.008), "kick" if i % 3 == 0 else "snare", 0.9 if i % 3 == 0 else 0.6))
        hits.append(hit(t + rng.gauss(0, 0.008), "hihat_closed", 0.5))
    return hits


def six_eight(dotted_quarter_bpm: float, bars: int = 8, start: float = 0.2) -> list[Hit]:
    rng, eighth, hits = random.Random(3), 60.0 / dotted_quarter_bpm / 3, []
    for i in range(6 * bars):
        t = start + i * eighth
        hits.append(hit(t + rng.gauss(0, 0.008), "hihat_closed", 0.5))
        if i % 6 in (0, 3):
            hits.append(hit(t + rng.gauss(0, 0.008), "kick" if i % 6 == 0 else "snare", 0.9))
    return hits


def kit_counts(hits: list[Hit]) -> Counter:
    return Counter(hit.instrument for hit in hits)


@pytest.mark.parametrize("bpm", [80.0, 100.0, 132.0])
def test_tempo_metre_and_downbeat_of_a_rock_groove(bpm):
    hits = groove(bpm)
    grid = estimate_grid(hits)
    assert grid.bpm == pytest.approx(bpm, rel=0.02)
    assert grid.time_signature == "4/4"
    assert grid.offset_s == pytest.approx(0.5, abs=0.03)  # the crash and kick: beat one


@pytest.mark.parametrize("bpm", [90.0, 120.0, 150.0])
def test_waltz_is_three_four(bpm):
    grid = estimate_grid(waltz(bpm))
    assert (grid.time_signature, grid.bpm) == ("3/4", pytest.approx(bpm, rel=0.02))
    assert grid.offset_s == pytest.approx(0.3, abs=0.03)


@pytest.mark.parametrize("dotted_quarter", [45.0, 60.0, 80.0])
def test_kick_one_snare_four_in_eighths_is_six_eight(dotted_quarter):
    grid = estimate_grid(six_eight(dotted_quarter))
    assert grid.time_signature == "6/8"
    assert grid.bpm == pytest.approx(1.5 * dotted_quarter, rel=0.02)  # bpm counts quarters
    assert grid.offset_s == pytest.approx(0.2, abs=0.03)


def test_a_slow_backbeat_is_not_read_at_double_time():
    rng, sixteenth, hits = random.Random(4), 60.0 / 66 / 4, []
    for i in range(16 * 8):
        t = 0.37 + i * sixteenth
        if i % 2 == 0:
            hits.append(hit(t + rng.gauss(0, 0.007), "ride", 0.5))
        if i % 16 in (0, 10):
            hits.append(hit(t + rng.gauss(0, 0.007), "kick", 0.9))
        if i % 16 in (4, 12):
            hits.append(hit(t + rng.gauss(0, 0.007), "snare", 0.9))
    grid = estimate_grid(hits)
    assert (grid.bpm, grid.time_signature) == (pytest.approx(66, rel=0.02), "4/4")
    assert {(n.position, n.instrument) for n in quantize(hits, grid)[1].notes if n.instrument != "ride"} == {
        (0, "kick"), (1, "snare"), (Fraction(5, 2), "kick"), (3, "snare")}


def test_a_pickup_fills_the_end_of_an_extra_first_bar():
    pickup = [hit(0.5 - 0.15 * k, tom, 0.8) for k, tom in ((3, "tom_high"), (2, "tom_mid"), (1, "tom_low"))]
    bars = make_score(pickup + groove(bars=4), 12.0).bars
    assert [(n.position, n.instrument) for n in bars[0].notes] == [
        (Fraction(13, 4), "tom_high"), (Fraction(7, 2), "tom_mid"), (Fraction(15, 4), "tom_low")]
    assert {(0, "crash"), (0, "kick")} <= {(n.position, n.instrument) for n in bars[1].notes}


def test_every_hit_becomes_a_note_on_the_grid():
    hits = groove(bars=4)
    score = make_score(hits, hits[-1].t + 0.2)
    notes = [n for bar in score.bars for n in bar.notes]
    assert Counter(n.instrument for n in notes) == kit_counts(hits)
    assert all((n.position * 4).denominator == 1 or (n.position * 3).denominator == 1 for n in notes)
    fill = {(str(n.position), n.instrument) for n in score.bars[3].notes if n.instrument.startswith("tom")}
    assert fill == {("2", "tom_high"), ("9/4", "tom_high"), ("5/2", "tom_high"), ("11/4", "tom_high"),
                    ("3", "tom_low"), ("10/3", "tom_low"), ("11/3", "tom_low")}
    assert {(n.position, n.instrument) for n in score.bars[0].notes} >= {(0, "crash"), (0, "kick"), (1, "snare")}


def test_a_drifting_tempo_stays_on_the_beat():
    hits = groove(bpm=96, bars=32, drift=0.08)  # 96 -> about 104 bpm
    grid = estimate_grid(hits)
    bars = quantize(hits, grid)
    assert len(bars) == 32
    for bar in bars:
        if bar.index % 4 != 3:  # no fill: every note on an eighth, kick on 1 and 3
            assert all(n.position.denominator <= 2 for n in bar.notes)
            assert {n.position for n in bar.notes if n.instrument == "kick"} == {0, 2}


def test_one_line_one_slot_keeps_the_louder():
    hits = groove(bars=4) + [hit(0.5 + 0.6 + 0.012, "snare_rim", 0.99)]  # on bar 1's snare at beat 2
    bars = quantize(hits, estimate_grid(hits))
    at_two = [n for n in bars[0].notes if n.position == 1 and n.instrument.startswith("snare")]
    assert [(n.instrument, n.velocity) for n in at_two] == [("snare_rim", 0.99)]


def test_family_only_hits_are_written_as_the_familys_usual_drum(tmp_path):
    families = ["kick", "hihat", "snare", "tom", "cymbal"]
    hits = [hit(0.5 + 0.5 * i, family, 0.7) for i, family in enumerate(families * 4)]
    score = make_score(hits, 11.0)
    drums = ["kick", "hihat_closed", "snare", "tom_mid", "crash"]
    assert {n.instrument for bar in score.bars for n in bar.notes} == set(drums)
    paths = write_outputs(score, hits, tmp_path, {})
    notes = [m.note for m in mido.MidiFile(paths["midi"]) if m.type == "note_on" and m.velocity > 0]
    assert Counter(notes) == Counter({GM_NOTE[name]: 4 for name in drums})


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    hits = groove(bars=8) + [hit(0.5 + 0.6 * 5 + 0.3, "snare_ghost", 0.2), hit(0.5 + 0.6 * 9, "ride_bell", 0.7),
                             hit(0.5 + 0.6 * 13, "hihat_pedal", 0.6), hit(0.5 + 0.6 * 17, "china", 0.9),
                             hit(0.5 + 0.6 * 18, "splash", 0.9), hit(0.5 + 0.6 * 21, "ride", 0.6),
                             hit(0.5 + 0.6 * 22, "tom_mid", 0.6), hit(0.5 + 0.6 * 25 + 0.3, "snare_rim", 0.6)]
    hits.sort(key=lambda h: h.t)
    folder = tmp_path_factory.mktemp("score")
    score = make_score(hits, hits[-1].t + 0.5, "Groove")
    result = {"duration": hits[-1].t + 0.5, "hits": [h.to_dict() for h in hits]}
    return hits, score, write_outputs(score, hits, folder, result), folder


def test_outputs_are_written_whole(written):
    hits, score, paths, folder = written
    assert {fmt: p.name for fmt, p in paths.items()} == {
        "musicxml": "score.musicxml", "pdf": "score.pdf", "midi": "score.mid", "midi_quantized": "score-quantized.mid",
        "json": "result.json"}
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in paths.values())  # no temp files
    result = json.loads(paths["json"].read_text())
    assert result["bpm"] == score.grid.bpm and result["time_signature"] == "4/4" and len(result["hits"]) == len(hits)
    assert result["feel"] == "straight"


def test_musicxml_is_a_drum_set(written):
    hits, _, paths, _ = written
    root = ET.fromstring(paths["musicxml"].read_bytes())
    part = root.find("part-list/score-part")
    sounds = {m.get("id"): (m.findtext("midi-channel"), int(m.findtext("midi-unpitched")))
              for m in part.findall("midi-instrument")}
    names = {s.get("id"): s.findtext("instrument-name") for s in part.findall("score-instrument")}
    assert names.keys() == set(sounds) | {"P1-I0"} and names["P1-I0"] == part.findtext("part-name") == "Drumset"
    # MuseScore 3 names the kit's sound after the first instrument a note names: the neutral one
    assert next(root.iter("instrument")).get("id") == "P1-I0"
    assert set(sounds.values()) == {("10", gm + 1) for gm in GM_NOTE.values()}
    assert root.find("part/measure/attributes/clef/sign").text == "percussion"
    played = Counter()
    for element in root.iter("note"):
        if element.find("rest") is not None:
            continue
        assert element.findtext("voice") in ("1", "2")
        instrument_id = element.find("instrument").get("id")
        played[sounds[instrument_id][1] - 1] += 1
        stem = element.findtext("stem")
        voice = element.findtext("voice")
        assert stem is None or stem == ("up" if voice == "1" else "down")
    assert played == Counter(GM_NOTE[h.instrument] for h in hits)


def test_musicxml_parses_back_with_every_note_on_the_grid(written):
    hits, _, paths, _ = written
    parsed = converter.parse(paths["musicxml"])
    seen = Counter()
    for measure in parsed.parts[0].getElementsByClass("Measure"):
        for element in measure.recurse().getElementsByClass((note.Unpitched, percussion.PercussionChord)):
            offset = Fraction(element.getOffsetInHierarchy(measure)).limit_denominator(48)
            assert (offset * 4).denominator == 1 or (offset * 3).denominator == 1
            voice = int(element.getContextByClass("Voice").id)
            for head in (element.notes if isinstance(element, percussion.PercussionChord) else [element]):
                drum = drum_by_look(head.displayStep, head.displayOctave, head.notehead,
                                    bool(head.noteheadParenthesis), voice)
                seen[drum.instrument] += 1
    assert seen == kit_counts(hits)


def test_pdf_has_a_page_per_svg_page(written):
    _, _, paths, _ = written
    pages = svg_pages(paths["musicxml"].read_bytes())
    assert len(pages) >= 1 and pages[0].lstrip().startswith(("<?xml", "<svg"))
    pdf = paths["pdf"].read_bytes()
    assert pdf.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page\b(?!s)", pdf)) == len(pages)


def test_long_scores_run_to_more_pdf_pages(tmp_path):
    hits = groove(bars=64)
    paths = write_outputs(make_score(hits, hits[-1].t + 0.5), hits, tmp_path, {})
    pages = svg_pages(paths["musicxml"].read_bytes())
    assert len(pages) >= 2
    assert len(re.findall(rb"/Type\s*/Page\b(?!s)", paths["pdf"].read_bytes())) == len(pages)


def test_midi_has_the_hits_on_channel_10_at_their_times(written):
    hits, score, paths, _ = written
    midi = mido.MidiFile(paths["midi"])
    tempos = [m for m in midi.tracks[0] if m.type == "set_tempo"]
    assert len(tempos) > 1  # the tracked tempo, not one average
    played = [(m.channel, m.note, m.velocity) for m in midi if m.type == "note_on" and m.velocity > 0]
    assert Counter(played) == Counter(
        (DRUM_CHANNEL, GM_NOTE[h.instrument], max(1, round(h.velocity * 127))) for h in hits)
    # the tempo map turns ticks back into the recorded times, counted from the first downbeat
    # (a hit a little before it, written on it, starts the file)
    onsets = sorted(t for t, m in _timed(midi) if m.type == "note_on")
    assert onsets == pytest.approx(sorted(max(0.0, h.t - score.grid.offset_s) for h in hits), abs=0.001)


def test_empty_hits_make_one_bar_of_rest(tmp_path):
    score = make_score([], 5.0)
    assert len(score.bars) == 1 and score.bars[0].notes == ()
    paths = write_outputs(score, [], tmp_path, {"hits": []})
    parsed = converter.parse(paths["musicxml"])
    assert len(parsed.parts[0].getElementsByClass("Measure")) == 1
    assert not list(parsed.recurse().getElementsByClass(note.Unpitched))
    assert list(parsed.recurse().getElementsByClass(note.Rest))
    assert paths["pdf"].read_bytes().startswith(b"%PDF")
    assert not [m for m in mido.MidiFile(paths["midi"]) if m.type == "note_on"]


def test_live_notation_shows_the_last_completed_bars():
    hits = groove(bars=6)
    bar_seconds = 4 * 0.6
    assert notation_svg([h for h in hits if h.t < 2.0], now=2.0) is None  # bar 1 still running
    grid = estimate_grid(hits)
    now = 0.5 + 5 * bar_seconds + 0.1
    svg, last = notation_svg([h for h in hits if h.t < now], now, grid=grid, count=3)
    assert last == 5
    assert svg.lstrip().startswith(("<?xml", "<svg")) and svg.count('class="measure"') == 3


def _timed(midi: mido.MidiFile) -> list[tuple[float, mido.Message]]:
    """Messages with their times in seconds, through the file's tempo map (mido's playback clock)."""
    now, timed = 0.0, []
    for message in midi:
        now += message.time
        timed.append((now, message))
    return timed


def _ticks(midi: mido.MidiFile) -> list[tuple[int, mido.Message]]:
    now, ticked = 0, []
    for message in midi.tracks[0]:
        now += message.time
        ticked.append((now, message))
    return ticked


def test_midi_bar_lines_are_the_scores(written):
    hits, score, paths, _ = written
    bar_ticks = 4 * TICKS_PER_BEAT
    for fmt in ("midi", "midi_quantized"):
        messages = _ticks(mido.MidiFile(paths[fmt]))
        signature = [m for _, m in messages if m.type == "time_signature"]
        assert [(m.numerator, m.denominator) for m in signature] == [(4, 4)] and messages[0][1] is signature[0]
    quantized = Counter((tick, m.note) for tick, m in _ticks(mido.MidiFile(paths["midi_quantized"]))
                        if m.type == "note_on")
    written_at = Counter((int((bar.index * score.grid.bar_ql + n.position) * TICKS_PER_BEAT), GM_NOTE[n.instrument])
                         for bar in score.bars for n in bar.notes)
    assert quantized == written_at
    assert (2 * bar_ticks, GM_NOTE["kick"]) in quantized  # bar 3, beat 1
    performed = sorted(tick for tick, m in _ticks(mido.MidiFile(paths["midi"])) if m.type == "note_on")
    expected = sorted(max(0, round(q * TICKS_PER_BEAT)) for q in score.grid.quarters([h.t for h in hits]).tolist())
    assert performed == expected
    # both files run on the same tempo map: a written note sounds where its beat was played
    assert [m.tempo for _, m in _ticks(mido.MidiFile(paths["midi"])) if m.type == "set_tempo"] == \
        [m.tempo for _, m in _ticks(mido.MidiFile(paths["midi_quantized"])) if m.type == "set_tempo"]


def test_a_hit_before_the_first_bar_starts_the_midi_a_bar_early(tmp_path):
    hits = groove(bars=4)
    grid = estimate_grid(hits)
    early = hit(grid.offset_s - 0.9, "tom_low", 0.7)  # one and a half beats before bar 1: left out of the score
    score = make_score(hits, hits[-1].t + 0.5)
    paths = write_outputs(score, hits + [early], tmp_path, {})
    onsets = sorted((t, m.note) for t, m in _timed(mido.MidiFile(paths["midi"])) if m.type == "note_on")
    bar_seconds = 4 * 60.0 / score.grid.bpm
    assert onsets[0] == (pytest.approx(bar_seconds - 0.9, abs=0.02), GM_NOTE["tom_low"])
    first_kick = min(tick for tick, m in _ticks(mido.MidiFile(paths["midi_quantized"]))
                     if m.type == "note_on" and m.note == GM_NOTE["kick"])
    assert first_kick == 4 * TICKS_PER_BEAT  # the score's bar 1 is the file's bar 2


def test_musicxml_marks_tempo_above_and_places_rests_by_voice(written):
    _, score, paths, _ = written
    root = ET.fromstring(paths["musicxml"].read_bytes())
    tempo = next(d for d in root.iter("direction") if d.find("direction-type/metronome") is not None)
    assert tempo.get("placement") == "above" and float(tempo.find("sound").get("tempo")) == round(score.grid.bpm)
    for measure in root.iter("measure"):
        voices = {n.findtext("voice") for n in measure.iter("note") if n.get("print-object") != "no"}
        for element in measure.iter("note"):
            rest = element.find("rest")
            if rest is None or element.get("print-object") == "no":
                continue
            place = (rest.findtext("display-step"), rest.findtext("display-octave"))
            if voices == {"1"}:
                assert place == (None, None)  # alone on the staff: the usual place
            else:
                assert place == {"1": ("D", "5"), "2": ("G", "4")}[element.findtext("voice")]


def shuffle(bpm: float = 110.0, bars: int = 8, start: float = 0.4, seed: int = 5) -> list[Hit]:
    """A shuffle: hi-hat long-short on every beat, kick on 1 and 3, snare on 2 and 4; in bar 6
    a kick triplet on beat 3, in bar 8 a snare triplet on beat 4 (all three notes: real triplets)."""
    rng, beat = random.Random(seed), 60.0 / bpm

    def at(q: float) -> float:
        return start + beat * q + rng.gauss(0, 0.005)

    hits = [hit(at(0), "crash", 1.0)]
    for q in range(4 * bars):
        hits += [hit(at(q), "hihat_closed", 0.6), hit(at(q + 2 / 3), "hihat_closed", 0.45)]
        hits.append(hit(at(q), "kick", 0.9) if q % 2 == 0 else hit(at(q), "snare", 0.85))
    hits += [hit(at(22 + k / 3), "kick", 0.8) for k in (1, 2)]
    hits += [hit(at(31 + k / 3), "snare", 0.8) for k in (1, 2)]
    return sorted(hits, key=lambda h: h.t)


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory):
    hits = shuffle()
    score = make_score(hits, hits[-1].t + 0.5, "Shuffle")
    return hits, score, write_outputs(score, hits, tmp_path_factory.mktemp("shuffle"), {})


def test_a_shuffle_is_written_in_swung_eighths(shuffled):
    hits, score, paths = shuffled
    assert score.feel == "shuffle" and score.grid.time_signature == "4/4"
    triplet_beats = {(5, 2), (7, 3)}  # bar index, beat: where the kick and the snare play triplets
    hihats = [n for bar in score.bars for n in bar.notes if n.instrument == "hihat_closed"]
    assert {n.position % 1 for n in hihats if (n.bar, n.position // 1) not in triplet_beats} == {0, Fraction(1, 2)}
    assert {n.position % 1 for n in hihats if (n.bar, n.position // 1) in triplet_beats} == {0, Fraction(2, 3)}
    root = ET.fromstring(paths["musicxml"].read_bytes())
    feel = next(d for d in root.iter("direction") if (d.findtext("direction-type/words") or "").strip() == "Shuffle")
    swing = feel.find("sound/swing")
    assert feel.get("placement") == "above" and feel.find("direction-type/metronome") is not None  # Shuffle ♩ = 110
    assert (swing.findtext("first"), swing.findtext("second"), swing.findtext("swing-type")) == ("2", "1", "eighth")
    measures = root.findall("part/measure")
    tupleted = {m.get("number") for m in measures if m.find(".//time-modification") is not None}
    assert tupleted == {"6", "8"}  # only the real triplets
    # played as written: swung eighths two thirds into the beat, on the recording's tempo map
    played = {tick % TICKS_PER_BEAT for tick, m in _ticks(mido.MidiFile(paths["midi_quantized"]))
              if m.type == "note_on" and m.note == GM_NOTE["hihat_closed"]}
    assert played == {0, 2 * TICKS_PER_BEAT // 3}


def test_real_triplets_get_one_bracket_per_beat_on_the_stem_side(shuffled):
    _, _, paths = shuffled
    root = ET.fromstring(paths["musicxml"].read_bytes())
    divisions = int(root.findtext(".//divisions"))
    placements = []
    for measure in root.iter("measure"):
        for voice in ("1", "2"):
            notes = [n for n in measure.iter("note") if n.findtext("voice") == voice and n.find("chord") is None
                     and n.find("grace") is None]
            span = None
            for element in notes:
                tuplet = element.find("notations/tuplet")
                if tuplet is not None and tuplet.get("type") == "start":
                    span = 0
                    placements.append((voice, tuplet.get("placement"), tuplet.get("bracket")))
                    assert element.findtext("time-modification/normal-type") == "eighth"
                if span is not None:
                    span += int(element.findtext("duration"))
                if tuplet is not None and tuplet.get("type") == "stop":
                    assert span == divisions  # one beat
                    span = None
    # bar 6 beat 3: the kick's triplet below, the hi-hat's long-short of that beat above; bar 8 beat 4: the snare's
    assert sorted(placements) == [("1", "above", "yes"), ("1", "above", "yes"), ("2", "below", "yes")]


def test_ghost_notes_flams_and_drags(tmp_path):
    hits = groove(bars=4)
    flammed, dragged = [h for h in hits if h.instrument == "snare" and h.t > 3.0][:2]
    hits += [hit(flammed.t - 0.035, "snare", 0.5),  # a flam's grace stroke
             hit(flammed.t + 0.3, "snare", 0.2),  # a ghost note an eighth later
             hit(dragged.t - 0.07, "snare", 0.45), hit(dragged.t - 0.035, "snare", 0.4)]  # a drag's two
    hits.sort(key=lambda h: h.t)
    score = make_score(hits, hits[-1].t + 0.5)
    notes = [n for bar in score.bars for n in bar.notes if n.instrument.startswith("snare")]
    assert [n.graces for n in notes if n.graces] == [(0.5,), (0.45, 0.4)]
    assert [n.instrument for n in notes].count("snare_ghost") == 1
    paths = write_outputs(score, hits, tmp_path, {})
    root = ET.fromstring(paths["musicxml"].read_bytes())
    graces = [n for n in root.iter("note") if n.find("grace") is not None]
    assert [(n.find("grace").get("slash"), n.findtext("type"), n.findtext("beam")) for n in graces] == [
        ("yes", "eighth", None), ("no", "16th", "begin"), ("no", "16th", "end")]
    assert {n.find("instrument").get("id") for n in graces} == {f"P1-I{GM_NOTE['snare'] + 1}"}
    ghosts = [n for n in root.iter("note") if n.find("notehead") is not None
              and n.find("notehead").get("parentheses") == "yes"]
    assert len(ghosts) == 1
    snares = [t for t, m in _timed(mido.MidiFile(paths["midi_quantized"])) if m.type == "note_on" and m.note == 38]
    assert len(snares) == len(notes) + 3  # the grace notes sound too


@pytest.mark.skipif(shutil.which("mscore3") is None, reason="MuseScore 3 is not installed")
def test_musescore_reads_a_drumset_with_the_tempo_above(written, tmp_path):
    hits, _, paths, _ = written
    converted = tmp_path / "score.mscx"
    subprocess.run(["mscore3", "-o", str(converted), str(paths["musicxml"])], check=True, timeout=120,
                   env={**os.environ, "QT_QPA_PLATFORM": "offscreen"}, capture_output=True)
    part = ET.parse(converted).getroot().find("Score/Part")
    instrument = part.find("Instrument")
    assert part.findtext("trackName") == instrument.findtext("trackName") == "Drumset"
    assert instrument.findtext("useDrumset") == "1"
    assert {int(d.get("pitch")) for d in instrument.findall("Drum")} == set(GM_NOTE.values())
    tempo = ET.parse(converted).getroot().find(".//Tempo")
    assert tempo is not None and tempo.findtext("placement") != "below"
    # every note sounds its own drum
    pitches = Counter(int(n.findtext("pitch")) for n in ET.parse(converted).getroot().iter("Note"))
    assert pitches == Counter(GM_NOTE[h.instrument] for h in hits)
