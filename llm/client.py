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
  follow-up message; a second bad reply is `LlmOutputError` (not retryable);
- questions lose the sentences in front of them that retell the introduction
  (`trim_retold_intro`: a greeting, "저는 …", its sentences word for word); then
  questions that do not fit the self-introduction (`question_problems`: naming nothing
  from it, repeating one of its sentences, or repeating each other) get the same one
  correction, naming them and what the introduction offers; still so is
  `LlmUngroundedError` (a kind of `LlmOutputError`).

The reply is constrained by the JSON schema of the pydantic model it is parsed into
(`llm.schemas.llm_json_schema`: without string length limits, which llama.cpp 0.3.36
unrolls into a grammar its server cannot parse), in the form the server understands
(`response_format_for`):

- the embedded llama.cpp server (engine ``local``): ``{"type": "json_object", "schema":
  …}``. llama-cpp-python 0.3.36 (``server/types.py``: ``response_format`` is a
  ``ChatCompletionRequestResponseFormat`` whose ``type`` is only "text" or "json_object",
  with an optional ``schema``) turns the schema into a GBNF grammar
  (``llama_chat_format._grammar_for_response_format`` → ``LlamaGrammar.from_json_schema``)
  that constrains sampling; a schema it cannot convert silently becomes the generic JSON
  grammar, and ``"type": "json_schema"`` is refused by request validation (HTTP 422);
- a remote server: plain JSON mode (``{"type": "json_object"}``), or OpenAI's
  ``{"type": "json_schema", …}`` with ``INTERVUE_LLM_REMOTE_JSON_SCHEMA=true``.

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
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import openai
from pydantic import BaseModel, ValidationError

from llm import prompts
from llm.hybrid import combine
from llm.offline import OfflineEngine
from llm.offline.grammar import in_plain_words
from llm.offline.words import (
    content_words,
    copies_intro,
    grounding_hints,
    in_language,
    speaks_as_candidate,
    trim_retold_intro,
    ungrounded_questions,
)
from llm.schemas import (
    CONTENT_CRITERIA,
    ContentEvaluation,
    Evaluation,
    Language,
    Profile,
    Questions,
    llm_json_schema,
)
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


class LlmUngroundedError(LlmOutputError):
    """The model's questions did not fit the self-introduction (named nothing from it,
    copied it, or repeated each other), even after one correction."""


class LlmTooSlowError(LlmUnavailableError):
    """A step took longer than its budget and was abandoned (`llm.engine.FallbackEngine`).
    The next step may be faster (another request was sharing the model)."""


class _BadOutput(Exception):
    """A reply that could not be parsed; carries the reason for the corrective message."""


#: How the reply's JSON schema is sent (module docstring).
SchemaMode = Literal["json_object", "llama_schema", "json_schema"]

#: Self-introductions with fewer content words than this are too thin to ground
#: questions in: the prompt then allows questions about the job title.
MIN_INTRO_WORDS_FOR_GROUNDING = 3


def response_format_for(mode: SchemaMode, model: type[BaseModel]) -> dict[str, Any]:
    """The ``response_format`` of a request whose reply is parsed into `model`."""
    if mode == "llama_schema":
        return {"type": "json_object", "schema": llm_json_schema(model)}
    if mode == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": model.__name__, "schema": llm_json_schema(model)},
        }
    return {"type": "json_object"}


def question_problems(questions: Questions, profile: Profile) -> dict[int, str]:
    """What is wrong with each generated question that does not fit the introduction, by
    its number (from 1): "language" (not in the interview's language), "repeated" (the same
    as an earlier question), "voice" (it opens as the candidate: a greeting, "저는 …"),
    "copied" (mostly the introduction's own sentences) or
    "ungrounded" (names nothing from it). A thin
    introduction (fewer than `MIN_INTRO_WORDS_FOR_GROUNDING` content words) is only
    checked for language and repeats: the prompt then allows questions about the job."""
    intro = profile.self_intro
    checked = len(set(content_words(intro))) >= MIN_INTRO_WORDS_FOR_GROUNDING
    ungrounded = set(ungrounded_questions(list(questions.questions), intro)) if checked else set()
    problems: dict[int, str] = {}
    seen: set[str] = set()
    for number, question in enumerate(questions.questions, start=1):
        key = " ".join(question.lower().split())
        if not in_language(question, profile.language):
            problems[number] = "language"
        elif key in seen:
            problems[number] = "repeated"
        elif speaks_as_candidate(question):
            problems[number] = "voice"
        elif checked and copies_intro(question, intro):
            problems[number] = "copied"
        elif number in ungrounded:
            problems[number] = "ungrounded"
        seen.add(key)
    return problems


