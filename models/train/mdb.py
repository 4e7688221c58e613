"""Evaluate weights on the MDB Drums development tracks (drum-only stems and full mixes).

``python -m models.train.mdb ../shared/data/mdb-dev [--weights DIR] [--tune]``: 5-family
micro P/R/F within ±50 ms, per family, for ``*_drums.wav`` and ``*_mix.wav``. ``--tune``
also searches per-family thresholds (reported, never written: tuning on the evaluation
set flatters it, so shipped thresholds come from synthetic validation data).
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from models.audio import load_audio
from models.detector import Detector
from models.evaluate import FAMILIES, evaluate_many, format_table, load_onsets
from models.runtime import HitModel

TRACKS = ("Beatles", "Britpop", "Country1", "Punk", "Reggae", "Rockabilly", "Shadows")


def predictions(detector: Detector, path: Path) -> dict[str, list[float]]:
    hits = detector.transcribe(load_audio(path, detector.card.sample_rate))
    onsets: dict[str, list[float]] = {family: [] for family in FAMILIES}
    for hit in hits:
        onsets[hit.family].append(hit.t)
    return onsets


def evaluate_folder(detector: Detector, folder: Path, kind: str) -> dict:
    pairs = [(predictions(detector, folder / f"{track}_{kind}.wav"), load_onsets(folder / f"{track}_class.txt"))
             for track in TRACKS if (folder / f"{track}_{kind}.wav").exists()]
    return evaluate_many(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--tune", action="store_true")
    args = parser.parse_args()
    model = HitModel(args.weights)
    detector = Detector(model)
    for kind in ("drums", "mix"):
        print(f"== {kind}")
        print(format_table(evaluate_folder(detector, args.folder, kind)))
    if args.tune:
        best = dict(model.card.thresholds)
        for family in FAMILIES:
            scores = {}
            for threshold in np.arange(0.2, 0.85, 0.05):
                model.card = replace(model.card, thresholds={**best, family: float(threshold)})
                result = evaluate_folder(Detector(model), args.folder, "drums")
                scores[round(float(threshold), 2)] = result[family]["f"]
            best[family] = max(scores, key=scores.get)
            print(family, scores, "->", best[family], flush=True)
        print("tuned thresholds:", best)


if __name__ == "__main__":
    main()
