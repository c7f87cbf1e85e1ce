"""Streaming voice-activity segmentation: 16 kHz mono int16 samples in, utterances out.

`VadSegmenter` is pure logic in the push/iterate style of livekit-agents' VAD streams: no
I/O and no clock reads. Time is the sample count (``ms = samples / 16``) from the first
sample pushed; the caller adds its own wall-clock offset. ::

    seg = VadSegmenter(VadSettings())
    for chunk in chunks:                     # any size, e.g. AudioConverter output
        for event in seg.push(chunk):
            if isinstance(event, SpeechStarted): ...
            elif isinstance(event, SpeechEnded): publish(event.utterance)
    for event in seg.flush(): ...            # end of the track

How an utterance is cut (all lengths in `VadSettings`, multiples of ``frame_ms``):

* Each ``frame_ms`` frame (10, 20 or 30 ms) is classified by WebRTC's VAD at
  ``aggressiveness`` 0-3; frames quieter than ``energy_floor_dbfs`` count as unvoiced
  whatever the VAD says (keeps faint hiss and hum from triggering it).
* Start: at least ``start_voiced_ms`` of voiced frames within the last ``start_window_ms``.
  The utterance begins ``start_padding_ms`` before the first voiced frame of that window
  (as far as audio is buffered), so soft onsets are kept.
* `SpeechStarted` is emitted once the speech has lasted ``min_utterance_ms`` (first voiced to
  last voiced frame); a triggered stretch that ends sooner is a blip and is dropped without
  any event, so every `SpeechStarted` is followed by a `SpeechEnded`.
* End: the last ``end_silence_ms`` hold at most ``end_voiced_ratio`` voiced frames. The
  utterance ends ``end_padding_ms`` after the silence began (and never before its last
  voiced frame); the rest of the silence stays buffered as pre-roll for the next utterance.
* Length cap: a part is never longer than ``max_utterance_ms`` (a hard limit), and the cap
  never cuts in the trailing silence: a part is split only when speech goes on past the
  cap, and the cut goes before that speech. Once the current part holds frames past the
  cap (nothing past the cap is emitted in it; the frames are held):

  - speech past the cap (the newest frame voiced and at least ``start_voiced_ms`` voiced
    in the last ``start_window_ms``, the start trigger's own test): split before that
    speech. Talking through the cap, that is a cut just before the cap (typically between
    words); after a pause across the cap, a cut inside the pause at or before the cap
    (the rest of the pause opens the next part);
  - a pause (anything else): hold. If the end silence completes, the utterance ends as
    usual in one final part, cut at the cap at the latest (its end padding shortened if
    need be). So a 7.4 s answer, which reaches the 8 s cap in its trailing silence, is
    one final part, not a 7.6 s part and an empty one;
  - a pause that neither ends nor turns into speech within ``end_silence_ms`` after the
    cap (sporadic voicing) is split as if it were speech.

  The cut goes right after the quietest frame of the ``split_search_ms`` before the
  speech that goes on (unvoiced frames first, then the lowest energy in whole dB, then
  the frame that leaves ``start_padding_ms`` before that speech), never before the part's
  first voiced frame; the part is emitted with ``final=False``. Parts are numbered from
  0, contiguous and non-overlapping (their concatenation is exactly the utterance
  audio), and each holds voiced frames: the next part starts with speech (or with the
  rest of a pause and then speech). ``end_silence_ms + split_search_ms`` must be shorter
  than the cap so that a part has room for such a pause.
* Pause: once the speech has paused for ``speculate_after_ms`` (no voiced frame since),
  `SpeechPaused` carries the current part as `flush` would cut it at that moment (a
  snapshot, numbered ``speculation`` 1, 2, … per segmenter). If the part then ends with no
  voiced frame after the snapshot (the VAD's end silence, or `flush` when the caller knows
  the turn is over), its `SpeechEnded` carries the same number: the same speech, only more
  trailing silence, so a transcript made from the snapshot while the candidate was still
  deciding whether to go on stands for it. Speech that resumes makes the snapshot stale
  (its number never comes back). ``0`` turns pauses off.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np
import webrtcvad
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SAMPLE_RATE = 16_000


class VadSettings(BaseSettings):
    """How speech is cut into utterances (env prefix ``INTERVUE_VAD_``)."""

    model_config = SettingsConfigDict(env_prefix="INTERVUE_VAD_", extra="forbid")

    #: WebRTC VAD frame length; the VAD accepts only 10, 20 or 30 ms.
    frame_ms: Literal[10, 20, 30] = 20
    #: 0 (least aggressive about filtering out non-speech) .. 3 (most).
    aggressiveness: int = Field(2, ge=0, le=3)
    #: Frames whose RMS is below this level are unvoiced whatever the VAD says.
    energy_floor_dbfs: float = Field(-60.0, le=0)
    #: Start trigger: this much voiced audio within the last `start_window_ms`.
    start_window_ms: int = Field(300, ge=10, le=2000)
    start_voiced_ms: int = Field(180, ge=10, le=2000)
    #: Audio kept before the first voiced frame of the trigger window.
    start_padding_ms: int = Field(300, ge=0, le=2000)
    #: End of utterance: this much trailing audio with at most `end_voiced_ratio` voiced.
    end_silence_ms: int = Field(800, ge=100, le=10_000)
    end_voiced_ratio: float = Field(0.1, ge=0.0, lt=0.5)
    #: Silence kept after the speech (at most `end_silence_ms`).
    end_padding_ms: int = Field(200, ge=0, le=10_000)
    #: Speech shorter than this (first to last voiced frame) is a blip and is dropped.
    min_utterance_ms: int = Field(300, ge=0, le=10_000)
    #: Longest part sent to the recogniser (Whisper's window is 30 s), a hard limit. Long
    #: answers are cut into parts of at most this (at a pause, never in the trailing
    #: silence) so the speech worker transcribes them while the candidate is still
    #: talking: when they stop, only the last part is left, which keeps end-of-answer →
    #: transcript near a second even for long answers.
    max_utterance_ms: int = Field(8_000, ge=2_000, le=600_000)
    #: A part that reaches the cap is split at the quietest frame in this stretch before
    #: the speech that goes on.
    split_search_ms: int = Field(1_000, ge=10, le=10_000)
    #: A pause this long inside speech sends the part so far ahead (`SpeechPaused`), so
    #: that its transcript is ready, or under way, when the turn ends within the pause:
    #: Done pressed, or the end silence above. 0: off. At least `end_padding_ms` (the
    #: snapshot holds the same padding a cut would) and shorter than `end_silence_ms`.
    speculate_after_ms: int = Field(300, ge=0, le=10_000)

    @model_validator(mode="after")
    def _consistent(self) -> VadSettings:
        if self.start_voiced_ms > self.start_window_ms:
            raise ValueError("start_voiced_ms must not exceed start_window_ms")
        if self.end_padding_ms > self.end_silence_ms:
            raise ValueError("end_padding_ms must not exceed end_silence_ms")
        if self.end_silence_ms + self.split_search_ms >= self.max_utterance_ms:
            # A pause (up to end_silence_ms) held at the cap opens the next part; the part
            # must have room for it plus the search stretch and some speech.
            raise ValueError(
                "end_silence_ms + split_search_ms must be shorter than max_utterance_ms"
            )
        if self.speculate_after_ms and not (
            self.end_padding_ms <= self.speculate_after_ms < self.end_silence_ms
        ):
            raise ValueError(
                "speculate_after_ms (0: off) must be at least end_padding_ms and shorter "
                "than end_silence_ms"
            )
        return self


@dataclass
class UtteranceAudio:
    """One utterance (or one part of a long one), ready for the bus."""

    #: 16 kHz mono int16 samples.
    pcm: np.ndarray
    #: Stream time of the first and one-past-last sample (ms from the first pushed sample).
    start_ms: float
    end_ms: float
    #: Part number within the utterance (0, 1, ...); `final` marks the last part.
    part: int
    final: bool
    utterance_id: str
    #: Nonzero: the same speech as the `SpeechPaused` snapshot with this number (in a
    #: snapshot: its own number).
    speculation: int = 0

    @property
    def duration_ms(self) -> float:
        return self.end_ms - self.start_ms


@dataclass
class SpeechStarted:
    """Speech began at `start_ms` (stream time, includes the start padding)."""

    start_ms: float


@dataclass
class SpeechEnded:
    """A part of an utterance is complete; ``utterance.final`` says whether speech ended
    (True) or the part was cut at the length cap and more follows (False)."""

    utterance: UtteranceAudio


@dataclass
class SpeechPaused:
    """The speech paused for `speculate_after_ms`: `utterance` is the current part as it
    would be cut now (``final=True``, its ``speculation`` number). Nothing ends: speech
    may go on; see the module docstring for when a later part carries the number."""

    utterance: UtteranceAudio


VadEvent = SpeechStarted | SpeechEnded | SpeechPaused


def _dbfs(frame: np.ndarray) -> float:
    if frame.size == 0:
        return -math.inf
    rms = math.sqrt(float(np.mean(np.square(frame, dtype=np.float64))))
    return 20.0 * math.log10(rms / 32768.0) if rms > 0 else -math.inf


class VadSegmenter:
    """Push 16 kHz mono int16 samples, get `SpeechStarted` / `SpeechEnded` events."""

    def __init__(self, settings: VadSettings | None = None, *, id_prefix: str | None = None):
        self.settings = s = settings or VadSettings()
        self._vad = webrtcvad.Vad(s.aggressiveness)
        self.frame_len = SAMPLE_RATE * s.frame_ms // 1000

        def frames(ms: int) -> int:
            return max(1, math.ceil(ms / s.frame_ms))

        self._window = frames(s.start_window_ms)
        self._start_needed = frames(s.start_voiced_ms)
        self._pad_start = s.start_padding_ms // s.frame_ms
        self._end_window = frames(s.end_silence_ms)
        self._end_max_voiced = int(s.end_voiced_ratio * self._end_window)
        self._pad_end = s.end_padding_ms // s.frame_ms
        self._min_frames = s.min_utterance_ms // s.frame_ms
        self._max_frames = s.max_utterance_ms // s.frame_ms
        self._search = frames(s.split_search_ms)
        self._speculate = frames(s.speculate_after_ms) if s.speculate_after_ms else 0
        self._id_prefix = id_prefix if id_prefix is not None else uuid.uuid4().hex[:8]

        self._pending = np.zeros(0, np.int16)  # samples short of a whole frame
        self._next_index = 0  # index of the next frame
        # Idle: recent frames (index, samples, voiced, energy) for pre-roll and the trigger.
        self._recent: deque[tuple[int, np.ndarray, bool, float]] = deque(
            maxlen=self._window + self._pad_start
        )
        # Speaking: frames of the current part.
        self._speaking = False
        self._part_frames: list[tuple[int, np.ndarray, bool, float]] = []
        self._part = 0
        self._started_emitted = False
        self._first_voiced = 0
        self._last_voiced = 0
        self._tail_voiced: deque[bool] = deque(maxlen=self._end_window)
        self._count = 0
        self._utterance_id = ""
        self._speculations = 0
        # The latest snapshot of the current part: (its number, the absolute index of the
        # last voiced frame it holds); None once the part is emitted.
        self._snapshot: tuple[int, int] | None = None
        self.frames_seen = 0
        self.frames_voiced = 0
        self.blips_dropped = 0

    # -- public -----------------------------------------------------------------------

    @property
    def speaking(self) -> bool:
        """True between `SpeechStarted` and the final `SpeechEnded`."""
        return self._speaking and self._started_emitted

    @property
    def position_ms(self) -> float:
        """Stream time of the samples processed so far (whole frames)."""
        return self._ms(self._next_index)

    def push(self, samples: np.ndarray) -> list[VadEvent]:
        """Feed samples (any length); returns the events they complete, in order."""
        x = np.asarray(samples)
        if x.dtype != np.int16:
            raise TypeError(f"expected int16 samples, got {x.dtype}")
        if x.ndim != 1:
            raise ValueError(f"expected mono 1-D samples, got shape {x.shape}")
        buf = np.concatenate([self._pending, x]) if self._pending.size else x
        whole = buf.size - buf.size % self.frame_len
        events: list[VadEvent] = []
        for off in range(0, whole, self.frame_len):
            self._frame(buf[off : off + self.frame_len].copy(), events)
        self._pending = buf[whole:].copy()
        return events

    def flush(self) -> list[VadEvent]:
        """End of stream: close an utterance in progress (a trailing partial frame is
        dropped). The segmenter can be reused afterwards; its clock keeps running."""
        events: list[VadEvent] = []
        while self._speaking:
            last_voiced = self._last_voiced - self._part_frames[0][0]
            if not self._started_emitted or last_voiced < self._max_frames:
                self._finish(last_voiced + 1 + self._pad_end, events)
                break
            # The stream stopped while the part was held past the cap and voiced frames
            # followed the cap (speech not yet confirmed): split before their run first.
            run_start = last_voiced
            while run_start > 0 and self._part_frames[run_start - 1][2]:
                run_start -= 1
            speech_at = run_start if run_start > 0 else self._max_frames
            self._split(min(self._max_frames, speech_at), speech_at, events)
        self._pending = np.zeros(0, np.int16)
        return events

    # -- internals --------------------------------------------------------------------

    def _ms(self, frame_index: int) -> float:
        return frame_index * self.settings.frame_ms

    def _classify(self, frame: np.ndarray) -> tuple[bool, float]:
        energy = _dbfs(frame)
        if energy < self.settings.energy_floor_dbfs:
            return False, energy
        return self._vad.is_speech(frame.tobytes(), SAMPLE_RATE), energy

    def _frame(self, frame: np.ndarray, events: list[VadEvent]) -> None:
        index = self._next_index
        self._next_index += 1
        voiced, energy = self._classify(frame)
        self.frames_seen += 1
        self.frames_voiced += voiced
        item = (index, frame, voiced, energy)
        if not self._speaking:
            self._recent.append(item)
            self._maybe_start(events)
            return
        self._part_frames.append(item)
        self._tail_voiced.append(voiced)
        if voiced:
            self._last_voiced = index
        if not self._started_emitted and self._last_voiced - self._first_voiced + 1 >= max(
            1, self._min_frames
        ):
            self._started_emitted = True
            events.append(SpeechStarted(self._ms(self._part_frames[0][0])))
        if len(self._tail_voiced) == self._end_window and (
            sum(self._tail_voiced) <= self._end_max_voiced
        ):
            silence_start = len(self._part_frames) - self._end_window
            # The window may hold a few voiced frames after its start: never cut them off.
            last_voiced = self._last_voiced - self._part_frames[0][0]
            self._finish(max(silence_start + self._pad_end, last_voiced + 1), events)
            return
        if self._started_emitted and len(self._part_frames) > self._max_frames:
            self._past_cap(events)
        elif (
            self._speculate
            and self._started_emitted
            and index - self._last_voiced == self._speculate
        ):
            self._pause(events)

    def _maybe_start(self, events: list[VadEvent]) -> None:
        window = list(self._recent)[-self._window :]
        if sum(v for _, _, v, _ in window) < self._start_needed:
            return
        first_voiced = next(i for i, _, v, _ in window if v)
        begin = first_voiced - self._pad_start
        self._part_frames = [item for item in self._recent if item[0] >= begin]
        self._recent.clear()
        self._speaking = True
        self._started_emitted = False
        self._part = 0
        self._first_voiced = first_voiced
        self._last_voiced = max(i for i, _, v, _ in window if v)
        self._tail_voiced.clear()
        for _, _, v, _ in self._part_frames:
            self._tail_voiced.append(v)
        self._count += 1
        self._utterance_id = f"{self._id_prefix}-{self._count:04d}"
        if self._last_voiced - self._first_voiced + 1 >= max(1, self._min_frames):
            self._started_emitted = True
            events.append(SpeechStarted(self._ms(self._part_frames[0][0])))

    def _audio(self, frames: list, final: bool, speculation: int) -> UtteranceAudio:
        return UtteranceAudio(
            pcm=np.concatenate([f for _, f, _, _ in frames]),
            start_ms=self._ms(frames[0][0]),
            end_ms=self._ms(frames[-1][0] + 1),
            part=self._part,
            final=final,
            utterance_id=self._utterance_id,
            speculation=speculation,
        )

    def _emit(self, frames: list, final: bool, events: list[VadEvent]) -> None:
        speculation = 0
        if final and self._snapshot is not None:
            number, last_voiced = self._snapshot
            # the snapshot's speech, and nothing voiced after it, is in this part
            if last_voiced == self._last_voiced and frames[-1][0] >= last_voiced:
                speculation = number
        self._snapshot = None
        events.append(SpeechEnded(self._audio(frames, final, speculation)))

    def _pause(self, events: list[VadEvent]) -> None:
        """The part as `flush` would cut it now, ahead of the turn's end."""
        last_voiced = self._last_voiced - self._part_frames[0][0]
        cut = min(last_voiced + 1 + self._pad_end, len(self._part_frames))
        self._speculations += 1
        self._snapshot = (self._speculations, self._last_voiced)
        frames = self._part_frames[:cut]
        events.append(SpeechPaused(self._audio(frames, True, self._speculations)))

    def _finish(self, cut: int, events: list[VadEvent]) -> None:
        """End the utterance after the first `cut` frames of the current part; the frames
        after the cut go back to the idle buffer as pre-roll."""
        cut = max(1, min(cut, len(self._part_frames), self._max_frames))
        kept, rest = self._part_frames[:cut], self._part_frames[cut:]
        if self._started_emitted:
            self._emit(kept, True, events)
        else:
            self.blips_dropped += 1
        self._snapshot = None
        self._speaking = False
        self._started_emitted = False
        self._part_frames = []
        self._tail_voiced.clear()
        self._recent.clear()
        for item in rest:
            self._recent.append(item)

    def _first_voiced_from(self, start: int) -> int:
        """Index (in the current part) of the first voiced frame at or after `start`."""
        frames = self._part_frames
        return next((k for k in range(start, len(frames)) if frames[k][2]), len(frames))

    def _past_cap(self, events: list[VadEvent]) -> None:
        """The part holds frames past the cap; nothing past the cap is emitted in it."""
        n = len(self._part_frames)
        start = max(0, n - self._window)
        voiced = sum(v for _, _, v, _ in self._part_frames[start:])
        if self._part_frames[-1][2] and voiced >= self._start_needed:
            # Speech goes on past the cap: split before it, so the next part holds it (at
            # least `start_voiced_ms` voiced) and the cut is never in trailing silence.
            first = self._first_voiced_from(start)
            self._split(min(self._max_frames, first), first, events)
        elif n - self._max_frames >= self._end_window:
            # Neither ended nor resumed in end_silence_ms (sporadic voicing): split anyway.
            self._split(self._max_frames, n, events)
        # Otherwise a pause: hold the part until the end silence completes (one final part,
        # cut at the cap at the latest, see `_finish`) or speech resumes (a split before it).

    def _split(self, limit: int, speech_at: int, events: list[VadEvent]) -> None:
        """Emit the current part up to a cut at most `limit` frames in, chosen among the
        `split_search_ms` before `limit` (speech goes on from frame `speech_at`): unvoiced
        frames first, then the quietest (whole dB), then the one leaving `start_padding_ms`
        before `speech_at`. The cut goes right after the chosen frame."""
        frames = self._part_frames
        first_voiced = self._first_voiced_from(0)
        hi = max(1, min(limit, len(frames)))
        # The part keeps at least its first voiced frame, so no part is silence only. A part
        # that opened with the rest of a pause may have no speech before `limit`: then it is
        # cut inside the speech that goes on, as late as the cap allows.
        if max(hi - self._search, first_voiced) >= hi:
            hi = max(1, min(self._max_frames, len(frames)))
        lo = min(hi - 1, max(hi - self._search, first_voiced))
        preferred = speech_at - self._pad_start - 1

        def key(k: int) -> tuple[bool, float, int]:
            _, _, voiced, energy = frames[k]
            level = math.floor(energy) if math.isfinite(energy) else -math.inf
            return voiced, level, abs(k - preferred)

        chosen = min(range(lo, hi), key=key)
        kept, rest = frames[: chosen + 1], frames[chosen + 1 :]
        self._emit(kept, False, events)
        self._part += 1
        self._part_frames = rest
