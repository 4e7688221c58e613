"""Page images of the scores of the mdb-dev drum stems, as DrumScribe draws them (Verovio)
and as MuseScore 3 lays out the same MusicXML, to look at (``bench/score_collisions.py``
measures their collisions).

Writes ``OUT/<track>-verovio-<page>.png`` and ``OUT/<track>-musescore-<page>.png`` at 80 dpi
(``pdftoppm``; MuseScore pages only where ``mscore3`` is installed), and prints each score's
tempo, metre, feel and bar count, and how far the performance MIDI's notes, read through
its tempo map, fall from the hits' times (counted from the score's first downbeat).
Usage: ``python bench/score_pages.py [--data ../shared/data/mdb-dev] [--out docs/scores] [TRACK ...]``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import mido

from batch.score import DrumScore, make_score, write_outputs
from models.audio import read_audio, resample
from models.beats import Grid
from models.detector import Detector
from models.midi import lead_in
from models.peaks import Hit

TRACKS = ("Beatles", "Britpop", "Country1", "Punk", "Reggae", "Rockabilly", "Shadows")
DPI = 80


def pages(pdf: Path, out: Path, prefix: str) -> list[Path]:
    """The PDF's pages as PNGs named ``prefix-1.png``, ``prefix-2.png``, ... in ``out``."""
    for old in out.glob(f"{prefix}-*.png"):
        old.unlink()
    subprocess.run(["pdftoppm", "-png", "-r", str(DPI), str(pdf), str(out / prefix)], check=True)
    return sorted(out.glob(f"{prefix}-*.png"))


def musescore(musicxml: Path, out: Path) -> None:
    """MuseScore 3's layout of the MusicXML, as ``out``'s suffix says (an SVG: ``out-1.svg`` a page)."""
    subprocess.run(["mscore3", "-o", str(out), str(musicxml)], check=True, capture_output=True, timeout=300,
                   env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})


def transcribed(detector: Detector, data: Path, track: str) -> tuple[list[Hit], DrumScore]:
    """The shipped detector's hits on a track's drum stem, and their score."""
    audio, rate = read_audio(data / f"{track}_drums.wav")
    hits = detector.transcribe(resample(audio, rate, detector.card.sample_rate))
    return hits, make_score(hits, len(audio) / rate, track)


def midi_error(midi: Path, hits: list[Hit], grid: Grid) -> float:
    """The largest gap in seconds between a note's time in the MIDI file and its hit's; the
    file starts on the score's first downbeat or whole bars before it (``models.midi.lead_in``)."""
    first_period = (grid.pulse_times[1] - grid.pulse_times[0]) / float(grid.pulse_ql)
    offset = grid.offset_s - lead_in(grid, hits) * first_period
    now, onsets = 0.0, []
    for message in mido.MidiFile(midi):
        now += message.time
        if message.type == "note_on":
            onsets.append(now)
    recorded = sorted(max(0.0, hit.t - offset) for hit in hits)
    return max((abs(a - b) for a, b in zip(sorted(onsets), recorded)), default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tracks", nargs="*", default=TRACKS)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/mdb-dev"))
    parser.add_argument("--out", type=Path, default=Path("docs/scores"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    detector = Detector()
    with tempfile.TemporaryDirectory() as temp:
        for track in args.tracks:
            hits, score = transcribed(detector, args.data, track)
            paths = write_outputs(score, hits, Path(temp) / track, {})
            drawn = pages(paths["pdf"], args.out, f"{track}-verovio")
            if shutil.which("mscore3"):
                musescore(paths["musicxml"], Path(temp) / track / "musescore.pdf")
                drawn += pages(Path(temp) / track / "musescore.pdf", args.out, f"{track}-musescore")
            grid = score.grid
            error = midi_error(paths["midi"], hits, grid)
            print(f"{track}: {grid.bpm} bpm {grid.time_signature} {score.feel}, {len(score.bars)} bars, "
                  f"{len(drawn)} page images, MIDI within {1000 * error:.2f} ms of the hits")


if __name__ == "__main__":
    main()
