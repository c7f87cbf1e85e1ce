"""Disconnect reports: a lost NATS connection is warned about, the client's own close or
drain is not (`intervue session list/export` printed "disconnected from NATS" every time).
Real nats-server, real CLI processes."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import uuid

import pytest

from stream import bus, contract
from stream.settings import BusSettings
from tests.conftest import own_nats_server


def _cli(nats_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INTERVUE_NATS_URL": nats_url, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "deploy.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_session_commands_say_nothing_about_disconnecting(nc, nats_server) -> None:
    js = nc.jetstream()
    session = uuid.uuid4().hex[:16]
    event = contract.SessionEvent(session=session, event="started", at_ms=contract.now_ms())
    await bus.publish_event(js, event, "lifecycle")

    listed = await asyncio.to_thread(_cli, nats_server.url, "session", "list")
    assert listed.returncode == 0, listed.stderr
    assert session in listed.stdout
    exported = await asyncio.to_thread(_cli, nats_server.url, "session", "export", session)
    assert exported.returncode == 0, exported.stderr
    assert f'"session": "{session}"' in exported.stdout
    for done in (listed, exported):
        assert "disconnected" not in done.stderr.lower(), done.stderr


async def test_close_and_drain_are_quiet(
    bus_settings: BusSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="stream.bus")
    closed = await bus.connect(bus_settings, "pytest-close")
    await closed.close()
    drained = await bus.connect(bus_settings, "pytest-drain")
    await drained.drain()
    assert closed.is_closed and drained.is_closed
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == []
    debug = [r.getMessage() for r in caplog.records]
    assert "pytest-close: closed the NATS connection" in debug
    assert "pytest-drain: closed the NATS connection" in debug


async def test_a_lost_server_is_still_warned_about(
    tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    servers = own_nats_server(tmp_path_factory, "nats-lost")
    server = next(servers)
    client = await bus.connect(BusSettings(nats_url=server.url), "pytest-lost")
    try:
        with caplog.at_level(logging.WARNING, logger="stream.bus"):
            await asyncio.to_thread(server.stop)
            for _ in range(100):
                if any("disconnected from NATS" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.05)
        assert "pytest-lost: disconnected from NATS" in [r.getMessage() for r in caplog.records]
    finally:
        await client.close()
        next(servers, None)
