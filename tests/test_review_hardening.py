"""What a review of the hardening found: slow uploads and failed live sessions kept from the sweep,
Redis faults while a session waits, errors of the live path answered 1011, IPv6 caps by /64, a
short Redis patience for the API, strict Host values, JobNotFound as 404, limits in bytes."""
from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import socket
import threading
import time

import numpy as np
import pytest
import redis
import soundfile as sf
from aiortc import RTCPeerConnection
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from batch.connection import connect
from batch.jobs import JobNotFound, JobStore
from batch.retention import sweep
from bench.faults import RedisServer
from models.synthetic import rock_beat
from stream.addresses import client_key
from stream.config import LiveSettings
from stream.pcm import PcmFormat
from stream.session import LiveSession
from tests.conftest import RunningServer
from tests.test_http_hardening import Served, multipart_head, status_and_json, read_all
from tests.test_live import START, app_client, expect_error, pcm, play
from tests.test_rtc import RATE as RTC_RATE
from tests.test_rtc import BeatTrack, connect_peer
from web.errors import HANDLERS
from web.guard import Guard
from web.http_settings import HttpSettings
from web.app import create_app
from web.live import SessionFinalizer


# -- 1. a slow upload is not an orphan -----------------------------------------------------

def test_a_slow_upload_outlasting_the_orphan_grace_is_not_swept(settings):
    audio, _ = rock_beat(bars=1, bpm=100, rate=22050)
    wav = io.BytesIO()
    sf.write(wav, (audio * 32767).astype(np.int16), 22050, format="WAV")
    rest = wav.getvalue() + b"\r\n--edge--\r\n"
    quiet = dataclasses.replace(settings, workers=0, orphan_grace_minutes=4 / 60)  # 4 s
    http = dataclasses.replace(HttpSettings(), min_body_rate=0, body_idle_timeout=5.0)
    app = create_app(quiet, http_settings=http)
    with Served(app, http) as served:
        part_head = multipart_head(served.port, 0).split(b"\r\n\r\n", 1)[1]
        conn = served.raw(multipart_head(served.port, len(part_head) + len(rest)))
        swept = 0
        for piece in np.array_split(np.frombuffer(rest, np.uint8), 8):  # about 8 s: twice the grace
            conn.sendall(piece.tobytes())
            time.sleep(1.0)
            swept += sweep(app.state.store, quiet).orphans
        status, answer = status_and_json(read_all(conn))
    assert (status, swept) == (202, 0), answer


# -- 2, 10. a failed finalize: recorded as a failed job, logged once ------------------------

def test_a_failed_finalize_is_recorded_as_a_failed_job_the_sweep_keeps(settings, beat_wav, caplog):
    caplog.set_level(logging.ERROR, logger="drumscribe.live")
    data = pcm(beat_wav, "s16le", 1, 16000)[:16000 * 2 * 2]
    kept = dataclasses.replace(settings, orphan_grace_minutes=1 / 600)
    with app_client(kept) as client:
        store = client.app.state.store
        with client.websocket_connect("/api/v1/stream") as ws:
            ws.send_json({"type": "start", "sample_rate": 16000, "channels": 1, "encoding": "s16le"})
            session_id = ws.receive_json()["session_id"]
            play(ws, data, np.random.default_rng(5))
            store.redis.config_set("maxmemory", 1)  # Redis refuses every write: the job cannot be queued
            try:
                ws.send_json({"type": "stop"})
                expect_error(ws, "finalize_failed", 1011)
            finally:
                store.redis.config_set("maxmemory", 0)
        deadline = time.monotonic() + 20
        while "job_id" not in (answer := client.get(f"/api/v1/sessions/{session_id}").json()):
            assert time.monotonic() < deadline, answer  # recorded in the background once Redis takes writes
            time.sleep(0.1)
        assert answer["status"] == "failed" and answer["job"]["error"]
        job_id = answer["job_id"]
        assert store.job_of_session(session_id) == job_id  # in Redis, not only in this process
        time.sleep(0.2)
        assert sweep(store, kept).orphans == 0
        assert (kept.jobs_dir / job_id / "recording.flac").exists()
    failures = [r for r in caplog.records if r.getMessage().startswith(f"finalizing session {session_id} failed")]
    assert len(failures) == 1


# -- 3. a Redis fault while a session's job is waited for -----------------------------------

def test_waiting_for_a_queued_job_rides_out_a_redis_outage(tmp_path, settings):
    with RedisServer(tmp_path / "redis") as server:
        external = dataclasses.replace(settings, redis_url=server.url)
        store = JobStore(connect(external, patient=False), external)
        job_id = store.create({"kind": "upload", "file": "recording.flac"}, {})
        finalizer = SessionFinalizer(store, external, timeout=20, poll=0.1)

        def outage() -> None:
            server.stop()
            time.sleep(1.5)
            server.start()
            JobStore(connect(external), external).cancel(job_id)  # the job ends once Redis is back

        threading.Timer(0.3, outage).start()
        job = asyncio.run(finalizer._wait(job_id))
        assert job["status"] == "cancelled"


# -- 4. an error under the live session answers 1011 ----------------------------------------

def test_a_recording_that_cannot_be_written_ends_the_session_with_1011(settings, beat_wav):
    data = pcm(beat_wav, "f32le", 1, 24000)[:60_000]  # one frame, under the 64 KiB limit
    with app_client(settings) as client:
        with client.websocket_connect("/api/v1/stream") as ws:
            ws.send_json(START)
            session_id = ws.receive_json()["session_id"]
            client.app.state.gateway.sessions[session_id].session.recording._file.close()  # the file fails
            ws.send_bytes(data)
            expect_error(ws, "recording_failed", 1011)


