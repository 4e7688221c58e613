"""The batch service end to end, against a real (embedded) Redis and real workers, with job files
in local folders and in a bucket of a real S3 API server (moto's, on loopback)."""
from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mido
import pytest
import soundfile as sf
from music21 import converter
from starlette.testclient import TestClient

from batch.connection import url_of
from batch.storage import open_storage, spool
from web.app import create_app


@pytest.fixture(params=["local", "s3"])
def settings(request, settings):
    """Every test twice: job files in the data folder, then in a bucket (``DRUMSCRIBE_STORAGE=s3://…``)."""
    if request.param == "local":
        return settings
    return dataclasses.replace(settings, storage=request.getfixturevalue("s3_storage"))


def stored(settings) -> set[str]:
    """Everything in the job store and in the local job folders (a live spool, beside a bucket)."""
    return {name for place in {open_storage(settings), spool(settings)} for name, _ in place.listing()}


def submit(client: TestClient, path: Path, **fields: str):
    with path.open("rb") as f:
        return client.post("/api/v1/jobs", files={"file": (path.name, f, "audio/wav")}, data=fields)


def wait_for(client: TestClient, job_id: str, states=("succeeded", "failed", "cancelled"), timeout=60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in states:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job} after {timeout} s")


def queue_is_empty(client: TestClient) -> bool:
    store = client.app.state.store
    return store.redis.xlen(store.settings.stream_name) == 0


def test_upload_progress_result_and_every_download(settings, beat_wav):
    with TestClient(create_app(settings)) as client:
        response = submit(client, beat_wav, title="Rock beat")
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        assert response.json()["status"] == "queued"

        with client.stream("GET", f"/api/v1/jobs/{job_id}/events") as events:
            updates = [json.loads(line[6:]) for line in events.iter_lines() if line.startswith("data: ")]
        assert updates[-1]["status"] == "succeeded" and updates[-1]["progress"] == 1.0
        # events are the job polled every 0.25 s: a short stage may pass unseen, but the order holds
        order = ["queued", "starting", "decode", "detect", "score", "done"]
        stages = [u["stage"] for u in updates]
        assert set(stages) <= set(order) and len(set(stages)) >= 3
        assert [order.index(stage) for stage in stages] == sorted(order.index(stage) for stage in stages)

        result = client.get(f"/api/v1/jobs/{job_id}/result").json()
        assert result["sample_rate"] == 44100 and result["time_signature"] == "4/4"
        assert result["bpm"] == pytest.approx(100, rel=0.03)
        hits = result["hits"]
        assert len(hits) > 40 and sum(result["summary"].values()) == len(hits)

        xml = client.get(f"/api/v1/jobs/{job_id}/download/musicxml")
        assert xml.status_code == 200 and "Rock%20beat.musicxml" in xml.headers["content-disposition"]
        score = converter.parseData(xml.content, format="musicxml")
        notes = [n for n in score.recurse().notes for _ in getattr(n, "notes", [n])]
        assert 0.9 * len(hits) <= len(notes) <= len(hits)  # hits on one slot of one line merge

        pdf = client.get(f"/api/v1/jobs/{job_id}/download/pdf")
        assert pdf.content.startswith(b"%PDF") and pdf.headers["content-type"] == "application/pdf"
        midi = mido.MidiFile(file=io.BytesIO(client.get(f"/api/v1/jobs/{job_id}/download/midi").content))
        assert sum(1 for m in midi if m.type == "note_on" and m.velocity > 0 and m.channel == 9) == len(hits)
        written = client.get(f"/api/v1/jobs/{job_id}/download/midi_quantized")
        assert written.headers["content-type"] == "audio/midi"
        assert "Rock%20beat%20%28quantized%29.mid" in written.headers["content-disposition"]
        assert 0.9 * len(hits) <= sum(1 for m in mido.MidiFile(file=io.BytesIO(written.content)) if m.type == "note_on")
        assert client.get(f"/api/v1/jobs/{job_id}/download/json").json() == result
        assert client.get(f"/api/v1/jobs/{job_id}/download/docx").status_code == 404
        assert client.get("/api/v1/jobs").json()["jobs"][0]["id"] == job_id
        assert queue_is_empty(client)


