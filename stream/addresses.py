"""The key per-address caps count under (live sessions, WebRTC offers).

One IPv6 host usually holds a whole /64 (SLAAC, privacy addresses): keyed on the exact
address, one client could take the cap again with each of its 2^64 addresses. An IPv6
address therefore counts by its /64 prefix; an IPv4 address (also one mapped into IPv6)
counts as itself.
"""
from __future__ import annotations

import ipaddress

IPV6_PREFIX = 64


def client_key(host: str) -> str:
    """``2001:db8::1`` -> ``2001:db8::/64``; ``::ffff:1.2.3.4`` -> ``1.2.3.4``; anything that is no
    IP address (a Unix socket's peer, a test client's name) stays as it is."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)
