"""How the detector hears a real kit: a plain groove on the MuldjordKit, close-miked and from the overheads.

Issue 11 opened with this check: 16 bars of a 100 bpm rock groove (eighth-note closed
hi-hats, kick on 1 and 3, snare on 2 and 4) played on a kit sampled on 16 microphones, mixed
two ways, as two engineers would. For each mix it prints, per family, the hits played, the
hits reported and how many of them match within ±50 ms. The MuldjordKit is also in the
training data since the v2 recipe, so this is a check of the mixes, not of an unseen kit.

``python -m bench.real_kit_groove [--weights DIR ...]`` (default: the shipped weights).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from models.detector import Detector
from models.evaluate import evaluate
from models.features import SAMPLE_RATE
from models.runtime import HitModel
from models.train.multimic import load_muldjord
from models.vocab import FAMILIES, FAMILY_OF

BPM, BARS = 100.0, 16
GROOVE = {"hihat_closed": (0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5), "kick": (0, 2), "snare": (1, 3)}
VELOCITY = {"hihat_closed": 0.6, "kick": 0.85, "snare": 0.85}
MIXES = {  # gains of the close, spill, overheads and room channels
    "close-miked": np.array([1.0, 0.4, 0.3, 0.1], np.float32),
    "overheads": np.array([0.2, 0.1, 1.0, 0.3], np.float32),
}


def played() -> list[tuple[float, str]]:
    beat = 60.0 / BPM
    return sorted((0.5 + (4 * bar + b) * beat, instrument)
                  for bar in range(BARS) for instrument, beats in GROOVE.items() for b in beats)


def render(gains: np.ndarray, hits: list[tuple[float, str]], seed: int = 0) -> np.ndarray:
    """The groove through the kit's channels summed with ``gains``; layers as recorded, peak at -3 dBFS."""
    kit = load_muldjord()
    if kit is None:
        raise SystemExit("the MuldjordKit is not in ../shared/data/muldjord-kit")
    mono = kit.mixdown(gains)
    rng = np.random.default_rng(seed)
    out = np.zeros(int((hits[-1][0] + 3) * SAMPLE_RATE), np.float32)
    for t, instrument in hits:
        layer = mono.sample(instrument, VELOCITY[instrument], rng)
        start = int(round(t * SAMPLE_RATE))
        shot = layer.audio[: len(out) - start]
        out[start:start + len(shot)] += shot
    return out * (10 ** (-3 / 20) / float(np.abs(out).max()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, nargs="*", default=[None])
    args = parser.parse_args()
    hits = played()
    reference = {family: [t for t, instrument in hits if FAMILY_OF[instrument] == family] for family in FAMILIES}
    audio = {name: render(gains, hits) for name, gains in MIXES.items()}
    for weights in args.weights:
        detector = Detector(HitModel(weights))
        print(f"== weights {weights or 'shipped'} ({detector.card.version})")
        for name, samples in audio.items():
            found = detector.transcribe(samples)
            predicted = {family: [hit.t for hit in found if hit.family == family] for family in FAMILIES}
            scores = evaluate(predicted, reference)
            row = ", ".join(f"{family} {len(reference[family])}/{len(predicted[family])}/{scores[family]['tp']}"
                            for family in FAMILIES if reference[family] or predicted[family])
            print(f"{name:12} played/reported/matched: {row}; micro F {scores['micro']['f']:.3f}")


if __name__ == "__main__":
    main()
