"""The shipped network on onnxruntime: load, verify, step batches of streams forward."""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import numpy as np
import onnxruntime as ort

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class ModelError(RuntimeError):
    """The weights are missing, corrupt, or do not match their model card."""


@dataclass(frozen=True)
class ModelCard:
    name: str
    version: str
    families: tuple[str, ...]
    instruments: tuple[str, ...]
    sample_rate: int
    hop: int
    n_mels: int
    receptive_field: int
    context_frames: int
    lookahead_ms: int
    state_size: int
    thresholds: dict[str, float]

    @property
    def lookahead_frames(self) -> int:
        """Frames the network reads past the frame it scores."""
        return self.receptive_field - 1 - self.context_frames

    @classmethod
    def from_json(cls, data: dict) -> "ModelCard":
        return cls(
            name=data["name"], version=data.get("version", "dev"),
            families=tuple(data["classes"]["families"]), instruments=tuple(data["classes"]["instruments"]),
            sample_rate=data["features"]["sample_rate"], hop=data["features"]["hop"], n_mels=data["features"]["n_mels"],
            receptive_field=data["receptive_field"], context_frames=data["context_frames"],
            lookahead_ms=data["lookahead_ms"], state_size=data["state_size"], thresholds=dict(data["thresholds"]),
        )


def _providers(device: str) -> list[str]:
    available = ort.get_available_providers()
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise ModelError("CUDA was asked for but onnxruntime has no CUDA provider (install the gpu extra)")
    return ["CPUExecutionProvider"]


@dataclass(frozen=True)
class Step:
    """A stream's next log-mel frames and the network state they continue from."""
    frames: np.ndarray  # (k, n_mels)
    state: np.ndarray   # (state_size,)


@dataclass(frozen=True)
class StepResult:
    """The network's output for a ``Step``: row ``j`` belongs to the frame ``conv_lookahead``
    frames before the step's frame ``j``; ``state`` continues the stream."""
    probabilities: np.ndarray  # (k, outputs)
    state: np.ndarray


class HitModel:
    """One loaded network, shared by every stream of a process.

    The ONNX graph is the streaming form of the network (``models.network.StreamingHitNet``):
    new frames and a state in, their probabilities and the next state out, so a live
    stream computes each frame once and a whole file is the same call with more frames.
    """

    def __init__(self, weights_dir: Path | str | None = None, device: str = "auto", threads: int | None = None) -> None:
        folder = Path(weights_dir or os.environ.get("DRUMSCRIBE_WEIGHTS", WEIGHTS_DIR))
        card_path, onnx_path = folder / "hitnet.json", folder / "hitnet.onnx"
        if not card_path.exists() or not onnx_path.exists():
            raise ModelError(f"no model in {folder}: expected hitnet.json and hitnet.onnx")
        self.card_path = card_path
        data = json.loads(card_path.read_text())
        digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
        if digest != data.get("onnx_sha256"):
            raise ModelError(f"{onnx_path} does not match the checksum in its model card")
        self.card = ModelCard.from_json(data)
        options = ort.SessionOptions()
        # idle pool threads sleep instead of spinning: a live server calls the network a
        # hundred times a second with small batches, and spinning would starve the event loop
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_path), options, providers=_providers(device))
        self.inference_seconds = 0.0  # totals a server's /metrics reports
        self.inference_calls = 0
        self.initial_state = self._silence_state()

    def _silence_state(self) -> np.ndarray:
        """The state after a receptive field of silence (zero features): where every stream starts,
        as the network saw the start of every training example."""
        zeros = np.zeros((self.card.receptive_field, self.card.n_mels), np.float32)
        return self.run([Step(zeros, np.zeros(self.card.state_size, np.float32))])[0].state

    def run(self, steps: list[Step]) -> list[StepResult]:
        """Step every stream forward, one inference call per distinct number of new frames."""
        results: dict[int, StepResult] = {}
        order = sorted(range(len(steps)), key=lambda i: len(steps[i].frames))
        for _, group in groupby(order, key=lambda i: len(steps[i].frames)):
            rows = list(group)
            mel = np.stack([steps[i].frames for i in rows]).astype(np.float32, copy=False)
            state = np.stack([steps[i].state for i in rows])
            started = time.perf_counter()
            probabilities, states = self.session.run(None, {"mel": mel, "state": state})
            self.inference_seconds += time.perf_counter() - started
            self.inference_calls += 1
            for row, i in enumerate(rows):
                results[i] = StepResult(probabilities[row], states[row])
        return [results[i] for i in range(len(steps))]
