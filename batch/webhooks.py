"""Webhooks: when a job with a ``webhook_url`` ends, POST a signed JSON event to it, retried until delivered.

The delivery is recorded in the same Redis script that ends the job (``ON_END``, part of
``batch.jobs``' state change), so a job that ends always has its delivery, whichever process
ends it and whatever crashes next. Each delivery is a hash ``drumscribe:webhook:<id>``; its id
waits in the sorted set ``DUE_KEY`` scored by its next attempt time (Redis' clock), so a restart
loses none. Every worker process runs a ``Dispatcher`` that claims due deliveries (a claim
leases them for ``LEASE_SECONDS``: a sender that dies gives them back) and sends them.

The body, ``{"event": "job.succeeded" | "job.failed" | "job.cancelled", "job": <the job as
GET /jobs/{id} shows it, without its webhooks>}``, is fixed at the first attempt and sent
byte for byte on every retry, with ``X-DrumScribe-Signature: sha256=<hex HMAC-SHA256 of the body>``
under the job's API key's ``webhook_secret`` (without keys: the server's secret, ``server_secret``),
``X-DrumScribe-Event`` and ``X-DrumScribe-Delivery``. Any answer but 2xx, or none, is retried
with exponential backoff until ``webhook_retry_seconds`` after the job ended. Each attempt is a
``webhook`` span in the job's trace (the context its submission kept in the job's ``trace`` field).

The URL rules of link intake apply (http(s), length, no credentials). At delivery the host is
resolved and every address must be public (``batch.links.is_public``); the request then goes
to an address so checked, never to a fresh lookup, and redirects are not followed.
``DRUMSCRIBE_WEBHOOK_ALLOW_PRIVATE=1`` lifts the address rule for local development and tests.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import secrets
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import certifi
import redis
import urllib3

from batch import keys, tracing
from batch.config import Settings
from batch.links import DEFAULT_PORTS, LinkRefused, check_addresses, is_public, parse
from batch.retry import delays

if TYPE_CHECKING:
    from batch.jobs import JobStore

log = logging.getLogger("drumscribe.webhooks")

DUE_KEY = "drumscribe:webhooks:due"
SECRET_KEY = "drumscribe:webhook_secret"  # the server's secret when jobs have no API key
PREFIX = "drumscribe:webhook:"
LEASE_SECONDS = 120          # a claimed delivery is due again after this, should its sender die
MAX_BACKOFF_SECONDS = 3600.0
SENDERS = 4                  # deliveries one dispatcher sends at once
POLL_SECONDS = 0.5
CONNECT_TIMEOUT, READ_TIMEOUT = 5.0, 10.0
USER_AGENT = "DrumScribe-Webhook/1"

# A Lua fragment of the job state change (``batch.jobs._SET``): when the job KEYS[1] has just
# ended with status ``ended``, record its delivery and make it due now in KEYS[3]; the id is
# derived from the job and its end, so it is the same however often the script's reply is lost.
ON_END = """
if ended then
  local options = cjson.decode(redis.call('HGET', KEYS[1], 'options') or '{}')
  local url = options['webhook_url']
  if type(url) == 'string' and url ~= '' then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
    local id = string.sub(redis.sha1hex(KEYS[1] .. ':' .. ended), 1, 32)
    redis.call('HSET', '""" + PREFIX + """' .. id, 'id', id, 'job', redis.call('HGET', KEYS[1], 'id'),
               'event', 'job.' .. ended, 'url', url, 'key_name', redis.call('HGET', KEYS[1], '""" + keys.KEY_FIELD + """') or '',
               'state', 'pending', 'attempts', 0, 'created', now, 'next_attempt_at', now,
               'trace', redis.call('HGET', KEYS[1], 'trace') or '')
    redis.call('ZADD', KEYS[3], now, id)
    redis.call('HSET', KEYS[1], 'webhook', id)
  end
end
"""

# Claim up to ARGV[2] deliveries due by Redis' clock, leasing each for ARGV[1] seconds.
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), id) end
return due
"""

