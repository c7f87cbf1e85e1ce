"""TURN: the gateway and the page behind a real coturn (Debian's `turnserver`).

- minted TURN REST credentials allocate a relay on coturn; a forged or expired pair is
  refused (checked with aioice's TURN client, the one aiortc uses);
- a relay-only gateway (`ice_transport_policy = "relay"`: no host candidates at all, as
  behind a container's NAT) still serves a real Chromium room: its media reaches the
  gateway through coturn's relay port range, and the page never sees the TURN secret.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import ifaddr
import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint

from deploy.browser import launch_browser, logged_page
from deploy.fake_media import make_face_y4m
from inference.vision_worker import VisionSettings, VisionWorker
from stream import bus, ice
from stream.gateway import GATEWAY, create_app
from stream.ports import free_port
from stream.settings import GatewaySettings
from tests._servers import serve_app

TURN_SECRET = "turn-rest-shared-secret-for-tests-0123"
RELAY_PORTS = (49300, 49399)


def _host_ipv4() -> str:
    """The machine's first non-loopback IPv4 address: Chromium gathers no loopback
    candidates, and coturn refuses loopback peers, so the relay must live on a real one."""
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str) and not ip.ip.startswith("127."):
                return ip.ip
    raise RuntimeError("this machine has no non-loopback IPv4 address for WebRTC")


@pytest.fixture(scope="module")
def turn_server(tmp_path_factory):
    binary = shutil.which("turnserver")
    assert binary, "coturn's turnserver is not installed (.ci/run installs Debian's coturn)"
    root = tmp_path_factory.mktemp("coturn")
    host, port = _host_ipv4(), free_port()
    log_path = root / "turn.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                binary,
                "-n",  # no config file: everything is on this command line
                f"--listening-ip={host}",
                f"--listening-port={port}",
                f"--relay-ip={host}",
                f"--min-port={RELAY_PORTS[0]}",
                f"--max-port={RELAY_PORTS[1]}",
                "--use-auth-secret",
                f"--static-auth-secret={TURN_SECRET}",
                "--realm=intervue.test",
                "--fingerprint",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                "--verbose",
                "--simple-log",
                "--log-file=stdout",
                f"--pidfile={root / 'turn.pid'}",
                f"--userdb={root / 'turndb'}",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 15
        while b"UDP listener opened" not in log_path.read_bytes():
            assert proc.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.1)
        yield {"host": host, "port": port, "url": f"turn:{host}:{port}", "log": log_path}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _allocate(server, username: str, password: str) -> tuple[str, int]:
    transport, _ = await create_turn_endpoint(
        asyncio.DatagramProtocol,
        server_addr=(server["host"], server["port"]),
        username=username,
        password=password,
        lifetime=60,
    )
    try:
        return transport.get_extra_info("sockname")
    finally:
        transport.close()


async def test_minted_credentials_allocate_a_relay_and_forged_or_expired_ones_do_not(
    turn_server,
):
    secret = TURN_SECRET.encode()
    username, password = ice.turn_rest_credentials(secret, "gateway-abc", time.time(), 600)
    relay_host, relay_port = await _allocate(turn_server, username, password)
    assert relay_host == turn_server["host"]
    assert RELAY_PORTS[0] <= relay_port <= RELAY_PORTS[1]

    forged = ice.turn_rest_credentials(b"not-the-servers-secret!!", "x", time.time(), 600)
    expired = ice.turn_rest_credentials(secret, "gateway-abc", time.time() - 1200, 600)
    for bad_user, bad_password in (forged, expired, (username, password[:-4] + "AAA=")):
        with pytest.raises(stun.TransactionFailed) as refused:
            await _allocate(turn_server, bad_user, bad_password)
        assert refused.value.response.attributes["ERROR-CODE"][0] == 401


@pytest.fixture
async def relay_only_stack(nc, bus_settings, models_dir, turn_server):
    from inference.pipeline import VisionPipeline

    worker_nc = await bus.connect(bus_settings, "turn-worker")
    worker = VisionWorker(
        worker_nc, VisionPipeline.load(models_dir), bus_settings, VisionSettings(name="turn")
    )
    await worker.start()
    settings = GatewaySettings(
        dev_mode=True,
        media_timeout_s=4.0,
        ice_servers=[ice.IceServer(urls=[turn_server["url"]])],
        ice_transport_policy="relay",
        turn_secret=TURN_SECRET,
    )
    app = create_app(settings, bus_settings, nc=nc)
    runner, base = await serve_app(app)
    yield {"url": f"{base}/?", "gateway": app[GATEWAY]}
    await runner.cleanup()
    await worker.stop()
    await worker_nc.close()


@pytest.mark.e2e
@pytest.mark.slow
async def test_a_relay_only_gateway_serves_the_room_through_turn(
    relay_only_stack, turn_server, tmp_path
):
    face = make_face_y4m(Path(tmp_path), seconds=3.0, fps=15)
    async with launch_browser(video=face) as browser:
        async with logged_page(browser, relay_only_stack["url"] + "autostart") as lp:
            deadline = time.monotonic() + 45
            while not await lp.page.evaluate("window.intervue.faceResults >= 10"):
                assert time.monotonic() < deadline, "no results through TURN\n" + lp.describe()
                await asyncio.sleep(0.3)
            route = await lp.page.evaluate(
                """async () => {
                    const stats = await pc.getStats();
                    let pair = null;
                    stats.forEach(s => {
                        if (s.type === "transport" && s.selectedCandidatePairId)
                            pair = stats.get(s.selectedCandidatePairId);
                    });
                    const config = pc.getConfiguration();
                    return {
                        remote: pair && stats.get(pair.remoteCandidateId).candidateType,
                        remotePort: pair && stats.get(pair.remoteCandidateId).port,
                        iceServers: config.iceServers,
                        session: window.intervue.session,
                    };
                }"""
            )
    # The gateway offered only relayed candidates, so the browser's media went to coturn.
    assert route["remote"] == "relay", route
    assert RELAY_PORTS[0] <= route["remotePort"] <= RELAY_PORTS[1]
    # The page got per-session credentials, not the shared secret.
    [server] = route["iceServers"]
    assert server["urls"] == [turn_server["url"]]
    assert server["username"].endswith(f":room-{route['session']}")
    assert TURN_SECRET not in str(route)
    # coturn saw the gateway's own minted username allocate.
    log_text = turn_server["log"].read_text(errors="replace")
    assert f"gateway-{route['session']}" in log_text, log_text[-3000:]


def test_ice_settings_are_validated_at_start():
    with pytest.raises(ValueError, match="needs a TURN server"):
        GatewaySettings(dev_mode=True, ice_transport_policy="relay")
    with pytest.raises(ValueError, match="TURN_SECRET"):
        GatewaySettings(dev_mode=True, ice_servers=[{"urls": "turn:turn.example.org"}])
    with pytest.raises(ValueError, match="not a STUN/TURN URL"):
        GatewaySettings(dev_mode=True, ice_servers=[{"urls": "http://turn.example.org"}])
    with pytest.raises(ValueError, match="at least 16 bytes"):
        GatewaySettings(
            dev_mode=True,
            ice_servers=[{"urls": "turn:turn.example.org"}],
            turn_secret="short",
        ).turn_secret_bytes()
    # static credentials need no secret and are passed through as given
    settings = GatewaySettings(
        dev_mode=True,
        ice_servers=[{"urls": "turn:turn.example.org", "username": "u", "credential": "p"}],
        ice_transport_policy="relay",
    )
    [entry] = ice.resolve(settings.ice_servers, None, "x", 0.0, 60.0)
    assert entry == {"urls": ["turn:turn.example.org"], "username": "u", "credential": "p"}


def test_turn_rest_usernames_carry_their_expiry():
    username, password = ice.turn_rest_credentials(b"k" * 16, "room-1", 1_000.4, 600)
    assert username == "1600:room-1"
    assert len(password) == 28  # base64 of a 20-byte HMAC-SHA1
    with pytest.raises(ValueError):
        ice.turn_rest_credentials(b"k" * 16, "a:b", 0.0, 600)


async def test_a_relay_only_gateway_refused_by_turn_says_so_at_once(nc, bus_settings, turn_server):
    from aiohttp.test_utils import TestClient, TestServer
    from aiortc import RTCPeerConnection

    settings = GatewaySettings(
        dev_mode=True,
        ice_servers=[ice.IceServer(urls=[turn_server["url"]])],
        ice_transport_policy="relay",
        turn_secret="not-the-secret-coturn-was-given",
    )
    app = create_app(settings, bus_settings, nc=nc)
    browser = RTCPeerConnection()
    try:
        async with TestClient(TestServer(app)) as client:
            created = await (await client.post("/api/sessions", json={})).json()
            browser.addTransceiver("video", direction="sendonly")
            await browser.setLocalDescription(await browser.createOffer())
            response = await client.post(
                created["offer_url"],
                json={"sdp": browser.localDescription.sdp, "type": "offer"},
            )
            assert response.status == 503
            assert "TURN" in (await response.json())["error"]
            assert not app[GATEWAY].sessions  # closed, nothing left behind
    finally:
        await browser.close()
