"""The address a request really came from, for per-client limits behind load balancers
(pure logic, no I/O).

Behind a proxy every request's TCP peer is the proxy, so a per-address rate limit would
throttle all candidates together. A proxy appends the address it saw to
``X-Forwarded-For``; anyone can send that header too, so it is believed only hop by hop
from the right: starting at the TCP peer, while the hop is a trusted proxy, step to the
address it reports. The first untrusted hop is the client. With no trusted proxies
configured the header is ignored altogether.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.7:51234"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]
) -> str:
    """The client's address for a request from TCP `peer` carrying the given
    ``X-Forwarded-For`` header values (in order; each may hold a comma-separated list).

    A malformed entry in the chain stops the walk at the last trusted hop's report being
    unusable: the trusted hop itself is returned, so garbage cannot pick a fresh key."""
    peer_ip = _parse_ip(peer or "")
    if peer_ip is None:
        return peer or "?"
    if not trusted:
        return str(peer_ip)
    chain = [part for value in forwarded_for for part in value.split(",") if part.strip()]
    current = peer_ip
    for hop in reversed(chain):
        if not any(current in network for network in trusted):
            return str(current)
        reported = _parse_ip(hop)
        if reported is None:
            return str(current)
        current = reported
    return str(current)


def address_key(address: str, ipv6_prefix: int = 64) -> str:
    """The key per-address limits count under: an IPv4 address as is, an IPv6 address by
    its network of `ipv6_prefix` bits (one host usually holds a whole /64, so counting
    single IPv6 addresses would give it billions of keys). Unparseable: as is."""
    parsed = _parse_ip(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, ipv6_prefix), strict=False))
    return str(parsed) if parsed is not None else address
