"""What the training renderer mixes in besides the drums: strummed guitars and hand percussion."""
import mido
import numpy as np
import pytest

from models.train.accompaniment import GUITAR_PROGRAMS, PERCUSSION_CHANNEL, percussion_pattern, write_band, write_percussion


def _note_ons(path) -> list[tuple[int, int, int]]:
    """(absolute tick, channel, note) of every note-on."""
    tick, out = 0, []
    for message in mido.MidiFile(path).tracks[0]:
        tick += message.time
        if message.type == "note_on" and message.velocity > 0:
            out.append((tick, message.channel, message.note))
    return out


def test_strummed_guitars_spread_their_strings_over_milliseconds(tmp_path):
    bpm, strummed = 100.0, 0
    for seed in range(40):
        path = tmp_path / f"band{seed}.mid"
        write_band(path, bpm, 4, 8.0, np.random.default_rng(seed), strums=True)
        programs = {m.channel: m.program for m in mido.MidiFile(path).tracks[0] if m.type == "program_change"}
        for channel in (c for c, program in programs.items() if program in GUITAR_PROGRAMS):  # only chords use guitars
            ticks = sorted(t for t, c, _ in _note_ons(path) if c == channel)
            gaps = np.diff(ticks) * 60.0 / bpm / 480  # seconds
            strum_gaps = gaps[(gaps > 0) & (gaps < 0.05)]
            assert len(strum_gaps) and strum_gaps.max() <= 0.021  # strings 4-20 ms apart
            strummed += 1
    assert strummed  # some seed chose a guitar for the chords


def test_block_chords_without_strums(tmp_path):
    for seed in range(40):
        path = tmp_path / f"band{seed}.mid"
        write_band(path, 100.0, 4, 8.0, np.random.default_rng(seed))
        programs = {m.channel: m.program for m in mido.MidiFile(path).tracks[0] if m.type == "program_change"}
        guitars = [c for c, program in programs.items() if program in GUITAR_PROGRAMS]
        if guitars:
            ticks = [t for t, c, _ in _note_ons(path) if c == guitars[0]]
            assert len(ticks) > len(set(ticks))  # notes of a chord start together
            return
    pytest.fail("no seed chose a guitar for the chords")


def test_percussion_is_steady_and_on_channel_ten(tmp_path):
    rng = np.random.default_rng(3)
    strokes = percussion_pattern(120.0, 4, 10.0, rng)
    times = np.array([t for t, _ in strokes])
    assert len(strokes) >= 15 and np.all(np.diff(times) > 0) and times[-1] < 10.5
    assert all(0 < v <= 1 for _, v in strokes)
    write_percussion(tmp_path / "perc.mid", 120.0, 4, 10.0, rng)
    assert {c for _, c, _ in _note_ons(tmp_path / "perc.mid")} == {PERCUSSION_CHANNEL}
