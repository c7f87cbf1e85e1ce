"""`intervue bench llm`: the language model as the interviewer uses it, on this machine.

Drives the model through the product's own client (`llm.client.LlmClient`, the prompts
and schemas the interviewer sends) over the profiles and answers checked in beside this
module (`llm_cases.json`: Korean and English candidates of different jobs, answers that
are strong, vague, very short or off-topic), either against a llama.cpp server the bench
starts itself (``python -m llama_cpp.server`` on a free loopback port, with the default
GGUF or ``--model``) or against any OpenAI-compatible server (``--base-url``).

Per task (questions ko / en, evaluation ko / en) the report gives:

* **latency** p50/p95 of one step, as the interviewer waits for it (every call of the
  step, a corrective retry included);
* **tokens**: prompt and completion tokens from the server's ``usage``, and output
  tokens/s = completion tokens over the seconds of the calls (prompt processing
  included: what a step costs, not the decoder's speed alone);
* **JSON validity**: the client accepted the first reply, accepted it after its one
  corrective retry, or gave up (`llm.client.LlmOutputError`); the first reply's JSON is
  also checked on its own (`first_reply_json`), so a retry says whether the JSON was
  broken or only did not fit the schema;
* **language**: Korean steps need a Hangul share of the letters of at least
  `KOREAN_MIN_HANGUL_SHARE` (tool names stay in Latin letters), English steps no Hangul;
  an evaluation's ratings are the product's Korean words in both languages and are left
  out;
* **grounding** (questions): a question is grounded when it names something of the
  self-introduction — a content word of it that is not in the job title, the company or
  `GENERIC_WORDS`, a known skill (`llm.offline.words`), or a figure; the share of
  grounded questions and of sets with all three grounded. A **wrong premise** is a
  question that treats a tool the candidate moved away from (the case's ``avoid``) as
  their choice ("why did you choose Hadoop" to someone who replaced it);
* the evaluations' **overall rating** per kind of answer (0 needs improvement, 1 fine,
  2 very good), which shows how lenient the model is.

**Interference** (only with a server the bench started, on the same machine): the vision
worker's per-frame cost (`VisionPipeline.analyse_jpeg`, decode → face → emotion, what
`bench vision` measures: the compute part of glass-to-emotion) and Whisper's end of
speech → transcript (`deploy.bench.speech.measure`, ``tiny.en`` on espeak-ng answers),
idle and while the model generates, alternating in rounds in the same run; the report
shows their p50/p95 and the ratio busy / idle, and the model's decode rate while it was
disturbed (streamed tokens/s).

The pure parts (scoring, the table) are unit-tested in tests/test_bench_llm.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import re
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from deploy.bench.tables import fmt, loadavg, machine, p50_p95, render
from llm.local.server import LocalLlmServer, LocalServerSettings
from llm.offline.words import content_words, find_skills, has_hangul
from stream.contract import SpeakingMetrics
from stream.fillers import find_fillers
from stream.ports import free_port
from stream.stats import percentile

log = logging.getLogger(__name__)

CASES_PATH = Path(__file__).with_name("llm_cases.json")
TASKS = ("questions-ko", "questions-en", "evaluation-ko", "evaluation-en")
AnswerKind = Literal["strong", "vague", "short", "off_topic"]
ANSWER_KINDS: tuple[AnswerKind, ...] = ("strong", "vague", "short", "off_topic")

#: A Korean reply needs at least this share of Hangul among its letters: Korean prose
#: around tool names (Kafka, PyTorch) stays well above it, an English reply is at 0.
KOREAN_MIN_HANGUL_SHARE = 0.5

#: Words that appear in nearly every profile of a job and so say nothing about this
#: candidate (beside the offline engine's stop words): a question grounded only by them
#: is not grounded.
GENERIC_WORDS = frozenset(
    """서비스 시스템 개발 개발자 데이터 사용자 성능 품질 구조 방법 과정 설계 운영
    엔지니어 엔지니어링 규모 안정 안정적 팀장 조직
    고객 환경 도구 코드 기능 작업 개선 효과 목표 지표 사례 전략
    service services system systems data user users performance quality engineer engineers
    engineering design process approach development developer developers software code
    application applications app apps product products customer customers tool tools
    feature features improve improvement impact goal goals metric metrics strategy
    scale large stable reliability environment""".split()
)

_LATIN_RE = re.compile(r"[A-Za-z]")
_HANGUL_RE = re.compile(r"[가-힣]")
_FIGURE_RE = re.compile(r"\d+(?:[.,]\d+)?")
_CHOICE_EN = re.compile(
    r"\b(choos\w*|chose\w*|choice|pick\w*|select\w*|prefer\w*|opt(?:ed)? for|adopt\w*"
    r"|decid\w* (?:to|on) (?:use|go with)|why (?:did|do|would) you use)\b",
    re.IGNORECASE,
)
_CHOICE_KO = re.compile(
    r"선택|고른|골랐|고르|채택|도입한 이유|도입하신 이유|쓰신 이유|사용한 이유|사용하신 이유"
)
# the avoided tool as what was left: "over Hadoop", "from Hadoop", "Hadoop에서", "Hadoop 대신"
_LEFT_BEFORE = r"(?:over|from|instead of|than|replac\w*|migrat\w* (?:off|away from)|away from)\s+"
_LEFT_AFTER = (
    r"(?:\s*(?:에서|으로부터|로부터|대신|보다|를 대체|을 대체|를 걷어|을 걷어|를 대신|을 대신))"
)


# --------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class BenchAnswer:
    """One answer to evaluate, to a question written with it."""

    kind: AnswerKind
    seconds: float
    question: str
    answer: str


@dataclass(frozen=True)
class BenchProfile:
    """One candidate: the form they filled in and answers of theirs to evaluate."""

    id: str
    language: Literal["ko", "en"]
    job_title: str
    years: int
    company: str
    self_intro: str
    avoid: tuple[str, ...]
    answers: tuple[BenchAnswer, ...]

    def profile(self):  # -> llm.schemas.Profile
        from llm.schemas import Profile

        return Profile.parse(
            {
                "job_title": self.job_title,
                "years": self.years,
                "company": self.company,
                "self_intro": self.self_intro,
                "language": self.language,
            }
        )


def load_cases(path: Path = CASES_PATH) -> list[BenchProfile]:
    """The benchmark's profiles, in file order."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return [
        BenchProfile(
            id=p["id"],
            language=p["language"],
            job_title=p["job_title"],
            years=int(p["years"]),
            company=p["company"],
            self_intro=p["self_intro"],
            avoid=tuple(p.get("avoid", ())),
            answers=tuple(BenchAnswer(**a) for a in p["answers"]),
        )
        for p in data["profiles"]
    ]


