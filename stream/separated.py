"""Live sessions with drum separation: PCM -> Demucs windows -> drums -> the detector.

A separated session resamples the client's audio to the separation model's rate (soxr's
streaming resampler: the same samples as the one-shot call), separates it in overlapping
cross-faded windows (``StreamingSeparator``: the same drums as the whole recording would
get with the same windows), and resamples the drums to the detector's rate. Its look-ahead
grows by one window plus both resamplers' delays, and ``ready`` says so.

Separating a window takes long (tens of ms on a GPU, seconds on a CPU), so the model calls
leave the session: ``SeparatedRunner`` hands the windows a frame completes to the gateway's
``SeparationBatcher``, which runs the windows of all sessions together on its own thread. The
rest of a frame (decoding, resampling, cutting and cross-fading windows) is cheap and stays
on the event loop, which keeps each session's windows in order.
"""
from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import soxr

from models.audio import RESAMPLER_QUALITY
from models.detector import Detector
from models.runtime import Step
from models.separation import LIVE_OVERLAP, LIVE_WINDOW_SECONDS, Separator
from stream.batcher import InferenceBatcher
from stream.config import LiveSettings
from stream.pcm import PcmFormat
from stream.recording import Recording
from stream.runner import Emit, Finalizer, LiveRunner, Scorer
from stream.session import LiveSession, resampler_delay_ms

if TYPE_CHECKING:  # torch is optional: a service without separation never imports it
    import torch

    from models.separation_windows import Window
    from stream.separation_batcher import SeparationBatcher


class SeparatedInput:
    """Mono audio at ``rate_in`` in, mono drums at ``rate_out`` out, in pieces of any size.

    ``push`` separates here; ``feed`` -> windows, separated elsewhere -> ``accept`` lets the
    caller batch the windows with other streams'.
    """

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
        return self._out(self.separator.separate(self.feed(samples, last)), last)

    def feed(self, samples: np.ndarray, last: bool = False) -> list["Window"]:
        """Take input (``last``: the end of it); return the windows to separate, in order."""
        x = np.asarray(samples, np.float32)
        if self._to_model is not None:
            x = self._to_model.resample_chunk(x, last=last)
        windows = self.separator.feed(x)
        return windows + self.separator.close() if last else windows

    def accept(self, windows: Sequence["Window"], drums: Sequence["torch.Tensor"], last: bool = False) -> np.ndarray:
        """The drums of ``feed``'s windows, separated: drums at ``rate_out`` that are now final."""
        parts = [self.separator.accept(window, d) for window, d in zip(windows, drums, strict=True)]
        return self._out(np.concatenate(parts) if parts else np.zeros(0, np.float32), last)

    def _out(self, drums: np.ndarray, last: bool) -> np.ndarray:
        if self._to_detector is not None:
            drums = self._to_detector.resample_chunk(drums, last=last)
        return drums.astype(np.float32, copy=False)


class SeparatedSession(LiveSession):
    """A ``LiveSession`` whose detector hears the separated drums.

    ``feed(data)`` decodes and records a frame and returns the separation windows it completed;
    ``separated(windows, drums)`` takes their drums and returns the detector's step.
    ``accept(data)`` and ``end()`` do both, separating here.
    """

    def __init__(self, detector: Detector, fmt: PcmFormat, separator: Separator,
                 window_seconds: float = LIVE_WINDOW_SECONDS, overlap: float = LIVE_OVERLAP,
                 recording: Recording | None = None, max_seconds: float = math.inf) -> None:
        super().__init__(detector, fmt, separate=True, recording=recording, max_seconds=max_seconds)
        self._resampler = None  # the separated input resamples on its own
        self.input = SeparatedInput(fmt.sample_rate, separator, detector.card.sample_rate, window_seconds, overlap)
        self.ended = False

    @property
    def lookahead_ms(self) -> int:
        return self.detector.card.lookahead_ms + math.ceil(self.input.delay_ms)

    def feed(self, data: bytes) -> list["Window"]:
        return self.input.feed(self._decode(data))

    def feed_end(self) -> list["Window"]:
        """No more audio: the windows over the tail."""
        self.ended = True
        return self.input.feed(np.zeros(0, np.float32), last=True)

    def separated(self, windows: Sequence["Window"], drums: Sequence["torch.Tensor"]) -> Step | None:
        return self.stream.feed(self.input.accept(windows, drums, last=self.ended))

    def accept(self, data: bytes) -> Step | None:
        return self.stream.feed(self.input.push(self._decode(data)))

    def end(self) -> Step | None:
        if self.ended:
            return None
        self.ended = True
        return self.stream.feed(self.input.push(np.zeros(0, np.float32), last=True))


class SeparatedRunner(LiveRunner):
    """A ``LiveRunner`` whose frames' separation windows go through the shared ``SeparationBatcher``."""

    session: SeparatedSession

    def __init__(self, session: SeparatedSession, batcher: InferenceBatcher, separation: "SeparationBatcher",
                 settings: LiveSettings, emit: Emit, finalizer: Finalizer,
                 scorer: Scorer | None = None) -> None:
        super().__init__(session, batcher, settings, emit, finalizer, scorer)
        self.separation = separation

    async def audio(self, data: bytes) -> None:
        await self.advance(await self._separate(self.session.feed(data)))

    async def drain(self) -> None:
        if not self.session.ended:
            step = await self._separate(self.session.feed_end())
            if step is not None:
                self._send_hits(self.session.take(await self.batcher.run(step)))
        await super().drain()  # the session has ended: only the detector's final step is left

    async def _separate(self, windows: list["Window"]) -> Step | None:
        drums = await asyncio.gather(*(self.separation.run(w) for w in windows))
        return self.session.separated(windows, drums)
