"""Render the training set: Groove MIDI performances through sampled kits, a random band, a room.

Each example is stored as its log-mel features with its onsets, so training never touches
audio. ``python -m models.train.synth --out train-data`` writes ``shard-*.npz``.
"""
from __future__ import annotations

import argparse
import functools
import multiprocessing
import pickle
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.features import SAMPLE_RATE, features
from models.train.accompaniment import percussion_pattern, write_band, write_percussion
from models.train.augment import augment
from models.train.grooves import DrumEvent, Performance, list_performances, read_events
from models.train.kits import SOUNDFONTS, Kit, Layer, all_kits, load_percussion, render_midi
from models.train.multimic import MultiMicKit, draw_gains, load_muldjord
from models.train.room import in_room
from models.vocab import FAMILY_OF, INSTRUMENTS

GROOVE_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "groove-midi"
MAX_SECONDS = 60.0
CHOKED_BY = {"hihat_open": {"hihat_closed", "hihat_pedal"}}
# Kits never trained on: the validation set is rendered with them (``--kits validation``).
VALIDATION_KITS = ("hydrogen:Millo_MultiLayered3", "sf:AVL_Red_Zeppelin:0", "sf:MuseScore_General:16", "sf:FluidR3_GM:24")
# How often each sampled hand-percussion sound plays a part: the tambourine, the likeliest
# to be taken for a hi-hat or a cymbal in real songs, most often.
PERCUSSION_WEIGHTS = {"tambourine": 4.0, "shaker": 2.0, "cowbell": 1.0, "block": 1.0, "snap": 1.0}


# Level ranges (dB) per family as engineers balance a kit: hi-hats and cymbals sit under
# the kick and snare, and vary more from one mix to the next.
FAMILY_LEVEL_DB = {"kick": (-3, 3), "snare": (-3, 3), "tom": (-4, 4), "hihat": (-12, 1), "cymbal": (-14, 0)}


@dataclass(frozen=True)
class Balance:
    """One mix of one kit: a level per instrument and a velocity-to-level curve."""

    gains: dict[str, float]
    range_db: float  # the level difference between velocity 0 and 1

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Balance:
        gains = {}
        for name in INSTRUMENTS:
            low, high = FAMILY_LEVEL_DB[FAMILY_OF[name]]
            gains[name] = 10 ** ((rng.uniform(low, high) + rng.uniform(-2, 2)) / 20)
        return cls(gains, float(rng.uniform(18, 40)))

    def level(self, instrument: str, velocity: float, layer: Layer) -> float:
        """Amplitude for a hit: exponential in velocity, relative to the layer's own loudness."""
        curve = 10 ** (-(1 - velocity) * self.range_db / 20)
        if layer.baked is not None:
            curve /= 10 ** (-(1 - layer.baked) * self.range_db / 20)
        return layer.gain * curve * self.gains[instrument]


