"""load_audio: every common format decodes to mono float32 at the asked rate; bad inputs fail clearly."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from models.audio import AudioError, load_audio, resample, to_mono

RATE_IN = 44100
RATE_OUT = 24000
CLICK_SECONDS = 0.5

# Encoders FFmpeg builds usually carry, first available wins.
AV_FORMATS = {  # suffix: (container, encoders, encoder rate)
    "mp3": ("mp3", ("libmp3lame", "mp3"), 44100),
    "m4a": ("ipod", ("aac", "libfdk_aac"), 44100),
    "mp4": ("mp4", ("aac", "libfdk_aac"), 44100),
    "webm": ("webm", ("libopus", "opus"), 48000),
    "opus": ("ogg", ("libopus", "opus"), 48000),
}


def signal(seconds: float = 1.0) -> np.ndarray:
    """(frames, 2) stereo: a quiet 440 Hz sine in both channels and one loud click."""
    t = np.arange(int(seconds * RATE_IN)) / RATE_IN
    sine = 0.2 * np.sin(2 * np.pi * 440 * t)
    x = np.stack([sine, sine], axis=1)
    x[int(CLICK_SECONDS * RATE_IN)] = 0.95
    return x.astype(np.float32)


def encoder(suffix: str) -> str:
    available = [name for name in AV_FORMATS[suffix][1] if name in av.codecs_available]
    if not available:
        pytest.skip(f"this FFmpeg build has no {suffix} encoder")
    return available[0]


def write_av(path: Path, x: np.ndarray) -> Path:
    """Encode (frames, 2) float32 at RATE_IN with PyAV; the frame's pts and time base make the
    encoder's priming samples get written as such (an MP4 edit list), as real encoders do."""
    container, _, rate = AV_FORMATS[path.suffix[1:]]
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(encoder(path.suffix[1:]), rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x.T), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = RATE_IN, 0, Fraction(1, RATE_IN)
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path


def write(path: Path, x: np.ndarray, **kwargs) -> Path:
    if path.suffix in (".wav", ".flac", ".ogg"):
        sf.write(path, x, RATE_IN, **kwargs)
        return path
    return write_av(path, x)


def click_seconds(audio: np.ndarray) -> float:
    return int(np.argmax(np.abs(audio))) / RATE_OUT


@pytest.mark.parametrize("suffix", ["wav", "flac", "ogg", "mp3", "m4a", "mp4", "webm", "opus"])
def test_formats_decode_to_mono_float32_at_the_asked_rate(tmp_path, suffix):
    audio = load_audio(write(tmp_path / f"song.{suffix}", signal()), RATE_OUT)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / RATE_OUT - 1.0) <= 0.060  # codec padding
    assert 0.1 < np.abs(audio).max() < 1.5
    lossless = suffix in ("wav", "flac")
    assert abs(click_seconds(audio) - CLICK_SECONDS) <= (0.001 if lossless else 0.003)


def test_lossless_is_sample_exact_in_length(tmp_path):
    for suffix in ("wav", "flac"):
        assert len(load_audio(write(tmp_path / f"song.{suffix}", signal()), RATE_OUT)) == RATE_OUT


def test_channels_are_averaged(tmp_path):
    x = np.zeros((RATE_IN, 2), np.float32)
    x[:, 0] = 0.5
    audio = load_audio(write(tmp_path / "left.wav", x), RATE_IN)
    assert np.allclose(audio, 0.25, atol=1e-4)


def test_to_mono_and_resample():
    x = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert to_mono(x).tolist() == [0.5, 0.5] and to_mono(x).dtype == np.float32
    assert to_mono(np.ones(3)).shape == (3,)
    y = resample(np.ones(44100, np.float64), 44100, 16000)
    assert y.dtype == np.float32 and len(y) == 16000


def error_code(path: Path, **kwargs) -> str:
    with pytest.raises(AudioError) as caught:
        load_audio(path, RATE_OUT, **kwargs)
    assert str(caught.value).startswith(path.name + ": ")
    return caught.value.code


@pytest.mark.parametrize("suffix", ["wav", "mp3", "m4a", "bin"])
def test_random_bytes_are_unsupported(tmp_path, suffix):
    path = tmp_path / f"noise.{suffix}"
    path.write_bytes(np.random.default_rng(0).bytes(20000))
    assert error_code(path) == "unsupported_media"


def test_video_without_audio_is_unsupported(tmp_path):
    path = tmp_path / "video.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with pytest.raises(AudioError, match="no audio stream found") as caught:
        load_audio(path, RATE_OUT)
    assert caught.value.code == "unsupported_media"


def test_missing_and_empty_files(tmp_path):
    assert error_code(tmp_path / "missing.wav") == "not_found"
    (tmp_path / "empty.mp3").write_bytes(b"")
    assert error_code(tmp_path / "empty.mp3") == "empty"


def test_wav_without_frames_is_empty(tmp_path):
    assert error_code(write(tmp_path / "none.wav", np.zeros((0, 2), np.float32))) == "empty"


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
@pytest.mark.parametrize("keep", [0.5, "header+3", "header-10"])
def test_cut_off_wav_is_truncated(tmp_path, subtype, keep):
    # libsndfile itself reads such a file quietly as a shorter one: the header is what tells.
    data = write(tmp_path / "full.wav", signal(), subtype=subtype).read_bytes()
    header = data.index(b"data") + 8
    size = {0.5: len(data) // 2, "header+3": header + 3, "header-10": header - 10}[keep]
    path = tmp_path / "cut.wav"
    path.write_bytes(data[:size])
    assert error_code(path) == "truncated"


def test_cut_off_flac_is_truncated(tmp_path):
    data = write(tmp_path / "full.flac", signal()).read_bytes()
    path = tmp_path / "cut.flac"
    path.write_bytes(data[: len(data) // 2])
    assert error_code(path) == "truncated"


def test_silence_is_refused(tmp_path):
    assert error_code(write(tmp_path / "zeros.wav", np.zeros((RATE_IN, 2), np.float32))) == "silent"
    assert error_code(write(tmp_path / "hiss.flac", np.full((RATE_IN, 2), 3e-5, np.float32))) == "silent"
    assert error_code(write(tmp_path / "zeros.mp3", np.zeros((RATE_IN, 2), np.float32))) == "silent"


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_samples_are_invalid(tmp_path, bad):
    x = signal()
    x[100, 0] = bad
    assert error_code(write(tmp_path / "bad.wav", x, subtype="FLOAT")) == "invalid_samples"


@pytest.mark.parametrize("suffix", ["wav", "flac", "mp3", "webm"])
def test_too_long_is_refused(tmp_path, suffix):
    path = write(tmp_path / f"long.{suffix}", signal(3.0))
    assert error_code(path, max_seconds=2.0) == "too_long"
    assert len(load_audio(path, RATE_OUT, max_seconds=4.0)) > 2 * RATE_OUT