def pick_profiles(
    cases: Sequence[BenchProfile], language: str, count: int | None
) -> list[BenchProfile]:
    """The first `count` profiles in `language` (all of them for None)."""
    chosen = [c for c in cases if c.language == language]
    return chosen if count is None else chosen[:count]


def answer_metrics(answer: BenchAnswer, language: str) -> SpeakingMetrics:
    """Speaking metrics as the speech worker would measure the answer spoken in
    `answer.seconds` (no word timings: rates over the whole duration, no pauses)."""
    return SpeakingMetrics.of(
        duration_s=answer.seconds,
        speech_s=answer.seconds,
        rate_s=answer.seconds,
        word_count=sum(1 for w in answer.answer.split() if re.search(r"\w", w)),
        hangul_syllables=len(_HANGUL_RE.findall(answer.answer)),
        rate_basis="syllables" if language == "ko" else "words",
        filler_words=find_fillers(answer.answer),
        pause_count=0,
        longest_pause_s=0.0,
        total_pause_s=0.0,
        language=language,
    )


# --------------------------------------------------------------------------- scoring


def hangul_share(text: str) -> float:
    """Hangul syllables over all letters (Hangul + Latin) of `text`; 0 without letters."""
    hangul = len(_HANGUL_RE.findall(text))
    letters = hangul + len(_LATIN_RE.findall(text))
    return hangul / letters if letters else 0.0


def language_ok(text: str, language: str) -> bool:
    """Korean: Hangul share ≥ `KOREAN_MIN_HANGUL_SHARE`; English: no Hangul at all."""
    if language == "ko":
        return hangul_share(text) >= KOREAN_MIN_HANGUL_SHARE
    return not has_hangul(text)


def grounding_terms(question: str, self_intro: str, exclude: str = "") -> list[str]:
    """What `question` names from `self_intro`: shared content words (not in `exclude` —
    the job title and company — nor generic), shared known skills and shared figures, in
    the question's order. Empty: the question is not grounded."""
    excluded = set(content_words(exclude)) | GENERIC_WORDS
    intro_words = set(content_words(self_intro)) - excluded
    terms = [w for w in content_words(question) if w in intro_words]
    intro_skills = set(find_skills(self_intro))
    terms += [s for s in find_skills(question) if s in intro_skills]
    intro_figures = set(_FIGURE_RE.findall(self_intro))
    terms += [f for f in _FIGURE_RE.findall(question) if f in intro_figures and len(f) > 1]
    return list(dict.fromkeys(terms))


#: Two questions whose content words overlap this much (Jaccard) ask the same thing.
SAME_QUESTION_OVERLAP = 0.8


def repeated_questions(questions: Sequence[str]) -> int:
    """How many questions repeat an earlier one of the set (content-word Jaccard ≥
    `SAME_QUESTION_OVERLAP`, or the same text)."""
    seen: list[set[str]] = []
    repeats = 0
    for question in questions:
        words = set(content_words(question)) or {question.strip().lower()}
        if any(len(words & w) / len(words | w) >= SAME_QUESTION_OVERLAP for w in seen):
            repeats += 1
        seen.append(words)
    return repeats


def wrong_premise(question: str, avoid: Sequence[str]) -> str | None:
    """The avoided tool `question` treats as the candidate's choice, or None.

    A question about choosing (choose, pick, 선택, 도입한 이유, …) that names a tool the
    candidate moved away from, where the question does not itself name it as what was
    left ("over Hadoop", "from Hadoop", "Hadoop에서", "Hadoop 대신")."""
    if not (_CHOICE_EN.search(question) or _CHOICE_KO.search(question)):
        return None
    for tool in avoid:
        name = re.escape(tool)
        if not re.search(name, question, re.IGNORECASE):
            continue
        left = re.search(_LEFT_BEFORE + name, question, re.IGNORECASE) or re.search(
            name + _LEFT_AFTER, question, re.IGNORECASE
        )
        if not left:
            return tool
    return None


