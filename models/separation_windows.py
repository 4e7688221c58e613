"""Windowed Demucs separation with cross-faded overlap-add, fed in pieces of any size.

This is ``demucs.apply.apply_model(model, mix, shifts=0, split=True, overlap, transition_power,
segment)`` reorganized as a stream: the same windows (every ``stride`` samples, ``segment`` long),
the same padding of each window, the same triangular cross-fade weights, summed in the same order
and divided by the same weight sums. So a file pushed whole, or in pieces cut anywhere, gives the
drums ``apply_model`` gives (tested), and a live session separates exactly as a file would.

A sample is final once the last window covering it has run: the window starting at or before it
by less than a stride, which needs ``segment`` samples from its start (plus any right padding the
model asks for). So the added latency is one window: ``lookahead_samples``.
"""
from __future__ import annotations

import numpy as np
import torch

from models.separation import Separator


class StreamingSeparator:
    """``push(samples) -> drums`` and ``flush() -> drums``: mono float32 at the model's rate.

    Input is mono (frames,) or (frames, channels) float32 at ``separator.samplerate``; mono is
    copied to both of the model's channels, and the drums come back mixed to mono (what the
    detector takes). Output lags input by up to ``lookahead_samples``; ``flush`` returns the
    rest, so the total output is exactly as long as the input.
    """

    def __init__(self, separator: Separator, window_seconds: float, overlap: float = 0.25,
                 transition_power: float = 1.0) -> None:
        if not 0 <= overlap < 1:
            raise ValueError("overlap must be in [0, 1)")
        if transition_power < 1:
            raise ValueError("transition_power must be at least 1 (as in apply_model)")
        if window_seconds > separator.max_window_seconds + 1e-9:
            raise ValueError(f"windows are limited to the model's {separator.max_window_seconds:g} s")
        self.separator, self.window_seconds = separator, window_seconds
        rate = separator.samplerate
        self.segment = int(rate * window_seconds)
        self.stride = int((1 - overlap) * self.segment)
        if self.segment <= 0 or self.stride <= 0:
            raise ValueError("the window is too short for this overlap")
        # apply_model's weights: a triangle peaking mid-window, normalized, to the power.
        weight = torch.cat([torch.arange(1, self.segment // 2 + 1),
                            torch.arange(self.segment - self.segment // 2, 0, -1)])
        self.weight = (weight / weight.max()) ** transition_power
        valid = separator.valid_length(self.segment, window_seconds)
        self.right_pad = max(0, (valid - self.segment) - (valid - self.segment) // 2)
        self.left_keep = max(valid, self.segment)  # input kept before the next window, for end padding
        self.channels = separator.audio_channels
        self._mix = torch.zeros(self.channels, 0)  # input from absolute sample _mix_base on
        self._mix_base = 0
        self._out = torch.zeros(self.channels, 0)  # weighted sums from absolute sample _out_base on
        self._sum = torch.zeros(0)
        self._out_base = 0
        self.received = 0       # input samples so far
        self._next = 0          # start of the next window to run
        self.windows_run = 0

    @property
    def lookahead_samples(self) -> int:
        """The most a sample waits for the input that makes it final."""
        return self.segment + self.right_pad

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Add input; return the drums of every sample that is now final."""
        x = self._as_channels(samples)
        self._mix = torch.cat([self._mix, x], dim=1)
        self.received += x.shape[1]
        while self._next + self.segment + self.right_pad <= self.received:
            self._run(self._next, self.segment)
            self._next += self.stride
        return self._emit(self._next)

    def flush(self) -> np.ndarray:
        """End of input: the windows over the tail (shorter ones where ``apply_model`` has them)."""
        for offset in range(self._next, self.received, self.stride):
            self._run(offset, min(self.segment, self.received - offset))
        self._next = max(self._next, self.received)
        return self._emit(self.received)

    def _as_channels(self, samples: np.ndarray) -> torch.Tensor:
        x = np.asarray(samples, np.float32)
        if x.ndim == 1:
            x = x[:, None]
        if x.shape[1] != self.channels:
            x = np.repeat(x.mean(axis=1, keepdims=True), self.channels, axis=1)
        return torch.from_numpy(np.ascontiguousarray(x.T))

    def _run(self, offset: int, length: int) -> None:
        """One window: separate, weight, add into the running sums."""
        drums = self.separator.drums(self._mix, offset - self._mix_base, length, self.window_seconds).cpu()
        end = offset + length - self._out_base
        if end > self._out.shape[1]:
            grow = end - self._out.shape[1]
            self._out = torch.cat([self._out, torch.zeros(self.channels, grow)], dim=1)
            self._sum = torch.cat([self._sum, torch.zeros(grow)])
        start = offset - self._out_base
        self._out[:, start:end] += self.weight[:length] * drums
        self._sum[start:end] += self.weight[:length]
        self.windows_run += 1

    def _emit(self, upto: int) -> np.ndarray:
        """Drums of samples before ``upto`` (all windows over them have run), as mono."""
        n = upto - self._out_base
        if n <= 0:
            return np.zeros(0, np.float32)
        final = self._out[:, :n] / self._sum[:n]
        self._out, self._sum = self._out[:, n:], self._sum[n:]
        self._out_base = upto
        keep_from = max(self._mix_base, self._next - self.left_keep)
        self._mix = self._mix[:, keep_from - self._mix_base:]
        self._mix_base = keep_from
        return final.mean(dim=0).numpy().astype(np.float32, copy=False)
