"""One network for every live session: steps that are ready together run as one batch.

Sessions ``await batcher.run(step)``; the first request of a batch waits at most
``max_wait`` for others to join, then the whole batch runs on a single inference thread,
so the event loop never blocks on the network and a burst of sessions costs one call.
While a batch runs, new steps gather and go as the next batch the moment it ends.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from models.runtime import HitModel, Step, StepResult


class InferenceBatcher:
    def __init__(self, model: HitModel, max_wait: float = 0.002, max_batch: int = 64) -> None:
        self.model, self.max_wait, self.max_batch = model, max_wait, max_batch
        self._pending: list[tuple[Step, asyncio.Future]] = []
        self._flusher: asyncio.TimerHandle | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._busy = False
        self.batches = 0
        self.steps = 0

    async def run(self, step: Step) -> StepResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        self._pending.append((step, future))
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

    async def _execute(self, batch: list[tuple[Step, asyncio.Future]]) -> None:
        steps = [step for step, _ in batch]
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._executor, self.model.run, steps)
        except Exception as error:  # surfaces in every waiting session instead of vanishing
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
        else:
            self.batches += 1
            self.steps += len(steps)
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)
        finally:
            self._busy = False
            self._launch()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
