"""The gateway's HTTP surface against a real nats-server: bad input gets clear errors."""

from __future__ import annotations

import re

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from stream.gateway import GATEWAY, create_app
from stream.settings import GatewaySettings


@pytest.fixture
async def client(nc, bus_settings):
    app = create_app(GatewaySettings(offer_timeout_s=5, dev_mode=True), bus_settings, nc=nc)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def _new_session(client) -> str:
    response = await client.post("/api/sessions", json={"meta": {"who": "test"}})
    assert response.status == 201
    return (await response.json())["session_id"]


async def test_room_page_and_script_are_served(client):
    page = await client.get("/")
    assert page.status == 200
    assert "intervue" in await page.text()
    script = await client.get("/room.js")
    assert script.status == 200
    assert "RTCPeerConnection" in await script.text()


async def test_unknown_session_is_404(client):
    for method, path in [
        ("POST", "/api/sessions/nope/offer"),
        ("GET", "/api/sessions/nope"),
        ("POST", "/api/sessions/nope/end"),
    ]:
        response = await client.request(method, path, json={"sdp": "v=0", "type": "offer"})
        assert response.status == 404, path
        assert "unknown or ended session" in (await response.json())["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"sdp": "hello", "type": "offer"}, "must start with v=0"),
        ({"sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "type": "offer"}, "no video"),
        (
            {"sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nbroken", "type": "offer"},
            "malformed SDP",
        ),
        ({"sdp": "v=0\r\nm=video", "type": "answer"}, "expected an SDP offer"),
        ({"sdp": 5, "type": "offer"}, "must be"),
        ({}, "must be"),
    ],
)
async def test_malformed_offers_are_400(client, body, message):
    session = await _new_session(client)
    response = await client.post(f"/api/sessions/{session}/offer", json=body)
    assert response.status == 400
    assert message in (await response.json())["error"]
    # The session survives a bad offer, so the page can retry.
    assert (await client.get(f"/api/sessions/{session}")).status == 200


async def test_non_json_body_is_400(client):
    session = await _new_session(client)
    response = await client.post(
        f"/api/sessions/{session}/offer",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 400
    assert "not valid JSON" in (await response.json())["error"]


async def test_oversized_sdp_is_400(client):
    session = await _new_session(client)
    huge = "v=0\r\n" + "a=x\r\n" * 40_000  # ~200 kB, over the 64 kB default
    response = await client.post(
        f"/api/sessions/{session}/offer", json={"sdp": huge, "type": "offer"}
    )
    assert response.status == 400
    assert "too large" in (await response.json())["error"]


async def test_favicon_is_served(client):
    for path in ("/favicon.ico", "/favicon.svg"):
        response = await client.get(path)
        assert response.status == 200 and response.content_type == "image/svg+xml"


async def test_only_the_session_secret_acts_on_a_session(client):
    response = await client.post("/api/sessions", json={})
    created = await response.json()
    session, secret = created["session_id"], created["session_secret"]
    assert len(secret) >= 32
    # the page's copy: an HttpOnly cookie scoped to the session's own API path
    cookie = response.cookies["intervue_session"]
    assert cookie.value == secret and cookie["httponly"] and cookie["samesite"] == "Strict"
    assert cookie["path"] == f"/api/sessions/{session}"
    gateway = client.server.app[GATEWAY]
    calls = [("POST", p) for p in ("leave", "resume", "profile", "offer", "end")] + [("GET", "")]
    async with aiohttp.ClientSession() as stranger:  # another browser: none of our cookies
        for method, path in calls:
            url = client.make_url(f"/api/sessions/{session}" + (f"/{path}" if path else ""))
            for headers in ({}, {"X-Session-Secret": "x" * 43}, {"X-Session-Secret": secret[:-1]},
                            {"Cookie": f"intervue_session={secret[:-1]}A"}):  # fmt: skip
                response = await stranger.request(
                    method, url, json={"self_intro": "hijack", "secret": secret}, headers=headers
                )
                assert response.status == 403, (path, headers)
                assert "not your session" in (await response.json())["error"]
        assert gateway.sessions[session].state == "created"  # untouched
        assert gateway.sessions[session].profile is None
        # the header is how an API client proves it (the stranger had the secret all along)
        response = await stranger.get(
            client.make_url(f"/api/sessions/{session}"), headers={"X-Session-Secret": secret}
        )
        assert response.status == 200
    # the page's own cookie: its first offer is still welcome after a resume
    response = await client.post(f"/api/sessions/{session}/resume")
    assert response.status == 200
    resumed = await response.json()
    assert resumed["offer_url"] == f"/api/sessions/{session}/offer"
    assert gateway.sessions[session].state == "created"
    unknown = await client.post("/api/sessions/0123456789abcdef/resume")
    assert unknown.status == 404
    # a late End (after the data channel's goodbye) is 204 for the owner only
    assert (await client.post(f"/api/sessions/{session}/end")).status == 204
    assert (await client.post(f"/api/sessions/{session}/end")).status == 204
    async with aiohttp.ClientSession() as stranger:
        response = await stranger.post(client.make_url(f"/api/sessions/{session}/end"))
        assert response.status == 403
    again = await client.post(f"/api/sessions/{session}/end", headers={"X-Session-Secret": secret})
    assert again.status == 204


async def test_there_is_no_list_of_sessions_and_every_answer_carries_security_headers(client):
    await _new_session(client)
    listing = await client.get("/api/sessions")
    assert listing.status == 405  # only POST (create) lives there
    for path in ("/", "/room.js", "/room.css", "/api/sessions/nope", "/nowhere"):
        response = await client.get(path)
        assert response.headers["X-Frame-Options"] == "DENY", path
        assert response.headers["Referrer-Policy"] == "no-referrer", path
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
    page = await client.get("/")
    csp = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    html = await page.text()
    assert "<script>" not in html and "<style" not in html  # only files from 'self'
    assert not re.search(r"\son[a-z]+=", html), "an inline handler: the CSP blocks it"
    assert (await client.get("/api/sessions/nope")).headers["Cache-Control"] == "no-store"


async def test_ended_session_is_404(client):
    session = await _new_session(client)
    assert (await client.post(f"/api/sessions/{session}/end")).status == 204
    assert (await client.get(f"/api/sessions/{session}")).status == 404
    response = await client.post(
        f"/api/sessions/{session}/offer", json={"sdp": "v=0", "type": "offer"}
    )
    assert response.status == 404


async def test_session_without_offer_expires(nc, bus_settings):
    import asyncio

    app = create_app(GatewaySettings(offer_timeout_s=0.3, dev_mode=True), bus_settings, nc=nc)
    async with TestClient(TestServer(app)) as client:
        session = await _new_session(client)
        await asyncio.sleep(0.6)
        assert (await client.get(f"/api/sessions/{session}")).status == 404
        assert app[GATEWAY].sessions == {}


async def test_health_and_metrics(client):
    health = await client.get("/healthz")
    assert health.status == 200 and (await health.json())["nats"] is True
    await _new_session(client)
    metrics = await (await client.get("/metrics")).text()
    assert "intervue_gateway_sessions_created_total 1.0" in metrics


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"self_intro": "   "}, "the self-introduction is empty"),
        ({}, "the self-introduction is empty"),
        ({"self_intro": "가" * 50_000}, "is 50,000 characters; the limit is 5,000"),
        ({"self_intro": "hi", "language": "fr"}, "language must be"),
        ({"self_intro": "hi", "years": "many"}, "whole number"),
        ({"self_intro": "hi", "years": 99}, "between 0 and 60"),
    ],
)
async def test_bad_profiles_get_clear_messages(client, body, message):
    session = await _new_session(client)
    response = await client.post(f"/api/sessions/{session}/profile", json=body)
    assert response.status == 400
    assert message in (await response.json())["error"]


