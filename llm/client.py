"""The LLM engine: questions and evaluations from any OpenAI-compatible endpoint.

`LlmClient` drives ``openai.AsyncOpenAI`` (OpenAI, Azure, vLLM, Ollama, …) with the
client's own retries off, because the policy here is ours:

- timeouts, connection errors, HTTP 429 and 5xx are retried with exponential backoff
  and jitter, up to ``max_retries`` times, then `LlmUnavailableError` (retryable);
- any other 4xx is `LlmRequestError` (not retryable: the same request fails again) —
  except a 400 while JSON mode is on, which is retried once without
  ``response_format`` (servers that do not know it reject it with a 400) and, if that
  works, JSON mode stays off for this client;
- a reply that is not JSON, or JSON that does not match the schema, gets ONE corrective
  follow-up message; a second bad reply is `LlmOutputError` (not retryable).

Log lines name the stage, attempt and error class; never the API key, and never the
self-introduction or the answer (only their lengths).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import openai
from pydantic import ValidationError

from llm import prompts
from llm.hybrid import combine
from llm.offline import OfflineEngine
from llm.schemas import ContentEvaluation, Evaluation, Language, Profile, Questions
from llm.settings import LlmSettings
from stream.contract import SpeakingMetrics

log = logging.getLogger(__name__)

ResultT = TypeVar("ResultT", Questions, ContentEvaluation)

#: Sent when no key is configured: local servers ignore it, and the openai client
#: refuses to start without one (it would otherwise read OPENAI_API_KEY from the env).
PLACEHOLDER_API_KEY = "not-needed"


class LlmError(Exception):
    """Base of the interviewer's LLM errors. `retryable` says whether trying the same
    request later may work."""

    retryable: bool = False

    def __init__(self, message: str, *, stage: str = "", status_code: int | None = None):
        super().__init__(message)
        #: "questions" or "evaluation".
        self.stage = stage
        #: The HTTP status behind the error, when there was one.
        self.status_code = status_code


class LlmUnavailableError(LlmError):
    """The endpoint could not be reached or kept failing (timeouts, connection errors,
    429, 5xx) after every retry. It may work later."""

    retryable = True


class LlmRequestError(LlmError):
    """The endpoint refused the request (4xx other than 429: bad key, unknown model,
    request too large). The same request fails again."""

    retryable = False


class LlmOutputError(LlmError):
    """The model's reply was not valid JSON for the schema, even after one correction."""

    retryable = False


class _BadOutput(Exception):
    """A reply that could not be parsed; carries the reason for the corrective message."""


_FENCE_RE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL | re.IGNORECASE)


def extract_json(text: str) -> Any:
    """Parse a model's reply as JSON, tolerating a Markdown code fence or prose around a
    single object (servers without JSON mode often add them)."""
    match = _FENCE_RE.match(text)
    if match:
        text = match.group(1)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        start, end = text.find("{"), text.rfind("}")
        if start == -1 or end <= start:
            raise
        return json.loads(text[start : end + 1])


