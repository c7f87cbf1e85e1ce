"""Guards against Whisper's hallucinations (pure functions, no model).

Whisper was trained on subtitled video, so on silence, noise or breath it tends to write the
captions such videos end with ("시청해주셔서 감사합니다", "Thanks for watching!", "MBC 뉴스
○○○입니다", "Subtitles by ...") or to loop one token. An utterance is dropped — no
transcript at all, never an empty one — when:

* ``silence``: the audio is near-silent (the loudest 10 % of 30 ms frames are below
  ``silence_dbfs``); Whisper is not even run;
* ``no_speech``: every segment looks like silence: Whisper's own signature
  (``no_speech_prob`` above ``no_speech_threshold`` and ``avg_logprob`` below
  ``logprob_threshold``), or ``no_speech_prob`` above ``guess_no_speech`` with words that
  are all guesses (mean word probability below ``guess_word_probability``: what
  multilingual Whisper writes for hiss when it also has to guess the language);
* ``known_hallucination``: nothing is left once the known caption phrases are removed, or
  the whole text is a short phrase that is only dropped on weak evidence ("you", "감사합니다",
  "thank you"...: dropped when ``no_speech_prob >= weak_no_speech``);
* ``repetition``: one token or n-gram repeated in a run covering most of the text.

Known phrases appended to real speech are stripped from it, and runs of a repeated
n-gram inside real speech are collapsed to one occurrence.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Caption phrases that are (almost) never what a candidate says in an interview. Matched
#: case-insensitively, ignoring spaces and punctuation.
KNOWN_PHRASES: tuple[str, ...] = (
    # Korean broadcast / YouTube endings
    "시청해주셔서 감사합니다",
    "시청해 주셔서 감사합니다",
    "시청 해주셔서 감사합니다",
    "구독과 좋아요 부탁드립니다",
    "구독과 좋아요",
    "구독 좋아요 알림설정",
    "좋아요와 구독",
    "다음 영상에서 만나요",
    "오늘도 시청해주셔서 감사합니다",
    "자막 제공",
    "한글자막",
    "자막by",
    "MBC 뉴스",
    "KBS 뉴스",
    "SBS 뉴스",
    "YTN 뉴스",
    # English video endings and subtitle credits
    "Thank you for watching",
    "Thanks for watching",
    "Thank you so much for watching",
    "Please subscribe",
    "Don't forget to like and subscribe",
    "Like and subscribe",
    "See you in the next video",
    "Subtitles by",
    "Subtitles by the Amara.org community",
    "Amara.org",
    "Transcription by",
    "Captions by",
    "www.mooji.org",
)

#: Texts that are hallucinations when they are the whole transcript of weak audio, but can
#: also be honest short answers (so they need `weak_no_speech` evidence).
WEAK_PHRASES: tuple[str, ...] = (
    "you",
    "thank you",
    "thanks",
    "bye",
    "okay",
    "so",
    "감사합니다",
    "고맙습니다",
    "네",
    "아",
    "음",
    "어",
)

#: Korean news sign-offs end with the reporter's name: "MBC 뉴스 홍길동입니다".
_NEWS_SIGNOFF = re.compile(r"(?:MBC|KBS|SBS|YTN|JTBC)\s*뉴스\s*\S{0,6}?(?:입니다|였습니다)\.?",
                           re.IGNORECASE)  # fmt: skip
_WORD = re.compile(r"\w", re.UNICODE)


def normalize(text: str) -> str:
    """Lower-case, NFKC, no punctuation or spaces (for phrase comparison)."""
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if ch.isalnum())


def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    # any run of spaces/punctuation between the phrase's characters
    chars = [re.escape(c) for c in normalize(phrase)]
    return re.compile(r"[\W_]*".join(chars), re.IGNORECASE)


_PHRASE_PATTERNS = [_phrase_pattern(p) for p in sorted(KNOWN_PHRASES, key=len, reverse=True)]
_WEAK = frozenset(normalize(p) for p in WEAK_PHRASES)


def strip_known_phrases(text: str) -> tuple[str, list[str]]:
    """Remove known caption phrases; returns the cleaned text and what was removed."""
    found: list[str] = []
    folded = unicodedata.normalize("NFKC", text)

    def take(match: re.Match[str]) -> str:
        found.append(match.group(0))
        return " "

    folded = _NEWS_SIGNOFF.sub(take, folded)
    for pattern in _PHRASE_PATTERNS:
        folded = pattern.sub(take, folded)
    cleaned = re.sub(r"\s+", " ", folded).strip(" \t,.;:!?~-")
    return cleaned if found else text.strip(), found


def is_weak_phrase(text: str) -> bool:
    return normalize(text) in _WEAK


def _tokens(text: str) -> list[str]:
    return [t for t in (normalize(w) for w in text.split()) if t]


def longest_repeat(tokens: Sequence[str], max_n: int = 4) -> tuple[int, int, int]:
    """The longest run of one n-gram repeated back to back: (start, n, repeats)."""
    best = (0, 1, 1)
    for n in range(1, max_n + 1):
        i = 0
        while i + 2 * n <= len(tokens):
            reps = 1
            while tokens[i + reps * n : i + (reps + 1) * n] == tokens[i : i + n]:
                reps += 1
            if reps * n > best[2] * best[1] and reps > 1:
                best = (i, n, reps)
            i += max(1, (reps - 1) * n) if reps > 1 else 1
    return best


def collapse_repeats(text: str, min_repeats: int = 4, max_n: int = 4) -> tuple[str, int]:
    """Collapse back-to-back runs of an n-gram repeated `min_repeats`+ times to one copy.
    Returns the new text (original words kept) and how many words were removed."""
    words = text.split()
    removed = 0
    changed = True
    while changed:
        changed = False
        norm = [normalize(w) for w in words]
        start, n, reps = longest_repeat(norm, max_n)
        if reps >= min_repeats:
            del words[start + n : start + reps * n]
            removed += (reps - 1) * n
            changed = True
    return " ".join(words), removed


_CHAR_LOOP = re.compile(r"(.{1,4}?)\1{7,}")


def is_repetition_loop(text: str, min_repeats: int = 4, dominance: float = 0.6) -> bool:
    """True when a repeated token/n-gram run (or a character loop like "ㅋㅋㅋㅋㅋㅋㅋㅋ")
    makes up at least `dominance` of the text."""
    tokens = _tokens(text)
    if len(tokens) >= min_repeats:
        _, n, reps = longest_repeat(tokens)
        if reps >= min_repeats and reps * n >= dominance * len(tokens):
            return True
    flat = normalize(text)
    if len(flat) >= 8:
        loop = _CHAR_LOOP.search(flat)
        if loop and len(loop.group(0)) >= dominance * len(flat):
            return True
    return False


def frame_levels_dbfs(pcm: np.ndarray, frame: int = 480) -> np.ndarray:
    """RMS level in dBFS of each `frame`-sample frame (30 ms at 16 kHz)."""
    x = np.asarray(pcm, dtype=np.float64)
    if x.size == 0:
        return np.full(1, -200.0)
    n = max(1, x.size // frame)
    x = x[: n * frame].reshape(n, -1) if x.size >= frame else x.reshape(1, -1)
    rms = np.maximum(np.sqrt(np.mean(np.square(x), axis=1)), 1e-6)  # digital silence: -210
    return 20.0 * np.log10(rms / 32768.0)


def loudness_dbfs(pcm: np.ndarray) -> float:
    """The 90th percentile of 30 ms frame levels: how loud the speech parts are."""
    return float(np.percentile(frame_levels_dbfs(pcm), 90))


def is_near_silent(pcm: np.ndarray, threshold_dbfs: float = -50.0) -> bool:
    return loudness_dbfs(pcm) < threshold_dbfs


@dataclass(frozen=True)
class GuardSettings:
    """Thresholds of the guard (Whisper's own defaults where it has one)."""

    silence_dbfs: float = -50.0
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    weak_no_speech: float = 0.3
    guess_no_speech: float = 0.5
    guess_word_probability: float = 0.3
    repeat_min: int = 4
    repeat_dominance: float = 0.6


@dataclass(frozen=True)
class SegmentScore:
    """What the guard needs of one Whisper segment."""

    text: str
    avg_logprob: float
    no_speech_prob: float
    #: Mean probability of the segment's words (1.0 when unknown).
    word_probability: float = 1.0


@dataclass(frozen=True)
class Verdict:
    """The guard's decision: `text` to publish, or `dropped_reason` (then text is "")."""

    text: str
    dropped_reason: str | None
    #: Segment indices kept (those without the silence signature).
    kept_segments: tuple[int, ...] = ()
    stripped: tuple[str, ...] = ()


def is_no_speech_segment(seg: SegmentScore, g: GuardSettings) -> bool:
    if seg.no_speech_prob > g.no_speech_threshold and seg.avg_logprob < g.logprob_threshold:
        return True
    return (
        seg.no_speech_prob > g.guess_no_speech and seg.word_probability < g.guess_word_probability
    )


def judge(segments: Sequence[SegmentScore], g: GuardSettings | None = None) -> Verdict:
    """Decide what of Whisper's output to keep (see the module docstring)."""
    g = g or GuardSettings()
    kept = tuple(i for i, s in enumerate(segments) if not is_no_speech_segment(s, g))
    if not segments:  # faster-whisper skips segments with the silence signature itself
        return Verdict("", "no_speech")
    if not any(_WORD.search(s.text) for s in segments):
        return Verdict("", "empty")
    if not kept:
        return Verdict("", "no_speech")
    text = " ".join(segments[i].text.strip() for i in kept).strip()
    if not _WORD.search(text):
        return Verdict("", "empty", kept)
    cleaned, stripped = strip_known_phrases(text)
    if not _WORD.search(cleaned):
        return Verdict("", "known_hallucination", kept, tuple(stripped))
    if is_weak_phrase(cleaned):
        worst = max(segments[i].no_speech_prob for i in kept)
        if worst >= g.weak_no_speech or stripped:
            return Verdict("", "known_hallucination", kept, tuple(stripped))
    if is_repetition_loop(cleaned, g.repeat_min, g.repeat_dominance):
        return Verdict("", "repetition", kept, tuple(stripped))
    cleaned, _ = collapse_repeats(cleaned, g.repeat_min)
    return Verdict(cleaned, None, kept, tuple(stripped))
