"""Measured collisions on the scores of the mdb-dev drum stems, as DrumScribe draws them
(Verovio) and as MuseScore 3 lays out the same MusicXML: issue 13's "no collision in either
renderer", counted rather than judged by eye (``bench/collisions.py`` says what counts).

Prints, per track and renderer, the number of collisions and each one (bar, kinds, where on
the page in staff spaces); exits 1 if any. MuseScore is skipped where ``mscore3`` is missing.
Usage: ``python -m bench.score_collisions [--data ../shared/data/mdb-dev] [--tolerance 0.06] [TRACK ...]``.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from batch.score.notation import build_score
from batch.score.render import musicxml_bytes
from bench.collisions import TOLERANCE, Collision, collisions, musescore_score, verovio_score
from bench.score_pages import TRACKS, musescore, transcribed
from models.detector import Detector


def musescore_collisions(musicxml: bytes, folder: Path, tolerance: float) -> list[Collision]:
    source = folder / "score.musicxml"
    source.write_bytes(musicxml)
    musescore(source, folder / "musescore.svg")
    pages = sorted(folder.glob("musescore-*.svg"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    return collisions(musescore_score([page.read_text() for page in pages], musicxml), tolerance)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tracks", nargs="*", default=TRACKS)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/mdb-dev"))
    parser.add_argument("--tolerance", type=float, default=TOLERANCE, help="staff spaces off each side of a glyph")
    args = parser.parse_args()
    detector, total = Detector(), 0
    with tempfile.TemporaryDirectory() as temp:
        for track in args.tracks:
            _, score = transcribed(detector, args.data, track)
            musicxml = musicxml_bytes(build_score(score.grid, score.bars, score.title, score.feel))
            found = {"verovio": collisions(verovio_score(musicxml), args.tolerance)}
            if shutil.which("mscore3"):
                (Path(temp) / track).mkdir()
                found["musescore"] = musescore_collisions(musicxml, Path(temp) / track, args.tolerance)
            for renderer, hits in found.items():
                print(f"{track} {renderer}: {len(hits)} collisions", flush=True)
                for hit in hits:
                    print(f"    {hit}")
                total += len(hits)
    sys.exit(1 if total else 0)


if __name__ == "__main__":
    main()
