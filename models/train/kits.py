"""Sampled drum kits from Debian packages, loaded as one-shot samples per instrument.

Two sources: Hydrogen drumkits (``hydrogen-drumkits``: drumkit.xml + FLAC layers) and
General MIDI SoundFonts (FluidR3, MuseScore General, AVL Black Pearl / Red Zeppelin),
whose drum programs are rendered note by note with the ``fluidsynth`` command.
"""
from __future__ import annotations

import re
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import mido
import numpy as np
import soundfile as sf

from models.audio import resample
from models.features import SAMPLE_RATE

HYDROGEN_DIR = Path("/usr/share/hydrogen/data/drumkits")
HYDROGEN_KITS = (
    "ColomboAcousticDrumkit", "ForzeeStereo", "Millo-Drums_v.1", "Millo_MultiLayered2",
    "Millo_MultiLayered3", "The Black Pearl 1.0", "rumpf_kit_z01_h2", "BJA_Pacific",
    "Audiophob", "VariBreaks",
)
# The notes each of our instruments is played with in a SoundFont's drum program.
GM_NOTES: dict[str, tuple[int, ...]] = {
    "kick": (36,), "snare": (38,), "snare_rim": (37,), "hihat_closed": (42,), "hihat_open": (46,),
    "hihat_pedal": (44,), "tom_high": (48, 50), "tom_mid": (45, 47), "tom_low": (41, 43),
    "crash": (49, 57, 55, 52), "ride": (51, 59), "ride_bell": (53,),
}
# The AVL kits are not General MIDI (see shared/TRAINING.md): 45/47 are the rack tom's centre
# and edge, 41/43 the floor tom's, 48 a hi-hat swish and 50/52/58 cymbal chokes (left out).
AVL_NOTES: dict[str, tuple[int, ...]] = {
    "kick": (36, 35), "snare": (38, 40), "snare_rim": (37,), "hihat_closed": (42,), "hihat_open": (46,),
    "hihat_pedal": (44,), "tom_high": (45,), "tom_mid": (47,), "tom_low": (41, 43),
    "crash": (49, 57, 55, 60), "ride": (51, 59), "ride_bell": (53,),
}
AVL_PERCUSSION_NOTES: dict[str, tuple[int, ...]] = {"tambourine": (54,), "cowbell": (56,), "shaker": (64,)}


class SoundFont(NamedTuple):
    path: Path
    programs: tuple[int, ...]  # the drum programs to load as kits
    notes: dict[str, tuple[int, ...]]
    channel: int = 9  # the AVL kits are melodic-bank presets, played on another channel


