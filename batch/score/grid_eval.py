"""How well the score's tempo, beats, downbeats and notes match annotated recordings.

``python -m batch.score.grid_eval mdb ../shared/data/mdb-dev [--hits detected|annotated]``
scores each drum stem and mix of MDB Drums against its ``_beats.txt``: tempo within 4 % of
the annotated median (or which octave error it is), beat and downbeat F-measure (±70 ms,
one-to-one, no trimming), and the notation measure: the score's notes against the annotated
hits placed on the annotated beat grid, counted right when bar, grid slot and drum family
all match. ``--hits annotated`` feeds the annotated onsets instead of the detector's, to
measure the beat tracker alone.

``python -m batch.score.grid_eval groove ../shared/data/groove-midi [--split test]`` feeds
each Groove MIDI performance's own notes to the tracker and counts tempos within 4 % and
time signatures that match the annotation, and scores beats and downbeats against the click.
"""
from __future__ import annotations

import argparse
import collections
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from batch.score.quantize import quantize
from batch.score.timeline import seconds_at
from models.beats import Grid, estimate_grid
from models.evaluate import MDB_FAMILY
from models.peaks import Hit
from models.vocab import FAMILY_OF

MIN_SECONDS = 15.0  # shorter Groove MIDI fills and count-ins say little about a tempo
BEAT_TOLERANCE = 0.07  # seconds, the usual beat-tracking window
TEMPO_TOLERANCE = 0.04
DOWNBEAT_RIGHT = 0.75  # downbeat F-measure from which a track's bar lines count as right
TRACKS = ("Beatles", "Britpop", "Country1", "Punk", "Reggae", "Rockabilly", "Shadows")
# MDB subclass labels as our instruments, for feeding annotated hits to the tracker.
SUBCLASS_INSTRUMENT = {
    "KD": "kick", "SD": "snare", "SDB": "snare", "SDD": "snare", "SDF": "snare", "SDNS": "snare",
    "SDG": "snare_ghost", "SST": "snare_rim",
    "CHH": "hihat_closed", "OHH": "hihat_open", "PHH": "hihat_pedal",
    "HIT": "tom_high", "MHT": "tom_mid", "HFT": "tom_low", "LFT": "tom_low",
    "RDC": "ride", "RDB": "ride_bell", "CRC": "crash", "CHC": "china", "SPC": "splash",
}


def tempo_outcome(found: float, truth: float) -> str:
    """"right" within 4 %, else the octave or metrical error it is, else "other"."""
    ratio = found / truth
    for name, target in (("right", 1.0), ("double", 2.0), ("half", 0.5), ("x1.5", 1.5), ("x2/3", 2 / 3)):
        if abs(ratio / target - 1) < TEMPO_TOLERANCE:
            return name
    return "other"


def f_measure(found: np.ndarray, truth: np.ndarray, tolerance: float = BEAT_TOLERANCE) -> float:
    """One-to-one matches within ``tolerance`` (greedy in time order; beats are far apart)."""
    if len(found) == 0 or len(truth) == 0:
        return 0.0
    used = np.zeros(len(truth), dtype=bool)
    matched = 0
    for t in found:
        distance = np.where(used, np.inf, np.abs(truth - t))
        i = int(np.argmin(distance))
        if distance[i] <= tolerance:
            used[i] = True
            matched += 1
    return 2 * matched / (len(found) + len(truth))


