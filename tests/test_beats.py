"""The beat tracker's learned choices: the beat's octave and beat one, as drummers play them."""
import random

import numpy as np
import pytest

from models.beats import estimate_grid, metrical_weights, octave_candidates, track_pulses
from models.peaks import Hit
from models.train.beats import detector_like, example
from models.vocab import FAMILY_OF


def hit(t: float, instrument: str, velocity: float = 0.8) -> Hit:
    return Hit(t, instrument, FAMILY_OF[instrument], velocity, 0.9)


def pattern(bpm: float, bars: int, parts: dict[str, list[float]], start: float = 0.3, seed: int = 5,
            first_beat: float = 0.0) -> list[Hit]:
    """``parts``: instrument -> beats of the bar (from 0) it plays on, repeated each bar;
    the recording begins ``first_beat`` beats into the first bar."""
    rng, beat = random.Random(seed), 60.0 / bpm
    hits = []
    for bar in range(bars):
        for instrument, beats in parts.items():
            for b in beats:
                position = 4 * bar + b - first_beat
                if position >= 0:
                    hits.append(hit(start + position * beat + rng.gauss(0, 0.006), instrument))
    return sorted(hits, key=lambda h: h.t)


# The pattern of MDB's "Beatles" stem, which the score read at half its 110 bpm: snare on 2
# and the "and" of 3, kicks on the "and" of 2 and on 3, a floor tom on 4.
OFFBEAT_SNARE = {"snare": [1, 2.5], "kick": [1.5, 2], "tom_low": [3]}
ROCK = {"hihat_closed": [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5], "kick": [0, 2], "snare": [1, 3]}


def test_an_offbeat_snare_pattern_is_not_read_at_half_tempo():
    grid = estimate_grid(pattern(111, 16, OFFBEAT_SNARE))
    assert grid.bpm == pytest.approx(111, rel=0.02)
    assert grid.time_signature == "4/4"


@pytest.mark.parametrize("bpm", [70, 95, 128, 160])
def test_a_rock_beat_is_counted_in_quarters_with_the_backbeat_on_two_and_four(bpm):
    grid = estimate_grid(pattern(bpm, 12, ROCK))
    assert grid.bpm == pytest.approx(bpm, rel=0.02)
    assert grid.offset_s == pytest.approx(0.3, abs=0.02)


@pytest.mark.parametrize("first_beat", [1, 2, 3])
def test_a_recording_that_starts_mid_bar_opens_with_a_pickup(first_beat):
    """The drummer comes in on a later beat; crashes, and kicks on 1, 3 and the "and" of 3, mark
    each downbeat after it. (With kicks on 1 and 3 alone, a crash on every one barely outweighs
    the prior that recordings start on one: entering on beat 3, that groove is read either way.)"""
    parts = {**ROCK, "kick": [0, 2, 2.5], "crash": [0]}
    hits = pattern(100, 12, parts, first_beat=first_beat)
    grid = estimate_grid(hits)
    bar = 4 * 0.6
    first_downbeat = 0.3 + (4 - first_beat) * 0.6
    assert grid.offset_s < hits[0].t  # the first bar holds the pickup
    assert grid.offset_s == pytest.approx(first_downbeat - bar, abs=0.03)


def test_a_recording_that_opens_with_a_fill_enters_the_groove_on_one():
    """As MDB's "Britpop" opens: snare sixteenths on beats 3 and 4 of a pickup bar, then a rock
    groove whose kicks fall on 1, 3 and the "and" of 3 (so kicks alone cannot tell 1 from 3)."""
    groove = {"hihat_closed": [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5], "kick": [0, 2, 2.5], "snare": [1, 3]}
    hits = pattern(110, 12, groove, start=0.3 + 4 * 60 / 110)
    beat = 60 / 110
    hits = sorted([hit(0.3 + 2 * beat + i * beat / 4, "snare") for i in range(8)] + hits, key=lambda h: h.t)
    grid = estimate_grid(hits)
    bar = 4 * beat
    entry = 0.3 + 4 * beat  # the first hi-hat and kick: bar one
    assert (grid.offset_s - entry) / bar == pytest.approx(round((grid.offset_s - entry) / bar), abs=0.03)


def test_the_tracker_keeps_working_through_detector_errors():
    rng = random.Random(3)
    hits = detector_like(pattern(120, 16, ROCK), 120, rng)
    assert estimate_grid(hits).bpm == pytest.approx(120, rel=0.02)


def test_training_labels_point_at_the_click():
    """``models.train.beats`` labels the candidate on the click's beats and the pulse on bar one."""
    hits = pattern(100, 12, {**ROCK, "crash": [0]}, start=0.0)
    item = example(hits, 100.0, 4)
    candidates = octave_candidates(track_pulses(hits))
    right = candidates[item.octave_label]
    assert 60.0 / np.median(np.diff(right)) == pytest.approx(100, rel=0.02)
    assert right[item.downbeat_label] % 2.4 == pytest.approx(0, abs=0.03) or right[item.downbeat_label] % 2.4 == pytest.approx(2.4, abs=0.03)
    assert example(hits, 61.0, 4) is None  # no candidate keeps a click it was not played to


def test_shipped_weights_fit_the_features():
    weights = metrical_weights()
    from models.beat_features import DOWNBEAT_FEATURES, OCTAVE_FEATURES

    assert weights.octave.shape == (OCTAVE_FEATURES,) and weights.downbeat.shape == (DOWNBEAT_FEATURES,)


def test_metre_features_leave_out_hits_outside_the_pulses():
    """A hit before the first pulse counts nowhere (not, by a negative index, at the last pulse)."""
    from models.beats import _features

    pulses = np.arange(8) * 0.5 + 1.0
    features = _features([hit(0.4, "crash"), hit(1.0, "kick")], pulses)
    assert features.sum() == pytest.approx(0.5 + 0.8) and features[0].sum() == pytest.approx(0.5 + 0.8)
