"""Which engine answers: the `InterviewEngine` interface, `build_engine`, `FallbackEngine`.

The orchestrator holds one `InterviewEngine` and calls its two steps. With an endpoint
configured it gets a `FallbackEngine`: the LLM first and, when the LLM is unavailable
or keeps producing unusable output, the offline engine for that one step, so the
interview goes on. The failure is reported (``on_error`` callback, and
``fallback_error`` on the result) so the room can show it; every result names the
engine that produced it (``engine``: "llm" or "offline").
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from llm.client import LlmClient, LlmError, LlmOutputError, LlmUnavailableError
from llm.offline import OfflineEngine
from llm.schemas import Evaluation, Profile, Questions
from llm.settings import LlmSettings
from stream.contract import ErrorStep, SpeakingMetrics

log = logging.getLogger(__name__)

MetricsInput = SpeakingMetrics | None


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
    ) -> None:
        self.primary = primary
        self.fallback = fallback or OfflineEngine()
        self.on_error = on_error
        #: Which errors make the offline engine stand in; others (LlmRequestError: a bad
        #: key, an unknown model) are raised, since they need the operator, not a retry.
        self.fallback_on = fallback_on

    async def generate_questions(self, profile: Profile) -> Questions:
        try:
            return await self.primary.generate_questions(profile)
        except self.fallback_on as exc:
            failure = await self._report("questions", exc)
        result = await self.fallback.generate_questions(profile)
        return result.model_copy(update={"fallback_error": str(failure.error)})

    async def evaluate(
        self, profile: Profile, question: str, answer: str, metrics: MetricsInput = None
    ) -> Evaluation:
        try:
            return await self.primary.evaluate(profile, question, answer, metrics)
        except self.fallback_on as exc:
            failure = await self._report("evaluation", exc)
        result = await self.fallback.evaluate(profile, question, answer, metrics)
        return result.model_copy(update={"fallback_error": str(failure.error)})

    async def aclose(self) -> None:
        await self.primary.aclose()
        await self.fallback.aclose()

    async def _report(self, stage: str, exc: LlmError) -> EngineFailure:
        failure = EngineFailure(
            stage=stage,
            message=f"{exc} — the offline engine answered this step instead",
            retryable=exc.retryable,
            error=exc,
        )
        log.warning("%s: LLM failed (%s); using the offline engine", stage, type(exc).__name__)
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
    """The engine for `settings`: the offline engine when no ``base_url`` is set;
    otherwise the LLM client, wrapped in a `FallbackEngine` unless ``fallback=False``."""
    settings = settings or LlmSettings()
    offline = OfflineEngine(settings)
    if settings.base_url is None:
        log.info("no LLM endpoint configured: using the offline engine")
        return offline
    client = LlmClient(settings)
    log.info("LLM engine: model %s at %s", settings.model, settings.base_url)
    if not fallback:
        return client
    return FallbackEngine(client, offline, on_error=on_error)
