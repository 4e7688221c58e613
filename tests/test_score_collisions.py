"""The collision check of bench/collisions.py: DrumScribe's own score pages have none, and
symbols that do collide, made so on purpose, are caught."""
import shutil
import tempfile
from pathlib import Path

import pytest

import batch.score.notation as notation
from batch.score import make_score
from batch.score.render import musicxml_bytes
from bench.collisions import Glyph, collisions, forbidden, shifted, verovio_score
from tests.test_score import groove, hit, shuffle


def musicxml(hits) -> bytes:
    score = make_score(hits, hits[-1].t + 0.5, "Collisions")
    return musicxml_bytes(notation.build_score(score.grid, score.bars, score.title, score.feel))


@pytest.fixture(scope="module")
def shuffle_xml() -> bytes:
    """Four bars of shuffle under its tempo and feel mark, with a ghost note, a flam and a tom fill,
    then ``shuffle``'s lone kick triplet (bar 6, bracket below) and snare triplet (bar 8, above)
    among rests: every kind the check compares."""
    hits = shuffle(bars=4)
    hits += [hit(0.4 + 60 / 110 * 9 + 0.27, "snare_ghost", 0.2), hit(0.4 + 60 / 110 * 13 - 0.03, "snare", 0.5)]
    hits += [hit(0.4 + 60 / 110 * (14 + s / 4), "tom_high", 0.7) for s in range(4)]
    return musicxml(sorted(hits, key=lambda h: h.t))


@pytest.fixture(scope="module")
def crowded_xml() -> bytes:
    """A groove whose rests, where both voices sound, sit on the other voice's side: among its notes."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(notation, "REST_SHIFT", {notation.HANDS: -3, notation.FEET: 3})
        return musicxml(groove(bars=2))


def test_drumscribes_pages_have_no_collision(shuffle_xml):
    glyphs = verovio_score(shuffle_xml)
    kinds = {g.kind for g in glyphs}
    assert {"notehead", "rest", "flag", "stem", "beam", "tuplet", "bracket", "text"} <= kinds
    assert collisions(glyphs) == []


def test_a_rest_moved_onto_another_chords_notehead_is_caught(shuffle_xml):
    glyphs = verovio_score(shuffle_xml)
    rest = next(g for g in glyphs if g.kind == "rest" and g.voice == 1)
    head = next(g for g in glyphs if g.kind == "notehead" and g.voice == 2)
    dx, dy = head.box[0] - rest.box[0], (head.box[1] + head.box[3] - rest.box[1] - rest.box[3]) / 2
    found = collisions(glyphs + [shifted(rest, dx, dy)])
    assert len(found) >= 1 and {found[0].first.kind, found[0].second.kind} == {"rest", "notehead"}


def test_rests_drawn_among_the_other_voices_notes_are_caught(crowded_xml):
    found = collisions(verovio_score(crowded_xml))
    assert any({c.first.kind, c.second.kind} == {"rest", "notehead"} for c in found)
    assert all(c.bar in (1, 2) for c in found)


def test_engraving_that_touches_by_design_does_not_count():
    head, other_head = Glyph("notehead", ((0, 0, 1.2, 1),), owner="a"), Glyph("notehead", ((0, 1, 1.2, 2),), owner="a")
    stem = Glyph("stem", ((1.1, -3, 1.2, 0.5),), owner="a")
    flag = Glyph("flag", ((1.1, -3, 2.1, -0.2),), owner="a")
    assert collisions([head, other_head, stem, flag]) == []  # a chord, its stem and flag
    rest = Glyph("rest", ((1.2, -1, 2.2, 1),), owner="b")  # sharing the notehead's right edge
    assert collisions([head, rest]) == []
    assert forbidden(rest, head) and forbidden(flag, rest) and not forbidden(head, stem)
    assert len(collisions([head, shifted(rest, -0.3, 0)])) == 1
    thin_stem = Glyph("stem", ((3.0, -3, 3.1, 0.5),), owner="c")  # thinner than twice the tolerance
    assert len(collisions([thin_stem, Glyph("rest", ((2.6, -1, 3.6, 1),), owner="d")])) == 1


@pytest.mark.skipif(shutil.which("mscore3") is None, reason="MuseScore 3 is not installed")
def test_musescore_lays_out_the_musicxml_without_collision_and_the_check_sees_its_overlaps(shuffle_xml, crowded_xml):
    from bench.score_collisions import musescore_collisions
    with tempfile.TemporaryDirectory() as clean, tempfile.TemporaryDirectory() as crowded:
        assert musescore_collisions(shuffle_xml, Path(clean), 0.06) == []
        assert any({c.first.kind, c.second.kind} == {"rest", "notehead"}
                   for c in musescore_collisions(crowded_xml, Path(crowded), 0.06))
