"""Rating an answer (개선 필요함 = 0, 무난함 = 1, 매우 좋음 = 2).

An answer is a whole answer turn: every utterance from the question to "Done", joined,
thinking pauses included. Words are the transcript's whitespace-separated tokens
(Korean: 어절). Its time, pace, fillers and pauses are the answer's measured speaking
metrics (`stream.contract.SpeakingMetrics`, merged over its utterances; read as they are,
never recomputed here): time is ``duration_s``, and a 0 there or in a rate means it was
not measured. Without metrics (an answer that was not spoken) only the length in words or
syllables and the fillers in the transcript are judged. An empty
answer gets 개선 필요함 everywhere except similarity and examples (NA).

- **communication (소통 방식)** — length and pace of a *spoken* answer:

  - Length is right at **30 seconds to 3 minutes** of answer time: an interview answer
    under half a minute says too little, one over three minutes loses the listener.
    Without a measured time, the same span in words at a typical pace: **70–450
    English words** (30 s at ~140 words per minute to 3 min at ~150), **120–900 Korean
    syllables** (30 s at ~4 syllables per second to 3 min at ~5; Hangul syllables, each
    run of Latin letters or digits — a name or a number — counted as 3).
  - Pace is right at **90–180 words per minute in English** (conversational English
    runs ~130–160; the lower bound leaves room for the thinking pauses a whole turn
    holds, the upper one is where listeners start to miss words) and **2.5–6.0
    syllables per second in Korean** (conversational Korean runs ~3.5–5.5, with the same
    allowance for pauses). Korean pace is the metrics' ``syllables_per_second``, else
    (an answer without Hangul) their ``words_per_minute`` at **50–120 어절 per minute**
    (the syllable window over ~3 syllables per 어절). English pace is
    ``words_per_minute``. Unknown pace counts as right (it is not judged).

  매우 좋음: length and pace right; 무난함: one of them; 개선 필요함: neither.
- **natural_delivery (자연스러운 답변)**: filler rate = filler words per 100 words (the
  metrics' ``filler_count``; without metrics, the fillers `stream.fillers.find_fillers`
  finds in the transcript, the same rule the speech worker counts them by: 음, 어, um,
  uh, …, and 뭐, 그러니까, you know, basically, … when set off by commas) and
  the longest pause (``longest_pause_s``; unknown = not judged). A pause of a few
  seconds to think is normal in a spoken answer and costs nothing: only a pause **over
  5 s** counts against delivery, and one of **10 s or more** is a stall. 매우 좋음: rate
  < 3 and no pause over 5 s; 개선 필요함: rate ≥ 8 or a pause ≥ 10 s; otherwise 무난함.
- **examples (적절한 예시)**: NA for answers under 5 words. Markers (예를 들어, 예를 들면,
  예컨대, 가령, 실제로, for example, for instance, such as, e.g., …) and numbers
  (digit groups). 매우 좋음: a marker and a number; 무난함: a marker, a number, or one of
  the intro's named projects; otherwise 개선 필요함.
- **technical_explanation (기술 설명)**: T = distinct skills from `TECH_TERMS` named in
  the answer, C = causal connectives (때문, 왜냐하면, 그래서, 따라서, 덕분에, 위해,
  because, therefore, so that, in order to, as a result, …). 매우 좋음: T ≥ 2 and C ≥ 2;
  무난함: T ≥ 1 and C ≥ 1, or T ≥ 3; otherwise 개선 필요함.
- **clarity (명확성, STAR)**: which of situation / task / action / result have a cue
  (당시, 상황 / 목표, 역할, 맡 / 구현, 설계, 도입 / 결과, 개선, 향상; when, at the time /
  goal, my role, had to / implemented, built, designed / result, improved, reduced, …).
  매우 좋음: all four; 무난함: two or three; 개선 필요함: one or none.
- **similarity (참고 답안과의 유사도)**: the reference is the top 8 keywords of the
  question (company and job-title words left out) plus 8 of the self-introduction's
  skills and keywords (skills first); match % = the
  share of them the answer mentions (a Korean word matches with its particles; a word
  matches a longer one it starts). 매우 좋음: ≥ 50 %; 무난함: ≥ 25 %; otherwise 개선 필요함.
  NA when there is no reference or no answer.
- **overall (전반적인 점수)**: the lower median (statistics.median_low) of the other
  six scores, NA ones left out (`overall_rating`; the hybrid evaluation of `llm.hybrid`
  applies the same rule).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

from llm.offline.intro import IntroFacts
from llm.offline.questions import as_written, job_title
from llm.offline.vocabulary import skill_label
from llm.offline.words import content_words, find_skills, has_hangul, top_keywords
from llm.schemas import Language, Profile, Rating
from stream.contract import SpeakingMetrics
from stream.fillers import find_fillers

_CAUSAL_RE = re.compile(
    r"때문|왜냐하면|그래서|따라서|그러므로|덕분에|위해|위하여|결과적으로|그\s?결과|이유는|므로"
    r"|\b(?:because|therefore|thus|hence|consequently|so that|in order to|as a result|which means"
    r"|which meant|that's why|that is why|due to|the reason)\b",
    re.IGNORECASE,
)
_EXAMPLE_RE = re.compile(
    r"예를\s?들어|예를\s?들면|예컨대|가령|일례로|실제로|구체적으로|예시로|사례"
    r"|\b(?:for example|for instance|such as|e\.g\.|to give an example|in one case"
    r"|specifically|in practice)",
    re.IGNORECASE,
)
_NUMBER_RE = re.compile(r"\d+(?:[.,]\d+)?")

_STAR_CUES: dict[str, re.Pattern[str]] = {
    "situation": re.compile(
        r"당시|상황|때|에서\s?일할|처음에|배경"
        r"|\b(?:when|at the time|situation|background|while working|during|in my previous"
        r"|at my last|back then)\b",
        re.IGNORECASE,
    ),
    "task": re.compile(
        r"목표|과제|역할|맡|담당|해야|요구|문제는"
        r"|\b(?:goal|task|my role|responsible|needed to|had to|objective|challenge|was asked)\b",
        re.IGNORECASE,
    ),
    "action": re.compile(
        r"구현|개발|적용|도입|설계|분석|해결|시도|작성|구축|변경|제안|만들"
        r"|\b(?:implemented|built|designed|introduced|analy[sz]ed|developed|decided|wrote"
        r"|proposed|refactored|set up|created|added|applied|used)\b",
        re.IGNORECASE,
    ),
    "result": re.compile(
        r"결과|성과|개선|향상|감소|단축|달성|덕분에|배웠|줄였|늘렸|높였|낮췄"
        r"|\b(?:result|results|as a result|improved|reduced|increased|achieved|outcome|learned"
        r"|saved|cut|faster|decreased)\b",
        re.IGNORECASE,
    ),
}

# The windows below are for spoken answers (see the module docstring for why).
#: Answer time of the right length, seconds: half a minute to three minutes.
GOOD_DURATION_S = (30.0, 180.0)
#: The same length in English words when no time was measured (30 s at ~140 words per
#: minute to 3 min at ~150).
GOOD_WORDS_EN = (70, 450)
#: The same length in Korean spoken syllables (30 s at ~4 per second to 3 min at ~5).
GOOD_SYLLABLES_KO = (120, 900)
#: Syllables a run of Latin letters or digits (a name, a number) counts for in Korean.
LATIN_RUN_SYLLABLES = 3
#: Comfortable English pace, words per minute.
PACE_WPM_EN = (90.0, 180.0)
#: Comfortable Korean pace, Hangul syllables per second.
PACE_SPS_KO = (2.5, 6.0)
#: Comfortable Korean pace in 어절 per minute, read only when nothing else is known.
PACE_WPM_KO = (50.0, 120.0)
#: Filler words per 100 words: under the first is very good, the second or more is poor.
FILLER_RATE_GOOD, FILLER_RATE_POOR = 3.0, 8.0
#: Longest pause, seconds: up to the first is thinking time (normal); the second or more
#: is a stall.
PAUSE_NORMAL_S, PAUSE_STALL_S = 5.0, 10.0
#: Answers shorter than this (words) are too short to judge examples in (NA).
MIN_WORDS_FOR_EXAMPLES = 5
#: How many question / intro keywords form the similarity reference.
REFERENCE_KEYWORDS = 8


@dataclass(frozen=True)
class AnswerFacts:
    """What the offline engine measured in one answer (the inputs of the rules)."""

    #: The interview's language (which windows apply).
    language: Language
    #: Whitespace-separated words in the transcript (Korean: 어절).
    words: int
    #: Spoken syllables (Hangul syllables, a Latin/digit run counted as 3).
    syllables: int
    #: Answer time, seconds (None = not measured).
    duration_s: float | None
    #: Filler words (the metrics' count; without metrics, found in the transcript).
    fillers: int
    #: Fillers per 100 words.
    filler_rate: float
    #: Longest pause, seconds (None = unknown).
    longest_pause_s: float | None
    #: Words per minute (None = unknown).
    words_per_minute: float | None
    #: Hangul syllables per second (None = unknown; Korean pace is read from it).
    syllables_per_second: float | None
    #: Distinct known skills named in the answer.
    skills: list[str]
    #: Causal connectives (because, 때문에, …).
    causal: int
    #: Example markers (for example, 예를 들어, …).
    example_markers: int
    #: Digit groups.
    numbers: int
    #: Named projects of the intro that the answer mentions.
    projects: list[str]
    #: STAR components with a cue in the answer, in S-T-A-R order.
    star: list[str]
    #: The similarity reference keywords, and those the answer covers.
    reference: list[str]
    matched: list[str]
    #: How to show a matched keyword (a skill by its name, a word as it was written).
    shown: dict[str, str] = field(default_factory=dict)


def spoken_syllables(text: str) -> int:
    """Syllables `text` takes to say in Korean: each Hangul syllable, and each run of
    Latin letters or digits (PyTorch, 40%, 120ms) as `LATIN_RUN_SYLLABLES`."""
    hangul = len(re.findall(r"[가-힣]", text))
    runs = len(re.findall(r"[A-Za-z0-9]+(?:[.,'+][A-Za-z0-9]+)*", text))
    return hangul + LATIN_RUN_SYLLABLES * runs


def count_causal(text: str) -> int:
    """Causal connectives in `text` (because, so that, 때문, 그래서, …)."""
    return len(_CAUSAL_RE.findall(text))


def count_example_markers(text: str) -> int:
    """Example markers in `text` (for example, such as, 예를 들어, 실제로, …)."""
    return len(_EXAMPLE_RE.findall(text))


def count_numbers(text: str) -> int:
    """Digit groups in `text` (40, 1.5, 12,000)."""
    return len(_NUMBER_RE.findall(text))


def star_parts(text: str) -> list[str]:
    """The STAR parts (situation, task, action, result) with a cue in `text`, in order."""
    return [part for part, cue in _STAR_CUES.items() if cue.search(text)]


def overall_rating(ratings: Iterable[Rating | None]) -> Rating:
    """Overall: the lower median of the other criteria's scores, NA (None) left out;
    무난함 when every one is NA."""
    scores = [rating.score for rating in ratings if rating is not None]
    return Rating.from_score(statistics.median_low(scores)) if scores else Rating.FINE


def _word_matches(reference: str, words: list[str]) -> bool:
    for word in words:
        if word == reference:
            return True
        shorter = min(len(word), len(reference))
        needed = 2 if has_hangul(reference) else 4
        if shorter >= needed and (word.startswith(reference) or reference.startswith(word)):
            return True
    return False


def _shown_words(
    words: list[str], language: Language, skills: list[str], answer: str
) -> dict[str, str]:
    """Keywords (stored lower-cased, particles stripped) as a person should read them."""
    names = {skill.lower(): skill_label(skill, language) for skill in skills}
    return {word: names.get(word) or as_written(word, answer) for word in words}


def analyse_answer(
    profile: Profile,
    facts: IntroFacts,
    question: str,
    answer: str,
    metrics: SpeakingMetrics | None,
) -> AnswerFacts:
    """Measure `answer` for the rating rules (time, pace, fillers and pauses are read from
    `metrics` as measured, never recomputed)."""
    language = profile.language
    words = len(answer.split())
    syllables = spoken_syllables(answer)
    fillers, rate, longest_pause = delivery_measures(answer, metrics)
    if metrics is None:  # not spoken: no time or pace to judge
        duration = wpm = sps = None
    else:
        # A 0 means there was no time span to measure over: not measured.
        duration = metrics.duration_s or None
        wpm = metrics.words_per_minute or None
        sps = metrics.syllables_per_second or None

    answer_words = content_words(answer)
    # The company and job title are in our own question templates; they are not content.
    scaffold = set(content_words(f"{profile.company} {profile.job_title} {job_title(profile)}"))
    reference: list[str] = []
    for word in [
        *top_keywords(question, REFERENCE_KEYWORDS),
        *[s.lower() for s in facts.skills[:REFERENCE_KEYWORDS]],
        *facts.keywords[: max(0, REFERENCE_KEYWORDS - len(facts.skills))],
    ]:
        if word not in reference and word not in scaffold:
            reference.append(word)
    answer_skills = find_skills(answer)
    answer_lower = answer.lower()
    matched = [
        word
        for word in reference
        if _word_matches(word, answer_words)
        or (" " in word and word in answer_lower)
        or any(word == s.lower() for s in answer_skills)
    ]
    mentioned_projects = [
        p for p in facts.projects if p.lower().removesuffix(" 프로젝트") in answer_lower
    ]
    return AnswerFacts(
        language=language,
        words=words,
        syllables=syllables,
        duration_s=duration,
        fillers=fillers,
        filler_rate=rate,
        longest_pause_s=longest_pause,
        words_per_minute=wpm,
        syllables_per_second=sps,
        skills=answer_skills,
        causal=count_causal(answer),
        example_markers=count_example_markers(answer),
        numbers=count_numbers(answer),
        projects=mentioned_projects,
        star=star_parts(answer),
        reference=reference,
        matched=matched,
        shown=_shown_words(matched, language, [*facts.skills, *answer_skills], answer),
    )


def delivery_measures(
    answer: str, metrics: SpeakingMetrics | None
) -> tuple[int, float, float | None]:
    """(filler words, fillers per 100 words, longest pause in seconds or None): from the
    metrics as measured; an answer that was not spoken has the fillers
    `stream.fillers.find_fillers` finds in its transcript and no pause."""
    words = len(answer.split())
    if metrics is None:
        fillers, longest_pause = len(find_fillers(answer)), None
    else:
        fillers, longest_pause = metrics.filler_count, metrics.longest_pause_s
    return fillers, (100.0 * fillers / words if words else 0.0), longest_pause


def marked_down_for_pause_alone(words: int, filler_rate: float, pause_s: float | None) -> bool:
    """Whether natural delivery lost its 매우 좋음 to a long pause alone (few fillers):
    its tip is then about pauses, not fillers."""
    return (
        words > 0
        and filler_rate < FILLER_RATE_GOOD
        and pause_s is not None
        and pause_s > PAUSE_NORMAL_S
    )


def rate_delivery(a: AnswerFacts) -> Rating:
    pause = a.longest_pause_s
    if a.filler_rate >= FILLER_RATE_POOR or (pause is not None and pause >= PAUSE_STALL_S):
        return Rating.NEEDS_IMPROVEMENT
    if a.filler_rate < FILLER_RATE_GOOD and (pause is None or pause <= PAUSE_NORMAL_S):
        return Rating.VERY_GOOD
    return Rating.FINE


def rate_examples(a: AnswerFacts) -> Rating | None:
    if a.words < MIN_WORDS_FOR_EXAMPLES:
        return None
    if a.example_markers and a.numbers:
        return Rating.VERY_GOOD
    if a.example_markers or a.numbers or a.projects:
        return Rating.FINE
    return Rating.NEEDS_IMPROVEMENT


def rate_technical(a: AnswerFacts) -> Rating:
    terms = len(a.skills)
    if terms >= 2 and a.causal >= 2:
        return Rating.VERY_GOOD
    if (terms >= 1 and a.causal >= 1) or terms >= 3:
        return Rating.FINE
    return Rating.NEEDS_IMPROVEMENT


def rate_clarity(a: AnswerFacts) -> Rating:
    if len(a.star) == 4:
        return Rating.VERY_GOOD
    if len(a.star) >= 2:
        return Rating.FINE
    return Rating.NEEDS_IMPROVEMENT


def _within(value: float, window: tuple[float, float], low: str, high: str) -> str:
    return low if value < window[0] else high if value > window[1] else "ok"


def length_verdict(a: AnswerFacts) -> str:
    """ "ok", "short" or "long": by answer time when measured, else by words (English)
    or spoken syllables (Korean)."""
    if a.duration_s:
        return _within(a.duration_s, GOOD_DURATION_S, "short", "long")
    if a.language == "ko":
        return _within(a.syllables, GOOD_SYLLABLES_KO, "short", "long")
    return _within(a.words, GOOD_WORDS_EN, "short", "long")


def pace_verdict(a: AnswerFacts) -> str | None:
    """ "ok", "slow", "fast", or None when the pace is unknown (not judged)."""
    if a.language == "ko" and a.syllables_per_second:
        return _within(a.syllables_per_second, PACE_SPS_KO, "slow", "fast")
    if a.words_per_minute is None:
        return None
    window = PACE_WPM_KO if a.language == "ko" else PACE_WPM_EN
    return _within(a.words_per_minute, window, "slow", "fast")


def similarity_percent(a: AnswerFacts) -> int | None:
    if not a.reference or not a.words:
        return None
    return round(100 * len(a.matched) / len(a.reference))
