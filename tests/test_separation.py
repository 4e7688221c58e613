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
        assert error["type"] == "error" and error["code"] == "invalid_start"
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


# --- live windows of many sessions in one batch -------------------------------------------

def test_batched_windows_equal_single_windows(separator):
    """One stacked forward pass per group of like windows (full windows, a shorter tail, another
    window length) gives each window's drums as its own call does."""
    windows = []
    for seed, window in ((6, 1.0), (7, 1.0), (8, 0.5)):
        stream = separator.stream(window, 0.25)
        windows += stream.feed(noise(2.2, seed=seed)) + stream.close()
    assert len({(w.input.shape[-1], w.length) for w in windows}) >= 3 and len(windows) > 8
    batched = separator.drums_batch(windows)
    for window, drums in zip(windows, batched):
        alone = separator.drums_batch([window])[0]
        assert drums.shape == alone.shape == (2, window.length)
        np.testing.assert_allclose(drums.numpy(), alone.numpy(), rtol=0, atol=1e-5)


LIVE_START = {"type": "start", "sample_rate": 48000, "channels": 1, "encoding": "f32le", "separate": True}
FRAME = 4800  # 100 ms at 48 kHz


def beat_at_48k(beat_wav: Path, seconds: float = 3.0, reverse: bool = False) -> np.ndarray:
    audio = resample(sf.read(beat_wav, dtype="float32")[0].mean(axis=1), 44100, 48000)[:int(48000 * seconds)]
    return np.ascontiguousarray(audio[::-1] * 0.7 if reverse else audio, dtype=np.float32)


def recording_drums(session) -> list[np.ndarray]:
    """Spy on what the session's detector hears."""
    heard, feed = [], session.stream.feed
    session.stream.feed = lambda drums: (heard.append(np.array(drums)), feed(drums))[1]
    return heard


def alone(detector: Detector, separator, audio: np.ndarray) -> tuple[list[dict], np.ndarray]:
    """A separated session by itself, each window separated on its own as it completes (no batcher)."""
    from stream.pcm import PcmFormat
    from stream.separated import SeparatedSession

    session = SeparatedSession(detector, PcmFormat.parse(LIVE_START), separator)
    heard = recording_drums(session)
    for start in range(0, len(audio), FRAME):
        step = session.accept(audio[start:start + FRAME].tobytes())
        if step is not None:
            session.take(detector.model.run([step])[0])
    tail = session.end()
    if tail is not None:
        session.take(detector.model.run([tail])[0])
    session.finish(detector.model.run([session.final_step()])[0])
    return [hit.to_dict() for hit in session.hits], np.concatenate(heard)


def same_hits(got: list[dict], expected: list[dict]) -> None:
    assert [(h["t"], h["instrument"]) for h in got] == [(h["t"], h["instrument"]) for h in expected]
    for a, b in zip(got, expected):
        assert a["velocity"] == pytest.approx(b["velocity"], abs=2e-3)
        assert a["confidence"] == pytest.approx(b["confidence"], abs=2e-3)


def test_sessions_in_step_share_each_separation_batch(separator, beat_wav):
    """Two runners with the real batchers, frames arriving together: every window goes in a batch
    of two, and each session hears the drums (and finds the hits) it would alone."""
    import asyncio

    from stream.batcher import InferenceBatcher
    from stream.config import LiveSettings
    from stream.pcm import PcmFormat
    from stream.separated import SeparatedRunner, SeparatedSession
    from stream.separation_batcher import SeparationBatcher

    detector = Detector()
    audios = [beat_at_48k(beat_wav), beat_at_48k(beat_wav, reverse=True)]

    async def together() -> tuple[list[SeparatedRunner], SeparationBatcher, list[list[np.ndarray]]]:
        separation = SeparationBatcher(separator, max_wait=0.05, max_batch=8)
        network = InferenceBatcher(detector.model)
        runners, heard = [], []
        for _ in audios:
            session = SeparatedSession(detector, PcmFormat.parse(LIVE_START), separator)
            heard.append(recording_drums(session))
            runners.append(SeparatedRunner(session, network, separation, LiveSettings(notation_every=0),
                                           lambda message: None, None))
        for start in range(0, len(audios[0]), FRAME):
            await asyncio.gather(*(r.audio(a[start:start + FRAME].tobytes()) for r, a in zip(runners, audios)))
        await asyncio.gather(*(r.drain() for r in runners))
        separation.close()
        network.close()
        return runners, separation, heard

    runners, separation, heard = asyncio.run(together())
    windows = runners[0].session.input.separator.windows_run
    assert windows >= 4 and separation.items == 2 * windows
    assert separation.largest >= 2 and separation.batches <= windows  # every window had company
    found = 0
    for runner, drums, audio in zip(runners, heard, audios):
        hits, expected = alone(detector, separator, audio)
        np.testing.assert_allclose(np.concatenate(drums), expected, rtol=0, atol=1e-5)
        same_hits([hit.to_dict() for hit in runner.session.hits], hits)
        found += len(hits)
    assert found  # the untrained tiny model lets few hits through: the drums above are the strong check


def test_two_separated_live_sessions_at_once_get_what_each_gets_alone(settings, beat_wav, separator):
    """Through the real server: two separated sessions streaming at once (their windows batched
    together) each get the hits the same audio gets in a session by itself."""
    audios = [beat_at_48k(beat_wav), beat_at_48k(beat_wav, reverse=True)]
    with RunningServer(create_app(settings, separation=Separation(separator, weights="tiny"))) as server:
        with connect(server.ws + "/api/v1/stream", open_timeout=10) as a, \
                connect(server.ws + "/api/v1/stream", open_timeout=10) as b:
            for ws in (a, b):
                ws.send(json.dumps(LIVE_START))
                assert json.loads(ws.recv(timeout=30))["separate"] is True
            for start in range(0, len(audios[0]), FRAME):
                for ws, audio in ((a, audios[0]), (b, audios[1])):
                    ws.send(audio[start:start + FRAME].tobytes())
            got = []
            for ws in (a, b):
                ws.send(json.dumps({"type": "stop"}))
                messages = [json.loads(ws.recv(timeout=60))]
                while messages[-1]["type"] != "final":
                    messages.append(json.loads(ws.recv(timeout=60)))
                got.append([hit for m in messages if m["type"] == "hits" for hit in m["hits"]])
        assert server.app.state.gateway.separation.items >= 8  # every window went through the shared batcher
        detector: Detector = server.app.state.detector
    for hits, audio in zip(got, audios):
        same_hits(hits, alone(detector, separator, audio)[0])