SOUNDFONTS = {
    "FluidR3_GM": SoundFont(Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"), (0, 8, 16, 24, 25, 32, 40), GM_NOTES),
    "MuseScore_General": SoundFont(Path("/usr/share/sounds/sf3/MuseScore_General_Full.sf3"), (0, 8, 16, 24, 25, 32, 40, 48), GM_NOTES),
    "AVL_Black_Pearl": SoundFont(Path("/usr/share/sounds/sf2/Black_Pearl_4_LV2.sf2"), (0,), AVL_NOTES, channel=0),
    "AVL_Red_Zeppelin": SoundFont(Path("/usr/share/sounds/sf2/Red_Zeppelin_4_LV2.sf2"), (0,), AVL_NOTES, channel=0),
}
# One-shot folders: (folder, file-name rules). Sonic Pi's acoustic kit (CC0) and LMMS's drums.
SONIC_PI_DIR = Path("/usr/share/sonic-pi/samples")
LMMS_DIR = Path("/usr/share/lmms/samples/drums")
SONIC_PI_RULES: tuple[tuple[str, str | None], ...] = (
    (r"^drum_(bass|heavy_kick)", "kick"), (r"^drum_snare", "snare"),
    (r"^drum_cymbal_closed", "hihat_closed"), (r"^drum_cymbal_open", "hihat_open"),
    (r"^drum_cymbal_pedal", "hihat_pedal"), (r"^drum_(cymbal_(hard|soft)|splash)", "crash"),
    (r"^drum_tom_hi", "tom_high"), (r"^drum_tom_mid", "tom_mid"), (r"^drum_tom_lo", "tom_low"),
)
LMMS_RULES: tuple[tuple[str, str | None], ...] = (
    (r"distorted|hardcore|nasty|zap|electro|clap|clav|wood|shaker", None),
    (r"^(kick|bassdrum)", "kick"), (r"sidestick|rim", "snare_rim"), (r"^snare", "snare"),
    (r"hihat_closed", "hihat_closed"), (r"hihat_opened", "hihat_open"), (r"hihat_foot", "hihat_pedal"),
    (r"^tom_(hi|0[12])|^tom0[12]", "tom_high"), (r"^tom_low|^tom0[45]", "tom_low"), (r"^tom", "tom_mid"),
    (r"^ride", "ride"), (r"^crash", "crash"),
)
LMMS_PERCUSSION_RULES: tuple[tuple[str, str | None], ...] = (
    (r"^shaker", "shaker"), (r"^clap", "snap"), (r"^wood|^clav", "block"),
)
SF_VELOCITIES = (30, 60, 90, 127)
SF_SPACING_S = 3.0

# Hydrogen instrument names -> our instruments; first match wins, None skips the sound.
_NAME_RULES: tuple[tuple[str, str | None], ...] = (
    (r"cowbell|clap|tambourine|roll|choke|agog|shaker|djembe|cajon", None),
    (r"(hat|hh).*(pedal|pd)|pedal.*(hat|hh)", "hihat_pedal"),
    (r"(hat|hh).*(open|op\b|semi|swish|free)|open.*(hat|hh)", "hihat_open"),
    (r"hat|hh", "hihat_closed"),
    (r"kick|bass ?drum", "kick"),
    (r"stick|rim click", "snare_rim"),
    (r"snare", "snare"),
    (r"(ride|crash).*(bell|cup)|^paiste bell$|ride-cup", "ride_bell"),
    (r"ride", "ride"),
    (r"crash|china|splash|cymbal", "crash"),
    (r"(^|[^a-z])tom.*(floor|low)|floor.*tom|low tom", "tom_low"),
    (r"(^|[^a-z])tom.*(mid|\b2\b)|mid.*tom", "tom_mid"),
    (r"(^|[^a-z])tom", "tom_high"),
)


@dataclass
class Layer:
    low: float  # velocity range in [0, 1] this sample answers
    high: float
    audio: np.ndarray
    gain: float = 1.0
    baked: float | None = None  # the velocity this sample was recorded at, when its loudness is real


@dataclass
class Kit:
    name: str
    layers: dict[str, list[Layer]] = field(default_factory=dict)

    def sample(self, instrument: str, velocity: float, rng: np.random.Generator) -> Layer | None:
        """A layer for ``instrument`` at ``velocity`` (0..1), or None when the kit lacks it."""
        options = self.layers.get(instrument)
        if not options:
            return None
        fitting = [layer for layer in options if layer.low <= velocity <= layer.high]
        if not fitting:
            fitting = [min(options, key=lambda layer: min(abs(layer.low - velocity), abs(layer.high - velocity)))]
        return fitting[rng.integers(len(fitting))]


def named_by(name: str, rules: tuple[tuple[str, str | None], ...]) -> str | None:
    """What the first rule whose pattern is found in ``name`` (lower-cased) names it; None skips."""
    lowered = name.lower()
    return next((target for pattern, target in rules if re.search(pattern, lowered)), None)


def trim_onset(audio: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    """Drop the silence before a sample's attack so labels and audio line up."""
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    if peak == 0.0:
        return audio
    start = int(np.argmax(np.abs(audio) >= threshold * peak))
    return audio[max(0, start - SAMPLE_RATE // 1000):]


def _read_mono(path: Path) -> np.ndarray:
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return trim_onset(resample(audio.mean(axis=1), rate, SAMPLE_RATE))


def load_hydrogen_kit(folder: Path, rules: tuple[tuple[str, str | None], ...] = _NAME_RULES) -> Kit:
    """A Hydrogen kit's samples, keyed by what ``rules`` make of each instrument's name."""
    root = ET.parse(folder / "drumkit.xml").getroot()
    ns = re.match(r"\{.*\}", root.tag)
    prefix = ns.group(0) if ns else ""
    kit = Kit(name=f"hydrogen:{folder.name}")
    for element in root.iter(f"{prefix}instrument"):
        name = element.findtext(f"{prefix}name") or ""
        instrument = named_by(name, rules)
        if instrument is None:
            continue
        volume = float(element.findtext(f"{prefix}volume") or 1.0)
        for layer in element.iter(f"{prefix}layer"):
            filename = layer.findtext(f"{prefix}filename")
            if not filename or not (folder / filename).exists():
                continue
            kit.layers.setdefault(instrument, []).append(Layer(
                low=float(layer.findtext(f"{prefix}min") or 0.0),
                high=float(layer.findtext(f"{prefix}max") or 1.0),
                audio=_read_mono(folder / filename),
                gain=volume * float(layer.findtext(f"{prefix}gain") or 1.0),
            ))
    return kit


# Hand percussion in the Hydrogen kits (not drum-kit pieces): sounds to learn to leave out.
PERCUSSION_RULES: tuple[tuple[str, str], ...] = (
    (r"tambourine", "tambourine"), (r"maraca|shaker", "shaker"), (r"cowbell", "cowbell"),
    (r"clave|woodblock", "block"), (r"finger snap", "snap"),
)


def load_percussion() -> Kit:
    """Every sampled hand-percussion sound on hand (Hydrogen kits, AVL, LMMS), as one kit."""
    parts = [load_hydrogen_kit(drumkit.parent, PERCUSSION_RULES) for drumkit in sorted(HYDROGEN_DIR.glob("*/drumkit.xml"))]
    for font in SOUNDFONTS.values():
        if font.path.exists() and font.notes is AVL_NOTES:
            parts.append(load_soundfont_kit("avl-percussion", font, 0, AVL_PERCUSSION_NOTES))
    if LMMS_DIR.exists():
        parts.append(load_sample_folder("lmms-percussion", LMMS_DIR, LMMS_PERCUSSION_RULES))
    kit = Kit(name="percussion")
    for part in parts:
        for sound, layers in part.layers.items():
            kit.layers.setdefault(sound, []).extend(layers)
    return kit


def _one_shot_midi(program: int, path: Path, notes: dict[str, tuple[int, ...]], channel: int) -> list[tuple[str, int]]:
    """Write a MIDI file playing every note of ``notes`` at every velocity, spaced apart."""
    track = mido.MidiTrack([mido.Message("program_change", channel=channel, program=program, time=0)])
    ticks = int(SF_SPACING_S * 960)  # 120 bpm, 480 ticks a beat -> 960 ticks a second
    order = []
    for instrument, keys in notes.items():
        for note, velocity in ((note, velocity) for note in keys for velocity in SF_VELOCITIES):
            track.append(mido.Message("note_on", channel=channel, note=note, velocity=velocity, time=0 if not order else ticks - 10))
            track.append(mido.Message("note_off", channel=channel, note=note, velocity=0, time=10))
            order.append((instrument, velocity))
    midi = mido.MidiFile(ticks_per_beat=480)
    midi.tracks.append(track)
    midi.save(path)
    return order


def render_midi(font: Path, midi_path: Path, gain: float = 0.6) -> np.ndarray:
    """Render a MIDI file with fluidsynth (its reverb and chorus off) to mono SAMPLE_RATE."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.wav"
        subprocess.run(
            ["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", str(gain), "-r", str(SAMPLE_RATE),
             "-F", str(out), str(font), str(midi_path)],
            check=True, capture_output=True,
        )
        audio, _ = sf.read(str(out), dtype="float32", always_2d=True)
    return audio.mean(axis=1)


def load_soundfont_kit(name: str, font: SoundFont, program: int, notes: dict[str, tuple[int, ...]] | None = None) -> Kit:
    """Kit ``program`` of ``font``, each of ``notes`` (default: the font's own map) rendered at four velocities."""
    kit = Kit(name=f"sf:{name}:{program}")
    with tempfile.TemporaryDirectory() as tmp:
        midi_path = Path(tmp) / "shots.mid"
        order = _one_shot_midi(program, midi_path, notes or font.notes, font.channel)
        audio = render_midi(font.path, midi_path)
    span = int(SF_SPACING_S * SAMPLE_RATE)
    for index, (instrument, velocity) in enumerate(order):
        shot = audio[index * span: (index + 1) * span - SAMPLE_RATE // 20]
        if len(shot) == 0 or np.max(np.abs(shot)) < 1e-4:
            continue
        fade = np.linspace(1.0, 0.0, SAMPLE_RATE // 50, dtype=np.float32)
        shot = shot.copy()
        shot[-len(fade):] *= fade
        kit.layers.setdefault(instrument, []).append(Layer(
            low=velocity / 127 - 0.15, high=velocity / 127 + 0.15, audio=trim_onset(shot), baked=velocity / 127))
    return kit


def load_sample_folder(name: str, folder: Path, rules: tuple[tuple[str, str | None], ...]) -> Kit:
    """Loose one-shots named by ``rules``; a ``soft``/``hard`` in the name sets the velocity range."""
    kit = Kit(name=name)
    for path in sorted(folder.glob("*")):
        sound = named_by(path.stem, rules)
        if sound is None or path.suffix.lower() not in (".flac", ".ogg", ".wav"):
            continue
        try:
            audio = _read_mono(path)
        except sf.LibsndfileError:  # LMMS ships a few files that are not what their suffix says
            continue
        low, high, baked = (0.0, 0.55, 0.4) if "soft" in path.stem else (0.45, 1.0, 0.85) if "hard" in path.stem else (0.0, 1.0, None)
        kit.layers.setdefault(sound, []).append(Layer(low, high, audio, baked=baked))
    return kit


def all_kits() -> list[Kit]:
    """Every kit the installed packages provide (slow: call once and cache)."""
    kits = [load_hydrogen_kit(HYDROGEN_DIR / name) for name in HYDROGEN_KITS if (HYDROGEN_DIR / name).exists()]
    for name, font in SOUNDFONTS.items():
        if font.path.exists():
            kits.extend(load_soundfont_kit(name, font, program) for program in font.programs)
    if SONIC_PI_DIR.exists():
        kits.append(load_sample_folder("sonic-pi", SONIC_PI_DIR, SONIC_PI_RULES))
    if LMMS_DIR.exists():
        kits.append(load_sample_folder("lmms", LMMS_DIR, LMMS_RULES))
    return [kit for kit in kits if {"kick", "snare", "hihat_closed"} <= kit.layers.keys()]
