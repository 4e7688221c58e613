"""Evaluate weights on the MDB Drums development tracks (drum-only stems and full mixes).

``python -m models.train.mdb ../shared/data/mdb-dev [--weights DIR] [--tune [--write]]``:
5-family micro P/R/F within ±50 ms, per family, for ``*_drums.wav`` and ``*_mix.wav``.
``--tune`` searches one threshold per family on both sets together (the network runs once
per file; only peak picking is repeated) and reports, besides the tuned figures, a
leave-one-track-out estimate: each track scored with thresholds tuned on the other six,
which is what tuning on these seven tracks is worth on unseen music. ``--write`` stores
the tuned thresholds in the model card.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from models.audio import load_audio
from models.detector import Detector
from models.evaluate import FAMILIES, evaluate_many, format_table, load_onsets, scored_family
from models.peaks import PeakPicker
from models.features import features
from models.runtime import HitModel, Step
from models.vocab import FAMILY_OF

TRACKS = ("Beatles", "Britpop", "Country1", "Punk", "Reggae", "Rockabilly", "Shadows")
KINDS = ("drums", "mix")
CANDIDATES = [round(float(t), 2) for t in np.arange(0.15, 0.99, 0.05)]


def activations(detector: Detector, path: Path) -> np.ndarray:
    """The network's per-frame probabilities for a whole file (what ``transcribe`` picks peaks from)."""
    card, model = detector.card, detector.model
    lookahead = card.lookahead_frames
    frames = features(load_audio(path, card.sample_rate))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--tune", action="store_true")
    parser.add_argument("--write", action="store_true", help="store the tuned thresholds in the model card")
    args = parser.parse_args()
    model = HitModel(args.weights)
    detector = Detector(model)
    cached = {(track, kind): (activations(detector, args.folder / f"{track}_{kind}.wav"),
                              load_onsets(args.folder / f"{track}_class.txt"))
              for track in TRACKS for kind in KINDS if (args.folder / f"{track}_{kind}.wav").exists()}
    shipped = dict(model.card.thresholds)

    def report(title: str, thresholds_of) -> None:
        for kind in KINDS:
            pairs = [(onsets(detector, p, thresholds_of(track)), ref) for (track, k), (p, ref) in cached.items() if k == kind]
            print(f"== {kind}, {title}")
            print(format_table(evaluate_many(pairs)))

    report(f"thresholds {shipped}", lambda track: shipped)
    if not args.tune:
        return
    tuned = tune(detector, list(cached.values()), shipped)
    report(f"tuned on all seven tracks {tuned}", lambda track: tuned)
    held_out = {track: tune(detector, [v for (t, _), v in cached.items() if t != track], shipped) for track in TRACKS}
    report("leave-one-track-out (each track scored with thresholds tuned on the others)", lambda track: held_out[track])
    if args.write:
        card_path = Path(args.weights or model.card_path.parent) / "hitnet.json"
        card = json.loads(card_path.read_text())
        card["thresholds"] = tuned
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        print(f"wrote thresholds to {card_path}")


if __name__ == "__main__":
    main()
