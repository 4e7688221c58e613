"""Export a trained HitNet checkpoint to ONNX, in its streaming form, plus its model card (``hitnet.json``)."""
from __future__ import annotations

import argparse
import hashlib
import json
import warnings
from pathlib import Path

import torch

from models.features import F_MAX, F_MIN, HOP, N_FFT, N_MELS, SAMPLE_RATE
from models.network import CONTEXT_FRAMES, CONV_LOOKAHEAD, RECEPTIVE_FIELD, HitNet, StreamingHitNet
from models.vocab import FAMILIES, INSTRUMENTS

DEFAULT_THRESHOLDS = {family: 0.5 for family in FAMILIES}


class _Probabilities(torch.nn.Module):
    """What the ONNX file computes: one streaming step, with the sigmoid of every output
    (onsets, instruments, velocities)."""

    def __init__(self, net: HitNet) -> None:
        super().__init__()
        self.step = StreamingHitNet(net)

    def forward(self, mel: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, next_state = self.step(mel, state)
        return torch.sigmoid(out), next_state


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export(net: HitNet, out_dir: Path, card_extra: dict) -> Path:
    """Write ``hitnet.onnx`` and ``hitnet.json``; the card's checksum is what the loader verifies."""
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "hitnet.onnx"
    model = _Probabilities(net).eval()
    example = (torch.zeros(2, 5, N_MELS), torch.zeros(2, model.step.state_size))
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but handles this net exactly
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, example, str(onnx_path), input_names=["mel", "state"], output_names=["probabilities", "next_state"],
            dynamic_axes={"mel": {0: "batch", 1: "frames"}, "state": {0: "batch"},
                          "probabilities": {0: "batch", 1: "frames"}, "next_state": {0: "batch"}},
            opset_version=17, dynamo=False,
        )
    hop_ms = 1000 * HOP / SAMPLE_RATE
    card = {
        "name": "hitnet",
        "classes": {"families": list(FAMILIES), "instruments": list(INSTRUMENTS)},
        "features": {"sample_rate": SAMPLE_RATE, "hop": HOP, "n_fft": N_FFT, "n_mels": N_MELS, "f_min": F_MIN, "f_max": F_MAX},
        "receptive_field": RECEPTIVE_FIELD,
        "context_frames": CONTEXT_FRAMES,
        "conv_lookahead_frames": CONV_LOOKAHEAD,
        "state_size": model.step.state_size,
        # a hit's hop must complete, then CONV_LOOKAHEAD frames, then one more for the peak picker
        "lookahead_ms": round(hop_ms * (CONV_LOOKAHEAD + 2)),
        "thresholds": DEFAULT_THRESHOLDS,
        **card_extra,
        "onnx_sha256": sha256(onnx_path),
    }
    (out_dir / "hitnet.json").write_text(json.dumps(card, indent=2) + "\n")
    return onnx_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "weights")
    parser.add_argument("--version", default="dev")
    args = parser.parse_args()
    net = HitNet.from_state_dict(torch.load(args.checkpoint, map_location="cpu"))
    card_path = args.out / "hitnet.json"
    extra = json.loads(card_path.read_text()) if card_path.exists() else {}
    extra = {k: v for k, v in extra.items() if k in ("training", "evaluation", "thresholds", "licenses")}
    export(net, args.out, {"version": args.version, **extra})


if __name__ == "__main__":
    main()
