"""The dashboard's event store keeps memory bounded: sessions that ended a while ago keep
only their summary events (per-frame ones read back from JetStream when opened), and
sessions the stream no longer keeps are forgotten. Real nats-server, a test clock."""

from __future__ import annotations

import asyncio
import uuid

from dashboard import aggregate as agg
from dashboard.store import EventStore
from stream import bus, contract
from stream.settings import BusSettings
from tests._dashboard_events import interview_session, publish


class Clock:
    def __init__(self) -> None:
        self.now = contract.now_ms() / 1000.0

    def __call__(self) -> float:
        return self.now


async def _replay(settings: BusSettings, messages) -> None:
    nc = await bus.connect(settings, "pytest-dashboard-store")
    try:
        js = nc.jetstream()
        await bus.ensure_events_stream(js, settings)
        await publish(js, messages)
    finally:
        await nc.close()


async def _stored_session(bus_settings, **kwargs):
    """A session replayed into JetStream (ten minutes old) and a store with a test clock,
    caught up with it: (session, messages, clock, store)."""
    session = uuid.uuid4().hex[:16]
    messages = interview_session(session, contract.now_ms() - 600_000, **kwargs)
    await _replay(bus_settings, messages)
    clock = Clock()
    store = EventStore(
        BusSettings(nats_url=bus_settings.nats_url, events_max_age_s=24 * 3600),
        clock=clock,
        archive_after_s=1800,
        keep_loaded=1,
    ).start()
    assert await asyncio.to_thread(store.wait_for_events, session, len(messages), 20)
    return session, messages, clock, store


async def test_ended_sessions_are_archived_then_forgotten(bus_settings):
    session, messages, clock, store = await _stored_session(bus_settings)  # ended ~2 min ago
    try:
        version, everything = store.events(session)
        assert not store.archived(session) and len(everything) == len(messages)
        full_view = agg.fold(everything, session)

        clock.now += 3600  # an hour later
        store.archive_pass()
        assert store.archived(session)
        _, kept = store.events(session)
        compact = agg.fold(kept, session)
        # what the overview shows is the same from the summary events
        assert compact.title() == full_view.title()
        assert compact.ended_ms == full_view.ended_ms and compact.end_reason
        assert compact.score.score == full_view.score.score
        assert [q.emotion for q in compact.questions] == [q.emotion for q in full_view.questions]
        assert store.event_count(session) == len(messages)
        # every event comes back from JetStream, in order, for the session page
        new_version, loaded = await asyncio.to_thread(store.full_events, session)
        assert new_version > version
        assert [e.seq for e in loaded] == [e.seq for e in everything]
        assert (await asyncio.to_thread(store.full_events, session))[1] is loaded  # kept

        clock.now += 24 * 3600  # past the stream's retention: gone, as from JetStream
        store.archive_pass()
        assert store.events(session) == (0, []) and store.event_count(session) == 0
    finally:
        store.stop()


async def test_a_session_that_never_ended_is_archived_once_long_silent(bus_settings):
    # its gateway died: no "ended" event will ever come
    session, messages, clock, store = await _stored_session(bus_settings, ended=False)
    try:
        clock.now += 1800  # silent for half an hour: it may be a slow reconnect
        store.archive_pass()
        assert not store.archived(session)
        clock.now += 1800  # an hour (twice archive_after_s): abandoned
        store.archive_pass()
        assert store.archived(session) and store.event_count(session) == len(messages)
        clock.now += 24 * 3600
        store.archive_pass()
        assert store.event_count(session) == 0
    finally:
        store.stop()
