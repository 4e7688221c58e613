"""Onset matching and scores against hand-counted answers; MDB Drums and result JSON loading."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.evaluate import FAMILIES, evaluate, evaluate_many, format_table, load_onsets, match_onsets


def test_matching_is_optimal_not_greedy():
    # Greedy nearest-first pairs 0.04 with 0.03 and leaves 0.00 and 0.07 unmatched.
    assert match_onsets([0.0, 0.04], [0.03, 0.07]) == 2
    assert match_onsets([0.04, 0.0], [0.07, 0.03]) == 2  # order does not matter


def test_matching_is_one_to_one():
    assert match_onsets([1.0, 1.01], [1.005]) == 1
    assert match_onsets([1.005], [1.0, 1.01]) == 1
    assert match_onsets([], [1.0]) == 0 and match_onsets([1.0], []) == 0


def test_tolerance_boundary_is_inclusive():
    assert match_onsets([1.05], [1.0]) == 1
    assert match_onsets([0.95], [1.0]) == 1
    assert match_onsets([1.0501], [1.0]) == 0
    assert match_onsets([1.02], [1.0], tolerance=0.01) == 0


def test_counts_and_scores():
    ref = {"kick": [0.0, 1.0, 2.0, 3.0], "snare": [0.5, 1.5]}
    pred = {"kick": [0.01, 1.03, 2.2], "snare": [0.5, 1.5, 2.5, 3.5]}
    result = evaluate(pred, ref)
    assert result["kick"] == {"tp": 2, "fp": 1, "fn": 2, "precision": pytest.approx(2 / 3),
                                   "recall": 0.5, "f": pytest.approx(4 / 7)}
    assert (result["snare"]["tp"], result["snare"]["fp"], result["snare"]["fn"]) == (2, 2, 0)
    assert result["snare"]["precision"] == 0.5 and result["snare"]["recall"] == 1.0
    # Families with nothing either side score a perfect 1.0 and add nothing to micro.
    assert result["tom"] == {"tp": 0, "fp": 0, "fn": 0, "precision": 1.0, "recall": 1.0, "f": 1.0}
    micro = result["micro"]
    assert (micro["tp"], micro["fp"], micro["fn"]) == (4, 3, 2)
    assert micro["precision"] == pytest.approx(4 / 7) and micro["recall"] == pytest.approx(4 / 6)
    assert micro["f"] == pytest.approx(2 * 4 / (2 * 4 + 3 + 2))
    assert set(result) == {*FAMILIES, "micro"}


def test_only_misses_or_only_false_alarms_score_zero():
    result = evaluate({"kick": [1.0]}, {"snare": [1.0]})
    assert result["kick"] == {"tp": 0, "fp": 1, "fn": 0, "precision": 0.0, "recall": 0.0, "f": 0.0}
    assert result["snare"] == {"tp": 0, "fp": 0, "fn": 1, "precision": 0.0, "recall": 0.0, "f": 0.0}


def test_families_are_kept_apart_and_selectable():
    ref = {"kick": [1.0], "snare": [2.0]}
    swapped = evaluate({"kick": [2.0], "snare": [1.0]}, ref)
    assert swapped["micro"]["tp"] == 0 and swapped["micro"]["fp"] == 2 and swapped["micro"]["fn"] == 2
    only_kick = evaluate({"kick": [1.0], "snare": [5.0]}, ref, families=("kick",))
    assert set(only_kick) == {"kick", "micro"} and only_kick["micro"]["f"] == 1.0


def test_evaluate_many_sums_counts_over_tracks():
    tracks = [({"kick": [1.0]}, {"kick": [1.0, 2.0]}), ({"kick": [1.0, 5.0], "hihat": [0.2]}, {"kick": [1.02]})]
    result = evaluate_many(tracks)
    assert (result["kick"]["tp"], result["kick"]["fp"], result["kick"]["fn"]) == (2, 1, 1)
    assert (result["micro"]["tp"], result["micro"]["fp"], result["micro"]["fn"]) == (2, 2, 1)
    assert result["micro"]["precision"] == 0.5
    assert evaluate_many(tracks[:1]) == evaluate(*tracks[0])


def test_load_mdb_class_file(tmp_path):
    path = tmp_path / "Song_class.txt"
    path.write_text("0.011610 \t TT \n0.508163 \t OT \n0.520000 \t SD \n\n0.800000 \t KD \n"
                    "1.070000\tKD\n1.1 HH\n1.2  CY\n")
    onsets = load_onsets(path)
    assert onsets == {"kick": [0.8, 1.07], "snare": [0.52], "hihat": [1.1], "tom": [0.01161], "cymbal": [1.2]}


def test_load_mdb_subclass_file(tmp_path):
    path = tmp_path / "Song_subclass.txt"
    labels = ["KD", "SD", "SDB", "SDD", "SDF", "SDG", "SDNS", "SST", "CHH", "OHH", "PHH",
              "HIT", "MHT", "HFT", "LFT", "RDC", "RDB", "CRC", "CHC", "SPC", "TMB"]
    path.write_text("".join(f"{i / 10:.6f} \t {label} \n" for i, label in enumerate(labels)))
    counts = {family: len(times) for family, times in load_onsets(path).items()}
    assert counts == {"kick": 1, "snare": 6, "hihat": 3, "tom": 4, "cymbal": 5}  # side stick, as in class files: OT


def test_mdb_subclass_files_give_the_class_files_reference():
    folder = Path("/work/shared/data/mdb-dev")
    classes = sorted(folder.glob("*_class.txt"))
    if not classes:
        pytest.skip("MDB Drums development split not present")
    for path in classes:
        fine = load_onsets(path.with_name(path.name.replace("_class", "_subclass")))
        for family, times in load_onsets(path).items():  # the class files round to microseconds
            assert fine[family] == pytest.approx(times, abs=1e-5), (path.name, family)


def test_unknown_mdb_label_is_an_error(tmp_path):
    path = tmp_path / "bad_class.txt"
    path.write_text("0.5\tXX\n")
    with pytest.raises(ValueError, match="bad_class.txt:1"):
        load_onsets(path)


def test_load_result_json(tmp_path):
    path = tmp_path / "result.json"
    hits = [{"t": 1.5, "family": "snare", "instrument": "snare_ghost", "velocity": 0.2, "confidence": 0.9},
            {"t": 0.5, "family": "kick", "instrument": "kick", "velocity": 0.9, "confidence": 0.8},
            {"t": 1.0, "family": "snare", "instrument": "snare", "velocity": 0.7, "confidence": 0.9}]
    path.write_text(json.dumps({"duration": 2.0, "hits": hits, "summary": {}}))
    assert load_onsets(path) == {"kick": [0.5], "snare": [1.0, 1.5], "hihat": [], "tom": [], "cymbal": []}


def test_side_stick_is_left_out_as_mdb_leaves_it_out(tmp_path):
    """MDB labels a side stick OT; our side-stick hits (``snare_rim``) are not scored either."""
    (tmp_path / "ref_subclass.txt").write_text("1.0\tSST\n2.0\tSD\n")
    hits = [{"t": 1.0, "family": "snare", "instrument": "snare_rim"},
            {"t": 2.0, "family": "snare", "instrument": "snare_rim"}]
    (tmp_path / "pred.json").write_text(json.dumps({"hits": hits}))
    result = evaluate(load_onsets(tmp_path / "pred.json"), load_onsets(tmp_path / "ref_subclass.txt"))
    # the side stick at 1.0 is neither a hit nor a false alarm; calling the snare at 2.0 a side stick misses it
    assert (result["snare"]["tp"], result["snare"]["fp"], result["snare"]["fn"]) == (0, 0, 1)


def test_json_against_mdb_end_to_end(tmp_path):
    (tmp_path / "ref_class.txt").write_text("0.5\tKD\n1.0\tSD\n1.5\tOT\n")
    (tmp_path / "pred.json").write_text(json.dumps({"hits": [{"t": 0.52, "family": "kick"},
                                                             {"t": 1.0, "family": "hihat"}]}))
    result = evaluate(load_onsets(tmp_path / "pred.json"), load_onsets(tmp_path / "ref_class.txt"))
    assert (result["micro"]["tp"], result["micro"]["fp"], result["micro"]["fn"]) == (1, 1, 1)


def test_format_table_lists_every_row():
    table = format_table(evaluate({"kick": [1.0]}, {"kick": [1.0, 2.0]}))
    lines = table.splitlines()
    assert lines[0].split() == ["family", "P", "R", "F", "tp", "fp", "fn"]
    assert [line.split()[0] for line in lines[1:]] == [*FAMILIES, "micro"]
    assert lines[1].split() == ["kick", "1.000", "0.500", "0.667", "1", "0", "1"]
