"""The live WebSocket protocol, end to end through a real server, against offline transcription."""
from __future__ import annotations

import dataclasses
import json
import math
import time

import httpx
import numpy as np
import pytest
import soundfile as sf
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from models.audio import read_audio, resample
from models.detector import Detector
from stream.config import LiveSettings
from stream.session import resampler_delay_ms
from tests.conftest import RunningServer
from web.app import create_app

# Stop waits for the notation under way: a loaded machine renders it slowly, and the test needs one.
FAST = LiveSettings(notation_every=2.0, notation_grace=60.0)


class Client:
    """A browser-free client of one running app: HTTP calls and WebSocket sessions."""

    def __init__(self, server: RunningServer) -> None:
        self.server, self.app = server, server.app
        self.http = httpx.Client(base_url=server.http, timeout=60)

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def websocket_connect(self, path: str) -> "Socket":
        return Socket(self.server.ws + path)


class Socket:
    """A WebSocket client connection with the few calls the tests need."""

    def __init__(self, url: str) -> None:
        self._connecting = connect(url, max_size=None, open_timeout=10)

    def __enter__(self) -> "Socket":
        self.ws = self._connecting.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._connecting.__exit__(*exc)

    def send_json(self, message: dict) -> None:
        self.ws.send(json.dumps(message))

    def send_text(self, text: str) -> None:
        self.ws.send(text)

    def send_bytes(self, data: bytes) -> None:
        self.ws.send(data)

    def receive_json(self, timeout: float = 60) -> dict:
        return json.loads(self.ws.recv(timeout=timeout))


class app_client:
    """``with app_client(settings) as client``: the app served for real for the block."""

    def __init__(self, settings, live: LiveSettings = FAST) -> None:
        self.server = RunningServer(create_app(settings, live_settings=live))

    def __enter__(self) -> Client:
        self.server.__enter__()
        self.client = Client(self.server)
        return self.client

    def __exit__(self, *exc) -> None:
        self.client.http.close()
        self.server.__exit__(*exc)


def offline_hits(client: Client, path) -> list[dict]:
    detector: Detector = client.app.state.detector
    audio, rate = read_audio(path)
    return [hit.to_dict() for hit in detector.transcribe(resample(audio, rate, detector.card.sample_rate))]


def pcm(path, encoding: str, channels: int, rate: int) -> bytes:
    audio, source_rate = sf.read(path, dtype="float32", always_2d=True)
    audio = resample(audio, source_rate, rate) if rate != source_rate else audio
    audio = audio[:, :channels] if channels <= audio.shape[1] else np.repeat(audio, channels, axis=1)
    if encoding == "s16le":
        return (np.clip(audio, -1, 1 - 2**-15) * 32768).astype("<i2").tobytes()
    return audio.astype("<f4").tobytes()


def write_reference(path, data: bytes, encoding: str, channels: int, rate: int, folder):
    """The bytes a client streams, as the file a user would transcribe offline."""
    dtype = "<i2" if encoding == "s16le" else "<f4"
    samples = np.frombuffer(data, dtype).reshape(-1, channels)
    out = folder / ("ref.flac" if encoding == "s16le" else "ref.wav")
    sf.write(out, samples, rate, subtype="PCM_16" if encoding == "s16le" else "FLOAT")
    return out


def play(ws, data: bytes, rng: np.random.Generator, max_frame: int = 65536) -> None:
    start = 0
    while start < len(data):
        size = int(rng.integers(1, max_frame + 1))
        ws.send_bytes(data[start:start + size])
        start += size


def collect_until_final(ws) -> tuple[list[dict], list[dict]]:
    hits, others = [], []
    while True:
        message = ws.receive_json()
        if message["type"] == "hits":
            hits += message["hits"]
        else:
            others.append(message)
        if message["type"] in ("final", "error"):
            return hits, others


def same_hits(live: list[dict], offline: list[dict]) -> float:
    """Hits found alike (same instrument, within 1 ms) as a share of the larger list."""
    unmatched = list(live)
    found = 0
    for hit in offline:
        match = next((h for h in unmatched if h["instrument"] == hit["instrument"] and abs(h["t"] - hit["t"]) <= 0.001), None)
        if match is not None:
            unmatched.remove(match)
            found += 1
    return found / max(1, len(offline), len(live))


