"""Streaming peak picking: activations in, hits out, one frame of look-ahead.

A frame is a hit for a family when its onset probability reaches the family's threshold,
is higher than the frame before and not lower than the frame after (a plateau's first
frame wins), and the family's
last hit is at least ``MIN_GAP_FRAMES`` back. Feeding frames one at a time or all at once
gives the same hits, which keeps streaming and offline transcription identical.

A hi-hat and a cymbal struck on the same frame are nearly always one stick heard twice: the
hand that rides the hat also rides or crashes the cymbal (Groove MIDI: 0.9 % of cymbal hits
have a hand-played hi-hat with them, 21 % a pedalled one). Such a pair keeps the likelier of
the two; a pedalled hi-hat stays beside its cymbal.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_GAP_FRAMES = 3  # 30 ms: closer peaks of one family are one hit
ONE_HAND = frozenset({"hihat", "cymbal"})  # families a single stick plays, never both on one frame
FOOT_PLAYED = frozenset({"hihat_pedal"})


@dataclass(frozen=True)
class Hit:
    t: float
    instrument: str
    family: str
    velocity: float
    confidence: float

    def to_dict(self) -> dict:
        return {"t": round(self.t, 4), "instrument": self.instrument, "family": self.family,
                "velocity": round(self.velocity, 3), "confidence": round(self.confidence, 3)}


class PeakPicker:
    """Turns probability frames (onsets | instruments | velocities) into hits."""

    def __init__(self, families: tuple[str, ...], instruments: tuple[str, ...], family_of: dict[str, str],
                 thresholds: dict[str, float], frame_seconds: float) -> None:
        self.families = families
        self.thresholds = np.array([thresholds[f] for f in families], np.float32)
        self.frame_seconds = frame_seconds
        n_f = len(families)
        self._instrument_cols = [
            [n_f + i for i, name in enumerate(instruments) if family_of[name] == family] for family in families
        ]
        self._instrument_names = [[name for name in instruments if family_of[name] == family] for family in families]
        self._velocity_col = n_f + len(instruments)
        self._tail: np.ndarray | None = None  # the last two frames seen (a silent frame before the first)
        self._tail_start = -1  # frame index of the tail's first row
        self._last_hit = np.full(n_f, -10**9)

    def push(self, frames: np.ndarray) -> list[Hit]:
        """Consume new probability frames; return hits for frames whose next frame has arrived."""
        if len(frames) == 0:
            return []
        if self._tail is None:
            self._tail = np.zeros((1, frames.shape[1]), np.float32)
        return self._pick(np.concatenate([self._tail, frames]))

    def flush(self) -> list[Hit]:
        """End of input: the newest frame may still be a hit (silence follows it)."""
        if self._tail is None:
            return []
        hits = self._pick(np.concatenate([self._tail, np.zeros((1, self._tail.shape[1]), np.float32)]))
        self._tail = None
        self._tail_start = -1
        return hits

    def _pick(self, block: np.ndarray) -> list[Hit]:
        """Hits among the block's interior rows, the only ones with both neighbours present."""
        n_f = len(self.families)
        onsets = block[:, :n_f]
        centre, before, after = onsets[1:-1], onsets[:-2], onsets[2:]
        candidates = (centre >= self.thresholds) & (centre > before) & (centre >= after)
        first = self._tail_start + 1  # frame index of block[1]
        self._tail_start += len(block) - 2
        self._tail = block[-2:]
        hits: list[Hit] = []
        for row, family_index in zip(*np.nonzero(candidates)):
            frame = first + int(row)
            if frame - self._last_hit[family_index] < MIN_GAP_FRAMES:
                continue
            self._last_hit[family_index] = frame
            probabilities = block[row + 1]
            cols = self._instrument_cols[family_index]
            instrument = self._instrument_names[family_index][int(np.argmax(probabilities[cols]))]
            hits.append(Hit(
                t=(frame + 0.5) * self.frame_seconds, instrument=instrument, family=self.families[family_index],
                velocity=float(probabilities[self._velocity_col + family_index]),
                confidence=float(probabilities[family_index]),
            ))
        return _one_stick_per_hand(hits)


def _one_stick_per_hand(hits: list[Hit]) -> list[Hit]:
    """Of a hand-played hi-hat and a cymbal at the same time, only the likelier (see the module doc)."""
    by_time: dict[float, list[Hit]] = {}
    for hit in hits:
        if hit.family in ONE_HAND and hit.instrument not in FOOT_PLAYED:
            by_time.setdefault(hit.t, []).append(hit)
    weaker = {id(min(pair, key=lambda hit: hit.confidence)) for pair in by_time.values() if len(pair) > 1}
    return [hit for hit in hits if id(hit) not in weaker]