JsonOutcome = Literal["first", "retried", "failed", "error"]
_OUTCOMES: tuple[JsonOutcome, ...] = ("first", "retried", "failed", "error")


def json_outcome(replies: int, accepted: bool, unavailable: bool = False) -> JsonOutcome:
    """How the step's structured output went: accepted on the first reply, after the
    client's one corrective retry, not at all (``failed``), or no reply to judge
    (``error``: the server was unavailable)."""
    if accepted:
        return "first" if replies <= 1 else "retried"
    return "error" if unavailable else "failed"


def first_reply_is_json(text: str | None) -> bool | None:
    """Whether a reply parses as JSON at all (the client's own tolerant parser); None
    when there was no reply."""
    if text is None:
        return None
    from llm.client import extract_json

    try:
        extract_json(text)
    except (ValueError, TypeError):
        return False
    return True


_NOT_PROSE = {"rating", "engine", "fallback_error", "match_percent"}


def prose(data: Any) -> list[str]:
    """The text fields of a result (reasons, tips, model answer, questions) — not its
    ratings, which are the product's Korean words in both languages, nor engine fields."""
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [t for k, v in data.items() if k not in _NOT_PROSE for t in prose(v)]
    if isinstance(data, list | tuple):
        return [t for v in data for t in prose(v)]
    return []


# --------------------------------------------------------------------------- results


@dataclass
class CallRecord:
    """One chat-completion call as the server answered it."""

    seconds: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    text: str | None = None
    error: str | None = None


_PERF_RE = re.compile(
    r"llama_perf_context_print:\s+(prompt eval|eval) time =\s*([\d.]+) ms /\s*(\d+) (?:tokens|runs)"
)


@dataclass
class ServerPerf:
    """What llama.cpp's own timers say about some calls (its log's
    ``llama_perf_context_print`` lines): prompt tokens it evaluated (a prefix cached from
    the previous request is not among them) and tokens it decoded, with their times."""

    prompt_tokens: int = 0
    prompt_ms: float = 0.0
    decoded_tokens: int = 0
    decode_ms: float = 0.0

    @classmethod
    def parse(cls, log_text: str) -> ServerPerf | None:
        """The sum of every perf entry in `log_text`; None when there is none."""
        perf, found = cls(), False
        for kind, ms, count in _PERF_RE.findall(log_text):
            found = True
            if kind == "prompt eval":
                perf.prompt_tokens += int(count)
                perf.prompt_ms += float(ms)
            else:
                perf.decoded_tokens += int(count)
                perf.decode_ms += float(ms)
        return perf if found else None


def rate(tokens: int, ms: float) -> float | None:
    """Tokens per second, None without time."""
    return tokens * 1000.0 / ms if ms > 0 else None


class LogTail:
    """Reads what a growing log file gained since the last read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def read_new(self) -> str:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        return data.decode("utf-8", errors="replace")


@dataclass
class StepResult:
    """One step (one question set or one evaluation) of one task."""

    task: str
    profile: str
    seconds: float
    calls: list[CallRecord]
    outcome: JsonOutcome
    error: str | None = None
    answer_kind: str | None = None
    #: The engine the result names (a product engine that falls back says "offline").
    engine: str | None = None
    first_reply_json: bool | None = None
    hangul_share: float | None = None
    language_ok: bool | None = None
    questions: list[str] = field(default_factory=list)
    grounding: list[list[str]] = field(default_factory=list)
    wrong_premises: list[str] = field(default_factory=list)
    repeated: int = 0
    overall_score: int | None = None
    result: dict[str, Any] | None = None
    #: llama.cpp's timers for the step's calls (a server the bench started).
    server_perf: ServerPerf | None = None

    @property
    def replies(self) -> int:
        return sum(1 for c in self.calls if c.error is None)

    @property
    def prompt_tokens(self) -> int | None:
        """From the server's ``usage``; a streamed reply carries none (llama-cpp-python
        0.3.36 has no ``stream_options``), so then llama.cpp's own count of the prompt
        tokens it evaluated (a prefix cached from the previous request not among them)."""
        usage = _sum(c.prompt_tokens for c in self.calls)
        if usage is None and self.server_perf is not None:
            return self.server_perf.prompt_tokens
        return usage

    @property
    def completion_tokens(self) -> int | None:
        """From the server's ``usage``, else the tokens llama.cpp says it decoded."""
        usage = _sum(c.completion_tokens for c in self.calls)
        if usage is None and self.server_perf is not None:
            return self.server_perf.decoded_tokens
        return usage

    @property
    def call_seconds(self) -> float:
        return sum(c.seconds for c in self.calls)

    @property
    def grounded(self) -> list[bool]:
        return [bool(terms) for terms in self.grounding]


def _sum(values: Iterator[int | None] | Any) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def score_questions(step: StepResult, case: BenchProfile, questions: list[str]) -> None:
    """Fill a questions step's language, grounding and premise figures."""
    text = "\n".join(questions)
    step.questions = questions
    step.hangul_share = hangul_share(text)
    step.language_ok = language_ok(text, case.language)
    exclude = f"{case.job_title} {case.company}"
    step.grounding = [grounding_terms(q, case.self_intro, exclude) for q in questions]
    step.wrong_premises = [t for q in questions if (t := wrong_premise(q, case.avoid))]
    step.repeated = repeated_questions(questions)


