"""Global tempo from detected hits: autocorrelation of a velocity-weighted onset train."""
from __future__ import annotations

import numpy as np

from models.peaks import Hit

FRAME_RATE = 100.0
MIN_BPM, MAX_BPM = 60.0, 200.0
PREFERRED_BPM = 110.0  # resolves octave ambiguity: a log-normal prior around a common tempo
PRIOR_OCTAVES = 1.0  # its width


def estimate_bpm(hits: list[Hit], default: float = 120.0) -> float:
    """Most likely tempo in [60, 200] bpm; ``default`` when there are too few hits to tell."""
    if len(hits) < 4:
        return default
    times = np.array([hit.t for hit in hits])
    n = int(times.max() * FRAME_RATE) + 1
    train = np.zeros(n)
    np.add.at(train, (times * FRAME_RATE).astype(int), [0.5 + hit.velocity for hit in hits])
    train = np.convolve(train, np.hanning(5), mode="same")
    train -= train.mean()
    size = 1 << (2 * n - 1).bit_length()  # zero-padded to a power of two: a fast FFT at any length
    autocorr = np.fft.irfft(np.abs(np.fft.rfft(train, size)) ** 2, size)[:n]
    lags = np.arange(int(FRAME_RATE * 60 / MAX_BPM), min(n, int(FRAME_RATE * 60 / MIN_BPM) + 1))
    if len(lags) == 0:
        return default
    bpms = 60.0 * FRAME_RATE / lags
    prior = np.exp(-0.5 * (np.log2(bpms / PREFERRED_BPM) / PRIOR_OCTAVES) ** 2)
    best = lags[int(np.argmax(autocorr[lags] * prior))]
    # refine the integer lag with a parabola through its neighbours
    if 0 < best < n - 1:
        a, b, c = autocorr[best - 1: best + 2]
        shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
        best = best + float(np.clip(shift, -0.5, 0.5))
    return round(60.0 * FRAME_RATE / best, 1)
