"""``drumscribe`` end to end, as a user runs it: a subprocess on real files."""
import json
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf

from models.audio import resample
from models.features import SAMPLE_RATE
from models.synthetic import rock_beat

DRUMSCRIBE = [sys.executable, "-m", "web.cli"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*DRUMSCRIBE, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def beat_file(tmp_path_factory) -> tuple[Path, dict]:
    audio, hits = rock_beat(bars=4, bpm=100)
    path = tmp_path_factory.mktemp("cli") / "beat.flac"
    sf.write(path, resample(audio, SAMPLE_RATE, 44100), 44100)
    return path, hits


def test_transcribe_writes_json_and_midi(beat_file, tmp_path):
    path, reference = beat_file
    out_json, out_mid = tmp_path / "beat.json", tmp_path / "beat.mid"
    done = run("transcribe", str(path), "-o", str(out_json), "-o", str(out_mid))
    assert done.returncode == 0, done.stderr
    result = json.loads(out_json.read_text())
    assert result["sample_rate"] == 44100
    assert result["duration"] == pytest.approx(len(rock_beat(bars=4)[0]) / SAMPLE_RATE, abs=0.01)
    assert result["bpm"] == pytest.approx(100, rel=0.03)
    assert result["model"]["lookahead_ms"] <= 50
    assert sum(result["summary"].values()) == len(result["hits"]) > 0
    notes = [m for m in mido.MidiFile(out_mid) if m.type == "note_on" and m.velocity > 0]
    assert len(notes) == len(result["hits"]) and all(m.channel == 9 for m in notes)
    meta = [m for m in mido.MidiFile(out_mid).tracks[0] if m.is_meta]  # the score's metre and tempo map
    assert [(m.numerator, m.denominator) for m in meta if m.type == "time_signature"] == [(4, 4)]
    assert [m for m in meta if m.type == "set_tempo"]


def test_eval_against_reference_in_mdb_format(beat_file, tmp_path):
    path, reference = beat_file
    out_json = tmp_path / "beat.json"
    assert run("transcribe", str(path), "-o", str(out_json)).returncode == 0
    labels = {"kick": "KD", "snare": "SD", "hihat": "HH"}
    lines = sorted(f"{t:.4f}\t{labels[f]}" for f, times in reference.items() for t in times)
    ref = tmp_path / "beat_class.txt"
    ref.write_text("\n".join(lines) + "\n")
    done = run("eval", str(out_json), str(ref), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["micro"]["f"] >= 0.95  # a plain beat on a real kit: next to every hit found


@pytest.mark.parametrize("content,code", [
    (b"", "unsupported_media|empty"),
    (np.random.default_rng(0).bytes(5000), "unsupported_media"),
])
def test_bad_input_is_one_clear_line_and_status_2(tmp_path, content, code):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(content)
    done = run("transcribe", str(bad), "-o", str(tmp_path / "x.json"))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stderr.startswith("drumscribe: ")
    assert not (tmp_path / "x.json").exists()


def test_missing_file_and_unknown_output(tmp_path, beat_file):
    done = run("transcribe", str(tmp_path / "nope.mp3"))
    assert done.returncode == 2 and "nope.mp3" in done.stderr
    done = run("transcribe", str(beat_file[0]), "-o", str(tmp_path / "x.docx"))
    assert done.returncode != 0 and "x.docx" in done.stderr and "Traceback" not in done.stderr


def test_too_long_is_refused(beat_file, tmp_path):
    done = run("transcribe", str(beat_file[0]), "--max-seconds", "2")
    assert done.returncode == 2 and "Traceback" not in done.stderr
