"""Job records and the work queue, both in Redis.

A job is a hash ``drumscribe:job:<id>``; its id is queued on a Redis Stream read by one
consumer group, so every worker on every machine shares one queue. A worker acknowledges
an entry only after the job's results are stored; an entry whose worker went silent for
longer than the visibility timeout is claimed by another worker (``XAUTOCLAIM``), up to
``max_attempts`` deliveries. A job ends exactly once: ``finish`` changes a running job's
state only while the caller still owns the attempt it started.

Each stage (``batch.stages``) has its own stream and group; new jobs wait on the first stage's.
A worker that does not take the job's next stage hands it on (``hand_on``): in one script it
queues the job again on that stage's stream, at the next *hop*, and settles its own entry. An
entry of a hop the job has left is settled unread, and ``max_attempts`` counts per hop.

Every change of a job's state goes through one script that also moves the job between the
per-state counters in ``drumscribe:counts``, so ``/metrics`` reads a handful of keys however
many jobs Redis holds. Workers say they are reading the queue in a sorted set of heartbeats
stamped with the Redis server's clock, so a dead worker stops counting ``heartbeat_ttl``
seconds after its last read.
"""
from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field

import redis

from batch.config import Settings
from batch import tracing, webhooks
from batch.keys import KEY_FIELD
from batch.retry import is_nogroup
from batch.stages import STAGES, ordered

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
OPEN = ",queued,running,"
RECENT_KEY = "drumscribe:recent"
COUNTS_KEY = "drumscribe:counts"
COUNTED_SINCE = "since"  # a field of COUNTS_KEY: the counters cover every job since that time
WORKERS_KEY = "drumscribe:workers"
STAGE_KEY = "drumscribe:stage_seconds"
KEY_RECENT_KEPT = 1000  # entries of one API key's recent list


def stage_workers_key(stage: str) -> str:
    """The live workers that run ``stage`` (a heartbeat set like ``WORKERS_KEY``)."""
    return f"{WORKERS_KEY}:{stage}"


def recent_of(key_name: str) -> str:
    """The recent list of one API key's jobs."""
    return f"drumscribe:recent:{key_name}"

# Set fields of a job if it has the owner ARGV[1] ('' = any), one of the states ARGV[2]
# (',a,b,') and is at hop ARGV[3] ('' = any; see ``hand_on``); a change of 'status' moves the job
# between counters, and the job's end records its webhook's delivery, due at once in KEYS[3]
# (``batch.webhooks.ON_END``).
_SET = """
local old = redis.call('HGET', KEYS[1], 'status')
if not old then return 0 end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
if not string.find(ARGV[2], ',' .. old .. ',', 1, true) then return 0 end
if ARGV[3] ~= '' and (redis.call('HGET', KEYS[1], 'hop') or '0') ~= ARGV[3] then return 0 end
local ended = false
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  if ARGV[i] == 'status' and ARGV[i + 1] ~= old then
    redis.call('HINCRBY', KEYS[2], old, -1)
    redis.call('HINCRBY', KEYS[2], ARGV[i + 1], 1)
    if string.find(',succeeded,failed,cancelled,', ',' .. ARGV[i + 1] .. ',', 1, true) then ended = ARGV[i + 1] end
  end
  if ARGV[i] == 'finished' then redis.call('HINCRBY', KEYS[1], 'completions', 1) end
end
""" + webhooks.ON_END + """
return 1
"""