class LlmClient:
    """Questions and evaluations from an OpenAI-compatible chat-completions endpoint."""

    #: Which engine this is, as results and events name it.
    name = "llm"

    def __init__(
        self,
        settings: LlmSettings,
        *,
        client: openai.AsyncOpenAI | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if settings.base_url is None and client is None:
            raise ValueError("LlmClient needs settings.base_url (or use the offline engine)")
        self.settings = settings
        self._client = client or openai.AsyncOpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key.get_secret_value() or PLACEHOLDER_API_KEY,
            timeout=settings.timeout_s,
            max_retries=0,  # ours: see the module docstring
        )
        self._sleep = sleep
        self._rng = rng or random.Random()
        #: The rules that rate what the model does not (`llm.hybrid`): pure, instant.
        self._rules = OfflineEngine(settings)
        #: Whether to ask for response_format=json_object; turned off for good when the
        #: server rejects it and the same request without it works.
        self.json_mode = True

    async def aclose(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> LlmClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ----------------------------------------------------------------- the two steps

    async def generate_questions(self, profile: Profile) -> Questions:
        """Three questions about `profile`'s self-introduction, in its language."""
        log.info(
            "questions: asking %s (intro %d chars, language %s)",
            self.settings.model,
            len(profile.self_intro),
            profile.language,
        )
        messages = prompts.question_messages(profile)
        result = await self._structured(messages, Questions, "questions", profile.language)
        return result.model_copy(update={"engine": "llm", "fallback_error": None})

    async def evaluate(
        self,
        profile: Profile,
        question: str,
        answer: str,
        metrics: SpeakingMetrics | None = None,
    ) -> Evaluation:
        """The seven-criterion evaluation of `answer` (a transcript) to `question`
        (`metrics`: how it was spoken; None for an answer that was not): the model's
        content criteria, tips and model answer, combined with the criteria the rules
        measure (`llm.hybrid.combine`: the offline engine's rules, and the clamps)."""
        content = await self.evaluate_content(profile, question, answer)
        answer = answer[: self.settings.max_answer_chars]
        measured = self._rules.evaluation(profile, question, answer, metrics)
        return combine(content, measured, answer, metrics, language=profile.language)

    async def evaluate_content(
        self, profile: Profile, question: str, answer: str
    ) -> ContentEvaluation:
        """What the model writes about `answer`: the content criteria, tips and model
        answer, as it wrote them (no rule applied)."""
        log.info(
            "evaluation: asking %s (question %d chars, answer %d chars)",
            self.settings.model,
            len(question),
            len(answer),
        )
        messages = prompts.evaluation_messages(
            profile, question, answer, max_answer_chars=self.settings.max_answer_chars
        )
        return await self._structured(messages, ContentEvaluation, "evaluation", profile.language)

    # ----------------------------------------------------------------- machinery

    async def _structured(
        self,
        messages: list[dict[str, str]],
        model: type[ResultT],
        stage: str,
        language: Language,
    ) -> ResultT:
        """One reply parsed into `model`, with one corrective retry on a bad reply."""
        for round_ in (1, 2):
            text = await self._complete(messages, stage)
            try:
                return self._parse(text, model)
            except _BadOutput as exc:
                if round_ == 2:
                    log.warning("%s: reply still invalid after a correction: %s", stage, exc)
                    raise LlmOutputError(
                        f"the model's reply was not valid {stage} JSON after one correction: {exc}",
                        stage=stage,
                    ) from None
                log.warning("%s: invalid reply (%s); asking once more", stage, exc)
                messages = [
                    *messages,
                    {"role": "assistant", "content": text[:4000]},
                    prompts.correction_message(str(exc), language),
                ]
        raise AssertionError("unreachable")

    @staticmethod
    def _parse(text: str, model: type[ResultT]) -> ResultT:
        if not text.strip():
            raise _BadOutput("the reply was empty")
        try:
            data = extract_json(text)
        except json.JSONDecodeError as exc:
            raise _BadOutput(f"not valid JSON ({exc})") from None
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'reply'}: {err['msg']}"
                for err in exc.errors(include_input=False)
            )
            raise _BadOutput(f"JSON does not match the schema ({problems})") from None

    async def _complete(self, messages: list[dict[str, str]], stage: str) -> str:
        """The reply text of one chat completion, with transport retries."""
        retries = 0
        while True:
            started = time.perf_counter()
            try:
                text = await self._request(messages, stage)
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                # APITimeoutError is a kind of APIConnectionError; name which one it was.
                reason = "timeout" if isinstance(exc, openai.APITimeoutError) else "connection"
                error: Exception = exc
                retry_after = None
            except openai.RateLimitError as exc:
                reason, error = "HTTP 429", exc
                retry_after = _retry_after(exc.response.headers)
            except openai.APIStatusError as exc:
                if exc.status_code < 500:
                    raise LlmRequestError(
                        f"the LLM endpoint refused the {stage} request: "
                        f"HTTP {exc.status_code} {_short(exc)}",
                        stage=stage,
                        status_code=exc.status_code,
                    ) from None
                reason, error, retry_after = f"HTTP {exc.status_code}", exc, None
            except openai.APIError as exc:
                # Anything else the client raises about the exchange (a body it could not
                # read): the server misbehaved, and may not next time.
                reason, error, retry_after = type(exc).__name__, exc, None
            else:
                log.debug("%s: reply in %.2f s", stage, time.perf_counter() - started)
                return text
            if retries >= self.settings.max_retries:
                log.warning("%s: giving up after %d attempts (%s)", stage, retries + 1, reason)
                raise LlmUnavailableError(
                    f"the LLM endpoint is unavailable for {stage}: {reason} on each of "
                    f"{retries + 1} attempts ({_short(error)})",
                    stage=stage,
                    status_code=getattr(error, "status_code", None),
                ) from None
            delay = self._backoff(retries, retry_after)
            retries += 1
            log.info(
                "%s: attempt %d failed (%s); retrying in %.2f s",
                stage,
                retries,
                reason,
                delay,
            )
            await self._sleep(delay)

    async def _request(self, messages: list[dict[str, str]], stage: str) -> str:
        """One call (two when JSON mode is rejected); openai's exceptions pass through."""
        kwargs: dict[str, Any] = {
            "model": self.settings.model,
            "messages": messages,
            "temperature": self.settings.temperature,
        }
        if self.json_mode:
            try:
                response = await self._client.chat.completions.create(
                    **kwargs, response_format={"type": "json_object"}
                )
            except openai.BadRequestError as exc:
                log.warning(
                    "%s: HTTP 400 with response_format=json_object (%s); retrying without it",
                    stage,
                    _short(exc),
                )
                response = await self._client.chat.completions.create(**kwargs)
                # Only now is it clear the 400 was about response_format.
                self.json_mode = False
        else:
            response = await self._client.chat.completions.create(**kwargs)
        choices = getattr(response, "choices", None)
        if not choices:
            # A 200 that is not a chat completion (a proxy's HTML page, another API).
            log.warning("%s: the response held no chat completion", stage)
            return ""
        choice = choices[0]
        if choice.finish_reason == "length":
            log.warning("%s: the reply was cut at the token limit", stage)
        return choice.message.content or ""

    def _backoff(self, retries_so_far: int, retry_after: float | None) -> float:
        """Exponential backoff with "equal jitter" (half fixed, half random), so that many
        sessions hitting one rate limit do not retry in step; a 429's Retry-After is a
        floor, capped like the rest."""
        cap = self.settings.backoff_max_s
        delay = min(cap, self.settings.backoff_base_s * (2**retries_so_far))
        delay = delay / 2 + self._rng.uniform(0, delay / 2)
        if retry_after is not None:
            delay = max(delay, min(cap, retry_after))
        return delay


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from LLM servers, and backoff covers it
    return seconds if seconds >= 0 else None


def _short(exc: BaseException, limit: int = 300) -> str:
    """An exception's message, cut short (bodies can be long; keys are never in them)."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    message = " ".join(str(message).split())
    return message if len(message) <= limit else message[:limit] + "…"
