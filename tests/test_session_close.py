"""A session's end releases its peer connection whatever aiortc is doing at that moment.

Deterministic reproductions of the races behind the flaky vanished-browser drill
(`test_faults.py::test_vanished_browsers_release_everything`): a real `RoomSession` against
an in-process aiortc "browser" on loopback ICE and the shared nats-server. Each race is
forced at its unlucky instant by pausing or firing one step exactly there, so nothing here
depends on timing; waits are bounded only so a regression fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import msgspec
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

from deploy import load
from stream import bus, contract
from stream import session as session_module
from stream.session import RoomSession, SessionError, new_session_id
from stream.settings import GatewaySettings


@pytest.fixture(scope="module", autouse=True)
def loopback_ice() -> Iterator[None]:
    """aiortc in this process (session and browser) offers only 127.0.0.1."""
    import aioice.ice

    original = aioice.ice.get_host_addresses
    load.force_loopback_ice()
    yield
    aioice.ice.get_host_addresses = original


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(1)
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


class Room:
    """One RoomSession as the gateway holds it, with the gateway's `on_closed` recorded."""

    def __init__(self, nc, executor) -> None:
        self.closed: list[RoomSession] = []
        self.session = RoomSession(
            new_session_id(), nc, GatewaySettings(dev_mode=True), executor, self.closed.append
        )


async def _until(predicate, what: str, bound_s: float = 20.0) -> None:
    """Poll `predicate` (a bound, not a timing claim: a regression fails, not hangs)."""
    deadline = time.monotonic() + bound_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.01)


