"""Whether to separate one recording's drums, and separating them: shared by the batch pipeline
and ``drumscribe transcribe``, which must not pay for the pipeline's score code to ask."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from models.audio import resample
from models.mixture import judge
from models.separation import Separation


def decide_separation(choice: str, separation: Separation | None, audio: np.ndarray, rate: int) -> dict:
    """Whether to separate this recording, and why: the result JSON's ``separation``.

    ``off`` never; ``on`` always (``SeparationUnavailable`` without weights); ``auto`` when weights
    are present and the recording is a full mix (``models.mixture``), not drums alone.
    """
    separation = separation or Separation.unavailable("this worker was started without separation")
    decision: dict = {"requested": choice, "applied": False, "available": separation.available}
    if not separation.available:
        decision["reason"] = separation.reason
    if choice == "on":
        separation.require()
        decision["applied"] = True
    elif choice == "auto" and separation.available:
        verdict = judge(audio, rate)
        decision.update(applied=verdict.full_mix, full_mix=verdict.full_mix, harmonic_ratio=verdict.harmonic_ratio)
    if decision["applied"]:
        decision["model"] = separation.require().name
    return decision


def separate(separation: Separation, audio: np.ndarray, rate: int,
             progress: Callable[[float], None]) -> tuple[np.ndarray, int]:
    """The drums of ``audio``, at the separation model's rate."""
    separator = separation.require()
    drums = separator.separate(resample(audio, rate, separator.samplerate), progress)
    return drums, separator.samplerate
