"""A live session's recording, written to its job folder as the audio arrives.

Holding it in memory cost 0.92 GB for a 20-minute 96 kHz stereo session; on disk it costs
the same bytes of disk and nothing of memory, and it survives whatever happens to the
session's finalizing. What the client sent is kept bit-exact (so the batch job hears what
the live session heard): FLAC for 16-bit input, float WAV for float input.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from stream.pcm import PcmFormat


class Recording:
    """An audio file open for appending whole sample frames; ``close`` finishes its header."""

    def __init__(self, folder: Path, fmt: PcmFormat) -> None:
        self.folder = folder
        flac = fmt.encoding == "s16le"
        self.name = "recording.flac" if flac else "recording.wav"
        try:
            self._file = sf.SoundFile(folder / self.name, "w", samplerate=fmt.sample_rate, channels=fmt.channels,
                                      format="FLAC" if flac else "WAV", subtype="PCM_16" if flac else "FLOAT")
        except sf.SoundFileError as error:  # libsndfile's word for a disk that refuses the file
            raise OSError(f"cannot write {self.path}: {error}") from error
        self.frames = 0

    @property
    def path(self) -> Path:
        return self.folder / self.name

    def append(self, frames: np.ndarray) -> None:
        """(frames, channels) in the client's sample type."""
        if len(frames):
            try:
                self._file.write(frames)
            except (sf.SoundFileError, AssertionError, RuntimeError) as error:
                # soundfile's words for a write that failed: an error, a short write, a closed file
                raise OSError(f"cannot write {self.path}: {error!r}") from error
            self.frames += len(frames)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def discard(self) -> None:
        """Close and remove the folder: for a session that sent no audio, so no empty job folder stays."""
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)
