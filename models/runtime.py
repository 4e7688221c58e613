"""The shipped network on onnxruntime: load, verify, run batches of feature windows."""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
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
    receptive_field: int
    context_frames: int
    lookahead_ms: int
    thresholds: dict[str, float]

    @classmethod
    def from_json(cls, data: dict) -> "ModelCard":
        return cls(
            name=data["name"], version=data.get("version", "dev"),
            families=tuple(data["classes"]["families"]), instruments=tuple(data["classes"]["instruments"]),
            sample_rate=data["features"]["sample_rate"], hop=data["features"]["hop"],
            receptive_field=data["receptive_field"], context_frames=data["context_frames"],
            lookahead_ms=data["lookahead_ms"], thresholds=dict(data["thresholds"]),
        )


def _providers(device: str) -> list[str]:
    available = ort.get_available_providers()
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise ModelError("CUDA was asked for but onnxruntime has no CUDA provider (install the gpu extra)")
    return ["CPUExecutionProvider"]


class HitModel:
    """One loaded network, shared by every stream of a process.

    ``run`` takes windows of log-mel frames (each at least ``receptive_field`` long) and
    returns per-frame probabilities for the frames whose full context is in the window.
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
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_path), options, providers=_providers(device))
        self.inference_seconds = 0.0  # totals a server's /metrics reports
        self.inference_calls = 0

    def run(self, windows: list[np.ndarray]) -> list[np.ndarray]:
        """Probabilities for each window, all in one inference call.

        Shorter windows are padded on the left to the longest: the network's time
        convolutions are unpadded, so each output depends only on its own receptive field
        and the outputs of the real frames are unchanged; the padded ones are dropped.
        """
        if not windows:
            return []
        longest = max(len(w) for w in windows)
        batch = np.zeros((len(windows), longest, windows[0].shape[1]), np.float32)
        for row, window in enumerate(windows):
            batch[row, longest - len(window):] = window
        started = time.perf_counter()
        out = self.session.run(None, {"mel": batch})[0]
        self.inference_seconds += time.perf_counter() - started
        self.inference_calls += 1
        return [out[row, longest - len(window):] for row, window in enumerate(windows)]
