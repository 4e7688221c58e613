"""How often the score's tempo and metre match the Groove MIDI Dataset's annotations.

``python -m batch.score.grid_eval ../shared/data/groove-midi [--split test]`` feeds each
performance's own MIDI notes (perfect hits: the beat tracker alone is measured, not the
detector) to ``estimate_grid`` and counts tempos within 4 % of the annotated bpm, tempo
octave errors, and time signatures that match.
"""
from __future__ import annotations

import argparse
import collections
from pathlib import Path

from models.beats import estimate_grid
from models.peaks import Hit
from models.train.grooves import list_performances, read_events
from models.vocab import FAMILY_OF

MIN_SECONDS = 15.0  # shorter fills and count-ins say little about a tempo


def tempo_outcome(found: float, truth: float) -> str:
    ratio = found / truth
    for name, target in (("right", 1.0), ("double", 2.0), ("half", 0.5), ("x1.5", 1.5), ("x2/3", 2 / 3)):
        if abs(ratio / target - 1) < 0.04:
            return name
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("groove", type=Path)
    parser.add_argument("--split", default="test", help="comma-separated: train, validation, test")
    args = parser.parse_args()
    splits = set(args.split.split(","))
    tempo, metre, both, total = collections.Counter(), 0, 0, 0
    for performance in list_performances(args.groove):
        if performance.split not in splits or "_beat_" not in performance.midi_path.name:
            continue
        events = read_events(performance.midi_path)
        if not events or events[-1].time < MIN_SECONDS:
            continue
        hits = [Hit(e.time, e.instrument, FAMILY_OF[e.instrument], e.velocity, 1.0) for e in events]
        grid = estimate_grid(hits)
        outcome = tempo_outcome(grid.bpm, performance.bpm)
        signature = performance.midi_path.stem.rsplit("_", 1)[-1].replace("-", "/")  # "..._beat_4-4"
        metre_right = grid.time_signature == signature
        tempo[outcome] += 1
        metre += metre_right
        both += outcome == "right" and metre_right
        total += 1
    print(f"{total} performances ({args.split}); tempo: " + ", ".join(f"{k} {v}" for k, v in tempo.most_common()))
    print(f"tempo right {tempo['right'] / total:.1%}, metre right {metre / total:.1%}, both {both / total:.1%}")


if __name__ == "__main__":
    main()
