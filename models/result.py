"""The result JSON of the design: duration, tempo, model, hits and a per-family summary."""
from __future__ import annotations

from models.peaks import Hit
from models.runtime import ModelCard
from models.vocab import FAMILIES


def build_result(hits: list[Hit], duration: float, sample_rate: int, card: ModelCard, bpm: float,
                 time_signature: str = "4/4", **extra: object) -> dict:
    summary = {family: 0 for family in FAMILIES}
    for hit in hits:
        summary[hit.family] += 1
    return {
        "duration": round(duration, 3),
        "sample_rate": sample_rate,
        "bpm": bpm,
        "time_signature": time_signature,
        "model": {"name": card.name, "version": card.version, "lookahead_ms": card.lookahead_ms},
        "hits": [hit.to_dict() for hit in hits],
        "summary": summary,
        **extra,
    }
