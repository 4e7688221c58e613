"""The live tempo is estimated in the scorer's process: it never holds back any session's hits."""
import asyncio

import pytest

from batch.score import notation_svg
from models.beats import estimate_grid
from models.detector import Detector
from models.peaks import Hit
from stream.batcher import InferenceBatcher
from stream.config import LiveSettings
from stream.pcm import PcmFormat
from stream.runner import LiveRunner
from stream.scorer import LiveScorer
from stream.session import TEMPO_EVERY_SECONDS, LiveSession


class HeldScorer:
    """A scorer whose tempo estimate lasts until the test releases it."""

    def __init__(self) -> None:
        self.started, self.release = asyncio.Event(), asyncio.Event()

    async def tempo(self, hits: list[Hit], seconds: float) -> float:
        self.started.set()
        await self.release.wait()
        return 121.0

    async def notation(self, hits: list[Hit], seconds: float) -> None:
        return None


def test_frames_are_served_while_the_tempo_is_estimated():
    async def scenario() -> list[dict]:
        detector = Detector()
        session = LiveSession(detector, PcmFormat(16000, 1, "s16le"))
        session.hits = [Hit(0.5 * i, "kick", "kick", 0.8, 0.9) for i in range(8)]
        sent: list[dict] = []
        scorer = HeldScorer()
        runner = LiveRunner(session, InferenceBatcher(detector.model), LiveSettings(notation_every=0), sent.append,
                            finalizer=None, scorer=scorer)
        await runner.audio(bytes(2 * 16000 * int(TEMPO_EVERY_SECONDS)))  # the tempo is due
        await asyncio.wait_for(scorer.started.wait(), 5)
        await runner.audio(bytes(3200))  # served while the estimate still runs
        assert not runner._tempo_task.done() and sent == []
        scorer.release.set()
        await runner._tempo_task
        return sent

    assert asyncio.run(scenario()) == [{"type": "tempo", "bpm": 121.0}]


def test_the_scorer_process_tracks_the_tempo_the_score_writes():
    hits = [Hit(0.5 * i, "kick" if i % 2 == 0 else "snare", "kick" if i % 2 == 0 else "snare", 0.8, 0.9)
            for i in range(32)]
    scorer = LiveScorer(notation_svg)
    try:
        scorer.wait_ready()
        bpm = asyncio.run(scorer.tempo(hits, 16.0))
    finally:
        scorer.close()
    assert bpm == pytest.approx(estimate_grid(hits, 16.0).bpm)


def test_a_tempo_within_a_bpm_of_the_last_is_not_sent_again():
    session = LiveSession(Detector(), PcmFormat(16000, 1, "s16le"))
    assert session.tempo_moved(110.0) and not session.tempo_moved(110.6) and session.tempo_moved(112.0)
    assert session.bpm == pytest.approx(112.0)
