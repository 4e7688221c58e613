"""Onset evaluation for drum transcription, as in the literature (and mir_eval).

Per drum family, predicted onsets are matched one-to-one to reference onsets within a tolerance
(±50 ms by default) by a maximum bipartite matching; precision, recall and F-measure follow from
the counts, per family and micro-averaged (counts summed over families, and over tracks).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

from models.vocab import FAMILIES

Onsets = dict[str, list[float]]

# Slack on the tolerance so that a distance of exactly 50 ms still matches despite float rounding.
_EPSILON = 1e-9

# MDB Drums labels, class files (KD SD HH TT CY OT) and subclass files alike; None: not scored.
# The class files label side stick (SST) OT, like tambourine (TMB): both are dropped, so that a
# subclass file gives the same reference as its class file.
MDB_FAMILY: dict[str, str | None] = {
    "KD": "kick",
    "SD": "snare", "SDB": "snare", "SDD": "snare", "SDF": "snare", "SDG": "snare", "SDNS": "snare",
    "HH": "hihat", "CHH": "hihat", "OHH": "hihat", "PHH": "hihat",
    "TT": "tom", "HIT": "tom", "MHT": "tom", "HFT": "tom", "LFT": "tom",
    "CY": "cymbal", "RDC": "cymbal", "RDB": "cymbal", "CRC": "cymbal", "CHC": "cymbal", "SPC": "cymbal",
    "OT": None, "SST": None, "TMB": None,
}
# Our instruments that the five-class measure leaves out, as MDB does: its class files label a
# side stick OT, so a hit we call a side stick (``snare_rim``) is not scored as a snare either.
UNSCORED_INSTRUMENTS = frozenset({"snare_rim"})


def scored_family(family: str, instrument: str | None) -> str | None:
    """The family a predicted hit counts for in the five-class measure; None: not scored."""
    return None if instrument in UNSCORED_INSTRUMENTS else family


def match_onsets(pred: Sequence[float] | np.ndarray, ref: Sequence[float] | np.ndarray, tolerance: float = 0.05) -> int:
    """Number of one-to-one (pred, ref) pairs within ±``tolerance`` seconds, as many as possible.

    A greedy nearest match can pair the wrong onsets and lose one (pred 0.00, 0.04 against ref
    0.03, 0.07); a maximum matching on the graph of pairs within the tolerance cannot.
    """
    pred = np.sort(np.asarray(pred, dtype=np.float64))
    ref = np.sort(np.asarray(ref, dtype=np.float64))
    if pred.size == 0 or ref.size == 0:
        return 0
    first = np.searchsorted(ref, pred - tolerance - _EPSILON, side="left")
    last = np.searchsorted(ref, pred + tolerance + _EPSILON, side="right")
    rows = np.repeat(np.arange(pred.size), last - first)
    cols = np.concatenate([np.arange(a, b) for a, b in zip(first, last)])
    graph = csr_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(pred.size, ref.size))
    return int((maximum_bipartite_matching(graph, perm_type="column") >= 0).sum())


def evaluate(pred: Onsets, ref: Onsets, families: Sequence[str] = FAMILIES, tolerance: float = 0.05) -> dict:
    """Per-family and "micro" {tp, fp, fn, precision, recall, f} of ``pred`` against ``ref``."""
    return _scores(_counts(pred, ref, families, tolerance))


def evaluate_many(pairs: Iterable[tuple[Onsets, Onsets]], families: Sequence[str] = FAMILIES,
                  tolerance: float = 0.05) -> dict:
    """Like ``evaluate``, with the counts summed over tracks given as (pred, ref) pairs."""
    totals = {family: np.zeros(3, dtype=np.int64) for family in families}
    for pred, ref in pairs:
        for family, counts in _counts(pred, ref, families, tolerance).items():
            totals[family] += counts
    return _scores(totals)


def load_onsets(path: str | Path) -> Onsets:
    """Onset times by family from a result JSON ({"hits": [{"t", "family", "instrument", ...}]}) or an
    MDB Drums ``<T>_class.txt`` / ``<T>_subclass.txt`` annotation (``time<TAB>label`` lines)."""
    path = Path(path)
    text = path.read_text()
    onsets: Onsets = {family: [] for family in FAMILIES}
    if text.lstrip().startswith("{"):
        for hit in json.loads(text)["hits"]:
            family = scored_family(hit["family"], hit.get("instrument"))
            if family is not None:
                onsets.setdefault(family, []).append(float(hit["t"]))
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[1] not in MDB_FAMILY:
                raise ValueError(f"{path.name}:{number}: expected 'time label' with an MDB Drums label, got {line!r}")
            family = MDB_FAMILY[fields[1]]
            if family is not None:
                onsets[family].append(float(fields[0]))
    return {family: sorted(times) for family, times in onsets.items()}


def format_table(result: dict) -> str:
    """The result of ``evaluate`` as a plain-text table, one row per family and a micro row."""
    lines = [f"{'family':<8} {'P':>6} {'R':>6} {'F':>6} {'tp':>6} {'fp':>6} {'fn':>6}"]
    for name, row in result.items():
        lines.append(f"{name:<8} {row['precision']:6.3f} {row['recall']:6.3f} {row['f']:6.3f} "
                     f"{row['tp']:6d} {row['fp']:6d} {row['fn']:6d}")
    return "\n".join(lines)


def _counts(pred: Onsets, ref: Onsets, families: Sequence[str], tolerance: float) -> dict[str, np.ndarray]:
    """[tp, fp, fn] per family; a family absent from a dict has no onsets."""
    counts = {}
    for family in families:
        p, r = pred.get(family, []), ref.get(family, [])
        tp = match_onsets(p, r, tolerance)
        counts[family] = np.array([tp, len(p) - tp, len(r) - tp], dtype=np.int64)
    return counts


def _scores(counts: dict[str, np.ndarray]) -> dict:
    rows = {family: _row(*c) for family, c in counts.items()}
    rows["micro"] = _row(*sum(counts.values(), np.zeros(3, dtype=np.int64)))
    return rows


def _row(tp: int, fp: int, fn: int) -> dict:
    """Scores of one row; with nothing predicted (or nothing to find) and no miss, a perfect 1.0."""
    tp, fp, fn = int(tp), int(fp), int(fn)
    precision = tp / (tp + fp) if tp + fp else float(fn == 0)
    recall = tp / (tp + fn) if tp + fn else float(fp == 0)
    f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f": f}