@pytest.mark.parametrize("encoding,channels,rate", [("s16le", 2, 44100), ("f32le", 1, 48000), ("s16le", 1, 16000)])
def test_streamed_hits_equal_offline_transcription(settings, beat_wav, tmp_path, encoding, channels, rate):
    data = pcm(beat_wav, encoding, channels, rate)
    reference = write_reference(beat_wav, data, encoding, channels, rate, tmp_path)
    with app_client(settings) as client, client.websocket_connect("/api/v1/stream") as ws:
        client.app.state.gateway.scorer.wait_ready()  # its process starts with the app
        sent = time.monotonic()
        ws.send_json({"type": "start", "sample_rate": rate, "channels": channels, "encoding": encoding})
        ready = ws.receive_json()
        assert ready["type"] == "ready" and time.monotonic() - sent < 0.2
        card = client.app.state.detector.card
        assert card.lookahead_ms <= 50 and ready["session_id"]
        assert ready["lookahead_ms"] == card.lookahead_ms + math.ceil(resampler_delay_ms(rate, card.sample_rate))
        play(ws, data, np.random.default_rng(rate))
        ws.send_json({"type": "stop"})
        hits, others = collect_until_final(ws)
        final = others[-1]
        assert final["type"] == "final" and final["session_id"] == ready["session_id"]
        assert final["hits_total"] == len(hits) and final["status"] == "succeeded"
        offline = offline_hits(client, reference)
        assert len(offline) > 20 and same_hits(hits, offline) >= 0.99
        assert [m for m in others if m["type"] == "tempo"]
        notation = [m for m in others if m["type"] == "notation"]
        assert notation and notation[0]["svg"].lstrip().startswith("<")
        xml = client.get(final["downloads"]["musicxml"])
        assert xml.status_code == 200 and b"<score-partwise" in xml.content
        result = client.get(f"/api/v1/jobs/{final['job_id']}/result").json()
        assert same_hits(result["hits"], hits) >= 0.99  # the score is made from the same hits
        with pytest.raises(ConnectionClosed) as closed:
            ws.receive_json()
        assert closed.value.rcvd.code == 1000


def expect_error(ws, code: str, close: int) -> None:
    message = ws.receive_json()
    while message["type"] in ("hits", "tempo", "notation"):  # what the audio before it produced
        message = ws.receive_json()
    assert message["type"] == "error" and message["code"] == code and message["message"]
    with pytest.raises(ConnectionClosed) as closed:
        ws.receive_json()
    assert closed.value.rcvd.code == close


START = {"type": "start", "sample_rate": 24000, "channels": 1, "encoding": "f32le"}


@pytest.mark.parametrize("first,code,close", [
    (b"\x00" * 100, "not_started", 1003),
    ("{not json", "invalid_json", 1003),
    ('{"type": "stop"}', "not_started", 1003),
    ('{"type": "start", "sample_rate": 4000, "channels": 1, "encoding": "f32le"}', "invalid_start", 1003),
    ('{"type": "start", "sample_rate": 48000, "channels": 3, "encoding": "f32le"}', "invalid_start", 1003),
    ('{"type": "start", "sample_rate": 48000, "channels": 1, "encoding": "mp3"}', "invalid_start", 1003),
])
def test_bad_openings_are_refused(settings, first, code, close):
    with app_client(settings) as client, client.websocket_connect("/api/v1/stream") as ws:
        ws.send_bytes(first) if isinstance(first, bytes) else ws.send_text(first)
        expect_error(ws, code, close)
        assert client.app.state.gateway.sessions == {}


def test_oversized_frame_and_unknown_message_close_the_session(settings):
    with app_client(settings) as client:
        with client.websocket_connect("/api/v1/stream") as ws:
            ws.send_json(START)
            session_id = ws.receive_json()["session_id"]
            ws.send_bytes(np.full(15000, 0.1, "<f4").tobytes())
            ws.send_bytes(b"\x00" * (64 * 1024 + 4))
            expect_error(ws, "too_big", 1009)
        with client.websocket_connect("/api/v1/stream") as ws:
            ws.send_json(START)
            ws.receive_json()
            ws.send_json({"type": "dance"})
            expect_error(ws, "unexpected_message", 1003)
        assert wait_for_session(client, session_id)["job_id"]


