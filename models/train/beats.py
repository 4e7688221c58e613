"""Learn the beat tracker's octave and downbeat scores from the Groove MIDI Dataset.

``python -m models.train.beats ../shared/data/groove-midi [--write]`` tracks a pulse
through each 4/4 and 3/4 performance (its own notes, and copies with detector-like errors:
dropped, added and mislabelled hits), lists the candidate beats (``models.beats``) and
fits one linear score per choice by softmax regression: the candidate whose pulses fall
on the metronome's beats, and the pulse that falls on its bar lines (the recordings were
played to a click from bar one at time zero). Trained on the train split, reported on
validation and test; ``--write`` stores the weights in ``models/weights/beats.json``.
"""
from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from models.beat_features import DOWNBEAT_FEATURES, OCTAVE_FEATURES, downbeat_features, octave_features
from models.beats import WEIGHTS, octave_candidates, track_pulses
from models.peaks import Hit
from models.train.grooves import list_performances, performed_hits, read_events
from models.vocab import FAMILY_OF, INSTRUMENTS

MIN_SECONDS = 10.0
METRES = {"4-4": 4, "3-4": 3}  # beats per bar of the simple metres learned from (the pulse is the quarter)
ALIGNED = 0.15  # a candidate's pulses lie within this fraction of a beat of the click's beats
NOISY_COPIES = 3
L2 = 0.01


@dataclass
class Example:
    octave: np.ndarray  # candidates x features
    octave_label: int
    downbeat: np.ndarray  # per_bar x features
    downbeat_label: int


def detector_like(hits: list[Hit], bpm: float, rng: random.Random) -> list[Hit]:
    """The hits with the errors a detector makes: 10 % missed, 5 % relabelled, 5 % extra;
    half of the copies start at a random beat, as a recording or a missed first hit may."""
    start = 60.0 / bpm * rng.randrange(1, 8) - 0.03 if rng.random() < 0.5 else 0.0
    kept = [hit for hit in hits if hit.t >= start and rng.random() > 0.10]
    for i, hit in enumerate(kept):
        if rng.random() < 0.05:
            instrument = rng.choice(INSTRUMENTS)
            kept[i] = replace(hit, instrument=instrument, family=FAMILY_OF[instrument])
    end = max(hit.t for hit in hits)
    for _ in range(int(0.05 * len(kept))):
        instrument = rng.choice(INSTRUMENTS)
        kept.append(Hit(rng.uniform(start, end), instrument, FAMILY_OF[instrument], rng.uniform(0.2, 0.8), 0.5))
    return sorted((replace(hit, t=max(0.0, hit.t + rng.gauss(0, 0.008))) for hit in kept), key=lambda hit: hit.t)


def aligned(pulses: np.ndarray, beat: float, phase: float = 0.0) -> bool:
    """Whether the pulses keep the click's ``beat`` (seconds) and lie on its beats."""
    period = float(np.median(np.diff(pulses)))
    if abs(period / beat - 1) > 0.04:
        return False
    off = (pulses - phase) / beat
    return float(np.median(np.abs(off - np.round(off)))) < ALIGNED


def example(hits: list[Hit], bpm: float, per_bar: int) -> Example | None:
    """The candidates of one performance and which is right; None when none is."""
    if len(hits) < 16:
        return None
    candidates = octave_candidates(track_pulses(hits))
    beat = 60.0 / bpm
    right = [i for i, c in enumerate(candidates) if aligned(c, beat)]
    if not right:
        return None
    pulses = candidates[right[0]]
    downbeats = [d for d in range(per_bar) if aligned(pulses[d::per_bar], per_bar * beat)]
    if len(downbeats) != 1:
        return None
    return Example(np.array([octave_features(hits, c) for c in candidates]), right[0],
                   np.array([downbeat_features(hits, pulses, per_bar, d) for d in range(per_bar)]), downbeats[0])


def examples(groove: Path, split: str, noisy: int, seed: int = 0) -> tuple[list[Example], int]:
    """Examples of the 4/4 and 3/4 performances in ``split``, and how many versions were tried."""
    rng = random.Random(seed)
    found, tried = [], 0
    for performance in list_performances(groove):
        metre = performance.midi_path.stem.rsplit("_", 1)[-1]
        if performance.split != split or metre not in METRES:
            continue
        events = read_events(performance.midi_path)
        if not events or events[-1].time < MIN_SECONDS:
            continue
        hits = performed_hits(events)
        for version in [hits] + [detector_like(hits, performance.bpm, rng) for _ in range(noisy)]:
            tried += 1
            item = example(version, performance.bpm, METRES[metre])
            if item is not None:
                found.append(item)
    return found, tried


def fit(sets: list[tuple[np.ndarray, int]], size: int) -> np.ndarray:
    """Softmax regression over each set's candidates (a linear score per candidate)."""
    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = L2 * float(w @ w), 2 * L2 * w
        for features, label in sets:
            scores = features @ w
            scores -= scores.max()
            p = np.exp(scores) / np.exp(scores).sum()
            total -= float(np.log(p[label] + 1e-12)) / len(sets)
            grad += (p @ features - features[label]) / len(sets)
        return total, grad

    return minimize(loss, np.zeros(size), jac=True, method="L-BFGS-B").x


def accuracy(sets: list[tuple[np.ndarray, int]], w: np.ndarray) -> float:
    return float(np.mean([int(np.argmax(features @ w)) == label for features, label in sets])) if sets else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("groove", type=Path)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    train, tried = examples(args.groove, "train", NOISY_COPIES)
    print(f"train: {len(train)} examples of {tried} tracked versions")
    octave = fit([(e.octave, e.octave_label) for e in train], OCTAVE_FEATURES)
    downbeat = fit([(e.downbeat, e.downbeat_label) for e in train], DOWNBEAT_FEATURES)
    figures = {}
    for split, items in (("train", train), *((s, examples(args.groove, s, NOISY_COPIES, seed=1)[0])
                                            for s in ("validation", "test"))):
        figures[split] = {"examples": len(items),
                          "octave": round(accuracy([(e.octave, e.octave_label) for e in items], octave), 3),
                          "downbeat": round(accuracy([(e.downbeat, e.downbeat_label) for e in items], downbeat), 3)}
        print(split, figures[split])
    if args.write:
        WEIGHTS.write_text(json.dumps({
            "about": "linear scores over models.beat_features, from python -m models.train.beats on the Groove "
                     "MIDI Dataset (CC BY 4.0), train split",
            "figures": figures, "octave": [round(x, 5) for x in octave.tolist()],
            "downbeat": [round(x, 5) for x in downbeat.tolist()]}, indent=1) + "\n")
        print(f"wrote {WEIGHTS}")


if __name__ == "__main__":
    main()
