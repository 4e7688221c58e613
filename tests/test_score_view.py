"""What the page's score viewer and player read: every page of a finished job's score, when each
of its notes sounds in the recording, the recording itself (with byte ranges), the job's details,
and download names; against a real Redis, a real worker and verovio, with job files in local
folders and in a bucket of a real S3 API server (moto's, on loopback)."""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from starlette.testclient import TestClient

from models.synthetic import hihat, kick, place, rock_beat, snare
from tests.test_batch_service import settings  # noqa: F401 (each test on local folders, then a bucket)
from web.app import create_app
from web.jobs_api import file_stem
from web.live import session_title
from web.score_clock import score_clock

FORTY_BARS = 40  # at 100 bpm: 97 s, two pages


@pytest.fixture(scope="module")
def forty_bars(tmp_path_factory) -> tuple[Path, dict[str, list[float]]]:
    """A rock beat long enough for two pages, and the times its drums were placed at."""
    audio, placed = rock_beat(bars=FORTY_BARS, bpm=100, rate=22050)
    path = tmp_path_factory.mktemp("audio") / "forty.wav"
    sf.write(path, audio, 22050)
    return path, placed


def scored(client: TestClient, path: Path, name: str | None = None, timeout: float = 90.0) -> str:
    with path.open("rb") as f:
        response = client.post("/api/v1/jobs", files={"file": (name or path.name, f, "audio/wav")},
                               data={"title": "Forty bars"})
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    deadline = time.monotonic() + timeout
    while (job := client.get(f"/api/v1/jobs/{job_id}").json())["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    assert job["status"] == "succeeded", job
    return job_id


def test_preview_has_every_page_and_times_its_notes_by_the_recording(settings, forty_bars):
    path, placed = forty_bars
    with TestClient(create_app(settings)) as client:
        job_id = scored(client, path)
        view = client.get(f"/api/v1/jobs/{job_id}/preview")
        assert view.status_code == 200, view.text
        view = view.json()
        pages = [client.get(url) for url in view["page_urls"]]
        again = client.get(f"/api/v1/jobs/{job_id}/preview").json()
        narrow = client.get(f"/api/v1/jobs/{job_id}/preview?layout=narrow").json()
        narrow_page = client.get(narrow["page_urls"][0])
        refused = client.get(f"/api/v1/jobs/{job_id}/preview?layout=poster")
        result = client.get(f"/api/v1/jobs/{job_id}/result").json()
        assert client.get(f"/api/v1/jobs/{job_id}/preview/{view['pages'] + 1}").status_code == 404

    assert view["pages"] >= 2 and len(pages) == view["pages"] and view["layout"] == "a4"
    # For a phone: pages half as wide, so more of them, and the same notes at the same times.
    assert narrow["layout"] == "narrow" and narrow["pages"] > view["pages"]
    assert narrow["notes"] == view["notes"] and narrow["page_urls"][0].endswith("/preview/1?layout=narrow")
    assert narrow_page.status_code == 200 and narrow_page.text != pages[0].text
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_option"
    assert view["audio"] == f"/api/v1/jobs/{job_id}/audio"
    assert again == view  # stored, not rendered anew with other ids
    for page in pages:
        assert page.status_code == 200 and page.headers["content-type"].startswith("image/svg+xml")
        assert page.headers["content-encoding"] == "gzip"  # asked for by the client, as browsers do
        assert int(page.headers["content-length"]) < len(page.content) / 4
        assert "@font-face" not in page.text and "Leipzig" not in page.text  # the tempo's note is plain text
    in_pages = {id_ for page in pages for id_ in re.findall(r'<g id="([^"]+)" class="note"', page.text)}
    timed = [id_ for note in view["notes"] for id_ in note["ids"]]
    assert set(timed) == in_pages, "every note of every page is timed, with the ids the pages have"
    assert len(set(re.findall(r'<g id="([^"]+)" class="note"', pages[-1].text)) & set(timed)) > 0

    # Each chord sounds where a drum was placed in the recording, and bars start on its downbeats.
    times = np.array([note["t"] for note in view["notes"]])
    truth = np.array(sorted({round(t, 4) for hits in placed.values() for t in hits}))
    assert np.all(np.diff(times) > 0)
    assert np.max(np.min(np.abs(times[:, None] - truth[None, :]), axis=1)) < 0.03
    assert len(times) >= 0.9 * len(truth)
    assert [bar["t"] for bar in view["bars"]] == pytest.approx(result["downbeats"], abs=1e-3)
    assert [bar["n"] for bar in view["bars"]][:3] == ["1", "2", "3"]
    assert view["end"] >= times[-1]

    details = view["details"]
    assert details["bpm"] == pytest.approx(100, rel=0.03) and details["time_signature"] == "4/4"
    assert details["model"] == result["model"] and details["separation"] == result["separation"]
    assert details["feel"] == result["feel"] == "straight"
    assert details["title"] == "Forty bars" and details["duration"] == pytest.approx(97.5, abs=0.01)
    assert "hits" not in details


def slowing_beat(bars: int, start_bpm: float, end_bpm: float, rate: int) -> tuple[np.ndarray, list[float]]:
    """The rock beat of ``rock_beat`` played by a drummer who glides from one tempo to another:
    its audio and the times of its hits."""
    beats = 0.5 + np.concatenate([[0.0], np.cumsum(60 / np.linspace(start_bpm, end_bpm, bars * 4))])
    placed = []
    for bar in range(bars):
        on = beats[4 * bar: 4 * bar + 5]
        offs = (on[:-1] + on[1:]) / 2
        placed += [(t, hihat(rate), 0.3) for t in [*on[:4], *offs]]
        placed += [(t, kick(rate), 0.8) for t in (on[0], on[2], offs[2])]
        placed += [(t, snare(rate), 0.6) for t in (on[1], on[3])]
    return place(placed, beats[-1] + 1.0, rate), sorted({round(t, 4) for t, _, _ in placed})


def test_notes_keep_time_with_a_drummer_who_slows_down(settings, tmp_path):
    audio, truth = slowing_beat(bars=32, start_bpm=104, end_bpm=90, rate=22050)
    path = tmp_path / "slowing.wav"
    sf.write(path, audio, 22050)
    with TestClient(create_app(settings)) as client:
        view = client.get(f"/api/v1/jobs/{scored(client, path)}/preview").json()
    times, truth = np.array([note["t"] for note in view["notes"]]), np.array(truth)
    assert len(times) >= 0.9 * len(truth)
    assert np.max(np.min(np.abs(times[:, None] - truth[None, :]), axis=1)) < 0.03
    # One tempo (the score's metronome mark, which verovio's own milliseconds follow) would put
    # the bars far off by the end.
    bars = np.array([bar["t"] for bar in view["bars"]])
    steady = bars[0] + np.arange(len(bars)) * 4 * 60 / view["details"]["bpm"]
    assert np.max(np.abs(steady - bars)) > 0.5


def test_result_has_the_beats_and_downbeats_of_the_score(settings, beat_wav):
    with TestClient(create_app(settings)) as client:
        result = client.get(f"/api/v1/jobs/{scored(client, beat_wav)}/result").json()
    beats, downbeats = np.array(result["beats"]), result["downbeats"]
    assert downbeats == result["beats"][::4]  # 4/4
    assert np.diff(beats) == pytest.approx(60 / result["bpm"], rel=0.02)
    # On the beats the drums were placed on (from 0.5 s every 0.6 s), and the bars hold every hit.
    assert np.max(np.abs((beats - 0.5) / 0.6 - np.round((beats - 0.5) / 0.6))) * 0.6 < 0.03
    times = [hit["t"] for hit in result["hits"]]
    assert downbeats[0] <= min(times) + 0.03 and max(times) < downbeats[-1] + 4 * 0.6


def test_audio_is_the_upload_with_byte_ranges(settings, beat_wav):
    data = beat_wav.read_bytes()
    with TestClient(create_app(settings)) as client:
        job_id = scored(client, beat_wav)
        whole = client.get(f"/api/v1/jobs/{job_id}/audio")
        part = client.get(f"/api/v1/jobs/{job_id}/audio", headers={"Range": "bytes=1000-1999"})
        beyond = client.get(f"/api/v1/jobs/{job_id}/audio", headers={"Range": f"bytes={len(data)}-"})
        missing = client.get("/api/v1/jobs/0123456789abcdef0123456789abcdef/audio")
    assert whole.status_code == 200 and whole.content == data
    assert whole.headers["content-type"] == "audio/wav"
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert part.status_code == 206, "seeking in the player needs ranges"
    assert part.content == data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    assert beyond.status_code == 416 and beyond.json()["error"]["code"] == "range_not_satisfiable"
    assert beyond.headers["content-range"] == f"bytes */{len(data)}"


def test_audio_with_a_suffix_that_is_not_audio_is_never_a_page(tmp_path, settings, beat_wav):
    disguised = tmp_path / "beat.html"
    disguised.write_bytes(beat_wav.read_bytes())  # audio all the same: the upload is decoded
    with TestClient(create_app(settings)) as client:
        response = client.get(f"/api/v1/jobs/{scored(client, disguised)}/audio")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"


def test_score_clock_pins_bars_and_beats_and_extrapolates():
    # Three 4/4 bars, the drummer slowing down: 2 s, then 2.4 s a bar; bar 1's beats uneven.
    result = {"downbeats": [1.0, 3.0, 5.4], "beats": [1.0, 1.4, 2.0, 2.5, 3.0, 3.6, 4.2, 4.8, 5.4, 6.0, 6.6, 7.2]}
    clock = score_clock([0.0, 4.0, 8.0], 12.0, result)
    assert [clock(q) for q in (0, 1, 2, 3, 4, 8)] == [1.0, 1.4, 2.0, 2.5, 3.0, 5.4]
    assert clock(0.5) == pytest.approx(1.2)
    assert clock(12.0) == pytest.approx(7.8) and clock(13.0) == pytest.approx(8.4)  # past the last beat: its pace
    assert clock(-1.0) == pytest.approx(0.6)  # before the first: the first beat's pace
    # A result without beats (scored before they were recorded): its tempo from the start.
    assert score_clock([0.0, 4.0], 8.0, {"bpm": 120.0})(4.0) == 2.0


def test_live_sessions_of_the_same_second_have_their_own_titles_and_file_names():
    started = time.mktime((2026, 12, 2, 17, 5, 43, 0, 0, -1))
    first, second = session_title(started, "3f2c9a" + "0" * 26), session_title(started + 0.4, "a1b2c3" + "0" * 26)
    assert first == "Live session 2026-12-02 17:05:43 (3f2c9a)" and first != second
    assert file_stem(first) == "Live session 2026-12-02 17.05.43 (3f2c9a)"
    assert file_stem(first) != file_stem(second)
    assert file_stem("../.hidden: a/b") == "_.hidden. a_b"