def evaluation_language_problems(content: ContentEvaluation, language: Language) -> list[str]:
    """The parts of the model's evaluation not written in the interview's language
    (`in_language`): each content criterion's reason, the tips, the model answer. A small
    model asked in Korean still writes English reasons now and then."""
    parts = {
        "similarity.reason": content.similarity.reason,
        "clarity.reason": content.clarity.reason,
        "technical_explanation.reason": content.technical_explanation.reason,
        "examples.reason": content.examples.reason,
        "tips": " ".join(content.tips),
        "model_answer": content.model_answer,
    }
    return [name for name, text in parts.items() if text and not in_language(text, language)]


def content_in_plain_words(content: ContentEvaluation, language: Language) -> ContentEvaluation:
    """`content` with no field name in what the candidate reads (the criteria's reasons,
    the tips, the model answer): `in_plain_words`."""
    update: dict[str, Any] = {
        name: getattr(content, name).model_copy(
            update={"reason": in_plain_words(getattr(content, name).reason, language)}
        )
        for name in CONTENT_CRITERIA
    }
    update["tips"] = [in_plain_words(tip, language) for tip in content.tips]
    update["model_answer"] = in_plain_words(content.model_answer, language)
    return content.model_copy(update=update)


#: After the one correction, an evaluation is kept when at least this many of its four
#: content criteria are in the interview's language; the others (and tips or a model answer
#: in another language) are the rules', labelled. Fewer, and the whole step falls back.
MIN_MODEL_CRITERIA = 2

_RULE_RATED_LABEL: dict[Language, str] = {
    "ko": "언어 모델이 한국어로 쓰지 않은 부분({parts})은 규칙으로 평가했습니다.",
    "en": "The language model did not write {parts} in English; the rules wrote those instead.",
}
_PART_NAMES: dict[Language, dict[str, str]] = {
    "ko": {
        "similarity": "참고 답안과의 유사도",
        "clarity": "명확성",
        "technical_explanation": "기술 설명",
        "examples": "적절한 예시",
        "tips": "개선 팁",
        "model_answer": "모범 답안",
    },
    "en": {
        "similarity": "similarity",
        "clarity": "clarity",
        "technical_explanation": "technical explanation",
        "examples": "examples",
        "tips": "the tips",
        "model_answer": "the model answer",
    },
}


def mend_language(
    content: ContentEvaluation, rules: Evaluation, language: Language
) -> tuple[ContentEvaluation, list[str]] | None:
    """`content` with each part not written in `language` taken from the rules' evaluation
    of the same answer (`rules`), and the parts taken; None when fewer than
    `MIN_MODEL_CRITERIA` of its content criteria are the model's (the step falls back)."""
    wrong = [
        name.removesuffix(".reason") for name in evaluation_language_problems(content, language)
    ]
    criteria = [name for name in wrong if name in CONTENT_CRITERIA]
    if len(CONTENT_CRITERIA) - len(criteria) < MIN_MODEL_CRITERIA:
        return None
    return content.model_copy(update={name: getattr(rules, name) for name in wrong}), wrong


#: A model answer of fewer words than this is no answer (the 1.5B model once wrote
#: "<profile>\n{" as its model answer).
MIN_MODEL_ANSWER_WORDS = 8
#: A model answer whose content words are at least this share the candidate's own words
#: copies the answer (the 1.5B model returned an answer about hiking as the model answer).
COPIED_ANSWER_SHARE = 0.8
_MARKUP_RE = re.compile(r"</?\s*[A-Za-z_][A-Za-z0-9_]*\s*>|^\s*[{\[]")

