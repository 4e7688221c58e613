"""Live sessions with drum separation: PCM -> Demucs windows -> drums -> the detector.

A separated session resamples the client's audio to the separation model's rate (soxr's
streaming resampler: the same samples as the one-shot call), separates it in overlapping
cross-faded windows (``StreamingSeparator``: the same drums as the whole recording would
get with the same windows), and resamples the drums to the detector's rate. Its look-ahead
grows by one window plus both resamplers' delays, and ``ready`` says so.

Separating a window takes long (tens of ms on a GPU, seconds on a CPU), so
``SeparatedRunner`` runs that part of each frame on a worker thread: the event loop keeps
serving the other sessions meanwhile.
"""
from __future__ import annotations

import asyncio
import math
import threading

import numpy as np
import soxr

from models.detector import Detector
from models.separation import LIVE_OVERLAP, LIVE_WINDOW_SECONDS, Separator
from stream.pcm import PcmFormat
from stream.runner import LiveRunner
from stream.session import RESAMPLER_QUALITY, LiveSession, resampler_delay_ms


class SeparatedInput:
    """Mono audio at ``rate_in`` in, mono drums at ``rate_out`` out, in pieces of any size."""

    def __init__(self, rate_in: int, separator: Separator, rate_out: int,
                 window_seconds: float = LIVE_WINDOW_SECONDS, overlap: float = LIVE_OVERLAP) -> None:
        self.rate_in, self.rate_out, self.model_rate = rate_in, rate_out, separator.samplerate
        self.separator = separator.stream(window_seconds, overlap)
        self._to_model = self._resampler(rate_in, self.model_rate)
        self._to_detector = self._resampler(self.model_rate, rate_out)

    @staticmethod
    def _resampler(rate_in: int, rate_out: int) -> soxr.ResampleStream | None:
        if rate_in == rate_out:
            return None
        return soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32", quality=RESAMPLER_QUALITY)

    @property
    def delay_ms(self) -> float:
        """The most a sample waits here: the resampler in, one separation window, the resampler out."""
        return (resampler_delay_ms(self.rate_in, self.model_rate)
                + 1000 * self.separator.lookahead_samples / self.model_rate
                + resampler_delay_ms(self.model_rate, self.rate_out))

    def push(self, samples: np.ndarray, last: bool = False) -> np.ndarray:
        """Drums for what is final so far; ``last=True`` ends the input and returns the rest."""
        x = np.asarray(samples, np.float32)
        if self._to_model is not None:
            x = self._to_model.resample_chunk(x, last=last)
        drums = self.separator.push(x)
        if last:
            drums = np.concatenate([drums, self.separator.flush()])
        if self._to_detector is not None:
            drums = self._to_detector.resample_chunk(drums, last=last)
        return drums.astype(np.float32, copy=False)


class SeparatedSession(LiveSession):
    """A ``LiveSession`` whose detector hears the separated drums.

    ``prepare(data)`` does the heavy part of a frame (decode, record, separate) and may run on a
    worker thread; ``accept(data)`` then feeds the drums it made to the detector (it prepares
    the frame itself when nobody did).
    """

    def __init__(self, detector: Detector, fmt: PcmFormat, separator: Separator,
                 window_seconds: float = LIVE_WINDOW_SECONDS, overlap: float = LIVE_OVERLAP) -> None:
        super().__init__(detector, fmt, separate=True)
        self._resampler = None  # the separated input resamples on its own
        self.input = SeparatedInput(fmt.sample_rate, separator, detector.card.sample_rate, window_seconds, overlap)
        self._drums: list[np.ndarray] = []
        self._prepared = 0
        self._ended = False
        self._lock = threading.Lock()

    @property
    def lookahead_ms(self) -> int:
        return self.detector.card.lookahead_ms + math.ceil(self.input.delay_ms)

    def prepare(self, data: bytes) -> None:
        with self._lock:
            samples, pcm = self.decoder.decode(data)
            self.samples_in += len(samples)
            self._recording += pcm
            self._drums.append(self.input.push(samples))
            self._prepared += 1

    def prepare_end(self) -> None:
        with self._lock:
            if not self._ended:
                self._ended = True
                self._drums.append(self.input.push(np.zeros(0, np.float32), last=True))

    def _take_drums(self) -> np.ndarray:
        with self._lock:
            drums = np.concatenate(self._drums) if self._drums else np.zeros(0, np.float32)
            self._drums = []
            return drums

    def accept(self, data: bytes):
        if self._prepared == 0:
            self.prepare(data)
        self._prepared -= 1
        return self.stream.feed(self._take_drums())

    def end(self):
        self.prepare_end()
        drums = self._take_drums()
        return self.stream.feed(drums) if drums.size else None


class SeparatedRunner(LiveRunner):
    """A ``LiveRunner`` that separates each frame on a worker thread before the usual steps."""

    session: SeparatedSession

    async def audio(self, data: bytes) -> None:
        await asyncio.to_thread(self.session.prepare, data)
        await super().audio(data)

    async def drain(self) -> None:
        await asyncio.to_thread(self.session.prepare_end)
        await super().drain()
