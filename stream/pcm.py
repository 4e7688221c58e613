"""Raw PCM frames from a client: the ``start`` message's schema and decoding to mono float32.

A frame may end in the middle of a sample (clients cut their buffers where they like),
so the bytes of an incomplete sample are kept for the next frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENCODINGS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
MIN_RATE, MAX_RATE = 8000, 96000
START_SHAPE = ('{"type": "start", "sample_rate": 8000-96000, "channels": 1 or 2, '
               '"encoding": "s16le" or "f32le", "separate": true or false}')


class FormatError(ValueError):
    """The ``start`` message asks for a format the gateway does not take."""


class StartMessage(BaseModel):
    """The ``start`` message, checked strictly: ``1.0`` or ``true`` is not a channel count, and
    a wrong type here would otherwise surface as a ``TypeError`` deep in the audio path."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    type: Literal["start"]
    sample_rate: int = Field(ge=MIN_RATE, le=MAX_RATE)
    channels: int = Field(1, ge=1, le=2)
    encoding: Literal["s16le", "f32le"] = "f32le"
    separate: bool = False

    @classmethod
    def parse(cls, message: object) -> "StartMessage":
        """The validated message, or ``FormatError`` saying which fields are wrong and the shape expected."""
        try:
            return cls.model_validate(message)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(str(part) for part in e['loc']) or 'message'}: {e['msg']}"
                                 for e in error.errors()[:4])
            raise FormatError(f"{problems}; send {START_SHAPE}") from None

    @property
    def format(self) -> "PcmFormat":
        return PcmFormat(self.sample_rate, self.channels, self.encoding)


@dataclass(frozen=True)
class PcmFormat:
    sample_rate: int
    channels: int
    encoding: str

    @classmethod
    def parse(cls, message: dict) -> "PcmFormat":
        return StartMessage.parse(message).format

    @property
    def frame_bytes(self) -> int:
        """Bytes of one sample frame (all channels)."""
        return ENCODINGS[self.encoding].itemsize * self.channels


class PcmDecoder:
    """Interleaved PCM bytes in, mono float32 samples out, across arbitrary frame cuts."""

    def __init__(self, fmt: PcmFormat) -> None:
        self.fmt = fmt
        self._rest = b""

    def decode(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        """(mono samples, the whole sample frames they came from as (frames, channels) in the
        client's sample type). Non-finite float samples become 0 / ±1 in both, so the recording
        holds what the live session heard."""
        data = self._rest + data
        usable = len(data) - len(data) % self.fmt.frame_bytes
        self._rest = data[usable:]
        frames = np.frombuffer(data[:usable], ENCODINGS[self.fmt.encoding]).reshape(-1, self.fmt.channels)
        if self.fmt.encoding == "f32le" and not np.isfinite(frames).all():
            frames = np.nan_to_num(frames, nan=0.0, posinf=1.0, neginf=-1.0)
        samples = frames.astype(np.float32)
        if self.fmt.encoding == "s16le":
            samples /= 32768.0
        mono = samples[:, 0] if self.fmt.channels == 1 else samples.mean(axis=1, dtype=np.float32)
        return np.ascontiguousarray(mono), frames
