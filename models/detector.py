"""Drum hits from audio: one streaming engine, used whole for files and in pieces for live input.

``StreamingDetector`` keeps the tail of the audio the next feature frame needs and the
network's state, so each frame is computed once and only once. ``Detector.transcribe``
is the same engine fed a whole file at once, so a file streamed in chunks of any size
gives exactly the hits of the offline call.
"""
from __future__ import annotations

import numpy as np

from models.features import HOP, N_FFT, N_MELS, SAMPLE_RATE, log_mel
from models.peaks import Hit, PeakPicker
from models.runtime import HitModel, Step, StepResult
from models.vocab import FAMILY_OF

MAX_STEP_FRAMES = 6000  # bounds memory for long files: about a minute per inference call


def hit_order(hit: Hit) -> tuple[float, str]:
    """The order hits are reported in: by time, then family."""
    return hit.t, hit.family


class StreamingDetector:
    """``push(samples) -> hits`` and ``flush() -> hits`` over mono audio at the model's rate.

    For batching across streams, ``feed`` and ``consume`` split ``push`` around the
    network call: ``feed`` returns the ``Step`` to run (or None), ``consume`` its result.
    Each step continues from the state the previous one returned, so a stream has at
    most one step in flight.
    """

    def __init__(self, model: HitModel) -> None:
        card = model.card
        if card.sample_rate != SAMPLE_RATE or card.hop != HOP:
            raise ValueError("model card does not match the feature front end")
        self.model = model
        self.lookahead = card.lookahead_frames
        self.picker = PeakPicker(card.families, card.instruments, FAMILY_OF, card.thresholds, HOP / SAMPLE_RATE)
        self._audio = np.zeros(N_FFT - HOP, np.float32)  # history the next frame's window needs
        self._state = model.initial_state  # frames before the first are silence, as in training
        self._early = self.lookahead  # the first outputs belong to frames before the stream
        self._in_flight = False
        self.samples_seen = 0

    def feed(self, samples: np.ndarray) -> Step | None:
        """Add audio; return the step computing every newly complete frame, if any."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        self.samples_seen += len(samples)
        self._audio = np.concatenate([self._audio, samples])
        n_new = (len(self._audio) - (N_FFT - HOP)) // HOP
        if n_new <= 0:
            return None
        new = log_mel(self._audio, n_new)
        self._audio = self._audio[n_new * HOP:]
        return self._step(new)

    def _step(self, frames: np.ndarray) -> Step:
        if self._in_flight:
            raise RuntimeError("the previous step's result has not been consumed")
        self._in_flight = True
        return Step(frames, self._state)

    def consume(self, result: StepResult) -> list[Hit]:
        self._in_flight = False
        self._state = result.state
        probabilities = result.probabilities
        if self._early:
            dropped = min(self._early, len(probabilities))
            probabilities, self._early = probabilities[dropped:], self._early - dropped
        return self.picker.push(probabilities)

    def push(self, samples: np.ndarray) -> list[Hit]:
        hits: list[Hit] = []
        samples = np.asarray(samples, np.float32).reshape(-1)
        step = MAX_STEP_FRAMES * HOP
        for start in range(0, max(len(samples), 1), step):
            pending = self.feed(samples[start:start + step])
            if pending is not None:
                hits.extend(self.consume(self.model.run([pending])[0]))
        return hits

    def flush(self) -> list[Hit]:
        """End of input: the hits still held back for want of look-ahead."""
        return self.finish(self.model.run([self.final_step()])[0])

    def final_step(self) -> Step:
        """The last step: silence stands in for the look-ahead the last frames never got."""
        return self._step(np.zeros((self.lookahead, N_MELS), np.float32))

    def finish(self, result: StepResult) -> list[Hit]:
        """Consume the last step's result (see ``final_step``) and release every hit left."""
        return self.consume(result) + self.picker.flush()


class Detector:
    """Whole-file transcription with a shared model."""

    def __init__(self, model: HitModel | None = None) -> None:
        self.model = model or HitModel()

    @property
    def card(self):
        return self.model.card

    def stream(self) -> StreamingDetector:
        return StreamingDetector(self.model)

    def transcribe(self, audio: np.ndarray) -> list[Hit]:
        """Hits in ``audio`` (mono, at the model's sample rate), in time order."""
        stream = self.stream()
        hits = stream.push(audio) + stream.flush()
        return sorted(hits, key=hit_order)
