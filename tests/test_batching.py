"""The cross-session batch scheduler (pure, no models) and the asyncio engine around it
(driven here by a fake staged pipeline: no models, no NATS)."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from inference.batching import BatchingAnalyzer, BatchScheduler


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_window_and_max_batch_decide_when_a_batch_runs():
    clock = Clock()
    s: BatchScheduler[str] = BatchScheduler(max_batch=4, window_s=0.005, clock=clock)
    assert s.due() is None and s.wait_time() is None
    s.submit("a", "a1", 1)
    assert s.due() is None  # window open, more may come
    assert s.wait_time() == pytest.approx(0.005)
    assert s.due(upstream_idle=True) == "idle"  # nothing else coming: do not wait
    clock.t += 0.003
    s.submit("b", "b1", 2)
    assert s.due() is None
    assert s.wait_time() == pytest.approx(0.002)  # the OLDEST frame's window
    clock.t += 0.002
    assert s.due() == "window"
    s.submit("c", "c1", 1)
    assert s.pending_size == 4
    assert s.due() == "full"
    batch = s.take(reason="full")
    assert sorted(batch.sessions) == ["a", "b", "c"] and batch.size == 4
    assert len(s) == 0 and s.due() is None


def test_take_keeps_frames_whole_and_caps_the_batch():
    clock = Clock()
    s: BatchScheduler[str] = BatchScheduler(max_batch=4, window_s=0.0, clock=clock)
    s.submit("a", "a", 3)
    clock.t += 0.001
    s.submit("b", "b", 3)
    clock.t += 0.001
    s.submit("c", "c", 1)
    first = s.take()
    assert first.sessions == ["a", "c"] and first.size == 4  # b does not fit, c does
    assert s.take().sessions == ["b"]
    s.submit("big", "big", 9)  # larger than a batch: goes alone, the backend splits it
    assert s.take().size == 9


def test_fairness_every_session_gets_its_turn():
    clock = Clock()
    s: BatchScheduler[int] = BatchScheduler(max_batch=4, window_s=0.001, clock=clock)
    sessions = [f"s{i}" for i in range(10)]
    rounds = 50
    for r in range(rounds):
        for name in sessions:  # every session always has a frame waiting
            s.submit(name, r, 1)
            clock.t += 0.0001
        batch = s.take()
        assert batch.size == 4
        assert len(set(batch.sessions)) == 4
    served = [s.served.get(name, 0) for name in sessions]
    assert sum(served) == rounds * 4
    assert max(served) - min(served) <= 1, served  # round robin, nobody starves


def test_latest_frame_wins_under_synthetic_overload():
    clock = Clock()
    s: BatchScheduler[tuple[str, int]] = BatchScheduler(max_batch=8, window_s=0.002, clock=clock)
    sessions = [f"s{i}" for i in range(5)]
    latest: dict[str, int] = {}
    sent = {name: 0 for name in sessions}
    taken: list[tuple[str, int]] = []
    rng = np.random.default_rng(0)
    for step in range(2000):  # frames arrive ~20× faster than batches run
        name = sessions[int(rng.integers(len(sessions)))]
        seq = sent[name]
        sent[name] += 1
        replaced = s.submit(name, (name, seq), 1)
        if replaced is not None:
            assert replaced[0] == name and replaced[1] < seq
        latest[name] = seq
        assert len(s) <= len(sessions)  # never more than one waiting frame per session
        clock.t += 0.0001
        if step % 20 == 19:
            batch = s.take()
            sessions_in_batch = [e.session for e in batch.entries]
            assert len(sessions_in_batch) == len(set(sessions_in_batch))
            for e in batch.entries:  # what runs is the newest frame of its session
                assert e.item[1] == latest[e.session]
                taken.append(e.item)
    for name in sessions:
        assert s.dropped[name] + s.served[name] + (1 if name in s._pending else 0) == sent[name]
        assert s.dropped[name] > s.served[name]  # overload: most frames were dropped
    s.submit("s0", ("s0", 10**6), 1)
    assert s.forget("s0") == ("s0", 10**6) and "s0" not in s.served and len(s) <= 4


def test_a_replacing_frame_does_not_reopen_the_window():
    clock = Clock()
    s: BatchScheduler[int] = BatchScheduler(max_batch=32, window_s=0.004, clock=clock)
    s.submit("a", 1, 1)
    for i in range(10):
        clock.t += 0.001
        s.submit("a", i + 2, 1)
        if clock.t - 100.0 >= 0.004:
            break
    assert s.due() == "window"
    assert s.take().entries[0].item == 5


def test_invalid_settings():
    with pytest.raises(ValueError):
        BatchScheduler(max_batch=0)
    with pytest.raises(ValueError):
        BatchScheduler(window_s=-1)


# ---------------------------------------------------------------- the engine, fake model


@dataclass
class FakePrepared:
    inputs: np.ndarray
    session_tag: float
    timings_ms: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.inputs.shape[0])


class FakePipeline:
    """Staged like VisionPipeline: 'prepare' costs `prep_s`, one model call `infer_s`
    whatever the batch size (a GPU-like model), each input row's output is the row's tag
    so routing can be checked."""

    max_batch = 16

    def __init__(self, prep_s: float = 0.002, infer_s: float = 0.004, faces: int = 1) -> None:
        self.prep_s = prep_s
        self.infer_s = infer_s
        self.faces = faces
        self.batches: list[int] = []
        self._lock = threading.Lock()

    def prepare_jpeg(self, jpeg: bytes) -> FakePrepared:
        time.sleep(self.prep_s)
        tag = float(int(jpeg.decode()))
        return FakePrepared(np.full((self.faces, 1), tag, np.float32), tag)

    def infer(self, inputs: np.ndarray) -> np.ndarray:
        with self._lock:
            time.sleep(self.infer_s)
            self.batches.append(int(inputs.shape[0]))
            return inputs.copy()

    def finish(self, prepared, outputs, infer_ms=None):
        if outputs is None:
            return {"tag": prepared.session_tag, "faces": 0}
        assert np.all(outputs == prepared.session_tag)  # routed back to its own frame
        return {"tag": prepared.session_tag, "faces": len(outputs)}

    def analyse_jpeg(self, jpeg: bytes):
        prepared = self.prepare_jpeg(jpeg)
        return self.finish(prepared, self.infer(prepared.inputs))


async def _drive(pipeline, sessions: int, per_session: int, **kw):
    results: dict[str, list[int]] = {}

    async def on_result(session, token, analysis, error):
        assert error is None
        assert analysis["tag"] == token  # the result of THIS frame
        results.setdefault(session, []).append(token)

    analyzer = BatchingAnalyzer(pipeline, on_result, **kw)
    analyzer.start()
    try:
        for seq in range(per_session):
            for i in range(sessions):
                token = i * 10000 + seq
                analyzer.submit(f"s{i}", token, str(token).encode())
            await asyncio.sleep(0.001)
        await analyzer.drain(20)
    finally:
        await analyzer.stop()
    return analyzer, results


async def test_engine_batches_across_sessions_and_routes_results():
    pipeline = FakePipeline()
    analyzer, results = await _drive(pipeline, 8, 30, max_batch=16, window_ms=3.0)
    assert set(results) == {f"s{i}" for i in range(8)}
    assert max(pipeline.batches) > 1  # crops of several sessions in one call
    assert analyzer.stats.batches > 0
    for i in range(8):
        seqs = results[f"s{i}"]
        assert seqs == sorted(seqs)  # per session, in order
        assert seqs[-1] == i * 10000 + 29  # the newest frame is always analysed
    # under overload older frames were dropped, not queued
    dropped = sum(analyzer.stats.dropped.values())
    assert dropped > 0
    assert dropped + sum(len(v) for v in results.values()) == 8 * 30


async def test_one_session_is_analysed_in_one_hop():
    pipeline = FakePipeline(prep_s=0.001, infer_s=0.001)
    analyzer, results = await _drive(pipeline, 1, 5, max_batch=16, window_ms=50.0)
    assert len(results["s0"]) >= 1
    assert analyzer.stats.solo == len(results["s0"])  # never waited for a window
    assert analyzer.stats.batches == 0


async def test_batching_off_is_the_per_frame_loop():
    pipeline = FakePipeline()
    analyzer, results = await _drive(pipeline, 4, 10, batching=False)
    assert set(pipeline.batches) == {1}
    assert analyzer.stats.batches == 0 and analyzer.stats.solo == sum(map(len, results.values()))


async def test_a_frame_without_faces_skips_the_model():
    pipeline = FakePipeline(faces=0)
    analyzer, results = await _drive(pipeline, 4, 3)
    assert all(results.values())
    assert analyzer.stats.batches == 0 or all(b > 0 for b in pipeline.batches)


async def test_a_failing_frame_is_reported_and_the_rest_go_on():
    pipeline = FakePipeline()
    seen: list[tuple[str, object]] = []

    async def on_result(session, token, analysis, error):
        seen.append((session, error))

    analyzer = BatchingAnalyzer(pipeline, on_result, max_batch=8, window_ms=1.0)
    analyzer.start()
    try:
        analyzer.submit("bad", 1, b"not a number")
        analyzer.submit("good", 2, b"2")
        await analyzer.drain(5)
    finally:
        await analyzer.stop()
    errors = {s: e for s, e in seen}
    assert isinstance(errors["bad"], ValueError)
    assert errors["good"] is None