# Record the outcome of an attempt at delivery ARGV[1]: ARGV[2] 'delivered', 'retry' (in ARGV[5]
# seconds, unless that is past ARGV[6] seconds after it was created) or 'failed'; the status code
# ARGV[3] ('' for none) and error ARGV[4]. A settled record expires after ARGV[7] seconds (0: kept).
_SETTLE = """
local key = '""" + PREFIX + """' .. ARGV[1]
if redis.call('EXISTS', key) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('HINCRBY', key, 'attempts', 1)
redis.call('HSET', key, 'last_status_code', ARGV[3], 'last_error', ARGV[4], 'last_attempt_at', now)
local outcome = ARGV[2]
local next_at = now + tonumber(ARGV[5])
if outcome == 'retry' and next_at > tonumber(redis.call('HGET', key, 'created')) + tonumber(ARGV[6]) then
  outcome = 'failed'
end
if outcome == 'retry' then
  redis.call('HSET', key, 'next_attempt_at', next_at)
  redis.call('ZADD', KEYS[1], next_at, ARGV[1])
  return 1
end
redis.call('HSET', key, 'state', outcome, 'next_attempt_at', '')
if outcome == 'delivered' then redis.call('HSET', key, 'delivered_at', now) end
redis.call('ZREM', KEYS[1], ARGV[1])
if tonumber(ARGV[7]) > 0 then redis.call('EXPIRE', key, math.floor(tonumber(ARGV[7]))) end
return 1
"""


class Refused(Exception):
    """A delivery that may not be sent (a private address, a malformed URL): not retried."""


def check_url(url: str, allow_private: bool) -> str:
    """The webhook URL in normal form if it may be submitted, else ``LinkRefused``: http(s), at most
    2,048 characters, no credentials; unless ``allow_private``, no name or address that is private,
    loopback or link-local now (checked again at every delivery). Any port is allowed."""
    link = parse(url)
    if not allow_private:
        check_addresses(link.host, link.port or DEFAULT_PORTS[link.scheme], fail_closed=False)
    return link.url


def signature(body: bytes, secret: str) -> str:
    """The ``X-DrumScribe-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def server_secret(client: redis.Redis, settings: Settings) -> str:
    """The secret signing jobs without an API key: ``DRUMSCRIBE_WEBHOOK_SECRET``, else one made on
    first use and kept in Redis (``drumscribe webhooks secret`` prints it)."""
    if settings.webhook_secret:
        return settings.webhook_secret
    client.set(SECRET_KEY, secrets.token_urlsafe(32), nx=True)
    return client.get(SECRET_KEY)


def summaries(client: redis.Redis, delivery_id: str | None) -> list[dict]:
    """The job's deliveries as its status shows them (a job ends once: at most one)."""
    record = client.hgetall(PREFIX + delivery_id) if delivery_id else {}
    if not record:
        return []
    code = record.get("last_status_code")
    delivered = record.get("delivered_at")
    return [{"id": record["id"], "event": record["event"], "status": record["state"],
             "attempts": int(record["attempts"]), "last_status_code": int(code) if code else None,
             "last_error": record.get("last_error") or None,
             "delivered_at": float(delivered) if delivered else None,
             "next_attempt_at": float(record["next_attempt_at"]) if record.get("next_attempt_at") else None}]


