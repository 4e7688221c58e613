"""Rooms for the drums: early reflections of a simulated shoebox room plus its late tail.

pyroomacoustics' image-source method gives the early reflections of a random room, source
and microphone; the late tail, which the image-source method would need thousands of
orders for, is noise decaying at the room's RT60 (Sabine), darkened as air and walls do.
"""
from __future__ import annotations

import numpy as np
import pyroomacoustics as pra
import scipy.signal

from models.features import SAMPLE_RATE

EARLY_ORDER = 8


def room_impulse(rng: np.random.Generator) -> np.ndarray:
    """A random room's impulse response at SAMPLE_RATE, normalised to unit energy."""
    dims = np.array([rng.uniform(3, 12), rng.uniform(3, 10), rng.uniform(2.4, 5)])
    rt60 = rng.uniform(0.15, 1.2)
    while True:  # a large room cannot be as dry as a small one: lengthen the RT60 until it can
        try:
            absorption, _ = pra.inverse_sabine(rt60, dims)
            break
        except ValueError:
            rt60 *= 1.25
    room = pra.ShoeBox(dims, fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=EARLY_ORDER)
    source = dims * rng.uniform(0.2, 0.8, 3)
    microphone = np.clip(source + rng.normal(0, 1.0, 3), 0.3, dims - 0.3)
    room.add_source(source)
    room.add_microphone(microphone)
    room.compute_rir()
    early = np.asarray(room.rir[0][0], np.float64)
    n = int(rt60 * SAMPLE_RATE)
    tail = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / (rt60 * SAMPLE_RATE))
    tail = scipy.signal.sosfilt(scipy.signal.butter(2, rng.uniform(2000, 8000), fs=SAMPLE_RATE, output="sos"), tail)
    start = min(len(early), int(0.02 * SAMPLE_RATE))
    response = np.zeros(max(len(early), start + n))
    response[: len(early)] += early
    tail_level = np.sqrt(np.sum(early[start:] ** 2) + 1e-12) / (np.sqrt(np.sum(tail**2)) + 1e-12) * rng.uniform(0.5, 2.0)
    response[start: start + n] += tail * tail_level
    return response / (np.sqrt(np.sum(response**2)) + 1e-12)


def in_room(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``x`` as heard in a random room: the direct sound plus a wet share of its reverberation."""
    wet = scipy.signal.fftconvolve(x, room_impulse(rng))[: len(x)]
    share = rng.uniform(0.1, 0.6)
    return (1 - share) * x + share * wet * np.std(x) / (np.std(wet) + 1e-9)
