"""What a review of the hardening found: slow uploads and failed live sessions kept from the sweep,
Redis faults while a session waits, errors of the live path answered 1011, IPv6 caps by /64, a
short Redis patience for the API, strict Host values, JobNotFound as 404, limits in bytes."""
from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import socket
import threading
import time

import numpy as np
import pytest
import redis
import soundfile as sf
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
from tests.test_http_hardening import Served, multipart_head, status_and_json, read_all
from tests.test_live import START, app_client, expect_error, pcm, play
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
