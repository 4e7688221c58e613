"""Drum separation with a tiny Demucs made here (no downloaded weights): loading and checksums,
windowed streaming equal to ``demucs.apply.apply_model``, ``auto`` decisions, and the service
with and without separation (health, job results, ``separate=on``, the live ``ready``)."""
from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from websockets.sync.client import connect

from batch.pipeline import decide_separation
from models.audio import resample
from models.detector import Detector
from models.mixture import judge
from models.separation import (Separation, SeparationUnavailable, WeightsError, find_weights, load_separation,
                               load_separator, save_model)
from models.synthetic import rock_beat
from stream.session import resampler_delay_ms
from tests.conftest import RunningServer
from web.app import create_app

torch = pytest.importorskip("torch")
pytest.importorskip("demucs.apply")
from demucs.apply import apply_model  # noqa: E402
from demucs.htdemucs import HTDemucs  # noqa: E402

SOURCES = ["drums", "bass", "other", "vocals"]
TINY = dict(channels=4, depth=2, nfft=512, segment=1, dconv_comp=2, t_layers=0)


def tiny_htdemucs(seed: int = 0, **overrides) -> HTDemucs:
    """An untrained HTDemucs of ~6 k parameters with the real model's class and 1 s segment."""
    torch.manual_seed(seed)
    return HTDemucs(SOURCES, **{**TINY, **overrides}).eval()


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return save_model(tiny_htdemucs(), tmp_path_factory.mktemp("demucs"), "tiny")


@pytest.fixture(scope="module")
def separator(weights):
    return load_separator(weights, name="tiny", device="cpu")


def noise(seconds: float, seed: int = 0, rate: int = 44100) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * rate)) * 0.1).astype(np.float32)


def with_band(drums: np.ndarray, rate: int) -> np.ndarray:
    """Drums plus a bass line and a held chord: what a full mix has that drums lack."""
    t = np.arange(len(drums)) / rate
    bass = 0.3 * np.sin(2 * np.pi * 110 * t) * (1 + np.sin(2 * np.pi * 0.5 * t)) / 2
    chord = 0.2 * sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0)) / 3
    return (drums + bass + chord).astype(np.float32)


# --- loading ------------------------------------------------------------------------------

def test_saved_weights_load_through_the_real_loader(weights, separator):
    assert weights.name.startswith("tiny-") and weights.suffix == ".th"
    assert separator.device == "cpu" and separator.samplerate == 44100 and separator.audio_channels == 2
    assert separator.max_window_seconds == 1.0 and separator.drums_index == 0
    folder = load_separator(weights.parent, name="tiny", device="cpu")  # a folder holding one model
    assert folder.name == "tiny"
    status = Separation(separator, weights=str(weights)).status()
    assert status["available"] and status["model"] == "tiny" and status["device"] == "cpu"


def test_checksum_failure_and_unverifiable_weights_are_clear_errors(weights, tmp_path):
    broken = tmp_path / weights.name
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    broken.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="checksum mismatch"):
        load_separator(broken, device="cpu")
    unnamed = tmp_path / "model.th"
    unnamed.write_bytes(weights.read_bytes())
    with pytest.raises(WeightsError, match="cannot verify"):
        load_separator(unnamed, device="cpu")
    (tmp_path / "model.th.sha256").write_text(hashlib.sha256(weights.read_bytes()).hexdigest() + "  model.th\n")
    assert load_separator(unnamed, name="tiny", device="cpu").name == "tiny"  # a .sha256 beside it verifies
    # The service never raises for bad weights: separation is unavailable, with the reason.
    separation = load_separation(broken, device="cpu")
    assert not separation.available and "checksum mismatch" in separation.reason


def test_weights_are_found_in_the_hugging_face_cache_and_verified(tmp_path, monkeypatch):
    """The layout ``drumscribe models fetch demucs`` leaves: a snapshot of symlinks to blobs named by SHA-256."""
    from safetensors.torch import save_file

    model = tiny_htdemucs(seed=1)
    args, kwargs = model._init_args_kwargs
    staged = tmp_path / "staged.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(staged),
              metadata={"klass": "demucs.htdemucs.HTDemucs", "args": json.dumps(list(args)),
                        "kwargs": json.dumps(kwargs)})
    repo = tmp_path / "hub" / "models--adefossez--HTDemucs"
    digest = hashlib.sha256(staged.read_bytes()).hexdigest()
    (repo / "blobs").mkdir(parents=True)
    staged.rename(repo / "blobs" / digest)
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "htdemucs.yaml").write_text("models: ['955717e8']\n")
    (snapshot / "955717e8.safetensors").symlink_to(repo / "blobs" / digest)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("DRUMSCRIBE_DEMUCS_WEIGHTS", raising=False)
    assert find_weights("htdemucs") == snapshot
    separation = load_separation(device="cpu")
    assert separation.available and separation.separator.name == "htdemucs"
    (repo / "blobs" / digest).write_bytes(b"not the weights")
    with pytest.raises(WeightsError, match="checksum mismatch"):
        load_separator(snapshot, "htdemucs", device="cpu")


