"""Log-mel spectral front end, shared by training, offline and streaming inference.

Frame ``i`` summarises the ``N_FFT`` samples that end at sample ``(i + 1) * HOP``: a frame
never looks past its own hop, so the features add no look-ahead of their own and a
stream can compute each frame as soon as its hop has arrived.
"""
from __future__ import annotations

import numpy as np


SAMPLE_RATE = 24000
HOP = 240  # 10 ms: 100 frames a second
N_FFT = 1024
N_MELS = 96
F_MIN = 30.0
F_MAX = 11000.0
FPS = SAMPLE_RATE / HOP


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank() -> np.ndarray:
    """Triangular mel filters, shape (N_FFT // 2 + 1, N_MELS), area-normalised."""
    bins = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array(F_MIN)), _hz_to_mel(np.array(F_MAX)), N_MELS + 2))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lower) / (centre - lower)
    falling = (upper - bins[:, None]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= 2.0 / (upper - lower)
    return weights.astype(np.float32)


_FILTERS = mel_filterbank()
_WINDOW = np.hanning(N_FFT).astype(np.float32)


def frames_available(n_samples: int) -> int:
    """How many whole frames ``n_samples`` of audio (from the stream's start) yield."""
    return n_samples // HOP


def log_mel(padded: np.ndarray, n_frames: int) -> np.ndarray:
    """Log-mel frames from audio already preceded by its ``N_FFT - HOP`` samples of history.

    ``padded[k * HOP : k * HOP + N_FFT]`` is frame ``k``. Returns float32 (n_frames, N_MELS).
    """
    if n_frames <= 0:
        return np.zeros((0, N_MELS), np.float32)
    view = np.lib.stride_tricks.sliding_window_view(padded[: (n_frames - 1) * HOP + N_FFT], N_FFT)[::HOP]
    spectrum = np.abs(np.fft.rfft(view * _WINDOW, axis=1))  # numpy's: importing scipy costs a CLI 0.3-0.5 s
    return np.log1p(1000.0 * (spectrum @ _FILTERS)).astype(np.float32)


def features(audio: np.ndarray) -> np.ndarray:
    """Log-mel frames of a whole signal at SAMPLE_RATE, as if streamed from silence."""
    padded = np.concatenate([np.zeros(N_FFT - HOP, np.float32), np.asarray(audio, np.float32)])
    return log_mel(padded, frames_available(len(audio)))
