"""Choose the shipped weights among training checkpoints, and tune their thresholds.

``python -m models.train.select CKPT... --validation VAL --mdb MDB --out models/weights``:
each checkpoint is exported and scored on the rendered validation set (kits never trained
on) and on the MDB development tracks, drum-only and with the band, with per-family
thresholds tuned on all of them together. The checkpoint with the best mean of the three
micro F-measures is exported to ``--out`` with those thresholds. Choosing on more than
the tracks we report keeps the choice from fitting seven songs.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from models.detector import Detector
from models.evaluate import evaluate_many
from models.network import HitNet
from models.runtime import HitModel
from models.train.export import DEFAULT_THRESHOLDS, export
from models.train.mdb import KINDS, mdb_items
from models.train.scoring import onsets, tune
from models.train.validate import validation_items


def score(weights: Path, validation: Path, mdb: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Micro F on each set with thresholds tuned on all of them, and those thresholds."""
    detector = Detector(HitModel(weights))
    tracks = mdb_items(detector, mdb)
    sets = {"validation": validation_items(detector, validation),
            **{f"mdb_{kind}": [item for (_, k), item in tracks.items() if k == kind] for kind in KINDS}}
    thresholds = tune(detector, [item for items in sets.values() for item in items], DEFAULT_THRESHOLDS)
    figures = {name: evaluate_many([(onsets(detector, p, thresholds), ref) for p, ref in items])["micro"]["f"]
               for name, items in sets.items()}
    return figures, thresholds


def load_checkpoint(path: Path) -> HitNet:
    return HitNet.from_state_dict(torch.load(path, map_location="cpu"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--validation", type=Path, required=True)
    parser.add_argument("--mdb", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--version", default="dev")
    args = parser.parse_args()
    results = []
    for checkpoint in args.checkpoints:
        with tempfile.TemporaryDirectory() as tmp:
            export(load_checkpoint(checkpoint), Path(tmp), {})
            figures, thresholds = score(Path(tmp), args.validation, args.mdb)
        mean = sum(figures.values()) / len(figures)
        print(f"{checkpoint.name}: mean {mean:.3f} " + " ".join(f"{k} {v:.3f}" for k, v in figures.items()), flush=True)
        results.append((mean, checkpoint, thresholds, figures))
    mean, best, thresholds, figures = max(results, key=lambda result: result[0])
    card_path = args.out / "hitnet.json"
    kept = {k: v for k, v in json.loads(card_path.read_text()).items() if k in ("training", "licenses")} if card_path.exists() else {}
    export(load_checkpoint(best), args.out, {"version": args.version, **kept, "thresholds": thresholds,
                                             "selection": {"checkpoint": best.name, **{k: round(v, 4) for k, v in figures.items()}}})
    print(f"shipped {best.name} (mean micro F {mean:.3f}) with thresholds {thresholds} to {args.out}")


if __name__ == "__main__":
    main()
