"""API keys, ownership and the limits in Redis, through the real app, a real Redis and the real CLI."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
import soundfile as sf
from starlette.testclient import TestClient
from websockets.sync.client import connect as ws_connect

from batch import keys
from batch.jobs import JobStore
from batch.worker import Worker
from bench.faults import RedisServer
from tests.test_batch_service import submit
from tests.test_browser import browser, drum_wav, page  # noqa: F401  (fixtures of the page test)
from tests.test_live import FAST, START, collect_until_final, expect_error
from tests.conftest import RunningServer
from web.access import COOKIE
from web.app import create_app
from web.http_settings import HttpSettings
from web.quotas import AddressBuckets, JobSlots, SessionLeases, jobs_of

KEYS_ON = dataclasses.replace(HttpSettings.from_env(), auth="keys")
DRUMSCRIBE = [sys.executable, "-m", "web.cli"]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def new_key(client: TestClient, name: str, **limits) -> str:
    return keys.create(client.app.state.store.redis, name, **limits)[0]


def cli(settings, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {name: value for name, value in os.environ.items() if name != "REDIS_URL"}
    environment.update({"DRUMSCRIBE_DATA": str(settings.data_dir), **(env or {})})
    return subprocess.run([*DRUMSCRIBE, *args], capture_output=True, text=True, timeout=60, env=environment)


def succeeded(client: TestClient, job_id: str, key: str) -> None:
    """Wait for the key's job to end; it must have succeeded."""
    deadline = time.monotonic() + 60
    while (job := client.get(f"/api/v1/jobs/{job_id}", headers=bearer(key)).json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    assert job["status"] == "succeeded", job


@pytest.fixture
def short_wav(tmp_path) -> Path:
    """Two seconds of clicks: a job that ends quickly."""
    audio = np.zeros(44100 * 2, np.float32)
    audio[::11025] = 0.9
    path = tmp_path / "short.wav"
    sf.write(path, audio, 44100)
    return path


def test_requests_without_a_valid_key_are_refused_401(settings, short_wav):
    with TestClient(create_app(settings, http_settings=KEYS_ON)) as client:
        key = new_key(client, "alice")
        for method, path in [("GET", "/api/v1/jobs"), ("GET", "/api/v1/jobs/abc"), ("DELETE", "/api/v1/jobs/abc"),
                             ("GET", "/api/v1/sessions/abc"), ("POST", "/api/v1/rtc/offer"), ("GET", "/api/v1/rtc/config")]:
            for headers in ({}, bearer("not-a-key"), {"Authorization": key}):  # none, unknown, no scheme
                response = client.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, response.text)
                assert response.json()["error"]["code"] == "unauthorized"
                assert response.headers["www-authenticate"].startswith("Bearer")
        refused = submit(client, short_wav)  # refused before its body is read
        assert refused.status_code == 401 and refused.headers["connection"] == "close"
        assert client.app.state.store.recent() == []
        assert client.get("/api/v1/config").json() == {"auth": "keys"}  # open: the page asks it first
        assert client.get("/api/v1/jobs", headers=bearer(key)).json() == {"jobs": []}
        accepted = client.post("/api/v1/jobs", headers=bearer(key),
                               files={"file": ("short.wav", short_wav.read_bytes(), "audio/wav")})
        assert accepted.status_code == 202, accepted.text
        keys.revoke(client.app.state.store.redis, "alice")  # refused from the next request on
        assert client.get("/api/v1/jobs", headers=bearer(key)).status_code == 401


