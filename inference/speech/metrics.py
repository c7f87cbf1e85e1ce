"""Speaking metrics of one transcribed utterance (pure functions).

`speaking_metrics` measures one utterance into a `contract.SpeakingMetrics` (the struct
that travels in ``Transcript.metrics``; its fields are documented there). Rates are taken
over the speaking span (first word start to last word end) when word timings exist, else
over the whole audio, so the VAD's padding does not slow anyone down; the struct derives
them (`SpeakingMetrics.of`), as it does for a whole answer's merged metrics.

Rates per language: English (and other space-delimited languages) is measured in words
per minute. Korean words (어절) carry several syllables each and vary a lot in length,
so for Korean the honest rate is Hangul syllable characters per second (each precomposed
Hangul character is one spoken syllable); ``rate_basis`` says which one to read.

Fillers are found by `stream.fillers.find_fillers` (the one list, shared with the
offline engine).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from typing import Any

from stream.contract import PAUSE_S, SpeakingMetrics
from stream.fillers import find_fillers

_WORD = re.compile(r"\w", re.UNICODE)
_HANGUL = re.compile(r"[\uac00-\ud7a3]")


def _word_tuple(word: Any) -> tuple[str, float, float]:
    """(text, start, end) of a contract.Word, a WordTiming, or a (text, start, end, ...)."""
    if hasattr(word, "start") and hasattr(word, "end"):
        return str(word.text), float(word.start), float(word.end)
    text, start, end = word[0], word[1], word[2]
    return str(text), float(start), float(end)


def pauses(words: Iterable[Any], threshold_s: float = PAUSE_S) -> tuple[int, float, float]:
    """(pause_count, longest_gap_s, total_pause_s) from word timings."""
    timed = sorted((_word_tuple(w) for w in words), key=lambda w: w[1])
    gaps = [max(0.0, b[1] - a[2]) for a, b in itertools.pairwise(timed)]
    long_gaps = [g for g in gaps if g >= threshold_s]
    return len(long_gaps), max(gaps, default=0.0), sum(long_gaps)


def count_words(text: str) -> int:
    """Space-separated chunks holding a letter or digit (Korean: 어절)."""
    return sum(1 for chunk in text.split() if _WORD.search(chunk))


def hangul_syllables(text: str) -> int:
    return len(_HANGUL.findall(text))


def speaking_metrics(
    words: Sequence[Any],
    text: str,
    language: str,
    duration_s: float,
    *,
    pause_threshold_s: float = PAUSE_S,
) -> SpeakingMetrics:
    """The metrics of one utterance.

    `words` are timed words (contract.Word, transcriber.WordTiming or (text, start, end)
    tuples) with times in seconds from the utterance start; `text` the transcript;
    `language` a Whisper language code ("en", "ko", "" unknown); `duration_s` the audio
    length. Pauses are gaps between consecutive words of at least `pause_threshold_s`."""
    timed = [_word_tuple(w) for w in words]
    speech_s = max(0.0, max(w[2] for w in timed) - min(w[1] for w in timed)) if timed else 0.0
    syllables = hangul_syllables(text)
    pause_count, longest, pause_total = pauses(timed, pause_threshold_s)
    # an unnamed language is Korean when Hangul makes up most of the text
    korean = language.startswith("ko") or (not language and syllables * 2 > len(text.strip()))
    return SpeakingMetrics.of(
        duration_s=duration_s,
        speech_s=speech_s,
        rate_s=speech_s if speech_s > 0 else max(0.0, duration_s),
        word_count=count_words(text),
        hangul_syllables=syllables,
        rate_basis="syllables" if korean else "words",
        filler_words=find_fillers(text),
        pause_count=pause_count,
        longest_pause_s=longest,
        total_pause_s=pause_total,
        language=language,
    )
