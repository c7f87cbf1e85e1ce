"""Nobody into another candidate's session (issue 12): a live interview, a stranger who
knows its id (it was once listed by the gateway), and every call that acts on a session.
Real gateway on a real TCP port, a real WebRTC candidate (the load harness's, aiortc),
a real nats-server."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import numpy as np
import pytest

from deploy import load
from stream import contract
from stream.gateway import GATEWAY, create_app
from stream.settings import GatewaySettings
from tests._servers import serve_app

pytestmark = pytest.mark.slow


async def _stranger_offer_sdp() -> str:
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="sendonly")
    pc.createDataChannel("results")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def test_a_stranger_cannot_touch_a_live_interview(nc, bus_settings):
    app = create_app(GatewaySettings(dev_mode=True), bus_settings, nc=nc)
    runner, base = await serve_app(app)
    gateway = app[GATEWAY]
    import aioice.ice

    original = aioice.ice.get_host_addresses
    load.force_loopback_ice()
    frames = load.camera_frames(3)
    events: list[contract.BusMessage] = []
    async with aiohttp.ClientSession() as http, aiohttp.ClientSession() as stranger:
        victim = load.Candidate(
            0,
            http,
            base,
            "",
            "",
            load.make_camera(frames, 10.0),
            load.make_microphone(np.zeros(960, np.int16), 600.0, 600.0),
            send_profile=False,
        )
        try:
            await victim.create(time.monotonic() + 20)
            session = victim.out.session

            async def collect(msg) -> None:
                events.append(contract.decode(msg.data))

            sub = await nc.subscribe(contract.session_events_wildcard(session), cb=collect)
            await victim.connect(20)
            assert gateway.sessions[session].state == "live"
            url = f"{base}/api/sessions/{session}"
            attacks = [
                ("POST", "/profile", {"self_intro": "I am the attacker", "language": "en"}),
                ("POST", "/offer", {"sdp": await _stranger_offer_sdp(), "type": "offer"}),
                ("POST", "/leave", {}),  # the unload beacon's call
                ("POST", "/resume", {}),
                ("POST", "/end", {}),
                ("GET", "", None),
            ]
            for headers in ({}, {"X-Session-Secret": "guess"}, {"Cookie": "intervue_session=x"}):
                for method, path, body in attacks:
                    async with stranger.request(
                        method, url + path, json=body, headers=headers
                    ) as response:
                        assert response.status == 403, (path, headers, response.status)
            # the beacon as a browser sends it: text/plain, no headers to set
            async with stranger.post(url + "/leave", data=b"{}") as response:
                assert response.status == 403
            live = gateway.sessions[session]
            assert live.state == "live" and live.profile is None
            assert victim.channel.readyState == "open"
            # the victim's own interview goes on: its profile is the one that counts
            await victim._profile()
            assert not victim.out.error
            await asyncio.sleep(0.3)
            profiles = [e for e in events if isinstance(e, contract.Profile)]
            assert [p.self_intro for p in profiles] == [load.SELF_INTRO]
            ended = [
                e for e in events if isinstance(e, contract.SessionEvent) and e.event == "ended"
            ]
            assert not ended, "the stranger's End must not have ended the session"
            await sub.unsubscribe()
        finally:
            await victim.close()
            await runner.cleanup()
            aioice.ice.get_host_addresses = original
    assert gateway.refused_owner._value.get() >= 19