@pytest.mark.parametrize("name,content,status,code", [
    ("noise.wav", os.urandom(20000), 415, "unsupported_media"),
    ("song.mp3", b"ID3" + os.urandom(3000), 415, "unsupported_media"),
    ("empty.wav", b"", 422, "empty"),
])
def test_bad_uploads_are_refused_and_nothing_is_queued(settings, name, content, status, code):
    with TestClient(create_app(settings)) as client:
        response = client.post("/api/v1/jobs", files={"file": (name, content, "audio/wav")})
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code and response.json()["error"]["message"]
        assert queue_is_empty(client) and client.get("/api/v1/jobs").json()["jobs"] == []
        assert stored(settings) == set()


def test_truncated_wrong_type_too_large_and_too_long(settings, beat_wav):
    small = dataclasses.replace(settings, max_upload_bytes=200_000, max_seconds=5.0)
    with TestClient(create_app(small)) as client:
        cut = beat_wav.read_bytes()[:150_000]
        response = client.post("/api/v1/jobs", files={"file": ("cut.wav", cut, "audio/wav")})
        assert (response.status_code, response.json()["error"]["code"]) == (422, "truncated")
        response = client.post("/api/v1/jobs", content=b"hello", headers={"content-type": "text/plain"})
        assert (response.status_code, response.json()["error"]["code"]) == (415, "unsupported_media")
        response = submit(client, beat_wav)  # 8 bars of stereo 44.1 kHz: ~3.4 MB
        assert (response.status_code, response.json()["error"]["code"]) == (413, "too_large")
        audio, rate = sf.read(beat_wav)
        short = beat_wav.parent / "short.flac"
        sf.write(short, audio[: rate * 6: 4, 0], rate // 4)  # 6 s at 11 kHz: small, but too long
        response = submit(client, short)
        assert (response.status_code, response.json()["error"]["code"]) == (413, "too_long")
        assert queue_is_empty(client) and stored(small) == set()


@pytest.mark.parametrize("url", [
    "https://example.com/watch?v=abc",
    "https://youtube.com.evil.example/watch?v=abc",
    "file:///etc/passwd",
    "ftp://www.youtube.com/watch?v=abc",
    "http://127.0.0.1:8000/x.mp3",
    "http://[::1]/x.mp3",
    "http://10.1.2.3/x.mp3",
    "http://192.168.0.1/x.mp3",
    "http://169.254.169.254/latest/meta-data",
    "http://localhost/x.mp3",
    "https://user:secret@www.youtube.com/watch?v=abc",
    "not a url",
])
def test_refused_links(settings, url):
    with TestClient(create_app(settings)) as client:
        response = client.post("/api/v1/jobs", json={"url": url})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] in ("invalid_url", "host_not_allowed")
        assert queue_is_empty(client)


def test_malformed_json_and_unknown_job(settings):
    with TestClient(create_app(settings)) as client:
        response = client.post("/api/v1/jobs", content=b"{nope", headers={"content-type": "application/json"})
        assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_json")
        response = client.post("/api/v1/jobs", json={"url": "https://youtu.be/x", "separate": "maybe"})
        assert response.status_code == 400
        assert client.get("/api/v1/jobs/nope").status_code == 404
        assert client.get("/api/v1/jobs/nope").json()["error"]["code"] == "not_found"


def test_link_is_downloaded_with_yt_dlp_from_an_allowed_host(settings, beat_wav, tmp_path):
    import http.server
    import threading
    from functools import partial

    audio, rate = sf.read(beat_wav)
    sf.write(tmp_path / "beat.ogg", audio, rate)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        widened = dataclasses.replace(settings, allowed_hosts=(f"127.0.0.1:{server.server_port}",))
        with TestClient(create_app(widened)) as client:
            url = f"http://127.0.0.1:{server.server_port}/beat.ogg"
            response = client.post("/api/v1/jobs", json={"url": url, "title": "Linked"})
            assert response.status_code == 202, response.text
            job = wait_for(client, response.json()["id"])
            assert job["status"] == "succeeded", job
            result = client.get(f"/api/v1/jobs/{job['id']}/result").json()
            assert result["bpm"] == pytest.approx(100, rel=0.03) and len(result["hits"]) > 40
            missing = client.post("/api/v1/jobs", json={"url": url.replace("beat.ogg", "gone.ogg")})
            failed = wait_for(client, missing.json()["id"])
            assert failed["status"] == "failed" and "download" in failed["error"]
    finally:
        server.shutdown()


