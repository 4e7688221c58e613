"""The live path under hostile or unlucky clients, through a real server: the ``start`` schema,
bounded JSON, recordings spooled to disk, the session limit inside the batch limit, per-address
caps, the minimum data rate, and finalize failures that keep the recording."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
import tracemalloc

import numpy as np
import pytest
import soundfile as sf
from aiortc import RTCPeerConnection

from models.audio import resample
from models.synthetic import rock_beat
from tests.conftest import RunningServer
from tests.test_live import FAST, START, app_client, collect_until_final, expect_error, pcm, play, wait_for_session
from tests.test_rtc import RATE as RTC_RATE
from tests.test_rtc import BeatTrack, connect_peer
from web.app import create_app


def job_folders(settings) -> list:
    return sorted(settings.jobs_dir.iterdir()) if settings.jobs_dir.exists() else []


BAD_STARTS = [
    {**START, "encoding": ["s16le"]},
    {**START, "channels": 1.0},
    {**START, "channels": True},
    {**START, "channels": 3},
    {**START, "sample_rate": 48000.0},
    {**START, "sample_rate": "48000"},
    {**START, "sample_rate": 4000},
    {**START, "separate": "yes"},
    {"type": "start", "channels": 1},
]


def test_start_is_validated_by_schema(settings):
    with app_client(settings) as client:
        for start in BAD_STARTS:
            with client.websocket_connect("/api/v1/stream") as ws:
                ws.send_json(start)
                expect_error(ws, "invalid_start", 1003)
        assert client.app.state.gateway.sessions == {}
    assert job_folders(settings) == []


def test_deeply_nested_json_is_refused_before_and_after_start(settings, beat_wav):
    data = pcm(beat_wav, "f32le", 1, 24000)
    with app_client(settings) as client:
        for text, code, close in (("[" * 5000, "too_big", 1009), ("[" * 3000, "too_deep", 1003)):
            with client.websocket_connect("/api/v1/stream") as ws:
                ws.send_text(text)
                expect_error(ws, code, close)
            with client.websocket_connect("/api/v1/stream") as ws:
                ws.send_json(START)
                session_id = ws.receive_json()["session_id"]
                play(ws, data[:24000 * 4 * 3], np.random.default_rng(0))
                ws.send_text(text)
                expect_error(ws, code, close)
            assert wait_for_session(client, session_id)["status"] == "succeeded"


def test_recording_is_spooled_to_disk_and_cleaned_of_nan(settings, beat_wav):
    """96 kHz stereo float with NaN and inf in it: the session's memory does not grow with the
    audio, the file in its job folder does, and the batch job scores the cleaned recording."""
    audio, _ = sf.read(beat_wav, dtype="float32", always_2d=True)
    audio = np.tile(resample(audio, 44100, 96000), (2, 1))  # ~38 s, 29 MB as f32 stereo
    bad = {1000: np.nan, 2000: np.inf, 3000: -np.inf}
    for index, value in bad.items():
        audio[index] = value
    data = audio.astype("<f4").tobytes()
    with app_client(settings) as client, client.websocket_connect("/api/v1/stream") as ws:
        ws.send_json({"type": "start", "sample_rate": 96000, "channels": 2, "encoding": "f32le"})
        session_id = ws.receive_json()["session_id"]
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            play(ws, data, np.random.default_rng(3))
            deadline = time.monotonic() + 60
            while client.get(f"/api/v1/sessions/{session_id}").json()["seconds"] < len(audio) / 96000:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert grown < len(data) / 4, grown  # in memory, the recording alone would be len(data)
        [folder] = job_folders(settings)
        assert (folder / "recording.wav").stat().st_size >= len(data)  # on disk before the session ends
        ws.send_json({"type": "stop"})
        final = collect_until_final(ws)[1][-1]
        assert final["type"] == "final" and final["status"] == "succeeded", final
    saved, rate = sf.read(folder / "recording.wav", dtype="float32")
    assert rate == 96000 and saved.shape == audio.shape and np.isfinite(saved).all()
    assert [saved[index, 0] for index in bad] == [0.0, 1.0, -1.0]
    clean = np.delete(np.arange(len(audio)), list(bad))
    assert np.array_equal(saved[clean], audio[clean])


def test_session_limit_stays_inside_the_batch_limit(settings, beat_wav):
    batch = dataclasses.replace(settings, max_seconds=6.00003)  # 80000.48 samples: the cut must still end it
    data = pcm(beat_wav, "s16le", 1, 16000)
    with app_client(batch, dataclasses.replace(FAST, max_session_seconds=600.0)) as client:
        limit = client.app.state.gateway.settings.max_session_seconds
        assert limit == pytest.approx(5.00003)
        with client.websocket_connect("/api/v1/stream") as ws:
            ws.send_json({"type": "start", "sample_rate": 16000, "channels": 1, "encoding": "s16le"})
            session_id = ws.receive_json()["session_id"]
            play(ws, data[:16000 * 2 * 10], np.random.default_rng(4), max_frame=16000)
            expect_error(ws, "too_long", 1008)
        session = wait_for_session(client, session_id)
        assert session["status"] == "succeeded", session
        assert sf.info(settings.jobs_dir / session["job_id"] / "recording.flac").frames == math.floor(limit * 16000)


def test_one_address_holds_at_most_its_share_of_sessions(settings):
    with app_client(settings, dataclasses.replace(FAST, max_per_client=2, pace_grace=60.0)) as client:
        with client.websocket_connect("/api/v1/stream") as a, client.websocket_connect("/api/v1/stream") as b:
            for ws in (a, b):
                ws.send_json(START)
                assert ws.receive_json()["type"] == "ready"
            with client.websocket_connect("/api/v1/stream") as c:
                c.send_json(START)
                expect_error(c, "busy", 1008)
            a.send_json({"type": "stop"})
            assert collect_until_final(a)[1][-1]["status"] == "empty"
            with client.websocket_connect("/api/v1/stream") as c:  # a's slot is free again
                c.send_json(START)
                assert c.receive_json()["type"] == "ready"
    assert job_folders(settings) == []  # sessions without audio leave no folder


def trickle(ws, data: bytes, piece: int, every: float, seconds: float) -> None:
    """Send ``piece`` bytes of ``data`` every ``every`` seconds for ``seconds``."""
    start, sent = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        ws.send_bytes(data[sent:sent + piece])
        sent += piece
        time.sleep(every)


def test_sessions_below_the_minimum_rate_are_ended_and_finalized(settings, beat_wav):
    data = pcm(beat_wav, "f32le", 1, 24000)
    second = 24000 * 4
    pace = dataclasses.replace(FAST, min_audio_seconds=1.0, pace_window=1.0, pace_grace=0.5)
    with app_client(settings, pace) as client:
        with client.websocket_connect("/api/v1/stream") as ws:  # fast enough: 2 s of audio a second
            ws.send_json(START)
            ws.receive_json()
            trickle(ws, data, second // 2, 0.25, 3.0)
            ws.send_json({"type": "stop"})
            assert collect_until_final(ws)[1][-1]["status"] == "succeeded"
        with client.websocket_connect("/api/v1/stream") as ws:  # 0.1 s of audio every 0.3 s
            ws.send_json(START)
            slow = ws.receive_json()["session_id"]
            trickle(ws, data[second // 2:], second // 10, 0.3, 1.2)  # the beat starts at 0.5 s
            expect_error(ws, "too_slow", 1008)
        slow_session = wait_for_session(client, slow)
        assert slow_session["status"] == "succeeded", slow_session
        with client.websocket_connect("/api/v1/stream") as ws:  # nothing at all: ended by the pace check
            ws.send_json(START)
            ws.receive_json()
            started = time.monotonic()
            expect_error(ws, "too_slow", 1008)
            assert time.monotonic() - started < pace.idle_timeout


def test_a_failed_finalize_keeps_the_recording_and_the_session_answers(settings, beat_wav):
    data = pcm(beat_wav, "s16le", 1, 16000)[:16000 * 2 * 3]
    with app_client(settings) as client:
        redis = client.app.state.store.redis
        with client.websocket_connect("/api/v1/stream") as ws:
            ws.send_json({"type": "start", "sample_rate": 16000, "channels": 1, "encoding": "s16le"})
            session_id = ws.receive_json()["session_id"]
            play(ws, data, np.random.default_rng(5))
            redis.config_set("maxmemory", 1)  # Redis refuses every write: the job cannot be queued
            try:
                ws.send_json({"type": "stop"})
                expect_error(ws, "finalize_failed", 1011)
                answer = client.get(f"/api/v1/sessions/{session_id}")
            finally:
                redis.config_set("maxmemory", 0)
        assert answer.status_code == 200
        assert answer.json()["status"] == "failed" and answer.json()["seconds"] == 3.0
        [folder] = job_folders(settings)
        assert sf.info(folder / "recording.flac").frames == 3 * 16000


def test_datachannel_messages_are_parsed_within_bounds(settings):
    audio, _ = rock_beat(bars=2, bpm=120, rate=RTC_RATE)

    async def run() -> list[dict]:
        pc = RTCPeerConnection()
        pc.addTrack(BeatTrack(audio))
        channel = pc.createDataChannel("events")
        messages: list[dict] = []
        arrived = asyncio.Event()

        @channel.on("message")
        def on_message(text: str) -> None:
            messages.append(json.loads(text))
            arrived.set()

        async def next_of(kind: str) -> dict:
            while True:
                found = [m for m in messages if m["type"] == kind]
                if found:
                    messages.remove(found[0])
                    return found[0]
                arrived.clear()
                await asyncio.wait_for(arrived.wait(), 30)

        await connect_peer(pc, server.http)
        try:
            await next_of("ready")
            errors = []
            for text in ("[" * 5000, "[" * 3000):
                channel.send(text)
                errors.append(await next_of("error"))
            await asyncio.sleep(1.0)  # a second of audio for the score
            channel.send(json.dumps({"type": "stop"}))
            return [*errors, await asyncio.wait_for(next_of("final"), 60)]
        finally:
            await pc.close()

    with RunningServer(create_app(settings)) as server:
        too_large, too_deep, final = asyncio.run(run())
    assert (too_large["code"], too_deep["code"]) == ("too_large", "too_deep")
    assert final["status"] == "succeeded"
