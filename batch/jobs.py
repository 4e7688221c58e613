"""Job records and the work queue, both in Redis.

A job is a hash ``drumscribe:job:<id>``; its id is queued on a Redis Stream read by one
consumer group, so every worker on every machine shares one queue. A worker acknowledges
an entry only after the job's results are stored; an entry whose worker went silent for
longer than the visibility timeout is claimed by another worker (``XAUTOCLAIM``), up to
``max_attempts`` deliveries. A job ends exactly once: ``finish`` changes a running job's
state only while the caller still owns the attempt it started.
"""
from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

import redis

from batch.config import Settings

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
RECENT_KEY = "drumscribe:recent"
WORKERS_KEY = "drumscribe:workers:"
STAGE_KEY = "drumscribe:stage_seconds"

# Update a running job only while the caller owns its current attempt (progress and finish).
_UPDATE_OWNED = """
local job = KEYS[1]
if redis.call('HGET', job, 'status') ~= 'running' then return 0 end
if redis.call('HGET', job, 'owner') ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do
  redis.call('HSET', job, ARGV[i], ARGV[i + 1])
  if ARGV[i] == 'finished' then redis.call('HINCRBY', job, 'completions', 1) end
end
return 1
"""


class JobNotFound(KeyError):
    pass


@dataclass(frozen=True)
class Delivery:
    """One entry of the stream handed to a worker: which job, and which attempt at it."""

    entry_id: str
    job_id: str
    attempt: int
    owner: str