def test_another_keys_job_and_session_are_not_found(settings, short_wav):
    with TestClient(create_app(settings, http_settings=KEYS_ON)) as client:
        a, b = new_key(client, "a"), new_key(client, "b")
        with short_wav.open("rb") as f:
            job_id = client.post("/api/v1/jobs", headers=bearer(a), files={"file": ("s.wav", f, "audio/wav")}).json()["id"]
        succeeded(client, job_id, a)
        store = client.app.state.store
        assert store.get(job_id)[keys.KEY_FIELD] == "a"
        for path in ["", "/result", "/events", "/download/pdf", "/download/json", "/preview/1"]:
            assert client.get(f"/api/v1/jobs/{job_id}{path}", headers=bearer(a)).status_code == 200, path
            other = client.get(f"/api/v1/jobs/{job_id}{path}", headers=bearer(b))
            assert (other.status_code, other.json()) == (404, {"error": {"code": "not_found", "message": "no such job"}})
        assert [job["id"] for job in client.get("/api/v1/jobs", headers=bearer(a)).json()["jobs"]] == [job_id]
        assert client.get("/api/v1/jobs", headers=bearer(b)).json()["jobs"] == []
        assert client.delete(f"/api/v1/jobs/{job_id}", headers=bearer(b)).status_code == 404
        store.link_session("s1", job_id)  # a live session whose score is this job
        assert client.get("/api/v1/sessions/s1", headers=bearer(a)).json()["job_id"] == job_id
        assert client.get("/api/v1/sessions/s1", headers=bearer(b)).status_code == 404
        assert client.delete(f"/api/v1/jobs/{job_id}", headers=bearer(a)).json() == {"id": job_id, "deleted": True}


def test_a_key_with_max_jobs_1_gets_429_on_a_second_concurrent_job(settings, long_beat_wav, short_wav):
    paused = dataclasses.replace(settings, workers=0)  # no worker: the first job stays queued
    with TestClient(create_app(paused, http_settings=KEYS_ON)) as client:
        key, other = new_key(client, "one", max_jobs=1), new_key(client, "other")
        first = client.post("/api/v1/jobs", headers=bearer(key), files={"file": ("a.wav", short_wav.read_bytes())})
        assert first.status_code == 202
        second = client.post("/api/v1/jobs", headers=bearer(key), files={"file": ("b.wav", short_wav.read_bytes())})
        assert second.status_code == 429, second.text
        assert second.json()["error"]["code"] == "too_many_jobs" and int(second.headers["retry-after"]) > 0
        assert second.headers["connection"] == "close"  # refused before its body was read
        assert client.post("/api/v1/jobs", headers=bearer(other),  # another key has its own count
                           files={"file": ("c.wav", short_wav.read_bytes())}).status_code == 202
        client.delete(f"/api/v1/jobs/{first.json()['id']}", headers=bearer(key))  # cancelled: the slot is free
        third = client.post("/api/v1/jobs", headers=bearer(key), files={"file": ("d.wav", short_wav.read_bytes())})
        assert third.status_code == 202, third.text
        assert len(client.get("/api/v1/jobs", headers=bearer(key)).json()["jobs"]) == 2


def test_a_finished_job_frees_its_slot_and_a_slot_without_a_job_expires(settings, short_wav):
    with TestClient(create_app(settings, http_settings=KEYS_ON)) as client:
        key = new_key(client, "one", max_jobs=1)
        job = client.post("/api/v1/jobs", headers=bearer(key), files={"file": ("a.wav", short_wav.read_bytes())})
        succeeded(client, job.json()["id"], key)
        # the worker ended it: nobody released the slot, the next admission recounts it
        assert client.post("/api/v1/jobs", headers=bearer(key),
                           files={"file": ("b.wav", short_wav.read_bytes())}).status_code == 202
        # an API that died between taking a slot and creating its job: the slot goes after the grace
        r = client.app.state.store.redis
        record = keys.get(r, "one")
        slots = JobSlots(r, grace=1.0)
        r.delete(jobs_of("one"))
        assert slots.take(record, "never-created") and not slots.has_room(record)
        time.sleep(1.2)
        assert slots.has_room(record) and r.zrange(jobs_of("one"), 0, -1) == []


def test_a_job_held_by_a_dead_worker_frees_its_slot_when_another_worker_finishes_it(settings, short_wav):
    paused = dataclasses.replace(settings, workers=0, visibility_timeout=1.0)
    with TestClient(create_app(paused, http_settings=KEYS_ON)) as client:
        key = new_key(client, "one", max_jobs=1)
        job_id = client.post("/api/v1/jobs", headers=bearer(key), files={"file": ("a.wav", short_wav.read_bytes())}).json()["id"]
        store = client.app.state.store
        store.ensure_queue()  # what a worker does first
        assert store.claim("dead-worker", 100).job_id == job_id  # taken by a worker that then dies
        assert client.get(f"/api/v1/jobs/{job_id}", headers=bearer(key)).json()["status"] == "running"
        assert client.post("/api/v1/jobs", headers=bearer(key), files={"file": ("b.wav", b"")}).status_code == 429
        worker = Worker(JobStore(store.redis, paused), client.app.state.detector, paused)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()  # reclaims the job after the visibility timeout and finishes it
        try:
            succeeded(client, job_id, key)
            assert client.post("/api/v1/jobs", headers=bearer(key),
                               files={"file": ("c.wav", short_wav.read_bytes())}).status_code == 202
        finally:
            worker.stop.set()
            thread.join(timeout=30)


