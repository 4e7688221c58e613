"""Job files in a bucket (``DRUMSCRIBE_STORAGE=s3://…``) of a real S3 API server on loopback:
what lies in the bucket, an API and a worker that share no folder, presigned downloads, live
recordings, retention, and a bucket that cannot be reached. The batch tests themselves also
run against a bucket (``tests/test_batch_service.py``)."""
from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import boto3
import httpx
import numpy as np
import pytest
import soundfile as sf
from starlette.testclient import TestClient

from batch.config import Settings
from batch.connection import close, connect, url_of
from batch.jobs import JobStore
from batch.retention import sweep
from batch.score import FILES as OUTPUT_FILES
from batch.storage import LocalStorage, RangeNotSatisfiable, S3Storage, parse_location
from batch.worker import Worker
from tests.test_batch_service import submit, wait_for
from web.app import create_app

OUTPUTS = set(OUTPUT_FILES.values())


def objects(storage: str) -> dict[str, set[str]]:
    """The bucket's objects under the storage's prefix: job id -> names."""
    bucket, prefix = parse_location(storage)
    found: dict[str, set[str]] = {}
    for page in boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for item in page.get("Contents", ()):
            job_id, name = item["Key"][len(prefix) + 1:].split("/", 1)
            found.setdefault(job_id, set()).add(name)
    return found


def files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()] if folder.exists() else []


@pytest.fixture
def bucket_settings(settings, s3_storage) -> Settings:
    return dataclasses.replace(settings, storage=s3_storage)


def test_api_and_worker_share_nothing_but_redis_and_the_bucket(bucket_settings, tmp_path, beat_wav):
    api = dataclasses.replace(bucket_settings, data_dir=tmp_path / "api", workers=0, presign_seconds=60)
    with TestClient(create_app(api)) as client:
        assert isinstance(client.app.state.storage, S3Storage)
        worker_settings = dataclasses.replace(bucket_settings, data_dir=tmp_path / "worker",
                                              redis_url=url_of(client.app.state.store.redis))
        worker_client = connect(worker_settings)
        worker = Worker(JobStore(worker_client, worker_settings), client.app.state.detector, worker_settings)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:
            job_id = submit(client, beat_wav, title="In a bucket").json()["id"]
            assert objects(api.storage)[job_id] == {"input.wav"}  # stored before it was queued
            assert wait_for(client, job_id)["status"] == "succeeded"
        finally:
            worker.stop.set()
            thread.join(timeout=30)
            close(worker_client)
        assert objects(api.storage)[job_id] == {"input.wav", *OUTPUTS}

        result = client.get(f"/api/v1/jobs/{job_id}/result")  # streamed from the bucket
        assert result.status_code == 200 and int(result.headers["content-length"]) == len(result.content)
        assert len(result.json()["hits"]) > 40
        part = client.get(f"/api/v1/jobs/{job_id}/result", headers={"Range": "bytes=10-19"})  # as players seek
        assert part.status_code == 206 and part.content == result.content[10:20]
        assert part.headers["content-range"] == f"bytes 10-19/{len(result.content)}"
        beyond = client.get(f"/api/v1/jobs/{job_id}/result", headers={"Range": f"bytes={len(result.content)}-"})
        assert beyond.status_code == 416 and beyond.json()["error"]["code"] == "range_not_satisfiable"
        assert beyond.headers["content-range"] == f"bytes */{len(result.content)}"
        download = client.get(f"/api/v1/jobs/{job_id}/download/musicxml", follow_redirects=False)
        assert download.status_code == 307 and download.headers["location"].startswith(client.app.state.storage.client.meta.endpoint_url)
        direct = httpx.get(download.headers["location"])  # the bucket itself answers the presigned URL
        assert direct.status_code == 200 and b"<score-partwise" in direct.content
        assert direct.headers["content-type"] == "application/vnd.recordare.musicxml+xml"
        assert "In%20a%20bucket.musicxml" in direct.headers["content-disposition"]

        svg = client.get(f"/api/v1/jobs/{job_id}/preview/1")
        assert svg.status_code == 200 and svg.text.lstrip().startswith("<")
        assert objects(api.storage)[job_id] > {"input.wav", *OUTPUTS}  # the rendered page is stored too

        assert files_under(api.data_dir / "jobs") == [] and files_under(worker_settings.data_dir) == []
        assert client.delete(f"/api/v1/jobs/{job_id}").json() == {"id": job_id, "deleted": True}
        assert job_id not in objects(api.storage)


