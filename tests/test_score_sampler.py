import itertools
import math
import random

import pytest

from stream.capture_clock import SenderReportClock, ntp_to_unix_ms
from stream.sampler import FrameSampler, LatestFrameSlot
from stream.score import COUNT_INTERVAL_MS, EmotionScore, answer_emotion, band_of, count_bucket


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


# -- the score at a fixed counting rate (one reading per second of capture time) ----------

T0 = 1_700_000_000_000.0  # a capture clock on a whole second (unix ms)


def frames(fps: float, seconds: float, start: float = T0) -> list[float]:
    """Capture times of `seconds` of video analysed at `fps`."""
    return [start + k * 1000 / fps for k in range(math.ceil(seconds * fps))]


def live(results) -> EmotionScore:
    score = EmotionScore()
    for capture_ms, labels in results:
        score.add_result(capture_ms, labels)
    return score


def test_counting_interval_is_one_second():
    assert COUNT_INTERVAL_MS == 1000
    assert count_bucket(T0) == count_bucket(T0 + 999.9) == count_bucket(T0 + 1000) - 1
    with pytest.raises(ValueError):
        count_bucket(math.nan)


@pytest.mark.parametrize(("label", "expected"), [("normal", 56.0), ("happy", 56.0), ("sad", 44.0)])
@pytest.mark.parametrize("fps", [5, 10, 15])
def test_the_same_face_for_a_minute_scores_the_same_at_any_fps(fps, label, expected):
    """A neutral face for 60 s reads 56.0 (60 positive seconds / 10), a sad one 44.0,
    whether 5, 10 or 15 frames a second are analysed."""
    score = live((t, [label]) for t in frames(fps, 60))
    assert score.score == expected
    assert score.readings == 60 and score.faces_seen == 60


def test_jittered_7fps_and_an_unaligned_start_agree_with_the_steady_rates():
    """30 s happy then 20 s angry, at 5, 10, 15 fps and at 7 fps with ±40 ms of capture-time
    jitter: one score. Started on a whole second that is 50 + 3.0 - 2.0; started mid-second
    the 50 s touch 51 seconds of the clock, the first 31 of them happy."""
    rng = random.Random(7)
    for start, expected in ((T0, 51.0), (T0 + 437.0, 51.1)):
        switch = start + 30_000

        def label(t: float, switch: float = switch) -> list[str]:
            return ["happy"] if t < switch else ["anger"]

        for fps in (5, 10, 15):
            assert live((t, label(t)) for t in frames(fps, 50, start)).score == expected, fps
        jittered = [
            min(max(t + rng.uniform(-40, 40), start), start + 49_999) for t in frames(7, 50, start)
        ]
        assert live((t, label(t)) for t in jittered).score == expected


def test_a_result_later_in_the_same_second_does_not_count():
    score = EmotionScore()
    assert score.add_result(T0 + 100, ["happy"])
    assert not score.add_result(T0 + 500, ["sad", "sad"])
    assert not score.add_result(T0 + 999, ["happy"])
    assert score.add_result(T0 + 1000, ["sad"])
    assert (score.positive, score.negative, score.readings, score.score) == (1, 1, 2, 50.0)


def test_out_of_order_results_count_only_when_newer_than_the_last_counted():
    score = EmotionScore()
    assert score.add_result(T0 + 5_200, ["happy"])
    assert not score.add_result(T0 + 3_900, ["sad"])  # an older second, arriving late
    assert not score.add_result(T0 + 5_000, ["sad"])  # the counted second, arriving late
    assert score.add_result(T0 + 6_100, ["sad"])
    assert not score.add_result(T0 + 5_900, ["happy"])
    assert score.score == 50.0 and score.readings == 2


def test_a_frame_without_a_face_leaves_its_second_open():
    score = EmotionScore()
    assert not score.add_result(T0 + 10, [])
    assert score.add_result(T0 + 300, ["normal"])
    assert score.score == 50.1 and score.last_bucket == count_bucket(T0)


def test_every_face_of_the_counted_frame_counts():
    score = EmotionScore()
    assert score.add_result(T0, ["happy", "sad"])  # two people on camera: +0.1 -0.1
    assert (score.positive, score.negative, score.score) == (1, 1, 50.0)
    assert score.add_result(T0 + 1_000, ["happy", "normal", "anger"])
    assert not score.add_result(T0 + 1_500, ["happy", "happy", "happy"])
    assert (score.positive, score.negative, score.faces_seen, score.score) == (3, 2, 5, 50.1)


def test_an_unknown_label_counts_nothing_and_keeps_the_second_open():
    score = EmotionScore()
    with pytest.raises(ValueError, match="unknown emotion"):
        score.add_result(T0, ["happy", "surprise"])
    assert (score.positive, score.readings, score.last_bucket) == (0, 0, None)
    assert score.add_result(T0 + 1, ["happy"])


def test_a_long_session_at_10fps_stays_exact():
    """An hour of a calm face at 10 fps: 3600 readings, 50 + 360 (unclamped), exact."""
    score = live((t, ["normal"]) for t in frames(10, 3600))
    assert score.score == 410.0 and score.band == "good" and score.readings == 3600


def test_answer_scores_use_the_same_rule_as_the_session():
    """An answer's score (`answer_emotion`) is the live counter's readings within the
    turn: the session's score updates, differenced."""
    rng = random.Random(3)
    labels = ["happy", "normal", "sad", "anger", "anxiety"]
    session = EmotionScore()
    updates = []  # (at_ms, positive, negative) as the gateway publishes them
    calm_seconds = set()
    for t in frames(10, 90):
        face = [] if rng.random() < 0.1 else [rng.choice(labels[:2] if t < T0 + 40_000 else labels)]
        capture = t + rng.uniform(0, 50)
        if session.add_result(capture, face):
            updates.append((capture, session.positive, session.negative))
            if capture < T0 + 40_000:
                calm_seconds.add(count_bucket(capture))
    first = answer_emotion(updates, T0, T0 + 39_999.9)
    second = answer_emotion(updates, T0 + 40_000, T0 + 90_000)
    # two answers on whole seconds split the session's readings between them exactly
    assert first.faces + second.faces == session.faces_seen
    # the first 40 s held only calm faces: one reading per second that had a face
    assert first.faces == len(calm_seconds)
    assert first.score == round(50 + 0.1 * len(calm_seconds), 1) and first.band == band_of(
        first.score
    )
    # the span is inclusive at both ends; a turn with no update in it has no score
    assert answer_emotion([(T0, 1, 0), (T0 + 2_000, 1, 1)], T0, T0 + 1_000).score == 50.1
    assert answer_emotion([(T0, 1, 0), (T0 + 2_000, 1, 1)], T0 + 2_000, T0 + 2_000).score == 49.9
    assert answer_emotion([], T0, T0 + 1_000) is None


def test_counting_interval_is_a_parameter():
    score = EmotionScore(interval_ms=500)
    for t in frames(10, 10):
        score.add_result(t, ["happy"])
    assert score.readings == 20 and score.score == 52.0


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
