"""Room invitations: pure token logic, and the gateway refusing bad ones before any
WebRTC work."""

from __future__ import annotations

import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from stream import tokens
from stream.gateway import GATEWAY, create_app
from stream.settings import GatewaySettings

KEY = b"k" * 32


def test_round_trip():
    token = tokens.issue(KEY, "room-1", ttl_s=60, now=1000)
    invitation = tokens.verify(KEY, token, "room-1", now=1030)
    assert invitation.room == "room-1" and invitation.expires_at == 1060


def test_invite_url_is_built_and_read_back_one_way():
    token = tokens.issue(KEY, "room-1", ttl_s=60, now=1000)
    link = tokens.invite_url("https://rooms.example/", "room-1", token)
    assert link == f"https://rooms.example/?room=room-1&token={token}"
    # with or without a trailing slash, under a path too
    assert tokens.invite_url("http://127.0.0.1:8080", "r", "a.b") == (
        "http://127.0.0.1:8080/?room=r&token=a.b"
    )
    assert tokens.invite_url("https://h.example/interview//", "r", "a.b") == (
        "https://h.example/interview/?room=r&token=a.b"
    )
    assert tokens.split_invite_url(link) == ("https://rooms.example", "room-1", token)
    assert tokens.verify(KEY, tokens.split_invite_url(link)[2], "room-1", now=1001).room == "room-1"
    assert tokens.split_invite_url("http://h:1/") == ("http://h:1", "", "")


@pytest.mark.parametrize("base", ["127.0.0.1:8080", "ftp://h/", "https://h/?x=1", "https://h/#a"])
def test_invite_url_refuses_what_is_not_a_gateway_url(base):
    with pytest.raises(ValueError, match="gateway's URL"):
        tokens.invite_url(base, "r", "a.b")


@pytest.mark.parametrize(
    ("token", "room", "now", "status", "message"),
    [
        (None, "room-1", 1000, 401, "no token"),
        ("", "room-1", 1000, 401, "no token"),
        ("garbage", "room-1", 1000, 401, "malformed"),
        ("a.b", "room-1", 1000, 401, "not genuine"),
        (tokens.issue(b"x" * 32, "room-1", 60, 1000), "room-1", 1000, 401, "not genuine"),
        (tokens.issue(KEY, "room-1", 60, 1000), "room-1", 1060, 401, "expired"),
        (tokens.issue(KEY, "room-1", 60, 1000), "room-2", 1000, 403, "another room"),
    ],
)
def test_refusals(token, room, now, status, message):
    with pytest.raises(tokens.TokenError, match=message) as info:
        tokens.verify(KEY, token, room, now)
    assert info.value.status == status


def test_tampered_claims_are_not_genuine():
    token = tokens.issue(KEY, "room-1", ttl_s=60, now=1000)
    body, signature = token.split(".")
    forged = tokens._b64(tokens._unb64(body).replace(b'"room-1"', b'"room-2"'))
    with pytest.raises(tokens.TokenError, match="not genuine"):
        tokens.verify(KEY, f"{forged}.{signature}", "room-2", 1000)


def test_bad_rooms_and_ttls_cannot_be_issued():
    with pytest.raises(ValueError):
        tokens.issue(KEY, "a room with spaces", 60, 0)
    with pytest.raises(ValueError):
        tokens.issue(KEY, "r", 0, 0)


def test_the_gateway_needs_a_key_unless_in_dev_mode(bus_settings):
    with pytest.raises(ValueError, match="TOKEN_SECRET"):
        create_app(GatewaySettings(), bus_settings)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        create_app(GatewaySettings(token_secret="short"), bus_settings)
    create_app(GatewaySettings(dev_mode=True), bus_settings)


async def test_gateway_refuses_missing_forged_expired_and_wrong_room_tokens(nc, bus_settings):
    app = create_app(GatewaySettings(token_secret=KEY.decode()), bus_settings, nc=nc)
    now = time.time()
    async with TestClient(TestServer(app)) as client:
        cases = [
            ({"room": "r1"}, 401),
            ({"room": "r1", "token": "forged.token"}, 401),
            ({"room": "r1", "token": tokens.issue(KEY, "r1", 1, now - 10)}, 401),
            ({"room": "r2", "token": tokens.issue(KEY, "r1", 60, now)}, 403),
        ]
        for body, status in cases:
            response = await client.post("/api/sessions", json=body)
            assert response.status == status, body
            assert (await response.json())["error"]
        assert app[GATEWAY].sessions == {}, "no session (and no WebRTC work) for a refusal"
        good = tokens.issue(KEY, "r1", 60, now)
        response = await client.post("/api/sessions", json={"room": "r1", "token": good})
        assert response.status == 201
        # The token may come as a bearer header too.
        response = await client.post(
            "/api/sessions", json={"room": "r1"}, headers={"Authorization": f"Bearer {good}"}
        )
        assert response.status == 201
        [session, _] = app[GATEWAY].sessions.values()
        assert session.meta["room"] == "r1"
