"""Which address a request came from, behind zero or more trusted proxies (pure)."""

from __future__ import annotations

import ipaddress

import pytest

from stream.client_address import client_address

LB = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        # no trusted proxies: the header is anyone's to forge, so it is ignored
        ("203.0.113.7", ["198.51.100.1"], [], "203.0.113.7"),
        # a direct client of a gateway with trusted proxies: its header is still ignored
        ("203.0.113.7", ["198.51.100.1"], LB, "203.0.113.7"),
        # one balancer: the address it appended
        ("10.0.0.5", ["198.51.100.1"], LB, "198.51.100.1"),
        # two trusted hops, then the client; a forged left-most entry is never reached
        ("10.0.0.5", ["6.6.6.6, 198.51.100.1, 10.1.2.3"], LB, "198.51.100.1"),
        # the header split over several lines is one list, in order
        ("10.0.0.5", ["6.6.6.6", "198.51.100.1"], LB, "198.51.100.1"),
        # ports and brackets as some proxies write them
        ("10.0.0.5", ["198.51.100.1:5123"], LB, "198.51.100.1"),
        ("10.0.0.5", ["[2001:db8::1]:443"], LB, "2001:db8::1"),
        # IPv4-mapped IPv6 peers are their IPv4 address
        ("::ffff:10.0.0.5", ["198.51.100.1"], LB, "198.51.100.1"),
        ("fd00::1", ["2001:db8::7"], LB, "2001:db8::7"),
        # garbage reported by a trusted hop: the trusted hop itself is the key
        ("10.0.0.5", ["not-an-address"], LB, "10.0.0.5"),
        # everything trusted, nothing else: the left-most report
        ("10.0.0.5", ["10.0.0.9"], LB, "10.0.0.9"),
        # balancer without a header
        ("10.0.0.5", [], LB, "10.0.0.5"),
        # no peer (a Unix socket)
        (None, ["198.51.100.1"], LB, "?"),
    ],
)
def test_client_address(peer, forwarded, trusted, expected):
    assert client_address(peer, forwarded, trusted) == expected