# -- 6. per-address caps ---------------------------------------------------------------------

def test_ipv6_clients_count_by_their_64_prefix():
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("testclient") == "testclient"


# -- 7. the API's Redis patience ---------------------------------------------------------------

def test_the_api_gives_up_on_a_hung_redis_within_seconds(settings):
    hung = socket.socket()  # accepts connections, never answers
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)
    try:
        external = dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{hung.getsockname()[1]}/0")
        store = JobStore(connect(external, patient=False), external)
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            store.public("0" * 32)
        assert time.monotonic() - started < 4
    finally:
        hung.close()


# -- 8. Host values ------------------------------------------------------------------------------

def test_host_values_must_be_a_name_and_port_and_the_own_origin_follows_them(caplog):
    caplog.set_level(logging.WARNING, logger="drumscribe.guard")
    http = HttpSettings(allowed_hosts=("localhost", "drums.example:8443"), allowed_origins=("drums.example",))
    app = Starlette(routes=[Route("/", lambda request: Response("ok"), methods=["GET", "POST"])])
    guard = Guard(app, http)
    assert any("'drums.example' is not an origin" in r.getMessage() for r in caplog.records)
    with TestClient(guard) as client:
        for host, status in [("localhost:1@evil.example", 400), ("localhost/evil", 400), ("localhost\\evil", 400),
                             ("localhost:99999", 400), ("localhost:8000", 200), ("drums.example:8443", 200),
                             ("drums.example", 400), ("drums.example:8444", 400)]:
            assert client.get("/", headers={"host": host}).status_code == status, host
        post = client.post("/", headers={"host": "localhost:1@evil.example", "origin": "http://evil.example"})
        assert post.status_code == 400
        own = client.post("/", headers={"host": "localhost:8000", "origin": "http://localhost:8000"})
        assert own.status_code == 200


# -- 9. a job gone between lookup and use ------------------------------------------------------

def test_job_not_found_anywhere_answers_404_json():
    def gone(request):
        raise JobNotFound("x")

    app = Starlette(routes=[Route("/", gone, methods=["DELETE"])], exception_handlers=HANDLERS)
    answer = TestClient(app).delete("/")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"


# -- 11. the live limit -----------------------------------------------------------------------

def test_a_batch_limit_that_leaves_live_sessions_no_audio_is_refused():
    with pytest.raises(ValueError, match="DRUMSCRIBE_MAX_SECONDS"):
        LiveSettings().within(1.0)
    assert LiveSettings().within(61.0).max_session_seconds == 60.0


def test_a_session_past_a_limit_below_zero_takes_no_audio():
    from models.detector import Detector

    session = LiveSession(Detector(), PcmFormat(16000, 1, "s16le"), max_seconds=-1.0)
    session.accept(bytes(3200))
    assert session.samples_in == 0 and session.full


# -- 15. the text message limit is in bytes ------------------------------------------------------

def test_the_text_message_limit_counts_bytes(settings):
    text = '{"type": "start", "title": "' + "é" * 2100 + '"}'  # 2,130 characters, 4,230 bytes
    with app_client(settings) as client:
        with client.websocket_connect("/api/v1/stream") as ws:
            ws.send_text(text)
            expect_error(ws, "too_big", 1009)


# -- 5. a WebRTC reader that fails frees its slots ---------------------------------------------

def test_a_failing_webrtc_reader_closes_the_peer_and_finalizes_the_session(settings):
    audio, _ = rock_beat(bars=4, bpm=120, rate=RTC_RATE)

    async def run(server: RunningServer) -> dict:
        pc = RTCPeerConnection()
        pc.addTrack(BeatTrack(audio))
        channel = pc.createDataChannel("events")
        messages: asyncio.Queue[dict] = asyncio.Queue()
        channel.on("message", lambda text: messages.put_nowait(json.loads(text)))
        await connect_peer(pc, server.http)
        try:
            while (message := await asyncio.wait_for(messages.get(), 30))["type"] != "ready":
                pass
            runner = server.app.state.gateway.sessions[message["session_id"]]
            runner.session.recording._file.close()  # the recording's disk fails under the reader
            while (message := await asyncio.wait_for(messages.get(), 30))["type"] != "error":
                pass
            return message
        finally:
            await pc.close()

    with RunningServer(create_app(settings)) as server:
        error = asyncio.run(run(server))
        assert error["code"] == "internal"
        deadline = time.monotonic() + 20
        while server.app.state.rtc.peers or server.app.state.gateway.sessions:
            assert time.monotonic() < deadline, "the peer or its session is still held"
            time.sleep(0.1)


# -- 9. a job's event stream through a Redis outage --------------------------------------------

def test_an_event_stream_ends_with_unavailable_when_redis_goes(tmp_path, settings):
    with RedisServer(tmp_path / "redis") as server:
        external = dataclasses.replace(settings, redis_url=server.url, workers=0)
        with TestClient(create_app(external)) as client:
            job_id = client.app.state.store.create({"kind": "upload", "file": "input.wav"}, {})
            with client.stream("GET", f"/api/v1/jobs/{job_id}/events") as events:
                lines = events.iter_lines()
                assert next(lines).startswith("data: ")  # the queued job
                server.stop()
                rest = list(lines)  # the stream ends, it does not break
            server.start()
    assert "event: unavailable" in rest
