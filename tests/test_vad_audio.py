"""Audio conversion and VAD segmentation on real espeak-ng speech and known silences."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np
import pytest

from deploy.fake_media import make_silence_wav, make_speech_wav, read_wav
from stream.audio import AudioConverter, AudioFormatError, resample_to_16k_mono
from stream.vad import SpeechEnded, SpeechStarted, VadSegmenter, VadSettings
from tests.test_vad_cap import run_vad  # pauses checked, then left out

SR = 16_000


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vad-media")


def speech_16k(media: Path, text: str, voice: str = "en-us") -> np.ndarray:
    samples, rate = read_wav(make_speech_wav(media, text, voice=voice))
    return resample_to_16k_mono(samples, rate, samples.shape[1])


def content_bounds_ms(clip: np.ndarray, offset: int) -> tuple[float, float]:
    """Where the clip's audible content starts and ends (ms in the stream)."""
    loud = np.flatnonzero(np.abs(clip.astype(np.int32)) > 300)
    return (offset + loud[0]) * 1000 / SR, (offset + loud[-1] + 1) * 1000 / SR


def utterances(events) -> list:
    return [e.utterance for e in events if isinstance(e, SpeechEnded)]


def test_two_utterances_split_at_the_known_gap(media: Path) -> None:
    one = speech_16k(media, "I have worked as a backend engineer for two years.")
    two = speech_16k(media, "Mostly python and database work.")
    lead, gap, tail = (
        np.zeros(SR // 2, np.int16),
        np.zeros(3 * SR // 2, np.int16),
        np.zeros(SR, np.int16),
    )
    stream = np.concatenate([lead, one, gap, two, tail])
    start1, end1 = content_bounds_ms(one, lead.size)
    start2, end2 = content_bounds_ms(two, lead.size + one.size + gap.size)

    settings = VadSettings()
    _, events = run_vad(stream, settings)
    utts = utterances(events)
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded, SpeechStarted, SpeechEnded]
    assert len(utts) == 2
    tol = 300.0
    # starts include the start padding, ends the end padding: compare against those
    for utt, (start, end) in zip(utts, [(start1, end1), (start2, end2)], strict=True):
        assert abs(utt.start_ms - (start - settings.start_padding_ms)) <= tol, (utt, start)
        assert abs(utt.end_ms - (end + settings.end_padding_ms)) <= tol, (utt, end)
        assert utt.final and utt.part == 0
        assert utt.pcm.dtype == np.int16
        assert utt.pcm.size == round((utt.end_ms - utt.start_ms) * SR / 1000)
        # the pcm is exactly the stream's samples between start and end
        s = round(utt.start_ms * SR / 1000)
        np.testing.assert_array_equal(utt.pcm, stream[s : s + utt.pcm.size])
    # both utterances end inside the gap and start after it
    assert utts[0].end_ms < start2 and utts[1].start_ms > end1
    assert events[0].start_ms == utts[0].start_ms
    assert utts[0].utterance_id != utts[1].utterance_id


def test_chunk_size_does_not_change_the_cut(media: Path) -> None:
    one = speech_16k(media, "Mostly python and database work.")
    stream = np.concatenate([np.zeros(SR // 2, np.int16), one, np.zeros(SR, np.int16)])
    cuts = set()
    for chunk in (37, 320, 1000, stream.size):
        _, events = run_vad(stream, chunk=chunk)
        cuts.add(tuple((u.start_ms, u.end_ms) for u in utterances(events)))
    assert len(cuts) == 1


def test_max_length_split_loses_nothing(media: Path) -> None:
    text = (
        "I designed the data pipeline for our recommendation service, then I rewrote the "
        "ingestion layer in python, and finally I moved the database to a managed cluster."
    )
    speech = speech_16k(media, text)
    stream = np.concatenate([np.zeros(SR // 2, np.int16), speech, np.zeros(SR, np.int16)])
    settings = VadSettings(max_utterance_ms=3000, split_search_ms=1000, end_silence_ms=1500)
    _, events = run_vad(stream, settings)
    parts = utterances(events)
    assert sum(isinstance(e, SpeechStarted) for e in events) == 1
    assert len(parts) >= 3, [(p.start_ms, p.end_ms) for p in parts]
    assert [p.part for p in parts] == list(range(len(parts)))
    assert [p.final for p in parts] == [False] * (len(parts) - 1) + [True]
    assert len({p.utterance_id for p in parts}) == 1
    for a, b in itertools.pairwise(parts):
        assert a.end_ms == b.start_ms  # contiguous, no overlap
    assert all(p.duration_ms <= settings.max_utterance_ms for p in parts)
    joined = np.concatenate([p.pcm for p in parts])
    s = round(parts[0].start_ms * SR / 1000)
    np.testing.assert_array_equal(joined, stream[s : s + joined.size])
    # the whole speech is covered
    start, end = content_bounds_ms(speech, SR // 2)
    assert parts[0].start_ms <= start and parts[-1].end_ms >= end - 300


def test_silence_gives_no_events(media: Path) -> None:
    samples, rate = read_wav(make_silence_wav(media / "silence.wav", 3.0))
    silence = resample_to_16k_mono(samples, rate, 1)
    seg, events = run_vad(silence)
    assert events == []
    assert seg.frames_seen == 3000 // 20 and seg.frames_voiced == 0


@pytest.mark.parametrize("level", [30, 100, 1000])
def test_white_noise_makes_no_utterance(level: int) -> None:
    """Hiss from -60 dBFS to -30 dBFS: at the default aggressiveness nothing is cut."""
    noise = (np.random.default_rng(level).standard_normal(5 * SR) * level).astype(np.int16)
    seg, events = run_vad(noise)
    assert utterances(events) == [], seg.frames_voiced


def test_speech_in_noise_is_still_found(media: Path) -> None:
    speech = speech_16k(media, "Mostly python and database work.")
    rng = np.random.default_rng(1)
    stream = np.concatenate([np.zeros(SR, np.int16), speech, np.zeros(SR, np.int16)])
    noisy = np.clip(stream + rng.standard_normal(stream.size) * 100, -32768, 32767)
    _, events = run_vad(noisy.astype(np.int16))
    assert len(utterances(events)) == 1


def test_blip_is_dropped_without_events(media: Path) -> None:
    speech = speech_16k(media, "Mostly python and database work.")
    start, _ = content_bounds_ms(speech, 0)
    s = round(start * SR / 1000)
    blip = speech[s : s + SR * 35 // 100]  # 350 ms of speech: triggers, then stops
    stream = np.concatenate([np.zeros(SR, np.int16), blip, np.zeros(2 * SR, np.int16)])
    seg, events = run_vad(stream, VadSettings(min_utterance_ms=600))
    assert events == []
    assert seg.blips_dropped == 1
    # the same audio is an utterance when the minimum allows it
    _, events = run_vad(stream, VadSettings(min_utterance_ms=100))
    assert len(utterances(events)) == 1


def test_flush_closes_an_open_utterance(media: Path) -> None:
    speech = speech_16k(media, "Mostly python and database work.")
    stream = np.concatenate([np.zeros(SR // 2, np.int16), speech])  # no trailing silence
    seg, events = run_vad(stream)
    utts = utterances(events)
    assert len(utts) == 1 and utts[0].final
    assert not seg.speaking


def test_settings_validate() -> None:
    with pytest.raises(ValueError):
        VadSettings(start_voiced_ms=500, start_window_ms=300)
    with pytest.raises(ValueError):
        VadSettings(frame_ms=25)
    with pytest.raises(ValueError):
        VadSettings(unknown_field=1)
    with pytest.raises(TypeError):
        VadSegmenter().push(np.zeros(10, np.float32))


def _frames(samples: np.ndarray, rate: int, layout: str, per_frame: int) -> list[av.AudioFrame]:
    """PyAV packed s16 frames (as aiortc delivers them) from (n, channels) samples."""
    frames = []
    for i in range(0, samples.shape[0] - per_frame + 1, per_frame):
        chunk = np.ascontiguousarray(samples[i : i + per_frame]).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout=layout)
        frame.sample_rate = rate
        frame.pts = i
        frames.append(frame)
    return frames


def test_converter_48k_stereo_to_16k_mono() -> None:
    seconds = 1.0
    t = np.arange(int(48_000 * seconds)) / 48_000
    left = np.sin(2 * np.pi * 440 * t) * 10_000
    right = np.sin(2 * np.pi * 440 * t) * 6_000
    stereo = np.stack([left, right], axis=1).astype(np.int16)
    conv = AudioConverter()
    chunks = [conv.convert(f) for f in _frames(stereo, 48_000, "stereo", 960)]
    chunks.append(conv.flush())
    out = np.concatenate(chunks)
    assert out.dtype == np.int16 and out.ndim == 1
    assert abs(out.size - 16_000 * seconds) <= 2, out.size
    assert conv.samples_out == out.size
    # still a 440 Hz tone at the mean amplitude of both channels
    spectrum = np.abs(np.fft.rfft(out[1000:15000].astype(np.float64)))
    freq = np.argmax(spectrum) * 16_000 / 14_000
    assert abs(freq - 440) < 5
    peak = np.abs(out[1000:15000]).max()
    assert 7_000 < peak < 8_700, peak
    # the NumPy path agrees with FFmpeg's resampler
    ref = resample_to_16k_mono(stereo, 48_000, 2)
    assert ref.size == 16_000
    assert abs(int(np.abs(ref[1000:15000]).max()) - int(peak)) < 300


def test_converter_survives_a_format_change() -> None:
    t = np.arange(48_000) / 48_000
    tone = (np.sin(2 * np.pi * 300 * t) * 8000).astype(np.int16)
    conv = AudioConverter()
    out = [conv.convert(f) for f in _frames(tone[:24_000, None], 48_000, "mono", 960)]
    stereo = np.stack([tone[24_000:], tone[24_000:]], axis=1)
    out += [conv.convert(f) for f in _frames(stereo, 48_000, "stereo", 960)]
    out.append(conv.flush())
    total = sum(c.size for c in out)
    assert abs(total - 16_000) <= 4, total


def test_numpy_resampler_shapes_and_errors() -> None:
    x = np.zeros((44_100, 2), np.int16)
    assert resample_to_16k_mono(x, 44_100, 2).size == 16_000
    assert resample_to_16k_mono(np.zeros(16_000, np.int16), 16_000).size == 16_000
    floats = np.full(48_000, 0.5, np.float32)
    y = resample_to_16k_mono(floats, 48_000)
    assert y.dtype == np.int16 and abs(int(y[8000]) - 16384) < 5
    with pytest.raises(AudioFormatError):
        resample_to_16k_mono(np.zeros(5, np.int16), 48_000, 2)


def test_converter_feeds_the_vad(media: Path) -> None:
    """The gateway path end to end: 48 kHz stereo frames → converter → VAD → utterance."""
    wav = make_speech_wav(
        media, "Mostly python and database work.", channels=2, lead_silence=0.5, trail_silence=1.0
    )
    samples, rate = read_wav(wav)
    assert rate == 48_000 and samples.shape[1] == 2
    conv, seg = AudioConverter(), VadSegmenter(id_prefix="g")
    events = []
    for frame in _frames(samples, 48_000, "stereo", 960):
        events += seg.push(conv.convert(frame))
    events += seg.push(conv.flush()) + seg.flush()
    utts = utterances(events)
    assert len(utts) == 1
    assert 0 < utts[0].start_ms < 500 and utts[0].end_ms < samples.shape[0] / 48
