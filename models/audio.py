"""Decoding any common audio or video file to mono float32 samples at the model's rate.

soundfile (libsndfile) reads WAV, FLAC and Ogg Vorbis exactly and fast; PyAV (FFmpeg) reads the
rest: MP3, AAC in M4A/MP4, Opus in WebM/Ogg, and the audio track of video files. Every way a
file can be unusable surfaces as one ``AudioError`` whose ``code`` a caller can act on and
whose message names the file and the problem; no decoder traceback leaks out.

Decoding stays within a budget: the container's channels, sample rate and length are checked
against ``DecodeLimits`` before any sample is decoded, then the file is decoded in chunks of
``CHUNK_FRAMES``, each mixed to mono and resampled (soxr's streaming resampler gives the same
samples as the one-shot call) as it comes, so memory holds the mono result and one chunk, not
the whole multichannel decode.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import soundfile as sf
import soxr

if TYPE_CHECKING:  # PyAV loads FFmpeg (about 0.1 s): imported where a file needs it
    import av

ErrorCode = Literal["not_found", "unsupported_media", "empty", "truncated", "silent", "invalid_samples",
                    "too_long", "too_large"]

SILENCE_PEAK = 1e-4
KEEP_RATE = 48_000        # read_audio resamples anything faster to this while decoding: no model uses more
CHUNK_FRAMES = 1 << 16    # frames decoded at a time (2 MB at 8 channels)
RESAMPLER_QUALITY = "HQ"

# First bytes of the files left to libsndfile (WAV, RF64, W64, AIFF, FLAC, Ogg): their headers give
# exact lengths and it decodes them sample-exactly, except Opus, whose pre-skip it ignores (6.5 ms
# late). Its MP3 lengths are estimates and its MP3 decoder chatters on stderr: PyAV does those.
_SOUNDFILE_MAGIC = frozenset({b"RIFF", b"RF64", b"riff", b"FORM", b"fLaC", b"OggS"})

# FFmpeg demuxers whose stated length comes from the file's own header or index (for MP3 only with
# a Xing/Info/VBRI header: without one FFmpeg guesses from the bitrate, off by 2x for VBR files).
_STATED_LENGTH_FORMATS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "ogg"})
# Decoded audio this much shorter than the container says is a cut-off file, not codec padding.
_TRUNCATION_SLACK_SECONDS = 0.25


@dataclass(frozen=True)
class DecodeLimits:
    """What a file may declare before it is decoded; anything beyond is refused unread."""

    max_channels: int = 8
    min_rate: int = 8_000
    max_rate: int = 192_000
    max_decoded_bytes: int = 2 * 1024**3  # channels x rate x seconds x 4 bytes (float32)


LIMITS = DecodeLimits()


class AudioError(ValueError):
    """An input that cannot be used as audio; ``code`` says why, the message says it to a person."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class _Probe:
    """What the container says before decoding; ``seconds`` only when it states it reliably."""

    channels: int
    rate: int
    seconds: float | None


# (frames, channels) float32 chunks and their rate, which stays that of the first chunk; the
# iterator raises AudioError for a cut-off file.
_Chunks = Iterator[tuple[np.ndarray, int]]


def load_audio(path: str | Path, sample_rate: int, max_seconds: float | None = None,
               limits: DecodeLimits = LIMITS) -> np.ndarray:
    """Decode ``path`` to mono float32 at ``sample_rate`` (see ``read_audio`` for the checks)."""
    return _decode(Path(path), max_seconds, limits, sample_rate)[0]


def read_audio(path: str | Path, max_seconds: float | None = None,
               limits: DecodeLimits = LIMITS) -> tuple[np.ndarray, int]:
    """Decode ``path`` to mono float32 at its own rate, at most ``KEEP_RATE``; returns (samples, rate).

    Raises ``AudioError`` for a missing, undecodable, empty, cut-off, silent, non-finite or
    too long input, and for one beyond ``limits`` (channels, rate, decoded size). Limits are
    checked from the header before decoding and again as decoding goes, so a huge or lying
    file is never decoded whole.
    """
    return _decode(Path(path), max_seconds, limits, None)


