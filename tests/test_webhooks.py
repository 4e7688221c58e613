"""Webhooks end to end: a real HTTP receiver on loopback, real Redis, real workers."""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from starlette.testclient import TestClient

from batch import keys, webhooks
from batch.connection import close, connect
from batch.jobs import JobStore
from tests.test_batch_service import submit, wait_for
from web.app import create_app
from web.http_settings import HttpSettings


class Receiver:
    """A webhook receiver on a loopback port: keeps each request, answers the next status of ``answers``
    (200 once they run out)."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.answers = list(answers or [])
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.requests.append((self.path, dict(self.headers), body))
                self.send_response(receiver.answers.pop(0) if receiver.answers else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=abc"

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait(self, count: int, timeout: float = 30.0) -> list[tuple[str, dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"{len(self.requests)} of {count} deliveries arrived"
            time.sleep(0.02)
        return self.requests


@pytest.fixture
def hooked(settings):
    """Settings for webhooks to loopback receivers, retried after 0.2 s."""
    return dataclasses.replace(settings, webhook_allow_private=True, webhook_first_retry_seconds=0.2)


def delivered(client: TestClient, job_id: str, status: str = "delivered", timeout: float = 30.0,
              headers: dict[str, str] | None = None) -> dict:
    """The job once its webhook reached ``status``."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/v1/jobs/{job_id}", headers=headers).json()
        if job["webhooks"] and job["webhooks"][0]["status"] == status:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def verify(body: bytes, header: str, secret: str) -> bool:
    """What a receiver does (the README's snippet)."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


def test_a_finished_job_posts_a_signed_event_that_verifies_with_the_secret(hooked, beat_wav):
    with Receiver() as receiver, TestClient(create_app(hooked)) as client:
        job_id = submit(client, beat_wav, title="Hooked", webhook_url=receiver.url).json()["id"]
        assert wait_for(client, job_id)["status"] == "succeeded"
        job = delivered(client, job_id)
        secret = client.app.state.store.redis.get(webhooks.SECRET_KEY)  # made on first use: keys are off
        secret_command = subprocess.run([sys.executable, "-m", "web.cli", "webhooks", "secret"], capture_output=True,
                                        text=True, timeout=60, env={**os.environ, "DRUMSCRIBE_DATA": str(hooked.data_dir)})
        (path, headers, body), = receiver.wait(1)
        other = submit(client, beat_wav).json()["id"]
        assert client.get(f"/api/v1/jobs/{other}").json()["webhooks"] == []

    assert path == "/hook?token=abc"
    assert json.loads(secret_command.stdout) == {"webhook_secret": secret}
    assert verify(body, headers["X-DrumScribe-Signature"], secret)
    assert not verify(body, headers["X-DrumScribe-Signature"], secret + "x")
    assert not verify(body.replace(b"succeeded", b"failed", 1), headers["X-DrumScribe-Signature"], secret)
    hook = job["webhooks"][0]
    assert headers["X-DrumScribe-Event"] == "job.succeeded" and headers["X-DrumScribe-Delivery"] == hook["id"]
    assert headers["Content-Type"] == "application/json"
    event = json.loads(body)
    assert event["event"] == "job.succeeded"
    assert event["job"]["id"] == job_id and event["job"]["status"] == "succeeded" and event["job"]["title"] == "Hooked"
    assert hook["event"] == "job.succeeded" and hook["attempts"] == 1 and hook["last_status_code"] == 200
    assert hook["delivered_at"] >= event["job"]["created"] and hook["last_error"] is None


def test_a_refused_delivery_is_retried_with_the_same_body_until_it_succeeds(hooked, long_beat_wav):
    with Receiver([500, 503]) as receiver, TestClient(create_app(hooked)) as client:
        job_id = submit(client, long_beat_wav, webhook_url=receiver.url).json()["id"]
        assert client.delete(f"/api/v1/jobs/{job_id}").json()["status"] == "cancelled"
        job = delivered(client, job_id)
        requests = receiver.wait(3)
    hook = job["webhooks"][0]
    assert hook["event"] == "job.cancelled" and hook["attempts"] == 3 and hook["last_status_code"] == 200
    assert len({body for _, _, body in requests}) == 1  # fixed at the first attempt
    assert {headers["X-DrumScribe-Delivery"] for _, headers, _ in requests} == {hook["id"]}
    assert json.loads(requests[0][2])["event"] == "job.cancelled"


def test_with_api_keys_a_delivery_is_signed_with_the_secret_of_the_jobs_key(hooked, beat_wav):
    keys_on = dataclasses.replace(HttpSettings.from_env(), auth="keys")
    with Receiver() as receiver, TestClient(create_app(hooked, http_settings=keys_on)) as client:
        redis = client.app.state.store.redis
        key, alice = keys.create(redis, "alice")
        _, bob = keys.create(redis, "bob")
        with beat_wav.open("rb") as f:
            response = client.post("/api/v1/jobs", headers={"Authorization": f"Bearer {key}"},
                                   files={"file": ("beat.wav", f, "audio/wav")}, data={"webhook_url": receiver.url})
        assert response.status_code == 202, response.text
        job = delivered(client, response.json()["id"], headers={"Authorization": f"Bearer {key}"})
        (_, headers, body), = receiver.wait(1)
        server_secret = webhooks.server_secret(redis, hooked)
    signed = headers["X-DrumScribe-Signature"]
    assert verify(body, signed, alice.webhook_secret)
    assert not verify(body, signed, bob.webhook_secret) and not verify(body, signed, server_secret)
    assert json.loads(body)["job"]["id"] == job["id"] and headers["X-DrumScribe-Delivery"] == job["webhooks"][0]["id"]


@pytest.mark.parametrize("url,code", [
    ("http://127.0.0.1:9/hook", "webhook_not_allowed"),
    ("http://localhost:9/hook", "webhook_not_allowed"),
    ("http://[::1]/hook", "webhook_not_allowed"),
    ("http://169.254.169.254/latest/meta-data", "webhook_not_allowed"),
    ("ftp://example.com/hook", "invalid_option"),
    ("https://user:pw@example.com/hook", "invalid_option"),
    ("https://example.com/" + "a" * 2100, "invalid_option"),
])
def test_webhook_urls_are_checked_at_submission(settings, beat_wav, url, code):
    with TestClient(create_app(settings)) as client:
        response = submit(client, beat_wav, webhook_url=url)
        assert response.status_code == 400 and response.json()["error"]["code"] == code, response.text
        assert client.get("/api/v1/jobs").json()["jobs"] == []


def test_a_link_job_takes_a_webhook_url_under_the_same_rules(settings):
    with TestClient(create_app(settings)) as client:
        link = "https://www.youtube.com/watch?v=dQw4w9WgXcQ"
        for webhook_url, code in (("http://10.0.0.8/hook", "webhook_not_allowed"),
                                  ("javascript:alert(1)", "invalid_request")):
            response = client.post("/api/v1/jobs", json={"url": link, "webhook_url": webhook_url})
            assert response.status_code == 400 and response.json()["error"]["code"] == code, response.text
            assert "webhook_url" in response.json()["error"]["message"]
        assert client.get("/api/v1/jobs").json()["jobs"] == []


def run_dispatcher(store: JobStore, settings, job_id: str, until) -> dict:
    """A dispatcher of ``settings`` until the job's delivery passes ``until``; the delivery."""
    stop = threading.Event()
    thread = threading.Thread(target=webhooks.Dispatcher(store, settings, stop).run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    try:
        while True:
            record = webhooks.summaries(store.redis, store.get(job_id).get("webhook"))
            if record and until(record[0]):
                return record[0]
            assert time.monotonic() < deadline, record
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)


