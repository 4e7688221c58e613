"""Tempo, beat grid, downbeat and metre from the hits alone.

Drummers drift, so one global tempo puts notes on the wrong beat after a minute or two:
the grid is a list of tracked pulse times (a phase-locked loop on the hits near each
predicted pulse), and a hit's musical position is read by interpolating between them.
Which octave of that pulse is the beat, and which beat is one, are chosen the way drummers
play (``models.beat_features``), by linear scores learned from the Groove MIDI Dataset.
The metre is 4/4 unless the pattern of the hits says 3/4, 6/8 or 12/8 clearly.
One tracker serves the batch scores, the live notation and ``drumscribe transcribe``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from fractions import Fraction
from pathlib import Path

import numpy as np

from models.peaks import Hit
from models.beat_features import BINS, downbeat_features, octave_features, positions, pulse_index
from models.tempo import estimate_bpm
from models.vocab import FAMILIES

DEFAULT_BPM = 120.0
EARLY = 1 / 8  # quarters: a hit this much before a beat is that beat's (half a sixteenth)
# How much a hit pulls the grid: kick and snare carry the time, hi-hats less so; kicks
# win over snares when they alternate half a pulse apart (the pulse is then a half note).
FAMILY_WEIGHT = {"kick": 1.0, "snare": 0.8, "cymbal": 0.7, "tom": 0.5, "hihat": 0.3}
STARTUP_PULSES = 16  # the first tempo and phase are fitted on this many pulses
COMB_WIDTH = 1 / 16  # pulses: how near a hit must be to count for a candidate phase
WINDOW = 1 / 8  # hits within this fraction of a pulse of a predicted pulse steer the tracker
PHASE_GAIN, TEMPO_GAIN = 0.3, 0.05  # a damped second-order loop: follows drift, ignores jitter
MAX_DRIFT = 0.2  # the tracked pulse period stays within ±20 % of the starting one
CANDIDATE_BPM = (40.0, 250.0)  # beats slower or faster than these are not considered
WEIGHTS = Path(__file__).resolve().parent / "weights" / "beats.json"
METRE_MARGIN = 0.12  # how much better another bar length must repeat than 4/4 to win
MIN_PAIRS = 12  # pulse pairs needed before the metre is judged at all
TRIPLET_DOMINANCE = 2.0  # triplet positions must outweigh sixteenth ones this much for a ternary feel
MIDDLE_TRIPLET = 0.8  # and the middle triplet must be this strong against the last for a compound metre


@dataclass(frozen=True)
class Grid:
    """Where the bars and beats lie in time.

    ``pulse_times`` are the tracked pulses from the first downbeat (``offset_s``); each is
    ``pulse_ql`` quarter notes long (1 for x/4, 3/2 for a dotted-quarter 6/8 pulse, 1/2 for
    an eighth pulse); at least two. Times outside them extrapolate with the end periods.
    """

    bpm: float  # quarter notes per minute, the average over the recording
    offset_s: float  # the first bar's downbeat; may precede the first hit (pickup) or zero
    beats_per_bar: int
    beat_unit: int
    subdivision: int  # 4: the recording moves in sixteenths; 3: in (eighth) triplets
    pulse_ql: Fraction
    pulse_times: tuple[float, ...] = field(repr=False)

    @property
    def time_signature(self) -> str:
        return f"{self.beats_per_bar}/{self.beat_unit}"

    @property
    def bar_ql(self) -> Fraction:
        """Bar length in quarter notes."""
        return Fraction(4 * self.beats_per_bar, self.beat_unit)

    @property
    def beat_ql(self) -> Fraction:
        """The counted beat: a quarter, or a dotted quarter in compound metres."""
        return Fraction(3, 2) if self.beat_unit == 8 and self.beats_per_bar % 3 == 0 else Fraction(4, self.beat_unit)

    def quarters(self, times: np.ndarray | list[float] | float) -> np.ndarray:
        """Quarter notes since the first downbeat at each time."""
        return pulse_index(np.asarray(times, dtype=float), np.asarray(self.pulse_times)) * float(self.pulse_ql)

    def bars_done(self, until: float) -> int:
        """Bars completed by ``until`` seconds."""
        return max(0, int(np.floor(float(self.quarters(until)) / float(self.bar_ql) + 1e-9)))


@dataclass(frozen=True)
class MetricalWeights:
    """Linear scores over ``models.beat_features``, learned by ``models.train.beats``."""

    octave: np.ndarray
    downbeat: np.ndarray


@lru_cache(maxsize=1)
def metrical_weights(path: Path = WEIGHTS) -> MetricalWeights:
    document = json.loads(path.read_text())
    return MetricalWeights(np.array(document["octave"]), np.array(document["downbeat"]))


def default_grid(start: float = 0.0, bpm: float = DEFAULT_BPM) -> Grid:
    """4/4 at ``bpm`` from ``start``: the grid when the hits cannot tell."""
    return Grid(bpm, start, 4, 4, 4, Fraction(1), (start, start + 60.0 / bpm))


def estimate_grid(hits: list[Hit], until: float | None = None) -> Grid:
    """Tempo, tracked pulses, metre and first downbeat of the hits; 4/4 at 120 with few hits."""
    if len(hits) < 4:
        return default_grid(min((hit.t for hit in hits), default=0.0))
    hits = sorted(hits, key=lambda hit: hit.t)
    times = np.array([hit.t for hit in hits])
    pulses = choose_octave(hits, track_pulses(hits, until))
    per_bar, pulse_ql, beats_per_bar, beat_unit, subdivision = _metre(_features(hits, pulses))
    count = (per_bar - choose_downbeat(hits, pulses, per_bar)) % per_bar
    period = pulses[1] - pulses[0]
    while pulses[0] - count * period > times[0] + WINDOW / 2 * period:  # no hit before the first bar
        count += per_bar
    pulses = _prepend(pulses, count)
    average = (pulses[-1] - pulses[0]) / (len(pulses) - 1)
    return Grid(round(60.0 * float(pulse_ql) / float(average), 1), float(pulses[0]), beats_per_bar, beat_unit,
                subdivision, pulse_ql, tuple(float(p) for p in pulses))


def track_pulses(hits: list[Hit], until: float | None = None) -> np.ndarray:
    """Pulse times through the hits (sorted by time) at the octave the global tempo suggests."""
    times = np.array([hit.t for hit in hits])
    weights = np.array([FAMILY_WEIGHT[hit.family] * (0.5 + hit.velocity) for hit in hits])
    end = max(times[-1], until or 0.0)
    period, phase = _startup(times, weights, 60.0 / estimate_bpm(hits))
    first = phase + period * np.floor((times[0] + WINDOW * period - phase) / period)
    return _track(times, weights, period, first, end)


def octave_candidates(pulses: np.ndarray) -> list[np.ndarray]:
    """The tracked pulses, every other one (either parity) and twice as many."""
    candidates = [pulses, pulses[0::2], pulses[1::2]]
    doubled = np.empty(2 * len(pulses) - 1)
    doubled[0::2], doubled[1::2] = pulses, (pulses[:-1] + pulses[1:]) / 2
    candidates.append(doubled)
    return [c for c in candidates if len(c) >= 2 and CANDIDATE_BPM[0] <= 60.0 / float(np.median(np.diff(c))) <= CANDIDATE_BPM[1]]


def choose_octave(hits: list[Hit], pulses: np.ndarray) -> np.ndarray:
    """The candidate pulse that drummers would count as the beat, by the learned score."""
    candidates = octave_candidates(pulses)
    scores = [float(octave_features(hits, c) @ metrical_weights().octave) for c in candidates]
    return candidates[int(np.argmax(scores))]


def choose_downbeat(hits: list[Hit], pulses: np.ndarray, per_bar: int) -> int:
    """Which pulse (mod the bar) is beat one, by the learned score."""
    scores = [float(downbeat_features(hits, pulses, per_bar, d) @ metrical_weights().downbeat) for d in range(per_bar)]
    return int(np.argmax(scores))


def _startup(times: np.ndarray, weights: np.ndarray, period: float) -> tuple[float, float]:
    """Period and phase of the opening pulses.

    A comb search (periods within ±10 % of the global estimate, phases at the heavier
    hits) scores how many hits fall near the pulses; least squares on those hits refines it.
    The global estimate is an average, so a drifting recording needs the search.
    """
    t = times[times < times[0] + STARTUP_PULSES * period]
    w = weights[: len(t)]
    phases = t[w >= np.median(w)][:64]
    best = (-1.0, period, float(t[0]))
    for candidate in period * np.linspace(1 - MAX_DRIFT / 2, 1 + MAX_DRIFT / 2, 41):
        cycles = (t[None, :] - phases[:, None]) / candidate
        off = cycles - np.round(cycles)
        score = (w * np.exp(-0.5 * (off / COMB_WIDTH) ** 2)).sum(axis=1)
        i = int(np.argmax(score))
        if score[i] > best[0]:
            best = (float(score[i]), float(candidate), float(phases[i]))
    _, period, phase = best
    k = np.round((t - phase) / period)
    near = np.abs(t - phase - k * period) < WINDOW * period
    if near.sum() >= 4 and np.ptp(k[near]) >= 2:
        period, phase = (float(x) for x in np.polyfit(k[near], t[near], 1, w=np.sqrt(w[near])))
    return period, phase


def _track(times: np.ndarray, weights: np.ndarray, period: float, first: float, end: float) -> np.ndarray:
    """Pulse times from ``first`` past ``end``: each pulse is predicted, then nudged toward its hits."""
    pulses = [first]
    current = period
    slowest, fastest = period * (1 + MAX_DRIFT), period * (1 - MAX_DRIFT)
    while len(pulses) < 2 or pulses[-1] < end:
        predicted = pulses[-1] + current
        lo, hi = np.searchsorted(times, [predicted - WINDOW * current, predicted + WINDOW * current])
        if hi > lo:  # (np.average's arithmetic, without its checks: this runs once a pulse)
            near = weights[lo:hi]
            error = float(((times[lo:hi] - predicted) * near).sum() / near.sum())
            predicted += PHASE_GAIN * error
            current = min(max(current + TEMPO_GAIN * error, fastest), slowest)
        pulses.append(predicted)
    return np.array(pulses)


def _prepend(pulses: np.ndarray, count: int) -> np.ndarray:
    """Extend the pulses backwards by ``count`` periods (so the first one is a downbeat)."""
    period = pulses[1] - pulses[0]
    return np.concatenate([pulses[0] - period * np.arange(count, 0, -1), pulses])


def _features(hits: list[Hit], pulses: np.ndarray) -> np.ndarray:
    """Per pulse, velocity-weighted counts by family and position (twelfths of the pulse); hits
    before the first pulse or after the last are left out."""
    slot = np.round(positions(hits, pulses) * BINS).astype(int)
    features = np.zeros((len(pulses), len(FAMILIES), BINS))
    family_index = {family: i for i, family in enumerate(FAMILIES)}
    for hit, s in zip(hits, slot):
        pulse, where = divmod(int(s), BINS)
        if 0 <= pulse < len(pulses):  # (a negative index would count it at the last pulses)
            features[pulse, family_index[hit.family], where] += 0.5 + hit.velocity
    return features


def _similarity(features: np.ndarray, lag: int) -> float:
    """Mean cosine similarity of pulses ``lag`` apart, over pulse pairs that both sound."""
    flat = features.reshape(len(features), -1)
    norm = np.linalg.norm(flat, axis=1)
    a, b, na, nb = flat[:-lag], flat[lag:], norm[:-lag], norm[lag:]
    both = (na > 0) & (nb > 0)
    if both.sum() < MIN_PAIRS:
        return float("nan")
    return float(np.mean(np.sum(a[both] * b[both], axis=1) / (na[both] * nb[both])))


def _metre(features: np.ndarray) -> tuple[int, Fraction, int, int, int]:
    """(pulses per bar, pulse length in quarters, time signature, subdivision of the quarter).

    Triplets with the middle one played (not a shuffle's long-short) make the pulse a
    dotted quarter: 6/8, or 12/8 when the pattern only repeats every four pulses. Else a
    pattern repeating every three pulses is 3/4 (6/8 when its snare falls between the
    pulses), one repeating every six (eighth pulses) is 6/8 grouped 3+3 or 3/4 grouped
    2+2+2. Anything unclear stays 4/4.
    """
    off = features.sum(axis=(0, 1))
    triplets, sixteenths = off[4] + off[8], off[3] + off[6] + off[9]
    ternary = triplets > TRIPLET_DOMINANCE * sixteenths and triplets > 0
    full_triplets = ternary and off[4] >= MIDDLE_TRIPLET * off[8]
    s = {lag: _similarity(features, lag) for lag in (2, 3, 4, 6, 8)}
    if np.isnan(s[2]) or np.isnan(s[4]):  # (lag 3 has no pairs when every other pulse is silent)
        return 4, Fraction(1), 4, 4, 3 if ternary else 4

    def repeats_best(lag: int, *others: int) -> bool:
        return s[lag] > max(s[o] for o in others if not np.isnan(s[o])) + METRE_MARGIN

    if full_triplets:
        if s[4] > s[2] + METRE_MARGIN:
            return 4, Fraction(3, 2), 12, 8, 4
        return 2, Fraction(3, 2), 6, 8, 4
    subdivision = 3 if ternary else 4
    if repeats_best(3, 2, 4, 8):
        snare = features[:, FAMILIES.index("snare")].sum(axis=0)
        if snare[BINS // 2] > snare[0]:  # the backbeat on an "and": six eighths grouped 3 + 3
            return 3, Fraction(1), 6, 8, 4
        return 3, Fraction(1), 3, 4, subdivision
    if not np.isnan(s[6]) and repeats_best(6, 2, 3, 4, 8):
        if s[3] > s[2]:
            return 6, Fraction(1, 2), 6, 8, 4
        return 6, Fraction(1, 2), 3, 4, 4
    return 4, Fraction(1), 4, 4, subdivision
