"""Drum hits from audio: one streaming engine, used whole for files and in pieces for live input.

``StreamingDetector`` keeps the tail of the audio, features and probabilities it needs,
so every window it hands the network carries its left context. ``Detector.transcribe``
is the same engine fed a whole file at once, so a file streamed in chunks of any size
gives exactly the hits of the offline call.
"""
from __future__ import annotations

import numpy as np

from models.features import HOP, N_FFT, N_MELS, SAMPLE_RATE, log_mel
from models.peaks import Hit, PeakPicker
from models.runtime import HitModel
from models.vocab import FAMILY_OF

MAX_WINDOW_FRAMES = 6000  # bounds memory for long files: about a minute per inference call


def hit_order(hit: Hit) -> tuple[float, str]:
    """The order hits are reported in: by time, then family."""
    return hit.t, hit.family


class StreamingDetector:
    """``push(samples) -> hits`` and ``flush() -> hits`` over mono audio at the model's rate.

    For batching across streams, ``feed`` and ``consume`` split ``push`` around the
    network call: ``feed`` returns the window to run (or None), ``consume`` its result.
    """

    def __init__(self, model: HitModel) -> None:
        card = model.card
        if card.sample_rate != SAMPLE_RATE or card.hop != HOP:
            raise ValueError("model card does not match the feature front end")
        self.model = model
        self.lookback = card.receptive_field - 1  # frames of history each window carries
        self.lookahead = card.receptive_field - 1 - card.context_frames
        self.picker = PeakPicker(card.families, card.instruments, FAMILY_OF, card.thresholds, HOP / SAMPLE_RATE)
        self._audio = np.zeros(N_FFT - HOP, np.float32)  # history the next frame's window needs
        # Frames before the first are silence: zero features, as the network was trained.
        self._frames = np.zeros((card.context_frames, N_MELS), np.float32)
        self.samples_seen = 0

    def feed(self, samples: np.ndarray) -> np.ndarray | None:
        """Add audio; return the network window covering every newly computable frame, if any."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        self.samples_seen += len(samples)
        self._audio = np.concatenate([self._audio, samples])
        n_new = (len(self._audio) - (N_FFT - HOP)) // HOP
        if n_new <= 0:
            return None
        new = log_mel(self._audio, n_new)
        self._audio = self._audio[n_new * HOP:]
        return self._window(new)

    def _window(self, new_frames: np.ndarray) -> np.ndarray | None:
        frames = np.concatenate([self._frames, new_frames])
        self._frames = frames[-self.lookback:]
        return frames if len(frames) >= self.lookback + 1 else None

    def consume(self, probabilities: np.ndarray) -> list[Hit]:
        return self.picker.push(probabilities)

    def push(self, samples: np.ndarray) -> list[Hit]:
        hits: list[Hit] = []
        samples = np.asarray(samples, np.float32).reshape(-1)
        step = MAX_WINDOW_FRAMES * HOP
        for start in range(0, max(len(samples), 1), step):
            window = self.feed(samples[start:start + step])
            if window is not None:
                hits.extend(self.consume(self.model.run([window])[0]))
        return hits

    def flush(self) -> list[Hit]:
        """End of input: the hits still held back for want of look-ahead."""
        window = self.final_window()
        return self.finish(None if window is None else self.model.run([window])[0])

    def final_window(self) -> np.ndarray | None:
        """The last window: silence stands in for the look-ahead the last frames never got."""
        return self._window(np.zeros((self.lookahead, N_MELS), np.float32))

    def finish(self, probabilities: np.ndarray | None) -> list[Hit]:
        """Consume the last window's result (see ``final_window``) and release every hit left."""
        hits = self.consume(probabilities) if probabilities is not None else []
        return hits + self.picker.flush()


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