_MODEL_ANSWER_LABEL: dict[Language, str] = {
    "ko": "언어 모델의 모범 답안은 쓸 수 없어(지원자의 답변을 옮겼거나 답안이 아님) 규칙으로 만든 "
    "모범 답안을 보여 드립니다.",
    "en": "The language model's model answer was unusable (it copied your answer, or was no "
    "answer); the rules' model answer is shown instead.",
}


def model_answer_problem(model_answer: str, answer: str) -> str | None:
    """Why the model's model answer cannot be shown — "short" (fewer than
    `MIN_MODEL_ANSWER_WORDS` words), "markup" (a tag or a JSON fragment) or "copied" (the
    candidate's own answer: `COPIED_ANSWER_SHARE`) — or None."""
    if len(model_answer.split()) < MIN_MODEL_ANSWER_WORDS:
        return "short"
    if _MARKUP_RE.search(model_answer):
        return "markup"
    words = content_words(model_answer)
    own = set(content_words(answer))
    if words and own and sum(w in own for w in words) / len(words) >= COPIED_ANSWER_SHARE:
        return "copied"
    return None


def model_answer_label(language: Language) -> str:
    """The sentence the room shows when the rules' model answer replaced the model's."""
    return _MODEL_ANSWER_LABEL[language]


def rule_rated_label(parts: list[str], language: Language) -> str:
    """The sentence the room shows when the rules wrote some parts of an evaluation."""
    names = ", ".join(_PART_NAMES[language][part] for part in parts)
    return _RULE_RATED_LABEL[language].format(parts=names)


#: After the one correction, the model's questions are kept when at least this many fit the
#: self-introduction; the others are the offline engine's, at the same places, labelled.
#: Fewer, and the whole step is the offline engine's (`llm.engine.FallbackEngine`).
MIN_MODEL_QUESTIONS = 2

_REPLACED_QUESTION_LABEL: dict[Language, str] = {
    "ko": "언어 모델이 쓴 {numbers}번 질문이 자기소개서에 맞지 않아 그 질문은 오프라인 엔진이 "
    "대신 썼습니다.",
    "en": "The language model's question {numbers} did not fit the self-introduction; the "
    "offline engine wrote that one instead.",
}


def replaced_questions_label(numbers: list[int], language: Language) -> str:
    """The sentence the room shows when the offline engine wrote some of the questions."""
    joined = ", ".join(str(n) for n in numbers)
    return _REPLACED_QUESTION_LABEL[language].format(numbers=joined)


@dataclass(frozen=True)
class _Problem:
    """A parsed reply that is still unusable: why (logs, errors) and what to tell the model."""

    reason: str
    correction: prompts.Message
    error: type[LlmOutputError] = LlmOutputError


_FENCE_RE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL | re.IGNORECASE)


