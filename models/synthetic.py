"""Synthesized drum sounds and a rock beat: an example file and test signals with known hits.

``python -m models.synthetic OUT.wav`` writes a short beat (used by ``make run``).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf

from models.features import SAMPLE_RATE


def kick(rate: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(0.35 * rate)) / rate
    phase = 2 * np.pi * (45 * t + (110 / 30) * (1 - np.exp(-30 * t)))
    return (np.sin(phase) * np.exp(-9 * t)).astype(np.float32)


def snare(rate: int = SAMPLE_RATE, seed: int = 1) -> np.ndarray:
    t = np.arange(int(0.25 * rate)) / rate
    noise = np.random.default_rng(seed).standard_normal(len(t))
    noise = scipy.signal.sosfilt(scipy.signal.butter(2, [1500, 9000], "bandpass", fs=rate, output="sos"), noise)
    body = np.sin(2 * np.pi * 185 * t) * np.exp(-25 * t)
    return (0.6 * body + 0.7 * noise * np.exp(-18 * t)).astype(np.float32)


def hihat(rate: int = SAMPLE_RATE, seed: int = 2) -> np.ndarray:
    t = np.arange(int(0.08 * rate)) / rate
    noise = np.random.default_rng(seed).standard_normal(len(t))
    noise = scipy.signal.sosfilt(scipy.signal.butter(4, 7000, "highpass", fs=rate, output="sos"), noise)
    return (0.35 * noise * np.exp(-60 * t)).astype(np.float32)


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
