import mido
import pytest

from models.beats import default_grid
from models.midi import DRUM_CHANNEL, DrumNote, drum_midi, performance_midi
from models.peaks import Hit
from models.tempo import estimate_bpm
from models.vocab import GM_NOTE


def hit(t: float, instrument: str, velocity: float = 0.8) -> Hit:
    from models.vocab import FAMILY_OF
    return Hit(t, instrument, FAMILY_OF[instrument], velocity, 0.9)


def test_midi_has_gm_notes_on_channel_10_with_times_and_velocities(tmp_path):
    hits = [hit(0.5, "kick", 1.0), hit(1.0, "snare_rim", 0.5), hit(1.25, "hihat_open", 0.01)]
    path = tmp_path / "out.mid"
    performance_midi(default_grid(0.0, 96.0), hits).save(path)
    now, seen = 0.0, []
    for message in mido.MidiFile(path):
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            seen.append((round(now, 3), message.note, message.velocity, message.channel))
    assert seen == [(0.5, GM_NOTE["kick"], 127, DRUM_CHANNEL), (1.0, 37, 64, DRUM_CHANNEL), (1.25, 46, 1, DRUM_CHANNEL)]


def test_drum_midi_follows_its_tempo_map_and_states_the_metre():
    tempos = [(0.0, 120.0), (3.0, 60.0), (6.0, 90.0)]  # three quarters of 0.5 s, three of 1 s, then 2/3 s
    notes = [DrumNote(q, q + 0.25, GM_NOTE["kick"], 0.8) for q in (0.0, 2.5, 3.0, 5.5, 6.0, 7.5)]
    midi = drum_midi(notes, tempos, (6, 8))
    signatures = [m for m in midi.tracks[0] if m.type == "time_signature"]
    assert [(m.numerator, m.denominator, m.clocks_per_click) for m in signatures] == [(6, 8, 36)]
    now, onsets = 0.0, []
    for message in midi:
        now += message.time
        if message.type == "note_on":
            onsets.append(now)
    assert onsets == pytest.approx([0.0, 1.25, 1.5, 4.0, 4.5, 5.5], abs=0.001)


@pytest.mark.parametrize("bpm", [72.0, 96.0, 120.0, 150.0])
def test_tempo_of_an_eighth_note_groove(bpm):
    beat = 60 / bpm
    hits = []
    for i in range(64):
        t = 0.3 + i * beat / 2
        hits.append(hit(t, "hihat_closed", 0.5))
        if i % 4 == 0:
            hits.append(hit(t, "kick", 0.9))
        if i % 4 == 2:
            hits.append(hit(t, "snare", 0.9))
    assert estimate_bpm(hits) == pytest.approx(bpm, rel=0.02)


def test_tempo_default_when_too_few_hits():
    assert estimate_bpm([hit(0.1, "kick")], default=100.0) == 100.0
