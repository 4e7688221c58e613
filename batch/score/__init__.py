"""Hits to drum scores, shared by the batch worker and the live path.

    score = make_score(hits, duration, title)      # tempo, metre, bars
    write_outputs(score, hits, folder, result)     # score.musicxml, score.pdf, score.mid, result.json
    notation_svg(hits, now)                        # the last completed bars, one line of SVG
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from models.beats import Grid, estimate_grid
from batch.score.kit import drum_of
from batch.score.notation import build_score
from batch.score.quantize import EARLY, Bar, quantize
from batch.score.render import musicxml_bytes, pdf_bytes, svg_pages, system_svg
from models.midi import hits_to_midi
from models.peaks import Hit

__all__ = ["DrumScore", "Grid", "Bar", "make_score", "write_outputs", "notation_svg"]

FILES = {"musicxml": "score.musicxml", "pdf": "score.pdf", "midi": "score.mid", "json": "result.json"}


@dataclass
class DrumScore:
    grid: Grid
    bars: list[Bar]
    title: str
    hits: list[Hit]


def make_score(hits: list[Hit], duration: float, title: str = "Drum score") -> DrumScore:
    """Tempo, metre and bars of a recording ``duration`` seconds long; one empty bar without hits."""
    grid = estimate_grid(hits, duration)
    return DrumScore(grid, quantize(hits, grid, duration if hits else None), title, list(hits))


def write_outputs(score: DrumScore, hits: list[Hit], folder: Path, result: dict) -> dict[str, Path]:
    """Write the four downloads into ``folder``; returns format -> path.

    Each file appears whole or not at all (temp file + rename), result.json last, so its
    presence means the rest are complete. Its bpm and time signature are the score's.
    """
    folder.mkdir(parents=True, exist_ok=True)
    musicxml = musicxml_bytes(build_score(score.grid, score.bars, score.title))
    midi = io.BytesIO()
    hits_to_midi([_kit_hit(hit) for hit in hits], bpm=score.grid.bpm).save(file=midi)
    document = {**result, "bpm": score.grid.bpm, "time_signature": score.grid.time_signature}
    contents = {
        "musicxml": musicxml,
        "pdf": pdf_bytes(svg_pages(musicxml)),
        "midi": midi.getvalue(),
        "json": json.dumps(document, ensure_ascii=False).encode(),
    }
    paths = {}
    for fmt, data in contents.items():
        paths[fmt] = folder / FILES[fmt]
        _write_atomically(paths[fmt], data)
    return paths


def notation_svg(hits: list[Hit], now: float, grid: Grid | None = None, count: int = 4) -> tuple[str, int] | None:
    """The last ``count`` bars completed by ``now`` as one line of SVG, with the number of
    the last of them; None before the first bar completes. Pass a settled ``grid`` to keep
    bar numbers steady as hits arrive."""
    grid = grid or estimate_grid(hits, now)
    done = grid.bars_done(now)
    if done < 1:
        return None
    first = max(0, done - count)
    window_start = float(first * grid.bar_ql) - EARLY
    recent = [hit for hit, q in zip(hits, grid.quarters([hit.t for hit in hits]).tolist()) if q >= window_start]
    bars = quantize(recent, grid, now)[first:done]
    return system_svg(musicxml_bytes(build_score(grid, bars, ""))), done


def _kit_hit(hit: Hit) -> Hit:
    """The hit with a kit instrument (family-only hits have no GM note of their own)."""
    return dataclasses.replace(hit, instrument=drum_of(hit.instrument, hit.family).instrument)


def _write_atomically(path: Path, data: bytes) -> None:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.chmod(temp, 0o644)  # mkstemp's 0600 would hide the downloads from other users
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
