"""API keys in Redis: who may use the service, each key's limits and its webhook secret.

A key is shown once, when ``drumscribe keys create`` makes it; Redis keeps only its SHA-256.
Keys are 32 random bytes (``secrets.token_urlsafe``), so a plain hash is enough: there is
nothing to guess, and no salt or slow hash is needed. The webhook secret is kept as it is:
signing a delivery needs it.

- ``drumscribe:apikeys``: a hash, key name -> the JSON record (``ApiKey``)
- ``drumscribe:apikey_hashes``: a hash, sha256 hex of a key -> its name

A job records the name of the key that submitted it in its field ``key_name`` (``KEY_FIELD``;
``owner`` is the worker attempt that holds it), '' when keys are off. ``webhook_secret(redis,
name)`` gives a delivery the secret to sign with.
"""
from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from dataclasses import asdict, dataclass

import redis

RECORDS_KEY = "drumscribe:apikeys"
HASHES_KEY = "drumscribe:apikey_hashes"
KEY_FIELD = "key_name"  # the field of a job record naming the key it belongs to
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # also part of Redis key names (limits)

# Add the record ARGV[2] under name ARGV[1] and its hash ARGV[3] unless the name is taken.
_CREATE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
return 1
"""
# Remove the key named ARGV[1] and its hash; 0 if there is none.
_REVOKE = """
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return 0 end
redis.call('HDEL', KEYS[2], cjson.decode(record)['key_hash'])
redis.call('HDEL', KEYS[1], ARGV[1])
return 1
"""


class KeyRefused(ValueError):
    """A name that is taken, unknown or not allowed (the CLI prints it)."""


@dataclass(frozen=True)
class ApiKey:
    name: str
    key_hash: str
    webhook_secret: str
    max_jobs: int | None      # concurrent jobs (queued or running); None: no limit of its own
    max_sessions: int | None  # concurrent live sessions; None: no limit of its own
    operator: bool            # may read /metrics and the details of /health
    created: float

    def listed(self) -> dict:
        """What ``keys list`` shows: no hash, no secret."""
        return {"name": self.name, "max_jobs": self.max_jobs, "max_sessions": self.max_sessions,
                "operator": self.operator, "created": self.created}


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create(client: redis.Redis, name: str, max_jobs: int | None = None, max_sessions: int | None = None,
           operator: bool = False) -> tuple[str, ApiKey]:
    """A new key and its record; the key itself is returned here and stored nowhere."""
    if not NAME.fullmatch(name):
        raise KeyRefused(f"a key name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit: {name!r}")
    for label, limit in (("max-jobs", max_jobs), ("max-sessions", max_sessions)):
        if limit is not None and limit < 0:
            raise KeyRefused(f"--{label} must be 0 or more")
    key = secrets.token_urlsafe(32)
    record = ApiKey(name, key_hash(key), secrets.token_urlsafe(32), max_jobs, max_sessions, operator, time.time())
    if not client.eval(_CREATE, 2, RECORDS_KEY, HASHES_KEY, name, json.dumps(asdict(record)), record.key_hash):
        raise KeyRefused(f"a key named {name!r} exists; revoke it first or choose another name")
    return key, record


def _parse(raw: str | None) -> ApiKey | None:
    return ApiKey(**json.loads(raw)) if raw else None


def get(client: redis.Redis, name: str) -> ApiKey | None:
    return _parse(client.hget(RECORDS_KEY, name))


def lookup(client: redis.Redis, key: str) -> ApiKey | None:
    """The record of a presented key, or None when it is unknown or revoked."""
    name = client.hget(HASHES_KEY, key_hash(key))
    return get(client, name) if name else None


def all_keys(client: redis.Redis) -> list[ApiKey]:
    return sorted((ApiKey(**json.loads(raw)) for raw in client.hvals(RECORDS_KEY)), key=lambda k: k.created)


def revoke(client: redis.Redis, name: str) -> None:
    """Remove the key at once: its next request is refused. Its jobs stay until they expire."""
    if not client.eval(_REVOKE, 2, RECORDS_KEY, HASHES_KEY, name):
        raise KeyRefused(f"no key named {name!r}")


def webhook_secret(client: redis.Redis, name: str) -> str | None:
    """The secret that signs the webhooks of the key's jobs; None for '' or a revoked key."""
    record = get(client, name) if name else None
    return record.webhook_secret if record else None