async def test_profile_is_persisted_once(client, nc):
    from stream import bus, contract

    session = await _new_session(client)
    body = {"self_intro": "저는 Python 개발자입니다.", "job_title": "", "language": "ko"}
    response = await client.post(f"/api/sessions/{session}/profile", json=body)
    assert response.status == 202
    again = await client.post(f"/api/sessions/{session}/profile", json=body)
    assert again.status == 409
    [event] = await bus.read_events(nc.jetstream(), contract.event_subject(session, "profile"))
    assert event.message.self_intro == "저는 Python 개발자입니다."
    assert event.message.job_title == "AI 개발자"  # blank means the default
    assert (event.message.years, event.message.company) == (2, "EST Soft")


async def test_session_creation_is_rate_limited_per_address(nc, bus_settings):
    settings = GatewaySettings(dev_mode=True, session_burst=3, sessions_per_minute=6)
    app = create_app(settings, bus_settings, nc=nc)
    async with TestClient(TestServer(app)) as client:
        statuses = [(await client.post("/api/sessions", json={})).status for _ in range(5)]
        assert statuses == [201, 201, 201, 429, 429]
        response = await client.post("/api/sessions", json={})
        assert int(response.headers["Retry-After"]) >= 1
        assert "too many new sessions" in (await response.json())["error"]


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(nc, bus_settings):
    # The test client connects from 127.0.0.1: here it plays the load balancer.
    settings = GatewaySettings(
        dev_mode=True, session_burst=2, sessions_per_minute=6, trusted_proxies=["127.0.0.0/8"]
    )
    app = create_app(settings, bus_settings, nc=nc)
    async with TestClient(TestServer(app)) as client:

        async def create(forwarded: str) -> int:
            response = await client.post(
                "/api/sessions", json={}, headers={"X-Forwarded-For": forwarded}
            )
            return response.status

        assert [await create("203.0.113.7") for _ in range(3)] == [201, 201, 429]
        # another candidate behind the same balancer is not throttled by the first
        assert await create("198.51.100.9") == 201
        # a spoofed left-most entry does not buy a fresh budget: the balancer appended
        # the address it really saw (203.0.113.7), and that one is limited
        assert await create("10.9.9.9, 203.0.113.7") == 429


