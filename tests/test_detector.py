"""The shipped detector: a beat on a real kit's one-shots comes back on time; streaming equals offline."""
import numpy as np
import pytest

from models.detector import Detector
from models.evaluate import evaluate
from models.features import SAMPLE_RATE
from models.synthetic import rock_beat


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector()


@pytest.fixture(scope="module")
def beat() -> tuple[np.ndarray, dict[str, list[float]]]:
    return rock_beat(bars=4, bpm=100)


def test_model_declares_bounded_lookahead(detector):
    assert 0 < detector.card.lookahead_ms <= 50


def test_example_beat_hits_come_back_within_10ms(detector, beat):
    audio, reference = beat
    hits = detector.transcribe(audio)
    predicted = {family: [h.t for h in hits if h.family == family] for family in reference}
    result = evaluate(predicted, reference, families=tuple(reference), tolerance=0.010)
    assert result["micro"]["f"] >= 0.9, result
    for hit in hits:
        assert 0.0 <= hit.velocity <= 1.0 and 0.0 <= hit.confidence <= 1.0


def _stream(detector: Detector, audio: np.ndarray, rng: np.random.Generator, max_chunk: int) -> list:
    stream, hits, i = detector.stream(), [], 0
    while i < len(audio):
        n = int(rng.integers(1, max_chunk))
        hits += stream.push(audio[i:i + n])
        i += n
    return hits + stream.flush()


@pytest.mark.parametrize("seed,max_chunk", [(0, 50), (1, 2000), (2, 30000)])
def test_streaming_in_random_chunks_equals_offline(detector, beat, seed, max_chunk):
    audio, _ = beat
    audio = audio + np.random.default_rng(seed).standard_normal(len(audio)).astype(np.float32) * 0.01
    offline = detector.transcribe(audio)
    streamed = sorted(_stream(detector, audio, np.random.default_rng(seed), max_chunk), key=lambda h: (h.t, h.family))
    assert len(offline) > 20
    assert [(h.t, h.instrument) for h in streamed] == [(h.t, h.instrument) for h in offline]
    for a, b in zip(streamed, offline):
        assert a.velocity == pytest.approx(b.velocity, abs=1e-4)
        assert a.confidence == pytest.approx(b.confidence, abs=1e-4)


def test_silence_and_tiny_inputs_give_no_hits(detector):
    assert detector.transcribe(np.zeros(SAMPLE_RATE, np.float32)) == []
    assert detector.transcribe(np.zeros(10, np.float32)) == []
    stream = detector.stream()
    assert stream.push(np.zeros(0, np.float32)) == [] and stream.flush() == []
