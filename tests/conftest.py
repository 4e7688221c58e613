"""Shared fixtures: drum recordings the tests make, and a batch service on a real Redis."""
from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from batch.config import Settings
from models.synthetic import rock_beat

# Starlette's TestClient sends ``Host: testserver``; the app serves only names it is told to.
os.environ.setdefault("DRUMSCRIBE_ALLOWED_HOSTS", "testserver")


@pytest.fixture(scope="session")
def beat_wav(tmp_path_factory) -> Path:
    """Eight bars of a rock beat on the example kit (real one-shots) at 100 bpm, 44.1 kHz stereo WAV."""
    audio, _ = rock_beat(bars=8, bpm=100, rate=44100)
    path = tmp_path_factory.mktemp("audio") / "beat.wav"
    sf.write(path, np.stack([audio, audio], axis=1), 44100)
    return path


@pytest.fixture(scope="session")
def long_beat_wav(tmp_path_factory) -> Path:
    """Four minutes of the beat: long enough to catch a job while it runs."""
    audio, _ = rock_beat(bars=100, bpm=100, rate=22050)
    path = tmp_path_factory.mktemp("audio") / "long_beat.wav"
    sf.write(path, audio, 22050)
    return path


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Embedded Redis under a fresh data directory, one in-process worker, short timeouts."""
    return dataclasses.replace(Settings(), data_dir=tmp_path / "data", workers=1, visibility_timeout=2.0)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3 API server (moto's standalone server) on a free loopback port: its endpoint URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the S3 server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def s3_storage(s3_server, monkeypatch) -> str:
    """A fresh bucket on the S3 server and the standard AWS_* settings that reach it (for this
    process and the workers it starts): its ``DRUMSCRIBE_STORAGE``."""
    import boto3

    for name, value in {"AWS_ENDPOINT_URL": s3_server, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    bucket = f"drumscribe-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/jobs"


class RunningServer:
    """The app under a real uvicorn server on a free loopback port, in a background thread."""

    def __init__(self, app) -> None:
        import socket
        import threading

        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws_max_size=1 << 20))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def __enter__(self) -> "RunningServer":
        import time

        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
