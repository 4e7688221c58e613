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

from models.detector import Detector
from models.evaluate import Onsets, evaluate_many, format_table, load_onsets
from models.runtime import HitModel
from models.train.scoring import activations, onsets, tune
from models.train.validate import validation_items

TRACKS = ("Beatles", "Britpop", "Country1", "Punk", "Reggae", "Rockabilly", "Shadows")
KINDS = ("drums", "mix")


def mdb_items(detector: Detector, folder: Path) -> dict[tuple[str, str], tuple[np.ndarray, Onsets]]:
    """Activations and annotated onsets of every (track, kind) file present in ``folder``."""
    return {(track, kind): (activations(detector, folder / f"{track}_{kind}.wav"), load_onsets(folder / f"{track}_class.txt"))
            for track in TRACKS for kind in KINDS if (folder / f"{track}_{kind}.wav").exists()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--tune", action="store_true")
    parser.add_argument("--write", action="store_true", help="store the tuned thresholds in the model card")
    parser.add_argument("--validation", type=Path, default=None,
                        help="a rendered validation set (held-out kits) tuned on together with the tracks")
    args = parser.parse_args()
    model = HitModel(args.weights)
    detector = Detector(model)
    cached = mdb_items(detector, args.folder)
    shipped = dict(model.card.thresholds)

    def report(title: str, thresholds_of) -> None:
        for kind in KINDS:
            pairs = [(onsets(detector, p, thresholds_of(track)), ref) for (track, k), (p, ref) in cached.items() if k == kind]
            print(f"== {kind}, {title}")
            print(format_table(evaluate_many(pairs)))

    report(f"thresholds {shipped}", lambda track: shipped)
    if not args.tune:
        return
    rendered = validation_items(detector, args.validation) if args.validation else []
    tuned = tune(detector, list(cached.values()) + rendered, shipped)
    report(f"tuned on all seven tracks{' and the validation set' if rendered else ''} {tuned}", lambda track: tuned)
    held_out = {track: tune(detector, [v for (t, _), v in cached.items() if t != track] + rendered, shipped) for track in TRACKS}
    report("leave-one-track-out (each track scored with thresholds tuned on the others)", lambda track: held_out[track])
    if args.write:
        card_path = Path(args.weights or model.card_path.parent) / "hitnet.json"
        card = json.loads(card_path.read_text())
        card["thresholds"] = tuned
        card_path.write_text(json.dumps(card, indent=2) + "\n")
        print(f"wrote thresholds to {card_path}")


if __name__ == "__main__":
    main()
