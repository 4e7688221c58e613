"""Mix-bus and microphone augmentation: EQ, compression, limiting, noise, gain (rooms: ``room``)."""
from __future__ import annotations

import numpy as np
import scipy.signal
from audiomentations import Limiter

from models.features import SAMPLE_RATE


def _shelf(gain_db: float, freq: float, high: bool) -> tuple[np.ndarray, np.ndarray]:
    """RBJ-cookbook shelving biquad."""
    a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * freq / SAMPLE_RATE
    alpha = np.sin(w0) / 2 * np.sqrt(2)
    cos, sq = np.cos(w0), 2 * np.sqrt(a) * alpha
    sign = 1 if high else -1
    b = np.array([a * ((a + 1) + sign * (a - 1) * cos + sq), -2 * sign * a * ((a - 1) + sign * (a + 1) * cos),
                  a * ((a + 1) + sign * (a - 1) * cos - sq)])
    den = np.array([(a + 1) - sign * (a - 1) * cos + sq, 2 * sign * ((a - 1) - sign * (a + 1) * cos),
                    (a + 1) - sign * (a - 1) * cos - sq])
    return b / den[0], den / den[0]


def _peak(gain_db: float, freq: float, q: float) -> tuple[np.ndarray, np.ndarray]:
    a = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * freq / SAMPLE_RATE
    alpha = np.sin(w0) / (2 * q)
    b = np.array([1 + alpha * a, -2 * np.cos(w0), 1 - alpha * a])
    den = np.array([1 + alpha / a, -2 * np.cos(w0), 1 - alpha / a])
    return b / den[0], den / den[0]


def equalize(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    filters = [
        _shelf(rng.uniform(-9, 9), rng.uniform(80, 400), high=False),
        _shelf(rng.uniform(-12, 6), rng.uniform(3000, 9000), high=True),
        _peak(rng.uniform(-8, 8), rng.uniform(200, 5000), rng.uniform(0.5, 3)),
    ]
    for b, a in filters:
        x = scipy.signal.lfilter(b, a, x)
    return x


def compress(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Feed-forward compressor with a one-pole envelope follower."""
    threshold = np.max(np.abs(x)) * rng.uniform(0.1, 0.5) + 1e-9
    ratio = rng.uniform(2, 8)
    release = np.exp(-1.0 / (rng.uniform(0.03, 0.3) * SAMPLE_RATE))
    envelope = scipy.signal.lfilter([1 - release], [1, -release], np.abs(x))
    gain = np.minimum(1.0, (np.maximum(envelope, 1e-9) / threshold) ** (1 / ratio - 1))
    return x * gain


def limit(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A mix-bus brick-wall limiter (audiomentations'), its settings drawn from ``rng``."""
    threshold, attack, release = rng.uniform(-12, -2), rng.uniform(0.0005, 0.025), rng.uniform(0.05, 0.7)
    limiter = Limiter(min_threshold_db=threshold, max_threshold_db=threshold, min_attack=attack, max_attack=attack,
                      min_release=release, max_release=release, threshold_mode="relative_to_signal_peak", p=1.0)
    return limiter(x.astype(np.float32), sample_rate=SAMPLE_RATE).astype(np.float64)


def add_noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal(len(x))
    if rng.random() < 0.5:  # pink-ish
        noise = scipy.signal.lfilter([0.05], [1, -0.95], noise)
    snr_db = rng.uniform(15, 50)
    return x + noise * np.std(x) / (np.std(noise) + 1e-9) * 10 ** (-snr_db / 20)


def augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each effect with its own chance, then a random level (and sometimes clipping)."""
    x = x.astype(np.float64)
    if rng.random() < 0.7:
        x = equalize(x, rng)
    if rng.random() < 0.4:
        x = compress(x, rng)
    if rng.random() < 0.3:
        x = limit(x, rng)
    if rng.random() < 0.5:
        x = add_noise(x, rng)
    if rng.random() < 0.15:  # telephone / laptop mic
        x = scipy.signal.sosfilt(scipy.signal.butter(4, [rng.uniform(80, 300), rng.uniform(3500, 8000)],
                                                     "bandpass", fs=SAMPLE_RATE, output="sos"), x)
    x = x / (np.max(np.abs(x)) + 1e-9) * 10 ** (rng.uniform(-30, 0) / 20)
    if rng.random() < 0.1:
        x = np.clip(x * rng.uniform(1.5, 4), -1, 1)
    return x.astype(np.float32)