def to_mono(x: np.ndarray) -> np.ndarray:
    """Mix (frames, channels) down to (frames,) by the mean of the channels; 1-D passes through."""
    x = np.asarray(x, dtype=np.float32)
    return x.mean(axis=1, dtype=np.float32) if x.ndim == 2 else x


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample with soxr's high quality filter, as float32 (frames first, channels optional)."""
    x = np.asarray(x, dtype=np.float32)
    if sr_in == sr_out:
        return x
    return soxr.resample(x, sr_in, sr_out, quality=RESAMPLER_QUALITY).astype(np.float32, copy=False)


def _decode(path: Path, max_seconds: float | None, limits: DecodeLimits,
            rate_out: int | None) -> tuple[np.ndarray, int]:
    if not path.is_file():
        raise AudioError("not_found", f"{path.name}: file not found")
    if path.stat().st_size == 0:
        raise AudioError("empty", f"{path.name}: file is empty")
    if _wav_is_cut(path):
        raise AudioError("truncated", f"{path.name}: WAV file is cut off (shorter than its header says)")
    opened = _open_soundfile(path)
    probe, chunks = opened if opened is not None else _open_av(path)
    _check_probe(path, probe, max_seconds, limits)
    return _collect(path, probe, chunks, max_seconds, limits, rate_out)


def _check_format(path: Path, channels: int, rate: int, limits: DecodeLimits) -> None:
    if not 1 <= channels <= limits.max_channels:
        raise AudioError("unsupported_media",
                         f"{path.name}: {channels} channels; at most {limits.max_channels} are supported")
    if not limits.min_rate <= rate <= limits.max_rate:
        raise AudioError("unsupported_media", f"{path.name}: sample rate {rate} Hz is outside the supported "
                         f"{limits.min_rate / 1000:g}-{limits.max_rate / 1000:g} kHz")


def _check_size(path: Path, channels: int, rate: int, seconds: float, max_seconds: float | None,
                limits: DecodeLimits) -> None:
    if max_seconds is not None and seconds > max_seconds:
        raise AudioError("too_long", f"{path.name}: audio is longer than the limit of {max_seconds:g} s")
    if channels * rate * seconds * 4 > limits.max_decoded_bytes:
        raise AudioError("too_large", f"{path.name}: {channels} channels at {rate} Hz for {seconds:.0f} s "
                         f"decode to more than {limits.max_decoded_bytes // 1024**2} MB")


def _check_probe(path: Path, probe: _Probe, max_seconds: float | None, limits: DecodeLimits) -> None:
    """Refuse from the header alone: nothing has been decoded yet (an unknown format waits for the
    first decoded chunk, which is checked too)."""
    if probe.channels and probe.rate:
        _check_format(path, probe.channels, probe.rate, limits)
    if probe.seconds is not None:
        _check_size(path, probe.channels, probe.rate, probe.seconds, max_seconds, limits)


