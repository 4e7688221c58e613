"""The page in a real headless Chromium: live over WebRTC, live over the WebSocket fallback, a batch upload,
and the score viewer: every page, zoom, the job's details, the player with its cursor, loop and speed.

Chromium's fake microphone plays a drum recording the test writes (looped). Needs Debian's
``chromium`` at /usr/bin/chromium (installed here with apt-get when missing) and the
``playwright`` Python package (the ``test`` extra). ``DRUMSCRIBE_SCREENSHOTS=DIR`` saves
``live-view.png``, ``batch-view.png`` and ``score-view.png`` there (``DRUMSCRIBE_SCREENSHOTS=docs``
refreshes the README's pictures).
"""
from __future__ import annotations

import dataclasses
import os
import re
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
LONG_BARS = 40  # of the rock beat at 100 bpm: 97 s, a score of two pages
live_titles: list[str] = []  # of this module's live sessions, which end within a minute of each other


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
    with RunningServer(create_app(settings, live_settings=LiveSettings(notation_every=2.0, notation_grace=60.0))) as running:
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


def screenshot(page, selector: str | None, name: str) -> None:
    """``selector``'s element, or with None what the window shows."""
    folder = os.environ.get("DRUMSCRIBE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        target = page.locator(selector) if selector else page
        target.screenshot(path=str(Path(folder) / name))


def score_ready(page, job_id: str) -> dict:
    """Wait until the viewer shows every page of the job's score; its state (window.drumscribe.score)."""
    try:
        page.wait_for_selector(f"#score[data-state=ready][data-job-id='{job_id}']", timeout=60_000)
    except Exception:
        raise AssertionError(f"the score viewer did not open: {page.locator('#score-status').text_content()!r}; "
                             f"console: {page.console_messages}") from None
    return page.evaluate("window.drumscribe.score")


def audio_ready(page) -> None:
    """Wait until the player's recording has loaded enough to seek and play."""
    wait_until(page, "document.querySelector('#player-audio').readyState >= 3", 30_000)


def seek(page, seconds: float) -> dict:
    """Move the recording to ``seconds`` as the seek bar does; the viewer's state after the move."""
    page.evaluate("""t => {
        const audio = document.querySelector('#player-audio');
        audio.currentTime = t;
        audio.dispatchEvent(new Event('timeupdate'));
    }""", seconds)
    return page.evaluate("window.drumscribe.score")


def playing_ids(page) -> list[str]:
    return sorted(page.evaluate("[...document.querySelectorAll('#score-pages g.playing')].map(g => g.id)"))


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
    assert {"kick", "snare", "hihat"} <= families, families  # the example kit's real drums, through Opus
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

    # One tempo: the box shows the notation's tempo mark, not another estimate.
    shown_tempo = page.evaluate("window.drumscribe.live.notationTempo")
    assert shown_tempo and re.fullmatch(r"♩ = \d+", shown_tempo), shown_tempo
    assert page.locator("#tempo").text_content() == shown_tempo
    wait_until(page, "document.querySelector('#live-notation').naturalWidth > 0")

    # The session's score opens in the viewer with its recording, and Recent lists it at once.
    score_ready(page, final["job_id"])
    assert page.locator("#score-pages .score-page > svg").count() >= 1
    assert page.locator("#player").is_visible()
    audio_ready(page)
    title = found["job"]["title"]
    assert re.fullmatch(r"Live session \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \([0-9a-f]{6}\)", title), title
    assert page.locator("#score-title").text_content() == title
    wait_until(page, f"[...document.querySelectorAll('#recent .recent-title')].some(e => e.textContent === {title!r})",
               10_000)
    assert title not in live_titles, "two sessions of the same minute share a title"
    live_titles.append(title)


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
    job_id = page.locator("#score").get_attribute("data-job-id")
    view = score_ready(page, job_id)
    assert view["pages"] == 1 and page.locator("#score-pages .score-page > svg").count() == 1
    assert page.get_by_test_id("detail-metre").text_content() == "4/4"
    screenshot(page, "#batch", "batch-view.png")


@pytest.fixture(scope="module")
def long_job(server, tmp_path_factory) -> dict:
    """A finished job of 40 bars, two pages of score, submitted over the API: its id and view."""
    audio, _ = rock_beat(bars=LONG_BARS, bpm=100, rate=22050)
    path = tmp_path_factory.mktemp("long") / "forty.wav"
    sf.write(path, audio, 22050)
    with httpx.Client(base_url=server.http, timeout=60) as http:
        answer = http.post("/api/v1/jobs", files={"file": ("forty.wav", path.read_bytes(), "audio/wav")},
                           data={"title": "Forty bars"}).json()
        deadline = time.monotonic() + 120
        while (job := http.get(f"/api/v1/jobs/{answer['id']}").json())["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job["status"] == "succeeded", job
        view = http.get(f"/api/v1/jobs/{job['id']}/preview").json()
        result = http.get(f"/api/v1/jobs/{job['id']}/result").json()
    assert view["pages"] >= 2, "the long job should need two pages"
    return {"id": job["id"], "view": view, "result": result}


def open_from_recent(page, server, job: dict) -> dict:
    page.goto(server.http + "/")
    page.locator("#recent li:has-text('Forty bars') button:has-text('Open')").first.click()
    return score_ready(page, job["id"])


def page_widths(page) -> list[float]:
    return page.evaluate("[...document.querySelectorAll('#score-pages .score-page')].map(p => p.getBoundingClientRect().width)")


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 900}, {"width": 390, "height": 844}],
                         ids=["desktop", "phone"])
