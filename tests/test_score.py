import json
import random
import re
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
from models.midi import DRUM_CHANNEL
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
        "musicxml": "score.musicxml", "pdf": "score.pdf", "midi": "score.mid", "json": "result.json"}
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in paths.values())  # no temp files
    result = json.loads(paths["json"].read_text())
    assert result["bpm"] == score.grid.bpm and result["time_signature"] == "4/4" and len(result["hits"]) == len(hits)


def test_musicxml_is_a_drum_set(written):
    hits, _, paths, _ = written
    root = ET.fromstring(paths["musicxml"].read_bytes())
    part = root.find("part-list/score-part")
    sounds = {m.get("id"): (m.findtext("midi-channel"), int(m.findtext("midi-unpitched")))
              for m in part.findall("midi-instrument")}
    assert {s.get("id") for s in part.findall("score-instrument")} == set(sounds)
    assert set(sounds.values()) == {("10", gm + 1) for gm in GM_NOTE.values()}
    assert root.find("part/measure/attributes/clef/sign").text == "percussion"
    played = Counter()
    for element in root.iter("note"):
        if element.find("rest") is not None:
            continue
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


def test_midi_has_the_hits_on_channel_10_with_tempo(written):
    hits, score, paths, _ = written
    midi = mido.MidiFile(paths["midi"])
    tempos = [m.tempo for m in midi.tracks[0] if m.type == "set_tempo"]
    assert tempos == [mido.bpm2tempo(score.grid.bpm)]
    played = [(m.channel, m.note, m.velocity) for m in midi if m.type == "note_on" and m.velocity > 0]
    assert Counter(played) == Counter(
        (DRUM_CHANNEL, GM_NOTE[h.instrument], max(1, round(h.velocity * 127))) for h in hits)


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
