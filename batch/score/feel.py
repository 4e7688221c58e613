"""Swing and shuffle: long-short eighths, told from where the off-beat hits fall in the beat.

A swung eighth lands on the last third of the beat while the middle third stays empty;
written as triplets it reads as a quarter-eighth triplet on every beat, which is not how a
drummer writes it. A recording whose off-beats sit on the last triplet, rarely on the
middle one and seldom halfway, is written in eighths under a swing marking: "Shuffle" when
the long-short figure runs through most beats, "Swing" when it comes and goes (a jazz ride
pattern). Compound metres already move in threes and are never swung.
"""
from __future__ import annotations

from collections import defaultdict
from math import floor

from models.beats import EARLY, Grid
from models.peaks import Hit

STRAIGHT, SWING, SHUFFLE = "straight", "swing", "shuffle"
SLOTS = (0, 3, 4, 6, 8, 9, 12)  # twelfths of a beat: sixteenths, triplets, the next beat
MIN_SWUNG_BEATS = 4  # fewer long-short beats than this say nothing about the feel
MIDDLE_RARELY = 0.25  # the middle triplet on at most this share of the long-short beats
EVEN_RARELY = 0.5  # straight eighths or sixteenths on at most this share of them
SHUFFLE_SHARE = 0.6  # long-short on this share of the sounding beats makes a shuffle


def detect_feel(hits: list[Hit], grid: Grid) -> str:
    """``straight``, ``swing`` or ``shuffle``."""
    if grid.beat_ql != 1 or not hits:
        return STRAIGHT
    slots: dict[int, set[int]] = defaultdict(set)
    for q in grid.quarters([hit.t for hit in hits]).tolist():
        beat = floor(q + EARLY)
        slots[beat].add(min(SLOTS, key=lambda s: abs((q - beat) * 12 - s)))
    last = sum(8 in s for s in slots.values())
    middle = sum(4 in s for s in slots.values())
    even = sum(bool(s & {3, 6, 9}) for s in slots.values())
    if last < MIN_SWUNG_BEATS or middle > MIDDLE_RARELY * last or even > EVEN_RARELY * last:
        return STRAIGHT
    return SHUFFLE if last >= SHUFFLE_SHARE * len(slots) else SWING
