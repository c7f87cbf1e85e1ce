"""Which engine answers: the `InterviewEngine` interface, `build_engine`, `FallbackEngine`.

The orchestrator holds one `InterviewEngine` and calls its two steps. With a language
model (local or remote) it gets a `FallbackEngine`: the LLM first and, when the LLM is
unavailable, keeps producing unusable or ungrounded output, or takes longer than the
step's time budget (``INTERVUE_LLM_QUESTIONS_BUDGET_S`` / ``_EVALUATION_BUDGET_S``), the
offline engine for that one step, so the interview goes on. The failure is reported
(``on_error`` callback, and ``fallback_error`` on the result: a sentence for the
candidate, in the interview's language, `fallback_label`) so the room can show it; every
result names the engine that produced it (``engine``: "llm" or "offline").
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from llm.client import (
    LlmClient,
    LlmError,
    LlmOutputError,
    LlmTooSlowError,
    LlmUnavailableError,
    LlmUngroundedError,
)
from llm.offline import OfflineEngine
from llm.schemas import Evaluation, Language, Profile, Questions
from llm.settings import LlmSettings
from stream.contract import ErrorStep, SpeakingMetrics

log = logging.getLogger(__name__)

MetricsInput = SpeakingMetrics | None
ResultT = TypeVar("ResultT", Questions, Evaluation)


@runtime_checkable
class InterviewEngine(Protocol):
    """What the orchestrator needs from an engine."""

    #: "llm" or "offline" (a FallbackEngine says "llm": that is what it tries first).
    name: str

    async def generate_questions(self, profile: Profile) -> Questions:
        """Three questions from the profile's self-introduction."""
        ...

    async def evaluate(
        self, profile: Profile, question: str, answer: str, metrics: MetricsInput = None
    ) -> Evaluation:
        """The seven-criterion evaluation of `answer` (a transcript) to `question`."""
        ...

    async def aclose(self) -> None:
        """Release connections (a no-op for the offline engine)."""
        ...


@dataclass(frozen=True)
class EngineFailure:
    """The LLM failed a step and the offline engine stood in."""

    #: "questions" or "evaluation".
    stage: str
    #: What went wrong, in words fit for the room (no key, no candidate text).
    message: str
    #: Whether the same step may work later (the endpoint was unavailable).
    retryable: bool
    #: The error itself.
    error: LlmError

    def event_data(self) -> ErrorStep:
        """The ``data`` of an ``error`` InterviewEvent (stream.contract)."""
        return ErrorStep(message=self.message, stage=self.stage, retryable=self.retryable)


ErrorCallback = Callable[[EngineFailure], Awaitable[None] | None]

#: What the candidate reads when the offline engine stood in, by what went wrong.
_FALLBACK_LABELS: dict[str, dict[Language, str]] = {
    "too_slow": {
        "ko": "언어 모델이 제한 시간({budget}초) 안에 답하지 못해 이 단계는 오프라인 엔진이 "
        "대신 답했습니다.",
        "en": "The language model did not answer within its {budget} s budget; the offline "
        "engine answered this step instead.",
    },
    "unavailable": {
        "ko": "언어 모델에 연결할 수 없어 이 단계는 오프라인 엔진이 대신 답했습니다.",
        "en": "The language model is unavailable; the offline engine answered this step instead.",
    },
    "ungrounded": {
        "ko": "언어 모델의 질문이 자기소개서 내용을 다루지 않아 이 단계는 오프라인 엔진이 대신 "
        "답했습니다.",
        "en": "The language model's questions named nothing from the self-introduction; the "
        "offline engine answered this step instead.",
    },
    "malformed": {
        "ko": "언어 모델의 응답 형식이 올바르지 않아 이 단계는 오프라인 엔진이 대신 답했습니다.",
        "en": "The language model's reply was unusable; the offline engine answered this step "
        "instead.",
    },
}


def fallback_kind(error: LlmError) -> str:
    """Which label an error gets: "too_slow", "unavailable", "ungrounded" or "malformed"."""
    if isinstance(error, LlmTooSlowError):
        return "too_slow"
    if isinstance(error, LlmUngroundedError):
        return "ungrounded"
    if isinstance(error, LlmOutputError):
        return "malformed"
    return "unavailable"


def fallback_label(error: LlmError, language: Language, budget_s: float | None = None) -> str:
    """The sentence the room shows when the offline engine answered a step for `error`."""
    budget = f"{budget_s:g}" if budget_s is not None else "?"
    return _FALLBACK_LABELS[fallback_kind(error)][language].format(budget=budget)


