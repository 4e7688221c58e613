"""Threshold tuning (``models.train.scoring.tune``): per family, the threshold with the best F."""
import numpy as np

from models.detector import Detector
from models.runtime import HitModel
from models.train.scoring import CANDIDATES, onsets, tune
from models.vocab import FAMILIES, INSTRUMENTS

N_OUTPUTS = 2 * len(FAMILIES) + len(INSTRUMENTS)


def signal(peaks: dict[str, list[tuple[int, float]]], n: int = 1000) -> np.ndarray:
    """Per-frame probabilities with one-frame peaks: family -> [(frame, height)]."""
    probabilities = np.zeros((n, N_OUTPUTS), np.float32)
    for family, found in peaks.items():
        for frame, height in found:
            probabilities[frame, FAMILIES.index(family)] = height
    return probabilities


def test_each_family_gets_a_threshold_between_its_false_and_true_peaks():
    detector = Detector(HitModel())
    # kicks: true peaks at 0.9, false ones at 0.35; snares: true at 0.6, false at 0.3
    true_kicks, false_kicks = [100, 300, 500, 700], [200, 600]
    true_snares, false_snares = [150, 350, 550, 750, 900], [250, 450]
    probabilities = signal({"kick": [(f, 0.9) for f in true_kicks] + [(f, 0.35) for f in false_kicks],
                            "snare": [(f, 0.6) for f in true_snares] + [(f, 0.3) for f in false_snares]})
    reference = {"kick": [f / 100 for f in true_kicks], "snare": [f / 100 for f in true_snares]}
    start = {family: 0.15 for family in FAMILIES}  # lets every false peak through
    tuned = tune(detector, [(probabilities, reference)], start)
    assert 0.35 < tuned["kick"] <= 0.9 and 0.3 < tuned["snare"] <= 0.6
    assert tuned["kick"] in CANDIDATES and tuned["snare"] in CANDIDATES
    found = onsets(detector, probabilities, tuned)
    assert len(found["kick"]) == len(true_kicks) and len(found["snare"]) == len(true_snares)
    assert len(onsets(detector, probabilities, start)["kick"]) == len(true_kicks) + len(false_kicks)


def test_tuning_weighs_every_item_together():
    detector = Detector(HitModel())
    # one item's two true hi-hats peak at 0.5; the other has one true hi-hat at 0.9 and four
    # false ones at 0.55. Alone, the second wants a threshold over 0.55; together, keeping
    # every true hit (F 0.6) beats dropping the quiet ones (F 0.5).
    quiet_true = (signal({"hihat": [(100, 0.5), (300, 0.5)]}), {"hihat": [1.0, 3.0]})
    loud_false = (signal({"hihat": [(100, 0.9), (200, 0.55), (400, 0.55), (600, 0.55), (800, 0.55)]}), {"hihat": [1.0]})
    start = {family: 0.5 for family in FAMILIES}
    assert tune(detector, [loud_false], start)["hihat"] > 0.55
    assert tune(detector, [quiet_true, loud_false], start)["hihat"] <= 0.5
