"""One Demucs for every separated live session: windows that are ready together run as one batch.

A separation window costs about as much on a GPU alone as with a few others (the GPU is far
from full with one 1 s window), so the windows of all sessions go to one
``Separator.drums_batch`` call (stacked into one forward pass) on a dedicated thread. On a CPU
batching saves little, the cores being the limit, but it still keeps one model call at a time
instead of one per session fighting over the cores.
"""
from __future__ import annotations

from models.separation import Separator
from stream.batcher import Batcher


class SeparationBatcher(Batcher):
    """``await run(window)`` -> the window's drums (channels, length) on the CPU: a
    ``models.separation_windows.Window`` in, a ``torch.Tensor`` out (torch is optional, so
    neither is imported here)."""

    def __init__(self, separator: Separator, max_wait: float = 0.005, max_batch: int = 16) -> None:
        super().__init__(separator.drums_batch, max_wait, max_batch, "separation")
        self.separator = separator