def score_evaluation(step: StepResult, case: BenchProfile, result: dict[str, Any]) -> None:
    """Fill an evaluation step's language figures and its overall rating."""
    from llm.schemas import Rating

    text = "\n".join(prose(result))
    step.hangul_share = hangul_share(text)
    step.language_ok = language_ok(text, case.language)
    rating = (result.get("overall") or {}).get("rating")
    step.overall_score = Rating(rating).score if rating else None


@dataclass
class TaskSummary:
    """One task's row of the table."""

    task: str
    steps: int
    latency_p50: float
    latency_p95: float
    prompt_tokens: float | None
    completion_tokens: float | None
    tokens_per_s: float | None
    prompt_eval_per_s: float | None
    decode_per_s: float | None
    outcomes: dict[str, int]
    language_ok: int
    language_n: int
    grounded: int | None
    questions_n: int | None
    sets_grounded: int | None
    sets_n: int | None
    sets_distinct: int | None
    wrong_premises: int | None
    fallbacks: int

    @classmethod
    def of(cls, task: str, steps: Sequence[StepResult]) -> TaskSummary:
        latencies = [s.seconds for s in steps]
        counted = [s for s in steps if s.completion_tokens is not None]
        tokens = sum(s.completion_tokens or 0 for s in counted)
        call_seconds = sum(s.call_seconds for s in counted)
        prompt = [s.prompt_tokens for s in steps if s.prompt_tokens is not None]
        completion = [s.completion_tokens for s in steps if s.completion_tokens is not None]
        perfs = [s.server_perf for s in steps if s.server_perf is not None]
        outcomes = {o: sum(1 for s in steps if s.outcome == o) for o in _OUTCOMES}
        judged = [s for s in steps if s.language_ok is not None]
        is_questions = task.startswith("questions")
        grounded = [g for s in steps for g in s.grounded]
        sets = [s for s in steps if s.questions]
        return cls(
            task=task,
            steps=len(steps),
            latency_p50=percentile(latencies, 50),
            latency_p95=percentile(latencies, 95),
            prompt_tokens=statistics.fmean(prompt) if prompt else None,
            completion_tokens=statistics.fmean(completion) if completion else None,
            tokens_per_s=tokens / call_seconds if call_seconds > 0 else None,
            prompt_eval_per_s=rate(
                sum(p.prompt_tokens for p in perfs), sum(p.prompt_ms for p in perfs)
            ),
            decode_per_s=rate(
                sum(p.decoded_tokens for p in perfs), sum(p.decode_ms for p in perfs)
            ),
            outcomes=outcomes,
            language_ok=sum(1 for s in judged if s.language_ok),
            language_n=len(judged),
            grounded=sum(grounded) if is_questions else None,
            questions_n=len(grounded) if is_questions else None,
            sets_grounded=sum(1 for s in sets if all(s.grounded)) if is_questions else None,
            sets_n=len(sets) if is_questions else None,
            sets_distinct=sum(1 for s in sets if not s.repeated) if is_questions else None,
            wrong_premises=sum(len(s.wrong_premises) for s in sets) if sets else None,
            fallbacks=sum(1 for s in steps if s.engine == "offline"),
        )


def _ratio(part: int | None, whole: int | None) -> str:
    if part is None or not whole:
        return "–"
    return f"{part}/{whole}"


def summary_table(summaries: Sequence[TaskSummary]) -> list[str]:
    """The per-task Markdown table."""
    lines = [
        "| task | steps | p50 s | p95 s | prompt tok | output tok | output tok/s "
        "| prompt eval tok/s | decode tok/s | JSON first / retried / invalid / no reply "
        "| language ok | grounded questions | sets all grounded | sets without repeats "
        "| wrong premise |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        lines.append(
            f"| {s.task.replace('-', ' ')} | {s.steps} | {s.latency_p50:.1f} "
            f"| {s.latency_p95:.1f} | {fmt(s.prompt_tokens)} | {fmt(s.completion_tokens)} "
            f"| {fmt(s.tokens_per_s, 1)} | {fmt(s.prompt_eval_per_s, 1)} "
            f"| {fmt(s.decode_per_s, 1)} "
            f"| {' / '.join(str(s.outcomes[o]) for o in _OUTCOMES)} "
            f"| {_ratio(s.language_ok, s.language_n)} | {_ratio(s.grounded, s.questions_n)} "
            f"| {_ratio(s.sets_grounded, s.sets_n)} | {_ratio(s.sets_distinct, s.sets_n)} "
            f"| {'–' if s.wrong_premises is None else s.wrong_premises} |"
        )
    return lines


def leniency_table(steps: Sequence[StepResult]) -> list[str]:
    """Mean overall rating (0–2) per task and kind of answer; empty without evaluations."""
    tasks = sorted({s.task for s in steps if s.task.startswith("evaluation")})
    if not tasks:
        return []
    lines = [
        "| task | " + " | ".join(k.replace("_", "-") for k in ANSWER_KINDS) + " |",
        "|---|" + "---:|" * len(ANSWER_KINDS),
    ]
    for task in tasks:
        cells = []
        for kind in ANSWER_KINDS:
            scores = [
                s.overall_score
                for s in steps
                if s.task == task and s.answer_kind == kind and s.overall_score is not None
            ]
            cells.append(f"{statistics.fmean(scores):.1f} (n={len(scores)})" if scores else "–")
        lines.append(f"| {task.replace('-', ' ')} | " + " | ".join(cells) + " |")
    return lines