def test_a_live_recording_is_stored_in_the_bucket_when_the_session_ends(bucket_settings, beat_wav):
    audio, rate = sf.read(beat_wav, dtype="float32")
    pcm = (np.clip(audio[::2, 0], -1, 1 - 2**-15) * 32768).astype("<i2").tobytes()  # mono at 22.05 kHz
    with TestClient(create_app(bucket_settings)) as client, client.websocket_connect("/api/v1/stream") as ws:
        ws.send_json({"type": "start", "sample_rate": rate // 2, "channels": 1, "encoding": "s16le"})
        assert ws.receive_json()["type"] == "ready"
        for start in range(0, len(pcm), 32768):
            ws.send_bytes(pcm[start:start + 32768])
        ws.send_json({"type": "stop"})
        while (final := ws.receive_json())["type"] not in ("final", "error"):
            pass
        assert final["type"] == "final" and final["status"] == "succeeded", final
        assert objects(bucket_settings.storage)[final["job_id"]] == {"recording.flac", *OUTPUTS}
        assert files_under(bucket_settings.jobs_dir) == []  # spooled here while live, then moved to the bucket
        assert client.get(final["downloads"]["pdf"]).content.startswith(b"%PDF")


def test_sweep_removes_expired_jobs_and_orphans_from_the_bucket(bucket_settings):
    storage = S3Storage(*parse_location(bucket_settings.storage))
    client = connect(bucket_settings)
    store = JobStore(client, bucket_settings)
    try:
        done = store.new_id()
        storage.write(done, "input.wav", b"RIFF")
        store.create({"kind": "upload", "file": "input.wav"}, {}, done)
        store.cancel(done)
        queued = store.new_id()
        storage.write(queued, "input.wav", b"RIFF")
        store.create({"kind": "upload", "file": "input.wav"}, {}, queued)
        orphan = "a" * 32  # the API died between storing an upload and queueing its job
        storage.write(orphan, "input.wav", b"RIFF")
        storage.write("not-a-job", "x", b"")

        quick = dataclasses.replace(bucket_settings, orphan_grace_minutes=1 / 60)
        assert sweep(store, quick, storage).orphans == 0  # still in its grace
        time.sleep(2.2)  # S3 stamps objects to the second
        swept = sweep(store, dataclasses.replace(quick, retention_hours=1 / 3600), storage)
        assert (swept.expired, swept.orphans) == (1, 1)
        assert set(objects(bucket_settings.storage)) == {queued, "not-a-job"}
    finally:
        close(client)


def test_an_unreachable_bucket_answers_503_and_queues_nothing(bucket_settings, beat_wav, monkeypatch):
    with socket_closed_port() as port:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
        with TestClient(create_app(dataclasses.replace(bucket_settings, workers=0))) as client:
            response = submit(client, beat_wav)
            assert response.status_code == 503 and response.json()["error"]["code"] == "unavailable"
            assert client.get("/api/v1/jobs").json()["jobs"] == []


class socket_closed_port:
    """A loopback port that nothing listens on, for the block."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        return self.sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.sock.close()


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_files_and_byte_ranges_read_alike_from_a_folder_and_a_bucket(kind, tmp_path, request):
    storage = LocalStorage(tmp_path) if kind == "local" else S3Storage(*parse_location(request.getfixturevalue("s3_storage")))
    data = bytes(range(256)) * 4000  # 1 MB: several chunks
    job_id = "f" * 32
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "input.bin").write_bytes(data)
    storage.publish(job_id, tmp_path / "work", ["input.bin"])
    assert not (tmp_path / "work" / "input.bin").exists() and storage.exists(job_id, "input.bin")
    assert storage.read(job_id, "input.bin") == data
    for byte_range, expected in [((0, None), data), ((5, 9), data[5:10]), ((len(data) - 3, None), data[-3:]),
                                 ((1000, 10**9), data[1000:])]:
        blob = storage.open(job_id, "input.bin", byte_range)
        assert b"".join(blob.chunks) == expected and blob.size == len(expected) and blob.total == len(data)
        assert blob.content_range == f"bytes {byte_range[0]}-{byte_range[0] + len(expected) - 1}/{len(data)}"
    with pytest.raises(RangeNotSatisfiable) as refused:
        storage.open(job_id, "input.bin", (len(data), None))
    assert refused.value.total == len(data)
    with pytest.raises(FileNotFoundError):
        storage.open(job_id, "missing")
    with storage.workspace(job_id, fetch=["input.bin"]) as folder:
        assert (folder / "input.bin").read_bytes() == data
    storage.discard(job_id, ["input.bin"])
    assert not storage.exists(job_id, "input.bin")


@pytest.mark.parametrize("location", ["s3://", "s3:/bucket", "gs://bucket/x", "bucket"])
def test_a_misspelt_storage_is_refused_at_start(location):
    with pytest.raises(ValueError, match="DRUMSCRIBE_STORAGE"):
        Settings(storage=location)


@pytest.mark.parametrize("seconds", [-1, 7 * 24 * 3600 + 1])
def test_a_presign_time_s3_refuses_is_refused_at_start(seconds):
    with pytest.raises(ValueError, match="DRUMSCRIBE_S3_PRESIGN_SECONDS"):
        Settings(presign_seconds=seconds)
