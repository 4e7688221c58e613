"""One model for every live session: requests that are ready together run as one batch.

Sessions ``await batcher.run(item)``; the first request of a batch waits at most
``max_wait`` for others to join, then the whole batch runs on a single thread of its own,
so the event loop never blocks on the model and a burst of sessions costs one call.
While a batch runs, new requests gather and go as the next batch the moment it ends.
``InferenceBatcher`` batches the hit network's steps; ``stream.separation_batcher`` the
Demucs windows of separated sessions.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from models.runtime import HitModel, Step, StepResult

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    """``await run(item)``: ``call(items)`` on a batch of items, one call at a time, on one thread."""

    def __init__(self, call: Callable[[list[Item]], Sequence[Result]], max_wait: float, max_batch: int,
                 thread_name: str) -> None:
        self.call, self.max_wait, self.max_batch = call, max_wait, max_batch
        self._pending: list[tuple[Item, asyncio.Future]] = []
        self._flusher: asyncio.TimerHandle | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._busy = False
        self.batches = 0   # calls made
        self.items = 0     # items they held
        self.largest = 0   # the most in one call

    async def run(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self.max_batch:
            self._launch()
        elif self._flusher is None and not self._busy:
            self._flusher = loop.call_later(self.max_wait, self._launch)
        return await future

    def _launch(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        if self._busy or not self._pending:
            return  # the running batch launches the next one when it ends
        batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
        self._busy = True
        asyncio.get_running_loop().create_task(self._execute(batch))

    async def _execute(self, batch: list[tuple[Item, asyncio.Future]]) -> None:
        items = [item for item, _ in batch]
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._executor, self.call, items)
        except Exception as error:  # surfaces in every waiting session instead of vanishing
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
        else:
            self.batches += 1
            self.items += len(items)
            self.largest = max(self.largest, len(items))
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)
        finally:
            self._busy = False
            self._launch()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class InferenceBatcher(Batcher[Step, StepResult]):
    """The hit network's steps: a step waits at most 2 ms for company."""

    def __init__(self, model: HitModel, max_wait: float = 0.002, max_batch: int = 64) -> None:
        super().__init__(model.run, max_wait, max_batch, "inference")
        self.model = model
