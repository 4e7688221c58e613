"""Decoding any common audio or video file to mono float32 samples at the model's rate.

soundfile (libsndfile) reads WAV, FLAC and Ogg Vorbis exactly and fast; PyAV (FFmpeg) reads the
rest: MP3, AAC in M4A/MP4, Opus in WebM/Ogg, and the audio track of video files. Every way a
file can be unusable surfaces as one ``AudioError`` whose ``code`` a caller can act on and
whose message names the file and the problem; no decoder traceback leaks out.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import av
import numpy as np
import soundfile as sf
import soxr

ErrorCode = Literal["not_found", "unsupported_media", "empty", "truncated", "silent", "invalid_samples", "too_long"]

SILENCE_PEAK = 1e-4

# First bytes of the files left to libsndfile (WAV, RF64, W64, AIFF, FLAC, Ogg): their headers give
# exact lengths and it decodes them sample-exactly, except Opus, whose pre-skip it ignores (6.5 ms
# late). Its MP3 lengths are estimates and its MP3 decoder chatters on stderr: PyAV does those.
_SOUNDFILE_MAGIC = frozenset({b"RIFF", b"RF64", b"riff", b"FORM", b"fLaC", b"OggS"})


class AudioError(ValueError):
    """An input that cannot be used as audio; ``code`` says why, the message says it to a person."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def load_audio(path: str | Path, sample_rate: int, max_seconds: float | None = None) -> np.ndarray:
    """Decode ``path`` to mono float32 at ``sample_rate`` (see ``read_audio`` for the checks)."""
    audio, rate = read_audio(path, max_seconds)
    return resample(audio, rate, sample_rate)


def read_audio(path: str | Path, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Decode ``path`` to mono float32 at its own rate; returns (samples, rate).

    Raises ``AudioError`` for a missing, undecodable, empty, cut-off, silent, non-finite or
    too long input; a too long file is refused from its header, or as soon as decoding passes
    the limit, so a huge upload is never decoded whole.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError("not_found", f"{path.name}: file not found")
    if path.stat().st_size == 0:
        raise AudioError("empty", f"{path.name}: file is empty")
    if _wav_is_cut(path):
        raise AudioError("truncated", f"{path.name}: WAV file is cut off (shorter than its header says)")
    decoded = _read_soundfile(path, max_seconds)
    audio, rate = decoded if decoded is not None else _read_av(path, max_seconds)
    mono = to_mono(audio)
    if mono.size == 0:
        raise AudioError("empty", f"{path.name}: no audio samples")
    if not np.isfinite(mono).all():
        raise AudioError("invalid_samples", f"{path.name}: audio contains NaN or infinite samples")
    if np.abs(mono).max() < SILENCE_PEAK:
        raise AudioError("silent", f"{path.name}: audio is silent")
    return mono, rate


def to_mono(x: np.ndarray) -> np.ndarray:
    """Mix (frames, channels) down to (frames,) by the mean of the channels; 1-D passes through."""
    x = np.asarray(x, dtype=np.float32)
    return x.mean(axis=1, dtype=np.float32) if x.ndim == 2 else x


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample with soxr's high quality filter, as float32 (frames first, channels optional)."""
    x = np.asarray(x, dtype=np.float32)
    if sr_in == sr_out:
        return x
    return soxr.resample(x, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def _refuse_long(path: Path, seconds: float, max_seconds: float | None) -> None:
    if max_seconds is not None and seconds > max_seconds:
        raise AudioError("too_long", f"{path.name}: audio is longer than the limit of {max_seconds:g} s")


def _wav_is_cut(path: Path) -> bool:
    """True for a RIFF/WAVE file whose data chunk is missing or runs past the end of the file.

    libsndfile silently shortens such a file to the bytes present, so the header is checked here.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return False
        while len(chunk := f.read(8)) == 8:
            declared = int.from_bytes(chunk[4:], "little")
            if chunk[:4] == b"data":
                # 0 and 0xFFFFFFFF are what streaming writers put before they know the length.
                return declared not in (0, 0xFFFFFFFF) and f.tell() + declared > size
            f.seek(declared + declared % 2, 1)
    return True


def _read_soundfile(path: Path, max_seconds: float | None) -> tuple[np.ndarray, int] | None:
    """(frames, channels) float32 and rate via libsndfile, or None for a file it should not read."""
    with path.open("rb") as raw:
        if raw.read(4) not in _SOUNDFILE_MAGIC:
            return None
    try:
        f = sf.SoundFile(path)
    except sf.SoundFileError:
        return None
    with f:
        if f.subtype == "OPUS":
            return None
        _refuse_long(path, f.frames / f.samplerate, max_seconds)
        try:
            audio = f.read(dtype="float32", always_2d=True)
        except sf.SoundFileError as error:
            raise AudioError("truncated", f"{path.name}: decoding failed partway ({error})") from None
        if len(audio) < f.frames:
            raise AudioError("truncated", f"{path.name}: {len(audio)} of {f.frames} frames could be read")
        return audio, f.samplerate


def _read_av(path: Path, max_seconds: float | None) -> tuple[np.ndarray, int]:
    """(frames, channels) float32 and rate of the first audio stream via FFmpeg.

    The length is counted while decoding rather than taken from the container: FFmpeg estimates
    it from the bitrate for MP3s without a Xing header, which can be off by a factor of two.
    """
    try:
        container = av.open(str(path))
    except av.error.EOFError:
        raise AudioError("truncated", f"{path.name}: file ends before its headers do") from None
    except av.FFmpegError:
        raise AudioError("unsupported_media", f"{path.name}: not a readable audio or video file") from None
    with container:
        if not container.streams.audio:
            raise AudioError("unsupported_media", f"{path.name}: no audio stream found")
        stream = container.streams.audio[0]
        to_float = av.AudioResampler(format="fltp")  # keeps the channels and rate of the first frame
        chunks: list[np.ndarray] = []
        rate, frames = stream.sample_rate, 0
        try:
            for decoded in container.decode(stream):
                for frame in to_float.resample(decoded):
                    rate = frame.sample_rate
                    chunks.append(frame.to_ndarray())
                    frames += frame.samples
                _refuse_long(path, frames / rate, max_seconds)
        except av.FFmpegError as error:
            raise AudioError("truncated", f"{path.name}: decoding failed partway ({error})") from None
    if not chunks:
        return np.zeros((0, 1), np.float32), rate
    return np.concatenate(chunks, axis=1).T, rate