def extract_json(text: str) -> Any:
    """Parse a model's reply as JSON, tolerating a Markdown code fence or prose around a
    single object (servers without JSON mode often add them), and raw line breaks or tabs
    inside strings (``strict=False``: the local model writes a multi-line model answer
    that way, and the text is no less usable for it)."""
    match = _FENCE_RE.match(text)
    if match:
        text = match.group(1)
    try:
        return json.loads(text, strict=False)
    except json.JSONDecodeError:
        start, end = text.find("{"), text.rfind("}")
        if start == -1 or end <= start:
            raise
        return json.loads(text[start : end + 1], strict=False)


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
        #: Whether to send a response_format at all; turned off for good when the server
        #: rejects it and the same request without it works.
        self.json_mode = True
        #: How the reply's schema is sent (module docstring).
        self.schema_mode: SchemaMode = (
            "llama_schema"
            if settings.talks_to_local_server
            else "json_schema"
            if settings.remote_json_schema
            else "json_object"
        )

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

        replies: list[Questions] = []

        def grounded(questions: Questions) -> _Problem | None:
            replies.append(questions)
            problems = question_problems(questions, profile)
            if not problems:
                return None
            return _Problem(
                "questions that do not fit the self-introduction: "
                + ", ".join(f"{n} {kind}" for n, kind in problems.items()),
                prompts.grounding_message(
                    problems, grounding_hints(profile.self_intro), profile.language
                ),
                LlmUngroundedError,
            )

        def trimmed(questions: Questions) -> Questions:
            return questions.model_copy(
                update={
                    "questions": [
                        in_plain_words(trim_retold_intro(q, profile.self_intro), profile.language)
                        for q in questions.questions
                    ]
                }
            )

        try:
            result = await self._structured(
                messages, Questions, "questions", profile.language, repair=trimmed, check=grounded
            )
        except LlmUngroundedError:
            mixed = self._fill_from_rules(replies[-1], profile) if replies else None
            if mixed is None:
                raise
            return mixed
        return result.model_copy(update={"engine": "llm", "fallback_error": None})

    def _fill_from_rules(self, reply: Questions, profile: Profile) -> Questions | None:
        """The model's last reply with each question that still does not fit replaced by
        the offline engine's question at the same place, labelled; None when fewer than
        `MIN_MODEL_QUESTIONS` of the model's fit (then the whole step falls back)."""
        problems = question_problems(reply, profile)
        if len(reply.questions) - len(problems) < MIN_MODEL_QUESTIONS:
            return None
        rules = self._rules.questions(profile).questions
        questions = list(reply.questions)
        for number in problems:
            questions[number - 1] = rules[(number - 1) % len(rules)]
        replaced = sorted(problems)
        log.warning(
            "questions: kept %d of the model's questions; the offline engine wrote %s",
            len(questions) - len(replaced),
            replaced,
        )
        return Questions(
            questions=questions,
            engine="llm",
            fallback_error=replaced_questions_label(replaced, profile.language),
        )

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
        replies: list[ContentEvaluation] = []
        clipped = answer[: self.settings.max_answer_chars]
        measured = self._rules.evaluation(profile, question, clipped, metrics)
        try:
            content = await self.evaluate_content(profile, question, answer, replies=replies)
        except LlmOutputError:
            # The last reply parsed but was partly in another language: keep what is the
            # model's when enough is, the rules write the rest (labelled below).
            mended = mend_language(replies[-1], measured, profile.language) if replies else None
            if mended is None:
                raise
            content, taken = mended
            log.warning("evaluation: the rules wrote %s (not in the interview's language)", taken)
        else:
            taken = []
        labels = [rule_rated_label(taken, profile.language)] if taken else []
        if "model_answer" not in taken and (
            problem := model_answer_problem(content.model_answer, clipped)
        ):
            log.warning(
                "evaluation: the model answer is unusable (%s); the rules' instead", problem
            )
            content = content.model_copy(update={"model_answer": measured.model_answer})
            labels.append(model_answer_label(profile.language))
        result = combine(content, measured, clipped, metrics, language=profile.language)
        if not labels:
            return result
        criteria = [name for name in taken if name in CONTENT_CRITERIA]
        return result.model_copy(
            update={
                "rule_based": [*result.rule_based, *criteria],
                "fallback_error": " ".join(labels),
            }
        )

    async def evaluate_content(
        self,
        profile: Profile,
        question: str,
        answer: str,
        *,
        replies: list[ContentEvaluation] | None = None,
    ) -> ContentEvaluation:
        """What the model writes about `answer`: the content criteria, tips and model
        answer, as it wrote them (no rule applied). `replies` collects each reply that
        parsed, for a caller that mends the last one."""
        log.info(
            "evaluation: asking %s (question %d chars, answer %d chars)",
            self.settings.model,
            len(question),
            len(answer),
        )
        messages = prompts.evaluation_messages(
            profile, question, answer, max_answer_chars=self.settings.max_answer_chars
        )

        def in_the_interviews_language(content: ContentEvaluation) -> _Problem | None:
            if replies is not None:
                replies.append(content)
            wrong = evaluation_language_problems(content, profile.language)
            if not wrong:
                return None
            return _Problem(
                f"not written in the interview's language ({profile.language}): "
                + ", ".join(wrong),
                prompts.language_message(wrong, profile.language),
            )

        return await self._structured(
            messages,
            ContentEvaluation,
            "evaluation",
            profile.language,
            repair=lambda content: content_in_plain_words(content, profile.language),
            check=in_the_interviews_language,
        )

    # ----------------------------------------------------------------- machinery

    async def _structured(
        self,
        messages: list[dict[str, str]],
        model: type[ResultT],
        stage: str,
        language: Language,
        *,
        repair: Callable[[ResultT], ResultT] | None = None,
        check: Callable[[ResultT], _Problem | None] | None = None,
    ) -> ResultT:
        """One reply parsed into `model`, mended by `repair` and passing `check` (when
        given), with one corrective retry on a bad reply."""
        for round_ in (1, 2):
            text = await self._complete(messages, stage, model)
            try:
                result = self._parse(text, model)
            except _BadOutput as exc:
                problem = _Problem(str(exc), prompts.correction_message(str(exc), language))
            else:
                if repair is not None:
                    result = repair(result)
                problem = check(result) if check is not None else None
                if problem is None:
                    return result
            if round_ == 2:
                log.warning(
                    "%s: reply still unusable after a correction: %s", stage, problem.reason
                )
                raise problem.error(
                    f"the model's reply was not usable {stage} JSON after one correction: "
                    f"{problem.reason}",
                    stage=stage,
                )
            log.warning("%s: unusable reply (%s); asking once more", stage, problem.reason)
            messages = [
                *messages,
                {"role": "assistant", "content": text[:4000]},
                problem.correction,
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

    async def _complete(
        self, messages: list[dict[str, str]], stage: str, model: type[BaseModel]
    ) -> str:
        """The reply text of one chat completion, with transport retries."""
        retries = 0
        while True:
            started = time.perf_counter()
            try:
                text = await self._request(messages, stage, model)
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

    async def _request(
        self, messages: list[dict[str, str]], stage: str, model: type[BaseModel]
    ) -> str:
        """One call (two when the response_format is rejected); openai's exceptions pass
        through."""
        kwargs: dict[str, Any] = {
            "model": self.settings.model,
            "messages": messages,
            "temperature": self.settings.temperature,
        }
        if self.json_mode:
            response_format = response_format_for(self.schema_mode, model)
            try:
                return await self._create(kwargs | {"response_format": response_format}, stage)
            except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                log.warning(
                    "%s: HTTP %s with response_format=%s (%s); retrying without it",
                    stage,
                    exc.status_code,
                    response_format["type"],
                    _short(exc),
                )
                text = await self._create(kwargs, stage)
                # Only now is it clear the 400 was about response_format.
                self.json_mode = False
                return text
        return await self._create(kwargs, stage)

    async def _create(self, kwargs: dict[str, Any], stage: str) -> str:
        """The reply text of one chat completion. The embedded server's reply is streamed:
        llama.cpp's server stops generating when a streaming client goes away (a step
        abandoned for its time budget), while a plain request would run to its end and
        hold the model from the next step."""
        if self.settings.talks_to_local_server:
            parts: list[str] = []
            finish_reason = None
            stream = await self._client.chat.completions.create(**kwargs, stream=True)
            try:
                async for chunk in stream:
                    if chunk.choices:
                        parts.append(chunk.choices[0].delta.content or "")
                        finish_reason = chunk.choices[0].finish_reason or finish_reason
            finally:
                await stream.close()  # also on cancellation: the server sees us leave
            text = "".join(parts)
        else:
            response = await self._client.chat.completions.create(**kwargs)
            choices = getattr(response, "choices", None)
            if not choices:
                # A 200 that is not a chat completion (a proxy's HTML page, another API).
                log.warning("%s: the response held no chat completion", stage)
                return ""
            finish_reason = choices[0].finish_reason
            text = choices[0].message.content or ""
        if finish_reason == "length":
            log.warning("%s: the reply was cut at the token limit", stage)
        return text

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
