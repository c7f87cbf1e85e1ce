"""The speech worker against a real nats-server with JetStream and real Whisper tiny.en."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from deploy.fake_media import make_speech_wav, read_wav
from inference.speech.models import prepare_whisper_models
from inference.speech.transcriber import Transcriber, TranscriptionError
from inference.speech.worker import (
    SpeechSettings,
    SpeechWorker,
    ensure_speech_consumer,
)
from stream import bus, contract

SR = 16_000


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Transcriber:
    directory = tmp_path_factory.mktemp("whisper-models")
    prepare_whisper_models(directory, names=("tiny.en",))
    return Transcriber("tiny.en", models_dir=directory, cpu_threads=2)


@pytest.fixture(scope="module")
def answer_pcm(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = make_speech_wav(
        tmp_path_factory.mktemp("speech"),
        "I wrote the python service and the database schema.",
        sample_rate=SR,
        lead_silence=0.3,
        trail_silence=0.3,
    )
    samples, rate = read_wav(path)
    assert rate == SR
    return samples[:, 0].tobytes()


def settings(name: str, **overrides) -> SpeechSettings:
    values = {"model": "tiny.en", "ack_wait_s": 5.0, "fetch_timeout_s": 0.5, "name": name}
    values.update(overrides)
    return SpeechSettings(**values)


def utterance(session: str, pcm: bytes, uid: str = "u1", **kw) -> contract.Utterance:
    now = contract.now_ms()
    return contract.Utterance(
        session=session,
        utterance_id=uid,
        start_ms=now - 1000 * len(pcm) / (2 * SR),
        end_ms=now,
        cut_ms=now,
        pcm=pcm,
        **kw,
    )


async def publish_utterance(js, utt: contract.Utterance) -> None:
    await js.publish(contract.utterances_subject(utt.session), contract.encode(utt))


async def transcripts(js, session: str, want: int = 1, timeout_s: float = 60.0) -> list:
    deadline = time.monotonic() + timeout_s
    while True:
        events = await bus.read_events(
            js, contract.event_subject(session, "transcript"), idle_timeout_s=0.5
        )
        found = [e.message for e in events if isinstance(e.message, contract.Transcript)]
        if len(found) >= want or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


def new_session() -> str:
    return f"speech-{uuid.uuid4().hex[:10]}"


async def test_utterance_becomes_a_transcript_event(nc, bus_settings, tiny, answer_pcm) -> None:
    js = nc.jetstream()
    session = new_session()
    worker = SpeechWorker(nc, tiny, bus_settings, settings("w-basic"))
    await worker.start()
    try:
        await publish_utterance(js, utterance(session, bytes(2 * SR), uid="silence"))
        await nc.publish(contract.utterances_subject(session), b"not msgpack")  # stored too
        await js.publish(contract.utterances_subject(session), b"\x93corrupt")
        await publish_utterance(js, utterance(session, answer_pcm, uid="answer"))
        found = await transcripts(js, session, want=2)
    finally:
        await worker.stop()
    assert len(found) == 2, found
    # the silence: an empty transcript that only says the part is done, and why
    silence = found[0]
    assert silence.utterance_id == "silence" and silence.text == "" and silence.final
    assert silence.dropped_reason == "silence" and silence.metrics is None and not silence.words
    t = found[1]
    assert t.utterance_id == "answer" and t.part == 0 and t.final
    assert "python" in t.text.lower() and "database" in t.text.lower(), t.text
    assert t.language == "en" and t.model == "tiny.en" and t.worker == "w-basic"
    assert t.words and t.words[0].start < t.words[-1].end
    assert t.metrics.word_count >= 8
    assert t.metrics.words_per_minute > 0
    assert isinstance(t.metrics.filler_words, list)  # Whisper tends to leave out "um"
    assert t.done_ms >= t.cut_ms
    # (the counts are the worker's: utterances other tests left on the shared work queue
    # count too, so only at least what this test sent is certain)
    assert worker.counts["transcribed"] >= 1
    assert worker.counts["dropped"] >= 1  # the silence: acked, an empty transcript
    assert worker.counts["rejected"] == 2  # the corrupt payloads: terminated
    # everything was settled: nothing left pending or unacknowledged on the work queue
    info = await js.consumer_info(contract.UTTERANCES_STREAM, contract.SPEECH_CONSUMER)
    assert info.num_ack_pending == 0


async def test_crashed_worker_message_is_redelivered(nc, bus_settings, tiny, answer_pcm) -> None:
    """A worker takes the utterance and dies without acking: after ack_wait another worker
    gets it and the transcript lands."""
    js = nc.jetstream()
    session = new_session()
    crash_settings = settings("w-crash", ack_wait_s=2.0)
    await bus.ensure_utterances_stream(js)
    await ensure_speech_consumer(js, crash_settings)
    await publish_utterance(js, utterance(session, answer_pcm, uid="taken"))

    # the "crashing worker": fetches from the shared consumer and never acks
    doomed = await js.pull_subscribe_bind(
        durable=contract.SPEECH_CONSUMER, stream=contract.UTTERANCES_STREAM
    )
    taken = None
    for _ in range(20):
        for msg in await doomed.fetch(1, timeout=2.0):
            if msg.subject == contract.utterances_subject(session):
                taken = msg
            else:  # someone else's leftover: hand it back
                await msg.nak()
        if taken is not None:
            break
    assert taken is not None and taken.metadata.num_delivered == 1
    await doomed.unsubscribe()
    taken_at = time.monotonic()

    survivor = SpeechWorker(nc, tiny, bus_settings, crash_settings)
    await survivor.start()
    try:
        found = await transcripts(js, session, timeout_s=30.0)
    finally:
        await survivor.stop()
    assert len(found) == 1 and "python" in found[0].text.lower()
    assert found[0].worker == "w-crash"
    assert survivor.last_deliveries[f"{session}/taken/0"] == 2
    assert time.monotonic() - taken_at >= 1.5  # it waited for ack_wait, not a nak


async def test_worker_stopped_mid_transcription(nc, bus_settings, tiny, answer_pcm) -> None:
    """Worker A is killed while Whisper runs (no ack, no nak); worker B finishes the job."""
    js = nc.jetstream()
    session = new_session()
    # a long answer: several seconds of Whisper on this CPU
    long_pcm = answer_pcm * 4
    a = SpeechWorker(nc, tiny, bus_settings, settings("w-a", ack_wait_s=2.0))
    await a.start()
    await publish_utterance(js, utterance(session, long_pcm, uid="long"))
    for _ in range(200):
        if any(k.startswith(session) for k in a.in_flight):
            break
        await asyncio.sleep(0.05)
    assert any(k.startswith(session) for k in a.in_flight)
    await a.abandon()
    b = SpeechWorker(nc, tiny, bus_settings, settings("w-b", ack_wait_s=2.0))
    await b.start()
    try:
        found = await transcripts(js, session, timeout_s=60.0)
    finally:
        await b.stop()
    assert len(found) == 1 and found[0].worker == "w-b"
    assert b.last_deliveries[f"{session}/long/0"] >= 2


async def test_an_utterance_coming_in_while_a_worker_stops(
    nc, bus_settings, tiny, answer_pcm
) -> None:
    """An utterance that reaches a worker's open pull request while it stops is handed
    back at once: the next worker transcribes it without waiting out ack_wait (a cancelled
    fetch used to leave it in an inbox nobody read)."""
    js = nc.jetstream()
    session = new_session()
    long_wait = {"ack_wait_s": 120.0}
    a = SpeechWorker(
        nc, tiny, bus_settings, settings("w-stopping", fetch_timeout_s=3.0, **long_wait)
    )
    await a.start()
    for _ in range(200):
        if a._fetching:
            break
        await asyncio.sleep(0.05)
    assert a._fetching, "the worker never opened a pull request"
    stopping = asyncio.create_task(a.stop())
    await asyncio.sleep(0.2)  # the pull request is still open at the server
    await publish_utterance(js, utterance(session, answer_pcm, uid="late"))
    await stopping
    assert a.counts["handed_back"] >= 1 and a.counts["transcribed"] == 0
    b = SpeechWorker(nc, tiny, bus_settings, settings("w-next", **long_wait))
    await b.start()
    try:
        # well inside ack_wait: only a handed-back utterance can arrive this soon
        found = await transcripts(js, session, timeout_s=60.0)
    finally:
        await b.stop()
    assert len(found) == 1 and found[0].worker == "w-next"


class SlowTranscriber:
    """The real transcriber behind a delay (a transcription longer than ack_wait)."""

    def __init__(self, inner: Transcriber, delay_s: float) -> None:
        self.inner, self.delay_s, self.model_name = inner, delay_s, inner.model_name

    def transcribe(self, pcm, language=None):
        time.sleep(self.delay_s)
        return self.inner.transcribe(pcm, language)


async def test_heartbeats_keep_a_long_transcription(nc, bus_settings, tiny, answer_pcm) -> None:
    js = nc.jetstream()
    session = new_session()
    worker = SpeechWorker(
        nc,
        SlowTranscriber(tiny, 3.0),
        bus_settings,
        settings("w-slow", ack_wait_s=1.0, heartbeat_s=0.3),
    )
    await worker.start()
    try:
        await publish_utterance(js, utterance(session, answer_pcm, uid="slow"))
        found = await transcripts(js, session, timeout_s=30.0)
        await asyncio.sleep(1.5)  # a redelivery would show up by now
    finally:
        await worker.stop()
    assert len(found) == 1
    assert worker.last_deliveries == {f"{session}/slow/0": 1}
    assert worker.counts["redelivered"] == 0


class FailingTranscriber:
    """Fails the first `failures` calls with a retryable error, then transcribes."""

    def __init__(self, inner: Transcriber, failures: int) -> None:
        self.inner, self.failures, self.model_name = inner, failures, inner.model_name
        self.calls = 0

    def transcribe(self, pcm, language=None):
        self.calls += 1
        if self.calls <= self.failures:
            raise TranscriptionError("injected failure")
        return self.inner.transcribe(pcm, language)


async def test_retry_then_give_up(nc, bus_settings, tiny, answer_pcm) -> None:
    js = nc.jetstream()
    # one failure: retried (nak with delay), then transcribed
    session = new_session()
    flaky = FailingTranscriber(tiny, 1)
    worker = SpeechWorker(
        nc, flaky, bus_settings, settings("w-flaky", max_deliver=3, retry_delay_s=0.2)
    )
    await worker.start()
    try:
        await publish_utterance(js, utterance(session, answer_pcm, uid="flaky"))
        found = await transcripts(js, session, timeout_s=30.0)
    finally:
        await worker.stop()
    assert len(found) == 1 and flaky.calls == 2
    assert worker.last_deliveries[f"{session}/flaky/0"] == 2

    # always failing: given up after max_deliver attempts, and nothing is published
    session = new_session()
    broken = FailingTranscriber(tiny, 10**6)
    worker = SpeechWorker(
        nc, broken, bus_settings, settings("w-broken", max_deliver=2, retry_delay_s=0.1)
    )
    await worker.start()
    try:
        await publish_utterance(js, utterance(session, answer_pcm, uid="doomed"))
        for _ in range(100):
            if worker.counts["gave_up"]:
                break
            await asyncio.sleep(0.1)
    finally:
        await worker.stop()
    assert worker.counts["gave_up"] >= 1 and broken.calls == 2
    assert await transcripts(js, session, timeout_s=0.5) == []
    info = await js.consumer_info(contract.UTTERANCES_STREAM, contract.SPEECH_CONSUMER)
    assert info.num_ack_pending == 0


async def test_silent_parts_of_a_split_utterance(nc, bus_settings, tiny, answer_pcm) -> None:
    """Every part gets a transcript, a silent one an empty transcript (bookkeeping: whoever
    assembles an answer knows when all its parts are in)."""
    js = nc.jetstream()
    session = new_session()
    worker = SpeechWorker(nc, tiny, bus_settings, settings("w-parts"))
    await worker.start()
    try:
        await publish_utterance(js, utterance(session, bytes(SR), uid="a", part=0, final=False))
        await publish_utterance(js, utterance(session, answer_pcm, uid="b", part=0, final=False))
        await publish_utterance(js, utterance(session, bytes(SR), uid="b", part=1, final=True))
        found = await transcripts(js, session, want=3, timeout_s=30.0)
    finally:
        await worker.stop()
    assert [(t.utterance_id, t.part, t.final) for t in found] == [
        ("a", 0, False),
        ("b", 0, False),
        ("b", 1, True),
    ]
    assert found[0].text == "" and found[0].dropped_reason == "silence"
    assert "python" in found[1].text.lower() and not found[1].dropped_reason
    assert found[2].text == "" and found[2].dropped_reason == "silence"
    assert worker.counts["dropped"] >= 2  # (leftovers of other tests count too)


class CountingTranscriber:
    """The real transcriber, noting the length of every clip it is given."""

    def __init__(self, inner: Transcriber) -> None:
        self.inner, self.model_name = inner, inner.model_name
        self.lengths: list[int] = []

    def transcribe(self, pcm, language=None):
        self.lengths.append(len(pcm))
        return self.inner.transcribe(pcm, language)


async def test_a_part_takes_the_transcript_made_at_its_pause(
    nc, bus_settings, tiny, answer_pcm
) -> None:
    """A speculative part (sent at a pause) is transcribed ahead and never published; the
    real part with its number takes that transcript instead of running Whisper again; a
    real part whose snapshot went stale (speech resumed) is transcribed itself."""
    js = nc.jetstream()
    session = new_session()
    counting = CountingTranscriber(tiny)
    worker = SpeechWorker(
        nc, counting, bus_settings, settings("w-spec", speculation_max_wait_ms=60_000)
    )
    ended = answer_pcm + bytes(SR)  # the same speech, half a second more silence
    await worker.start()
    try:
        # "a": the answer ends in the pause its snapshot was taken in
        await publish_utterance(
            js, utterance(session, answer_pcm, "a", speculative=True, speculation=1)
        )
        await publish_utterance(js, utterance(session, ended, "a", speculation=1))
        # "b": snapshot 1, then the candidate went on; the part ends without a snapshot
        await publish_utterance(
            js, utterance(session, answer_pcm, "b", speculative=True, speculation=1)
        )
        await publish_utterance(js, utterance(session, ended, "b", speculation=2))
        # "c": a snapshot and nothing after it yet (the candidate still thinking); a
        # tenth of a second longer, to tell its Whisper run from the others
        thinking = answer_pcm + bytes(SR // 5)
        await publish_utterance(
            js, utterance(session, thinking, "c", speculative=True, speculation=1)
        )
        found = await transcripts(js, session, want=2, timeout_s=30.0)
        for _ in range(300):  # until "c"'s snapshot is in Whisper too
            if len(thinking) in counting.lengths:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # a transcript of a speculative part would be here by now
        found = await transcripts(js, session, want=3, timeout_s=1.0)
    finally:
        await worker.stop()
    assert [t.utterance_id for t in found] == ["a", "b"]
    assert all("python" in t.text.lower() for t in found), [t.text for t in found]
    # the end times are the real parts', whoever transcribed them
    assert found[0].end_ms - found[0].start_ms == pytest.approx(1000 * len(ended) / (2 * SR))
    # Whisper ran on "a"'s and "c"'s snapshots and on "b"'s real part; "a"'s real part took
    # its snapshot's transcript. "b"'s stale snapshot ran only if Whisper had started it
    # before "b"'s real part came (one not started yet is cancelled: a run saved).
    assert counting.lengths.count(len(ended)) == 1
    assert counting.lengths.count(len(thinking)) == 1
    assert counting.lengths.count(len(answer_pcm)) in (1, 2), counting.lengths
    assert worker.counts["speculation_reused"] == 1 and worker.counts["speculated"] == 3
    info = await js.consumer_info(contract.UTTERANCES_STREAM, contract.SPEECH_CONSUMER)
    assert info.num_ack_pending == 0


async def test_late_speculative_parts_are_skipped(nc, bus_settings, tiny, answer_pcm) -> None:
    """A worker that is behind skips guesses: the real part is transcribed as usual."""
    js = nc.jetstream()
    session = new_session()
    counting = CountingTranscriber(tiny)
    worker = SpeechWorker(nc, counting, bus_settings, settings("w-late", speculation_max_wait_ms=0))
    await worker.start()
    try:
        await publish_utterance(
            js, utterance(session, answer_pcm, "a", speculative=True, speculation=1)
        )
        await publish_utterance(js, utterance(session, answer_pcm, "a", speculation=1))
        found = await transcripts(js, session, timeout_s=30.0)
    finally:
        await worker.stop()
    assert len(found) == 1 and "python" in found[0].text.lower()
    assert counting.lengths == [len(answer_pcm)]
    assert worker.counts["speculation_skipped"] == 1 and worker.counts["speculation_reused"] == 0
