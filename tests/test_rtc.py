"""WebRTC signalling and sessions with a browser-free aiortc client against a real server."""
from __future__ import annotations

import asyncio
import fractions
import json
import time

import av
import httpx
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from models.synthetic import rock_beat
from stream.config import LiveSettings
from tests.conftest import RunningServer
from web.app import create_app
from web.rtc import ice_servers_from_env

RATE, CHUNK = 48000, 960  # 20 ms frames, as a browser sends them


class BeatTrack(MediaStreamTrack):
    """A drum recording as a live mic: 20 ms s16 mono frames, paced in real time."""

    kind = "audio"

    def __init__(self, audio: np.ndarray) -> None:
        super().__init__()
        self.pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
        self.sent = 0
        self.started: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.sent >= len(self.pcm):
            self.stop()
            raise MediaStreamError
        if self.started is None:
            self.started = time.monotonic()
        wait = self.started + self.sent / RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        chunk = self.pcm[self.sent:self.sent + CHUNK]
        chunk = np.pad(chunk, (0, CHUNK - len(chunk)))
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self.sent, fractions.Fraction(1, RATE)
        self.sent += CHUNK
        return frame


async def connect_peer(pc: RTCPeerConnection, base: str) -> None:
    """Offer ``pc`` to the server at ``base`` and apply its answer (WebRTC signalling over HTTP)."""
    await pc.setLocalDescription(await pc.createOffer())
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        answer = (await http.post("/api/v1/rtc/offer", json={"sdp": pc.localDescription.sdp,
                                                            "type": pc.localDescription.type})).json()
    await pc.setRemoteDescription(RTCSessionDescription(**answer))


async def rtc_session(base: str, audio: np.ndarray, stop: bool = True) -> tuple[list[dict], RTCPeerConnection]:
    """Send ``audio`` over WebRTC; with ``stop``, end with a stop message and wait for ``final``."""
    pc = RTCPeerConnection()
    track = BeatTrack(audio)
    pc.addTrack(track)
    channel = pc.createDataChannel("events")
    messages: list[dict] = []
    final = asyncio.get_running_loop().create_future()

    @channel.on("message")
    def on_message(text: str) -> None:
        message = json.loads(text)
        messages.append(message)
        if message["type"] in ("final", "error") and not final.done():
            final.set_result(message)

    await connect_peer(pc, base)
    deadline = time.monotonic() + 30 + len(audio) / RATE
    while track.sent < len(track.pcm) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # the last packets
    if stop:
        channel.send(json.dumps({"type": "stop"}))
        await asyncio.wait_for(final, 60)
    return messages, pc


@pytest.fixture
def server(settings):
    with RunningServer(create_app(settings)) as running:
        yield running


def test_session_over_webrtc_matches_the_audio(server):
    audio, reference = rock_beat(bars=2, bpm=120, rate=RATE)

    async def run():
        messages, pc = await rtc_session(server.http, audio)
        await pc.close()
        return messages

    messages = asyncio.run(run())
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "ready" and kinds[-1] == "final", kinds
    hits = [hit for m in messages if m["type"] == "hits" for hit in m["hits"]]
    final = messages[-1]
    assert final["status"] == "succeeded" and final["hits_total"] == len(hits) > 0
    # Times count from the first sample sent (the Opus codec delay taken off): each hit lands on a drum.
    onsets = np.array(sorted(t for times in reference.values() for t in times))
    errors = np.array([np.min(np.abs(onsets - hit["t"])) for hit in hits])
    assert np.mean(errors < 0.025) >= 0.8, sorted(errors)
    with httpx.Client(base_url=server.http) as http:
        found = http.get(f"/api/v1/sessions/{final['session_id']}").json()
        assert found["status"] == "succeeded"
        assert "<score-partwise" in http.get(final["downloads"]["musicxml"]).text


def test_a_peer_that_goes_away_still_gets_its_session_finalized(server):
    audio, _ = rock_beat(bars=1, bpm=120, rate=RATE)

    async def run():
        messages, pc = await rtc_session(server.http, audio, stop=False)
        await pc.close()
        return messages

    messages = asyncio.run(run())
    session_id = messages[0]["session_id"]
    with httpx.Client(base_url=server.http) as http:
        deadline = time.monotonic() + 60
        while (found := http.get(f"/api/v1/sessions/{session_id}").json())["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, found
            time.sleep(0.2)
    assert found["status"] == "succeeded"
    assert not server.app.state.rtc.peers


def test_bad_offers_are_refused_and_the_config_lists_ice_servers(server, monkeypatch):
    with httpx.Client(base_url=server.http) as http:
        assert http.post("/api/v1/rtc/offer", content=b"nonsense").json()["error"]["code"] == "invalid_json"
        refused = http.post("/api/v1/rtc/offer", json={"sdp": "v=0", "type": "answer"})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_offer"
        refused = http.post("/api/v1/rtc/offer", json={"sdp": "not sdp", "type": "offer"})
        assert refused.status_code == 400
        assert http.get("/api/v1/rtc/config").json() == {"ice_servers": []}
        page = http.get("/")
        assert page.status_code == 200 and 'data-testid="live-start"' in page.text
        assert http.get("/static/app.js").status_code == 200
    monkeypatch.setenv("DRUMSCRIBE_ICE_SERVERS", "stun:stun.example.org:3478, turn:turn.example.org")
    assert ice_servers_from_env() == ["stun:stun.example.org:3478", "turn:turn.example.org"]


class SilentTrack(MediaStreamTrack):
    """A mic that never delivers a frame."""

    kind = "audio"

    async def recv(self) -> av.AudioFrame:
        await asyncio.Event().wait()


def test_a_peer_that_sends_no_audio_is_told_and_dropped(settings):
    with RunningServer(create_app(settings, live_settings=LiveSettings(idle_timeout=1.0))) as server:
        async def run() -> dict:
            pc = RTCPeerConnection()
            pc.addTrack(SilentTrack())
            channel = pc.createDataChannel("events")
            error = asyncio.get_running_loop().create_future()
            channel.on("message", lambda text: error.done() or error.set_result(json.loads(text)))
            await connect_peer(pc, server.http)
            try:
                return await asyncio.wait_for(error, 20)
            finally:
                await pc.close()

        assert asyncio.run(run())["code"] == "idle"
        deadline = time.monotonic() + 10
        while server.app.state.rtc.peers:
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_stopping_the_app_closes_its_peers_and_finalizes_their_sessions(settings):
    server = RunningServer(create_app(settings)).__enter__()
    gateway, runners = server.app.state.gateway, []
    open_session = gateway.open_session
    gateway.open_session = lambda start, emit: runners.append(open_session(start, emit)) or runners[-1]
    audio, _ = rock_beat(bars=1, bpm=120, rate=RATE)

    async def run() -> None:
        _, pc = await rtc_session(server.http, audio, stop=False)
        try:
            await asyncio.to_thread(server.__exit__, None, None, None)
        finally:
            await pc.close()

    asyncio.run(run())
    assert not server.app.state.rtc.peers
    [runner] = runners
    final = runner.finalize()
    assert final.done() and final.result()["status"] == "succeeded"
    assert final.result()["hits_total"] > 0