def render_drums(events: list[DrumEvent], kit: Kit, seconds: float, rng: np.random.Generator,
                 blend: Kit | None = None) -> tuple[np.ndarray, list[DrumEvent]]:
    """Mix one-shots at each event; an open hi-hat is choked by the next closed/pedal one.

    With ``blend``, half of the hits also sound a quieter one-shot of the same instrument
    from that kit, as producers layer samples.
    """
    out = np.zeros(int(seconds * SAMPLE_RATE) + SAMPLE_RATE, np.float32)
    balance = Balance.draw(rng)
    blend_db = rng.uniform(-12, -3)
    played = []
    for index, event in enumerate(events):
        layer = kit.sample(event.instrument, event.velocity, rng)
        if layer is None:
            continue
        start = int(round(event.time * SAMPLE_RATE))
        end = min(len(out), start + len(layer.audio))
        if end <= start:
            continue
        chokers = CHOKED_BY.get(event.instrument)
        if chokers:
            later = next((e.time for e in events[index + 1:] if e.instrument in chokers), None)
            if later is not None:
                end = min(end, int(later * SAMPLE_RATE) + SAMPLE_RATE // 100)
        shot = layer.audio[: end - start] * balance.level(event.instrument, event.velocity, layer)
        second = blend.sample(event.instrument, event.velocity, rng) if blend is not None and rng.random() < 0.5 else None
        if second is not None:
            extra = second.audio[: end - start] * (balance.level(event.instrument, event.velocity, second) * 10 ** (blend_db / 20))
            shot[: len(extra)] += extra
        if end - start < len(layer.audio):
            fade = min(len(shot), SAMPLE_RATE // 100)
            shot[-fade:] *= np.linspace(1, 0, fade)
        out[start:end] += shot
        played.append(event)
    return out[: int(seconds * SAMPLE_RATE)], played


def render_percussion(kit: Kit, bpm: float, beats_per_bar: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """One or two parts of sampled hand percussion; each stroke stops the one before it."""
    out = np.zeros(int(seconds * SAMPLE_RATE), np.float32)
    sounds = sorted(kit.layers)
    weights = np.array([PERCUSSION_WEIGHTS.get(sound, 1.0) for sound in sounds])
    for _ in range(int(rng.integers(1, 3))):
        sound = sounds[int(rng.choice(len(sounds), p=weights / weights.sum()))]
        strokes = percussion_pattern(bpm, beats_per_bar, seconds, rng)
        for (time, velocity), (next_time, _) in zip(strokes, strokes[1:] + [(seconds, 0.0)]):
            layer = kit.sample(sound, velocity, rng)
            start = int(time * SAMPLE_RATE)
            end = min(len(out), start + len(layer.audio), int(next_time * SAMPLE_RATE) + SAMPLE_RATE // 100)
            if end > start:
                out[start:end] += layer.audio[: end - start] * (layer.gain * velocity)
    return out


@dataclass(frozen=True)
class Extras:
    """What is mixed in besides the drums (the defaults are the first training stage's)."""

    band_chance: float = 0.5
    strums: bool = False  # strummed and choked guitars in the band
    percussion_chance: float = 0.0  # hand percussion (half sampled, half GM), which is not any drum family
    room_chance: float = 0.0  # the drums played in a simulated room
    blend_chance: float = 0.0  # each hit layered with a second kit's one-shot (half the hits)
    multimic_chance: float = 0.0  # the real multi-microphone kit (MuldjordKit), mixed anew


def render_part(write: Callable[[Path], None], seconds: float) -> np.ndarray:
    """Render a MIDI part that ``write(path)`` makes with FluidR3 GM, ``seconds`` long."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "part.mid"
        write(path)
        audio = render_midi(SOUNDFONTS["FluidR3_GM"][0], path, gain=0.5)
    padded = np.zeros(int(seconds * SAMPLE_RATE), np.float32)
    padded[: min(len(audio), len(padded))] = audio[: len(padded)]
    return padded


def mix_in(mix: np.ndarray, drums: np.ndarray, part: np.ndarray, low_db: float, high_db: float,
           rng: np.random.Generator) -> np.ndarray:
    """Add ``part`` at a random level relative to the drums' RMS."""
    if np.std(part) <= 1e-6:
        return mix
    return mix + part * 10 ** (rng.uniform(low_db, high_db) / 20) * np.std(drums) / np.std(part)


def render_example(performance: Performance, kit: Kit, rng: np.random.Generator, extras: Extras,
                   percussion_kit: Kit | None = None, blend: Kit | None = None) -> dict | None:
    events = _events(performance.midi_path)
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
    drums, played = render_drums(moved, kit, seconds, rng, blend if rng.random() < extras.blend_chance else None)
    if not played or np.max(np.abs(drums)) < 1e-4:
        return None
    if rng.random() < extras.room_chance:
        drums = in_room(drums, rng).astype(np.float32)
    bpm = performance.bpm / stretch
    mix = drums
    if extras.percussion_chance and rng.random() < extras.percussion_chance:
        if percussion_kit is not None and percussion_kit.layers and rng.random() < 0.5:
            percussion = render_percussion(percussion_kit, bpm, performance.beats_per_bar, seconds, rng)
        else:
            percussion = render_part(lambda path: write_percussion(path, bpm, performance.beats_per_bar, seconds, rng), seconds)
        mix = mix_in(mix, drums, percussion, -15, 3, rng)
    if rng.random() < extras.band_chance:
        band = render_part(lambda path: write_band(path, bpm, performance.beats_per_bar, seconds, rng, extras.strums), seconds)
        mix = mix_in(mix, drums, band, -15, 6, rng)
    audio = augment(mix, rng)
    return {
        "features": features(audio).astype(np.float16),
        "times": np.array([e.time for e in played], np.float32),
        "instruments": np.array([INSTRUMENTS.index(e.instrument) for e in played], np.int8),
        "velocities": np.array([e.velocity for e in played], np.float32),
        "kit": kit.name,
    }


# Each performance is rendered once per pass; parsing its MIDI file costs about as much as mixing it.
_events = functools.lru_cache(maxsize=None)(read_events)
_KITS: list[Kit] = []
_MULTIMIC: MultiMicKit | None = None
_PERCUSSION: Kit | None = None


def _init_worker(kits_path: str, percussion: bool) -> None:
    global _KITS, _MULTIMIC, _PERCUSSION
    with open(kits_path, "rb") as handle:
        _KITS, _MULTIMIC = pickle.load(handle)
    _PERCUSSION = load_percussion() if percussion else None


def _pick_kit(rng: np.random.Generator, multimic_chance: float) -> Kit:
    """The real multi-microphone kit, mixed anew, for ``multimic_chance`` of the examples."""
    if _MULTIMIC is not None and rng.random() < multimic_chance:
        return _MULTIMIC.mixdown(draw_gains(rng))
    return _KITS[int(rng.integers(len(_KITS)))]


def _render_shard(job: tuple[Path, list[Performance], int, Extras]) -> str:
    path, performances, seed, extras = job
    rng = np.random.default_rng(seed)
    examples = []
    for performance in performances:
        kit = _pick_kit(rng, extras.multimic_chance)
        blend = _KITS[int(rng.integers(len(_KITS)))]
        example = render_example(performance, kit, rng, extras, _PERCUSSION, blend)
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
    parser.add_argument("--strums", action="store_true", help="strummed and choked guitars in the band")
    parser.add_argument("--percussion-chance", type=float, default=0.0, help="hand percussion mixed in")
    parser.add_argument("--room-chance", type=float, default=0.0, help="drums played in a simulated room")
    parser.add_argument("--blend-chance", type=float, default=0.0, help="hits layered with a second kit's one-shot")
    parser.add_argument("--multimic-chance", type=float, default=0.0, help="examples played on the MuldjordKit")
    parser.add_argument("--kits", choices=("train", "validation"), default="train",
                        help="the training kits, or the kits held out of training (for a validation set)")
    parser.add_argument("--shard-size", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N performances (smoke tests)")
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    kits_path = args.out / "kits.pkl"
    if not kits_path.exists():
        kits = [kit for kit in all_kits() if (kit.name in VALIDATION_KITS) == (args.kits == "validation")]
        multimic = load_muldjord() if args.kits == "train" else None
        print(f"{len(kits)} kits: {', '.join(k.name for k in kits)}{' + muldjord' if multimic else ''}", flush=True)
        with open(kits_path, "wb") as handle:
            pickle.dump((kits, multimic), handle)
    splits = set(args.split.split(","))
    performances = [p for p in list_performances(args.groove) if p.split in splits]
    if args.limit:
        performances = performances[: args.limit]
    rng = np.random.default_rng(args.seed)
    extras = Extras(args.band_chance, args.strums, args.percussion_chance, args.room_chance, args.blend_chance,
                    args.multimic_chance)
    jobs = []
    for rendering in range(args.passes):
        order = rng.permutation(len(performances))
        for start in range(0, len(order), args.shard_size):
            chunk = [performances[i] for i in order[start: start + args.shard_size]]
            path = args.out / f"shard-{args.split.replace(',', '+')}-{rendering:02d}-{start // args.shard_size:04d}.npz"
            if not path.exists():
                jobs.append((path, chunk, int(rng.integers(2**31)), extras))
    with multiprocessing.Pool(args.workers, initializer=_init_worker, initargs=(str(kits_path), args.percussion_chance > 0)) as pool:
        for done in pool.imap_unordered(_render_shard, jobs):
            print(done, flush=True)


if __name__ == "__main__":
    main()
