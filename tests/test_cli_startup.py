"""``drumscribe transcribe FILE -o out.json`` imports only what it uses.

A one-file run is mostly start-up: the score code (music21, verovio, cairo), scipy.signal,
torch and the server stack each cost a large share of it, and one stray module-level import
brings any of them back. The run happens in a fresh interpreter, as a user's would.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import soundfile as sf

from models.synthetic import rock_beat

NOT_FOR_TRANSCRIBE = (
    "music21", "verovio", "cairocffi", "cairosvg",   # score writing
    "scipy",                                          # features use numpy's FFT; the full-mix test needs Demucs weights
    "av",                                             # PyAV: WAV and FLAC are read with soundfile
    "torch", "demucs",                                # separation, only with Demucs weights
    "aiortc", "starlette", "uvicorn", "redis",        # serve and worker
    "mido",                                           # MIDI output, not asked for here
)

CHILD = """
import json, sys
from web.cli import main
status = main(["transcribe", sys.argv[1], "-o", sys.argv[2]])
print(json.dumps({"status": status, "modules": sorted(sys.modules)}))
"""


def test_transcribe_to_json_imports_no_score_server_or_separation_code(tmp_path: Path) -> None:
    audio, _ = rock_beat(bars=2, bpm=100, rate=44100)
    path, out = tmp_path / "beat.wav", tmp_path / "beat.json"
    sf.write(path, audio, 44100)
    # no Demucs weights anywhere it looks, so `--separate auto` (the default) must decide cheaply
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), "HF_HUB_CACHE": str(tmp_path / "hf")}
    env.pop("DRUMSCRIBE_DEMUCS_WEIGHTS", None)
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), str(out)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    result = json.loads(out.read_text())
    assert report["status"] == 0 and result["hits"]
    assert result["separation"]["requested"] == "auto" and not result["separation"]["available"]
    loaded = set(report["modules"])
    assert [name for name in NOT_FOR_TRANSCRIBE if name in loaded] == []
