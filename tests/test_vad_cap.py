"""The VAD length cap (`VadSettings.max_utterance_ms`): parts are cut at a pause inside the
speech, never in the trailing silence, and never run past the cap.

Real webrtcvad throughout, on espeak-ng speech and on synthetic audio whose voicing is known
frame by frame: a "voiced" frame is a harmonic tone complex (a vowel-like buzz that
webrtcvad calls speech in every frame), an "unvoiced" frame is digital silence.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import webrtcvad
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploy.fake_media import make_speech_wav, read_wav
from stream.vad import (
    SpeechEnded,
    SpeechPaused,
    SpeechStarted,
    UtteranceAudio,
    VadSegmenter,
    VadSettings,
)

SR = 16_000
FRAME = 320  # 20 ms, the default frame_ms
CAP_MS = 8_000


# -- audio ------------------------------------------------------------------------------


def buzz(n_frames: int, f0: float = 150.0, level: float = 8_000.0) -> np.ndarray:
    """`n_frames` 20 ms frames of a harmonic complex (voiced in every frame)."""
    t = np.arange(n_frames * FRAME) / SR
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 16))
    return (x / np.abs(x).max() * level).astype(np.int16)


def silence(n_frames: int) -> np.ndarray:
    return np.zeros(n_frames * FRAME, np.int16)


def frames_of(ms: float) -> int:
    return round(ms / 20)


def speech_16k(media: Path, text: str) -> np.ndarray:
    samples, rate = read_wav(make_speech_wav(media, text, sample_rate=SR))
    assert rate == SR
    return samples[:, 0].copy()


def loud(clip: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.abs(clip.astype(np.int32)) > 300)


def content(clip: np.ndarray) -> np.ndarray:
    """The clip from its first to its last audible sample."""
    idx = loud(clip)
    return clip[idx[0] : idx[-1] + 1]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vad-cap-media")


# -- running the segmenter and checking its guarantees ------------------------------------


def without_pauses(events: list) -> list:
    """`events` less the `SpeechPaused` snapshots, once their promise is checked: a part
    that carries a snapshot's number is that snapshot's speech (same utterance, part and
    start, the same audio up to the shorter one's end), and a number is carried at most
    once."""
    snapshots: dict[int, UtteranceAudio] = {}
    carried: set[int] = set()
    for event in events:
        if isinstance(event, SpeechPaused):
            snap = event.utterance
            assert snap.speculation not in snapshots and snap.final
            snapshots[snap.speculation] = snap
        elif isinstance(event, SpeechEnded) and (n := event.utterance.speculation):
            part, snap = event.utterance, snapshots[n]
            assert n not in carried and part.final
            carried.add(n)
            assert (part.utterance_id, part.part, part.start_ms) == (
                snap.utterance_id,
                snap.part,
                snap.start_ms,
            )
            # the same audio up to the shorter one's end: only trailing silence differs (the
            # VAD's own end may keep less of it than the snapshot's end padding)
            same = min(part.pcm.size, snap.pcm.size)
            assert np.array_equal(part.pcm[:same], snap.pcm[:same])
    return [e for e in events if not isinstance(e, SpeechPaused)]


def segment(
    samples: np.ndarray,
    settings: VadSettings | None = None,
    chunk: int = FRAME,
    flush: bool = True,
) -> tuple[VadSegmenter, list]:
    """Every event the segmenter emits for `samples` pushed in `chunk`s, pauses included."""
    seg = VadSegmenter(settings or VadSettings(), id_prefix="cap")
    events = []
    for i in range(0, samples.size, chunk):
        events += seg.push(samples[i : i + chunk])
    if flush:
        events += seg.flush()
    return seg, events


def run_vad(samples: np.ndarray, settings: VadSettings | None = None, chunk: int = FRAME):
    """The segmenter's events less the pauses (their promise checked)."""
    seg, events = segment(samples, settings, chunk)
    return seg, without_pauses(events)


def utterances(events) -> list[list[UtteranceAudio]]:
    """The parts of each utterance, checking the event grammar and the part invariants:
    SpeechStarted, then parts 0..k of one utterance id with only the last final, each part
    non-empty, the first starting where SpeechStarted said, each contiguous with the one
    before."""
    out: list[list[UtteranceAudio]] = []
    started_at: float | None = None
    for event in events:
        if isinstance(event, SpeechStarted):
            assert started_at is None, "SpeechStarted inside an utterance"
            started_at = event.start_ms
            out.append([])
            continue
        assert started_at is not None, "SpeechEnded without SpeechStarted"
        part = event.utterance
        parts = out[-1]
        assert part.part == len(parts)
        assert part.pcm.size > 0 and part.pcm.size == round(part.duration_ms * SR / 1000)
        if parts:
            assert part.utterance_id == parts[0].utterance_id
            assert part.start_ms == parts[-1].end_ms  # contiguous, no overlap
        else:
            assert part.start_ms == started_at
        parts.append(part)
        if part.final:
            started_at = None
    assert started_at is None, "an utterance was left open"
    return out


def assert_exact(stream: np.ndarray, parts: list[UtteranceAudio]) -> None:
    """The parts' concatenation is exactly the stream's audio over the utterance."""
    joined = np.concatenate([p.pcm for p in parts])
    s = round(parts[0].start_ms * SR / 1000)
    np.testing.assert_array_equal(joined, stream[s : s + joined.size])


def voiced_frames(stream: np.ndarray, settings: VadSettings) -> np.ndarray:
    """Each 20 ms frame's verdict as the segmenter makes it: below the energy floor is
    unvoiced (and webrtcvad, which keeps state, never sees it), else webrtcvad decides."""
    vad = webrtcvad.Vad(settings.aggressiveness)
    out = []
    for i in range(stream.size // FRAME):
        frame = stream[i * FRAME : (i + 1) * FRAME]
        rms = np.sqrt(np.mean(np.square(frame, dtype=np.float64)))
        loud_enough = rms > 0 and 20 * np.log10(rms / 32768) >= settings.energy_floor_dbfs
        out.append(bool(loud_enough) and vad.is_speech(frame.tobytes(), SR))
    return np.array(out)


# -- the reported defect: a cap reached in the trailing silence -----------------------------


@pytest.mark.parametrize("speech_ms", [7_000, 7_400, 7_600, 7_680])
def test_answer_just_under_the_cap_then_silence_is_one_final_part(speech_ms: int) -> None:
    """A 7.4 s answer plus the 300 ms start padding reaches the 8 s cap 300 ms into its
    trailing silence. It used to be cut there into a 7.7 s part and a near-empty final
    part; it is one final part now (end padding shortened where it would pass the cap)."""
    stream = np.concatenate([silence(50), buzz(frames_of(speech_ms)), silence(150)])
    settings = VadSettings()
    _, events = run_vad(stream, settings)
    [parts] = utterances(events)
    assert len(parts) == 1, [(p.start_ms, p.end_ms) for p in parts]
    [part] = parts
    assert part.final and part.part == 0
    assert part.duration_ms <= CAP_MS
    speech_end = 1_000 + speech_ms
    assert part.start_ms == 1_000 - settings.start_padding_ms
    assert speech_end <= part.end_ms <= speech_end + settings.end_padding_ms
    assert_exact(stream, parts)


def test_no_speech_length_near_the_cap_leaves_a_silent_part() -> None:
    """Whatever the length of the answer around the cap, every part holds speech: the
    final part is never a sliver of trailing silence."""
    settings = VadSettings()
    for speech_ms in range(6_500, 9_000, 20):
        stream = np.concatenate([silence(50), buzz(frames_of(speech_ms)), silence(100)])
        voiced = voiced_frames(stream, settings)
        _, events = run_vad(stream, settings)
        [parts] = utterances(events)
        assert_exact(stream, parts)
        for p in parts:
            assert p.duration_ms <= CAP_MS
            first, last = round(p.start_ms / 20), round(p.end_ms / 20)
            assert voiced[first:last].sum() >= 9, (speech_ms, p.part, p.start_ms, p.end_ms)
        if 300 + speech_ms <= CAP_MS:  # the padded speech fits under the cap
            assert len(parts) == 1, (speech_ms, [(p.start_ms, p.end_ms) for p in parts])


def test_espeak_answer_of_7_4_s_then_silence_is_one_final_part(media: Path) -> None:
    text = (
        "I led the migration of our billing service to python, wrote the new ingestion "
        "jobs, and trained two junior engineers on the team along the way."
    )
    speech = content(speech_16k(media, text))
    assert speech.size >= 7.4 * SR, speech.size / SR
    answer = speech[: int(7.4 * SR)].copy()
    answer[-160:] = (answer[-160:] * np.linspace(1, 0, 160)).astype(np.int16)  # 10 ms fade
    stream = np.concatenate([np.zeros(SR, np.int16), answer, np.zeros(3 * SR, np.int16)])
    _, events = run_vad(stream)
    [parts] = utterances(events)
    assert [(p.part, p.final) for p in parts] == [(0, True)], [
        (p.start_ms, p.end_ms) for p in parts
    ]
    assert parts[0].duration_ms <= CAP_MS
    assert parts[0].start_ms <= 1_000 and parts[0].end_ms >= 8_400 - 100
    assert_exact(stream, parts)


# -- thinking pauses -----------------------------------------------------------------------

SENTENCES = [
    "I started as a backend developer at a small startup.",
    "We built a payment system in python and postgres.",
    "Later I moved to the data team and worked on recommendation models.",
    "The hardest part was serving them fast enough.",
    "So I learned to profile everything before optimizing it.",
    "That habit saved us a lot of money on servers.",
]
PAUSES_S = [1.5, 2.5, 1.8, 2.2, 2.0]


def thinking_answer(media: Path) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Six spoken sentences separated by 1.5-2.5 s thinking pauses; returns the stream and
    each sentence's audible span (samples)."""
    pieces, spans, pos = [np.zeros(SR // 2, np.int16)], [], SR // 2
    for i, text in enumerate(SENTENCES):
        sentence = content(speech_16k(media, text))
        pieces.append(sentence)
        spans.append((pos, pos + sentence.size))
        pos += sentence.size
        gap = np.zeros(int((PAUSES_S[i] if i < len(PAUSES_S) else 4.0) * SR), np.int16)
        pieces.append(gap)
        pos += gap.size
    return np.concatenate(pieces), spans


def test_thinking_pauses_inside_one_utterance_are_where_it_splits(media: Path) -> None:
    """With an end silence longer than the pauses (so a pause to think does not end the
    utterance), a long answer is cut only in unvoiced stretches, no part is mostly
    silence, and none passes the cap."""
    stream, spans = thinking_answer(media)
    settings = VadSettings(end_silence_ms=3_000)
    voiced = voiced_frames(stream, settings)
    in_sentence = np.zeros(stream.size, bool)
    for a, b in spans:
        in_sentence[a:b] = True
    _, events = run_vad(stream, settings)
    [parts] = utterances(events)
    assert len(parts) >= 3, [(p.start_ms, p.end_ms) for p in parts]
    assert_exact(stream, parts)
    for p in parts:
        assert p.duration_ms <= CAP_MS
        s = round(p.start_ms * SR / 1000)
        share = in_sentence[s : s + p.pcm.size].mean()
        assert share >= 0.4, (p.part, p.start_ms, p.end_ms, share)
    for p in parts[:-1]:
        cut = round(p.end_ms / 20)  # first frame of the next part
        # the frame the cut follows is unvoiced and quiet
        assert not voiced[cut - 1], p.end_ms
        before = stream[(cut - 1) * FRAME : cut * FRAME]
        assert np.abs(before.astype(np.int32)).max() < 300, p.end_ms
    # both sides of every cut hold speech: it is inside the answer, not after it
    for a, b in itertools.pairwise(parts):
        for side in (a, b):
            s = round(side.start_ms * SR / 1000)
            assert in_sentence[s : s + side.pcm.size].sum() >= SR // 2


def test_thinking_pauses_end_utterances_at_the_default_end_silence(media: Path) -> None:
    """At the default 800 ms end silence every thinking pause ends a VAD utterance (the
    answer turn is the interviewer's business, not the VAD's); none is split."""
    stream, spans = thinking_answer(media)
    _, events = run_vad(stream)
    utts = utterances(events)
    assert len(utts) == len(SENTENCES)
    for parts, (a, b) in zip(utts, spans, strict=True):
        assert [(p.part, p.final) for p in parts] == [(0, True)]
        assert parts[0].start_ms * 16 <= a and parts[0].end_ms * 16 >= b - 0.1 * SR


# -- speech that goes on past the cap -------------------------------------------------------


def test_continuous_speech_over_the_cap_still_splits() -> None:
    """20 s of unbroken voicing: no pause to cut at, so it is cut at the cap (at most 8 s
    a part) and every part holds speech."""
    stream = np.concatenate([silence(25), buzz(1_000), silence(100)])
    _, events = run_vad(stream)
    [parts] = utterances(events)
    assert len(parts) == 3, [(p.start_ms, p.end_ms) for p in parts]
    assert all(p.duration_ms <= CAP_MS for p in parts)
    assert parts[0].duration_ms >= CAP_MS - 1_500  # cut near the cap, not early
    assert_exact(stream, parts)


def test_words_over_the_cap_are_cut_in_a_gap_between_them() -> None:
    """Syllables of 300 ms with 60 ms gaps, for 20 s: every cut falls in a gap."""
    syllable = np.concatenate([buzz(15), silence(3)])
    stream = np.concatenate([silence(25), np.tile(syllable, 56), silence(100)])
    voiced = voiced_frames(stream, VadSettings())
    _, events = run_vad(stream)
    [parts] = utterances(events)
    assert len(parts) >= 3
    assert_exact(stream, parts)
    for p in parts[:-1]:
        assert not voiced[round(p.end_ms / 20) - 1], p.end_ms
        assert p.duration_ms <= CAP_MS


def test_a_pause_across_the_cap_then_more_speech_splits_inside_the_pause() -> None:
    """Speech up to 7.9 s into the part, a 600 ms pause across the cap, then more speech:
    the cut is in the pause, at or before the cap; the next part opens with the rest of
    the pause and then the resumed speech."""
    stream = np.concatenate([silence(50), buzz(380), silence(30), buzz(100), silence(60)])
    _, events = run_vad(stream)
    [parts] = utterances(events)
    assert len(parts) == 2
    first, last = parts
    assert first.end_ms <= 700 + CAP_MS
    assert 1_000 + 380 * 20 <= first.end_ms <= 1_000 + 410 * 20  # inside the pause
    assert last.final and last.end_ms >= 1_000 + 510 * 20
    assert_exact(stream, parts)


def test_sporadic_voicing_held_at_the_cap_is_split_after_the_end_silence() -> None:
    """One voiced frame in six after the cap: too much for the end silence (at most 10 %),
    too little to count as speech resuming. The part is not held for ever: it is split
    (within the cap) once such a stretch has lasted the end silence."""
    flicker = np.concatenate([buzz(1), silence(5)])
    stream = np.concatenate([silence(50), buzz(370), np.tile(flicker, 40), silence(100)])
    seg, events = run_vad(stream)
    [parts] = utterances(events)
    assert len(parts) >= 2
    assert all(p.duration_ms <= CAP_MS for p in parts)
    assert_exact(stream, parts)
    assert not seg.speaking


def test_the_cap_leaves_room_for_a_pause() -> None:
    """A pause held at the cap opens the next part, so the end silence plus the split
    search must fit in a part with room to spare."""
    VadSettings(max_utterance_ms=2_000, end_silence_ms=800, split_search_ms=1_000)
    with pytest.raises(ValueError, match="end_silence_ms"):
        VadSettings(max_utterance_ms=3_000, end_silence_ms=2_000, split_search_ms=1_000)


def test_end_of_stream_while_held_at_the_cap() -> None:
    """The track ends while the part is held past the cap (a pause, then speech too short
    to confirm itself): flush still keeps every part within the cap."""
    stream = np.concatenate([silence(50), buzz(380), silence(30), buzz(5)])
    _, events = run_vad(stream)
    [parts] = utterances(events)
    assert len(parts) == 2
    assert all(p.duration_ms <= CAP_MS for p in parts)
    assert 1_000 + 380 * 20 <= parts[0].end_ms <= 700 + CAP_MS
    assert_exact(stream, parts)


# -- property: any voiced/unvoiced pattern ---------------------------------------------------

RUN = st.tuples(st.sampled_from(["voiced", "unvoiced", "flicker"]), st.integers(1, 150))


def pattern(runs: list[tuple[str, int]]) -> np.ndarray:
    """Lead silence, the runs (a "flicker" is one voiced frame in six), trailing silence."""
    pieces = [silence(10)]
    for kind, n in runs:
        if kind == "voiced":
            pieces.append(buzz(n))
        elif kind == "unvoiced":
            pieces.append(silence(n))
        else:
            pieces.append(np.tile(np.concatenate([buzz(1), silence(5)]), n // 6 + 1))
    pieces.append(silence(150))
    return np.concatenate(pieces)


@settings(
    max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    runs=st.lists(RUN, min_size=1, max_size=40),
    cap_and_end=st.sampled_from(
        [(2_000, 400), (2_000, 800), (3_000, 1_400), (8_000, 800), (8_000, 3_000)]
    ),
    chunk=st.sampled_from([37, 320, 1_000, 4_800]),
)
def test_any_pattern_keeps_the_part_guarantees(runs, cap_and_end, chunk) -> None:
    """Random voiced/unvoiced/flickering runs, pushed in odd chunk sizes: every
    SpeechStarted gets a final SpeechEnded, parts are numbered from 0, contiguous, within
    the cap, their concatenation is exactly the stream's audio, every part holds voiced
    frames, and every cut has speech after it in the same utterance."""
    cap_ms, end_silence_ms = cap_and_end
    stream = pattern(runs)
    settings_ = VadSettings(
        max_utterance_ms=cap_ms, end_silence_ms=end_silence_ms, end_padding_ms=200
    )
    voiced = voiced_frames(stream, settings_)
    _, events = run_vad(stream, settings_, chunk=chunk)
    for parts in utterances(events):
        assert_exact(stream, parts)
        for p in parts:
            assert p.duration_ms <= cap_ms
            first, last = round(p.start_ms / 20), round(p.end_ms / 20)
            assert voiced[first:last].any(), (p.part, p.start_ms, p.end_ms)
        for p in parts[:-1]:
            # a cut at the cap has speech after it in the same utterance
            cut = round(p.end_ms / 20)
            assert voiced[cut : round(parts[-1].end_ms / 20)].any()


# -- pauses: the part sent ahead (`SpeechPaused`) ------------------------------------------


def _events(stream: np.ndarray, settings: VadSettings, flush: bool = True) -> list:
    _, events = segment(stream, settings, flush=flush)
    without_pauses(events)  # checks the promise
    return events


def test_a_pause_sends_the_part_ahead_and_a_quiet_end_carries_its_number() -> None:
    """Speech, a 400 ms pause (a snapshot after 300 ms), more speech (that snapshot is
    stale), then silence: a second snapshot, and the VAD's end carries its number."""
    stream = np.concatenate(
        [silence(25), buzz(frames_of(2_000)), silence(20), buzz(frames_of(1_000)), silence(75)]
    )
    events = _events(stream, VadSettings(), flush=False)
    assert [type(e) for e in events] == [SpeechStarted, SpeechPaused, SpeechPaused, SpeechEnded]
    first, second, end = events[1].utterance, events[2].utterance, events[3].utterance
    assert (first.speculation, second.speculation, end.speculation) == (1, 2, 2)
    # the first snapshot holds the first stretch and the end padding, no more
    assert first.end_ms == 500 + 2_000 + 200
    assert end.final and second.final and end.utterance_id == second.utterance_id


def test_done_within_a_pause_cuts_exactly_the_snapshot() -> None:
    """The turn ends (flush) 350 ms into a pause: the part is the snapshot sample for
    sample, so a transcript made from the snapshot is this part's transcript."""
    stream = np.concatenate([silence(25), buzz(frames_of(2_500)), silence(frames_of(350))])
    events = _events(stream, VadSettings())
    assert [type(e) for e in events] == [SpeechStarted, SpeechPaused, SpeechEnded]
    snap, end = events[1].utterance, events[2].utterance
    assert end.speculation == snap.speculation == 1
    assert np.array_equal(end.pcm, snap.pcm) and end.start_ms == snap.start_ms


def test_done_before_the_pause_is_long_enough_carries_no_number() -> None:
    stream = np.concatenate([silence(25), buzz(frames_of(2_500)), silence(frames_of(200))])
    events = _events(stream, VadSettings())
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    assert events[1].utterance.speculation == 0


def test_pauses_off_and_inconsistent_settings() -> None:
    stream = np.concatenate([silence(25), buzz(frames_of(2_000)), silence(60)])
    events = _events(stream, VadSettings(speculate_after_ms=0))
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    assert events[1].utterance.speculation == 0
    with pytest.raises(ValueError, match="speculate_after_ms"):
        VadSettings(speculate_after_ms=800)  # not shorter than the end silence
    with pytest.raises(ValueError, match="speculate_after_ms"):
        VadSettings(speculate_after_ms=100)  # less than the end padding
