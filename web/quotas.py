"""Limits kept in Redis, so every API replica counts the same: per API key, concurrent jobs and
live sessions; per client address, a token bucket for the work requests of the anonymous mode.

No count can be left behind by a process that died:

- A key's open jobs are a sorted set of job ids, recomputed from the jobs' own states each time
  one is admitted: a job that succeeded, failed or was cancelled (by whichever worker, API or
  sweep) frees its slot without anyone releasing it, and so does a slot whose job was never
  created (an API that died mid-submission) once it is ``JOB_CREATE_GRACE`` seconds old.
- A key's live sessions are leases that expire ``lease_seconds`` after their last renewal; the
  process holding them renews them every third of that, so a crashed API's sessions free
  their slots within ``lease_seconds``.

Every figure is taken on the Redis server's clock.
"""
from __future__ import annotations

import asyncio
import logging
import math
import uuid
from dataclasses import dataclass, field

import redis
from starlette.concurrency import run_in_threadpool

from batch.jobs import FINAL_STATES
from batch.keys import ApiKey

log = logging.getLogger("drumscribe.quotas")

JOB_CREATE_GRACE = 60.0  # seconds a slot may wait for its job record (taken just before the job is created)

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1000000 "

# KEYS[1]: a key's open jobs (job id -> when its slot was taken). Drop the ARGV[4] slots listed
# next (jobs that ended) and, of the ones listed after them, those older than ARGV[3] s (jobs
# never created);
# then take a slot for job ARGV[1] ('' only counts) if fewer than ARGV[2] are held. The job
# records are read by the caller: a script may touch only its declared keys (Redis Cluster).
# Returns the slots held before, or -1 when full.
_TAKE_JOB = _NOW + """
local ended = tonumber(ARGV[4])
for i = 5, 4 + ended do redis.call('ZREM', KEYS[1], ARGV[i]) end
for i = 5 + ended, #ARGV do
  local taken = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if taken and tonumber(taken) < now - tonumber(ARGV[3]) then redis.call('ZREM', KEYS[1], ARGV[i]) end
end
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[2]) then return -1 end
if ARGV[1] ~= '' then redis.call('ZADD', KEYS[1], now, ARGV[1]) end
return held
"""

# KEYS[1]: a key's live sessions (lease id -> expiry). Drop expired leases, then lease ARGV[1]
# for ARGV[2] s if fewer than ARGV[3] are held (ARGV[3] = -1: renew it whatever the count).
_LEASE = _NOW + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local limit = tonumber(ARGV[3])
if limit >= 0 and redis.call('ZCARD', KEYS[1]) >= limit then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 1)
return 1
"""

# KEYS[1]: an address's bucket. ARGV[1] tokens at most, refilled at ARGV[2] per second; take one.
# Returns 0, or the milliseconds until a token is there.
_BUCKET = _NOW + """
local burst, rate = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens < 1 then wait = math.ceil((1 - tokens) / rate * 1000) else tokens = tokens - 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return wait
"""


def jobs_of(name: str) -> str:
    return f"drumscribe:open_jobs:{name}"


def sessions_of(name: str) -> str:
    return f"drumscribe:live_sessions:{name}"


class JobSlots:
    """A key's concurrent jobs (queued or running), at most its ``max_jobs``."""

    def __init__(self, client: redis.Redis, grace: float = JOB_CREATE_GRACE, job_key_prefix: str = "drumscribe:job:") -> None:
        self.redis, self.grace, self.prefix = client, grace, job_key_prefix
        self._take = client.register_script(_TAKE_JOB)

    def has_room(self, key: ApiKey) -> bool:
        """Whether a job of ``key`` would be admitted now (checked again when it is taken)."""
        return key.max_jobs is None or self._call(key, "") >= 0

    def take(self, key: ApiKey, job_id: str) -> bool:
        """A slot for ``job_id``, to be created at once; False when the key holds its limit."""
        return key.max_jobs is None or self._call(key, job_id) >= 0

    def _call(self, key: ApiKey, job_id: str) -> int:
        slots = jobs_of(key.name)
        held = self.redis.zrange(slots, 0, -1)
        pipe = self.redis.pipeline(transaction=False)
        for held_id in held:
            pipe.hget(self.prefix + held_id, "status")
        statuses = pipe.execute()
        ended = [i for i, status in zip(held, statuses) if status in FINAL_STATES]
        missing = [i for i, status in zip(held, statuses) if status is None]
        return int(self._take(keys=[slots], args=[job_id, key.max_jobs, self.grace, len(ended), *ended, *missing]))


@dataclass(eq=False)
class Lease:
    """A live session's slot: ``owner`` is its key's name ('' with keys off). ``release`` never raises."""

    owner: str = ""
    leases: "SessionLeases | None" = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    async def release(self) -> None:
        if self.leases is not None:
            await self.leases.release(self)


class SessionLeases:
    """A key's concurrent live sessions, at most its ``max_sessions``, held by leases this process renews."""

    def __init__(self, client: redis.Redis, seconds: float) -> None:
        self.redis, self.seconds = client, seconds
        self._lease = client.register_script(_LEASE)
        self.held: set[Lease] = set()

    async def acquire(self, key: ApiKey) -> Lease | None:
        """A lease for a new session of ``key``; None when it holds its limit. Redis errors propagate."""
        if key.max_sessions is None:
            return Lease(key.name)
        lease = Lease(key.name, self)
        if not await run_in_threadpool(self._call, lease, key.max_sessions):
            return None
        self.held.add(lease)
        return lease

    async def release(self, lease: Lease) -> None:
        if lease not in self.held:
            return
        self.held.discard(lease)
        try:
            await run_in_threadpool(self.redis.zrem, sessions_of(lease.owner), lease.id)
        except redis.RedisError as error:  # the lease expires by itself
            log.warning("a live session's lease of key %s stays until it expires: %s", lease.owner, type(error).__name__)

    async def renew_forever(self) -> None:
        """Renew every lease held here each third of its life, until cancelled (the app stops)."""
        while True:
            await asyncio.sleep(self.seconds / 3)
            for lease in list(self.held):
                try:
                    await run_in_threadpool(self._call, lease, -1)
                except redis.RedisError as error:
                    log.warning("cannot renew live session leases: %s", type(error).__name__)
                    break

    def _call(self, lease: Lease, limit: int) -> bool:
        return bool(self._lease(keys=[sessions_of(lease.owner)], args=[lease.id, self.seconds, limit]))


class AddressBuckets:
    """A token bucket per client address: ``burst`` work requests at once, ``per_minute`` after that."""

    def __init__(self, client: redis.Redis, burst: int, per_minute: float) -> None:
        self.redis, self.burst, self.per_second = client, burst, per_minute / 60
        self._take = client.register_script(_BUCKET)

    @property
    def enabled(self) -> bool:
        return self.burst > 0 and self.per_second > 0

    def wait(self, address: str) -> float:
        """0 when ``address`` may go ahead (a token is taken), else the seconds until it may."""
        if not self.enabled:
            return 0.0
        waited = int(self._take(keys=[f"drumscribe:bucket:{address}"], args=[self.burst, self.per_second]))
        return waited / 1000


def retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}