def grid_beats(grid: Grid, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """The grid's counted beats and downbeats within [0, duration] seconds."""
    last = float(grid.quarters(duration))
    beat_ql = float(grid.beat_ql)
    positions = np.arange(np.floor(float(grid.quarters(0.0)) / beat_ql), np.ceil(last / beat_ql) + 1) * beat_ql
    times = seconds_at(grid, positions)
    inside = (times >= -BEAT_TOLERANCE) & (times <= duration + BEAT_TOLERANCE)
    downbeat = np.isclose(np.mod(positions, float(grid.bar_ql)), 0.0)
    return times[inside], times[inside & downbeat]


@dataclass(frozen=True)
class Annotation:
    beats: np.ndarray  # seconds
    positions: np.ndarray  # the beat's count in its bar, from 1
    hits: list[tuple[float, str]]  # (seconds, family), the five scored families

    @property
    def downbeats(self) -> np.ndarray:
        return self.beats[self.positions == 1]

    @property
    def bpm(self) -> float:
        return float(60.0 / np.median(np.diff(self.beats)))

    @property
    def beats_per_bar(self) -> int:
        return int(self.positions.max())


def read_annotation(folder: Path, track: str) -> Annotation:
    beats = np.loadtxt(folder / f"{track}_beats.txt", ndmin=2)
    hits = []
    for line in (folder / f"{track}_class.txt").read_text().splitlines():
        fields = line.split()
        if fields and MDB_FAMILY.get(fields[1]):
            hits.append((float(fields[0]), MDB_FAMILY[fields[1]]))
    return Annotation(beats[:, 0], beats[:, 1].astype(int), sorted(hits))


def annotated_hits(folder: Path, track: str) -> list[Hit]:
    """The annotated onsets as perfect hits (velocity 0.7: the annotations carry none)."""
    hits = []
    for line in (folder / f"{track}_subclass.txt").read_text().splitlines():
        fields = line.split()
        if fields and fields[1] in SUBCLASS_INSTRUMENT:
            instrument = SUBCLASS_INSTRUMENT[fields[1]]
            hits.append(Hit(float(fields[0]), instrument, FAMILY_OF[instrument], 0.7, 1.0))
    return sorted(hits, key=lambda hit: hit.t)


def written_slot(position: float) -> Fraction:
    """The nearest sixteenth or eighth-triplet position of a beat count."""
    sixteenth, triplet = Fraction(round(position * 4), 4), Fraction(round(position * 3), 3)
    return sixteenth if abs(float(sixteenth) - position) <= abs(float(triplet) - position) else triplet


def annotated_notes(annotation: Annotation) -> collections.Counter:
    """(bar, position in quarters, family) of each annotated hit on the annotated beat grid.

    Bar 0 is the bar of the first hit: a pickup counts back from the first downbeat, as the
    score writes it at the end of an otherwise empty first bar.
    """
    beats, per_bar = annotation.beats, annotation.beats_per_bar
    # beat index of each annotated beat, counted so that the first downbeat is a multiple of per_bar
    first_downbeat = int(np.flatnonzero(annotation.positions == 1)[0])
    counts = np.arange(len(beats)) - first_downbeat + per_bar * 1000
    times = np.array([t for t, _ in annotation.hits])
    index = np.interp(times, beats, counts.astype(float))
    index = np.where(times < beats[0], counts[0] + (times - beats[0]) / (beats[1] - beats[0]), index)
    last_period = beats[-1] - beats[-2]
    index = np.where(times > beats[-1], counts[-1] + (times - beats[-1]) / last_period, index)
    notes = collections.Counter()
    first_bar = None
    for (t, family), beat in zip(annotation.hits, index):
        bar, within = divmod(written_slot(float(beat)), per_bar)
        if first_bar is None:
            first_bar = int(bar)
        notes[(int(bar) - first_bar, within, family)] += 1
    return notes


def score_notes(hits: list[Hit], grid: Grid, duration: float) -> collections.Counter:
    """(bar, position, family) of each note the score writes, bars counted from its first."""
    notes = collections.Counter()
    bars = quantize(hits, grid, duration)
    first = next((bar.index for bar in bars if bar.notes), 0)
    for bar in bars:
        for note in bar.notes:
            notes[(bar.index - first, note.position, FAMILY_OF[note.instrument])] += 1
    return notes


def notation_counts(score: collections.Counter, truth: collections.Counter) -> tuple[int, int, int]:
    """(right, written, annotated): a written note is right where the annotation has that
    bar, slot and family (two hits on one slot count once on both sides)."""
    score_set, truth_set = set(score), set(truth)
    return len(score_set & truth_set), len(score_set), len(truth_set)


def evaluate_mdb(folder: Path, source: str, detector=None) -> None:
    from models.audio import read_audio, resample

    rows, totals = [], np.zeros(3, dtype=int)
    for kind in ("drums", "mix"):
        for track in TRACKS:
            path = folder / f"{track}_{kind}.wav"
            annotation = read_annotation(folder, track)
            audio, rate = read_audio(path)
            duration = len(audio) / rate
            if source == "annotated":
                if kind == "mix":
                    continue
                hits = annotated_hits(folder, track)
            else:
                hits = detector.transcribe(resample(audio, rate, detector.card.sample_rate))
            grid = estimate_grid(hits, duration)
            beats, downbeats = grid_beats(grid, duration)
            counts = notation_counts(score_notes(hits, grid, duration), annotated_notes(annotation))
            totals += counts
            rows.append((f"{track}_{kind}", grid.bpm, annotation.bpm, tempo_outcome(grid.bpm, annotation.bpm),
                         grid.time_signature, f_measure(beats, annotation.beats),
                         f_measure(downbeats, annotation.downbeats), counts))
    print(f"{'file':18} {'bpm':>6} {'truth':>6} {'tempo':>6} {'metre':>5} {'beatF':>6} {'downF':>6} {'notesF':>6}")
    for name, bpm, truth, outcome, metre, beat_f, down_f, (right, written, annotated) in rows:
        notes_f = 2 * right / max(1, written + annotated)
        print(f"{name:18} {bpm:6.1f} {truth:6.1f} {outcome:>6} {metre:>5} {beat_f:6.3f} {down_f:6.3f} {notes_f:6.3f}")
    for kind in ("drums", "mix"):
        chosen = [row for row in rows if row[0].endswith(kind)]
        if not chosen:
            continue
        right, written, annotated = np.sum([row[7] for row in chosen], axis=0)
        print(f"{kind}: tempo right {sum(row[3] == 'right' for row in chosen)}/{len(chosen)}, "
              f"downbeat right (F >= {DOWNBEAT_RIGHT}) {sum(row[6] >= DOWNBEAT_RIGHT for row in chosen)}/{len(chosen)}, "
              f"mean beat F {np.mean([row[5] for row in chosen]):.3f}, "
              f"mean downbeat F {np.mean([row[6] for row in chosen]):.3f}, "
              f"notation P {right / max(1, written):.3f} R {right / max(1, annotated):.3f} "
              f"F {2 * right / max(1, written + annotated):.3f}")


def evaluate_groove(folder: Path, split: str) -> None:
    """Tempo, metre, and beat and downbeat F-measure against the click each performance was
    played to (bar one at time zero, as the dataset was recorded)."""
    from models.train.grooves import list_performances, performed_hits, read_events

    splits = set(split.split(","))
    tempo, metre, both, total = collections.Counter(), 0, 0, 0
    beat_f, downbeat_f = [], []
    for performance in list_performances(folder):
        if performance.split not in splits or "_beat_" not in performance.midi_path.name:
            continue
        events = read_events(performance.midi_path)
        if not events or events[-1].time < MIN_SECONDS:
            continue
        hits = performed_hits(events)
        duration = events[-1].time
        grid = estimate_grid(hits, duration)
        outcome = tempo_outcome(grid.bpm, performance.bpm)
        signature = performance.midi_path.stem.rsplit("_", 1)[-1].replace("-", "/")  # "..._beat_4-4"
        metre_right = grid.time_signature == signature
        tempo[outcome] += 1
        metre += metre_right
        both += outcome == "right" and metre_right
        total += 1
        if signature.endswith("/4"):
            clicks = np.arange(0.0, duration + 1e-9, 60.0 / performance.bpm)
            beats, downbeats = grid_beats(grid, duration)
            beat_f.append(f_measure(beats, clicks))
            downbeat_f.append(f_measure(downbeats, clicks[:: performance.beats_per_bar]))
    print(f"{total} performances ({split}); tempo: " + ", ".join(f"{k} {v}" for k, v in tempo.most_common()))
    print(f"tempo right {tempo['right'] / total:.1%}, metre right {metre / total:.1%}, both {both / total:.1%}; "
          f"x/4 performances: mean beat F {np.mean(beat_f):.3f}, mean downbeat F {np.mean(downbeat_f):.3f}, "
          f"downbeat right (F >= {DOWNBEAT_RIGHT}) {np.mean(np.array(downbeat_f) >= DOWNBEAT_RIGHT):.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="corpus", required=True)
    mdb = commands.add_parser("mdb", help="MDB Drums stems and mixes with beat annotations")
    mdb.add_argument("folder", type=Path)
    mdb.add_argument("--hits", choices=("detected", "annotated"), default="detected")
    groove = commands.add_parser("groove", help="Groove MIDI performances (their own notes)")
    groove.add_argument("folder", type=Path)
    groove.add_argument("--split", default="test", help="comma-separated: train, validation, test")
    args = parser.parse_args()
    if args.corpus == "mdb":
        from models.detector import Detector

        evaluate_mdb(args.folder, args.hits, Detector() if args.hits == "detected" else None)
    else:
        evaluate_groove(args.folder, args.split)


if __name__ == "__main__":
    main()
