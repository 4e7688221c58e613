"""The network's declared context and look-ahead are what it computes; export and loading hold."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from models.detector import Detector  # noqa: E402
from models.network import CONTEXT_FRAMES, CONV_LOOKAHEAD, RECEPTIVE_FIELD, HitNet, StreamingHitNet  # noqa: E402
from models.runtime import HitModel, ModelError, Step  # noqa: E402
from models.train.export import export  # noqa: E402


@pytest.fixture(scope="module")
def net() -> HitNet:
    torch.manual_seed(0)
    model = HitNet(width=16).eval()
    for module in model.modules():  # non-trivial batch-norm statistics
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model


def test_each_output_depends_on_exactly_its_declared_frames(net):
    frames = 200
    x = torch.rand(1, frames, 96) * 5
    base = net(x)[0]
    assert base.shape[0] == frames - RECEPTIVE_FIELD + 1
    for j in (0, 80, 150, frames - 1):
        changed = x.clone()
        changed[0, j] += 3.0
        touched = torch.nonzero((net(changed)[0] - base).abs().sum(-1) > 1e-6).flatten().tolist()
        # output k belongs to frame k + CONTEXT_FRAMES and reads frames [k, k + RECEPTIVE_FIELD - 1]
        expected = [k for k in range(base.shape[0]) if k <= j <= k + CONTEXT_FRAMES + CONV_LOOKAHEAD]
        assert touched == expected


def test_streaming_steps_equal_the_whole_input(net):
    """Any split of the frames into steps gives the whole-input outputs, exactly."""
    streaming = StreamingHitNet(net).eval()
    x = torch.rand(2, 240, 96) * 5
    padded = torch.cat([torch.zeros(2, CONTEXT_FRAMES, 96), x, torch.zeros(2, CONV_LOOKAHEAD, 96)], dim=1)
    expected = net(padded)
    _, state = streaming(torch.zeros(2, RECEPTIVE_FIELD, 96), torch.zeros(2, streaming.state_size))
    rest, outputs, start = torch.cat([x, torch.zeros(2, CONV_LOOKAHEAD, 96)], dim=1), [], 0
    for size in (1, 7, 2, 64, 3, 1, 200):
        out, state = streaming(rest[:, start:start + size], state)
        outputs.append(out)
        start += size
    got = torch.cat(outputs, dim=1)[:, CONV_LOOKAHEAD:]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_onnx_export_matches_torch_and_loads_with_checksum(net, tmp_path):
    export(net, tmp_path, {"version": "test"})
    model = HitModel(tmp_path, threads=1)
    assert model.card.lookahead_ms <= 50 and model.card.version == "test"
    x = np.random.default_rng(0).random((2, 150, 96)).astype(np.float32)
    padded = np.concatenate([np.zeros((2, CONTEXT_FRAMES, 96), np.float32), x], axis=1)
    expected = torch.sigmoid(net(torch.from_numpy(padded))).detach().numpy()
    # one call holding two streams of 150 frames and one of 40; the outputs trail by the look-ahead
    state = model.initial_state
    got = model.run([Step(x[0], state), Step(x[1], state), Step(x[0][:40], state)])
    np.testing.assert_allclose(got[0].probabilities[CONV_LOOKAHEAD:], expected[0], atol=1e-5)
    np.testing.assert_allclose(got[1].probabilities[CONV_LOOKAHEAD:], expected[1], atol=1e-5)
    np.testing.assert_allclose(got[2].probabilities[CONV_LOOKAHEAD:], expected[0][:37], atol=1e-5)
    second = model.run([Step(x[0][40:], got[2].state)])[0]
    np.testing.assert_allclose(second.probabilities, expected[0][37:147], atol=1e-5)
    assert Detector(model).transcribe(np.zeros(24000, np.float32)) is not None


def test_tampered_or_missing_weights_are_refused(net, tmp_path):
    export(net, tmp_path, {})
    onnx = tmp_path / "hitnet.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="checksum"):
        HitModel(tmp_path)
    with pytest.raises(ModelError, match="no model"):
        HitModel(tmp_path / "nowhere")
