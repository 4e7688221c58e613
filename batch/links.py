"""Which links may be fetched: one normal form for every link, and the check every request makes.

A link is refused unless it is http(s), at most ``MAX_URL_CHARS`` long, without a user name or
password, on the default port (or one the operator listed as ``host:port``) and on an allowed
host. Links are normalised (scheme and host lower-cased, default port and fragment dropped)
before anything reads them, so yt-dlp sees the very URL that was checked.

At fetch time every request, the first and each redirect, goes through ``HopPolicy.check``
before a byte is sent: a YouTube link may lead only to YouTube's own hosts (``YOUTUBE_FETCH_HOSTS``,
where its pages and media live) and only to public addresses; a link to a host the operator
listed may lead only to that same host and port.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from batch.config import YOUTUBE_HOSTS

MAX_URL_CHARS = 2048
MAX_HOP_CHARS = 16384  # media URLs from YouTube carry long signed queries
DEFAULT_PORTS = {"http": 80, "https": 443}
# Where yt-dlp's YouTube extractors fetch pages, player code and media from (suffixes).
YOUTUBE_FETCH_HOSTS = ("youtube.com", "youtu.be", "youtube-nocookie.com", "googlevideo.com", "ytimg.com",
                       "youtubei.googleapis.com")


class LinkRefused(Exception):
    """A link or a request it leads to that may not be fetched; ``code`` for the API's error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Link:
    """A link in normal form; ``port`` is None for the scheme's default."""

    url: str
    scheme: str
    host: str
    port: int | None

    @property
    def youtube(self) -> bool:
        return self.host in YOUTUBE_HOSTS

    @property
    def netloc(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"


def parse(url: str, max_chars: int = MAX_URL_CHARS) -> Link:
    """``url`` in normal form, or ``LinkRefused("invalid_url")`` saying what is wrong with it."""
    if len(url) > max_chars:
        raise LinkRefused("invalid_url", f"the link is longer than {max_chars} characters")
    url = url.strip()
    # urlsplit silently drops tabs and newlines, and other parsers read a backslash as a slash
    if any(c <= " " or c in "\\\x7f" for c in url):
        raise LinkRefused("invalid_url", "the link contains spaces, control characters or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise LinkRefused("invalid_url", "that is not a valid link") from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in DEFAULT_PORTS:
        raise LinkRefused("invalid_url", "only http and https links are accepted")
    if "@" in parts.netloc:
        raise LinkRefused("invalid_url", "links with a user name or password are refused")
    if not host or not host.isascii():
        raise LinkRefused("invalid_url", "the link has no valid host")
    port = None if port == DEFAULT_PORTS[scheme] else port
    netloc = f"[{host}]" if ":" in host else host
    netloc += "" if port is None else f":{port}"
    normal = f"{scheme}://{netloc}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")
    return Link(normal, scheme, host, port)


def check_link(url: str, allowed_hosts: tuple[str, ...]) -> Link:
    """The normalised link if it may be submitted, else ``LinkRefused`` (a 400 for the API).

    Hosts the operator listed besides YouTube's (tests, intranet mirrors) may be local or
    private: listing them is the opt-in. Anything else must resolve to public addresses.
    """
    link = parse(url)
    if not _listed(link, allowed_hosts):
        if link.host in allowed_hosts:
            raise LinkRefused("host_not_allowed", f"links to {link.host} on port {link.port} are not accepted")
        raise LinkRefused("host_not_allowed", f"links to {link.host} are not accepted; use a YouTube link")
    if not link.youtube:
        return link
    check_addresses(link.host, link.port or DEFAULT_PORTS[link.scheme], fail_closed=False)
    return link


def _listed(link: Link, allowed_hosts: tuple[str, ...]) -> bool:
    return (link.port is None and link.host in allowed_hosts) or link.netloc in allowed_hosts


def is_public(address: str) -> bool:
    """Whether an IP address is one a link may reach: not private, loopback, link-local, reserved,
    multicast, unspecified or otherwise non-global (IPv4-mapped IPv6 judged as its IPv4)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved
                                 or ip.is_multicast or ip.is_unspecified)


def check_addresses(host: str, port: int, fail_closed: bool = True) -> None:
    """``LinkRefused`` unless every address ``host`` resolves to is public.

    A name that does not resolve is refused when ``fail_closed`` (at fetch time), else left to
    the download to report (at submission, where a resolver hiccup should not refuse a link).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        if fail_closed:
            raise LinkRefused("host_not_allowed", "the link's server could not be looked up") from None
        return
    if not all(is_public(info[4][0]) for info in infos):
        raise LinkRefused("host_not_allowed", f"{host} is a local or private address")


class HopPolicy:
    """Where the requests made for one link may go: ``check`` each before it is sent."""

    REFUSED = "refused: the link leads to a host that is not allowed"

    def __init__(self, link: Link) -> None:
        self.link = link

    def check(self, url: str) -> None:
        """``LinkRefused`` for a request the link may not lead to; the message names no URL."""
        try:
            hop = parse(url, MAX_HOP_CHARS)
        except LinkRefused:
            raise LinkRefused("host_not_allowed", self.REFUSED) from None
        if not self.link.youtube:
            if (hop.host, hop.port) != (self.link.host, self.link.port):
                raise LinkRefused("host_not_allowed", self.REFUSED)
            return  # the operator listed this host, local or not
        if hop.port is not None or not any(hop.host == h or hop.host.endswith("." + h) for h in YOUTUBE_FETCH_HOSTS):
            raise LinkRefused("host_not_allowed", self.REFUSED)
        try:
            check_addresses(hop.host, DEFAULT_PORTS[hop.scheme])
        except LinkRefused as error:
            raise LinkRefused("host_not_allowed", f"refused: {error}") from None