async def _browser() -> tuple[RTCPeerConnection, object]:
    """An aiortc peer offering what the room page offers: a data channel, camera, mic."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    channel = pc.createDataChannel("results")
    pc.addTrack(VideoStreamTrack())
    pc.addTrack(AudioStreamTrack())
    await pc.setLocalDescription(await pc.createOffer())  # gathers the loopback candidate
    return pc, channel


async def _close_browser(browser: RTCPeerConnection, timeout_s: float = 15.0) -> None:
    """Close the test's browser peer. aiortc's DTLS stop waits for its receive loop, which
    ends on the peer's close_notify or when ICE under it stops; here the room closed first,
    and a close_notify datagram lost on a loaded loopback would leave the browser waiting
    for ever (seen once in a full run under load: this test's teardown hung for 300 s). So
    if it takes too long, stop the ICE transports under it, which ends that loop."""
    closing = asyncio.ensure_future(browser.close())
    done, _ = await asyncio.wait({closing}, timeout=timeout_s)
    if not done:
        ice = {t.receiver.transport.transport for t in browser.getTransceivers()}
        if browser.sctp is not None:
            ice.add(browser.sctp.transport.transport)
        for transport in ice:
            await transport.stop()
    await closing


def _never_retrieved(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()]


# ---------------------------------------------------------------------------------------
# the retransmission timer firing as the peer connection closes


async def _live_session_with_unacknowledged_data(room: Room) -> RTCPeerConnection:
    """A connected session whose browser stopped acknowledging data-channel messages (it
    vanished), with one message outstanding, so the SCTP retransmission timer (T3) runs."""
    browser, channel = await _browser()
    answer = await room.session.answer(browser.localDescription.sdp, "offer")
    await browser.setRemoteDescription(answer)
    session = room.session
    await _until(
        lambda: (
            channel.readyState == "open"
            and session.channel is not None
            and session.channel.readyState == "open"
        ),
        "the data channel to open on both sides",
    )

    async def swallow(data: bytes) -> None:  # the browser is gone: nothing is acknowledged
        return None

    browser.sctp._handle_data = swallow
    sctp = session.pc.sctp
    session.send({"type": "probe"})
    await _until(lambda: len(sctp._sent_queue) > 0, "a message in flight, unacknowledged")
    return browser


def _t3_fires_as_close_resumes(pc: RTCPeerConnection) -> None:
    """Make the SCTP retransmission timer fire in the loop turn where aiortc's
    `RTCPeerConnection.close()` resumes after stopping its last transceiver (its last
    yield before it stops SCTP and shuts the DTLS session down without yielding again).

    That is the instant that loses: the timer queues a `_transmit` task; close then
    aborts SCTP and shuts DTLS down; the queued task runs afterwards and sends through a
    DTLS session that is shut down ("SSL routines: protocol is shutdown"). Under load
    (the vanished-browser drill) the real timer lands there now and then; here its
    callback is called at exactly that point, even if the session's close already
    cancelled the timer: a retransmission queued there must find nothing to send."""
    sctp = pc.sctp
    last = pc.getTransceivers()[-1]
    stop = last.stop

    async def stop_then_t3_expires() -> None:
        await stop()
        if sctp._t3_handle is not None:  # the armed timer fires now: the loop drops it
            sctp._t3_handle.cancel()
        sctp._t3_expired()

    last.stop = stop_then_t3_expires


async def test_retransmission_due_as_the_peer_connection_closes_leaves_nothing(
    nc, executor, caplog
):
    room = Room(nc, executor)
    browser = await _live_session_with_unacknowledged_data(room)
    try:
        pc = room.session.pc
        _t3_fires_as_close_resumes(pc)
        ice = {t.receiver.transport.transport for t in pc.getTransceivers()}
        ice.add(pc.sctp.transport.transport)
        dtls = {t.receiver.transport for t in pc.getTransceivers()} | {pc.sctp.transport}
        pc_ref = weakref.ref(pc)
        del pc

        await room.session.close("no media for 2s (browser gone?)")
        assert room.closed == [room.session]
        # the teardown went to the end: every transport is closed
        assert {t.state for t in ice} == {"closed"}
        assert {t.state for t in dtls} == {"closed"}
        del ice, dtls
        for _ in range(3):  # let the late retransmission task run, then collect
            await asyncio.sleep(0)
        gc.collect()
        # No background task of aiortc died: such a task's traceback, kept by a log handler
        # that keeps records (pytest's, here), holds the transports and through their
        # listeners the peer connection, which is what the drill counted as leaked.
        assert _never_retrieved(caplog) == []
        assert pc_ref() is None, "the peer connection outlived its session"
    finally:
        await _close_browser(browser)


# ---------------------------------------------------------------------------------------
# the session ending while its offer is being answered


class _Gate:
    """Pauses one step of `RoomSession.answer` until the test lets it go on."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def pause(self) -> None:
        self.reached.set()
        await self.release.wait()


def _pause_answer_at(
    where: str, room: Room, gate: _Gate, monkeypatch: pytest.MonkeyPatch
) -> list[RTCPeerConnection]:
    """Pause `answer()` at `where`; returns the list the session's peer connections go to."""
    created: list[RTCPeerConnection] = []

    class PausingPeerConnection(RTCPeerConnection):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            created.append(self)

        async def setRemoteDescription(self, description: RTCSessionDescription) -> None:
            await super().setRemoteDescription(description)
            if where == "setRemoteDescription":
                await gate.pause()

        async def setLocalDescription(self, description=None) -> None:
            if where == "setLocalDescription":
                await gate.pause()
            await super().setLocalDescription(description)

    monkeypatch.setattr(session_module, "RTCPeerConnection", PausingPeerConnection)
    if where == "subscribe":
        subscribe = room.session.nc.subscribe

        async def paused_subscribe(*args, **kwargs):
            subscription = await subscribe(*args, **kwargs)
            await gate.pause()
            return subscription

        monkeypatch.setattr(room.session.nc, "subscribe", paused_subscribe)
    return created


@pytest.mark.parametrize("where", ["setRemoteDescription", "subscribe", "setLocalDescription"])
async def test_a_session_that_ends_while_its_offer_is_answered_keeps_nothing(
    nc, executor, monkeypatch, where
):
    """The page's end beacon, the offer timeout or a gateway shutdown can end a session
    while `answer()` awaits aiortc or the bus. The answer must then fail (404: the session
    is gone), and nothing it made may outlive the session: no peer connection left open,
    no task, no bus subscription, no 'started' after 'ended'."""
    room = Room(nc, executor)
    session = room.session
    gate = _Gate()
    created = _pause_answer_at(where, room, gate, monkeypatch)
    browser, _ = await _browser()
    try:
        answering = asyncio.create_task(session.answer(browser.localDescription.sdp, "offer"))
        await asyncio.wait_for(gate.reached.wait(), 20)
        await session.close("ended by the page")
        assert room.closed == [session]
        gate.release.set()
        with pytest.raises(SessionError) as failed:
            await answering
        assert failed.value.status == 404, failed.value
        assert "ended" in str(failed.value)

        assert session.state == "ended" and room.closed == [session]
        assert len(created) == 1
        pc = created[0]
        assert pc.signalingState == "closed" and pc.connectionState == "closed"
        await asyncio.sleep(0)  # done callbacks drop finished tasks from the set
        assert not session._tasks, session._tasks
        assert session.pc is None and session._result_sub is None
        wildcard = contract.session_events_wildcard(session.id)
        assert [s for s in nc._subs.values() if s.subject == wildcard] == []
        events = await bus.read_events(
            nc.jetstream(), contract.event_subject(session.id, "lifecycle"), idle_timeout_s=0.5
        )
        assert "started" not in [e.message.event for e in events]
    finally:
        gate.release.set()
        await _close_browser(browser)


async def test_a_second_offer_while_the_first_is_answered_is_refused(nc, executor, monkeypatch):
    room = Room(nc, executor)
    gate = _Gate()
    created = _pause_answer_at("setRemoteDescription", room, gate, monkeypatch)
    first, _ = await _browser()
    second, _ = await _browser()
    try:
        answering = asyncio.create_task(room.session.answer(first.localDescription.sdp, "offer"))
        await asyncio.wait_for(gate.reached.wait(), 20)
        with pytest.raises(SessionError) as refused:
            await room.session.answer(second.localDescription.sdp, "offer")
        assert refused.value.status == 409
        gate.release.set()
        await answering
        assert len(created) == 1 and room.session.pc is created[0]
    finally:
        gate.release.set()
        await room.session.close("test over")
        await first.close()
        await second.close()


# ---------------------------------------------------------------------------------------
# aiortc's close failing or hanging half-way


async def _connected_room(nc, executor) -> tuple[Room, RTCPeerConnection]:
    room = Room(nc, executor)
    browser, channel = await _browser()
    answer = await room.session.answer(browser.localDescription.sdp, "offer")
    await browser.setRemoteDescription(answer)
    await _until(lambda: channel.readyState == "open", "the data channel to open")
    return room, browser


async def test_a_failing_step_of_the_close_does_not_stop_the_teardown(nc, executor, caplog):
    room, browser = await _connected_room(nc, executor)
    try:
        pc = room.session.pc
        ice = {t.receiver.transport.transport for t in pc.getTransceivers()}
        dtls = {t.receiver.transport for t in pc.getTransceivers()}
        transceiver = pc.getTransceivers()[0]

        async def broken_stop() -> None:
            raise RuntimeError("injected: a transceiver that cannot stop")

        transceiver.stop = broken_stop
        with caplog.at_level(logging.WARNING, logger="stream.session"):
            await room.session.close("test")
        assert room.closed == [room.session] and room.session.pc is None
        # aiortc's close stopped at the failing step; the session stopped the rest
        assert {t.state for t in ice} == {"closed"}
        assert {t.state for t in dtls} == {"closed"}
        assert pc.sctp.state == "closed"
        assert any("injected" in r.getMessage() for r in caplog.records)
    finally:
        await _close_browser(browser)


async def test_a_close_past_its_bound_finishes_in_the_background(nc, executor, monkeypatch):
    """A peer connection whose close hangs (an ICE close waiting on the network) must not
    hold the session, nor be cut off half-way: it goes on after the session ended."""
    room, browser = await _connected_room(nc, executor)
    try:
        pc = room.session.pc
        ice_transport = pc.getTransceivers()[0].receiver.transport.transport
        stop = ice_transport.stop
        gate = _Gate()

        async def slow_stop() -> None:
            await gate.pause()
            await stop()

        ice_transport.stop = slow_stop
        monkeypatch.setattr(session_module, "PC_CLOSE_TIMEOUT_S", 0.05)
        await room.session.close("test")  # returns at the bound, the teardown goes on
        assert room.closed == [room.session]
        assert gate.reached.is_set() and ice_transport.state != "closed"
        gate.release.set()
        await _until(
            lambda: ice_transport.state == "closed" and pc.connectionState == "closed",
            "the peer connection's close to finish after its session ended",
        )
    finally:
        gate.release.set()
        await _close_browser(browser)


# ---------------------------------------------------------------------------------------
# what a page may send on the data channel


async def test_junk_and_a_ping_flood_on_the_data_channel_leave_the_session_serving(nc, executor):
    """A page (or someone holding its connection) sends messages that are not room
    requests — JSON that is not an object, wrong fields, a 60 kB string, raw bytes — and
    a flood of pings: each junk message is ignored and counted, at most a burst of pings
    (then the rate) is answered, the session stays live and still answers a real one."""
    room = Room(nc, executor)
    browser, channel = await _browser()
    received: list[str] = []
    channel.on("message", received.append)
    try:
        answer = await room.session.answer(browser.localDescription.sdp, "offer")
        await browser.setRemoteDescription(answer)
        session = room.session
        await _until(
            lambda: channel.readyState == "open" and session.state == "live",
            "the session to be live with its data channel open",
        )
        junk = ["[]", "null", "3", '"bye"', '{"type": "ping", "t0": "x"}', "x" * 60_000]
        for text in junk:
            channel.send(text)
        channel.send(b"\xff\x00{}")
        pings = 50
        for i in range(pings):
            channel.send(msgspec.json.encode(contract.Ping(t0=float(i))).decode())
        await _until(
            lambda: (
                session.counters.refused_page_messages == len(junk) + 1
                and session.counters.pings_dropped + sum('"type":"pong"' in m for m in received)
                == pings
            ),
            "every message to be handled",
        )
        pongs = [m for m in received if '"type":"pong"' in m]
        assert session_module.PING_BURST <= len(pongs) < pings
        assert session.state == "live" and room.closed == []
        assert all(isinstance(msgspec.json.decode(m)["t0"], float) for m in pongs)
    finally:
        await _close_browser(browser)
        await room.session.close("test over")
