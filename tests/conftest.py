"""Shared fixtures: drum recordings the tests make, and a batch service on a real Redis."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from batch.config import Settings
from models.synthetic import rock_beat


@pytest.fixture(scope="session")
def beat_wav(tmp_path_factory) -> Path:
    """Eight bars of a synthetic rock beat at 100 bpm, 44.1 kHz stereo WAV."""
    audio, _ = rock_beat(bars=8, bpm=100, rate=44100)
    path = tmp_path_factory.mktemp("audio") / "beat.wav"
    sf.write(path, np.stack([audio, audio], axis=1), 44100)
    return path


@pytest.fixture(scope="session")
def long_beat_wav(tmp_path_factory) -> Path:
    """Four minutes of the beat: long enough to catch a job while it runs."""
    audio, _ = rock_beat(bars=100, bpm=100, rate=22050)
    path = tmp_path_factory.mktemp("audio") / "long_beat.wav"
    sf.write(path, audio, 22050)
    return path


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Embedded Redis under a fresh data directory, one in-process worker, short timeouts."""
    return dataclasses.replace(Settings(), data_dir=tmp_path / "data", workers=1, visibility_timeout=2.0)
