import numpy as np
import pytest

from models.peaks import MIN_GAP_FRAMES, PeakPicker
from models.vocab import FAMILIES, FAMILY_OF, INSTRUMENTS

N_F, N_I = len(FAMILIES), len(INSTRUMENTS)


def picker(threshold: float = 0.5) -> PeakPicker:
    return PeakPicker(FAMILIES, INSTRUMENTS, FAMILY_OF, {f: threshold for f in FAMILIES}, 0.01)


def frames(n: int) -> np.ndarray:
    return np.zeros((n, 2 * N_F + N_I), np.float32)


def test_single_peak_gives_one_hit_with_time_instrument_velocity():
    act = frames(20)
    snare = FAMILIES.index("snare")
    act[9:12, snare] = [0.6, 0.9, 0.7]
    act[10, N_F + INSTRUMENTS.index("snare_rim")] = 0.8
    act[10, N_F + INSTRUMENTS.index("snare")] = 0.3
    act[10, N_F + N_I + snare] = 0.42
    p = picker()
    hits = p.push(act) + p.flush()
    assert len(hits) == 1
    hit = hits[0]
    assert hit.family == "snare" and hit.instrument == "snare_rim"
    assert hit.t == pytest.approx(0.105)
    assert hit.velocity == pytest.approx(0.42) and hit.confidence == pytest.approx(0.9)


def test_below_threshold_and_plateau_rules():
    act = frames(30)
    act[5, 0] = 0.4  # under threshold
    act[10:12, 0] = 0.8  # plateau: the first frame of it wins
    p = picker()
    hits = p.push(act) + p.flush()
    assert [round(h.t, 3) for h in hits] == [0.105]


def test_min_gap_suppresses_double_peaks_but_not_other_families():
    act = frames(30)
    act[[10, 10 + MIN_GAP_FRAMES - 1, 10 + 2 * MIN_GAP_FRAMES], 0] = 0.9
    act[10, 2] = 0.9
    p = picker()
    hits = p.push(act) + p.flush()
    assert sorted((h.family, round(h.t, 3)) for h in hits) == [("hihat", 0.105), ("kick", 0.105), ("kick", round(0.105 + 0.02 * MIN_GAP_FRAMES, 3))]


def test_peak_at_first_and_last_frame():
    act = frames(10)
    act[0, 1] = 0.9
    act[9, 1] = 0.9
    p = picker()
    hits = p.push(act) + p.flush()
    assert [round(h.t, 3) for h in hits] == [0.005, 0.095]


def one_frame_of(family: str, instrument: str, probability: float, act: np.ndarray, frame: int) -> None:
    act[frame, FAMILIES.index(family)] = probability
    act[frame, N_F + INSTRUMENTS.index(instrument)] = 1.0


def test_a_hat_and_a_cymbal_on_one_frame_keep_the_likelier():
    act = frames(40)
    one_frame_of("hihat", "hihat_closed", 0.9, act, 10)
    one_frame_of("cymbal", "crash", 0.6, act, 10)      # the hat stick heard as a crash too
    one_frame_of("hihat", "hihat_closed", 0.55, act, 20)
    one_frame_of("cymbal", "crash", 0.95, act, 20)     # a crash heard as a hat too
    one_frame_of("hihat", "hihat_closed", 0.9, act, 30)
    one_frame_of("cymbal", "ride", 0.9, act, 31)       # a frame apart: both stay
    p = picker()
    hits = p.push(act) + p.flush()
    assert [(h.instrument, round(h.t, 3)) for h in hits] == [
        ("hihat_closed", 0.105), ("crash", 0.205), ("hihat_closed", 0.305), ("ride", 0.315)]


def test_a_pedalled_hat_stays_beside_its_cymbal():
    act = frames(20)
    one_frame_of("hihat", "hihat_pedal", 0.6, act, 10)
    one_frame_of("cymbal", "ride", 0.9, act, 10)
    one_frame_of("kick", "kick", 0.9, act, 10)
    p = picker()
    hits = p.push(act) + p.flush()
    assert sorted(h.instrument for h in hits) == ["hihat_pedal", "kick", "ride"]


@pytest.mark.parametrize("seed", range(5))
def test_any_chunking_gives_the_same_hits(seed):
    rng = np.random.default_rng(seed)
    act = rng.random((500, 2 * N_F + N_I)).astype(np.float32)
    whole = picker()
    expected = whole.push(act) + whole.flush()
    chunked, hits, i = picker(), [], 0
    while i < len(act):
        n = int(rng.integers(1, 40))
        hits += chunked.push(act[i:i + n])
        i += n
    hits += chunked.flush()
    assert hits == expected and len(expected) > 50
