import mido
import pytest

from models.midi import DRUM_CHANNEL, hits_to_midi
from models.peaks import Hit
from models.tempo import estimate_bpm
from models.vocab import GM_NOTE


def hit(t: float, instrument: str, velocity: float = 0.8) -> Hit:
    from models.vocab import FAMILY_OF
    return Hit(t, instrument, FAMILY_OF[instrument], velocity, 0.9)


def test_midi_has_gm_notes_on_channel_10_with_times_and_velocities(tmp_path):
    hits = [hit(0.5, "kick", 1.0), hit(1.0, "snare_rim", 0.5), hit(1.25, "hihat_open", 0.01)]
    path = tmp_path / "out.mid"
    hits_to_midi(hits, bpm=96).save(path)
    now, seen = 0.0, []
    for message in mido.MidiFile(path):
        now += message.time
        if message.type == "note_on" and message.velocity > 0:
            seen.append((round(now, 3), message.note, message.velocity, message.channel))
    assert seen == [(0.5, GM_NOTE["kick"], 127, DRUM_CHANNEL), (1.0, 37, 64, DRUM_CHANNEL), (1.25, 46, 1, DRUM_CHANNEL)]


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
