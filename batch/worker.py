"""A batch worker: claims jobs from the queue, runs the pipeline, stores results, acknowledges.

The same class runs inside ``drumscribe serve`` (a thread per worker, embedded Redis) and as
``drumscribe worker`` processes on any number of machines (``REDIS_URL``).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import threading
import uuid

import redis

from batch.config import Settings
from batch.jobs import Delivery, JobStore
from batch.pipeline import Cancelled, StageClock, run_job
from batch.score import FILES as OUTPUT_FILES
from models.audio import AudioError
from models.detector import Detector
from models.separation import Separation, SeparationUnavailable

log = logging.getLogger("drumscribe.worker")
REDIS_RETRY_SECONDS = 1.0


class Worker:
    """One consumer of the job stream; ``run`` loops until ``stop`` is set."""

    def __init__(self, store: JobStore, detector: Detector, settings: Settings, name: str | None = None,
                 separation: Separation | None = None) -> None:
        self.store, self.detector, self.settings = store, detector, settings
        self.separation = separation
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.stop = threading.Event()

    def run(self) -> None:
        log.info("worker %s waiting for jobs", self.name)
        while not self.stop.is_set():
            try:
                self.store.heartbeat(self.name, ttl=max(5.0, self.settings.visibility_timeout))
                delivery = self.store.claim(self.name, block_ms=500)
            except redis.RedisError as error:  # Redis restarting or unreachable: wait and retry
                log.warning("worker %s: %s; retrying", self.name, error)
                self.stop.wait(REDIS_RETRY_SECONDS)
                continue
            if delivery is not None:
                self.process(delivery)

    def process(self, delivery: Delivery) -> None:
        """Run one attempt; acknowledge unless the attempt was taken from us."""
        beat = threading.Event()
        keeper = threading.Thread(target=self._keep_alive, args=(delivery, beat), daemon=True)
        keeper.start()
        try:
            self._attempt(delivery)
        finally:
            beat.set()
            keeper.join()

    def _attempt(self, delivery: Delivery) -> None:
        job = self.store.get(delivery.job_id)
        folder = self.settings.jobs_dir / delivery.job_id
        clock = StageClock(lambda stage, fraction: self.store.progress(delivery, stage, fraction),
                           self.store.record_stage)
        log.info("job %s attempt %d on %s", delivery.job_id, delivery.attempt, self.name)
        try:
            run_job(self.detector, json.loads(job["source"]), json.loads(job["options"]), folder, clock,
                    self.settings.max_upload_bytes, self.settings.max_seconds, self.separation)
        except Cancelled:
            log.info("job %s stopped: cancelled or reclaimed", delivery.job_id)
            self._settle_cancelled(delivery)
            return
        except (AudioError, SeparationUnavailable) as error:
            self.store.finish(delivery, "failed", str(error))
        except Exception as error:  # a bug or a broken file: fail the job, keep the worker
            log.exception("job %s failed", delivery.job_id)
            self.store.finish(delivery, "failed", f"internal error: {type(error).__name__}: {error}")
        else:
            if not self.store.finish(delivery, "succeeded"):
                self._settle_cancelled(delivery)
                return
        self.store.ack(delivery.entry_id)

    def _settle_cancelled(self, delivery: Delivery) -> None:
        """Acknowledge a cancelled job and drop its partial outputs; leave a reclaimed one alone."""
        record = self.store.redis.hgetall(self.store.key(delivery.job_id))
        if record.get("owner") != delivery.owner:
            return  # another worker holds the job now
        if record.get("status") == "cancelled":
            for name in OUTPUT_FILES.values():
                (self.settings.jobs_dir / delivery.job_id / name).unlink(missing_ok=True)
            shutil.rmtree(self.settings.jobs_dir / delivery.job_id / "download", ignore_errors=True)
        self.store.ack(delivery.entry_id)

    def _keep_alive(self, delivery: Delivery, done: threading.Event) -> None:
        interval = max(0.2, self.settings.visibility_timeout / 3)
        while not done.wait(interval):
            if self.store.redis.hget(self.store.key(delivery.job_id), "owner") != delivery.owner:
                return  # reclaimed by another worker: do not take it back
            self.store.keep_alive(delivery, self.name)
            self.store.heartbeat(self.name, ttl=max(5.0, self.settings.visibility_timeout))