class _Samples:
    """The mono output, in one array sized from the stated length (grown only if that was short)."""

    def __init__(self, expected: int) -> None:
        self.data = np.empty(expected, np.float32)  # untouched pages cost no memory if it was long
        self.size = 0

    def add(self, x: np.ndarray) -> None:
        end = self.size + len(x)
        if end > len(self.data):
            grown = np.empty(max(end, len(self.data) * 3 // 2), np.float32)
            grown[:self.size] = self.data[:self.size]
            self.data = grown
        self.data[self.size:end] = x
        self.size = end

    def result(self) -> np.ndarray:
        return self.data[:self.size]


def _collect(path: Path, probe: _Probe, chunks: _Chunks, max_seconds: float | None, limits: DecodeLimits,
             rate_out: int | None) -> tuple[np.ndarray, int]:
    """Mix each chunk to mono and resample it as it comes, checking the limits as decoding goes."""
    resampler: soxr.ResampleStream | None = None
    rate = out_rate = channels = 0
    frames, peak, samples = 0, 0.0, _Samples(0)
    for chunk, chunk_rate in chunks:
        if not out_rate:  # the first chunk: what the decoder really gives, whatever the header said
            rate, channels = chunk_rate, chunk.shape[1]
            _check_format(path, channels, rate, limits)
            out_rate = rate_out or min(rate, KEEP_RATE)
            if rate != out_rate:
                resampler = soxr.ResampleStream(rate, out_rate, 1, dtype="float32", quality=RESAMPLER_QUALITY)
            stated = probe.seconds if probe.seconds is not None else 0.0
            samples = _Samples(math.ceil(min(stated, max_seconds or stated) * out_rate) + 1)
        frames += len(chunk)
        _check_size(path, channels, rate, frames / rate, max_seconds, limits)
        mono = to_mono(chunk)
        if not np.isfinite(mono).all():
            raise AudioError("invalid_samples", f"{path.name}: audio contains NaN or infinite samples")
        peak = max(peak, float(np.abs(mono).max(initial=0.0)))
        samples.add(resampler.resample_chunk(mono) if resampler else mono)
    if resampler is not None:
        samples.add(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
    if not frames:
        raise AudioError("empty", f"{path.name}: no audio samples")
    if peak < SILENCE_PEAK:
        raise AudioError("silent", f"{path.name}: audio is silent")
    return samples.result(), out_rate


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


def _open_soundfile(path: Path) -> tuple[_Probe, _Chunks] | None:
    """The header and chunks via libsndfile, or None for a file it should not read."""
    with path.open("rb") as raw:
        if raw.read(4) not in _SOUNDFILE_MAGIC:
            return None
    try:
        f = sf.SoundFile(path)
    except sf.SoundFileError:
        return None
    if f.subtype == "OPUS":
        f.close()
        return None
    probe = _Probe(f.channels, f.samplerate, f.frames / f.samplerate if f.samplerate > 0 else None)
    return probe, _soundfile_chunks(path, f)


def _soundfile_chunks(path: Path, f: sf.SoundFile) -> _Chunks:
    with f:
        read = 0
        try:
            while len(block := f.read(CHUNK_FRAMES, dtype="float32", always_2d=True)):
                read += len(block)
                yield block, f.samplerate
        except sf.SoundFileError as error:
            raise AudioError("truncated", f"{path.name}: decoding failed partway ({error.error_string})") from None
        if read < f.frames:
            raise AudioError("truncated", f"{path.name}: {read} of {f.frames} frames could be read")


def _open_av(path: Path) -> tuple[_Probe, _Chunks]:
    """The header and chunks of the first audio stream via FFmpeg."""
    import av

    try:
        container = av.open(str(path))
    except av.error.EOFError:
        raise AudioError("truncated", f"{path.name}: file ends before its headers do") from None
    except av.FFmpegError:
        raise AudioError("unsupported_media", f"{path.name}: not a readable audio or video file") from None
    if not container.streams.audio:
        container.close()
        raise AudioError("unsupported_media", f"{path.name}: no audio stream found")
    stream = container.streams.audio[0]
    probe = _Probe(stream.channels, stream.sample_rate, _stated_seconds(path, container, stream))
    return probe, _av_chunks(path, container, stream, probe.seconds)


def _stated_seconds(path: Path, container: av.container.InputContainer, stream: av.AudioStream) -> float | None:
    """The length the file's own header or index states, or None where FFmpeg would only guess."""
    import av

    name = container.format.name
    if name not in _STATED_LENGTH_FORMATS and not (name == "mp3" and _mp3_has_length_header(path)):
        return None
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base if container.duration is not None else None


def _mp3_has_length_header(path: Path) -> bool:
    """Whether the first MP3 frame (after any ID3v2 tag) is a Xing, Info or VBRI frame-count header."""
    with path.open("rb") as f:
        head = f.read(10)
        start = 0
        if head[:3] == b"ID3" and len(head) == 10:
            start = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(head[6:10]))
        f.seek(start)
        frame = f.read(64)
    return any(tag in frame for tag in (b"Xing", b"Info", b"VBRI"))


def _av_chunks(path: Path, container: av.container.InputContainer, stream: av.AudioStream,
               stated: float | None) -> _Chunks:
    """Decoded frames as float; a decode error, or audio well short of the stated length, is a cut."""
    import av

    with container:
        to_float = av.AudioResampler(format="fltp")  # keeps the channels and rate of the first frame
        seconds = 0.0
        try:
            for decoded in container.decode(stream):
                for frame in to_float.resample(decoded):
                    seconds += frame.samples / frame.sample_rate
                    yield frame.to_ndarray().T, frame.sample_rate
        except av.FFmpegError as error:  # its str() holds the path: only the reason goes out
            raise AudioError("truncated", f"{path.name}: decoding failed partway ({error.strerror})") from None
    if stated is not None and seconds and seconds < stated - _TRUNCATION_SLACK_SECONDS - 0.001 * stated:
        raise AudioError("truncated", f"{path.name}: file is cut off ({seconds:.1f} s of the {stated:.1f} s "
                          "its header states could be decoded)")
