"""Limits and policies of the HTTP edge, from environment variables with documented defaults.

Host names: a browser tricked by DNS rebinding sends the attacker's name in ``Host``, so only
names the operator expects are served. Loopback names are always allowed; ``serve`` adds the
address it binds to (unless it binds every interface); ``DRUMSCRIBE_ALLOWED_HOSTS`` adds the
rest (a public name behind a reverse proxy, ``*.example.com``, or ``*`` for any).

API keys (``DRUMSCRIBE_AUTH``): ``keys`` asks every API request for one, ``off`` serves anyone.
Unset, ``serve`` decides by the address it binds to: ``off`` on a loopback address (``make run``
stays one command), ``keys`` on any other; an app made without ``serve`` (tests) has them off.
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, replace

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
WILDCARD_BINDS = ("", "0.0.0.0", "::", "[::]")


def _names(value: str) -> tuple[str, ...]:
    return tuple(name.strip().lower().rstrip("/") for name in value.split(",") if name.strip())


@dataclass(frozen=True)
class HttpSettings:
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS  # Host names served; "*" any, "*.x.org" subdomains
    allowed_origins: tuple[str, ...] = ()            # origins, besides the app's own, that may change state
    max_json_bytes: int = 64 * 1024                  # a JSON request body, counted as it streams in
    body_idle_timeout: float = 30.0                  # seconds without a byte of an unfinished body -> 408
    min_body_rate: float = 16 * 1024                 # bytes/s a body must average once past the grace -> 408
    body_rate_grace: float = 10.0                    # seconds of waiting before the rate is judged
    header_timeout: float = 10.0                     # seconds to send a request's headers
    keep_alive_timeout: float = 5.0                  # seconds an idle keep-alive connection is held
    max_header_bytes: int = 16 * 1024                # request line and headers (h11's incomplete event)
    health_details: bool = False                     # worker names and Redis errors in /health (keys off)
    auth: str | None = None                          # "keys" or "off"; None: see serving()
    anonymous_burst: int = 120                       # work requests (jobs, live sessions) an address may
    anonymous_per_minute: float = 60.0               # make at once, and per minute after that, keys off
    live_lease_seconds: float = 30.0                 # a live session's slot outlives a crashed API this long

    @classmethod
    def from_env(cls) -> "HttpSettings":
        env = os.environ.get
        return cls(
            allowed_hosts=LOOPBACK_HOSTS + _names(env("DRUMSCRIBE_ALLOWED_HOSTS", "")),
            allowed_origins=_names(env("DRUMSCRIBE_ALLOWED_ORIGINS", "")),
            max_json_bytes=int(float(env("DRUMSCRIBE_MAX_JSON_KB", "64")) * 1024),
            body_idle_timeout=float(env("DRUMSCRIBE_BODY_TIMEOUT", "30")),
            min_body_rate=float(env("DRUMSCRIBE_MIN_BODY_RATE_KB", "16")) * 1024,
            header_timeout=float(env("DRUMSCRIBE_HEADER_TIMEOUT", "10")),
            keep_alive_timeout=float(env("DRUMSCRIBE_KEEPALIVE_SECONDS", "5")),
            health_details=env("DRUMSCRIBE_HEALTH_DETAILS", "") in ("1", "true", "yes"),
            auth=_auth(env("DRUMSCRIBE_AUTH", "")),
            anonymous_burst=int(env("DRUMSCRIBE_ANON_BURST", "120")),
            anonymous_per_minute=float(env("DRUMSCRIBE_ANON_PER_MINUTE", "60")),
            live_lease_seconds=float(env("DRUMSCRIBE_LEASE_SECONDS", "30")),
        )

    @property
    def keys_required(self) -> bool:
        return self.auth == "keys"

    def serving(self, bind_host: str) -> "HttpSettings":
        """These settings with the address ``serve`` binds to allowed as a Host name."""
        host = bind_host.strip().lower()
        settings = self if self.auth else replace(self, auth="off" if _loopback(host) else "keys")
        if host in WILDCARD_BINDS or host in settings.allowed_hosts:
            return settings
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return replace(settings, allowed_hosts=(*settings.allowed_hosts, host))


def _auth(value: str) -> str | None:
    value = value.strip().lower()
    if value not in ("", "off", "keys"):
        raise ValueError(f"DRUMSCRIBE_AUTH must be off or keys, not {value!r}")
    return value or None


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