@dataclass
class Interference:
    """Idle vs busy samples of one measurement (one unit for both)."""

    name: str
    unit: str
    idle: list[float]
    busy: list[float]


def interference_table(rows: Sequence[Interference]) -> list[str]:
    """Idle vs while-generating p50/p95 and their ratios."""
    lines = [
        "| measurement | unit | samples idle / busy | idle p50 | idle p95 | busy p50 "
        "| busy p95 | × p50 | × p95 |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        idle50, idle95 = percentile(r.idle, 50), percentile(r.idle, 95)
        busy50, busy95 = percentile(r.busy, 50), percentile(r.busy, 95)
        lines.append(
            f"| {r.name} | {r.unit} | {len(r.idle)} / {len(r.busy)} "
            f"| {p50_p95(r.idle)} | {p50_p95(r.busy)} "
            f"| {busy50 / idle50:.2f}× | {busy95 / idle95:.2f}× |"
        )
    return lines


def render_report(
    steps: Sequence[StepResult],
    tasks: Sequence[str],
    meta: dict[str, Any],
    interference: Sequence[Interference] = (),
) -> str:
    """The whole Markdown report."""
    summaries = [TaskSummary.of(t, [s for s in steps if s.task == t]) for t in tasks]
    summaries = [s for s in summaries if s.steps]
    lines = [
        "### Local language model: questions and evaluations",
        "",
        f"Machine: {machine()}, Python {platform.python_version()}. "
        f"Model: {meta['model']}; server: {meta['server']}. "
        f"Profiles: {meta['profiles']}; answers per profile: {meta['answers']}. "
        f"Load average at start {meta['load_start']}, at end {meta['load_end']}.",
        "",
        *summary_table(summaries),
        "",
        "Latency: one step as the interviewer waits for it (a corrective retry included). "
        "Tokens: mean per step from the server's usage, or for a streamed reply (no "
        "usage) llama.cpp's own counts from its log (prompt: the tokens it evaluated); "
        "output tok/s = completion tokens "
        "over the calls' seconds (prompt processing included); prompt eval and decode "
        "tok/s: llama.cpp's own timers from its log (a server the bench started; a prompt "
        "prefix cached from the previous request is not evaluated again). Language: Korean ≥ "
        f"{KOREAN_MIN_HANGUL_SHARE:.0%} Hangul among letters, English no Hangul. Grounded: "
        "the question names a word, skill or figure of the self-introduction (not the job "
        "title, company or a generic word); sets: of the question sets the model wrote. "
        "Repeats: a question whose content words overlap an earlier one's by ≥ "
        f"{SAME_QUESTION_OVERLAP:.0%}. No reply: the server did not answer within the "
        "timeout. Wrong premise: a question asking why the "
        "candidate chose a tool they moved away from.",
    ]
    if meta.get("interrupted"):
        lines += ["", f"**Run cut short**: {meta['interrupted']}."]
    if meta.get("interference_error"):
        lines += ["", f"Interference not measured: {meta['interference_error']}"]
    fallbacks = sum(s.fallbacks for s in summaries)
    if fallbacks:
        lines += ["", f"Steps the offline engine answered instead (fallback): {fallbacks}."]
    leniency = leniency_table(steps)
    if leniency:
        lines += [
            "",
            "Evaluation: mean overall rating per kind of answer (0 needs improvement, "
            "1 fine, 2 very good):",
            "",
            *leniency,
        ]
    if interference:
        lines += [
            "",
            "#### Interference: the vision worker and Whisper while the model generates",
            "",
            *interference_table(interference),
            "",
            meta.get("interference_note", ""),
        ]
    return render(lines)


# --------------------------------------------------------------------------- the server


class _RecordingCompletions:
    """``chat.completions`` of an openai client that notes each call (time, usage)."""

    def __init__(self, real: Any, calls: list[CallRecord]) -> None:
        self._real = real
        self.calls = calls

    async def create(self, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            response = await self._real.create(**kwargs)
        except Exception as exc:
            self.calls.append(CallRecord(time.perf_counter() - started, error=type(exc).__name__))
            raise
        if kwargs.get("stream"):  # noted when the reply has been read, not when it began
            return _RecordedStream(response, self.calls, started)
        usage = getattr(response, "usage", None)
        choices = getattr(response, "choices", None) or []
        self.calls.append(
            CallRecord(
                seconds=time.perf_counter() - started,
                prompt_tokens=getattr(usage, "prompt_tokens", None),
                completion_tokens=getattr(usage, "completion_tokens", None),
                finish_reason=choices[0].finish_reason if choices else None,
                text=(choices[0].message.content or "") if choices else "",
            )
        )
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _RecordedStream:
    """A streamed reply that notes its call (whole time, text, finish reason) once read
    to its end or closed: the product's client streams the local server's replies."""

    def __init__(self, stream: Any, calls: list[CallRecord], started: float) -> None:
        self._stream = stream
        self._calls = calls
        self._started = started
        self._parts: list[str] = []
        self._finish_reason: str | None = None
        self._noted = False

    async def __aiter__(self) -> Any:
        async for chunk in self._stream:
            if chunk.choices:
                self._parts.append(chunk.choices[0].delta.content or "")
                self._finish_reason = chunk.choices[0].finish_reason or self._finish_reason
            yield chunk
        self._note()

    async def close(self) -> None:
        self._note()
        await self._stream.close()

    def _note(self) -> None:
        if not self._noted:
            self._noted = True
            self._calls.append(
                CallRecord(
                    seconds=time.perf_counter() - self._started,
                    finish_reason=self._finish_reason,
                    text="".join(self._parts),
                )
            )


class _RecordingChat:
    def __init__(self, real: Any, calls: list[CallRecord]) -> None:
        self._real = real
        self.completions = _RecordingCompletions(real.completions, calls)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class RecordingOpenAI:
    """An ``openai.AsyncOpenAI`` whose chat completions are noted in `calls` (the
    product's client is handed this one: the seam is the openai client, nothing else)."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.calls: list[CallRecord] = []
        self.chat = _RecordingChat(real.chat, self.calls)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@contextmanager
def started_llama_server(
    model: Path, threads: int, context: int = 4096, ready_timeout_s: float = 300.0
) -> Iterator[LocalLlmServer]:
    """The product's `LocalLlmServer` on a free loopback port with llama.cpp's timings
    on, its whole log in a temporary file (`log_path`, read for the server's own rates),
    ready inside the block and stopped after it. Synchronous: the bench runs each step
    in its own event loop, and the server belongs to none."""
    if not model.is_file():
        raise FileNotFoundError(
            f"no model at {model}: prepare it (intervue models prepare --llm) or pass --model"
        )
    settings = LocalServerSettings(
        model, free_port(), threads, context, alias=model.stem, verbose=True
    )
    with tempfile.TemporaryDirectory(prefix="intervue-bench-llm-") as tmp:
        server = LocalLlmServer(
            settings, start_timeout_s=ready_timeout_s, log_path=Path(tmp) / "llama-server.log"
        )
        try:
            asyncio.run(server.start())
            yield server
        finally:
            server.stop_now(timeout_s=15.0)


def peak_rss_gib(pid: int) -> float | None:
    """The process's peak resident memory (VmHWM), GiB; None where /proc has none."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        return None
    return None


# --------------------------------------------------------------------------- the steps


def _settings(base_url: str, model_name: str, local: bool):  # -> LlmSettings
    """The product's settings for this endpoint: no retries (a failure is a figure),
    a long timeout (a loaded 2-core machine is slow, and the latency is what we want)."""
    from pydantic import ValidationError

    from llm.settings import LlmSettings

    values: dict[str, Any] = {
        "base_url": base_url,
        "model": model_name,
        "timeout_s": 600.0,
        "max_retries": 0,
    }
    # The embedded server, as the product's settings name it once they do (issue 14):
    # the client then asks it for schema-constrained output.
    if local and "engine" in LlmSettings.model_fields:
        try:
            return LlmSettings(**values, engine="local")
        except ValidationError:
            pass
    return LlmSettings(**values)


async def _run_step(
    settings,
    task: str,
    case: BenchProfile,
    answer: BenchAnswer | None,
    server_log: LogTail | None = None,
):
    import openai

    from llm.client import PLACEHOLDER_API_KEY, LlmClient, LlmError, LlmUnavailableError

    real = openai.AsyncOpenAI(
        base_url=settings.base_url,
        api_key=settings.api_key.get_secret_value() or PLACEHOLDER_API_KEY,
        timeout=settings.timeout_s,
        max_retries=0,
    )
    recording = RecordingOpenAI(real)
    profile = case.profile()
    started = time.perf_counter()
    result, error, unavailable = None, None, False
    async with LlmClient(settings, client=recording) as client:  # type: ignore[arg-type]
        try:
            if answer is None:
                result = await client.generate_questions(profile)
            else:
                metrics = answer_metrics(answer, case.language)
                result = await client.evaluate(profile, answer.question, answer.answer, metrics)
        except LlmError as exc:
            error, unavailable = (
                f"{type(exc).__name__}: {exc}",
                isinstance(exc, LlmUnavailableError),
            )
    seconds = time.perf_counter() - started
    replies = [c for c in recording.calls if c.error is None]
    # llama.cpp prints its timers before it sends the reply, so they are in the log now
    perf = ServerPerf.parse(server_log.read_new()) if server_log else None
    step = StepResult(
        task=task,
        profile=case.id,
        seconds=seconds,
        calls=recording.calls,
        outcome=json_outcome(len(replies), result is not None, unavailable),
        error=error,
        answer_kind=answer.kind if answer else None,
        first_reply_json=first_reply_is_json(replies[0].text if replies else None),
        server_perf=perf,
    )
    if result is not None:
        data = result.model_dump(mode="json")
        step.result = data
        step.engine = data.get("engine")
        if answer is None:
            score_questions(step, case, list(data["questions"]))
        else:
            score_evaluation(step, case, data)
    return step


def run_steps(
    settings,
    tasks: Sequence[str],
    cases: Sequence[BenchProfile],
    profiles: int | None,
    answers: int,
    server_log: Path | None = None,
    interrupted: list[str] | None = None,
) -> list[StepResult]:
    """Every step of the chosen tasks, one after the other (one server, one slot);
    `server_log`: the log of a llama.cpp server the bench started, for its timers; an
    interruption ends the loop and is noted in `interrupted`."""
    from tqdm import tqdm

    plan = step_plan(tasks, cases, profiles, answers)
    steps: list[StepResult] = []
    tail = LogTail(server_log) if server_log else None
    try:
        for task, case, answer in tqdm(plan, desc="llm steps", unit="step"):
            step = asyncio.run(_run_step(settings, task, case, answer, tail))
            log.info(
                "%s %s%s: %.1f s, %s, %s tokens out",
                task,
                case.id,
                f" ({answer.kind})" if answer else "",
                step.seconds,
                step.outcome,
                step.completion_tokens,
            )
            steps.append(step)
    except KeyboardInterrupt:
        # a run cut short (Ctrl-C, SIGTERM) still reports the steps it finished
        log.warning("interrupted after %d of %d steps", len(steps), len(plan))
        if interrupted is not None:
            interrupted.append(f"interrupted after {len(steps)} of {len(plan)} steps")
    return steps


def step_plan(
    tasks: Sequence[str], cases: Sequence[BenchProfile], profiles: int | None, answers: int
) -> list[tuple[str, BenchProfile, BenchAnswer | None]]:
    """The steps to run, round-robin over the tasks (profile 1 of every task, then
    profile 2, …), so a run cut short has figures for every task."""
    per_task: list[list[tuple[str, BenchProfile, BenchAnswer | None]]] = []
    for task in tasks:
        kind, language = task.split("-")
        items: list[tuple[str, BenchProfile, BenchAnswer | None]] = []
        for case in pick_profiles(cases, language, profiles):
            if kind == "questions":
                items.append((task, case, None))
            else:
                items += [(task, case, a) for a in case.answers[:answers]]
        per_task.append(items)
    longest = max((len(items) for items in per_task), default=0)
    return [items[i] for i in range(longest) for items in per_task if i < len(items)]


# --------------------------------------------------------------------------- interference


class BackgroundGeneration:
    """Keeps the model generating (streamed evaluations, back to back) until stopped,
    and counts the streamed pieces to give the decode rate while it was disturbed."""

    def __init__(self, base_url: str, model_name: str, messages: list[dict[str, str]]) -> None:
        import openai

        self._client = openai.OpenAI(base_url=base_url, api_key="not-needed", max_retries=0)
        self._model = model_name
        self._messages = messages
        self._stop = threading.Event()
        self._decoding = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-llm-load", daemon=True)
        self.pieces = 0
        self.decode_seconds = 0.0
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                stream = self._client.chat.completions.create(
                    model=self._model,
                    messages=self._messages,  # type: ignore[arg-type]
                    max_tokens=400,
                    temperature=0.3,
                    stream=True,
                )
                first = last = None
                with stream:
                    for chunk in stream:
                        if not (chunk.choices and chunk.choices[0].delta.content):
                            continue
                        now = time.perf_counter()
                        if first is None:
                            first = now
                            self._decoding.set()
                        else:
                            self.pieces += 1
                            self.decode_seconds += now - (last or now)
                        last = now
                        if self._stop.is_set():
                            break
        except Exception as exc:  # reported by the caller (__enter__, the note)
            self.error = exc
            self._decoding.set()

    def __enter__(self) -> BackgroundGeneration:
        self._thread.start()
        # measure while it decodes, not while it reads the prompt
        if not self._decoding.wait(timeout=300):
            raise RuntimeError("the model did not start generating within 300 s")
        if self.error is not None:
            raise RuntimeError(f"the background generation failed: {self.error}")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self._client.close()

    @property
    def tokens_per_s(self) -> float | None:
        return self.pieces / self.decode_seconds if self.decode_seconds > 0 else None


def run_interference(
    base_url: str,
    model_name: str,
    case: BenchProfile,
    rounds: int = 2,
    frames: int = 100,
    whisper_model: str = "tiny.en",
) -> tuple[list[Interference], str]:
    """Vision per frame and Whisper end → transcript, idle and while the model generates
    (alternating, `rounds` times each), and a note with the decode rate meanwhile."""
    from deploy.bench.media import face_frames
    from deploy.bench.speech import measure, synth_answers
    from inference.pipeline import VisionPipeline
    from inference.prepare import default_models_dir, prepare_models
    from inference.speech.models import prepare_whisper_models
    from inference.speech.transcriber import Transcriber
    from llm import prompts
    from stream.vad import VadSettings

    models_dir = default_models_dir()
    prepare_models(models_dir)
    prepare_whisper_models(models_dir, names=(whisper_model,))
    pipeline = VisionPipeline.load(models_dir)
    jpegs = face_frames(frames)
    transcriber = Transcriber(whisper_model, models_dir=models_dir)
    clips = synth_answers("en", (4.0, 8.0, 12.0))
    vad = VadSettings()
    for jpeg in jpegs[:10]:  # warm-up
        pipeline.analyse_jpeg(jpeg)
    transcriber.transcribe(clips[0].pcm)
    answer = case.answers[0]
    messages = prompts.evaluation_messages(case.profile(), answer.question, answer.answer)

    vision = Interference("vision worker per frame (decode → face → emotion)", "ms", [], [])
    whisper_time = Interference(f"Whisper {whisper_model}, transcription", "s", [], [])
    end_to_text = Interference(f"Whisper {whisper_model}, end of speech → transcript", "s", [], [])
    rates: list[float] = []

    def sample(busy: bool) -> None:
        for jpeg in jpegs:
            analysis = pipeline.analyse_jpeg(jpeg)
            (vision.busy if busy else vision.idle).append(analysis.timings_ms["total"])
        for clip in clips:
            m = measure(transcriber, clip, vad)
            (whisper_time.busy if busy else whisper_time.idle).append(m.transcribe_s)
            (end_to_text.busy if busy else end_to_text.idle).append(m.latency_s)

    for round_ in range(rounds):
        log.info("interference round %d: idle", round_ + 1)
        sample(busy=False)
        log.info("interference round %d: while the model generates", round_ + 1)
        with BackgroundGeneration(base_url, model_name, messages) as load:
            sample(busy=True)
        if load.tokens_per_s is not None:
            rates.append(load.tokens_per_s)
        time.sleep(2.0)  # let the server finish the cut generation before the idle phase
    note = (
        f"{rounds} alternating rounds of {frames} frames and {len(clips)} espeak-ng answers "
        f"({', '.join(f'{c.seconds:.0f}' for c in clips)} s) each, idle then while the "
        "model writes an evaluation (streamed, back to back, ≤ 400 tokens). × = busy / idle. "
        "Model decode rate while disturbed: "
        + (", ".join(f"{r:.1f}" for r in rates) + " tok/s per round." if rates else "–.")
    )
    return [vision, whisper_time, end_to_text], note


# --------------------------------------------------------------------------- the run


def default_threads() -> int:
    return os.cpu_count() or 1


def run_llm_bench(
    tasks: Sequence[str] = TASKS,
    profiles: int | None = None,
    answers: int = 1,
    model: Path | None = None,
    base_url: str | None = None,
    model_name: str | None = None,
    threads: int | None = None,
    context: int = 4096,
    interference: bool = True,
    frames: int = 100,
    rounds: int = 2,
    cases_path: Path = CASES_PATH,
) -> tuple[str, dict[str, Any]]:
    """Run the benchmark; return the Markdown report and its figures as JSON data."""
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    cases = load_cases(cases_path)
    threads = threads or default_threads()
    meta: dict[str, Any] = {
        "profiles": ", ".join(
            f"{len(pick_profiles(cases, lang, profiles))} {lang}"
            for lang in ("ko", "en")
            if any(t.endswith(lang) for t in tasks)
        ),
        "answers": answers,
        "load_start": loadavg(),
        "tasks": list(tasks),
        "threads": threads,
    }
    rows: list[Interference] = []
    interrupted: list[str] = []
    if base_url:
        settings = _settings(base_url, model_name or _env_model_name(), local=False)
        meta.update(model=settings.model, server=f"{base_url} (given)")
        steps = run_steps(settings, tasks, cases, profiles, answers, None, interrupted)
    else:
        path = model or default_model_path()
        with started_llama_server(path, threads, context) as server:
            settings = _settings(server.base_url, server.settings.alias, local=True)
            if interference:  # first: a few minutes, and a long run cut short keeps them
                case = pick_profiles(cases, "en", None)[0]
                try:
                    rows, meta["interference_note"] = run_interference(
                        server.base_url, server.settings.alias, case, rounds=rounds, frames=frames
                    )
                except Exception as exc:
                    # the steps' figures are worth having without it
                    log.exception("the interference measurement failed")
                    meta["interference_error"] = f"{type(exc).__name__}: {exc}"
            steps = run_steps(
                settings, tasks, cases, profiles, answers, server.log_path, interrupted
            )
            rss = peak_rss_gib(server.pid)
        meta.update(
            model=f"{path.name} ({path.stat().st_size / 1e9:.2f} GB)",
            server=(
                f"llama-cpp-python {_llama_cpp_version()} started by the bench, "
                f"{threads} threads, n_ctx {context}, ready in {server.ready_s:.1f} s, "
                f"peak RSS {fmt(rss, 2)} GiB"
            ),
        )
    meta["load_end"] = loadavg()
    if interrupted:
        meta["interrupted"] = interrupted[0]
    report = render_report(steps, tasks, meta, rows)
    data = {
        "meta": meta,
        "summaries": [
            asdict(TaskSummary.of(t, [s for s in steps if s.task == t]))
            for t in tasks
            if any(s.task == t for s in steps)
        ],
        "steps": [asdict(s) for s in steps],
        "interference": [asdict(r) for r in rows],
    }
    return report, data


def _env_model_name() -> str:
    """The model name a given endpoint is asked for: ``INTERVUE_LLM_MODEL`` or the
    product's default."""
    from llm.settings import LlmSettings

    return os.environ.get("INTERVUE_LLM_MODEL") or LlmSettings.model_fields["model"].default


#: The default GGUF's file name (issue 14's asset), for a tree without `llm.local.model`.
DEFAULT_GGUF_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"


def default_model_path() -> Path:
    """The default GGUF: `llm.local.model.default_gguf_path()` where that module exists,
    else ``<models dir>/llm/<DEFAULT_GGUF_NAME>`` (the same place)."""
    try:
        from llm.local.model import default_gguf_path
    except ImportError:
        from inference.prepare import default_models_dir

        return default_models_dir() / "llm" / DEFAULT_GGUF_NAME
    return default_gguf_path()


def _llama_cpp_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llama-cpp-python")
    except PackageNotFoundError:
        return "?"
