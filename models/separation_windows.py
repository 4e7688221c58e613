"""Windowed Demucs separation with cross-faded overlap-add, fed in pieces of any size.

This is ``demucs.apply.apply_model(model, mix, shifts=0, split=True, overlap, transition_power,
segment)`` reorganized as a stream: the same windows (every ``stride`` samples, ``segment`` long),
the same padding of each window, the same triangular cross-fade weights, summed in the same order
and divided by the same weight sums. So a file pushed whole, or in pieces cut anywhere, gives the
drums ``apply_model`` gives (tested), and a live session separates exactly as a file would.

A sample is final once the last window covering it has run: the window starting at or before it
by less than a stride, which needs ``segment`` samples from its start (plus any right padding the
model asks for). So the added latency is one window: ``lookahead_samples``.

Cutting windows (``feed``/``close``) is apart from separating them (``accept`` takes each
window's drums, however they were made), so a server can separate the windows of many streams
in one batched model call; ``push``/``flush`` do both here, one model call per window.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from demucs.apply import TensorChunk

from models.separation import Separator


@dataclass(frozen=True, eq=False)
class Window:
    """One window to separate: ``length`` samples from ``offset``, with the neighbouring samples
    the model pads them with (zeros past the ends) in ``input`` (channels, padded length)."""

    offset: int
    length: int
    input: torch.Tensor
    window_seconds: float
    final_upto: int  # once this window and those before it are accepted, drums before here are final


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
        self._next = 0          # start of the next window to cut
        self.windows_run = 0

    @property
    def lookahead_samples(self) -> int:
        """The most a sample waits for the input that makes it final."""
        return self.segment + self.right_pad

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Add input; return the drums of every sample that is now final."""
        return self.separate(self.feed(samples))

    def flush(self) -> np.ndarray:
        """End of input: the rest of the drums."""
        return self.separate(self.close())

    def feed(self, samples: np.ndarray) -> list[Window]:
        """Add input; return the windows it completed, to separate and ``accept`` in this order."""
        x = self._as_channels(samples)
        self._mix = torch.cat([self._mix, x], dim=1)
        self.received += x.shape[1]
        windows = []
        while self._next + self.segment + self.right_pad <= self.received:
            windows.append(self._cut(self._next, self.segment, self._next + self.stride))
            self._next += self.stride
        keep_from = max(self._mix_base, self._next - self.left_keep)
        self._mix = self._mix[:, keep_from - self._mix_base:]
        self._mix_base = keep_from
        return windows

    def close(self) -> list[Window]:
        """End of input: the windows over the tail (shorter ones where ``apply_model`` has them)."""
        windows = [self._cut(offset, min(self.segment, self.received - offset), min(offset + self.stride, self.received))
                   for offset in range(self._next, self.received, self.stride)]
        self._next = max(self._next, self.received)
        return windows

    def accept(self, window: Window, drums: torch.Tensor) -> np.ndarray:
        """Add a window's drums (channels, length) into the running sums; return the drums that
        are now final, as mono. Windows must come in the order ``feed`` and ``close`` gave them."""
        end = window.offset + window.length - self._out_base
        if end > self._out.shape[1]:
            grow = end - self._out.shape[1]
            self._out = torch.cat([self._out, torch.zeros(self.channels, grow)], dim=1)
            self._sum = torch.cat([self._sum, torch.zeros(grow)])
        start = window.offset - self._out_base
        self._out[:, start:end] += self.weight[:window.length] * drums
        self._sum[start:end] += self.weight[:window.length]
        self.windows_run += 1
        return self._emit(window.final_upto)

    def separate(self, windows: list[Window]) -> np.ndarray:
        """Separate and accept ``windows`` here, one model call each (bit for bit ``apply_model``)."""
        parts = [self.accept(w, self.separator.drums_batch([w])[0]) for w in windows]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def _as_channels(self, samples: np.ndarray) -> torch.Tensor:
        x = np.asarray(samples, np.float32)
        if x.ndim == 1:
            x = x[:, None]
        if x.shape[1] != self.channels:
            x = np.repeat(x.mean(axis=1, keepdims=True), self.channels, axis=1)
        return torch.from_numpy(np.ascontiguousarray(x.T))

    def _cut(self, offset: int, length: int, final_upto: int) -> Window:
        """The window at ``offset``, padded as ``apply_model`` pads it for the model."""
        padded = self.separator.valid_length(length, self.window_seconds)
        chunk = TensorChunk(self._mix, offset - self._mix_base, length).padded(padded)
        return Window(offset, length, chunk, self.window_seconds, final_upto)

    def _emit(self, upto: int) -> np.ndarray:
        """Drums of samples before ``upto`` (all windows over them have been accepted), as mono."""
        n = upto - self._out_base
        if n <= 0:
            return np.zeros(0, np.float32)
        final = self._out[:, :n] / self._sum[:n]
        self._out, self._sum = self._out[:, n:], self._sum[n:]
        self._out_base = upto
        return final.mean(dim=0).numpy().astype(np.float32, copy=False)
