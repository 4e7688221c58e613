"""The page in a real headless Chromium: live over WebRTC, live over the WebSocket fallback, a batch upload.

Chromium's fake microphone plays a drum recording the test writes (looped). Needs Debian's
``chromium`` at /usr/bin/chromium (installed here with apt-get when missing) and the
``playwright`` Python package (the ``test`` extra). ``DRUMSCRIBE_SCREENSHOTS=DIR`` saves
``live-view.png`` and ``batch-view.png`` there (``DRUMSCRIBE_SCREENSHOTS=docs`` refreshes the
README's pictures).
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from batch.config import Settings
from models.synthetic import rock_beat
from stream.config import LiveSettings
from tests.conftest import RunningServer
from web.app import create_app

CHROMIUM = Path("/usr/bin/chromium")
LIVE_SECONDS = 5.0


def ensure_chromium() -> None:
    """Install Debian's Chromium when it is missing; fail (never skip) when that is impossible."""
    if CHROMIUM.exists():
        return
    if shutil.which("apt-get") is None:
        pytest.fail(f"{CHROMIUM} is missing and there is no apt-get to install it: install Chromium there")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    done = subprocess.run(install, env=env, capture_output=True, text=True)
    if done.returncode != 0:  # a fresh machine may have no package lists yet
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True)
        done = subprocess.run(install, env=env, capture_output=True, text=True)
    if done.returncode != 0 or not CHROMIUM.exists():
        pytest.fail(f"could not install Chromium with `{' '.join(install)}` (run it as root):\n{done.stderr[-2000:]}")


@pytest.fixture(scope="module")
def drum_wav(tmp_path_factory) -> Path:
    """The fake microphone's recording: a rock beat at 48 kHz, 16-bit mono."""
    audio, _ = rock_beat(bars=8, bpm=110, rate=48000)
    path = tmp_path_factory.mktemp("mic") / "drums.wav"
    sf.write(path, np.clip(audio, -1, 1), 48000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def browser(drum_wav):
    ensure_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser tests need playwright: pip install -e '.[test]'")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={drum_wav}", "--autoplay-policy=no-user-gesture-required",
        ])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One app for the module; ``server.runners`` holds every live session it opened, by id."""
    settings = dataclasses.replace(Settings(), data_dir=tmp_path_factory.mktemp("data"), workers=1,
                                   visibility_timeout=2.0)
    with RunningServer(create_app(settings, live_settings=LiveSettings(notation_every=2.0))) as running:
        gateway = running.app.state.gateway
        running.runners = {}
        open_session = gateway.open_session

        def recording(start, emit):
            runner = open_session(start, emit)
            running.runners[runner.session.id] = runner
            return runner

        gateway.open_session = recording
        yield running


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(30_000)
    page = context.new_page()
    messages: list[str] = []
    page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: messages.append(f"pageerror: {error}"))
    page.console_messages = messages
    yield page
    context.close()
    refused = [m for m in messages if "Content Security Policy" in m]
    assert not refused, f"the page broke its own Content-Security-Policy: {refused}"


def wait_until(page, expression: str, timeout_ms: float = 30_000) -> None:
    """Poll ``expression`` until it is truthy. Not ``page.wait_for_function``: its repeated
    checks evaluate a string in the page, which the page's CSP (no 'unsafe-eval') refuses."""
    deadline = time.monotonic() + timeout_ms / 1000
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"still false after {timeout_ms / 1000:g} s: {expression}"
        page.wait_for_timeout(50)


def screenshot(page, selector: str, name: str) -> None:
    folder = os.environ.get("DRUMSCRIBE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.locator(selector).screenshot(path=str(Path(folder) / name))


def download_text(page, selector: str) -> str:
    with page.expect_download() as info:
        page.locator(selector).click()
    return Path(info.value.path()).read_text()


def play_live(page, server, url: str, transport: str) -> None:
    page.goto(url)
    page.get_by_test_id("live-start").click()
    live = page.locator("#live")
    try:
        page.wait_for_selector("#live[data-state=running]", timeout=20_000)
    except Exception:
        raise AssertionError(f"the live session did not start: {page.locator('#live-status').text_content()!r}; "
                             f"console: {page.console_messages}") from None
    assert live.get_attribute("data-transport") == transport, page.console_messages
    wait_until(page, "Number(document.querySelector('[data-testid=hit-count]').textContent) > 0", 15_000)
    page.wait_for_timeout(LIVE_SECONDS * 1000)
    page.get_by_test_id("live-stop").click()
    try:
        page.wait_for_selector("#live[data-state=done]", timeout=60_000)
    except Exception:
        raise AssertionError(f"no final message: {page.locator('#live-status').text_content()!r}, state "
                             f"{live.get_attribute('data-state')!r}; console: {page.console_messages}") from None

    shown = int(page.get_by_test_id("hit-count").text_content())
    session_id = live.get_attribute("data-session-id")
    runner = server.runners[session_id]
    assert shown > 0
    assert shown == len(runner.session.hits)
    final = page.evaluate("window.drumscribe.live.final")
    assert final["status"] == "succeeded", final
    assert final["hits_total"] == shown
    families = {hit.family for hit in runner.session.hits}
    assert {"kick", "snare", "hihat"} <= families, families
    latencies = page.evaluate("window.drumscribe.live.latencies")
    assert len(latencies) == shown
    median = statistics.median(latencies)
    print(f"\n{transport}: {shown} hits in {runner.session.seconds:.1f} s, page-measured hit latency "
          f"median {median:.0f} ms, p90 {np.percentile(latencies, 90):.0f} ms")
    assert 0 < median < 1000, latencies

    with httpx.Client(base_url=server.http) as http:
        found = http.get(f"/api/v1/sessions/{session_id}").json()
    assert found["status"] == "succeeded" and found["job_id"] == final["job_id"]
    assert "<score-partwise" in download_text(page, "#live-result [data-testid=download-musicxml]")
    wait_until(page, "document.querySelector('#live-result img.score').naturalWidth > 0")


def test_live_over_webrtc(page, server):
    play_live(page, server, server.http + "/", "webrtc")
    screenshot(page, "#live", "live-view.png")


def test_live_over_websocket_fallback(page, server):
    play_live(page, server, server.http + "/?transport=websocket", "websocket")


def test_batch_upload(page, server, beat_wav):
    page.goto(server.http + "/")
    page.get_by_test_id("upload-input").set_input_files(str(beat_wav))
    status = page.get_by_test_id("job-status")
    page.wait_for_selector("[data-testid=job-status][data-status=succeeded]", timeout=60_000)
    assert "ready" in status.text_content()
    assert "<score-partwise" in download_text(page, "#job-result [data-testid=download-musicxml]")
    page.wait_for_selector("#recent li[data-status=succeeded] a")
    wait_until(page, "document.querySelector('#job-result img.score').naturalWidth > 0")
    screenshot(page, "#batch", "batch-view.png")
