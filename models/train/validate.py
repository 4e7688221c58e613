"""Score exported weights on a rendered validation set (kits held out of training).

``python -m models.train.validate VAL_DIR [--weights DIR]``: the same measure as MDB
(±50 ms, five families, micro F, side sticks unscored) with the card's thresholds and with
thresholds tuned on the set, so checkpoints and thresholds are not chosen on MDB alone.
The set comes from ``models.train.synth --kits validation --split test``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from models.detector import Detector
from models.evaluate import FAMILIES, Onsets, evaluate_many, format_table, scored_family
from models.runtime import HitModel
from models.train.scoring import frame_activations, onsets, tune
from models.vocab import FAMILY_OF, INSTRUMENTS


def reference(record: dict) -> Onsets:
    """The rendered hits of one example, by scored family."""
    found: Onsets = {family: [] for family in FAMILIES}
    for time, index in zip(record["times"], record["instruments"]):
        instrument = INSTRUMENTS[int(index)]
        family = scored_family(FAMILY_OF[instrument], instrument)
        if family is not None:
            found[family].append(float(time))
    return found


def validation_items(detector: Detector, folder: Path) -> list[tuple[np.ndarray, Onsets]]:
    records = [record for path in sorted(folder.glob("shard-*.npz")) for record in np.load(path, allow_pickle=True)["examples"]]
    return [(frame_activations(detector, record["features"].astype(np.float32)), reference(record)) for record in records]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--weights", type=Path, default=None)
    args = parser.parse_args()
    detector = Detector(HitModel(args.weights))
    items = validation_items(detector, args.folder)
    shipped = dict(detector.card.thresholds)
    print(f"== validation ({len(items)} examples), thresholds {shipped}")
    print(format_table(evaluate_many([(onsets(detector, p, shipped), ref) for p, ref in items])))
    tuned = tune(detector, items, shipped)
    print(f"== validation, thresholds tuned on it {tuned}")
    print(format_table(evaluate_many([(onsets(detector, p, tuned), ref) for p, ref in items])))


if __name__ == "__main__":
    main()