def test_full_gateway_answers_busy(settings):
    with app_client(settings, dataclasses.replace(FAST, max_sessions=1)) as client:
        with client.websocket_connect("/api/v1/stream") as first:
            first.send_json(START)
            assert first.receive_json()["type"] == "ready"
            with client.websocket_connect("/api/v1/stream") as second:
                second.send_json(START)
                expect_error(second, "busy", 1013)
            first.send_json({"type": "stop"})
            assert collect_until_final(first)[1][-1]["type"] == "final"


def wait_for_session(client: Client, session_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"/api/v1/sessions/{session_id}")
        if response.status_code == 200 and response.json()["status"] in ("succeeded", "failed"):
            return response.json()
        time.sleep(0.1)
    raise AssertionError(f"session {session_id} was not finalized")


def test_disconnect_without_stop_still_finalizes(settings, beat_wav):
    data = pcm(beat_wav, "s16le", 1, 44100)
    with app_client(settings) as client:
        with client.websocket_connect("/api/v1/stream") as ws:
            ws.send_json({**START, "sample_rate": 44100, "encoding": "s16le"})
            session_id = ws.receive_json()["session_id"]
            play(ws, data, np.random.default_rng(0))
        session = wait_for_session(client, session_id)
        assert session["status"] == "succeeded"
        assert client.get(session["downloads"]["pdf"]).content.startswith(b"%PDF")
        assert client.get(session["downloads"]["midi_quantized"]).content.startswith(b"MThd")
        assert client.app.state.gateway.sessions == {}


def test_idle_and_too_long_sessions_end_and_finalize(settings, beat_wav):
    data = pcm(beat_wav, "f32le", 1, 24000)
    limits = dataclasses.replace(FAST, idle_timeout=0.5, max_session_seconds=3.0)
    with app_client(settings, limits) as client:
        with client.websocket_connect("/api/v1/stream") as ws:
            ws.send_json(START)
            idle = ws.receive_json()["session_id"]
            play(ws, data[:24000 * 4], np.random.default_rng(2))
            message = ws.receive_json()
            while message["type"] != "error":
                message = ws.receive_json()
            assert message["code"] == "idle"
        with client.websocket_connect("/api/v1/stream") as ws:
            ws.send_json(START)
            long = ws.receive_json()["session_id"]
            play(ws, data[: 24000 * 4 * 5], np.random.default_rng(1), max_frame=24000 * 4 // 2)
            message = ws.receive_json()
            while message["type"] != "error":
                message = ws.receive_json()
            assert message["code"] == "too_long"
        for session_id in (idle, long):
            assert wait_for_session(client, session_id)["status"] == "succeeded"


def test_two_sessions_at_once_do_not_disturb_each_other(settings, beat_wav, tmp_path):
    loud = pcm(beat_wav, "f32le", 1, 24000)
    quiet = (np.frombuffer(loud, "<f4")[::-1] * 0.5).astype("<f4").tobytes()  # a different recording
    refs = [write_reference(beat_wav, d, "f32le", 1, 24000, tmp_path / name)
            for d, name in ((loud, "a"), (quiet, "b")) if not (tmp_path / name).mkdir()]
    with app_client(settings) as client:
        with client.websocket_connect("/api/v1/stream") as a, client.websocket_connect("/api/v1/stream") as b:
            a.send_json(START)
            b.send_json(START)
            assert a.receive_json()["type"] == b.receive_json()["type"] == "ready"
            step = 24000 * 4 // 10
            for start in range(0, len(loud), step):
                a.send_bytes(loud[start:start + step])
                b.send_bytes(quiet[start:start + step])
            a.send_json({"type": "stop"})
            b.send_json({"type": "stop"})
            got_a, got_b = collect_until_final(a)[0], collect_until_final(b)[0]
        assert same_hits(got_a, offline_hits(client, refs[0])) >= 0.99
        assert same_hits(got_b, offline_hits(client, refs[1])) >= 0.99


def test_resampler_delay_is_measured_per_rate():
    assert resampler_delay_ms(24000, 24000) == 0.0
    assert 0 < resampler_delay_ms(48000, 24000) < 60
