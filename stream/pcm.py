"""Raw PCM frames from a client: format checks and decoding to mono float32.

A frame may end in the middle of a sample (clients cut their buffers where they like),
so the bytes of an incomplete sample are kept for the next frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ENCODINGS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
MIN_RATE, MAX_RATE = 8000, 96000


class FormatError(ValueError):
    """The ``start`` message asks for a format the gateway does not take."""


@dataclass(frozen=True)
class PcmFormat:
    sample_rate: int
    channels: int
    encoding: str

    @classmethod
    def parse(cls, message: dict) -> "PcmFormat":
        rate, channels, encoding = message.get("sample_rate"), message.get("channels", 1), message.get("encoding", "f32le")
        if not isinstance(rate, int) or not MIN_RATE <= rate <= MAX_RATE:
            raise FormatError(f"sample_rate must be an integer from {MIN_RATE} to {MAX_RATE}")
        if channels not in (1, 2):
            raise FormatError("channels must be 1 or 2")
        if encoding not in ENCODINGS:
            raise FormatError(f"encoding must be one of {', '.join(ENCODINGS)}")
        return cls(rate, channels, encoding)

    @property
    def frame_bytes(self) -> int:
        """Bytes of one sample frame (all channels)."""
        return ENCODINGS[self.encoding].itemsize * self.channels


class PcmDecoder:
    """Interleaved PCM bytes in, mono float32 samples out, across arbitrary frame cuts."""

    def __init__(self, fmt: PcmFormat) -> None:
        self.fmt = fmt
        self._rest = b""

    def decode(self, data: bytes) -> tuple[np.ndarray, bytes]:
        """(mono samples, the whole sample frames of PCM they came from)."""
        data = self._rest + data
        usable = len(data) - len(data) % self.fmt.frame_bytes
        self._rest = data[usable:]
        whole = data[:usable]
        samples = np.frombuffer(whole, ENCODINGS[self.fmt.encoding]).astype(np.float32)
        if self.fmt.encoding == "s16le":
            samples /= 32768.0
        samples = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
        if self.fmt.channels == 2:
            samples = samples.reshape(-1, 2).mean(axis=1, dtype=np.float32)
        return samples, whole

    def as_array(self, pcm: bytes) -> np.ndarray:
        """PCM bytes as a (frames, channels) array of their own type, for lossless saving."""
        return np.frombuffer(pcm, ENCODINGS[self.fmt.encoding]).reshape(-1, self.fmt.channels)