def test_private_addresses_are_refused_at_delivery_unless_allowed(settings):
    """A name that resolves to a private address when the delivery goes out (it may have moved since
    submission) is refused, and not retried; the allow flag lets it through."""
    with Receiver() as receiver:
        url = receiver.url.replace("127.0.0.1", "localhost")
        for allowed in (False, True):
            client = connect(dataclasses.replace(settings, data_dir=settings.data_dir / str(allowed)))
            try:
                store = JobStore(client, settings)
                job_id = store.create({"kind": "upload", "file": "x.wav"}, {"webhook_url": url})
                store.cancel(job_id)
                record = run_dispatcher(store, dataclasses.replace(settings, webhook_allow_private=allowed), job_id,
                                        lambda hook: hook["status"] != "pending")
            finally:
                close(client)
            if not allowed:
                assert record["status"] == "failed" and record["attempts"] == 1
                assert "local or private address" in record["last_error"] and receiver.requests == []
                assert record["next_attempt_at"] is None
            else:
                assert record["status"] == "delivered" and len(receiver.requests) == 1


def test_an_unreachable_receiver_is_retried_until_the_retry_time_is_over(settings):
    with Receiver() as receiver:
        closed = receiver.url
    client = connect(settings)
    try:
        store = JobStore(client, settings)
        job_id = store.create({"kind": "upload", "file": "x.wav"}, {"webhook_url": closed})
        store.cancel(job_id)
        patient = dataclasses.replace(settings, webhook_allow_private=True, webhook_first_retry_seconds=0.1,
                                      webhook_retry_seconds=1.0)
        started = time.time()
        record = run_dispatcher(store, patient, job_id, lambda hook: hook["status"] != "pending")
    finally:
        close(client)
    assert record["status"] == "failed" and record["last_error"].startswith("no answer")
    assert record["last_status_code"] is None and record["delivered_at"] is None
    assert 2 <= record["attempts"] <= 6  # 0.1, 0.2, 0.4 s ... apart (polled every 0.5 s), for about a second
    assert time.time() - started < 5


def test_a_pending_delivery_survives_a_restart(hooked, beat_wav):
    with Receiver([503] * 1000) as receiver:
        with TestClient(create_app(hooked)) as client:
            job_id = submit(client, beat_wav, webhook_url=receiver.url).json()["id"]
            assert wait_for(client, job_id)["status"] == "succeeded"
            receiver.wait(1)
            pending = client.get(f"/api/v1/jobs/{job_id}").json()["webhooks"][0]
        tried = len(receiver.requests)
        receiver.answers.clear()  # the receiver is healthy again while no app runs
        with TestClient(create_app(hooked)) as client:  # the app again, on the same Redis data
            job = delivered(client, job_id)
    hook = job["webhooks"][0]
    assert pending["status"] == "pending" and pending["last_status_code"] == 503
    assert hook["id"] == pending["id"] and hook["attempts"] == tried + 1 == len(receiver.requests)
    assert [r[2] for r in receiver.requests] == [receiver.requests[0][2]] * len(receiver.requests)
