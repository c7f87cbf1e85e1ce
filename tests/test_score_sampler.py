import itertools

import pytest

from stream.capture_clock import SenderReportClock, ntp_to_unix_ms
from stream.sampler import FrameSampler, LatestFrameSlot
from stream.score import EmotionScore, band_of


def test_score_starts_at_50_and_steps_by_a_tenth():
    score = EmotionScore()
    assert score.score == 50.0 and score.band == "normal"
    score.add_faces(["happy", "normal", "sad"])
    assert score.score == 50.1
    assert (score.positive, score.negative, score.faces_seen) == (2, 1, 3)


def test_score_is_exact_over_long_sessions():
    score = EmotionScore()
    score.add_faces(["happy"] * 201)
    assert score.score == 70.1 and score.band == "good"
    score = EmotionScore()
    score.add_faces(["anger", "anxiety", "embarrass", "pain", "sad"] * 20)
    assert score.score == 40.0 and score.band == "bad"  # 40 is not above 40


@pytest.mark.parametrize(
    ("value", "band"),
    [(70.0, "normal"), (70.1, "good"), (40.1, "normal"), (40.0, "bad"), (-3, "bad"), (99, "good")],
)
def test_bands(value, band):
    assert band_of(value) == band


def test_unknown_label_is_an_error():
    with pytest.raises(ValueError, match="unknown emotion"):
        EmotionScore().add_faces(["surprise"])


def test_sampler_holds_the_rate_from_a_30fps_camera():
    sampler = FrameSampler(10)
    picked = [i for i in range(300) if sampler.should_sample(i / 30)]
    assert len(picked) == 100  # 10 s of camera at 10 fps
    assert all(b - a == 3 for a, b in itertools.pairwise(picked))


def test_sampler_reanchors_after_a_gap_instead_of_bursting():
    sampler = FrameSampler(10)
    assert sampler.should_sample(0.0)
    assert sampler.should_sample(5.0)  # camera paused for 5 s
    assert not sampler.should_sample(5.05)
    assert sampler.should_sample(5.1)


def test_sampler_rejects_bad_rate():
    with pytest.raises(ValueError):
        FrameSampler(0)


def test_latest_frame_wins_and_drops_are_counted():
    slot = LatestFrameSlot(max_in_flight=1)
    slot.offer(1, "a")
    assert slot.take(0.0) == (1, "a")
    # The bus slot is busy: frames pile onto one waiting place, the newest wins.
    for seq in range(2, 7):
        slot.offer(seq, str(seq))
    assert slot.take(0.1) is None
    assert slot.counters.dropped == 4
    assert slot.complete(1)
    assert slot.take(0.2) == (6, "6")
    assert not slot.complete(99)  # unknown result
    assert slot.counters.sent == 2 and slot.counters.offered == 6


def test_synthetic_overload_never_builds_a_queue():
    slot = LatestFrameSlot(max_in_flight=2)
    sent = []
    for seq in range(1000):  # producer far faster than the consumer
        slot.offer(seq, seq)
        taken = slot.take(seq * 0.01)
        if taken:
            sent.append(taken[0])
        if seq % 50 == 0 and slot.in_flight:
            slot.complete(next(iter(slot.in_flight)))
        assert len(slot.in_flight) <= 2
        assert slot.waiting is None or slot.waiting[0] == seq
    c = slot.counters
    assert c.offered == 1000
    assert c.sent + c.dropped + (1 if slot.waiting else 0) == 1000


def test_lost_results_free_their_slot_after_the_timeout():
    slot = LatestFrameSlot(max_in_flight=1)
    slot.offer(1, "a")
    slot.take(0.0)
    slot.offer(2, "b")
    assert slot.take(0.5) is None
    assert slot.expire(0.5, 1.0) == 0
    assert slot.expire(1.0, 1.0) == 1
    assert slot.take(1.0) == (2, "b")
    assert slot.counters.timed_out == 1


def test_sender_report_clock_maps_rtp_to_capture_time():
    ntp_1970 = 2208988800 << 32
    clock = SenderReportClock()
    assert clock.capture_ms(1234) is None
    clock.on_sender_report(ntp_1970 + (10 << 32) + (1 << 31), rtp=90_000)  # 10.5 s
    assert ntp_to_unix_ms(ntp_1970 + (10 << 32)) == 10_000.0
    assert clock.capture_ms(90_000) == pytest.approx(10_500.0)
    assert clock.capture_ms(90_000 + 9_000) == pytest.approx(10_600.0)
    assert clock.capture_ms(90_000 - 9_000) == pytest.approx(10_400.0)


def test_sender_report_clock_handles_rtp_wraparound():
    clock = SenderReportClock()
    clock.on_sender_report((2208988800 + 100) << 32, rtp=(1 << 32) - 900)
    assert clock.capture_ms(900) == pytest.approx(100_000.0 + 20.0)


def test_token_bucket_allows_a_burst_then_the_rate():
    from stream.sampler import TokenBucket

    bucket = TokenBucket(burst=3, rate_per_s=1.0)
    assert [bucket.allow("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.allow("a", 0.0) == pytest.approx(1.0)
    assert bucket.allow("b", 0.0) == 0.0  # per key
    assert bucket.allow("a", 0.5) == pytest.approx(0.5)
    assert bucket.allow("a", 1.6) == 0.0


def test_token_bucket_memory_is_bounded():
    from stream.sampler import TokenBucket

    bucket = TokenBucket(burst=1, rate_per_s=0.001, max_keys=100)
    for i in range(1000):
        bucket.allow(f"10.0.{i // 256}.{i % 256}", float(i))
    assert len(bucket._buckets) <= 100
