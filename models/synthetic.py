"""A rock beat played on a real kit's one-shots: an example file and test signals with known hits.

The one-shots in ``example_kit/`` are three hits of the MuldjordKit (Lars Muldjord, CC BY 4.0),
each a close-miked mix of its 16 microphones, so tests and the example hear a real kit.
``python -m models.synthetic OUT.wav`` writes a short beat (used by ``make run``).
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from models.audio import resample
from models.features import SAMPLE_RATE

KIT = Path(__file__).with_name("example_kit")


@functools.lru_cache(maxsize=None)
def _one_shot(name: str, rate: int) -> np.ndarray:
    audio, source_rate = sf.read(KIT / f"{name}.flac", dtype="float32")
    return resample(audio, source_rate, rate) if source_rate != rate else audio


def kick(rate: int = SAMPLE_RATE) -> np.ndarray:
    return _one_shot("kick", rate).copy()


def snare(rate: int = SAMPLE_RATE) -> np.ndarray:
    return _one_shot("snare", rate).copy()


def hihat(rate: int = SAMPLE_RATE) -> np.ndarray:
    return _one_shot("hihat", rate).copy()


def place(sounds: list[tuple[float, np.ndarray, float]], seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mix each (time, sound, gain) into a silent signal of ``seconds``."""
    out = np.zeros(int(seconds * rate), np.float32)
    for time, sound, gain in sounds:
        start = int(round(time * rate))
        end = min(len(out), start + len(sound))
        out[start:end] += gain * sound[: end - start]
    return out


def rock_beat(bars: int = 4, bpm: float = 100.0, rate: int = SAMPLE_RATE) -> tuple[np.ndarray, dict[str, list[float]]]:
    """Eighth-note hi-hats, kick on 1 and 3 (and the 'and' of 3), snare on 2 and 4."""
    beat = 60.0 / bpm
    hits: dict[str, list[float]] = {"kick": [], "snare": [], "hihat": []}
    start = 0.5
    for bar in range(bars):
        t0 = start + bar * 4 * beat
        hits["hihat"] += [t0 + i * beat / 2 for i in range(8)]
        hits["kick"] += [t0, t0 + 2 * beat, t0 + 2.5 * beat]
        hits["snare"] += [t0 + beat, t0 + 3 * beat]
    sounds = {"kick": kick(rate), "snare": snare(rate), "hihat": hihat(rate)}
    gains = {"kick": 0.8, "snare": 0.6, "hihat": 0.3}
    audio = place([(t, sounds[name], gains[name]) for name, times in hits.items() for t in times],
                  start + bars * 4 * beat + 1.0, rate)
    return audio, hits


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "example.wav")
    audio, _ = rock_beat(bars=8)
    sf.write(out, audio, SAMPLE_RATE)


if __name__ == "__main__":
    main()