def test_cancel_queued_and_running_then_delete(settings, beat_wav, long_beat_wav):
    idle = dataclasses.replace(settings, workers=0)
    with TestClient(create_app(idle)) as client:
        queued = submit(client, beat_wav).json()["id"]
        assert client.delete(f"/api/v1/jobs/{queued}").json()["status"] == "cancelled"
    with TestClient(create_app(settings)) as client:  # a worker now: it must skip the cancelled job
        running = submit(client, long_beat_wav).json()["id"]
        wait_for(client, running, states=("running",))
        assert client.delete(f"/api/v1/jobs/{running}").json()["status"] == "cancelled"
        deadline = time.monotonic() + 60
        while not queue_is_empty(client) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert queue_is_empty(client)
        for job_id in (queued, running):
            assert client.get(f"/api/v1/jobs/{job_id}").json()["status"] == "cancelled"
        storage = client.app.state.storage
        assert not storage.exists(running, "score.pdf") and storage.exists(running, "input.wav")

        done = submit(client, beat_wav).json()["id"]
        assert wait_for(client, done)["status"] == "succeeded"
        assert storage.exists(done, "score.pdf")
        assert client.delete(f"/api/v1/jobs/{done}").json() == {"id": done, "deleted": True}
        assert client.get(f"/api/v1/jobs/{done}").status_code == 404
        assert done not in stored(settings) and client.get(f"/api/v1/jobs/{done}/download/pdf").status_code == 404


def _worker_process(settings, redis_url: str, *options: str, data_name: str = "worker-data") -> subprocess.Popen:
    """A ``drumscribe worker`` with ``options``; beside a bucket it has a data folder of its own
    (``data_name``), sharing no directory with the API."""
    data = settings.data_dir if settings.storage == "local" else settings.data_dir.with_name(data_name)
    env = {**os.environ, "REDIS_URL": redis_url, "DRUMSCRIBE_DATA": str(data), "DRUMSCRIBE_STORAGE": settings.storage,
           "DRUMSCRIBE_VISIBILITY_TIMEOUT": str(settings.visibility_timeout)}
    return subprocess.Popen([sys.executable, "-m", "web.cli", "worker", *options], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_worker_killed_mid_job_is_retried_and_completes_exactly_once(settings, long_beat_wav):
    api_only = dataclasses.replace(settings, workers=0)
    with TestClient(create_app(api_only)) as client:
        redis_url = url_of(client.app.state.store.redis)
        job_id = submit(client, long_beat_wav).json()["id"]
        first = _worker_process(settings, redis_url)
        try:
            wait_for(client, job_id, states=("running",), timeout=60)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            assert client.get(f"/api/v1/jobs/{job_id}").json()["status"] == "running"
        finally:
            first.kill()
        second = _worker_process(settings, redis_url)
        try:
            job = wait_for(client, job_id, timeout=90)
        finally:
            second.terminate()
            second.wait(timeout=30)
        record = client.app.state.store.get(job_id)
        assert job["status"] == "succeeded", job
        assert record["attempts"] == "2" and record["completions"] == "1"
        assert queue_is_empty(client)
        assert client.get(f"/api/v1/jobs/{job_id}/download/pdf").status_code == 200
    if settings.storage != "local":  # the API and the workers shared nothing but Redis and the bucket
        for data in (settings.data_dir, settings.data_dir.with_name("worker-data")):
            assert not [path for path in data.rglob("*") if job_id in str(path)]


def test_restart_keeps_finished_jobs(settings, beat_wav):
    with TestClient(create_app(settings)) as client:
        job_id = submit(client, beat_wav).json()["id"]
        assert wait_for(client, job_id)["status"] == "succeeded"
        hits = client.get(f"/api/v1/jobs/{job_id}/result").json()["hits"]
    with TestClient(create_app(settings)) as client:
        assert client.get(f"/api/v1/jobs/{job_id}").json()["status"] == "succeeded"
        assert client.get(f"/api/v1/jobs/{job_id}/result").json()["hits"] == hits


def test_health_and_metrics(settings, beat_wav):
    with TestClient(create_app(settings)) as client:
        job_id = submit(client, beat_wav).json()["id"]
        wait_for(client, job_id)
        health = client.get("/api/v1/health").json()
        assert health["status"] == "ok" and health["redis"]["ok"] and health["redis"]["embedded"]
        assert health["workers"]["alive"] == 1 and health["model"]["lookahead_ms"] <= 50
        text = client.get("/metrics").text
        assert 'drumscribe_jobs{state="succeeded"} 1.0' in text
        assert 'drumscribe_stage_seconds_count{stage="detect"} 1.0' in text
        assert "drumscribe_queue_waiting 0.0" in text
