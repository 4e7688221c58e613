"""The batch pipeline's stages, in order, and which of them a worker takes.

A job passes through ``decode`` (a link's download included), ``separate`` (whether to separate
the drums, and separating them), ``detect`` and ``score`` (rendering included). A worker started
with ``--stages separate,detect`` takes only those: the job reaches it on those stages' streams
and leaves on the stream of the next stage it does not take (``batch.jobs.JobStore.hand_on``).
Without ``--stages`` a worker takes them all and a job never changes hands.
"""
from __future__ import annotations

from collections.abc import Collection

STAGES = ("decode", "separate", "detect", "score")


def following(stage: str) -> str | None:
    """The stage after ``stage``; None after the last."""
    index = STAGES.index(stage) + 1
    return STAGES[index] if index < len(STAGES) else None


def ordered(stages: Collection[str]) -> tuple[str, ...]:
    """``stages`` in pipeline order, checked; ValueError names an unknown or missing one."""
    unknown = set(stages) - set(STAGES)
    if unknown or not stages:
        raise ValueError(f"stages must be some of {','.join(STAGES)}, not {','.join(sorted(unknown)) or 'none'}")
    return tuple(stage for stage in STAGES if stage in stages)


def parse_stages(text: str) -> tuple[str, ...]:
    """``decode,score`` (the command line's ``--stages``) as ordered stages."""
    return ordered({part.strip() for part in text.split(",") if part.strip()})
