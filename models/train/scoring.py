"""Scoring a detector on whole signals: activations, peak picking, per-family threshold tuning.

Shared by the MDB evaluation (``mdb``) and the rendered validation set (``validate``): the
network runs once per signal, and only peak picking is repeated while thresholds are tuned.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.audio import load_audio
from models.detector import Detector
from models.evaluate import FAMILIES, evaluate_many, scored_family
from models.features import features
from models.peaks import PeakPicker
from models.runtime import Step
from models.vocab import FAMILY_OF

CANDIDATES = [round(float(t), 2) for t in np.arange(0.15, 0.99, 0.05)]


def activations(detector: Detector, path: Path) -> np.ndarray:
    """The network's per-frame probabilities for a whole file (what ``transcribe`` picks peaks from)."""
    return frame_activations(detector, features(load_audio(path, detector.card.sample_rate)))


def frame_activations(detector: Detector, frames: np.ndarray) -> np.ndarray:
    """Per-frame probabilities for the log-mel ``frames`` of a whole signal."""
    card, model = detector.card, detector.model
    lookahead = card.lookahead_frames
    frames = np.concatenate([frames, np.zeros((lookahead, card.n_mels), np.float32)])  # silence after the end
    return model.run([Step(frames, model.initial_state)])[0].probabilities[lookahead:]


def onsets(detector: Detector, probabilities: np.ndarray, thresholds: dict[str, float]) -> dict[str, list[float]]:
    card = detector.card
    picker = PeakPicker(card.families, card.instruments, FAMILY_OF, thresholds, card.hop / card.sample_rate)
    found: dict[str, list[float]] = {family: [] for family in FAMILIES}
    for hit in picker.push(probabilities) + picker.flush():
        family = scored_family(hit.family, hit.instrument)
        if family is not None:
            found[family].append(hit.t)
    return found


def tune(detector: Detector, items: list[tuple[np.ndarray, dict]], start: dict[str, float]) -> dict[str, float]:
    """Per family, the threshold with the best F-measure over ``items`` (families are independent)."""
    best = dict(start)
    for family in FAMILIES:
        scores = {}
        for threshold in CANDIDATES:
            trial = {**best, family: threshold}
            scores[threshold] = evaluate_many([(onsets(detector, p, trial), ref) for p, ref in items])[family]["f"]
        best[family] = max(scores, key=scores.get)
    return best
