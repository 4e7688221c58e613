"""Hits to drum scores, shared by the batch worker and the live path.

    score = make_score(hits, duration, title)      # tempo, metre, feel, bars
    write_outputs(score, hits, folder, result)     # score.musicxml, score.pdf, score.mid,
                                                   # score-quantized.mid, result.json
    notation_svg(hits, now)                        # the last completed bars, one line of SVG
"""
from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mido

from models.beats import EARLY, Grid, estimate_grid
from batch.score.feel import STRAIGHT, detect_feel
from batch.score.midi import performance_midi, written_midi
from batch.score.notation import build_score
from batch.score.quantize import Bar, quantize
from batch.score.render import musicxml_bytes, pdf_bytes, svg_pages, system_svg
from batch.score.timeline import beat_times
from models.peaks import Hit

__all__ = ["DrumScore", "Grid", "Bar", "make_score", "write_outputs", "notation_svg"]

FILES = {"musicxml": "score.musicxml", "pdf": "score.pdf", "midi": "score.mid",
         "midi_quantized": "score-quantized.mid", "json": "result.json"}


@dataclass
class DrumScore:
    grid: Grid
    bars: list[Bar]
    title: str
    hits: list[Hit]
    feel: str  # straight, swing or shuffle (batch.score.feel)


def make_score(hits: list[Hit], duration: float, title: str = "Drum score") -> DrumScore:
    """Tempo, metre and bars of a recording ``duration`` seconds long; one empty bar without hits."""
    grid = estimate_grid(hits, duration)
    feel = detect_feel(hits, grid)
    bars = quantize(hits, grid, duration if hits else None, swung=feel != STRAIGHT)
    return DrumScore(grid, bars, title, list(hits), feel)


def write_outputs(score: DrumScore, hits: list[Hit], folder: Path, result: dict) -> dict[str, Path]:
    """Write the downloads into ``folder``; returns format -> path.

    Two MIDI files: ``midi`` plays the hits as recorded, ``midi_quantized`` the notes as
    written; both have the score's bars, time signature and tempo map (``batch.score.midi``).

    Each file appears whole or not at all (temp file + rename), result.json last, so its
    presence means the rest are complete. Its bpm, time signature, feel, beats and downbeats
    are the score's.
    """
    folder.mkdir(parents=True, exist_ok=True)
    musicxml = musicxml_bytes(build_score(score.grid, score.bars, score.title, score.feel))
    document = {**result, "bpm": score.grid.bpm, "time_signature": score.grid.time_signature, "feel": score.feel,
                **beat_times(score.grid, score.bars[0].index, len(score.bars))}
    contents = {
        "musicxml": musicxml,
        "pdf": pdf_bytes(svg_pages(musicxml)),
        "midi": _midi_bytes(performance_midi(score.grid, hits)),
        "midi_quantized": _midi_bytes(written_midi(score.grid, score.bars, score.feel, hits)),
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
    feel = detect_feel(hits, grid)
    bars = quantize(recent, grid, now, swung=feel != STRAIGHT)[first:done]
    return system_svg(musicxml_bytes(build_score(grid, bars, "", feel))), done


def _midi_bytes(midi: mido.MidiFile) -> bytes:
    data = io.BytesIO()
    midi.save(file=data)
    return data.getvalue()


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
