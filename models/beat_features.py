"""What drummers play, measured against a candidate pulse: the features the metrical choices learn from.

Two choices decide whether a score reads right, and both are ambiguous from timing alone:
which octave of the pulse is the beat (55 or 110 bpm?) and which beat is one. Drummers
resolve them the same way listeners do: the backbeat snare falls on 2 and 4, the hi-hat
or ride keeps eighths or sixteenths of the beat, kicks land on one, crashes mark one,
fills end a bar. Each candidate gets a feature vector; a linear score learned from the
Groove MIDI Dataset (``models.train.beats``) picks the candidate (``models.beats``).
"""
from __future__ import annotations

import numpy as np

from models.peaks import Hit

BINS = 12  # positions per pulse: sixteenths (3, 6, 9) and eighth triplets (4, 8) fall on them
GROUPS = {  # family groups whose placement says most about the beat
    "kick": ("kick",),
    "snare": ("snare",),
    "time": ("hihat_closed", "hihat_open", "hihat_pedal", "ride", "ride_bell"),
    "accent": ("crash", "china", "splash", "tom_high", "tom_mid", "tom_low"),
}
PLACES = {"on": (0,), "half": (6,), "quarter": (3, 9), "triplet": (4, 8)}
REFERENCE_BPM = 100.0
OCTAVE_FEATURES = 2 + len(GROUPS) * len(PLACES) + 7
SNARE_GAPS = (1, 2, 4)  # pulses between struck snares: a backbeat is 2 at the right octave
DOWNBEAT_FEATURES = 19
SHARE_PRIOR = 2.0  # weight added to each cue's total: one stray crash is weak evidence, twenty are strong


def pulse_index(times: np.ndarray, pulses: np.ndarray) -> np.ndarray:
    """Pulse coordinates of ``times``: 2.5 is halfway between the third and fourth pulse; before
    the first pulse and after the last, the end periods go on."""
    index = np.interp(times, pulses, np.arange(len(pulses), dtype=float))
    first, last = pulses[1] - pulses[0], pulses[-1] - pulses[-2]
    index = np.where(times < pulses[0], (times - pulses[0]) / first, index)
    return np.where(times > pulses[-1], len(pulses) - 1 + (times - pulses[-1]) / last, index)


def positions(hits: list[Hit], pulses: np.ndarray) -> np.ndarray:
    """Pulse coordinates of the hits."""
    return pulse_index(np.array([hit.t for hit in hits]), pulses)


def _weights(hits: list[Hit]) -> np.ndarray:
    return np.array([0.5 + hit.velocity for hit in hits])


def _labels(hits: list[Hit]) -> tuple[np.ndarray, np.ndarray]:
    """Each hit's instrument and family, read once per feature vector (not once per group)."""
    return np.array([hit.instrument for hit in hits], dtype=object), np.array([hit.family for hit in hits], dtype=object)


def _in_group(labels: tuple[np.ndarray, np.ndarray], group: str) -> np.ndarray:
    instruments, families = labels
    return np.isin(instruments, GROUPS[group]) | np.isin(families, GROUPS[group])


def _alternation(pulse: np.ndarray, weight: np.ndarray) -> float:
    """How strictly weight on the pulses keeps to every other pulse: 0 even, 1 one parity only."""
    by_parity = np.bincount(pulse % 2, weights=weight, minlength=2)
    total = by_parity.sum()
    return float(abs(by_parity[0] - by_parity[1]) / total) if total > 0 else 0.0


def _gaps(pulse: np.ndarray) -> list[float]:
    """Share of the gaps between successive struck pulses that are 1, 2 and 4 pulses long."""
    gaps = np.diff(np.unique(pulse))
    return [float(np.mean(gaps == gap)) if len(gaps) else 0.0 for gap in SNARE_GAPS]