def test_every_page_at_full_width_and_zoom(browser, server, long_job, viewport):
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.console_messages = []
    page.on("console", lambda message: page.console_messages.append(f"{message.type}: {message.text}"))
    try:
        view = open_from_recent(page, server, long_job)
        phone = viewport["width"] < 640
        assert view["layout"] == ("narrow" if phone else "a4")
        assert view["pages"] >= long_job["view"]["pages"] >= 2
        assert page.locator("#score-pages .score-page > svg").count() == view["pages"]
        column = page.evaluate("document.querySelector('#score-pages').clientWidth")
        main = page.evaluate("document.querySelector('main').clientWidth")
        assert column > 0.9 * main - 48, "the score takes the whole row, not one column of it"
        widths = page_widths(page)
        assert all(w == pytest.approx(column, abs=2) for w in widths), (widths, column)
        # Every page draws its notes (the last page too), at a readable size: a notehead is a
        # staff space high, which should be 5 px at least (an A4 page at a phone's width: 3 px).
        for number in range(1, view["pages"] + 1):
            heads = page.locator(f".score-page[data-page='{number}'] g.note .notehead")
            assert heads.count() > 0
            assert heads.first.bounding_box()["height"] >= 5, heads.first.bounding_box()

        page.get_by_test_id("zoom-in").click()
        page.get_by_test_id("zoom-in").click()
        assert page.get_by_test_id("zoom-level").text_content() == "150%"
        assert page_widths(page)[0] == pytest.approx(1.5 * widths[0], rel=0.02)
        scroll = page.evaluate("(e => e.scrollWidth - e.clientWidth)(document.querySelector('#score-pages'))")
        assert scroll > 0.4 * column, "a zoomed page scrolls sideways inside the viewer"
        for _ in range(3):
            page.get_by_test_id("zoom-out").click()
        assert page.get_by_test_id("zoom-level").text_content() == "75%"
        assert page_widths(page)[0] == pytest.approx(0.75 * widths[0], rel=0.02)
        refused = [m for m in page.console_messages if "Content Security Policy" in m]
        assert not refused, "\n".join(refused)
    finally:
        context.close()


