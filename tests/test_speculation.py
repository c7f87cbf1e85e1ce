"""Speculative transcription at a pause: the worker's table of snapshots (pure), and what
a real `RoomSession` puts on the bus for the VAD's pauses and ends."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from inference.speech.speculation import Speculations
from stream import bus, contract
from stream.session import RoomSession, new_session_id
from stream.settings import GatewaySettings
from stream.vad import SpeechEnded, SpeechPaused, UtteranceAudio


async def test_a_part_takes_only_its_own_latest_snapshot() -> None:
    loop = asyncio.get_running_loop()
    table = Speculations(capacity=2)
    first, second = loop.create_future(), loop.create_future()
    table.add("s/u/0", 1, first)
    table.add("s/u/0", 2, second)  # the speech went on: snapshot 1 is stale
    assert first.cancelled() and len(table) == 1
    assert table.take("s/u/0", 1) is None  # a part that ended with snapshot 1's number…
    assert second.cancelled()  # …also drops the newer one: the part is over
    assert len(table) == 0

    kept = loop.create_future()
    table.add("s/u/1", 1, kept)
    assert table.running() == 1
    kept.set_result("words")
    assert table.running() == 0
    assert table.take("s/u/1", 1) is kept and len(table) == 0
    assert table.take("s/u/1", 1) is None  # taken once

    # a part with no number (speech after every snapshot) drops the part's snapshot
    dropped = loop.create_future()
    table.add("s/v/0", 3, dropped)
    assert table.take("s/v/0", 0) is None and dropped.cancelled()


async def test_the_table_is_bounded_and_failures_are_quiet() -> None:
    loop = asyncio.get_running_loop()
    table = Speculations(capacity=2)
    futures = [loop.create_future() for _ in range(3)]
    for i, future in enumerate(futures):
        table.add(f"s/u{i}/0", 1, future)
    assert len(table) == 2 and futures[0].cancelled()  # the oldest went first
    failed = futures[1]
    failed.set_exception(RuntimeError("whisper fell over"))
    await asyncio.sleep(0)  # the done callback retrieves it: no "never retrieved" log
    assert table.take("s/u1/0", 1) is failed  # the caller sees the failure, and falls back
    table.clear()
    assert futures[2].cancelled() and len(table) == 0


def _audio(speculation: int, final: bool = True, seconds: float = 1.0) -> UtteranceAudio:
    return UtteranceAudio(
        pcm=np.full(int(16_000 * seconds), 100, np.int16),
        start_ms=0.0,
        end_ms=1000.0 * seconds,
        part=0,
        final=final,
        utterance_id="u1",
        speculation=speculation,
    )


async def test_a_session_sends_snapshots_only_inside_an_answer_turn(nc) -> None:
    """A pause outside an answer turn sends nothing (nobody waits for those words); inside
    one it sends a speculative part that is not one of the answer's parts; the part that
    ends in that pause carries the snapshot's number."""
    js = nc.jetstream()
    await bus.ensure_utterances_stream(js)
    executor = ThreadPoolExecutor(1)
    session = RoomSession(
        new_session_id(), nc, GatewaySettings(dev_mode=True), executor, lambda _s: None
    )
    received: list[contract.Utterance] = []

    async def receive(msg) -> None:
        received.append(contract.decode(msg.data, contract.Utterance))

    sub = await nc.subscribe(contract.utterances_subject(session.id), cb=receive)
    try:
        t0 = contract.now_ms()
        await session._on_vad_event(SpeechPaused(_audio(1)), t0)  # no turn yet
        session._open_turn(0, 1)
        await session._on_vad_event(SpeechPaused(_audio(2)), t0)
        await session._on_vad_event(SpeechEnded(_audio(2, seconds=1.2)), t0)
        for _ in range(100):
            if len(received) >= 2:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        assert [(u.speculative, u.speculation) for u in received] == [(True, 2), (False, 2)]
        guess, real = received
        assert guess.question == real.question == 0 and guess.attempt == real.attempt == 1
        assert len(guess.pcm) == 2 * 16_000 and len(real.pcm) == 2 * 19_200
        assert guess.part_key == real.part_key
        # only the real part belongs to the answer
        assert session.turn.parts == [real.part_key]
        assert session.counters.utterances == 1 and session.counters.speculations == 1
    finally:
        await sub.unsubscribe()
        await session.close("test")
        executor.shutdown(wait=True)
        # leave the shared work queue as it was: these parts are nobody's to transcribe
        await js.purge_stream(
            contract.UTTERANCES_STREAM, subject=contract.utterances_subject(session.id)
        )
