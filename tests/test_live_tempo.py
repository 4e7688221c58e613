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
from stream.scorer import LiveScorer, ScoreUpdate
from stream.session import TEMPO_EVERY_SECONDS, LiveSession


class HeldScorer:
    """A scorer whose tempo estimate lasts until the test releases it."""

    def __init__(self) -> None:
        self.started, self.release = asyncio.Event(), asyncio.Event()
        self.asked: list[tuple[float, bool]] = []  # (seconds, notation) per request

    async def update(self, hits: list[Hit], seconds: float, notation: bool) -> ScoreUpdate:
        self.asked.append((seconds, notation))
        self.started.set()
        await self.release.wait()
        return ScoreUpdate(121.0 + len(self.asked) * 5, ("<svg/>", len(self.asked)) if notation else None)


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
        assert not runner._score_task.done() and sent == []
        scorer.release.set()
        await runner._score_task
        return sent

    assert asyncio.run(scenario()) == [{"type": "tempo", "bpm": 126.0}]


def test_what_comes_due_during_a_request_is_asked_for_together_when_it_ends():
    async def scenario() -> tuple[list[dict], list[tuple[float, bool]]]:
        detector = Detector()
        session = LiveSession(detector, PcmFormat(16000, 1, "s16le"))
        session.hits = [Hit(0.5 * i, "kick", "kick", 0.8, 0.9) for i in range(8)]
        sent: list[dict] = []
        scorer = HeldScorer()
        second = bytes(2 * 16000)
        runner = LiveRunner(session, InferenceBatcher(detector.model), LiveSettings(notation_every=3.0), sent.append,
                            finalizer=None, scorer=scorer)
        for _ in range(3):
            await runner.audio(second)  # the notation is due at 3 s
        await asyncio.wait_for(scorer.started.wait(), 5)
        for _ in range(int(TEMPO_EVERY_SECONDS) + 2):
            await runner.audio(second)  # the tempo and the notation come due again meanwhile
        scorer.release.set()
        await runner._score_task
        return sent, scorer.asked

    sent, asked = asyncio.run(scenario())
    assert asked == [(3.0, True), (3.0 + TEMPO_EVERY_SECONDS + 2, True)]  # one request for both, not one each
    assert sent == [{"type": "notation", "svg": "<svg/>", "bar": 1}, {"type": "tempo", "bpm": 131.0},
                    {"type": "notation", "svg": "<svg/>", "bar": 2}]


def test_the_scorer_process_tracks_the_tempo_the_score_writes_and_draws_on_its_grid():
    hits = [Hit(0.5 * i, "kick" if i % 2 == 0 else "snare", "kick" if i % 2 == 0 else "snare", 0.8, 0.9)
            for i in range(32)]
    scorer = LiveScorer(notation_svg)
    try:
        scorer.wait_ready()
        tempo_only = asyncio.run(scorer.update(hits, 16.0, notation=False))
        both = asyncio.run(scorer.update(hits, 16.0, notation=True))
    finally:
        scorer.close()
    grid = estimate_grid(hits, 16.0)
    assert tempo_only == (pytest.approx(grid.bpm), None)
    svg, last_bar = both.notation
    assert both.bpm == pytest.approx(grid.bpm) and last_bar == notation_svg(hits, 16.0, grid)[1] == 8
    assert svg.lstrip().startswith(("<svg", "<?xml")) and "</svg>" in svg


def test_a_tempo_within_a_bpm_of_the_last_is_not_sent_again():
    session = LiveSession(Detector(), PcmFormat(16000, 1, "s16le"))
    assert session.tempo_moved(110.0) and not session.tempo_moved(110.6) and session.tempo_moved(112.0)
    assert session.bpm == pytest.approx(112.0)