def test_job_details(page, server, long_job):
    open_from_recent(page, server, long_job)
    result = long_job["result"]
    assert page.get_by_test_id("detail-tempo").text_content() == f"♩ = {round(result['bpm'])}"
    assert page.get_by_test_id("detail-metre").text_content() == result["time_signature"] == "4/4"
    assert page.get_by_test_id("detail-length").text_content() == "1:37"
    assert page.get_by_test_id("detail-feel").text_content().startswith(result["feel"].capitalize())
    model = result["model"]
    assert page.get_by_test_id("detail-model").text_content() == f"{model['name']} {model['version']}"
    separation = page.get_by_test_id("detail-separation").text_content()
    expected = {"off": "Off", "auto": "Not"}[result["separation"]["requested"]]
    assert separation.startswith(expected), (separation, result["separation"])
    for fmt in ("musicxml", "pdf", "midi", "midi_quantized"):
        assert page.get_by_test_id("score-view").locator(f"a[data-format={fmt}]").get_attribute("href") == \
            f"/api/v1/jobs/{long_job['id']}/download/{fmt}"


def test_player_plays_with_a_cursor_over_the_notes(page, server, long_job):
    view = open_from_recent(page, server, long_job)
    notes = long_job["view"]["notes"]
    audio_ready(page)
    assert page.evaluate("document.querySelector('#player-audio').duration") == pytest.approx(97.5, abs=0.1)

    page.get_by_test_id("play").click()
    wait_until(page, "document.querySelector('#player-audio').currentTime > 0.8", 15_000)
    state = page.evaluate("window.drumscribe.score")
    assert not page.evaluate("document.querySelector('#player-audio').paused")
    assert state["note"] >= 0 and state["cursor"] is not None, "the cursor follows the playing recording"
    page.get_by_test_id("play").click()
    assert page.evaluate("document.querySelector('#player-audio').paused")

    # Seek into bar 3: the chord sounding then is highlighted and the cursor stands at it.
    bars = view["bars"]
    t = bars[2]["t"] + 0.01
    state = seek(page, t)
    expected = max(i for i, note in enumerate(notes) if note["t"] <= t + 1e-3)
    assert state["note"] == expected and playing_ids(page) == sorted(notes[expected]["ids"])
    assert page.locator("#score").get_attribute("data-bar") == "3"
    first = state["cursor"]
    assert first["page"] == 1
    page.evaluate("document.querySelector('#score').scrollIntoView()")
    screenshot(page, None, "score-view.png")
    # Later in the same bar the cursor has moved right, and another note is highlighted.
    later = seek(page, notes[expected + 2]["t"] + 0.01)
    assert later["note"] == expected + 2 and playing_ids(page) == sorted(notes[expected + 2]["ids"])
    assert later["cursor"]["x"] > first["x"] and later["cursor"]["top"] == pytest.approx(first["top"])
    # The last bar is on the last page.
    last = seek(page, notes[-1]["t"] + 0.01)
    assert last["cursor"]["page"] == view["pages"] and playing_ids(page) == sorted(notes[-1]["ids"])
    cursor_box = page.locator(".score-page .cursor").bounding_box()
    head = page.locator(f"[id='{notes[-1]['ids'][0]}']").bounding_box()
    assert cursor_box["x"] <= head["x"] + head["width"] and cursor_box["x"] + cursor_box["width"] >= head["x"]

    # A click on a note plays from it.
    target = notes[len(notes) // 2]
    page.locator(f"[id='{target['ids'][0]}'] .notehead").click()
    assert page.evaluate("document.querySelector('#player-audio').currentTime") == pytest.approx(target["t"], abs=0.01)

    # Space plays and pauses; on a zoomed page the viewer scrolls sideways to keep the cursor in view.
    for _ in range(4):
        page.get_by_test_id("zoom-in").click()
    assert page.get_by_test_id("zoom-level").text_content() == "250%"
    seek(page, bars[2]["t"])
    assert page.evaluate("document.querySelector('#score-pages').scrollLeft") == 0
    page.locator("#score-title").click()  # focus off the controls
    page.keyboard.press("Space")
    wait_until(page, "document.querySelector('#score-pages').scrollLeft > 0", 10_000)
    assert not page.evaluate("document.querySelector('#player-audio').paused")
    page.keyboard.press("Space")
    assert page.evaluate("document.querySelector('#player-audio').paused")


def test_loop_and_slow_down(page, server, long_job):
    view = open_from_recent(page, server, long_job)
    bars = view["bars"]
    audio_ready(page)
    page.get_by_test_id("loop-from").fill("2")
    page.get_by_test_id("loop-to").fill("3")
    page.get_by_test_id("loop").check()
    loop = page.evaluate("window.drumscribe.score.loop")
    assert loop["start"] == pytest.approx(bars[1]["t"]) and loop["end"] == pytest.approx(bars[3]["t"])
    # Past the end of bar 3 the recording goes back to bar 2; so does a seek before the loop.
    assert seek(page, bars[3]["t"] + 0.05) is not None
    assert page.evaluate("document.querySelector('#player-audio').currentTime") == pytest.approx(bars[1]["t"], abs=0.01)
    seek(page, 0.0)
    assert page.evaluate("document.querySelector('#player-audio').currentTime") == pytest.approx(bars[1]["t"], abs=0.01)

    # Half speed, pitch kept, and the loop wraps while it plays.
    page.evaluate("""() => {
        const speed = document.querySelector('[data-testid=speed]');
        speed.value = '0.5';
        speed.dispatchEvent(new Event('input', { bubbles: true }));
    }""")
    assert page.get_by_test_id("speed-value").text_content() == "50%"
    assert page.evaluate("[document.querySelector('#player-audio').playbackRate, "
                         "document.querySelector('#player-audio').preservesPitch]") == [0.5, True]
    seek(page, bars[3]["t"] - 0.4)
    started = time.monotonic()
    page.get_by_test_id("play").click()
    wait_until(page, f"document.querySelector('#player-audio').currentTime < {bars[3]['t'] - 0.5}", 15_000)
    took = time.monotonic() - started
    assert page.evaluate("document.querySelector('#player-audio').currentTime") >= bars[1]["t"] - 0.01
    assert took > 0.6, f"0.4 s of recording at half speed took only {took:.2f} s"
    page.get_by_test_id("play").click()

    # A and B set the loop to the bar playing now.
    page.get_by_test_id("loop").uncheck()
    seek(page, bars[5]["t"] + 0.1)
    page.get_by_test_id("loop-a").click()
    seek(page, bars[7]["t"] + 0.1)
    page.get_by_test_id("loop-b").click()
    assert page.get_by_test_id("loop-from").input_value() == "6"
    assert page.get_by_test_id("loop-to").input_value() == "8"
    assert page.get_by_test_id("loop").is_checked()


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory):
    """An app that asks live sessions for five seconds of audio every second: any real-time client is too slow."""
    settings = dataclasses.replace(Settings(), data_dir=tmp_path_factory.mktemp("strict"), workers=1)
    live = LiveSettings(notation_every=0, min_audio_seconds=5.0, pace_window=1.0, pace_grace=0.5)
    with RunningServer(create_app(settings, live_settings=live)) as running:
        yield running


def test_live_error_codes_have_clear_words(page, strict_server):
    page.goto(strict_server.http + "/?transport=websocket")
    page.get_by_test_id("live-start").click()
    wait_until(page, "window.drumscribe.live.error !== null", 30_000)
    assert page.evaluate("window.drumscribe.live.error.code") == "too_slow"
    status = page.locator("#live-status")
    assert status.text_content().startswith("Your audio reached us too slowly")
    assert status.get_attribute("data-kind") == "error"
    # What it heard before it stopped is scored all the same, and the page shows it when it is there.
    page.wait_for_selector("#live[data-state=done]", timeout=60_000)
    session_id = page.locator("#live").get_attribute("data-session-id")
    with httpx.Client(base_url=strict_server.http) as http:
        found = http.get(f"/api/v1/sessions/{session_id}").json()
    assert found["status"] == "succeeded", found
    score_ready(page, found["job_id"])
    wait_until(page, f"[...document.querySelectorAll('#recent .recent-title')].some(e => e.textContent === "
                     f"{found['job']['title']!r})", 10_000)