# Record a new job ARGV[1] created at ARGV[2] with fields ARGV[4 + ARGV[3]..] and queue it if
# given the stream KEYS[4], once: a create retried after its reply was lost finds the job there
# and queues nothing twice. The message is the job's id and the ARGV[3] strings ARGV[4..], the
# trace context's fields and values (``batch.tracing.carrier``).
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local traced = tonumber(ARGV[3])
for i = 4 + traced, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], redis.call('HGET', KEYS[1], 'status'), 1)
if KEYS[4] then
  local message = {'job', ARGV[1]}
  for i = 4, 3 + traced do message[#message + 1] = ARGV[i] end
  redis.call('XADD', KEYS[4], '*', unpack(message))
end
return 1
"""

# Hand a running job from the attempt ARGV[1] (its owner) on to the next stage's stream KEYS[4]:
# queued again at hop ARGV[4], with a message of its id, the hop and the trace fields ARGV[6..];
# the entry ARGV[3] it came on is acknowledged and deleted from KEYS[3] (group ARGV[2]) in the
# same step, so the job is on exactly one stream whatever crashes. The hop's attempts start at
# the job's attempts so far ('hop_start'). 0 when the attempt no longer owns the job.
_HAND_ON = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' or redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'status', 'queued', 'stage', 'queued', 'progress', 0, 'owner', '', 'hop', ARGV[4],
           'hop_start', redis.call('HGET', KEYS[1], 'attempts'), 'updated', ARGV[5])
redis.call('HINCRBY', KEYS[2], 'running', -1)
redis.call('HINCRBY', KEYS[2], 'queued', 1)
local message = {'job', redis.call('HGET', KEYS[1], 'id'), 'hop', ARGV[4]}
for i = 6, #ARGV do message[#message + 1] = ARGV[i] end
redis.call('XADD', KEYS[4], '*', unpack(message))
redis.call('XACK', KEYS[3], ARGV[2], ARGV[3])
redis.call('XDEL', KEYS[3], ARGV[3])
return 1
"""

# Delete job ARGV[1]; with a time ARGV[2], only if it is finished and unchanged since then.
# 1: deleted; 0: no such job (its stale entry in the recent list is dropped); -1: kept.
_DELETE = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  redis.call('ZREM', KEYS[3], ARGV[1])
  return 0
end
if ARGV[2] ~= '' then
  if status ~= 'succeeded' and status ~= 'failed' and status ~= 'cancelled' then return -1 end
  if tonumber(redis.call('HGET', KEYS[1], 'updated')) >= tonumber(ARGV[2]) then return -1 end
end
redis.call('HINCRBY', KEYS[2], status, -1)
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""

# Heartbeats on the server's clock, so workers on machines with skewed clocks compare fairly.
_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1000000 "
_BEAT = _NOW + """
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return 1
"""
_LIVE = _NOW + "return redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[1]), '+inf')"


class JobNotFound(KeyError):
    pass


@dataclass(frozen=True)
class Delivery:
    """One entry of a stage's stream handed to a worker: which job, which attempt at it, and the
    stage it starts at (``hop``: how often the job changed hands before)."""

    entry_id: str
    job_id: str
    attempt: int
    owner: str
    trace: dict[str, str] = field(default_factory=dict)  # the W3C trace context the message carried
    stage: str = STAGES[0]
    hop: int = 0
    stream: str = ""  # the stage's stream; '' for the first stage's


class JobStore:
    """Create, read, update, queue and claim jobs. Safe to share between threads."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.settings = settings
        self._create = client.register_script(_CREATE)
        self._set = client.register_script(_SET)
        self._delete = client.register_script(_DELETE)
        self._hand_on = client.register_script(_HAND_ON)
        self._beat = client.register_script(_BEAT)
        self._live = client.register_script(_LIVE)

    def ensure_queue(self) -> None:
        """Create every stage's stream and its consumer group unless they exist (at a worker's start,
        and when Redis lost its data); entries already on a stream are read from the start."""
        for stage in STAGES:
            try:
                self.redis.xgroup_create(self.stream_of(stage), self.settings.group_name, id="0", mkstream=True)
            except redis.ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise

    def stream_of(self, stage: str) -> str:
        """The stream of jobs waiting for ``stage``: new jobs wait on the first one, ``stream_name``."""
        return self.settings.stream_name if stage == STAGES[0] else f"{self.settings.stream_name}:{stage}"

    def _update(self, job_id: str, owner: str, states: str, *fields, hop: int | None = None) -> bool:
        """Set ``fields`` (name, value, ...) if the job has ``owner`` ('' = any), is in ``states``
        and, with ``hop``, is at that hop."""
        args = [owner, states, "" if hop is None else str(hop), *fields]
        return bool(self._set(keys=[self.key(job_id), COUNTS_KEY, webhooks.DUE_KEY], args=args))

    @staticmethod
    def key(job_id: str) -> str:
        return f"drumscribe:job:{job_id}"

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def create(self, source: dict, options: dict, job_id: str | None = None, key_name: str = "") -> str:
        """Record a new queued job of the API key ``key_name`` ('' without keys) and put it on the
        stream; returns its id."""
        job_id = job_id or self.new_id()
        self._record(job_id, source, options, "queued", "", key_name, queue=True)
        return job_id

    def create_failed(self, source: dict, options: dict, job_id: str, error: str, key_name: str = "") -> None:
        """Record a job that failed before it could be queued (a live session whose score could not
        be queued), so its folder is kept and expires like any failed job's; nothing if it exists."""
        self._record(job_id, source, options, "failed", error, key_name, queue=False)

    def _record(self, job_id: str, source: dict, options: dict, status: str, error: str, key_name: str,
                queue: bool) -> None:
        now = time.time()
        record = {
            "id": job_id, "status": status, "stage": status, "progress": 0.0, "error": error,
            "created": now, "updated": now, "attempts": 0, "owner": "", KEY_FIELD: key_name,
            "source": json.dumps(source), "options": json.dumps(options),
        }
        fields = [item for pair in record.items() for item in pair]
        keys = [self.key(job_id), RECENT_KEY, COUNTS_KEY] + ([self.settings.stream_name] if queue else [])
        with self._queue_span(job_id) if queue else contextlib.nullcontext():
            carrier = tracing.carrier() if queue else {}
            context = [item for pair in carrier.items() for item in pair]
            kept = ["trace", json.dumps(carrier)] if carrier else []  # for the job's webhook (batch.webhooks)
            self._create(keys=keys, args=[job_id, now, len(context), *context, *fields, *kept])
        if key_name:  # the key's own recent list: the newest KEY_RECENT_KEPT (deleted jobs drop out as read)
            pipe = self.redis.pipeline()
            pipe.zadd(recent_of(key_name), {job_id: now})
            pipe.zremrangebyrank(recent_of(key_name), 0, -KEY_RECENT_KEPT - 1)
            pipe.execute()

    def _queue_span(self, job_id: str):
        """The span of queueing a job: the parent of the worker's span, through the message."""
        return tracing.tracer.start_as_current_span(
            "queue", kind=tracing.trace.SpanKind.PRODUCER,
            attributes={"messaging.system": "redis", "messaging.destination.name": self.settings.stream_name,
                        "drumscribe.job_id": job_id})

    def get(self, job_id: str) -> dict:
        record = self.redis.hgetall(self.key(job_id))
        if not record:
            raise JobNotFound(job_id)
        return record

    def public(self, job_id: str, key_name: str | None = None) -> dict:
        """The job as the API shows it; with ``key_name``, ``JobNotFound`` unless it is that key's job."""
        record = self.get(job_id)
        if key_name is not None and record.get(KEY_FIELD, "") != key_name:
            raise JobNotFound(job_id)
        options = json.loads(record.get("options") or "{}")
        return {
            "id": job_id, "status": record["status"], "stage": record["stage"],
            "progress": round(float(record["progress"]), 3), "error": record["error"] or None,
            "title": options.get("title"), "created": float(record["created"]),
            "webhooks": webhooks.summaries(self.redis, record.get("webhook")),
        }

    def recent(self, limit: int = 20, key_name: str | None = None) -> list[dict]:
        """The newest jobs; with ``key_name``, that key's only."""
        listing = RECENT_KEY if key_name is None else recent_of(key_name)
        jobs = []
        for job_id in self.redis.zrevrange(listing, 0, limit - 1):
            try:
                jobs.append(self.public(job_id, key_name))
            except JobNotFound:
                self.redis.zrem(listing, job_id)
        return jobs

    def progress(self, delivery: Delivery, stage: str, progress: float) -> bool:
        """Record progress; False when the attempt no longer owns the job (cancelled or reclaimed)."""
        return self._update(delivery.job_id, delivery.owner, ",running,",
                            "stage", stage, "progress", progress, "updated", time.time())

    def finish(self, delivery: Delivery, status: str, error: str = "") -> bool:
        """End a running attempt as succeeded or failed; False if it was no longer the owner."""
        fields = ["status", status, "stage", "done" if status == "succeeded" else status,
                  "error", error, "updated", time.time(), "finished", time.time()]
        if status == "succeeded":
            fields += ["progress", 1.0]
        span = tracing.trace.get_current_span()  # the worker's span of the job
        span.set_attribute("drumscribe.status", status)
        if error:
            tracing.fail(span, error)
        return self._update(delivery.job_id, delivery.owner, ",running,", *fields)

    def cancel(self, job_id: str) -> dict:
        """Cancel a queued or running job; a running worker notices at its next progress report."""
        self._update(job_id, "", OPEN, "status", "cancelled", "stage", "cancelled", "updated", time.time())
        return self.public(job_id)

    def link_session(self, session_id: str, job_id: str) -> None:
        """Remember which job holds a live session's recording and score, for as long as the job
        may be kept (a link to a job that expired answers 404 like any unknown session)."""
        keep = self.settings.retention_hours * 3600 + 86400 if self.settings.retention_hours > 0 else None
        self.redis.set(f"drumscribe:session:{session_id}", job_id, ex=int(keep) if keep else None)

    def job_of_session(self, session_id: str) -> str:
        job_id = self.redis.get(f"drumscribe:session:{session_id}")
        if job_id is None:
            raise JobNotFound(session_id)
        return job_id

    def delete(self, job_id: str) -> None:
        if self._delete(keys=[self.key(job_id), COUNTS_KEY, RECENT_KEY], args=[job_id, ""]) == 0:
            raise JobNotFound(job_id)

    def expire(self, job_id: str, before: float) -> bool:
        """Delete the job if it finished (or was cancelled) and has not changed since ``before``;
        a stale entry of the recent list is dropped too. True when the job's files may go."""
        return self._delete(keys=[self.key(job_id), COUNTS_KEY, RECENT_KEY], args=[job_id, before]) >= 0

    def created_before(self, when: float) -> list[str]:
        """Ids of jobs created before ``when``, oldest first: the only ones that may have expired."""
        return self.redis.zrangebyscore(RECENT_KEY, "-inf", f"({when}")

    def exists(self, job_id: str) -> bool:
        return bool(self.redis.exists(self.key(job_id)))

    # --- the queue, as workers see it -------------------------------------------------

    def claim(self, consumer: str, block_ms: int = 1000, stages: Collection[str] = STAGES) -> Delivery | None:
        """The next job for ``consumer`` at one of ``stages``: an abandoned entry first, else a new
        one (waits up to ``block_ms``). Later stages come first, so jobs under way finish first."""
        s = self.settings
        idle_ms = int(s.visibility_timeout * 1000)
        streams = {self.stream_of(stage): stage for stage in reversed(ordered(stages))}
        entries, stream = [], ""
        for stream in streams:
            entries = self.redis.xautoclaim(stream, s.group_name, consumer, min_idle_time=idle_ms, count=1)[1]
            if entries:
                break
        else:
            for stream in streams:  # one at a time: a read of several hands over an entry of each
                if entries := self._read(consumer, {stream: ">"}, None).get(stream, []):
                    break
            else:  # all empty: wait on every stream at once; an entry of another stream that came
                # in the same moment is released at once for the next claim (``XCLAIM ... IDLE``)
                reply = self._read(consumer, dict.fromkeys(streams, ">"), block_ms)
                stream = next((name for name in streams if reply.get(name)), "")
                entries = reply.get(stream, [])
                for other, extra in reply.items():
                    if other != stream and extra:
                        self.redis.xclaim(other, s.group_name, consumer, min_idle_time=0, idle=idle_ms,
                                          message_ids=[entry_id for entry_id, _ in extra], justid=True)
        for entry_id, fields in entries:
            if not fields:  # the entry was trimmed away while pending
                self.ack(entry_id, stream)
                continue
            trace = {k: v for k, v in fields.items() if k not in ("job", "hop")}
            return self._start(stream, streams[stream], entry_id, fields, consumer, trace)
        return None

    def _read(self, consumer: str, streams: dict[str, str], block_ms: int | None) -> dict[str, list]:
        """At most one new entry of each of ``streams`` for ``consumer``, by stream."""
        reply = self.redis.xreadgroup(self.settings.group_name, consumer, streams, count=1, block=block_ms) or []
        return dict(reply.items() if isinstance(reply, dict) else reply)  # RESP3 answers a map, RESP2 pairs

    def _start(self, stream: str, stage: str, entry_id: str, fields: dict[str, str], consumer: str,
               trace: dict[str, str]) -> Delivery | None:
        """Mark the job running under a new attempt, or settle entries that need no work."""
        job_id, hop = fields["job"], int(fields.get("hop", 0))
        record = self.redis.hgetall(self.key(job_id))
        if not record or record["status"] in FINAL_STATES or int(record.get("hop", 0)) != hop:
            self.ack(entry_id, stream)  # ended, or handed on since (a stale entry of an earlier hop)
            return None
        attempt = int(record["attempts"]) + 1
        if attempt - int(record.get("hop_start", 0)) > self.settings.max_attempts:
            abandoned = attempt - 1 - int(record.get("hop_start", 0))
            self._update(job_id, "", OPEN, "status", "failed", "stage", "failed", "updated", time.time(), "owner", "",
                         "error", f"the job was abandoned by {abandoned} workers (it may crash them); giving up",
                         hop=hop)
            self.ack(entry_id, stream)
            return None
        owner = f"{consumer}/{attempt}"
        if not self._update(job_id, "", OPEN, "status", "running", "stage", "starting", "progress", 0.0,
                            "attempts", attempt, "owner", owner, "updated", time.time(), hop=hop):
            self.ack(entry_id, stream)  # cancelled, deleted or handed on since it was read
            return None
        return Delivery(entry_id, job_id, attempt, owner, trace, stage, hop, stream)

    def hand_on(self, delivery: Delivery, stage: str) -> bool:
        """Queue the job for ``stage`` on that stage's stream, with the trace context its message
        carried, and settle its entry, if ``delivery`` still owns it; False if not (cancelled, or
        reclaimed by another worker)."""
        fields = [item for pair in delivery.trace.items() for item in pair]
        keys = [self.key(delivery.job_id), COUNTS_KEY, delivery.stream or self.stream_of(delivery.stage),
                self.stream_of(stage)]
        args = [delivery.owner, self.settings.group_name, delivery.entry_id, delivery.hop + 1, time.time(), *fields]
        return bool(self._hand_on(keys=keys, args=args))

    def keep_alive(self, delivery: Delivery, consumer: str) -> None:
        """Reset the entry's idle time so a live worker's long job is not reclaimed."""
        s = self.settings
        self.redis.xclaim(delivery.stream or s.stream_name, s.group_name, consumer, min_idle_time=0,
                          message_ids=[delivery.entry_id], justid=True)

    def ack(self, entry_id: str, stream: str = "") -> None:
        """Settle an entry of ``stream`` ('': the first stage's)."""
        s = self.settings
        stream = stream or s.stream_name
        pipe = self.redis.pipeline()
        pipe.xack(stream, s.group_name, entry_id)
        pipe.xdel(stream, entry_id)
        pipe.execute()

    # --- what /health and /metrics read ----------------------------------------------

    def heartbeat(self, consumer: str, stages: Collection[str] = STAGES) -> None:
        """``consumer`` has just read the queue (or holds a job) for ``stages``; beats older than the
        TTL are dropped. One set of all workers, and one per stage (what ``/health`` checks)."""
        pipe = self.redis.pipeline(transaction=False)
        for key in (WORKERS_KEY, *(stage_workers_key(stage) for stage in stages)):
            self._beat(keys=[key], args=[consumer, self.settings.heartbeat_ttl], client=pipe)
        pipe.execute()

    def forget_worker(self, consumer: str) -> None:
        """A worker that stops cleanly stops counting at once."""
        pipe = self.redis.pipeline(transaction=False)
        for key in (WORKERS_KEY, *(stage_workers_key(stage) for stage in STAGES)):
            pipe.zrem(key, consumer)
        pipe.execute()

    def live_workers(self) -> list[str]:
        """Workers that read the queue within the last ``heartbeat_ttl`` seconds."""
        return self._live(keys=[WORKERS_KEY], args=[self.settings.heartbeat_ttl])

    def live_workers_by_stage(self) -> dict[str, int]:
        """How many live workers run each stage: a stage with none stops every job that reaches it."""
        pipe = self.redis.pipeline(transaction=False)
        for stage in STAGES:
            self._live(keys=[stage_workers_key(stage)], args=[self.settings.heartbeat_ttl], client=pipe)
        return {stage: len(live) for stage, live in zip(STAGES, pipe.execute())}

    def queue_depth(self) -> tuple[int, int]:
        """(entries waiting for a worker, entries a worker holds) over every stage's stream;
        acknowledged entries are deleted. Without a consumer group (Redis lost its data, no worker
        recreated it yet) every entry waits."""
        waiting = held = 0
        for stage in STAGES:
            stream = self.stream_of(stage)
            length = self.redis.xlen(stream)
            try:
                pending = int(self.redis.xpending(stream, self.settings.group_name)["pending"]) if length else 0
            except redis.ResponseError as error:
                if not is_nogroup(error):
                    raise
                pending = 0
            waiting, held = waiting + length - pending, held + pending
        return waiting, held

    def count_by_state(self) -> dict[str, int]:
        """Jobs held in Redis by state, from the counters every state change keeps."""
        raw = self.redis.hgetall(COUNTS_KEY)
        return {state: int(raw.get(state, 0)) for state in STATES}

    def recount(self) -> bool:
        """Rebuild the counters from the jobs themselves if they do not cover every job (first start
        after an upgrade, or Redis lost them); False when they already did. Retried if any job
        changes state meanwhile, since each change touches the counters."""
        reader = self.redis.pipeline(transaction=False)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(COUNTS_KEY)
                    if pipe.hexists(COUNTS_KEY, COUNTED_SINCE):
                        return False
                    for job_id in self.redis.zrange(RECENT_KEY, 0, -1):
                        reader.hget(self.key(job_id), "status")
                    counts = dict.fromkeys(STATES, 0)
                    for status in reader.execute():
                        if status in counts:
                            counts[status] += 1
                    pipe.multi()
                    pipe.delete(COUNTS_KEY)
                    pipe.hset(COUNTS_KEY, mapping={**counts, COUNTED_SINCE: time.time()})
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue

    def record_stage(self, stage: str, seconds: float) -> None:
        pipe = self.redis.pipeline()
        pipe.hincrbyfloat(STAGE_KEY, f"{stage}:sum", seconds)
        pipe.hincrby(STAGE_KEY, f"{stage}:count", 1)
        pipe.execute()

    def stage_totals(self) -> dict[str, tuple[float, int]]:
        raw = self.redis.hgetall(STAGE_KEY)
        stages = {name.rsplit(":", 1)[0] for name in raw}
        return {s: (float(raw.get(f"{s}:sum", 0)), int(raw.get(f"{s}:count", 0))) for s in sorted(stages)}
