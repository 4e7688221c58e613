"""Render the training set: Groove MIDI performances through sampled kits, a random band, a room.

Each example is stored as its log-mel features with its onsets, so training never touches
audio. ``python -m models.train.synth --out train-data`` writes ``shard-*.npz``.
"""
from __future__ import annotations

import argparse
import multiprocessing
import pickle
import tempfile
from pathlib import Path

import numpy as np

from models.features import SAMPLE_RATE, features
from models.train.accompaniment import write_band
from models.train.augment import augment
from models.train.grooves import DrumEvent, Performance, list_performances, read_events
from models.train.kits import SOUNDFONTS, Kit, all_kits, render_midi
from models.vocab import INSTRUMENTS

GROOVE_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "groove-midi"
MAX_SECONDS = 60.0
CHOKED_BY = {"hihat_open": {"hihat_closed", "hihat_pedal"}}


def render_drums(events: list[DrumEvent], kit: Kit, seconds: float, rng: np.random.Generator) -> tuple[np.ndarray, list[DrumEvent]]:
    """Mix one-shots at each event; an open hi-hat is choked by the next closed/pedal one."""
    out = np.zeros(int(seconds * SAMPLE_RATE) + SAMPLE_RATE, np.float32)
    instrument_gain = {name: 10 ** (rng.uniform(-5, 5) / 20) for name in INSTRUMENTS}
    played = []
    for index, event in enumerate(events):
        choice = kit.sample(event.instrument, event.velocity, rng)
        if choice is None:
            continue
        audio, gain = choice
        start = int(round(event.time * SAMPLE_RATE))
        end = min(len(out), start + len(audio))
        if end <= start:
            continue
        chokers = CHOKED_BY.get(event.instrument)
        if chokers:
            later = next((e.time for e in events[index + 1:] if e.instrument in chokers), None)
            if later is not None:
                end = min(end, int(later * SAMPLE_RATE) + SAMPLE_RATE // 100)
        shot = audio[: end - start] * (gain * event.velocity * instrument_gain[event.instrument])
        if end - start < len(audio):
            fade = min(len(shot), SAMPLE_RATE // 100)
            shot[-fade:] *= np.linspace(1, 0, fade)
        out[start:end] += shot
        played.append(event)
    return out[: int(seconds * SAMPLE_RATE)], played


def render_band(performance: Performance, stretch: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "band.mid"
        write_band(path, performance.bpm / stretch, performance.beats_per_bar, seconds, rng)
        audio = render_midi(SOUNDFONTS["FluidR3_GM"][0], path, gain=0.5)
    padded = np.zeros(int(seconds * SAMPLE_RATE), np.float32)
    padded[: min(len(audio), len(padded))] = audio[: len(padded)]
    return padded


def render_example(performance: Performance, kit: Kit, rng: np.random.Generator, band_chance: float) -> dict | None:
    events = read_events(performance.midi_path)
    if len(events) < 4:
        return None
    stretch = rng.uniform(0.8, 1.25)
    offset = 0.0
    if events[-1].time * stretch > MAX_SECONDS:
        offset = rng.uniform(0, events[-1].time * stretch - MAX_SECONDS)
    moved = [DrumEvent(e.time * stretch - offset + 0.5, e.instrument, e.velocity) for e in events]
    moved = [e for e in moved if 0.5 <= e.time < MAX_SECONDS + 0.5]
    if not moved:
        return None
    seconds = moved[-1].time + rng.uniform(1.0, 3.0)
    drums, played = render_drums(moved, kit, seconds, rng)
    if not played or np.max(np.abs(drums)) < 1e-4:
        return None
    mix = drums
    if rng.random() < band_chance:
        band = render_band(performance, stretch, seconds, rng)
        if np.std(band) > 1e-6:
            level = 10 ** (rng.uniform(-15, 6) / 20) * np.std(drums) / np.std(band)
            mix = drums + band * level
    audio = augment(mix, rng)
    return {
        "features": features(audio).astype(np.float16),
        "times": np.array([e.time for e in played], np.float32),
        "instruments": np.array([INSTRUMENTS.index(e.instrument) for e in played], np.int8),
        "velocities": np.array([e.velocity for e in played], np.float32),
        "kit": kit.name,
    }


_KITS: list[Kit] = []


def _init_worker(kits_path: str) -> None:
    global _KITS
    with open(kits_path, "rb") as handle:
        _KITS = pickle.load(handle)


def _render_shard(job: tuple[Path, list[Performance], int, float]) -> str:
    path, performances, seed, band_chance = job
    rng = np.random.default_rng(seed)
    examples = []
    for performance in performances:
        example = render_example(performance, _KITS[int(rng.integers(len(_KITS)))], rng, band_chance)
        if example is not None:
            examples.append(example)
    np.savez(path, examples=np.array(examples, dtype=object))
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("train-data"))
    parser.add_argument("--groove", type=Path, default=GROOVE_ROOT)
    parser.add_argument("--passes", type=int, default=1, help="renderings of each performance (new kit each time)")
    parser.add_argument("--split", default="train,validation")
    parser.add_argument("--band-chance", type=float, default=0.5)
    parser.add_argument("--shard-size", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N performances (smoke tests)")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    kits_path = args.out / "kits.pkl"
    if not kits_path.exists():
        kits = all_kits()
        print(f"{len(kits)} kits: {', '.join(k.name for k in kits)}", flush=True)
        with open(kits_path, "wb") as handle:
            pickle.dump(kits, handle)
    splits = set(args.split.split(","))
    performances = [p for p in list_performances(args.groove) if p.split in splits]
    if args.limit:
        performances = performances[: args.limit]
    rng = np.random.default_rng(args.seed)
    jobs = []
    for rendering in range(args.passes):
        order = rng.permutation(len(performances))
        for start in range(0, len(order), args.shard_size):
            chunk = [performances[i] for i in order[start: start + args.shard_size]]
            path = args.out / f"shard-{args.split.replace(',', '+')}-{rendering:02d}-{start // args.shard_size:04d}.npz"
            if not path.exists():
                jobs.append((path, chunk, int(rng.integers(2**31)), args.band_chance))
    with multiprocessing.Pool(args.workers, initializer=_init_worker, initargs=(str(kits_path),)) as pool:
        for done in pool.imap_unordered(_render_shard, jobs):
            print(done, flush=True)


if __name__ == "__main__":
    main()