def test_no_weights_means_unavailable_not_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("DRUMSCRIBE_DEMUCS_WEIGHTS", raising=False)
    separation = load_separation()
    assert not separation.available and "no Demucs weights found" in separation.reason
    with pytest.raises(SeparationUnavailable, match="no Demucs weights"):
        separation.require()
    monkeypatch.setenv("DRUMSCRIBE_DEMUCS_WEIGHTS", str(tmp_path / "missing.th"))
    assert "no such file" in load_separation().reason


# --- streaming = offline ------------------------------------------------------------------

@pytest.mark.parametrize("window, overlap", [(1.0, 0.25), (0.5, 0.5)])
def test_streaming_windows_equal_apply_model(separator, window, overlap):
    """Pieces cut anywhere give the drums the whole file gives, and both are apply_model's
    (shifts=0, split=True, same overlap, transition and segment): the same windows, padding,
    weights and order of additions, so equal to float rounding (in fact bit for bit on CPU)."""
    audio = noise(3.3, seed=2)
    mix = torch.from_numpy(np.stack([audio, audio]))[None]
    reference = apply_model(separator.members[0][0], mix, shifts=0, split=True, overlap=overlap,
                            transition_power=1.0, segment=window)[0, 0].mean(0).numpy()

    whole = separator.stream(window, overlap)
    offline = np.concatenate([whole.push(audio), whole.flush()])

    stream, pieces, start = separator.stream(window, overlap), [], 0
    rng = np.random.default_rng(3)
    while start < len(audio):
        size = int(rng.integers(1, 30000))
        out = stream.push(audio[start:start + size])
        start += len(audio[start:start + size])
        assert start - (sum(map(len, pieces)) + len(out)) <= stream.lookahead_samples  # never later than a window
        pieces.append(out)
    pieces.append(stream.flush())
    streamed = np.concatenate(pieces)

    assert len(reference) == len(offline) == len(streamed) == len(audio)
    np.testing.assert_allclose(offline, reference, rtol=0, atol=1e-6)
    np.testing.assert_allclose(streamed, offline, rtol=0, atol=1e-6)
    assert stream.lookahead_samples == int(44100 * window)


def test_whole_file_separation_reports_progress(separator):
    audio = noise(4.0, seed=4)
    fractions: list[float] = []
    drums = separator.separate(audio, fractions.append)
    assert len(drums) == len(audio) and np.isfinite(drums).all()
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) >= 2


def test_live_separated_input_equals_offline(separator):
    """The live chain (resample in, windows, resample out), fed in frames, equals the offline chain."""
    from stream.separated import SeparatedInput

    rate_in, rate_out = 48000, 24000
    audio = noise(2.5, seed=5, rate=rate_in)
    live = SeparatedInput(rate_in, separator, rate_out, window_seconds=0.5, overlap=0.25)
    pieces = [live.push(audio[i:i + 960]) for i in range(0, len(audio), 960)]
    pieces.append(live.push(np.zeros(0, np.float32), last=True))
    streamed = np.concatenate(pieces)
    offline = resample(separator.separate(resample(audio, rate_in, 44100), window_seconds=0.5, overlap=0.25),
                       44100, rate_out)
    assert len(streamed) == len(offline)
    np.testing.assert_allclose(streamed, offline, rtol=0, atol=1e-5)
    expected = resampler_delay_ms(rate_in, 44100) + 500 + resampler_delay_ms(44100, rate_out)
    assert live.delay_ms == pytest.approx(expected)


# --- auto decisions -----------------------------------------------------------------------

def test_auto_separates_full_mixes_only_and_only_with_weights(separator):
    drums, _ = rock_beat(bars=4, bpm=100, rate=44100)
    band = with_band(drums, 44100)
    assert not judge(drums, 44100).full_mix and judge(band, 44100).full_mix
    available, missing = Separation(separator), Separation.unavailable("no weights here")

    assert decide_separation("auto", available, band, 44100)["applied"] is True
    kept = decide_separation("auto", available, drums, 44100)
    assert kept["applied"] is False and kept["full_mix"] is False
    skipped = decide_separation("auto", missing, band, 44100)
    assert skipped == {"requested": "auto", "applied": False, "available": False, "reason": "no weights here"}
    assert decide_separation("off", available, band, 44100)["applied"] is False
    assert decide_separation("on", available, drums, 44100) == {"requested": "on", "applied": True,
                                                               "available": True, "model": "tiny"}
    with pytest.raises(SeparationUnavailable, match="no weights here"):
        decide_separation("on", missing, band, 44100)


