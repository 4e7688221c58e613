"""A batch worker: claims jobs from the queue, runs the pipeline, stores results, acknowledges.

The same class runs inside ``drumscribe serve`` (a thread per worker, embedded Redis) and as
``drumscribe worker`` processes on any number of machines (``REDIS_URL``). A worker may take only
some stages (``--stages``, ``batch.stages``): it then hands each job on to the next stage's stream,
with what that stage needs stored as a file of the job, so workers share only Redis and the
job store. Every Redis call
goes through ``batch.retry.with_backoff``: through an outage a worker waits, keeps its job and
finishes it when Redis is back; when Redis lost its data, it recreates the queue.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Collection
from typing import TypeVar

import redis

from batch import tracing
from batch.config import Settings
from batch.jobs import Delivery, JobNotFound, JobStore
from batch.pipeline import HANDOFF_FILES, Cancelled, StageClock, Work, dump, handoff_file, load, run_stages
from batch.retention import sweep_if_due
from batch.retry import Stopped, delays, with_backoff
from batch.webhooks import Dispatcher
from batch.score import FILES as OUTPUT_FILES
from batch.stages import STAGES, ordered
from batch.storage import Storage, open_storage
from models.audio import AudioError
from models.detector import Detector
from models.separation import Separation, SeparationUnavailable

log = logging.getLogger("drumscribe.worker")
T = TypeVar("T")


class Worker:
    """One consumer of the streams of its ``stages``; ``run`` loops until ``stop`` is set."""

    def __init__(self, store: JobStore, detector: Detector, settings: Settings, name: str | None = None,
                 separation: Separation | None = None, storage: Storage | None = None,
                 stages: Collection[str] = STAGES) -> None:
        self.store, self.detector, self.settings = store, detector, settings
        self.separation = separation
        self.stages = ordered(stages)
        self.storage = storage or open_storage(settings)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.stop = threading.Event()

    def run(self) -> None:
        log.info("worker %s waiting for jobs (stages %s)", self.name, ",".join(self.stages))
        next_beat = next_sweep = 0.0
        waits = delays()
        webhooks = threading.Thread(target=Dispatcher(self.store, self.settings, self.stop).run,
                                    name=f"{self.name}-webhooks", daemon=True)
        webhooks.start()  # beside the jobs: a slow receiver does not hold up the queue
        try:
            self._redis(self.store.ensure_queue)
            while not self.stop.is_set():
                try:
                    if time.monotonic() >= next_sweep:
                        next_sweep = time.monotonic() + self.settings.sweep_minutes * 60
                        self._sweep()
                    delivery = self._redis(self.store.claim, self.name, 500, self.stages)
                    if time.monotonic() >= next_beat:  # a beat says: this worker reads the queue
                        self._redis(self.store.heartbeat, self.name, self.stages)
                        next_beat = time.monotonic() + self.settings.heartbeat_ttl / 3
                    if delivery is not None:
                        self.process(delivery)
                        next_beat = 0.0
                    waits = delays()
                except Exception as error:  # not a passing fault (a bug, a corrupt record): log, go on
                    log.exception("worker %s: %s", self.name, error)
                    self.stop.wait(next(waits))
        except Stopped:
            pass
        try:
            self.store.forget_worker(self.name)
        except redis.RedisError:
            pass  # Redis is down: the beat expires by itself
        webhooks.join(timeout=30)
        log.info("worker %s stopped", self.name)

    def _sweep(self) -> None:
        """Expire old jobs and orphaned folders; a sweep that fails waits for the next turn."""
        try:
            sweep_if_due(self.store, self.settings, self.storage, self.name)
        except (redis.RedisError, OSError) as error:  # a failing disk or bucket too
            log.warning("worker %s: retention sweep skipped: %s", self.name, error)

    def _redis(self, call: Callable[..., T], *args, stop: threading.Event | None = None) -> T:
        """``call(*args)`` retried through Redis outages until it succeeds or ``stop`` (default:
        the worker's) is set, which raises ``Stopped``."""
        return with_backoff(lambda: call(*args), stop or self.stop, self.store.ensure_queue,
                            f"worker {self.name} ({getattr(call, '__name__', 'redis')})")

    def process(self, delivery: Delivery) -> None:
        """Run one attempt; acknowledge unless the attempt was taken from us."""
        beat = threading.Event()
        keeper = threading.Thread(target=self._keep_alive, args=(delivery, beat), daemon=True)
        keeper.start()
        try:  # the job's span continues the trace its queued message carried
            with tracing.job_scope(delivery.job_id), tracing.tracer.start_as_current_span(
                    "job", context=tracing.extract(delivery.trace), kind=tracing.trace.SpanKind.CONSUMER,
                    attributes={"drumscribe.job_id": delivery.job_id, "drumscribe.attempt": delivery.attempt,
                                "drumscribe.worker": self.name, "drumscribe.hop": delivery.hop,
                                "drumscribe.stages": ",".join(self.stages)}):
                self._attempt(delivery)
        finally:
            beat.set()
            keeper.join()

    def _attempt(self, delivery: Delivery) -> None:
        try:
            job = self._redis(self.store.get, delivery.job_id)
        except JobNotFound:  # deleted, or Redis lost it, since it was claimed
            self._redis(self.store.ack, delivery.entry_id, delivery.stream)
            return
        source = json.loads(job["source"])
        clock = StageClock(lambda stage, fraction: self._redis(self.store.progress, delivery, stage, fraction),
                           lambda stage, seconds: self._redis(self.store.record_stage, stage, seconds))
        log.info("job %s attempt %d at %s on %s", delivery.job_id, delivery.attempt, delivery.stage, self.name)
        handed = delivery.stage != STAGES[0]  # it came from another worker, with its handoff file
        fetch = [handoff_file(delivery.stage)] if handed else [source["file"]] if "file" in source else []
        try:  # in a workspace holding the job's input; the outputs are stored before the job succeeds
            with self.storage.workspace(delivery.job_id, fetch=fetch) as folder:
                work = Work(self.detector, source, json.loads(job["options"]), folder,
                            self.settings.max_upload_bytes, self.settings.max_seconds, self.separation)
                carry = load(folder / handoff_file(delivery.stage)) if handed else None
                with clock:  # ends the span of a stage that raised
                    next_stage, carry = run_stages(delivery.stage, self.stages, carry, work, clock)
                if next_stage is None:
                    self.storage.publish(delivery.job_id, folder, OUTPUT_FILES.values())
                else:  # stored before the job is queued for it
                    dump(carry, folder / handoff_file(next_stage))
                    self.storage.publish(delivery.job_id, folder, [handoff_file(next_stage)])
        except Cancelled:
            log.info("job %s stopped: cancelled or reclaimed", delivery.job_id)
            self._settle_cancelled(delivery)
            return
        except (AudioError, SeparationUnavailable) as error:
            ended = self._redis(self.store.finish, delivery, "failed", str(error))
        except Exception as error:  # a bug or a broken file: fail the job, keep the worker
            log.exception("job %s failed", delivery.job_id)
            reason = f"internal error: {type(error).__name__}: {error}"
            ended = self._redis(self.store.finish, delivery, "failed", reason)
        else:
            if next_stage is not None:
                if self._redis(self.store.hand_on, delivery, next_stage):  # settles the entry too
                    log.info("job %s handed on to %s", delivery.job_id, next_stage)
                else:
                    self._settle_cancelled(delivery)
                return
            if not self._redis(self.store.finish, delivery, "succeeded"):
                self._settle_cancelled(delivery)
                return
            ended = True
        if ended and handed:  # what the stages handed each other is no longer needed
            self.storage.discard(delivery.job_id, HANDOFF_FILES)
        self._redis(self.store.ack, delivery.entry_id, delivery.stream)

    def _settle_cancelled(self, delivery: Delivery) -> None:
        """Acknowledge a cancelled job and drop its partial outputs; leave a reclaimed one alone."""
        record = self._redis(self.store.redis.hgetall, self.store.key(delivery.job_id))
        if record.get("owner") != delivery.owner:
            return  # another worker holds the job now
        if record.get("status") == "cancelled":
            self.storage.discard(delivery.job_id, [*OUTPUT_FILES.values(), *HANDOFF_FILES, "download"])
        self._redis(self.store.ack, delivery.entry_id, delivery.stream)

    def _keep_alive(self, delivery: Delivery, done: threading.Event) -> None:
        """While the attempt runs: keep its entry from being reclaimed and the worker counted alive."""
        interval = max(0.2, min(self.settings.visibility_timeout, self.settings.heartbeat_ttl) / 3)
        key = self.store.key(delivery.job_id)
        try:
            while not done.wait(interval):
                if self._redis(self.store.redis.hget, key, "owner", stop=done) != delivery.owner:
                    return  # reclaimed by another worker: do not take it back
                self._redis(self.store.keep_alive, delivery, self.name, stop=done)
                self._redis(self.store.heartbeat, self.name, self.stages, stop=done)
        except Stopped:
            pass
