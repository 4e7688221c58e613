"""Riding out Redis faults in a worker: retry with capped exponential backoff until Redis answers.

A worker has nothing useful to do without Redis, so instead of raising it waits: 0.1 s, doubling
to 5 s, for as long as the outage lasts, and stops waiting only when asked to stop. A Redis that
lost its data answers NOGROUP; the caller's ``recreate`` puts the stream and group back first.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import redis

log = logging.getLogger("drumscribe.worker")
T = TypeVar("T")
FIRST_DELAY, MAX_DELAY = 0.1, 5.0
# Faults that pass: a dropped or refused connection, a timeout, a server still loading its
# data (BusyLoadingError is a ConnectionError), a replica not yet promoted after a failover.
TRANSIENT = (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError)


class Stopped(BaseException):
    """Asked to stop while Redis was unreachable. A BaseException, like ``KeyboardInterrupt``, so
    the pipeline's ``except Exception`` does not record it as the job failing."""


def delays(first: float = FIRST_DELAY, cap: float = MAX_DELAY) -> Iterator[float]:
    """first, 2*first, 4*first, ... never more than ``cap``."""
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * 2)


def is_nogroup(error: redis.RedisError) -> bool:
    return isinstance(error, redis.ResponseError) and str(error).startswith("NOGROUP")


def with_backoff(call: Callable[[], T], stop: threading.Event, recreate: Callable[[], None],
                 what: str = "redis") -> T:
    """``call()``, retried through transient Redis faults; ``Stopped`` once ``stop`` is set.

    Other errors (a wrong command, a script bug) are raised at once: retrying cannot fix them.
    """
    waits = delays()
    failed = False
    while True:
        try:
            result = call()
        except TRANSIENT as error:
            reason = f"{type(error).__name__}: {error}"
        except redis.ResponseError as error:
            if not is_nogroup(error):
                raise
            reason = "the queue is gone (Redis lost its data?); recreating it"
            try:
                recreate()
            except TRANSIENT:
                pass  # the next attempt will say what is wrong
        else:
            if failed:
                log.info("%s: Redis answers again", what)
            return result
        failed = True
        delay = next(waits)
        log.warning("%s: %s; retrying in %.1f s", what, reason, delay)
        if stop.wait(delay):
            raise Stopped(what)
