"""Reading the self-introduction (`read_intro`).

- **Skills**: a fixed vocabulary (`TECH_TERMS`: Python, PyTorch, TensorFlow, YOLO,
  Kubernetes, Docker, SQL, React, AWS, Great Expectations, … and Korean terms such as
  딥러닝, 자연어 처리, 객체 탐지, 모델 경량화, 도커 → Docker), in order of first
  mention. Fields (`CONCEPTS`: deep learning, 감정 인식, …) are shown in Korean on a
  Korean page (`skill_label`).
- **Projects**: quoted names ("…", '…', “…”, 「…」, 『…』), CamelCase names
  (EmoVision) that are not skills, up to three noun words before 프로젝트 ("감정 인식
  프로젝트") or before "project" ("the emotion recognition project"), and runs of two to
  four Capitalised Words (Smart Factory Monitor) that hold no known skill (so "Great
  Expectations" or "Apache Airflow" are tools, not projects) — minus the company and
  the job title.
- **Results**: a number with a unit (%, 배, x, ms, 초, 명, users, …) as a phrase that
  reads on its own. English: from the past-tense result verb before it (reduced, cut,
  improved, …) to the number, a "to N unit" that follows included ("reduced its memory
  use by 40%", "cut latency from 200 ms to 80 ms"); without such a verb, the bare figure
  (with a comparative after it: "40% faster"). Korean: up to two nouns before it, the
  number with its 에서/로/까지, and the result verb after it as a noun ("추론 속도 40%
  개선", "처리 시간 3배 단축", "응답 시간 120ms에서 60ms로 단축"). A ratio (%, 배, x,
  times, percent) always counts; another unit (ms, 초, 명, users, …) only with a result
  verb or word next to it, so "4명의 팀" is not a result.
- **Keywords**: the remaining content words (Korean particles and verb endings
  stripped, stop words dropped), most frequent first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from llm.offline.vocabulary import CONCEPTS, TECH_TERMS
from llm.offline.words import (
    PUNCT,
    STOP_EN,
    STOP_KO,
    find_skills,
    has_hangul,
    normalise_word,
    top_keywords,
)
from llm.schemas import Profile

_UNIT = (
    r"%p|%|퍼센트|배|x(?![A-Za-z0-9])|times|ms|초|분|시간|명|건|개|만|천|억|원|fps|percent"
    r"|points?|hours?|minutes?|seconds?|users?|requests?"
)
_RESULT_RE = re.compile(rf"(\d+(?:[.,]\d+)?)\s?({_UNIT})(?![A-Za-z])", re.IGNORECASE)
_RATIO_UNITS = {"%", "%p", "퍼센트", "배", "x", "times", "percent", "points", "point"}
#: Words next to a figure that make it a result (with units that are not ratios).
_RESULT_WORDS_EN = {
    "improved",
    "improving",
    "reduced",
    "reducing",
    "increased",
    "cut",
    "faster",
    "boosted",
    "saved",
    "lowered",
    "raised",
    "by",
    "down",
    "up",
}
#: Past-tense verbs a result phrase starts at ("reduced its memory use by 40%").
_RESULT_VERBS_EN = frozenset(
    """reduced cut improved increased boosted saved lowered raised grew doubled tripled
    halved achieved reached decreased shortened dropped trimmed lifted slashed accelerated
    sped brought expanded scaled maintained kept hit delivered""".split()
)
#: Comparatives that belong to a bare figure ("40% faster").
_COMPARATIVES_EN = frozenset(
    "faster slower fewer less more lower higher smaller larger cheaper better".split()
)
#: "… to 80 ms" after a figure: the end of a from-to result.
_RANGE_TAIL_RE = re.compile(
    rf"\s+(?:down\s+|up\s+)?to\s+\d+(?:[.,]\d+)?\s?(?:{_UNIT})(?![A-Za-z])", re.IGNORECASE
)
_SENTENCE_END_RE = re.compile(r"[.!?;](?=\s|$)|\n")
#: How far before a figure (words) its verb may stand.
_RESULT_VERB_REACH = 10
#: Korean result verb stems and the noun each result phrase ends with (줄였 → 감소).
_RESULT_VERBS_KO = (
    ("개선", "개선"),
    ("향상", "향상"),
    ("감소", "감소"),
    ("단축", "단축"),
    ("증가", "증가"),
    ("절감", "절감"),
    ("달성", "달성"),
    ("상승", "상승"),
    ("기록", "기록"),
    ("줄", "감소"),
    ("늘", "증가"),
    ("높", "향상"),
    ("낮", "감소"),
)
#: Particles kept on a Korean figure (they carry from/to: "120ms에서 60ms로").
_KO_RANGE_PARTICLES = ("에서", "으로", "로", "까지")
#: First person → second person, for putting an intro's phrase to the candidate.
_SECOND_PERSON = {
    "i": "you",
    "me": "you",
    "my": "your",
    "mine": "yours",
    "myself": "yourself",
    "we": "you",
    "us": "you",
    "our": "your",
    "ours": "yours",
    "ourselves": "yourselves",
}

_QUOTED_RE = re.compile(
    r"\"([^\"\n]{2,40})\"|(?<![A-Za-z])'([^'\n]{2,40})'(?![A-Za-z])|“([^”\n]{2,40})”"
    r"|‘([^’\n]{2,40})’|「([^」\n]{2,40})」|『([^』\n]{2,40})』|《([^》\n]{2,40})》"
)
_CAMEL_RE = re.compile(r"(?<![A-Za-z0-9])[A-Z][a-z0-9]+(?:[A-Z][A-Za-z0-9]*)+(?![A-Za-z0-9])")
_CAPITALISED_RE = re.compile(r"(?<![A-Za-z0-9])[A-Z][A-Za-z0-9]*(?:[ \t]+[A-Z][A-Za-z0-9]*){1,3}")
#: Words that make a project generic, not named ("사이드 프로젝트", "team project").
_GENERIC_PROJECT_WORDS = frozenset(
    "사이드 개인 토이 졸업 팀 다른 첫 관련 신규 기존 주요 대형 소규모 연구 "
    "side personal toy team group school class university capstone final new big small "
    "research other first main".split()
)
_NAME_INTRO_RE = re.compile(r"(?:name is|i am|i'm|this is)\s*$", re.IGNORECASE)
_LEADING_STOP = {
    "the",
    "in",
    "at",
    "during",
    "my",
    "our",
    "we",
    "i",
    "when",
    "while",
    "after",
    "as",
    "this",
    "that",
    "also",
    "then",
    "since",
    "for",
    "from",
    "with",
    "a",
    "an",
    "on",
    "hello",
    "hi",
    "previous",
    "current",
    "last",
    "role",
    "job",
    "position",
    "several",
    "various",
    "multiple",
    "different",
    "other",
    "side",
    "these",
    "those",
    "all",
}


def _is_skill(text: str) -> bool:
    return any(pattern.fullmatch(text.strip()) for _, pattern in TECH_TERMS)


def _noun_run_before(words: list[str], limit: int = 3) -> list[str]:
    """Up to `limit` noun-like words at the end of `words` (Korean: no particle/ending)."""
    run: list[str] = []
    for token in reversed(words):
        bare = token.strip(PUNCT)
        lowered = bare.lower()
        if not bare or len(run) == limit:
            break
        if lowered in STOP_KO or lowered in STOP_EN or lowered in _LEADING_STOP:
            break
        # A Korean word carrying a particle or a verb ending belongs to the sentence,
        # not to the name ("진행하며 | 음성 비서 프로젝트").
        if has_hangul(bare) and normalise_word(bare) != lowered:
            break
        run.insert(0, bare)
    return run


def find_projects(text: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """Named projects in `text`, in order of first mention (see the module docstring)."""
    found: list[tuple[int, str]] = []
    for match in _QUOTED_RE.finditer(text):
        name = next(group for group in match.groups() if group)
        found.append((match.start(), name.strip()))
    for match in _CAMEL_RE.finditer(text):
        found.append((match.start(), match.group(0)))
    for match in re.finditer(r"프로젝트", text):
        before = text[max(0, match.start() - 60) : match.start()]
        before = re.split(r"[.!?\n,]", before)[-1]
        tokens = before.split()
        run = _noun_run_before(tokens)
        stopper = tokens[-len(run) - 1] if len(tokens) > len(run) else ""
        if run and not stopper.endswith("라는") and not set(run) <= _GENERIC_PROJECT_WORDS:
            # ("'EmoVision'이라는 감정 인식 프로젝트" is one project, already found by name.)
            # "감정 인식 프로젝트" and "EmoVision프로젝트" both name a project.
            found.append((match.start() - len(" ".join(run)) - 1, " ".join([*run, "프로젝트"])))
    for match in re.finditer(r"(?<![A-Za-z])projects?(?![A-Za-z])", text, re.IGNORECASE):
        before = re.split(r"[.!?\n,]", text[max(0, match.start() - 80) : match.start()])[-1]
        run = _noun_run_before(before.split())
        if run and not {w.lower() for w in run} <= _GENERIC_PROJECT_WORDS:
            # "Smart Factory Monitor project" is named "Smart Factory Monitor".
            name = " ".join(run if all(w[0].isupper() for w in run) else [*run, "project"])
            found.append((match.start() - len(" ".join(run)) - 1, name))
    for match in _CAPITALISED_RE.finditer(text):
        if _NAME_INTRO_RE.search(text[max(0, match.start() - 16) : match.start()]):
            continue  # "My name is Jane Doe": a person, not a project
        words = match.group(0).split()
        while words and words[0].lower() in _LEADING_STOP:
            words.pop(0)
        while words and (len(words[-1]) == 1 or words[-1].lower() in _LEADING_STOP):
            words.pop()  # "… at Google I worked": the pronoun is not part of the name
        # Acronym runs ("AI ML") are titles or skills, not names: most words need lowercase.
        lowercase = sum(1 for word in words if any(ch.islower() for ch in word))
        # A run holding a known tool names the tool ("Apache Airflow", "PyTorch
        # Lightning"), not a project.
        if len(words) >= 2 and 2 * lowercase > len(words) and not find_skills(" ".join(words)):
            found.append((match.start(), " ".join(words)))

    excluded = {item.strip().lower() for item in exclude if item.strip()}
    names: list[str] = []
    for _, name in sorted(found, key=lambda item: item[0]):
        key = name.lower()
        if key in excluded or _is_skill(name) or len(name) < 2:
            continue
        if any(key in kept.lower() or kept.lower() in key for kept in names):
            continue  # "EmoVision" and "EmoVision 프로젝트" are the same project
        names.append(name)
    return names


def _result_en(text: str, match: re.Match[str], ratio: bool) -> tuple[str, int] | None:
    """The English result phrase around the figure `match` and where it ends, or None."""
    bounds = [m.end() for m in _SENTENCE_END_RE.finditer(text, 0, match.start())]
    sentence_start = bounds[-1] if bounds else 0
    end = match.end()
    tail = _RANGE_TAIL_RE.match(text, end)
    if tail:
        end = tail.end()  # "from 200 ms to 80 ms"
    before = list(re.finditer(r"\S+", text[sentence_start : match.start()]))
    verb_at = None
    for token in reversed(before[-_RESULT_VERB_REACH:]):
        if token.group(0).strip(PUNCT).lower() in _RESULT_VERBS_EN:
            verb_at = sentence_start + token.start()
            break
    if verb_at is not None:
        return text[verb_at:end].strip().rstrip(PUNCT), end
    after = text[end:].split()
    nearby = {t.strip(PUNCT).lower() for t in [*(b.group(0) for b in before[-4:]), *after[:2]]}
    if not (ratio or nearby & _RESULT_WORDS_EN):
        return None
    start = match.start()
    if before and before[-1].group(0).lower() == "from":
        start = sentence_start + before[-1].start()  # "from 85% to 92%"
    phrase = text[start:end].strip()
    if after and after[0].strip(PUNCT).lower() in _COMPARATIVES_EN:
        phrase += " " + after[0].strip(PUNCT)  # "40% faster"
    return phrase, end


def _result_ko(text: str, match: re.Match[str], ratio: bool) -> str | None:
    """The Korean result phrase around the figure `match`, or None."""
    bounds = [m.end() for m in _SENTENCE_END_RE.finditer(text, 0, match.start())]
    sentence_start = bounds[-1] if bounds else 0
    tokens = list(re.finditer(r"\S+", text[sentence_start:]))
    at = next(i for i, t in enumerate(tokens) if t.end() + sentence_start > match.start())
    figure = tokens[at].group(0).rstrip(PUNCT)
    later = [t.group(0).strip(PUNCT) for t in tokens[at + 1 : at + 3]]
    if figure.endswith("에서") and later and _RESULT_RE.search(later[0]):
        return None  # "120ms에서 60ms로": the phrase is made at its second figure
    noun = ""
    for word in later:
        noun = next((n for stem, n in _RESULT_VERBS_KO if word.startswith(stem)), "")
        if noun or word.endswith((",", ".")):
            break
    if not (ratio or noun):
        return None
    keep = next((p for p in _KO_RANGE_PARTICLES if figure.endswith(p)), "")
    figure = text[match.start() : match.end()] + keep  # "(약40%를" → "40%"
    parts = [figure]
    index = at - 1
    if (
        index >= 0
        and tokens[index].group(0).endswith("에서")
        and _RESULT_RE.search(tokens[index].group(0))
    ):
        parts.insert(0, tokens[index].group(0).strip(PUNCT))  # the "from" figure
        index -= 1
    lead: list[str] = []
    while index >= 0 and len(lead) < 2:
        token = tokens[index].group(0)
        if token.endswith((",", ".")) or normalise_word(token) is None:
            break
        lead.insert(0, _strip_particle(token.strip(PUNCT)))
        index -= 1
    if noun == "감소" and any(word.endswith("시간") for word in lead):
        noun = "단축"  # 시간을 줄였다 → 시간 단축
    return " ".join([*lead, *parts, noun]).strip()


_KO_PARTICLES = ("에서", "으로", "을", "를", "이", "가", "은", "는", "의", "로", "과", "와")


def _strip_particle(word: str) -> str:
    """A Korean noun without the particle on its end (시간을 → 시간); case kept."""
    for particle in _KO_PARTICLES:
        # 을/를 never end a noun; the others may ("평가", "차이"), so those need two
        # syllables before them.
        stem = 1 if particle in ("을", "를") else 2
        if word.endswith(particle) and len(word) >= len(particle) + stem:
            return word[: -len(particle)]
    return word


def find_results(text: str) -> list[str]:
    """Measured results as phrases that read on their own (see the module docstring):
    "reduced its memory use by 40%", "cut latency from 200 ms to 80 ms", "40% faster",
    "추론 속도 40% 개선", "응답 시간 120ms에서 60ms로 단축"."""
    results: list[str] = []
    covered = 0
    for match in _RESULT_RE.finditer(text):
        if match.start() < covered:
            continue  # the "to" figure of a from-to phrase already taken
        ratio = match.group(2).lower() in _RATIO_UNITS
        if has_hangul(text[max(0, match.start() - 20) : match.end() + 20]):
            phrase = _result_ko(text, match, ratio)
        else:
            found = _result_en(text, match, ratio)
            phrase, covered = found if found else (None, covered)
        if phrase and phrase not in results:
            results.append(phrase)
    return results


def is_verb_phrase(result: str) -> bool:
    """Whether an English result starts at its verb ("reduced … by 40%")."""
    first = result.split(maxsplit=1)[0].lower() if result.strip() else ""
    return first in _RESULT_VERBS_EN and not has_hangul(result)


def second_person(phrase: str) -> str:
    """An intro's first-person phrase said back to the candidate (my → your, we → you)."""
    return re.sub(
        r"\b(?:I|me|my|mine|myself|we|us|our|ours|ourselves)\b",
        lambda m: _SECOND_PERSON[m.group(0).lower()],
        phrase,
        flags=re.IGNORECASE,
    )


@dataclass(frozen=True)
class IntroFacts:
    """What the offline engine read from a self-introduction."""

    #: Named projects, in order of first mention.
    projects: list[str] = field(default_factory=list)
    #: Known skills (canonical names), in order of first mention.
    skills: list[str] = field(default_factory=list)
    #: Measured results ("추론 속도 40% 개선"), in order.
    results: list[str] = field(default_factory=list)
    #: Other content words, most frequent first.
    keywords: list[str] = field(default_factory=list)

    @property
    def tools(self) -> list[str]:
        """The skills that are tools one chooses (not fields such as deep learning)."""
        return [skill for skill in self.skills if skill not in CONCEPTS]


def read_intro(profile: Profile) -> IntroFacts:
    """Projects, skills, results and keywords of the profile's self-introduction."""
    text = profile.self_intro
    skills = find_skills(text)
    projects = find_projects(text, exclude=(profile.company, profile.job_title))
    skill_words = {w.lower() for s in skills for w in s.split()}
    keywords = [w for w in top_keywords(text, 30) if w not in skill_words]
    return IntroFacts(
        projects=projects, skills=skills, results=find_results(text), keywords=keywords[:15]
    )