class FallbackEngine:
    """The primary engine (the LLM) with the offline engine standing in, step by step."""

    name = "llm"

    def __init__(
        self,
        primary: InterviewEngine,
        fallback: InterviewEngine | None = None,
        *,
        on_error: ErrorCallback | None = None,
        fallback_on: tuple[type[LlmError], ...] = (LlmUnavailableError, LlmOutputError),
        questions_budget_s: float | None = None,
        evaluation_budget_s: float | None = None,
    ) -> None:
        self.primary = primary
        self.fallback = fallback or OfflineEngine()
        self.on_error = on_error
        #: Which errors make the offline engine stand in; others (LlmRequestError: a bad
        #: key, an unknown model) are raised, since they need the operator, not a retry.
        self.fallback_on = fallback_on
        #: A step of the primary engine that runs longer than its budget (seconds; None:
        #: no budget) is cancelled (its HTTP request with it) and the offline engine
        #: answers it.
        self.budgets_s: dict[str, float | None] = {
            "questions": questions_budget_s,
            "evaluation": evaluation_budget_s,
        }

    async def generate_questions(self, profile: Profile) -> Questions:
        try:
            return await self._within_budget("questions", self.primary.generate_questions(profile))
        except self.fallback_on as exc:
            failure = await self._report("questions", exc, profile.language)
        result = await self.fallback.generate_questions(profile)
        return result.model_copy(update={"fallback_error": failure.message})

    async def evaluate(
        self, profile: Profile, question: str, answer: str, metrics: MetricsInput = None
    ) -> Evaluation:
        try:
            return await self._within_budget(
                "evaluation", self.primary.evaluate(profile, question, answer, metrics)
            )
        except self.fallback_on as exc:
            failure = await self._report("evaluation", exc, profile.language)
        result = await self.fallback.evaluate(profile, question, answer, metrics)
        return result.model_copy(update={"fallback_error": failure.message})

    def budget_s(self, stage: str) -> float | None:
        """A step's time budget in seconds (None: none), for the room's progress line."""
        return self.budgets_s.get(stage)

    async def _within_budget(self, stage: str, step: Awaitable[ResultT]) -> ResultT:
        budget = self.budgets_s[stage]
        if budget is None:
            return await step
        try:
            return await asyncio.wait_for(step, budget)
        except TimeoutError:
            raise LlmTooSlowError(
                f"the {stage} step took longer than its {budget:g} s budget", stage=stage
            ) from None

    async def aclose(self) -> None:
        await self.primary.aclose()
        await self.fallback.aclose()

    async def _report(self, stage: str, exc: LlmError, language: Language) -> EngineFailure:
        failure = EngineFailure(
            stage=stage,
            message=fallback_label(exc, language, self.budgets_s[stage]),
            retryable=exc.retryable,
            error=exc,
        )
        log.warning(
            "%s: LLM failed (%s: %s); using the offline engine", stage, type(exc).__name__, exc
        )
        if self.on_error is not None:
            try:
                outcome = self.on_error(failure)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception:
                # A broken reporter must not cost the candidate their questions.
                log.exception("%s: the on_error callback failed", stage)
        return failure


def build_engine(
    settings: LlmSettings | None = None,
    *,
    on_error: ErrorCallback | None = None,
    fallback: bool = True,
) -> InterviewEngine:
    """The engine for `settings`: the offline engine when ``engine`` is offline or no
    ``base_url`` is set (``auto``); otherwise the LLM client at ``base_url`` (the embedded
    llama.cpp server when ``engine`` is local), wrapped in a `FallbackEngine` with the step
    budgets unless ``fallback=False``.

    The interviewer does not start a model server itself: `intervue up` runs it (the
    ``llm`` role) and passes its ``base_url``. So ``local`` or ``remote`` without a
    ``base_url`` is an error here (`EngineChoiceError`)."""
    from llm.local.choice import EngineChoiceError

    settings = settings or LlmSettings()
    offline = OfflineEngine(settings)
    if settings.engine == "offline" or (settings.engine == "auto" and settings.base_url is None):
        why = "INTERVUE_LLM_ENGINE=offline" if settings.engine == "offline" else "no endpoint"
        log.info("LLM engine: offline (%s)", why)
        return offline
    if settings.base_url is None:
        raise EngineChoiceError(
            f"INTERVUE_LLM_ENGINE={settings.engine} needs INTERVUE_LLM_BASE_URL: "
            + (
                "`intervue up` runs the local model and sets it for the interviewer; "
                "alone, start `python -m llama_cpp.server` and point it there"
                if settings.engine == "local"
                else "the OpenAI-compatible endpoint to use"
            )
        )
    budgets = [b for b in (settings.budget_s("questions"), settings.budget_s("evaluation")) if b]
    if settings.talks_to_local_server and budgets:
        # The budget bounds a local step, not the per-request timeout: a long generation on
        # a busy CPU is not retried from scratch.
        settings = settings.model_copy(update={"timeout_s": max(settings.timeout_s, *budgets)})
    client = LlmClient(settings)
    log.info(
        "LLM engine: %s, model %s at %s",
        "local" if settings.talks_to_local_server else "remote",
        settings.model,
        settings.base_url,
    )
    if not fallback:
        return client
    return FallbackEngine(
        client,
        offline,
        on_error=on_error,
        questions_budget_s=settings.budget_s("questions"),
        evaluation_budget_s=settings.budget_s("evaluation"),
    )