async def test_forwarded_for_is_ignored_without_trusted_proxies(nc, bus_settings):
    settings = GatewaySettings(dev_mode=True, session_burst=2, sessions_per_minute=6)
    app = create_app(settings, bus_settings, nc=nc)
    async with TestClient(TestServer(app)) as client:
        statuses = [
            (
                await client.post(
                    "/api/sessions", json={}, headers={"X-Forwarded-For": f"203.0.113.{i}"}
                )
            ).status
            for i in range(3)
        ]
        assert statuses == [201, 201, 429]


async def test_sessions_carry_ice_servers_with_minted_turn_credentials(nc, bus_settings):
    settings = GatewaySettings(
        dev_mode=True,
        ice_servers=[
            {"urls": "stun:stun.example.org:3478"},
            {"urls": ["turn:turn.example.org:3478", "turns:turn.example.org:5349?transport=tcp"]},
        ],
        turn_secret="a-turn-secret-of-enough-length",
    )
    app = create_app(settings, bus_settings, nc=nc)
    async with TestClient(TestServer(app)) as client:
        created = await (await client.post("/api/sessions", json={})).json()
        session = app[GATEWAY].sessions[created["session_id"]]
    stun_entry, turn_entry = created["ice_servers"]
    assert stun_entry == {"urls": ["stun:stun.example.org:3478"]}
    assert turn_entry["username"].endswith(f":room-{created['session_id']}")
    assert "a-turn-secret" not in str(created)
    # the gateway's own peer connection gets its own pair for the same servers
    [gw_stun, gw_turn] = session.rtc_config.iceServers
    assert gw_stun.urls == ["stun:stun.example.org:3478"] and gw_stun.username is None
    assert gw_turn.username.endswith(f":gateway-{created['session_id']}")
    assert gw_turn.credential != turn_entry["credential"]