class JobStore:
    """Create, read, update, queue and claim jobs. Safe to share between threads."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.settings = settings
        self._update_owned = client.register_script(_UPDATE_OWNED)
        try:
            client.xgroup_create(settings.stream_name, settings.group_name, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    @staticmethod
    def key(job_id: str) -> str:
        return f"drumscribe:job:{job_id}"

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def create(self, source: dict, options: dict, job_id: str | None = None) -> str:
        """Record a new queued job and put it on the stream; returns its id."""
        job_id = job_id or self.new_id()
        now = time.time()
        record = {
            "id": job_id, "status": "queued", "stage": "queued", "progress": 0.0, "error": "",
            "created": now, "updated": now, "attempts": 0, "owner": "",
            "source": json.dumps(source), "options": json.dumps(options),
        }
        pipe = self.redis.pipeline()
        pipe.hset(self.key(job_id), mapping=record)
        pipe.zadd(RECENT_KEY, {job_id: now})
        pipe.xadd(self.settings.stream_name, {"job": job_id})
        pipe.execute()
        return job_id

    def get(self, job_id: str) -> dict:
        record = self.redis.hgetall(self.key(job_id))
        if not record:
            raise JobNotFound(job_id)
        return record

    def public(self, job_id: str) -> dict:
        """The job as the API shows it."""
        record = self.get(job_id)
        options = json.loads(record.get("options") or "{}")
        return {
            "id": job_id, "status": record["status"], "stage": record["stage"],
            "progress": round(float(record["progress"]), 3), "error": record["error"] or None,
            "title": options.get("title"), "created": float(record["created"]),
        }

    def recent(self, limit: int = 20) -> list[dict]:
        jobs = []
        for job_id in self.redis.zrevrange(RECENT_KEY, 0, limit - 1):
            try:
                jobs.append(self.public(job_id))
            except JobNotFound:
                self.redis.zrem(RECENT_KEY, job_id)
        return jobs

    def progress(self, delivery: Delivery, stage: str, progress: float) -> bool:
        """Record progress; False when the attempt no longer owns the job (cancelled or reclaimed)."""
        return bool(self._update_owned(keys=[self.key(delivery.job_id)],
                                 args=[delivery.owner, "stage", stage, "progress", progress, "updated", time.time()]))

    def finish(self, delivery: Delivery, status: str, error: str = "") -> bool:
        """End a running attempt as succeeded or failed; False if it was no longer the owner."""
        fields = ["status", status, "stage", "done" if status == "succeeded" else status,
                  "error", error, "updated", time.time(), "finished", time.time()]
        if status == "succeeded":
            fields += ["progress", 1.0]
        return bool(self._update_owned(keys=[self.key(delivery.job_id)], args=[delivery.owner, *fields]))

    def cancel(self, job_id: str) -> dict:
        """Cancel a queued or running job; a running worker notices at its next progress report."""
        key = self.key(job_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    status = pipe.hget(key, "status")
                    if status is None:
                        raise JobNotFound(job_id)
                    pipe.multi()
                    if status not in FINAL_STATES:
                        pipe.hset(key, mapping={"status": "cancelled", "stage": "cancelled", "updated": time.time()})
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
        return self.public(job_id)

    def link_session(self, session_id: str, job_id: str) -> None:
        """Remember which job holds a live session's recording and score."""
        self.redis.set(f"drumscribe:session:{session_id}", job_id)

    def job_of_session(self, session_id: str) -> str:
        job_id = self.redis.get(f"drumscribe:session:{session_id}")
        if job_id is None:
            raise JobNotFound(session_id)
        return job_id

    def delete(self, job_id: str) -> None:
        self.get(job_id)
        pipe = self.redis.pipeline()
        pipe.delete(self.key(job_id))
        pipe.zrem(RECENT_KEY, job_id)
        pipe.execute()

    # --- the queue, as workers see it -------------------------------------------------

    def claim(self, consumer: str, block_ms: int = 1000) -> Delivery | None:
        """The next job for ``consumer``: an abandoned entry first, else a new one (waits ``block_ms``)."""
        s = self.settings
        entries = self.redis.xautoclaim(s.stream_name, s.group_name, consumer,
                                        min_idle_time=int(s.visibility_timeout * 1000), count=1)[1]
        if not entries:
            reply = self.redis.xreadgroup(s.group_name, consumer, {s.stream_name: ">"}, count=1, block=block_ms)
            entries = reply[0][1] if reply else []
        for entry_id, fields in entries:
            if not fields:  # the entry was trimmed away while pending
                self.ack(entry_id)
                continue
            return self._start(entry_id, fields["job"], consumer)
        return None

    def _start(self, entry_id: str, job_id: str, consumer: str) -> Delivery | None:
        """Mark the job running under a new attempt, or settle entries that need no work."""
        key = self.key(job_id)
        record = self.redis.hgetall(key)
        if not record or record["status"] in FINAL_STATES:
            self.ack(entry_id)
            return None
        attempt = int(record["attempts"]) + 1
        if attempt > self.settings.max_attempts:
            self.redis.hset(key, mapping={
                "status": "failed", "stage": "failed", "updated": time.time(), "owner": "",
                "error": f"the job was abandoned by {attempt - 1} workers (it may crash them); giving up"})
            self.ack(entry_id)
            return None
        owner = f"{consumer}/{attempt}"
        self.redis.hset(key, mapping={"status": "running", "stage": "starting", "progress": 0.0,
                                      "attempts": attempt, "owner": owner, "updated": time.time()})
        return Delivery(entry_id, job_id, attempt, owner)

    def keep_alive(self, delivery: Delivery, consumer: str) -> None:
        """Reset the entry's idle time so a live worker's long job is not reclaimed."""
        s = self.settings
        self.redis.xclaim(s.stream_name, s.group_name, consumer, min_idle_time=0,
                          message_ids=[delivery.entry_id], justid=True)

    def ack(self, entry_id: str) -> None:
        s = self.settings
        pipe = self.redis.pipeline()
        pipe.xack(s.stream_name, s.group_name, entry_id)
        pipe.xdel(s.stream_name, entry_id)
        pipe.execute()

    # --- what /health and /metrics read ----------------------------------------------

    def heartbeat(self, consumer: str, ttl: float) -> None:
        self.redis.set(WORKERS_KEY + consumer, time.time(), ex=max(1, int(ttl)))

    def live_workers(self) -> list[str]:
        return [key.removeprefix(WORKERS_KEY) for key in self.redis.scan_iter(WORKERS_KEY + "*")]

    def queue_depth(self) -> tuple[int, int]:
        """(entries waiting for a worker, entries a worker holds); acknowledged entries are deleted."""
        s = self.settings
        pending = next((int(g["pending"]) for g in self.redis.xinfo_groups(s.stream_name)
                        if g["name"] == s.group_name), 0)
        return self.redis.xlen(s.stream_name) - pending, pending

    def count_by_state(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        ids = self.redis.zrange(RECENT_KEY, 0, -1)
        pipe = self.redis.pipeline()
        for job_id in ids:
            pipe.hget(self.key(job_id), "status")
        for status in pipe.execute():
            if status in counts:
                counts[status] += 1
        return counts

    def record_stage(self, stage: str, seconds: float) -> None:
        pipe = self.redis.pipeline()
        pipe.hincrbyfloat(STAGE_KEY, f"{stage}:sum", seconds)
        pipe.hincrby(STAGE_KEY, f"{stage}:count", 1)
        pipe.execute()

    def stage_totals(self) -> dict[str, tuple[float, int]]:
        raw = self.redis.hgetall(STAGE_KEY)
        stages = {name.rsplit(":", 1)[0] for name in raw}
        return {s: (float(raw.get(f"{s}:sum", 0)), int(raw.get(f"{s}:count", 0))) for s in sorted(stages)}
