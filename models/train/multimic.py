"""A kit sampled on many microphones (the MuldjordKit), mixed anew for each example.

Each hit is stored as four channels (close, spill, overheads, room: see
``shared/data/muldjord-kit/README.md``). ``mixdown`` sums them with one set of gains, as
one engineer mixes one kit, so the network hears real spill and overheads: the hi-hat as
the overheads hear it, the snare in the hi-hat mic, the room under everything.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from models.audio import resample
from models.features import SAMPLE_RATE
from models.train.kits import Kit, Layer

MULDJORD_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "muldjord-kit"
MAX_SECONDS = 4.0
CHANNELS = ("close", "spill", "overheads", "room")


@dataclass
class MultiMicKit:
    name: str
    layers: dict[str, list[Layer]]  # each layer's audio is (4, samples)

    def mixdown(self, gains: np.ndarray) -> Kit:
        """A mono kit: every hit's channels summed with ``gains`` (one per channel)."""
        weights = np.asarray(gains, np.float32)
        return Kit(self.name, {instrument: [Layer(layer.low, layer.high, weights @ layer.audio, layer.gain, layer.baked)
                                            for layer in layers] for instrument, layers in self.layers.items()})


def draw_gains(rng: np.random.Generator) -> np.ndarray:
    """Channel gains of one mix: close-miked and dry, overhead-heavy, or roomy."""
    style = rng.choice(["close", "overheads", "room"])
    close = {"close": rng.uniform(0.7, 1.0), "overheads": rng.uniform(0.0, 0.5), "room": rng.uniform(0.3, 0.8)}[style]
    overheads = {"close": rng.uniform(0.3, 0.8), "overheads": rng.uniform(0.8, 1.2), "room": rng.uniform(0.3, 0.8)}[style]
    room = {"close": rng.uniform(0.0, 0.3), "overheads": rng.uniform(0.0, 0.5), "room": rng.uniform(0.6, 1.2)}[style]
    spill = close * rng.uniform(0.3, 1.0)  # the other close mics are up whenever the close mics are
    return np.array([close, spill, overheads, room], np.float32)


def _onset(mono: np.ndarray, threshold: float = 0.01) -> int:
    peak = float(np.max(np.abs(mono))) if len(mono) else 0.0
    return max(0, int(np.argmax(np.abs(mono) >= threshold * peak)) - SAMPLE_RATE // 1000) if peak else 0


def load_muldjord(folder: Path = MULDJORD_DIR) -> MultiMicKit | None:
    """The kit from ``hits.csv``; layers spread evenly over the velocity range, loudness as recorded."""
    if not (folder / "hits.csv").exists():
        return None
    with open(folder / "hits.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["piece"]] = max(counts.get(row["piece"], 0), int(row["layer"]))
    kit = MultiMicKit("muldjord", {})
    for row in rows:
        audio, rate = sf.read(str(folder / row["file"]), dtype="float32", always_2d=True, frames=int(MAX_SECONDS * 44100))
        channels = np.stack([resample(audio[:, c], rate, SAMPLE_RATE) for c in range(audio.shape[1])])
        channels = channels[:, _onset(channels.sum(axis=0)):]
        n, layer = counts[row["piece"]], int(row["layer"])
        kit.layers.setdefault(row["instrument"], []).append(Layer(
            low=(layer - 1) / n, high=layer / n, audio=channels, baked=(layer - 0.5) / n))
    return kit