def post(url: str, body: bytes, headers: dict[str, str], allow_private: bool) -> int:
    """POST ``body`` to ``url`` at an address checked now; the response's status code.
    ``Refused`` for an address or URL that is not allowed; ``OSError`` or urllib3's errors when
    it cannot be reached."""
    try:
        link = parse(url)
    except LinkRefused as error:
        raise Refused(str(error)) from None
    port = link.port or DEFAULT_PORTS[link.scheme]
    addresses = [info[4][0] for info in socket.getaddrinfo(link.host, port, type=socket.SOCK_STREAM)]
    if not allow_private and not all(is_public(address) for address in addresses):
        raise Refused(f"refused: {link.host} is a local or private address")
    address = addresses[0].split("%")[0]
    timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT)
    if link.scheme == "https":  # the certificate is checked against the name, not the address
        pool = urllib3.HTTPSConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1,
                                           server_hostname=link.host, assert_hostname=link.host,
                                           cert_reqs="CERT_REQUIRED", ca_certs=certifi.where())
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1)
    parts = urlsplit(link.url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    with pool:
        response = pool.urlopen("POST", target, body=body, headers={**headers, "Host": parts.netloc},
                                redirect=False, retries=False, preload_content=False)
        response.close()  # the answer's body is not read: its status is the whole answer
        return response.status


class Dispatcher:
    """Sends due deliveries until ``stop`` is set; one per worker process (or in-process worker)."""

    def __init__(self, store: JobStore, settings: Settings, stop: threading.Event) -> None:
        self.store, self.redis, self.settings, self.stop = store, store.redis, settings, stop
        self._claim = self.redis.register_script(_CLAIM)
        self._settle = self.redis.register_script(_SETTLE)

    def run(self) -> None:
        waits = delays()
        with ThreadPoolExecutor(SENDERS, thread_name_prefix="webhook") as senders:
            while not self.stop.is_set():
                try:
                    due = self._claim(keys=[DUE_KEY], args=[LEASE_SECONDS, SENDERS * 4])
                    list(senders.map(self.deliver, due))
                    waits = delays()
                except redis.RedisError as error:
                    log.warning("webhooks: %s: %s", type(error).__name__, error)
                    self.stop.wait(next(waits))
                    continue
                except Exception:  # a bug: keep sending the others (what was claimed is due again after its lease)
                    log.exception("webhooks: a delivery failed unexpectedly")
                    self.stop.wait(next(waits))
                    continue
                if not due:
                    self.stop.wait(POLL_SECONDS)

    def deliver(self, delivery_id: str) -> None:
        """One attempt at a claimed delivery, and its outcome recorded; a span in the job's trace."""
        record = self.redis.hgetall(PREFIX + delivery_id)
        if not record:
            self._record(delivery_id, "failed", error="the delivery's record is gone")
            return
        attempts = int(record["attempts"])
        with tracing.tracer.start_as_current_span(
                "webhook", context=tracing.extract(json.loads(record.get("trace") or "{}")),
                kind=tracing.trace.SpanKind.CLIENT,
                attributes={"drumscribe.job_id": record["job"], "drumscribe.delivery_id": delivery_id,
                            "drumscribe.event": record["event"], "drumscribe.attempt": attempts + 1}) as span:
            outcome, status, error = self._attempt(record)
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            if error:
                tracing.fail(span, error)
        self._record(delivery_id, outcome, status, error, attempts)

    def _attempt(self, record: dict) -> tuple[str, int | None, str]:
        """Send the delivery once: (``delivered``, ``retry`` or ``failed``, the status code, the error)."""
        body = self._body(record)
        secret = self._secret(record.get("key_name", ""))
        if secret is None:
            return "failed", None, "the job's API key was revoked"
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   "X-DrumScribe-Event": record["event"], "X-DrumScribe-Delivery": record["id"],
                   "X-DrumScribe-Signature": signature(body, secret)}
        try:
            status = post(record["url"], body, headers, self.settings.webhook_allow_private)
        except Refused as error:
            log.warning("webhook %s of job %s refused: %s", record["id"], record["job"], error)
            return "failed", None, str(error)
        except (OSError, urllib3.exceptions.HTTPError) as error:
            return "retry", None, _reason(error)
        if 200 <= status < 300:
            return "delivered", status, ""
        return "retry", status, f"answered {status}"

    def _body(self, record: dict) -> bytes:
        """The delivery's body: made at its first attempt, then the same bytes every time."""
        if record.get("body"):
            return record["body"].encode()
        try:
            job = self.store.public(record["job"])
            job.pop("webhooks", None)
        except KeyError:  # the job was deleted before its webhook went out
            job = {"id": record["job"], "status": record["event"].removeprefix("job.")}
        body = json.dumps({"event": record["event"], "job": job}, separators=(",", ":"))
        self.redis.hsetnx(PREFIX + record["id"], "body", body)
        return self.redis.hget(PREFIX + record["id"], "body").encode()

    def _secret(self, key_name: str) -> str | None:
        if key_name:
            return keys.webhook_secret(self.redis, key_name)
        return server_secret(self.redis, self.settings)

    def _record(self, delivery_id: str, outcome: str, status: int | None = None, error: str = "",
                attempts: int = 0) -> None:
        delay = min(MAX_BACKOFF_SECONDS, self.settings.webhook_first_retry_seconds * 2 ** attempts)
        delay *= random.uniform(1.0, 1.2)  # deliveries failing together do not all come back together
        keep = self.settings.retention_hours * 3600 + 86400 if self.settings.retention_hours > 0 else 0
        self._settle(keys=[DUE_KEY], args=[delivery_id, outcome, "" if status is None else status, error[:500],
                                           delay, self.settings.webhook_retry_seconds, keep])


def _reason(error: Exception) -> str:
    """Why a request got no answer, without the URL (it may carry a token)."""
    reason = getattr(error, "reason", None) or error
    return f"no answer: {type(reason).__name__}"
