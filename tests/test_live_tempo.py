"""The live tempo is estimated in a thread: a long session's estimate never holds back hits."""
import asyncio
import threading

import pytest

from models.detector import Detector
from models.peaks import Hit
from stream import runner as runner_module
from stream.batcher import InferenceBatcher
from stream.config import LiveSettings
from stream.pcm import PcmFormat
from stream.runner import LiveRunner
from stream.session import LiveSession


def test_frames_are_served_while_the_tempo_is_estimated(monkeypatch):
    release, started = threading.Event(), threading.Event()

    def slow_estimate(hits, until):  # the tracker on a long session: stands in for tens of ms
        started.set()
        release.wait(5)
        return type("Grid", (), {"bpm": 121.0})()

    monkeypatch.setattr(runner_module, "estimate_grid", slow_estimate)

    async def scenario() -> list[dict]:
        detector = Detector()
        session = LiveSession(detector, PcmFormat(16000, 1, "s16le"))
        session.hits = [Hit(0.5 * i, "kick", "kick", 0.8, 0.9) for i in range(8)]
        sent: list[dict] = []
        runner = LiveRunner(session, InferenceBatcher(detector.model), LiveSettings(notation_every=0), sent.append,
                            finalizer=None)
        await runner.audio(bytes(2 * 16000))  # one second: the tempo is due
        await asyncio.to_thread(started.wait, 5)
        await runner.audio(bytes(3200))  # served while the estimate still runs
        assert not runner._tempo_task.done() and sent == []
        release.set()
        await runner._tempo_task
        return sent

    assert asyncio.run(scenario()) == [{"type": "tempo", "bpm": 121.0}]


def test_a_tempo_within_a_bpm_of_the_last_is_not_sent_again():
    session = LiveSession(Detector(), PcmFormat(16000, 1, "s16le"))
    assert session.tempo_moved(110.0) and not session.tempo_moved(110.6) and session.tempo_moved(112.0)
    assert session.bpm == pytest.approx(112.0)
