"""Hostile inputs at intake: files that lie about their size or are cut off, and links that try
to lead the server somewhere else. The files are made here, small; links go to a local server."""
from __future__ import annotations

import dataclasses
import http.server
import json
import struct
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from starlette.testclient import TestClient

from batch.config import Settings
from batch.ingest import IngestError, check_url, download
from batch.links import HopPolicy, LinkRefused, check_addresses, is_public, parse
from models.audio import AudioError, DecodeLimits, read_audio
from web.app import create_app

ROOT = Path(__file__).resolve().parents[1]
PEAK_RSS_LIMIT_MB = 300


# ---------------------------------------------------------------- files


def wav_bytes(rate: int, channels: int, frames: np.ndarray) -> bytes:
    """A 16-bit PCM WAV whose header says ``rate`` and ``channels``, whatever they are."""
    data = frames.astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * channels * 2) & 0xFFFFFFFF, channels * 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def clicks(rate: int, seconds: float, channels: int) -> np.ndarray:
    """(frames, channels) float32 silence with a click in channel 0 at each whole second."""
    x = np.zeros((int(rate * seconds), channels), np.float32)
    x[rate // 2::rate, 0] = 0.5
    return x


def write_flac(path: Path, rate: int, channels: int, seconds: float) -> Path:
    """A 16-bit FLAC by FFmpeg's encoder, which takes rates libsndfile will not write (655,350 Hz),
    in blocks so the test never holds the whole signal."""
    layout = {1: "mono", 2: "stereo", 8: "7.1"}[channels]
    block = 1 << 16
    with av.open(str(path), "w", format="flac") as out:
        stream = out.add_stream("flac", rate=rate, layout=layout)
        for start in range(0, int(rate * seconds), block):
            x = np.zeros((block, channels), np.int16)
            for first in range((rate - start % rate) % rate, block, rate):  # a 1 ms click each whole second
                x[first:first + rate // 1000, 0] = 16000
            frame = av.AudioFrame.from_ndarray(x.reshape(1, -1), format="s16", layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def write_av(path: Path, container: str, codec: str, rate: int, x: np.ndarray, **options: str) -> Path:
    with av.open(str(path), "w", format=container, options=options) as out:
        stream = out.add_stream(codec, rate=rate, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x.T), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path


def tone(rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return np.stack([x, x], axis=1)


def cut(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    out = path.with_name("cut_" + path.name)
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def refusal(path: Path, **kwargs) -> AudioError:
    with pytest.raises(AudioError) as caught:
        read_audio(path, **kwargs)
    return caught.value


def decode_in_subprocess(path: Path) -> dict:
    """read_audio in a fresh interpreter: its outcome and the process's peak resident memory."""
    script = """
import json, sys
from models.audio import AudioError, read_audio
try:
    audio, rate = read_audio(sys.argv[1])
    out = {"rate": rate, "frames": len(audio), "peak": float(abs(audio).max())}
except AudioError as error:
    out = {"code": error.code, "message": str(error)}
# VmHWM is this process image's own peak: getrusage's ru_maxrss keeps the forking parent's
# peak across exec, so under a pytest process that has grown it reports the parent's size.
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
out["peak_rss_mb"] = int(hwm.split()[1]) / 1024
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", script, str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout)


# ---------------------------------------------------------------- decoding within a budget


def test_wav_claiming_2147483647_hz_is_refused_from_its_header(tmp_path, settings):
    path = tmp_path / "absurd.wav"
    path.write_bytes(wav_bytes(2_147_483_647, 1, clicks(48000, 1.0, 1)[:, 0] * 30000))
    error = refusal(path)
    assert error.code == "unsupported_media" and "2147483647 Hz" in str(error)
    with TestClient(create_app(dataclasses.replace(settings, workers=0))) as client:
        with path.open("rb") as f:
            response = client.post("/api/v1/jobs", files={"file": ("absurd.wav", f, "audio/wav")})
        assert response.status_code == 415, response.text
        assert "sample rate" in response.json()["error"]["message"]
        assert client.get("/api/v1/jobs").json()["jobs"] == []


def test_too_many_channels_and_too_low_a_rate_are_refused(tmp_path):
    sf.write(tmp_path / "nine.wav", clicks(8000, 0.5, 9), 8000)
    assert "9 channels" in str(refusal(tmp_path / "nine.wav"))
    sf.write(tmp_path / "slow.wav", clicks(4000, 1.0, 1), 4000)
    assert refusal(tmp_path / "slow.wav").code == "unsupported_media"


def test_decoded_size_over_the_budget_is_refused(tmp_path):
    path = tmp_path / "eight.wav"
    sf.write(path, clicks(48000, 2.0, 8), 48000)  # decodes to 8 x 48000 x 2 x 4 = 3 MB
    error = refusal(path, limits=DecodeLimits(max_decoded_bytes=2 * 1024**2))
    assert error.code == "too_large" and "8 channels at 48000 Hz" in str(error)
    audio, rate = read_audio(path, limits=DecodeLimits(max_decoded_bytes=4 * 1024**2))
    assert rate == 48000 and len(audio) == 96000


def test_the_issues_flac_is_refused_from_its_header(tmp_path):
    # 8 channels at 655,350 Hz for 55 s: about 270 KB, 1.15 GB decoded; before, 1.4 GB of server.
    refused = decode_in_subprocess(write_flac(tmp_path / "bomb.flac", 655_350, 8, 55.0))
    assert refused["code"] == "unsupported_media" and "655350 Hz" in refused["message"]
    assert refused["peak_rss_mb"] < PEAK_RSS_LIMIT_MB


def test_large_allowed_file_decodes_in_chunks_to_48_khz_mono(tmp_path):
    # 8 channels at 192 kHz for 60 s: 369 MB if decoded whole; mono at 48 kHz is 11.5 MB.
    path = write_flac(tmp_path / "large.flac", 192_000, 8, 60.0)
    result = decode_in_subprocess(path)
    assert result["rate"] == 48000 and abs(result["frames"] / 48000 - 60.0) < 0.1 and result["peak"] > 0.05
    assert result["peak_rss_mb"] < PEAK_RSS_LIMIT_MB, result
    # the clicks stay where they were put (one of 8 channels, 16000 / 32768, at each whole second)
    audio, rate = read_audio(path)
    assert np.abs(audio[rate - 10:rate + 60]).max() > 0.05 > np.abs(audio[rate // 2:rate - 10]).max()


# ---------------------------------------------------------------- cut-off files


@pytest.mark.parametrize("kind", ["mp3", "webm", "flac", "wav"])
def test_cut_off_files_are_truncated(tmp_path, kind):
    x = tone(48000, 4.0)
    path = {
        "mp3": lambda: write_av(tmp_path / "song.mp3", "mp3", "libmp3lame", 44100, tone(44100, 4.0)),
        "webm": lambda: write_av(tmp_path / "song.webm", "webm", "libopus", 48000, x),
        "flac": lambda: sf.write(tmp_path / "song.flac", x, 48000) or tmp_path / "song.flac",
        "wav": lambda: sf.write(tmp_path / "song.wav", x, 48000) or tmp_path / "song.wav",
    }[kind]()
    assert abs(len(read_audio(path)[0]) / read_audio(path)[1] - 4.0) < 0.1  # whole, it is fine
    error = refusal(cut(path, 0.6))
    assert error.code == "truncated", error


def test_mp3_without_a_length_header_is_not_called_cut(tmp_path):
    # Without a Xing/Info header FFmpeg only guesses the length: no guess may refuse a whole file.
    path = write_av(tmp_path / "bare.mp3", "mp3", "libmp3lame", 44100, tone(44100, 3.0), write_xing="0")
    audio, rate = read_audio(path)
    assert abs(len(audio) / rate - 3.0) < 0.1


def test_cut_off_mp3_upload_gets_a_clear_error(tmp_path, settings):
    path = cut(write_av(tmp_path / "song.mp3", "mp3", "libmp3lame", 44100, tone(44100, 4.0)), 0.5)
    with TestClient(create_app(dataclasses.replace(settings, workers=0))) as client:
        with path.open("rb") as f:
            response = client.post("/api/v1/jobs", files={"file": ("song.mp3", f, "audio/mpeg")})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "truncated" and "cut off" in error["message"] and "cut_song" not in error["message"]


# ---------------------------------------------------------------- links at intake


YOUTUBE = ("www.youtube.com", "youtu.be")


@pytest.mark.parametrize("url, normal", [
    ("HTTPS://WWW.YouTube.com/watch?v=abc#t=3", "https://www.youtube.com/watch?v=abc"),
    ("https://www.youtube.com:443/watch?v=abc", "https://www.youtube.com/watch?v=abc"),
    ("  https://youtu.be/abc  ", "https://youtu.be/abc"),
])
def test_links_are_normalised(url, normal):
    assert parse(url).url == normal


@pytest.mark.parametrize("url, code", [
    ("https://www.youtube.com:6379/watch?v=abc", "host_not_allowed"),
    ("https://user:pw@www.youtube.com/watch?v=abc", "invalid_url"),
    ("https://evil.example\\@www.youtube.com/", "invalid_url"),
    ("https://www.you\ttube.com/watch?v=abc", "invalid_url"),
    ("ftp://www.youtube.com/x", "invalid_url"),
    ("https://www.youtube.com./watch?v=abc", "host_not_allowed"),
    ("https://127.0.0.1/x", "host_not_allowed"),
    ("https://www.youtube.com/watch?v=" + "a" * 2048, "invalid_url"),
])
def test_links_that_could_steer_the_fetch_are_refused(url, code):
    with pytest.raises(IngestError) as caught:
        check_url(url, YOUTUBE)
    assert (caught.value.status, caught.value.code) == (400, code)


def test_a_listed_host_allows_only_its_port(tmp_path):
    assert check_url("http://localhost:8123/a.ogg", ("localhost:8123",)) == "http://localhost:8123/a.ogg"
    assert check_url("http://localhost/a.ogg", ("localhost",)) == "http://localhost/a.ogg"
    for url, hosts in [("http://localhost:6379/", ("localhost",)), ("http://localhost:6379/", ("localhost:8123",))]:
        with pytest.raises(IngestError):
            check_url(url, hosts)


@pytest.mark.parametrize("address, public", [
    ("127.0.0.1", False), ("::1", False), ("10.1.2.3", False), ("192.168.0.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False),
    ("::ffff:127.0.0.1", False), ("fe80::1", False), ("fd00::1", False), ("240.0.0.1", False),
    ("8.8.8.8", True), ("2606:4700:4700::1111", True),
])
def test_address_ranges(address, public):
    assert is_public(address) is public


def test_addresses_are_resolved_and_checked():
    for host in ("localhost", "127.0.0.1", "169.254.169.254"):
        with pytest.raises(LinkRefused):
            check_addresses(host, 443)
    check_addresses("8.8.8.8", 443)
    with pytest.raises(LinkRefused, match="looked up"):
        check_addresses("nowhere.invalid", 443)


def test_each_hop_of_a_youtube_link_stays_on_youtube():
    policy = HopPolicy(parse("https://youtu.be/abc"))
    for url in ("http://127.0.0.1/internal", "https://www.youtube.com:6379/", "https://evil.example/",
                "https://youtube.com.evil.example/", "file:///etc/passwd", "https://u@www.youtube.com/"):
        with pytest.raises(LinkRefused) as caught:
            policy.check(url)
        assert caught.value.args[0] == HopPolicy.REFUSED  # names no URL
    local = HopPolicy(parse("http://localhost:8123/a"))
    local.check("http://localhost:8123/b")
    for url in ("http://127.0.0.1:8123/b", "http://localhost:8124/b", "https://localhost/b"):
        with pytest.raises(LinkRefused):
            local.check(url)


def test_submitted_links_are_stored_normalised_and_capped(settings):
    with TestClient(create_app(dataclasses.replace(settings, workers=0))) as client:
        response = client.post("/api/v1/jobs", json={"url": "HTTPS://WWW.YouTube.com/watch?v=abc"})
        assert response.status_code == 202, response.text
        source = json.loads(client.app.state.store.get(response.json()["id"])["source"])
        assert source["url"] == "https://www.youtube.com/watch?v=abc"
        for url in ("https://www.youtube.com:6379/watch?v=abc", "https://www.youtube.com/watch?v=" + "a" * 3000):
            response = client.post("/api/v1/jobs", json={"url": url})
            assert response.status_code == 400, response.text


# ---------------------------------------------------------------- links at fetch time


class Recorder(http.server.BaseHTTPRequestHandler):
    """/go redirects to ``target``; /beat.ogg serves ``body``; every path asked is logged."""

    log: list[str]
    target: str
    body: bytes

    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        self.log.append(self.path)
        if self.path == "/go":
            self.send_response(302)
            self.send_header("Location", self.target)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/beat.ogg":
            self.send_response(200)
            self.send_header("Content-Type", "audio/ogg")
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            self.wfile.write(self.body)
        else:
            self.send_error(404)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def recorder(tmp_path, beat_wav):
    audio, rate = sf.read(beat_wav)
    sf.write(tmp_path / "beat.ogg", audio, rate)
    handler = type("Handler", (Recorder,), {"log": [], "target": "", "body": (tmp_path / "beat.ogg").read_bytes()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server, handler
    finally:
        server.shutdown()
        server.server_close()


def test_redirect_to_an_unlisted_host_is_refused_before_it_is_fetched(recorder, tmp_path, settings, monkeypatch):
    server, handler = recorder
    port = server.server_port
    handler.target = f"http://127.0.0.1:{port}/internal-secret"
    monkeypatch.setenv("DRUMSCRIBE_URL_HOSTS", f"localhost:{port}")
    listed = dataclasses.replace(settings, allowed_hosts=Settings.from_env().allowed_hosts)
    with TestClient(create_app(listed)) as client:
        response = client.post("/api/v1/jobs", json={"url": f"http://localhost:{port}/go"})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        deadline = time.monotonic() + 60
        while (job := client.get(f"/api/v1/jobs/{job_id}").json())["status"] not in ("failed", "succeeded"):
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
    assert job["status"] == "failed" and "refused" in job["error"], job
    assert "internal-secret" not in job["error"] and "127.0.0.1" not in job["error"]
    assert handler.log == ["/go"]  # the redirect's target was never asked for


def test_redirect_within_the_listed_host_is_followed(recorder, tmp_path):
    server, handler = recorder
    handler.target = "/beat.ogg"
    folder = tmp_path / "download"
    folder.mkdir()
    path = download(f"http://localhost:{server.server_port}/go", folder, 10**8, 600)
    assert path.read_bytes() == handler.body and set(handler.log) == {"/go", "/beat.ogg"}


def test_youtube_links_never_reach_the_generic_extractor(tmp_path):
    # The generic extractor would try to fetch this (and fail to look the host up here); YouTube's
    # extractors do not take the URL, so nothing is fetched and the URL is not echoed.
    with pytest.raises(AudioError) as caught:
        download("https://www.youtube.com/watch/x/beat.ogg", tmp_path, 10**8, 600)
    message = str(caught.value)
    assert "suitable extractor" in message and "looked up" not in message and "beat.ogg" not in message
