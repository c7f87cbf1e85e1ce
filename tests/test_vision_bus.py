"""Vision workers on a real nats-server with the real offline models."""

from __future__ import annotations

import asyncio

import cv2
import pytest

from deploy.bench.media import face_frames
from inference.vision_worker import VisionSettings, VisionWorker
from stream import bus, contract


@pytest.fixture(scope="module")
def pipeline(models_dir):
    from inference.pipeline import VisionPipeline

    return VisionPipeline.load(models_dir)


@pytest.fixture
async def workers(bus_settings, pipeline):
    started = []
    for i in range(2):
        client = await bus.connect(bus_settings, f"worker-{i}")
        worker = VisionWorker(client, pipeline, bus_settings, VisionSettings(name=f"w{i}"))
        await worker.start()
        started.append((client, worker))
    yield [w for _, w in started]
    for client, worker in started:
        await worker.stop()
        await client.close()


def _frame(session: str, seq: int, jpeg: bytes) -> bytes:
    now = contract.now_ms()
    return contract.encode(
        contract.Frame(
            session=session, seq=seq, capture_ms=now, sent_ms=now, width=640, height=480, jpeg=jpeg
        )
    )


async def _results(nc, session: str, want: int, timeout: float = 20.0):
    """Wait until `want` emotion results of `session` are stored in JetStream."""
    js = nc.jetstream()
    subject = contract.event_subject(session, "emotion")
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        events = await bus.read_events(js, subject, idle_timeout_s=0.5)
        if len(events) >= want or asyncio.get_running_loop().time() > deadline:
            return [e.message for e in events]
        await asyncio.sleep(0.2)


def _noface_jpeg() -> bytes:
    from skimage import data

    scene = cv2.resize(cv2.cvtColor(data.rocket(), cv2.COLOR_RGB2BGR), (640, 480))
    return cv2.imencode(".jpg", scene)[1].tobytes()


async def test_two_workers_share_the_frames_and_results_land_in_jetstream(nc, workers):
    jpegs = face_frames(4)
    sessions = [f"share{i}" for i in range(6)]
    for round_ in range(5):
        for session in sessions:
            await nc.publish(contract.frames_subject(session), _frame(session, round_, jpegs[0]))
        await nc.flush()
        # each round is analysed before the next is sent, so nothing is dropped (a fixed
        # pause was not always slower than the workers on a loaded machine)
        for session in sessions:
            await _results(nc, session, round_ + 1)
    stored = {s: await _results(nc, s, 5) for s in sessions}
    all_results = [r for results in stored.values() for r in results]
    assert len(all_results) == 30
    assert {r.worker for r in all_results} == {"w0", "w1"}, "the queue group should share work"
    for result in all_results:
        assert isinstance(result, contract.EmotionResult)
        assert len(result.faces) == 1
        face = result.faces[0]
        assert set(face.probs) == set(contract.EMOTIONS)
        assert sum(face.probs.values()) == pytest.approx(1.0, abs=1e-3)
        assert face.label == max(face.probs, key=face.probs.get)
        assert face.valence == ("positive" if face.label in ("happy", "normal") else "negative")
        assert result.timings["total"] > 0
    assert sum(w.counts["analysed"] for w in workers) == 30


async def test_no_face_gives_an_explicit_no_face_result(nc, workers):
    await nc.publish(contract.frames_subject("noface1"), _frame("noface1", 1, _noface_jpeg()))
    [result] = await _results(nc, "noface1", 1)
    assert result.faces == [] and result.no_face


async def test_bad_payloads_are_counted_and_skipped_and_workers_keep_serving(
    nc, workers, bus_settings
):
    good = face_frames(1)[0]
    subject = contract.frames_subject("bad1")
    await nc.publish(subject, b"\x00garbage")  # not a contract message
    await nc.publish(subject, b"\xff" * (bus_settings.frame_max_bytes + 10))  # over the limit
    await nc.publish(subject, _frame("bad1", 1, b"\xff\xd8\xff\xe0 not a jpeg"))  # corrupt JPEG
    await nc.publish(subject, _frame("bad1", 2, good[: len(good) // 3]))  # truncated JPEG
    await nc.publish(contract.frames_subject("bad2"), _frame("other", 1, good))  # wrong session
    await nc.flush()
    await asyncio.sleep(1.0)
    rejected = sum(w.counts["rejected"] for w in workers)
    failed = sum(w.counts["failed"] for w in workers)
    assert rejected == 3
    # A truncated JPEG may still decode partially (grey bottom); it must not crash anything.
    assert failed >= 1
    await nc.publish(subject, _frame("bad1", 3, good))
    results = await _results(nc, "bad1", 1)
    assert any(r.seq == 3 and r.faces for r in results)


async def test_latest_frame_wins_under_overload(nc, workers):
    jpeg = face_frames(1)[0]
    session = "burst1"
    for seq in range(40):  # far faster than two workers can analyse
        await nc.publish(contract.frames_subject(session), _frame(session, seq, jpeg))
    await nc.flush()
    await asyncio.sleep(2.0)
    results = await _results(nc, session, 1)
    seqs = [r.seq for r in results]
    assert 39 in seqs, "the newest frame must be analysed"
    assert len(seqs) < 40, "older frames must be dropped, not queued"
    assert sum(w.counts["dropped"] for w in workers) >= 40 - len(seqs) - 2