# --- the service --------------------------------------------------------------------------

def submit(client, path: Path, **fields):
    with path.open("rb") as f:
        return client.post("/api/v1/jobs", files={"file": (path.name, f, "audio/wav")}, data=fields)


def wait_for(client, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not end")


def start_live(server: RunningServer, separate) -> dict:
    with connect(server.ws + "/api/v1/stream", open_timeout=10) as ws:
        ws.send(json.dumps({"type": "start", "sample_rate": 48000, "channels": 1, "encoding": "f32le",
                            "separate": separate}))
        return json.loads(ws.recv(timeout=30))


def test_without_weights_separation_is_reported_unavailable_everywhere(settings, beat_wav):
    missing = Separation.unavailable("no Demucs weights found; set DRUMSCRIBE_DEMUCS_WEIGHTS")
    with RunningServer(create_app(settings, separation=missing)) as server:
        http = httpx.Client(base_url=server.http, timeout=60)
        health = http.get("/api/v1/health").json()
        assert health["separation"] == {"available": False, "reason": missing.reason}

        refused = submit(http, beat_wav, separate="on")
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "separation_unavailable"
        assert "no Demucs weights found" in refused.json()["error"]["message"]
        assert not any((settings.jobs_dir).iterdir())  # nothing left behind

        job_id = submit(http, beat_wav, separate="auto").json()["id"]
        assert wait_for(http, job_id)["status"] == "succeeded"
        result = http.get(f"/api/v1/jobs/{job_id}/result").json()
        assert result["separation"] == {"requested": "auto", "applied": False, "available": False,
                                        "reason": missing.reason}

        ready = start_live(server, True)
        assert ready["type"] == "ready" and ready["separate"] is False and ready["separation_available"] is False
        assert ready["lookahead_ms"] < 100
        error = start_live(server, "yes")
        assert error["type"] == "error" and error["code"] == "invalid_format"
        http.close()


def test_with_weights_jobs_separate_and_live_sessions_declare_their_latency(settings, beat_wav, separator):
    available = Separation(separator, weights="tiny")
    with RunningServer(create_app(settings, separation=available)) as server:
        http = httpx.Client(base_url=server.http, timeout=60)
        assert http.get("/api/v1/health").json()["separation"]["available"] is True

        job_id = submit(http, beat_wav, separate="on").json()["id"]
        with http.stream("GET", f"/api/v1/jobs/{job_id}/events") as events:
            stages = [json.loads(line[6:])["stage"] for line in events.iter_lines() if line.startswith("data: ")]
        assert "separate" in stages and stages[-1] == "done"  # events are polled: a quick stage may go unseen
        result = http.get(f"/api/v1/jobs/{job_id}/result").json()
        assert result["separation"] == {"requested": "on", "applied": True, "available": True, "model": "tiny"}

        plain, separated = start_live(server, False), start_live(server, True)
        assert plain["separate"] is False and plain["separation_available"] is True
        assert separated["separate"] is True
        detector: Detector = server.app.state.detector
        added = (resampler_delay_ms(48000, 44100) + 1000 + resampler_delay_ms(44100, detector.card.sample_rate))
        assert separated["lookahead_ms"] == detector.card.lookahead_ms + math.ceil(added)

        # A short separated session end to end: audio in, final out; its score is separated too.
        audio = resample(sf.read(beat_wav, dtype="float32")[0].mean(axis=1), 44100, 48000)[:48000 * 3]
        with connect(server.ws + "/api/v1/stream", open_timeout=10) as ws:
            ws.send(json.dumps({"type": "start", "sample_rate": 48000, "channels": 1, "encoding": "f32le",
                                "separate": True}))
            assert json.loads(ws.recv(timeout=30))["separate"] is True
            for i in range(0, len(audio), 4800):
                ws.send(audio[i:i + 4800].tobytes())
            ws.send(json.dumps({"type": "stop"}))
            messages = []
            while not messages or messages[-1]["type"] != "final":
                messages.append(json.loads(ws.recv(timeout=60)))
        final = messages[-1]
        assert final["status"] == "succeeded"
        score = http.get(f"/api/v1/jobs/{final['job_id']}/result").json()
        assert score["separation"]["applied"] is True
        http.close()
