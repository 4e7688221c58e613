"""The hit-detection network (PyTorch; used to train and to export ONNX, not to serve).

Input: log-mel frames (batch, time, N_MELS). A 2-D convolutional front end reads the
spectrogram with ``LOOKAHEAD_FRAMES`` frames of look-ahead; a stack of causal dilated
1-D convolutions adds ``CONTEXT_FRAMES`` of left context. Every output frame therefore
depends on a fixed span of input frames, which is what lets a stream give the same
activations as the whole file. Outputs per frame: an onset probability per family,
instrument logits (which instrument of its family), and a velocity per family.
"""
from __future__ import annotations

import torch
from torch import nn

from models.features import N_MELS
from models.vocab import FAMILIES, INSTRUMENTS

CONV_LOOKAHEAD = 3  # frames the 2-D front end reads past the current frame
DILATIONS = (1, 2, 4, 8, 16)
# Input frames one output depends on: a frame pair for the flux, three 3-frame convolutions,
# and the causal stack. The output belongs to the frame CONV_LOOKAHEAD before the newest.
RECEPTIVE_FIELD = 2 + 3 * 2 + 2 * sum(DILATIONS)
CONTEXT_FRAMES = RECEPTIVE_FIELD - 1 - CONV_LOOKAHEAD  # left frames an output depends on
N_OUTPUTS = 2 * len(FAMILIES) + len(INSTRUMENTS)


class ConvBlock(nn.Sequential):
    def __init__(self, channels_in: int, channels_out: int, time_kernel: int) -> None:
        super().__init__(
            nn.Conv2d(channels_in, channels_out, (time_kernel, 3), padding=(0, 1)),
            nn.BatchNorm2d(channels_out),
            nn.ReLU(),
        )


class CausalResidual(nn.Module):
    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.pad = 2 * dilation
        self.conv = nn.Conv1d(channels, channels, 3, dilation=dilation)
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(nn.functional.pad(x, (self.pad, 0)))
        return x + torch.relu(self.norm(y))


class HitNet(nn.Module):
    """Frames in, per-frame family onsets, instrument logits and velocities out.

    ``forward`` takes ``frames`` input frames and returns ``frames - CONTEXT_FRAMES -
    CONV_LOOKAHEAD`` output frames: output ``k`` belongs to input frame ``k + CONTEXT_FRAMES``.
    Callers pad (zeros = silence) to decide which frames they want.
    """

    def __init__(self, width: int = 128) -> None:
        super().__init__()
        self.front = nn.Sequential(
            ConvBlock(2, 16, 3), ConvBlock(16, 16, 3), nn.MaxPool2d((1, 3)),
            ConvBlock(16, 32, 3), ConvBlock(32, 32, 1), nn.MaxPool2d((1, 3)),
        )
        bins = N_MELS // 3 // 3
        self.project = nn.Conv1d(32 * bins, width, 1)
        self.temporal = nn.Sequential(*(CausalResidual(width, d) for d in DILATIONS))
        self.head = nn.Conv1d(width, N_OUTPUTS, 1)

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> HitNet:
        """A network of the width the saved weights were trained at, holding them."""
        net = cls(width=state["project.weight"].shape[0])
        net.load_state_dict(state)
        return net

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        flux = torch.relu(mel[:, 1:] - mel[:, :-1])  # onset cue: rising energy per band
        x = torch.stack([mel[:, 1:], flux], dim=1)  # (batch, 2, time - 1, mels)
        x = self.front(x)
        batch, channels, time, bins = x.shape
        x = x.permute(0, 1, 3, 2).reshape(batch, channels * bins, time)
        x = self.temporal(torch.relu(self.project(x)))
        # temporal convs are left-padded: drop the outputs whose left context was padding
        return self.head(x)[:, :, sum(2 * d for d in DILATIONS):].transpose(1, 2)


def split_outputs(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(onset logits per family, instrument logits, velocity logits per family)."""
    n = len(FAMILIES)
    return out[..., :n], out[..., n: n + len(INSTRUMENTS)], out[..., n + len(INSTRUMENTS):]


class StreamingHitNet(nn.Module):
    """``HitNet`` a few frames at a time, carrying what its convolutions remember as a state.

    Every time convolution keeps the last ``kernel - 1`` frames of its input (its history);
    the frame-difference keeps the last log-mel frame. ``forward(mel, state)`` takes ``k`` new
    frames and the flat state, and returns ``k`` outputs plus the next state: each new frame
    is computed once, where a window of ``RECEPTIVE_FIELD`` frames would recompute 70.
    Output ``j`` belongs to the frame ``CONV_LOOKAHEAD`` before new frame ``j``.
    The arithmetic is ``HitNet``'s, so streaming equals the whole-file call.
    """

    def __init__(self, net: HitNet) -> None:
        super().__init__()
        self.net = net
        self.shapes = state_shapes(net)
        self.state_size = sum(_numel(shape) for shape in self.shapes)

    def forward(self, mel: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        parts = iter(self._unpack(state))
        kept: list[torch.Tensor] = []

        def with_history(x: torch.Tensor, frames: int, time_dim: int) -> torch.Tensor:
            full = torch.cat([next(parts), x], dim=time_dim)
            kept.append(full.narrow(time_dim, full.shape[time_dim] - frames, frames))
            return full

        mel = with_history(mel, 1, 1)
        flux = torch.relu(mel[:, 1:] - mel[:, :-1])
        x = torch.stack([mel[:, 1:], flux], dim=1)
        for layer in self.net.front:
            if isinstance(layer, ConvBlock) and _time_kernel(layer) > 1:
                x = with_history(x, _time_kernel(layer) - 1, 2)
            x = layer(x)
        batch, channels, time, bins = x.shape
        x = torch.relu(self.net.project(x.permute(0, 1, 3, 2).reshape(batch, channels * bins, time)))
        for residual in self.net.temporal:
            full = with_history(x, residual.pad, 2)
            x = x + torch.relu(residual.norm(residual.conv(full)))
        out = self.net.head(x).transpose(1, 2)
        return out, torch.cat([part.reshape(batch, -1) for part in kept], dim=1)

    def _unpack(self, state: torch.Tensor) -> list[torch.Tensor]:
        parts, start = [], 0
        for shape in self.shapes:
            size = _numel(shape)
            parts.append(state[:, start:start + size].reshape(-1, *shape))
            start += size
        return parts


def state_shapes(net: HitNet) -> list[tuple[int, ...]]:
    """Per-example shapes of the histories ``StreamingHitNet`` carries, in the order it uses them."""
    shapes: list[tuple[int, ...]] = [(1, N_MELS)]
    channels, bins = 2, N_MELS
    for layer in net.front:
        if isinstance(layer, ConvBlock):
            if _time_kernel(layer) > 1:
                shapes.append((channels, _time_kernel(layer) - 1, bins))
            channels = layer[0].out_channels
        elif isinstance(layer, nn.MaxPool2d):
            bins //= layer.kernel_size[1]
    width = net.project.out_channels
    shapes += [(width, residual.pad) for residual in net.temporal]
    return shapes


def _time_kernel(block: ConvBlock) -> int:
    return block[0].kernel_size[0]


def _numel(shape: tuple[int, ...]) -> int:
    size = 1
    for dim in shape:
        size *= dim
    return size
