"""The training renderer's sound sources and realism: note maps, the multi-microphone kit,
the mix balance, rooms, and crops that oversample the rare drums."""
from pathlib import Path

import numpy as np
import pytest

from models.features import SAMPLE_RATE
from models.train.kits import AVL_NOTES, GM_NOTES, Layer
from models.train.multimic import MULDJORD_DIR, load_muldjord
from models.train.room import in_room, room_impulse
from models.train.synth import Balance
from models.network import HitNet
from models.train.train import Example, sample_batch
from models.vocab import FAMILIES, INSTRUMENTS


def test_avl_note_map_reads_no_swish_or_choke_as_a_drum():
    """AVL's 48 is a hi-hat swish and 50/52/58 are cymbal chokes: read as GM they became toms."""
    used = {note for notes in AVL_NOTES.values() for note in notes}
    assert used.isdisjoint({48, 50, 52, 58})
    assert set(AVL_NOTES["tom_high"] + AVL_NOTES["tom_mid"] + AVL_NOTES["tom_low"]) == {41, 43, 45, 47}
    assert set(AVL_NOTES) == set(GM_NOTES) == set(INSTRUMENTS)


@pytest.fixture(scope="module")
def muldjord():
    if not (MULDJORD_DIR / "hits.csv").exists():
        pytest.fail(f"the MuldjordKit is expected at {MULDJORD_DIR} (../shared/data/muldjord-kit)")
    return load_muldjord()


def test_multimic_kit_mixes_its_four_channels_per_example(muldjord):
    close_only = muldjord.mixdown(np.array([1.0, 0.0, 0.0, 0.0]))
    overheads_only = muldjord.mixdown(np.array([0.0, 0.0, 1.0, 0.0]))
    # crashes have no close microphone: only the overheads (and room) hear them
    assert max(np.abs(layer.audio).max() for layer in close_only.layers["crash"]) < 1e-3
    assert min(np.abs(layer.audio).max() for layer in overheads_only.layers["crash"]) > 1e-3
    # the real spill: the snare's hit is heard on the other close mics
    spill = muldjord.mixdown(np.array([0.0, 1.0, 0.0, 0.0]))
    assert min(np.abs(layer.audio).max() for layer in spill.layers["snare"]) > 1e-3
    # layers keep their recorded loudness order over the velocity range
    snares = sorted(muldjord.layers["snare"], key=lambda layer: layer.low)
    assert snares[0].baked < snares[-1].baked and snares[0].high <= snares[-1].low


def test_balance_puts_hihats_and_cymbals_under_kick_and_snare():
    rng = np.random.default_rng(0)
    layer = Layer(0.0, 1.0, np.ones(10, np.float32))
    draws = [Balance.draw(rng) for _ in range(300)]
    mean = {name: np.mean([b.level(name, 1.0, layer) for b in draws]) for name in ("snare", "hihat_closed", "crash")}
    assert mean["hihat_closed"] < 0.7 * mean["snare"] and mean["crash"] < 0.7 * mean["snare"]
    balance = draws[0]  # velocity maps to level exponentially, relative to a recorded layer's own velocity
    assert balance.level("snare", 0.5, layer) < balance.level("snare", 1.0, layer)
    recorded = Layer(0.0, 1.0, layer.audio, baked=0.5)
    assert balance.level("snare", 0.5, recorded) == pytest.approx(balance.gains["snare"])


def test_room_impulse_has_unit_energy_and_keeps_the_direct_sound_first():
    rng = np.random.default_rng(1)
    response = room_impulse(rng)
    assert np.sum(response**2) == pytest.approx(1.0, rel=1e-6)
    click = np.zeros(SAMPLE_RATE, np.float32)
    click[1000] = 1.0
    wet = in_room(click, rng)
    assert len(wet) == len(click) and np.argmax(np.abs(wet)) == 1000
    assert np.abs(wet[1100:]).max() > 0  # reverberation after the hit


def test_rare_chance_centres_crops_on_toms_and_cymbals():
    n = 3000
    record = {"features": np.zeros((n, 96), np.float16), "times": np.array([5.0, 10.0, 20.0], np.float32),
              "instruments": np.array([INSTRUMENTS.index(i) for i in ("kick", "tom_low", "crash")], np.int8),
              "velocities": np.ones(3, np.float32)}
    plain = Example({**record, "times": np.array([1.0], np.float32), "instruments": np.array([0], np.int8),
                     "velocities": np.ones(1, np.float32)})
    examples = [Example(record)] + [plain] * 50
    rare = [FAMILIES.index("tom"), FAMILIES.index("cymbal")]
    rng = np.random.default_rng(2)
    _, onsets, *_ = sample_batch(examples, 64, 100, rng, rare_chance=1.0)
    assert all(onsets[row, :, rare].max() == 1.0 for row in range(64))
    _, onsets, *_ = sample_batch(examples, 64, 100, rng, rare_chance=0.0)
    assert sum(onsets[row, :, rare].max() == 1.0 for row in range(64)) < 16


def test_a_checkpoint_loads_at_the_width_it_was_trained_at():
    wide = HitNet(width=160)
    loaded = HitNet.from_state_dict(wide.state_dict())
    assert loaded.project.out_channels == 160
