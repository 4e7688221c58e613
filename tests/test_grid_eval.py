"""The score measure (``batch.score.grid_eval``) on a small annotated recording it can check exactly."""
import numpy as np
import pytest

from batch.score.grid_eval import (annotated_hits, annotated_notes, f_measure, grid_beats, notation_counts,
                                   read_annotation, score_notes, tempo_outcome)
from models.beats import estimate_grid

BEAT = 0.5  # 120 bpm
LABELS = {"kick": ("KD", "KD"), "snare": ("SD", "SD"), "hihat": ("HH", "CHH"), "cymbal": ("CY", "CRC")}


def write_track(folder, pickup_beats: int = 0, bars: int = 8) -> None:
    """A rock beat in MDB's format, a crash every fourth bar; ``pickup_beats`` beats of hi-hats
    before bar one."""
    beats, onsets = [], []
    for i in range(-pickup_beats, 4 * bars):
        t = 0.2 + (i + pickup_beats) * BEAT
        beats.append((t, i % 4 + 1))
        for half in (0, 1):
            onsets.append((t + half * BEAT / 2, "hihat"))
        if i >= 0 and i % 2 == 0:
            onsets.append((t, "kick"))
        if i >= 0 and i % 16 == 0:
            onsets.append((t, "cymbal"))
        if i >= 0 and i % 2 == 1:
            onsets.append((t, "snare"))
    (folder / "T_beats.txt").write_text("".join(f"{t:.3f}\t{p}\n" for t, p in beats))
    onsets.sort()
    (folder / "T_class.txt").write_text("".join(f"{t:.6f}\t{LABELS[f][0]}\n" for t, f in onsets))
    (folder / "T_subclass.txt").write_text("".join(f"{t:.6f}\t{LABELS[f][1]}\n" for t, f in onsets))


@pytest.mark.parametrize("pickup", [0, 2])
def test_the_annotated_hits_score_their_own_beats_perfectly(tmp_path, pickup):
    write_track(tmp_path, pickup)
    annotation = read_annotation(tmp_path, "T")
    hits = annotated_hits(tmp_path, "T")
    duration = hits[-1].t + 0.3
    grid = estimate_grid(hits, duration)
    assert tempo_outcome(grid.bpm, annotation.bpm) == "right"
    beats, downbeats = grid_beats(grid, duration)
    assert f_measure(beats, annotation.beats) == pytest.approx(1.0, abs=0.02)  # a beat more at the very end
    assert f_measure(downbeats, annotation.downbeats) == pytest.approx(1.0, abs=0.07)
    right, written, annotated = notation_counts(score_notes(hits, grid, duration), annotated_notes(annotation))
    assert right == written == annotated > 0


def test_a_bar_line_in_the_wrong_place_is_counted_wrong(tmp_path):
    write_track(tmp_path)
    annotation = read_annotation(tmp_path, "T")
    shifted = annotation.__class__(annotation.beats, np.roll(annotation.positions, 1), annotation.hits)
    hits = annotated_hits(tmp_path, "T")
    grid = estimate_grid(hits)
    _, downbeats = grid_beats(grid, hits[-1].t)
    assert f_measure(downbeats, shifted.downbeats) == 0.0
    written, truth = score_notes(hits, grid, hits[-1].t), annotated_notes(shifted)
    feet_and_snare = {note for note in written if note[2] != "hihat"}
    assert feet_and_snare and not feet_and_snare & set(truth)  # every kick and snare a beat off
    assert notation_counts(written, truth)[0] < len(written)


def test_tempo_outcomes_name_the_octave_errors():
    assert [tempo_outcome(f, 100) for f in (103, 200, 50, 150, 67, 120)] == [
        "right", "double", "half", "x1.5", "x2/3", "other"]
