"""One live session's audio path: PCM in, hits out, recording written to disk for the score.

The session does what ``drumscribe transcribe`` does to a file, in pieces: mix to mono,
resample with soxr (its streaming resampler gives the same samples as the one-shot
call), and feed the model's streaming detector. ``accept``/``take`` split each step
around the network call so the gateway can batch windows of all sessions.
"""
from __future__ import annotations

import functools
import math
import time
import uuid

import numpy as np
import soxr

from models.audio import RESAMPLER_QUALITY  # the quality offline decoding uses: the same samples
from models.detector import Detector, hit_order
from models.peaks import Hit
from models.runtime import Step, StepResult
from stream.pcm import PcmDecoder, PcmFormat
from stream.recording import Recording

TEMPO_STEP_BPM = 1.0      # a new tempo is announced when it moves by more than this
TEMPO_EVERY_SECONDS = 4.0  # and is re-estimated at most this often (audio time; the scorer runs the whole tracker)


@functools.lru_cache(maxsize=None)
def resampler_delay_ms(rate_in: int, rate_out: int) -> float:
    """Measured, not computed: how long soxr's streaming resampler holds a sample back when
    fed in 1 ms pieces (its delay depends on the rates and its internal blocking)."""
    if rate_in == rate_out:
        return 0.0
    resampler = soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32", quality=RESAMPLER_QUALITY)
    impulse = np.zeros(rate_in, np.float32)
    impulse[rate_in // 2] = 1.0
    step = max(1, rate_in // 1000)
    for start in range(0, len(impulse), step):
        out = resampler.resample_chunk(impulse[start:start + step])
        if out.size and np.abs(out).max() > 0.05:
            return max(0.0, ((start + step) / rate_in - 0.5) * 1000)
    return 0.0


class LiveSession:
    """``recording``: where the audio goes as it arrives (None: kept nowhere, for benchmarks and
    tests of the hit path). Audio past ``max_seconds`` is cut off; ``full`` then says so."""

    def __init__(self, detector: Detector, fmt: PcmFormat, separate: bool = False,
                 recording: Recording | None = None, max_seconds: float = math.inf) -> None:
        self.id = uuid.uuid4().hex
        self.owner = ""  # the name of the API key the session belongs to ('' without keys)
        self.fmt, self.separate = fmt, separate
        self.recording = recording
        # whole samples, so that a session cut off at the limit is also ``full``
        self.max_samples = math.floor(max_seconds * fmt.sample_rate) if math.isfinite(max_seconds) else math.inf
        self.detector = detector
        self.stream = detector.stream()
        self.decoder = PcmDecoder(fmt)
        rate = detector.card.sample_rate
        self._resampler = (soxr.ResampleStream(fmt.sample_rate, rate, 1, dtype="float32", quality=RESAMPLER_QUALITY)
                           if fmt.sample_rate != rate else None)
        self.samples_in = 0  # at the client's rate
        self.hits: list[Hit] = []
        self.bpm: float | None = None
        self._tempo_checked_at = 0.0
        self.started = time.monotonic()

    @property
    def lookahead_ms(self) -> int:
        """How long after a sample arrives its hit can be reported: the network's look-ahead
        plus the resampler's delay for this input rate (none for audio at the model's rate)."""
        return self.detector.card.lookahead_ms + math.ceil(resampler_delay_ms(self.fmt.sample_rate,
                                                                              self.detector.card.sample_rate))

    @property
    def seconds(self) -> float:
        return self.samples_in / self.fmt.sample_rate

    @property
    def full(self) -> bool:
        return self.samples_in >= self.max_samples

    def accept(self, data: bytes) -> Step | None:
        """Take a PCM frame; return the network step for the frames it completes, if any."""
        samples = self._decode(data)
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples, last=False)
        return self.stream.feed(samples)

    def _decode(self, data: bytes) -> np.ndarray:
        """A PCM frame as mono samples at the client's rate, up to the session's limit; the
        frame joins the recording."""
        samples, frames = self.decoder.decode(data)
        room = max(self.max_samples - self.samples_in, 0)  # a negative room would slice from the end
        if len(samples) > room:
            samples, frames = samples[:room], frames[:room]
        self.samples_in += len(samples)
        if self.recording is not None:
            self.recording.append(frames)
        return samples

    def take(self, result: StepResult) -> list[Hit]:
        """The hits the step's probabilities make certain."""
        hits = self.stream.consume(result)
        self.hits += hits
        return hits

    def end(self) -> Step | None:
        """No more audio: the step for the resampler's tail, if any (pass it to ``take``)."""
        if self._resampler is None:
            return None
        return self.stream.feed(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))

    def final_step(self) -> Step:
        return self.stream.final_step()

    def finish(self, result: StepResult) -> list[Hit]:
        """The hits that waited for look-ahead the recording never got."""
        hits = self.stream.finish(result)
        self.hits += hits
        return hits

    def tempo_due(self) -> bool:
        """Whether the tempo should be estimated again (at most every ``TEMPO_EVERY_SECONDS`` of
        audio, from 8 hits on); marks it as estimated."""
        if self.seconds - self._tempo_checked_at < TEMPO_EVERY_SECONDS or len(self.hits) < 8:
            return False
        self._tempo_checked_at = self.seconds
        return True

    def tempo_moved(self, bpm: float) -> bool:
        """Keep ``bpm`` as the session's tempo if it moved by more than a bpm since the last one sent."""
        if self.bpm is None or abs(bpm - self.bpm) > TEMPO_STEP_BPM:
            self.bpm = bpm
            return True
        return False

    def sorted_hits(self) -> list[Hit]:
        return sorted(self.hits, key=hit_order)