def test_a_crashed_processs_live_leases_expire(tmp_path):
    """A process that holds a key's only live slot is killed: the slot frees once its lease runs out."""
    with RedisServer(tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        keys.create(client, "live", max_sessions=1)
        holder = subprocess.Popen([sys.executable, "-c", f"""
import asyncio, redis, sys, time
from batch import keys
from web.quotas import SessionLeases
client = redis.Redis.from_url({server.url!r}, decode_responses=True)
leases = SessionLeases(client, seconds=1.5)
async def main():
    assert await leases.acquire(keys.get(client, "live")) is not None
    print("held", flush=True)
    await leases.renew_forever()
asyncio.run(main())
"""], stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "held"
        leases = SessionLeases(client, seconds=1.5)
        record = keys.get(client, "live")

        async def acquire():
            return await leases.acquire(record)

        time.sleep(2.0)  # past one lease time: the living holder renewed it
        assert asyncio.run(acquire()) is None
        holder.kill()
        holder.wait()
        started = time.monotonic()
        while asyncio.run(acquire()) is None:
            assert time.monotonic() - started < 3.0
            time.sleep(0.1)
        client.close()


def test_the_anonymous_mode_limits_work_requests_per_address(settings):
    metered = dataclasses.replace(HttpSettings.from_env(), auth="off", anonymous_burst=3, anonymous_per_minute=60)
    with TestClient(create_app(settings, http_settings=metered)) as client:
        statuses = [client.post("/api/v1/jobs", content=b"x", headers={"content-type": "text/plain"}).status_code
                    for _ in range(4)]
        assert statuses == [415, 415, 415, 429]
        limited = client.post("/api/v1/jobs", content=b"x", headers={"content-type": "text/plain"})
        assert limited.json()["error"]["code"] == "rate_limited" and limited.headers["retry-after"] == "1"
        assert all(client.get("/api/v1/jobs").status_code == 200 for _ in range(10))  # reading costs nothing
        time.sleep(1.1)  # a token a second
        assert client.post("/api/v1/jobs", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
        buckets = AddressBuckets(client.app.state.store.redis, 3, 60)
        assert buckets.wait("192.0.2.1") == 0  # another address has its own bucket


def test_anonymous_live_sessions_draw_on_the_same_bucket(settings):
    metered = dataclasses.replace(HttpSettings.from_env(), auth="off", anonymous_burst=1, anonymous_per_minute=1)
    with RunningServer(create_app(settings, live_settings=FAST, http_settings=metered)) as server:
        with ws_connect(server.ws + "/api/v1/stream") as first:
            first.send(json.dumps(START))
            assert json.loads(first.recv(timeout=10))["type"] == "ready"
            with ws_connect(server.ws + "/api/v1/stream") as second:
                second.send(json.dumps(START))
                expect_error(Frames(second), "rate_limited", 1008)
        offer = httpx.post(server.http + "/api/v1/rtc/offer", json={"type": "offer", "sdp": "v=0"})
        assert offer.status_code == 429 and offer.json()["error"]["code"] == "rate_limited"
        assert int(offer.headers["retry-after"]) >= 1


def test_keys_cannot_be_checked_without_redis_503(tmp_path, settings):
    with RedisServer(tmp_path / "redis") as server:
        external = dataclasses.replace(settings, redis_url=server.url, workers=0)
        with TestClient(create_app(external, http_settings=KEYS_ON)) as client:
            key = new_key(client, "k")
            assert client.get("/api/v1/jobs", headers=bearer(key)).status_code == 200
            server.stop()
            started = time.monotonic()
            response = client.get("/api/v1/jobs", headers=bearer(key))
            assert (response.status_code, response.json()["error"]["code"]) == (503, "unavailable")
            assert response.headers["retry-after"] == "5" and time.monotonic() - started < 5
            assert client.get("/api/v1/jobs").status_code == 401  # no key: refused without asking Redis
            # the page's cookie does not keep the page itself, or the open config, from loading
            client.cookies.set(COOKIE, key)
            assert client.get("/").status_code == 200 and client.get("/static/app.js").status_code == 200
            assert client.get("/api/v1/config").json() == {"auth": "keys"}
            client.cookies.clear()
            server.start()


def test_metrics_and_health_details_need_an_operator_key(settings):
    with TestClient(create_app(settings, http_settings=KEYS_ON)) as client:
        user, operator = new_key(client, "user"), new_key(client, "ops", operator=True)
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=bearer(user)).status_code == 403
        assert "drumscribe_jobs" in client.get("/metrics", headers=bearer(operator)).text
        deadline = time.monotonic() + 30
        while client.get("/api/v1/health").json()["workers"]["alive"] == 0:  # the in-process worker's first beat
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert "names" not in client.get("/api/v1/health").json()["workers"]  # open, without details
        assert "names" not in client.get("/api/v1/health", headers=bearer(user)).json()["workers"]
        assert client.get("/api/v1/health", headers=bearer(operator)).json()["workers"]["names"]


def test_live_sessions_authenticate_by_start_message_or_header_within_the_keys_limit(settings):
    with RunningServer(create_app(settings, live_settings=dataclasses.replace(FAST, pace_grace=60.0),
                                  http_settings=KEYS_ON)) as server:
        r = server.app.state.store.redis
        key, other = keys.create(r, "drummer", max_sessions=1)[0], keys.create(r, "other")[0]
        url = server.ws + "/api/v1/stream"
        with ws_connect(url) as ws:
            ws.send(json.dumps(START))
            expect_error(Frames(ws), "unauthorized", 1008)
        with ws_connect(url) as ws:
            ws.send(json.dumps({**START, "key": "wrong"}))
            expect_error(Frames(ws), "unauthorized", 1008)
        with ws_connect(url) as first:
            first.send(json.dumps({**START, "key": key}))
            ready = json.loads(first.recv(timeout=10))
            assert ready["type"] == "ready"
            with ws_connect(url, additional_headers=bearer(key)) as second:  # the same key, by header
                second.send(json.dumps(START))
                expect_error(Frames(second), "busy", 1008)
            session = ready["session_id"]
            mine = f"{server.http}/api/v1/sessions/{session}"
            assert httpx.get(mine, headers=bearer(key)).json()["status"] == "live"
            assert httpx.get(mine, headers=bearer(other)).status_code == 404
            first.send(json.dumps({"type": "stop"}))
            assert collect_until_final(Frames(first))[1][-1]["status"] == "empty"
        with ws_connect(url, additional_headers={"Cookie": f"drumscribe_key={key}"}) as again:  # the page's way
            again.send(json.dumps(START))  # the slot was given back
            assert json.loads(again.recv(timeout=10))["type"] == "ready"


class Frames:
    """The two calls of tests.test_live's helpers, on a websockets connection."""

    def __init__(self, ws) -> None:
        self.ws = ws

    def receive_json(self, timeout: float = 60) -> dict:
        return json.loads(self.ws.recv(timeout=timeout))


def test_a_webrtc_offer_over_the_keys_live_limit_gets_429(settings):
    with TestClient(create_app(settings, http_settings=KEYS_ON)) as client:
        key = new_key(client, "nolive", max_sessions=0)
        response = client.post("/api/v1/rtc/offer", headers=bearer(key), json={"type": "offer", "sdp": "v=0"})
        assert response.status_code == 429 and response.json()["error"]["code"] == "busy"
        assert int(response.headers["retry-after"]) >= 1


def test_keys_cli_works_beside_a_running_server_on_the_embedded_redis(settings, short_wav):
    with TestClient(create_app(settings, http_settings=KEYS_ON)) as client:
        made = cli(settings, "keys", "create", "cli-user", "--max-jobs", "2", "--max-sessions", "1")
        assert made.returncode == 0, made.stderr
        created = json.loads(made.stdout)
        assert set(created) == {"key", "webhook_secret"}
        store = client.app.state.store.redis
        record = keys.get(store, "cli-user")
        assert record.key_hash == keys.key_hash(created["key"]) and created["key"] not in json.dumps(
            store.hgetall(keys.RECORDS_KEY))  # only the hash is kept
        assert keys.webhook_secret(store, "cli-user") == created["webhook_secret"]
        assert client.get("/api/v1/jobs", headers=bearer(created["key"])).status_code == 200
        assert cli(settings, "keys", "create", "cli-user").returncode != 0  # the name is taken
        listed = [json.loads(line) for line in cli(settings, "keys", "list").stdout.splitlines()]
        assert [(k["name"], k["max_jobs"], k["max_sessions"]) for k in listed] == [("cli-user", 2, 1)]
        assert "key" not in listed[0] and "webhook_secret" not in listed[0]
        assert cli(settings, "keys", "revoke", "cli-user").returncode == 0
        assert client.get("/api/v1/jobs", headers=bearer(created["key"])).status_code == 401
        assert cli(settings, "keys", "revoke", "cli-user").returncode != 0
        client.app.state.store.redis.ping()  # the CLI left the server's Redis running


def test_keys_cli_on_redis_url(tmp_path, settings):
    with RedisServer(tmp_path / "redis") as server:
        made = cli(settings, "keys", "create", "remote", "--operator", env={"REDIS_URL": server.url})
        assert made.returncode == 0, made.stderr
        client = redis.Redis.from_url(server.url, decode_responses=True)
        assert keys.lookup(client, json.loads(made.stdout)["key"]).operator
        client.close()


def test_keys_are_off_on_loopback_and_on_elsewhere_unless_set():
    assert HttpSettings().serving("127.0.0.1").auth == "off" and HttpSettings().serving("::1").auth == "off"
    assert HttpSettings().serving("0.0.0.0").auth == "keys" and HttpSettings().serving("192.0.2.7").auth == "keys"
    assert HttpSettings(auth="off").serving("0.0.0.0").auth == "off"
    assert HttpSettings(auth="keys").serving("127.0.0.1").auth == "keys"
    assert not HttpSettings().keys_required  # an app made without serve (these tests) has them off


def test_the_page_asks_for_a_key_and_uses_it_for_uploads_downloads_and_live(settings, beat_wav, browser, page):
    from tests.test_browser import download_text, wait_until

    live = dataclasses.replace(FAST, pace_grace=60.0)
    with RunningServer(create_app(settings, live_settings=live, http_settings=KEYS_ON)) as server:
        key = keys.create(server.app.state.store.redis, "page")[0]
        answers = iter(["not-the-key", key])  # a wrong key is asked for again
        asked: list[str] = []

        def answer(dialog) -> None:
            asked.append(dialog.message)
            dialog.accept(next(answers))

        page.on("dialog", answer)
        page.goto(server.http + "/")
        deadline = time.monotonic() + 10
        while len(asked) < 2:
            assert time.monotonic() < deadline, asked
            page.wait_for_timeout(50)
        assert "not accepted" in asked[1]
        page.get_by_test_id("upload-input").set_input_files(str(beat_wav))
        page.wait_for_selector("[data-testid=job-status][data-status=succeeded]", timeout=60_000)
        assert "<score-partwise" in download_text(page, "#job-result [data-testid=download-musicxml]")
        jobs = httpx.get(server.http + "/api/v1/jobs", headers=bearer(key)).json()["jobs"]
        assert len(jobs) == 1 and server.app.state.store.get(jobs[0]["id"])[keys.KEY_FIELD] == "page"
        page.get_by_test_id("live-start").click()  # WebRTC: the offer carries the key's cookie
        page.wait_for_selector("#live[data-state=running]", timeout=20_000)
        assert page.locator("#live").get_attribute("data-transport") == "webrtc"
        page.wait_for_timeout(2000)
        page.get_by_test_id("live-stop").click()
        page.wait_for_selector("#live[data-state=done]", timeout=60_000)
        session_id = page.locator("#live").get_attribute("data-session-id")
        assert httpx.get(f"{server.http}/api/v1/sessions/{session_id}", headers=bearer(key)).status_code == 200
        page.reload()  # kept: not asked again
        page.wait_for_selector("#recent li[data-status=succeeded]")
        assert len(asked) == 2
        keys.revoke(server.app.state.store.redis, "page")  # the offer gets 401, the WebSocket's start unauthorized
        page.get_by_test_id("live-start").click()
        wait_until(page, "window.drumscribe.live.error !== null", 30_000)
        assert page.evaluate("window.drumscribe.live.error.code") == "unauthorized"
        assert page.locator("#live-status").text_content().startswith("This server did not accept your API key")
