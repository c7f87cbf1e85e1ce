"""Speaking metrics of one transcribed utterance (pure functions).

`speaking_metrics` returns the dict that travels in ``Transcript.metrics``; its keys are
the fields of `SpeakingMetrics` (documented there). Rates are taken over the speaking span
(first word start to last word end) when word timings exist, else over the whole audio,
so the VAD's padding does not slow anyone down.

Rates per language: English (and other space-delimited languages) is measured in words
per minute. Korean words (어절) carry several syllables each and vary a lot in length,
so for Korean the honest rate is Hangul syllable characters per second (each precomposed
Hangul character is one spoken syllable); ``rate_basis`` says which one to read.

Fillers are counted as standalone words only (``um`` in "umbrella" is no filler):

* unambiguous fillers ("um", "uh", "er", "ah", "음", "어", ...) wherever they stand alone;
* words that are fillers only in some uses ("like", "you know", "I mean", "그", "저기",
  "뭐", "이제", ...) only when set off by punctuation on both sides (start or end of the
  text counts as punctuation): "I, like, wrote it" and "그, 저는" count; "I like Python" and
  "그 사람" do not. Whisper marks such interjections with commas. A word repeated back to
  back ("그 그 저는", "이제 이제") also counts once as a filler.
* "kind of" / "sort of" also count as hedges after a pronoun or a form of "be" ("it was
  kind of hard", "I sort of knew"), never after a determiner ("what kind of database").
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

DEFAULT_PAUSE_S = 0.5

EN_FILLERS: frozenset[str] = frozenset(
    {"um", "umm", "uh", "uhh", "uhm", "er", "erm", "ah", "hmm", "mm", "mhm"}
)
EN_AMBIGUOUS: tuple[str, ...] = (
    "you know", "i mean", "sort of", "kind of", "you see", "like", "basically", "literally",
)  # fmt: skip
KO_FILLERS: frozenset[str] = frozenset(
    {"음", "으음", "음음", "어", "어어", "에", "흠", "아", "뭐랄까"}
)
KO_AMBIGUOUS: tuple[str, ...] = (
    "그러니까", "그니까", "있잖아요", "저기", "그", "저", "뭐", "이제", "막", "약간", "좀", "그냥",
)  # fmt: skip
_HEDGE_BEFORE = frozenset(
    "i you we they he she it it's that's is was are were be been being am 'm".split()
)
_HEDGES = ("kind of", "sort of")

_TOKEN = re.compile(r"[\w']+", re.UNICODE)
_PUNCT = re.compile(r"[,.!?;:…—–\-()\"“”]")
_HANGUL = re.compile(r"[\uac00-\ud7a3]")


@dataclass
class SpeakingMetrics:
    """How one utterance was spoken."""

    #: Length of the utterance audio (seconds).
    duration_s: float
    #: First word start to last word end (seconds); 0 without word timings.
    speech_s: float
    #: Space-separated words holding a letter or digit (Korean: 어절).
    word_count: int
    #: word_count per minute of speaking span (the rate to read for English).
    words_per_minute: float
    #: Precomposed Hangul syllable characters in the text.
    hangul_syllables: int
    #: hangul_syllables per second of speaking span (the rate to read for Korean).
    syllables_per_second: float
    #: "words" (read words_per_minute) or "syllables" (read syllables_per_second).
    rate_basis: str
    #: The fillers found, in order, lower-cased ("um", "you know", "음", ...).
    filler_words: list[str] = field(default_factory=list)
    filler_count: int = 0
    #: Fillers per word (0..1) and per minute of speaking span.
    filler_rate: float = 0.0
    fillers_per_minute: float = 0.0
    #: Gaps between consecutive words of at least the pause threshold.
    pause_count: int = 0
    #: Longest gap between consecutive words (seconds, any length), and the sum of pauses.
    longest_pause_s: float = 0.0
    total_pause_s: float = 0.0
    #: The language the metrics were computed for.
    language: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _word_tuple(word: Any) -> tuple[str, float, float]:
    """(text, start, end) of a contract.Word, a WordTiming, or a (text, start, end, ...)."""
    if hasattr(word, "start") and hasattr(word, "end"):
        return str(word.text), float(word.start), float(word.end)
    text, start, end = word[0], word[1], word[2]
    return str(text), float(start), float(end)


def pauses(words: Iterable[Any], threshold_s: float = DEFAULT_PAUSE_S) -> tuple[int, float, float]:
    """(pause_count, longest_gap_s, total_pause_s) from word timings."""
    timed = sorted((_word_tuple(w) for w in words), key=lambda w: w[1])
    gaps = [max(0.0, b[1] - a[2]) for a, b in itertools.pairwise(timed)]
    long_gaps = [g for g in gaps if g >= threshold_s]
    return len(long_gaps), max(gaps, default=0.0), sum(long_gaps)


def _tokens_with_delimiters(text: str) -> list[tuple[str, bool, bool]]:
    """(token lower-cased, punctuation or start before, punctuation or end after)."""
    matches = list(_TOKEN.finditer(text))
    out = []
    for i, m in enumerate(matches):
        before = text[matches[i - 1].end() : m.start()] if i else None
        after = text[m.end() : matches[i + 1].start()] if i + 1 < len(matches) else None
        left = before is None or bool(_PUNCT.search(before))
        right = after is None or bool(_PUNCT.search(after))
        out.append((m.group(0).lower(), left, right))
    return out


def find_fillers(text: str, language: str = "") -> list[str]:
    """Fillers in `text`, in order (see the module docstring for the rules). Both the
    English and the Korean lists apply whatever `language` says: code-switching happens."""
    del language  # both lists apply; kept for the signature's symmetry
    tokens = _tokens_with_delimiters(text)
    words = [t for t, _, _ in tokens]
    pure = EN_FILLERS | KO_FILLERS
    phrases = sorted(
        [tuple(p.split()) for p in (*EN_AMBIGUOUS, *KO_AMBIGUOUS)], key=len, reverse=True
    )
    ambiguous_single = {p[0] for p in phrases if len(p) == 1}
    found: list[str] = []
    i = 0
    while i < len(tokens):
        word, left, _ = tokens[i]
        if word in pure:
            found.append(word)
            i += 1
            continue
        matched = False
        for phrase in phrases:
            n = len(phrase)
            if tuple(words[i : i + n]) != phrase:
                continue
            inner_punct = any(tokens[k][2] for k in range(i, i + n - 1))
            if inner_punct:
                continue
            right = tokens[i + n - 1][2]
            joined = " ".join(phrase)
            hedge = joined in _HEDGES and i > 0 and words[i - 1] in _HEDGE_BEFORE
            if (left and right) or hedge:
                found.append(joined)
                i += n
                matched = True
                break
        if matched:
            continue
        # "그 그 저는", "like like": an ambiguous word stuttered back to back
        if (
            word in ambiguous_single
            and i + 1 < len(words)
            and words[i + 1] == word
            and not tokens[i][2]
        ):
            found.append(word)
            i += 1
            continue
        i += 1
    return found


def count_words(text: str) -> int:
    return sum(1 for chunk in text.split() if _TOKEN.search(chunk))


def hangul_syllables(text: str) -> int:
    return len(_HANGUL.findall(text))


def compute(
    words: Sequence[Any],
    text: str,
    language: str,
    duration_s: float,
    *,
    pause_threshold_s: float = DEFAULT_PAUSE_S,
) -> SpeakingMetrics:
    """The metrics as a `SpeakingMetrics`."""
    timed = [_word_tuple(w) for w in words]
    speech_s = max(0.0, max(w[2] for w in timed) - min(w[1] for w in timed)) if timed else 0.0
    span = speech_s if speech_s > 0 else max(0.0, duration_s)
    n_words = count_words(text)
    syllables = hangul_syllables(text)
    fillers = find_fillers(text, language)
    pause_count, longest, pause_total = pauses(timed, pause_threshold_s)
    korean = language.startswith("ko") or (not language and syllables * 2 > len(text.strip()))
    per_min = 60.0 / span if span > 0 else 0.0
    return SpeakingMetrics(
        duration_s=round(duration_s, 3),
        speech_s=round(speech_s, 3),
        word_count=n_words,
        words_per_minute=round(n_words * per_min, 1),
        hangul_syllables=syllables,
        syllables_per_second=round(syllables / span, 2) if span > 0 else 0.0,
        rate_basis="syllables" if korean else "words",
        filler_words=fillers,
        filler_count=len(fillers),
        filler_rate=round(len(fillers) / n_words, 4) if n_words else 0.0,
        fillers_per_minute=round(len(fillers) * per_min, 1),
        pause_count=pause_count,
        longest_pause_s=round(longest, 3),
        total_pause_s=round(pause_total, 3),
        language=language,
    )


def speaking_metrics(
    words: Sequence[Any],
    text: str,
    language: str,
    duration_s: float,
    *,
    pause_threshold_s: float = DEFAULT_PAUSE_S,
) -> dict[str, Any]:
    """The metrics of one utterance as a JSON-ready dict (keys: `SpeakingMetrics` fields).

    `words` are timed words (contract.Word, transcriber.WordTiming or (text, start, end)
    tuples) with times in seconds from the utterance start; `text` the transcript;
    `language` a Whisper language code ("en", "ko", "" unknown); `duration_s` the audio
    length. Pauses are gaps between consecutive words of at least `pause_threshold_s`."""
    return compute(words, text, language, duration_s, pause_threshold_s=pause_threshold_s).as_dict()