def octave_features(hits: list[Hit], pulses: np.ndarray) -> np.ndarray:
    """Tempo prior terms, where each group falls within the pulse, backbeat alternation and
    spacing, density, and how many pulses are struck at all (few, at twice the tempo)."""
    bpm = 60.0 / float(np.median(np.diff(pulses)))
    octave = np.log2(bpm / REFERENCE_BPM)
    slot = np.round(positions(hits, pulses) * BINS).astype(int)
    place = slot % BINS
    pulse = slot // BINS
    weight = _weights(hits)
    labels = _labels(hits)
    shares = []
    for group in GROUPS:
        member = _in_group(labels, group)
        total = weight[member].sum()
        for offsets in PLACES.values():
            at = member & np.isin(place, offsets)
            shares.append(weight[at].sum() / total if total > 0 else 0.0)
    on = place == 0
    snare, kick = _in_group(labels, "snare") & on, _in_group(labels, "kick") & on
    spanned = max(1, int(pulse.max() - pulse.min()) + 1)
    return np.array([octave, octave * octave, *shares,
                     _alternation(pulse[snare], weight[snare]), _alternation(pulse[kick], weight[kick]),
                     *_gaps(pulse[snare]),
                     np.log2(len(hits) / spanned), len(np.unique(pulse[on])) / spanned])


def downbeat_features(hits: list[Hit], pulses: np.ndarray, per_bar: int, downbeat: int) -> np.ndarray:
    """With pulse ``downbeat`` (mod ``per_bar``) as beat one: each cue's share of its kind.

    Kicks and crashes on one, kicks halfway through the bar, snares on one (against) and on
    the other beats of a backbeat, all hits on one, and whether the first hit is on one
    (recordings mostly start on a downbeat); kicks anywhere in the first and last beat;
    the fill before one: toms, snares, open hi-hats and all hits in the last beat; kicks on
    the "and" of each beat (rock's "one, three, three-and"); whether the first hi-hat or ride
    and the first kick on a beat fall in beat one (a recording that opens with a fill enters
    the groove on one; a kick inside the fill is seldom on a beat). Shares are shrunk by
    ``SHARE_PRIOR``, so a cue heard once or twice counts little.
    """
    slot = np.round(positions(hits, pulses) * BINS).astype(int)
    beat = np.mod(slot // BINS - downbeat, per_bar)
    on = slot % BINS == 0
    weight = _weights(hits)

    def share(member: np.ndarray, where: np.ndarray) -> float:
        total = weight[member].sum()
        return float(weight[member & where].sum() / (total + SHARE_PRIOR)) if total > 0 else 0.0

    labels = _labels(hits)
    instruments, families = labels
    kick, snare = _in_group(labels, "kick") & on, _in_group(labels, "snare") & on
    crash = np.isin(instruments, ("crash", "china", "splash")) & on
    tom = families == "tom"
    anywhere = np.ones(len(hits), dtype=bool)
    last = beat == per_bar - 1
    middle = beat == per_bar // 2 if per_bar % 2 == 0 else np.zeros(len(hits), dtype=bool)
    backbeat = (beat % 2 == 1) if per_bar % 2 == 0 else (beat != 0)
    times = np.array([hit.t for hit in hits])
    first = int(np.argmin(times))
    every_kick, every_snare = _in_group(labels, "kick"), _in_group(labels, "snare")
    open_hat = instruments == "hihat_open"
    kick_and = every_kick & (slot % BINS == BINS // 2)

    def first_in_beat_one(member: np.ndarray) -> float:
        return float(beat[np.flatnonzero(member)[np.argmin(times[member])]] == 0) if member.any() else 0.0

    return np.array([share(kick, beat == 0), share(crash, beat == 0), share(kick, middle), share(snare, beat == 0),
                     share(snare, backbeat), share(on, beat == 0), float(beat[first] == 0 and on[first]),
                     share(every_kick, beat == 0), share(every_kick, last), share(tom, last), share(every_snare, last),
                     share(open_hat, last), share(anywhere, last),
                     *(share(kick_and, beat == b) if b < per_bar else 0.0 for b in range(4)),
                     first_in_beat_one(_in_group(labels, "time")), first_in_beat_one(kick)])
