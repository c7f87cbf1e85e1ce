"""Reading stored events back from JetStream (`stream.bus.read_events`), real nats-server."""

from __future__ import annotations

import asyncio
import uuid

from stream import bus, contract


async def test_read_events_since_a_time_skips_older_ones(nc, bus_settings):
    js = nc.jetstream()
    await bus.ensure_events_stream(js, bus_settings)
    session = uuid.uuid4().hex[:16]
    subject = contract.event_subject(session, "score")

    def update(i: int) -> contract.ScoreUpdate:
        return contract.ScoreUpdate(
            session=session,
            seq=i,
            score=50 + 0.1 * i,
            band="normal",
            faces_seen=i,
            positive=i,
            negative=0,
            at_ms=contract.now_ms(),
        )

    for i in range(3):
        await bus.publish_event(js, update(i), "score")
    await asyncio.sleep(0.3)
    mark = contract.now_ms()
    await asyncio.sleep(0.05)
    for i in range(3, 5):
        await bus.publish_event(js, update(i), "score")

    everything = await bus.read_events(js, subject, idle_timeout_s=0.5)
    recent = await bus.read_events(js, subject, idle_timeout_s=0.5, since_ms=mark)
    future = await bus.read_events(
        js, subject, idle_timeout_s=0.3, since_ms=contract.now_ms() + 60_000
    )
    assert [e.message.seq for e in everything] == [0, 1, 2, 3, 4]
    assert [e.message.seq for e in recent] == [3, 4]
    assert future == []
