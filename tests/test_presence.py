"""Which sessions a live gateway holds (`stream.presence`), on a real nats-server: the
gateway marks a session when it makes it and unmarks it at its end; the keys of a
gateway that stops refreshing them (a crash) expire."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer

from stream import bus
from stream.gateway import create_app
from stream.presence import PresenceBoard, ensure_presence_bucket, session_present
from stream.settings import BusSettings, GatewaySettings
from tests.conftest import own_nats_server


@pytest.fixture(scope="module")
def own_bus(tmp_path_factory):
    """A server of this module's own: its bucket has a one-second TTL."""
    for server in own_nats_server(tmp_path_factory, "presence-nats"):
        yield BusSettings(nats_url=server.url)


async def _until(check, want, timeout_s: float = 5.0):
    for _ in range(int(timeout_s / 0.05)):
        if await check() == want:
            return want
        await asyncio.sleep(0.05)
    return await check()


async def test_a_gateway_marks_its_sessions_and_unmarks_ended_ones(nc, bus_settings):
    app = create_app(GatewaySettings(offer_timeout_s=30, dev_mode=True), bus_settings, nc=nc)
    js = nc.jetstream()
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/api/sessions", json={"meta": {}})
        session = (await response.json())["session_id"]
        # marked before the 201: before anything of the session can be on the bus
        assert await session_present(js, session) is True
        assert (await client.post(f"/api/sessions/{session}/end")).status == 204
        assert await _until(lambda: session_present(js, session), False) is False
        # a session still held when the gateway stops is unmarked by its shutdown
        response = await client.post("/api/sessions", json={"meta": {}})
        held = (await response.json())["session_id"]
        assert await session_present(js, held) is True
    assert await session_present(js, held) is False


async def test_keys_live_while_refreshed_and_expire_after(own_bus):
    nc = await bus.connect(own_bus, "presence-test")
    try:
        js = nc.jetstream()
        assert await session_present(js, "s-1") is None  # no bucket: nothing can be told
        board = PresenceBoard(await ensure_presence_bucket(js, own_bus, ttl_s=1.0), "gw-test")
        await board.mark("s-1")
        await board.mark("s-2")
        board.start(lambda: ["s-1"], every_s=0.3)  # the gateway holds only s-1 now
        await asyncio.sleep(2.0)
        assert await session_present(js, "s-1") is True  # refreshed past its TTL
        assert await session_present(js, "s-2") is False  # not refreshed: expired
        assert await session_present(js, "never") is False
        await board.stop()  # the gateway died
        assert await _until(lambda: session_present(js, "s-1"), False) is False
    finally:
        await nc.close()


async def test_session_list_calls_a_crashed_gateways_session_gone(nc, bus_settings, nats_server):
    """`intervue session list`: a session that started and never ended is "live" while a
    gateway holds it, "gone" once none does (its gateway crashed)."""
    import json
    import uuid

    from stream import contract
    from tests.test_bus_disconnect import _cli

    js = nc.jetstream()
    board = PresenceBoard(await ensure_presence_bucket(js, bus_settings), "gw-cli")
    held, orphan = uuid.uuid4().hex[:16], uuid.uuid4().hex[:16]
    await board.mark(held)
    for session in (held, orphan):
        started = contract.SessionEvent(session=session, event="started", at_ms=contract.now_ms())
        await bus.publish_event(js, started, "lifecycle")
    listed = await asyncio.to_thread(_cli, nats_server.url, "session", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    status = {s["session"]: s["status"] for s in json.loads(listed.stdout)}
    assert status[held] == "live" and status[orphan] == "gone"
    await board.unmark(held)
