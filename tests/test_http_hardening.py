"""The HTTP edge under hostile or unlucky requests: bounded and validated bodies, timeouts,
Redis outages, Host and Origin checks, security headers, and what /health tells strangers.

Real parts throughout: the app under Starlette's TestClient, or under uvicorn configured as
``drumscribe serve`` configures it, spoken to over raw sockets; a real redis-server.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from aiortc import RTCPeerConnection
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from bench.faults import RedisServer
from web.app import create_app
from web.guard import Guard
from web.http_settings import LOOPBACK_HOSTS, HttpSettings
from web.server import server_config

TEST_HOSTS = HttpSettings(allowed_hosts=("testserver",))


def free_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


class Served:
    """The app under uvicorn with ``serve``'s configuration, on a loopback port, in a thread."""

    def __init__(self, app, http: HttpSettings) -> None:
        self.sock = free_port()
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(server_config(app, "127.0.0.1", self.port, http, log_config=None))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "Served":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)

    def raw(self, data: bytes, timeout: float = 10.0) -> socket.socket:
        conn = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        conn.sendall(data)
        return conn


def read_all(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset after its answer ends it too)."""
    chunks = []
    try:
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    conn.close()
    return b"".join(chunks)


def answered(conn: socket.socket) -> bool:
    """Whether the server has sent something (or closed), without reading it."""
    conn.setblocking(False)
    try:
        return conn.recv(1, socket.MSG_PEEK) is not None
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        conn.setblocking(True)


def status_and_json(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def multipart_head(port: int, length: int, boundary: str = "edge") -> bytes:
    return (f"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {length}\r\n\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode()


def job_folders(settings) -> list[Path]:
    return list(settings.jobs_dir.iterdir()) if settings.jobs_dir.exists() else []


@pytest.fixture
def quiet(settings):
    """The service with no in-process worker: whatever is accepted stays queued."""
    return dataclasses.replace(settings, workers=0)


# -- 1. JSON bodies: bounded, then validated by schema -----------------------------------

@pytest.mark.parametrize("path,body,status,code", [
    ("/api/v1/jobs", b"[" * 5000, 400, "too_deep"),
    ("/api/v1/jobs", b'{"url": ' * 40 + b"1", 400, "too_deep"),
    ("/api/v1/jobs", b"{nope", 400, "invalid_json"),
    ("/api/v1/jobs", b"\xff\xfe{}", 400, "invalid_json"),
    ("/api/v1/jobs", json.dumps({"url": "https://youtu.be/" + "x" * 2100}).encode(), 400, "invalid_request"),
    ("/api/v1/jobs", json.dumps({"url": ["https://youtu.be/x"]}).encode(), 400, "invalid_request"),
    ("/api/v1/jobs", json.dumps({"url": "https://youtu.be/x", "title": "t" * 300}).encode(), 400, "invalid_request"),
    ("/api/v1/jobs", json.dumps({"url": "https://youtu.be/x", "title": 7}).encode(), 400, "invalid_request"),
    ("/api/v1/jobs", json.dumps({"url": "https://youtu.be/x", "separate": True}).encode(), 400, "invalid_request"),
    ("/api/v1/jobs", json.dumps({"url": "https://youtu.be/x", "owner": "me"}).encode(), 400, "invalid_request"),
    ("/api/v1/jobs", b"[1, 2]", 400, "invalid_request"),
    ("/api/v1/rtc/offer", b"[" * 60_000, 400, "too_deep"),
    ("/api/v1/rtc/offer", json.dumps({"type": "offer", "sdp": "v=0", "separate": "yes"}).encode(), 400, "invalid_offer"),
    ("/api/v1/rtc/offer", json.dumps({"type": "offer", "sdp": 1}).encode(), 400, "invalid_offer"),
])
def test_json_bodies_are_bounded_and_validated(quiet, path, body, status, code):
    with TestClient(create_app(quiet, http_settings=TEST_HOSTS)) as client:
        response = client.post(path, content=body, headers={"content-type": "application/json"})
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text
        assert "x" * 100 not in response.text  # the fault is named, the value not echoed
        assert client.get("/api/v1/jobs").json()["jobs"] == [] and job_folders(quiet) == []


@pytest.mark.parametrize("path", ["/api/v1/jobs", "/api/v1/rtc/offer"])
def test_chunked_json_is_cut_off_at_the_cap(quiet, path):
    http = dataclasses.replace(TEST_HOSTS, max_json_bytes=16 * 1024)
    sent = []

    def chunks():  # no Content-Length: the body arrives chunked, 1 MB if it were all read
        for _ in range(1024):
            sent.append(1)
            yield b'{"url": "' + b"x" * 1024

    with TestClient(create_app(quiet, http_settings=http)) as client:
        response = client.post(path, content=chunks(), headers={"content-type": "application/json"})
        assert (response.status_code, response.json()["error"]["code"]) == (413, "too_large")
        assert response.headers["connection"] == "close"
        declared = client.post(path, content=b"{}", headers={"content-type": "application/json",
                                                               "content-length": str(10 ** 9)})
        assert declared.status_code == 413
    assert job_folders(quiet) == []


def test_upload_fields_are_validated_too(quiet, beat_wav):
    with TestClient(create_app(quiet, http_settings=TEST_HOSTS)) as client:
        for fields, fault in [({"separate": "maybe"}, "separate"), ({"title": "t" * 300}, "title"),
                              ({"owner": "me"}, "owner")]:
            response = client.post("/api/v1/jobs", files={"file": ("beat.wav", beat_wav.read_bytes(), "audio/wav")},
                                   data=fields)
            assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_option"
            assert fault in response.json()["error"]["message"]
        assert job_folders(quiet) == []
        accepted = client.post("/api/v1/jobs", files={"file": ("beat.wav", beat_wav.read_bytes(), "audio/wav")},
                               data={"title": "  A beat  ", "separate": "off"})
        assert accepted.status_code == 202, accepted.text
        assert client.get(f"/api/v1/jobs/{accepted.json()['id']}").json()["title"] == "A beat"


# -- 2. Bad HTTP, slow clients, aborted uploads ------------------------------------------

def test_invalid_http_gets_the_json_error_shape_and_slow_headers_are_cut(quiet):
    http = dataclasses.replace(HttpSettings(), header_timeout=0.5)
    with Served(create_app(quiet, http_settings=http), http) as served:
        status, body = status_and_json(read_all(served.raw(
            f"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\nContent-Length: abc\r\n\r\n".encode())))
        assert status == 400 and body["error"]["code"] == "bad_request"

        started = time.monotonic()
        conn = served.raw(f"GET /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n".encode())
        assert read_all(conn) == b"" and time.monotonic() - started < 5  # closed, headers never finished

        conn = served.raw(f"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\n\r\n".encode())
        first = conn.recv(65536)  # a complete request is answered, then the idle connection is closed
        assert first.startswith(b"HTTP/1.1 200") and b"server: uvicorn" not in first.lower()
        rest = read_all(conn)
        assert b"HTTP/1.1" not in rest and time.monotonic() - started < 15


@pytest.mark.parametrize("pace,code", [(0.1, "too_slow"), (None, "timeout")])
def test_a_slow_or_stalled_upload_gets_408_and_leaves_nothing(quiet, pace, code):
    http = dataclasses.replace(HttpSettings(), min_body_rate=40 * 1024, body_rate_grace=0.5, body_idle_timeout=1.0)
    with Served(create_app(quiet, http_settings=http), http) as served:
        conn = served.raw(multipart_head(served.port, 10_000_000) + b"RIFF" + bytes(1020))
        started = time.monotonic()
        while pace is not None and time.monotonic() - started < 10:  # 1 KB every 0.1 s: 10 KB/s
            time.sleep(pace)
            if answered(conn):
                break
            try:
                conn.sendall(bytes(1024))
            except OSError:
                break
        status, body = status_and_json(read_all(conn))
        assert (status, body["error"]["code"]) == (408, code)
        assert time.monotonic() - started < 5
        assert job_folders(quiet) == []


def test_an_aborted_upload_logs_one_line_and_leaves_nothing(quiet, caplog):
    caplog.set_level(logging.INFO)
    with Served(create_app(quiet, http_settings=HttpSettings()), HttpSettings()) as served:
        conn = served.raw(multipart_head(served.port, 1_000_000) + b"RIFF" + bytes(50_000))
        deadline = time.monotonic() + 10
        while not job_folders(quiet):  # the upload is being read
            assert time.monotonic() < deadline
            time.sleep(0.01)
        conn.close()
        while job_folders(quiet) or not any("disconnected" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the aborted upload was not noticed"
            time.sleep(0.02)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert sum("disconnected" in r.getMessage() for r in caplog.records) == 1


# -- 3. Redis down -----------------------------------------------------------------------

def test_redis_down_answers_503_json_and_leaves_no_upload(quiet, beat_wav, tmp_path):
    with RedisServer(tmp_path / "redis", persistent=False) as redis_server:
        settings = dataclasses.replace(quiet, redis_url=redis_server.url)
        with TestClient(create_app(settings, http_settings=TEST_HOSTS), raise_server_exceptions=False) as client:
            job_id = client.post("/api/v1/jobs", files={"file": ("beat.wav", beat_wav.read_bytes(), "audio/wav")}).json()["id"]
            redis_server.stop(signal.SIGKILL)
            upload = client.post("/api/v1/jobs", files={"file": ("beat.wav", beat_wav.read_bytes(), "audio/wav")})
            assert upload.status_code == 503 and upload.json()["error"]["code"] == "unavailable"
            assert upload.headers["retry-after"]
            assert [p.name for p in job_folders(settings)] == [job_id]  # the refused upload's folder is gone
            show = client.get(f"/api/v1/jobs/{job_id}")
            assert (show.status_code, show.json()["error"]["code"]) == (503, "unavailable")
            health = client.get("/api/v1/health")
            assert health.status_code == 503 and health.json()["redis"]["error"] == "ConnectionError"
            assert "127.0.0.1" not in health.text  # where Redis lives is not told to strangers


# -- 4. Host and Origin ------------------------------------------------------------------

def test_foreign_hosts_and_origins_are_refused(quiet, beat_wav):
    http = dataclasses.replace(TEST_HOSTS, allowed_origins=("https://drums.example.com",))
    wav = beat_wav.read_bytes()
    with TestClient(create_app(quiet, http_settings=http)) as client:
        rebound = client.get("/api/v1/jobs", headers={"host": "attacker.example"})
        assert (rebound.status_code, rebound.json()["error"]["code"]) == (400, "host_not_allowed")

        for headers in ({"origin": "http://evil.example"}, {"origin": "null"},
                        {"origin": "https://testserver"}, {"sec-fetch-site": "cross-site"}):
            forged = client.post("/api/v1/jobs", files={"file": ("beat.wav", wav, "audio/wav")}, headers=headers)
            assert (forged.status_code, forged.json()["error"]["code"]) == (403, "cross_origin"), headers
        assert client.get("/api/v1/jobs").json()["jobs"] == [] and job_folders(quiet) == []

        own = client.post("/api/v1/jobs", files={"file": ("beat.wav", wav, "audio/wav")},
                          headers={"origin": "http://testserver", "sec-fetch-site": "same-origin"})
        assert own.status_code == 202, own.text
        allowed = client.post("/api/v1/jobs", files={"file": ("beat.wav", wav, "audio/wav")},
                              headers={"origin": "https://drums.example.com"})
        assert allowed.status_code == 202, allowed.text
        job_id = own.json()["id"]
        assert client.delete(f"/api/v1/jobs/{job_id}", headers={"origin": "http://evil.example"}).status_code == 403
        assert client.get(f"/api/v1/jobs/{job_id}", headers={"origin": "http://evil.example"}).status_code == 200
        assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 200  # no Origin: not a browser


def test_a_websocket_from_a_foreign_origin_is_refused_before_ready(quiet):
    http = HttpSettings()
    with Served(create_app(quiet, http_settings=http), http) as served:
        url = f"ws://127.0.0.1:{served.port}/api/v1/stream"
        start = {"type": "start", "sample_rate": 48000, "channels": 1, "encoding": "s16le"}
        with pytest.raises(InvalidStatus) as refused:
            connect(url, origin="http://evil.example", open_timeout=10)
        assert refused.value.response.status_code == 403
        with connect(url, origin=f"http://127.0.0.1:{served.port}", open_timeout=10) as ws:
            ws.send(json.dumps(start))
            assert json.loads(ws.recv(timeout=30))["type"] == "ready"


def test_a_websocket_to_a_foreign_host_name_is_refused(quiet):
    with TestClient(create_app(quiet, http_settings=TEST_HOSTS)) as client:
        with pytest.raises(WebSocketDisconnect) as refused:
            with client.websocket_connect("/api/v1/stream", headers={"host": "attacker.example"}):
                pass
        assert refused.value.code == 1008


def test_allowed_hosts_default_to_loopback_and_the_bind_address(monkeypatch):
    monkeypatch.delenv("DRUMSCRIBE_ALLOWED_HOSTS", raising=False)
    assert HttpSettings.from_env().allowed_hosts == LOOPBACK_HOSTS  # no testserver, no other name
    assert HttpSettings().serving("0.0.0.0").allowed_hosts == LOOPBACK_HOSTS  # every interface: no name known
    assert HttpSettings().serving("192.168.1.20").allowed_hosts == (*LOOPBACK_HOSTS, "192.168.1.20")
    assert HttpSettings().serving("fd00::5").allowed_hosts[-1] == "[fd00::5]"
    monkeypatch.setenv("DRUMSCRIBE_ALLOWED_HOSTS", "Drums.Example.com, *.lan")
    monkeypatch.setenv("DRUMSCRIBE_ALLOWED_ORIGINS", "https://drums.example.com/")
    http = HttpSettings.from_env()
    assert http.allowed_hosts == (*LOOPBACK_HOSTS, "drums.example.com", "*.lan")
    assert http.allowed_origins == ("https://drums.example.com",)
    app = Starlette(routes=[Route("/", lambda request: Response("ok"))])
    with TestClient(Guard(app, http)) as client:
        for host, status in [("drums.example.com", 200), ("studio.lan:8000", 200), ("[::1]:8000", 200),
                             ("evil.example", 400), ("lan", 400), ("drums.example.com.evil.example", 400)]:
            assert client.get("/", headers={"host": host}).status_code == status, host


# -- 5. Security headers -----------------------------------------------------------------

def test_every_response_has_the_security_headers(quiet):
    with TestClient(create_app(quiet, http_settings=TEST_HOSTS)) as client:
        for response in (client.get("/"), client.get("/static/app.js"), client.get("/api/v1/jobs/nope"),
                         client.get("/api/v1/jobs", headers={"host": "evil.example"})):
            headers = response.headers
            assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
            assert headers["referrer-policy"] == "same-origin"
            assert headers["cross-origin-opener-policy"] == "same-origin"
            csp = headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
    svg = Starlette(routes=[Route("/s.svg", lambda request: Response("<svg/>", media_type="image/svg+xml"))])
    with TestClient(Guard(svg, TEST_HOSTS)) as client:
        csp = client.get("/s.svg").headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script" not in csp


# -- 7. What strangers learn -------------------------------------------------------------

def test_health_and_metrics_show_counts_not_worker_names(settings):
    with TestClient(create_app(settings, http_settings=TEST_HOSTS)) as client:
        deadline = time.monotonic() + 30
        while not (names := client.app.state.store.live_workers()):  # the worker's first heartbeat
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert len(names) == 1
        health = client.get("/api/v1/health").json()
        assert health["workers"] == {"alive": 1, "by_stage": {"decode": 1, "separate": 1, "detect": 1, "score": 1}}
        assert names[0] not in client.get("/metrics").text and names[0] not in json.dumps(health)
    detailed = dataclasses.replace(TEST_HOSTS, health_details=True)
    with TestClient(create_app(settings, http_settings=detailed)) as client:
        deadline = time.monotonic() + 30
        while not (names := client.app.state.store.live_workers()):  # not [] == []: a worker reads
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert client.get("/api/v1/health").json()["workers"]["names"] == names


# -- WebRTC offers per address -----------------------------------------------------------

async def make_offers(count: int) -> list[dict]:
    """Browser-like offers with an audio track; the offering side is not needed for the answer."""
    offers = []
    for _ in range(count):
        pc = RTCPeerConnection()
        pc.addTransceiver("audio", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        offers.append({"sdp": pc.localDescription.sdp, "type": "offer"})
        await pc.close()
    return offers


def test_webrtc_offers_are_capped_per_address(quiet, monkeypatch):
    monkeypatch.setenv("DRUMSCRIBE_RTC_PER_ADDRESS", "2")
    offers = asyncio.run(make_offers(3))
    with TestClient(create_app(quiet, http_settings=TEST_HOSTS)) as client:
        answers = [client.post("/api/v1/rtc/offer", json=offer) for offer in offers]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[2].json()["error"]["code"] == "busy"
        assert len(client.app.state.rtc.peers) == 2
