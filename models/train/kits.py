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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mido
import numpy as np
import soundfile as sf

from models.audio import resample
from models.features import SAMPLE_RATE
from models.vocab import GM_NOTE, INSTRUMENTS

HYDROGEN_DIR = Path("/usr/share/hydrogen/data/drumkits")
HYDROGEN_KITS = (
    "ColomboAcousticDrumkit", "ForzeeStereo", "Millo-Drums_v.1", "Millo_MultiLayered2",
    "Millo_MultiLayered3", "The Black Pearl 1.0", "rumpf_kit_z01_h2", "BJA_Pacific",
    "Audiophob", "VariBreaks",
)
SOUNDFONTS = {
    "FluidR3_GM": (Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"), (0, 8, 16, 24, 25, 32, 40)),
    "MuseScore_General": (Path("/usr/share/sounds/sf3/MuseScore_General_Full.sf3"), (0, 8, 16, 24, 25, 32, 40, 48)),
    "AVL_Black_Pearl": (Path("/usr/share/sounds/sf2/Black_Pearl_4_LV2.sf2"), (0,)),
    "AVL_Red_Zeppelin": (Path("/usr/share/sounds/sf2/Red_Zeppelin_4_LV2.sf2"), (0,)),
}
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


@dataclass
class Kit:
    name: str
    layers: dict[str, list[Layer]] = field(default_factory=dict)

    def sample(self, instrument: str, velocity: float, rng: np.random.Generator) -> tuple[np.ndarray, float] | None:
        """A sample for ``instrument`` at ``velocity`` (0..1) and the gain to play it with."""
        options = self.layers.get(instrument)
        if not options:
            return None
        fitting = [layer for layer in options if layer.low <= velocity <= layer.high]
        if not fitting:
            fitting = [min(options, key=lambda layer: min(abs(layer.low - velocity), abs(layer.high - velocity)))]
        layer = fitting[rng.integers(len(fitting))]
        return layer.audio, layer.gain


def instrument_for_name(name: str) -> str | None:
    lowered = name.lower()
    for pattern, instrument in _NAME_RULES:
        if re.search(pattern, lowered):
            return instrument
    return None


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


def load_hydrogen_kit(folder: Path, name_rule: Callable[[str], str | None] = instrument_for_name) -> Kit:
    """A Hydrogen kit's samples, keyed by what ``name_rule`` makes of each instrument's name."""
    root = ET.parse(folder / "drumkit.xml").getroot()
    ns = re.match(r"\{.*\}", root.tag)
    prefix = ns.group(0) if ns else ""
    kit = Kit(name=f"hydrogen:{folder.name}")
    for element in root.iter(f"{prefix}instrument"):
        name = element.findtext(f"{prefix}name") or ""
        instrument = name_rule(name)
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


def percussion_for_name(name: str) -> str | None:
    lowered = name.lower()
    return next((sound for pattern, sound in PERCUSSION_RULES if re.search(pattern, lowered)), None)


def load_hydrogen_percussion() -> Kit:
    """Every hand-percussion sample of the installed Hydrogen kits, as one kit."""
    kit = Kit(name="hydrogen:percussion")
    for drumkit in sorted(HYDROGEN_DIR.glob("*/drumkit.xml")):
        for sound, layers in load_hydrogen_kit(drumkit.parent, percussion_for_name).layers.items():
            kit.layers.setdefault(sound, []).extend(layers)
    return kit


def _one_shot_midi(program: int, path: Path) -> list[tuple[str, int]]:
    """Write a MIDI file playing every instrument at every velocity, spaced apart."""
    track = mido.MidiTrack([mido.Message("program_change", channel=9, program=program, time=0)])
    ticks = int(SF_SPACING_S * 960)  # 120 bpm, 480 ticks a beat -> 960 ticks a second
    order = []
    for instrument in INSTRUMENTS:
        for velocity in SF_VELOCITIES:
            track.append(mido.Message("note_on", channel=9, note=GM_NOTE[instrument], velocity=velocity, time=0 if not order else ticks - 10))
            track.append(mido.Message("note_off", channel=9, note=GM_NOTE[instrument], velocity=0, time=10))
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


def load_soundfont_kit(name: str, font: Path, program: int) -> Kit:
    kit = Kit(name=f"sf:{name}:{program}")
    with tempfile.TemporaryDirectory() as tmp:
        midi_path = Path(tmp) / "shots.mid"
        order = _one_shot_midi(program, midi_path)
        audio = render_midi(font, midi_path)
    span = int(SF_SPACING_S * SAMPLE_RATE)
    for index, (instrument, velocity) in enumerate(order):
        shot = audio[index * span: (index + 1) * span - SAMPLE_RATE // 20]
        if len(shot) == 0 or np.max(np.abs(shot)) < 1e-4:
            continue
        fade = np.linspace(1.0, 0.0, SAMPLE_RATE // 50, dtype=np.float32)
        shot = shot.copy()
        shot[-len(fade):] *= fade
        # Velocity is already baked into the rendering, so the gain is 1 at the rendered velocity.
        kit.layers.setdefault(instrument, []).append(Layer(
            low=velocity / 127 - 0.15, high=velocity / 127 + 0.15, audio=trim_onset(shot), gain=1.0 / (velocity / 127)))
    return kit


def all_kits() -> list[Kit]:
    """Every kit the installed packages provide (slow: call once and cache)."""
    kits = [load_hydrogen_kit(HYDROGEN_DIR / name) for name in HYDROGEN_KITS if (HYDROGEN_DIR / name).exists()]
    for name, (font, programs) in SOUNDFONTS.items():
        if font.exists():
            kits.extend(load_soundfont_kit(name, font, program) for program in programs)
    return [kit for kit in kits if {"kick", "snare", "hihat_closed"} <= kit.layers.keys()]
