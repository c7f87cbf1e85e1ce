"""Every role reaches NATS through bus.connect: user/password auth is honoured and never
logged; a missing password is refused by the server with a clear error."""

from __future__ import annotations

import logging
import subprocess

import pytest

from deploy.nats_server import nats_server_binary
from stream import bus
from stream.ports import free_port
from stream.settings import BusSettings


@pytest.fixture(scope="module")
def secured_nats(tmp_path_factory):
    port = free_port()
    store = tmp_path_factory.mktemp("nats-auth")
    process = subprocess.Popen(
        [str(nats_server_binary()), "-js", "-sd", str(store), "-a", "127.0.0.1",
         "-p", str(port), "--user", "intervue", "--pass", "s3cret-pass"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    import socket
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield f"nats://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=5)


async def test_user_and_password_from_settings(secured_nats, caplog):
    caplog.set_level(logging.DEBUG)
    settings = BusSettings(nats_url=secured_nats, nats_user="intervue", nats_password="s3cret-pass")
    nc = await bus.connect(settings, "auth-test")
    try:
        await bus.ensure_events_stream(nc.jetstream(), settings)
    finally:
        await nc.close()
    assert "s3cret-pass" not in caplog.text
    assert "s3cret-pass" not in repr(settings)


async def test_missing_password_is_refused(secured_nats):
    settings = BusSettings(nats_url=secured_nats)
    with pytest.raises(bus.BusUnavailableError, match=r"(?i)authorization"):
        await bus.connect(settings, "no-auth", connect_timeout_s=1, first_connect_timeout_s=3)


async def test_an_unreachable_server_is_a_clear_error_not_a_hang():
    settings = BusSettings(nats_url=f"nats://127.0.0.1:{free_port()}")
    with pytest.raises(bus.BusUnavailableError, match="cannot reach NATS"):
        await bus.connect(settings, "nowhere", connect_timeout_s=0.5, first_connect_timeout_s=2)
