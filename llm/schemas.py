"""The interviewer's data: the candidate's profile in, questions and evaluations out.

These models are the contract of both engines (`llm.client.LlmClient` and
`llm.offline.OfflineEngine`): the language model is asked for JSON matching
`llm_json_schema(Questions)` / `llm_json_schema(ContentEvaluation)` and its reply is
validated by the same models, so a result looks the same whichever engine produced it.
Every result says which one did (``engine``). The model writes only an evaluation's
content criteria, tips and model answer (`ContentEvaluation`); `llm.hybrid.combine` adds
the criteria the rules measure and the clamps, giving the same `Evaluation`.

The evaluation is the product's seven-criterion rubric (DESIGN.md, "The product's
vocabulary"), each criterion rated 개선 필요함 / 무난함 / 매우 좋음 with a short reason,
then three tips and one model answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from stream import contract

Language = Literal["ko", "en"]
EngineName = Literal["llm", "offline"]

#: Fields a result carries that are the engine's business, not the model's output: left
#: out of the schema the model is shown, and overwritten by the engine after parsing.
ENGINE_FIELDS = ("engine", "fallback_error", "rule_based", "clamped")


# --------------------------------------------------------------------------- profile


class FieldRow(NamedTuple):
    """One row of a two-column table (label, value)."""

    label: str
    value: str


class Profile(BaseModel):
    """What the candidate filled in before the interview, as the engines read it.

    Checked by the bus contract's one rule (`stream.contract.profile_fields`, which the
    gateway applies too); `Profile.parse` raises its `ProfileError` in plain words."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The job applied for (blank in the form means the default).
    job_title: str = contract.DEFAULT_JOB_TITLE
    #: Years of experience.
    years: int = contract.DEFAULT_YEARS
    #: The company applied to (blank in the form means the default).
    company: str = contract.DEFAULT_COMPANY
    #: The self-introduction (자기소개서), stripped, non-empty, at most the gateway's
    #: limit (``INTERVUE_GATEWAY_MAX_INTRO_CHARS``).
    self_intro: str
    #: Language of the questions, the evaluation and its display.
    language: Language = "ko"

    @model_validator(mode="before")
    @classmethod
    def _contract_rule(cls, data: object, info: ValidationInfo) -> object:
        if not isinstance(data, Mapping):
            return data  # pydantic says what is wrong with it
        limit = (info.context or {}).get("max_intro_chars", contract.MAX_INTRO_CHARS)
        unknown = {key: value for key, value in data.items() if key not in cls.model_fields}
        return {**unknown, **contract.profile_fields(data, max_intro_chars=limit)}

    @classmethod
    def parse(
        cls,
        data: Mapping[str, Any] | Any,
        *,
        max_intro_chars: int = contract.DEFAULT_MAX_INTRO_CHARS,
    ) -> Profile:
        """Validate a mapping (or any object with the same attributes, such as the bus's
        `stream.contract.Profile`) into a Profile; raise `ProfileError` in plain words."""
        if not isinstance(data, Mapping):
            data = {name: getattr(data, name) for name in cls.model_fields if hasattr(data, name)}
        else:
            data = {key: value for key, value in data.items() if key in cls.model_fields}
        # The rule raises ProfileError itself; pydantic would wrap it in a ValidationError.
        fields = contract.profile_fields(data, max_intro_chars=max_intro_chars)
        return cls.model_validate(fields, context={"max_intro_chars": max_intro_chars})

    def rows(self, language: Language | None = None) -> list[FieldRow]:
        """The profile as a table (the self-introduction by its length only)."""
        ko = (language or self.language) == "ko"
        return [
            FieldRow("직무" if ko else "Job title", self.job_title),
            FieldRow(
                "경력" if ko else "Experience", f"{self.years}년" if ko else _years(self.years)
            ),
            FieldRow("회사" if ko else "Company", self.company),
            FieldRow(
                "언어" if ko else "Language", "한국어" if self.language == "ko" else "English"
            ),
            FieldRow(
                "자기소개서" if ko else "Self-introduction",
                f"{len(self.self_intro):,}자" if ko else _characters(len(self.self_intro)),
            ),
        ]


def _years(count: int) -> str:
    return f"{count} year" if count == 1 else f"{count} years"


def _characters(count: int) -> str:
    return f"{count:,} character" if count == 1 else f"{count:,} characters"


def plain_errors(exc: ValidationError) -> str:
    """A pydantic ValidationError as one readable sentence per problem."""
    parts = []
    for error in exc.errors():
        message = str(error.get("msg", "invalid value"))
        message = message.removeprefix("Value error, ")
        field = ".".join(str(part) for part in error.get("loc", ()))
        # Our own messages already name the field ("the self-introduction is empty").
        if field and not message.startswith("the "):
            message = f"{field}: {message}"
        parts.append(message)
    return "; ".join(parts) or "invalid input"


# --------------------------------------------------------------------------- questions


class QuestionRow(NamedTuple):
    """One row of the questions table."""

    number: str
    question: str


class Questions(BaseModel):
    """The three interview questions generated from the profile."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    #: Exactly three (`QUESTION_COUNT`) non-empty questions of at most
    #: `MAX_QUESTION_CHARS` characters, in the order they are asked.
    questions: list[Annotated[str, Field(max_length=contract.MAX_QUESTION_CHARS)]] = Field(
        min_length=contract.QUESTION_COUNT, max_length=contract.QUESTION_COUNT
    )
    #: Which engine wrote them ("llm" or "offline").
    engine: EngineName = "llm"
    #: Set when the offline engine stood in because the LLM failed: what went wrong.
    fallback_error: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_list(cls, data: object) -> object:
        # Some models answer `["…", "…", "…"]` instead of `{"questions": [...]}`.
        if isinstance(data, list):
            return {"questions": data}
        return data

    @field_validator("questions")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        for index, question in enumerate(value, start=1):
            if not isinstance(question, str) or not question.strip():
                raise ValueError(f"question {index} is empty")
        return [question.strip() for question in value]

    def rows(self, language: Language = "ko") -> list[QuestionRow]:
        label = "질문" if language == "ko" else "Question"
        return [QuestionRow(f"{label} {i}", q) for i, q in enumerate(self.questions, start=1)]


# --------------------------------------------------------------------------- evaluation

_NA_WORDS = {"", "na", "n/a", "n.a.", "none", "null", "없음", "해당 없음", "해당없음"}


class Rating(StrEnum):
    """The three grades of every criterion; the values are the product's Korean words.

    `label` is what a person reads: the Korean words, or "Needs improvement" / "Fine" /
    "Very good" in English. The member names are code, never shown."""

    NEEDS_IMPROVEMENT = "개선 필요함"
    FINE = "무난함"
    VERY_GOOD = "매우 좋음"

    @property
    def english(self) -> str:
        """The English display name: Needs improvement / Fine / Very good."""
        return _RATING_ENGLISH[self]

    @property
    def score(self) -> int:
        """0, 1 or 2: for medians and for finding the weakest criteria."""
        return _RATING_ORDER.index(self)

    def label(self, language: Language = "ko") -> str:
        return self.value if language == "ko" else self.english

    @classmethod
    def from_score(cls, score: int) -> Rating:
        return _RATING_ORDER[max(0, min(2, score))]

    @classmethod
    def _missing_(cls, value: object) -> Rating | None:
        # Models writing English (or spacing the Korean differently) mean the same grade.
        if not isinstance(value, str):
            return None
        key = re.sub(r"[\s_\-]+", "", value.strip().lower())
        return _RATING_ALIASES.get(key)


_RATING_ORDER = (Rating.NEEDS_IMPROVEMENT, Rating.FINE, Rating.VERY_GOOD)
_RATING_ENGLISH = {
    Rating.NEEDS_IMPROVEMENT: "Needs improvement",
    Rating.FINE: "Fine",
    Rating.VERY_GOOD: "Very good",
}
_RATING_ALIASES = {
    "개선필요함": Rating.NEEDS_IMPROVEMENT,
    "개선필요": Rating.NEEDS_IMPROVEMENT,
    "needsimprovement": Rating.NEEDS_IMPROVEMENT,
    "무난함": Rating.FINE,
    "무난": Rating.FINE,
    "fine": Rating.FINE,
    "good": Rating.FINE,
    "매우좋음": Rating.VERY_GOOD,
    "verygood": Rating.VERY_GOOD,
    "excellent": Rating.VERY_GOOD,
}


class CriterionRow(NamedTuple):
    """One row of the evaluation table."""

    criterion: str
    rating: str
    reason: str


class Criterion(BaseModel):
    """One rubric criterion: a grade and a short reason for it."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    #: The grade.
    rating: Rating
    #: Why, in one or two sentences, in the interview's language.
    reason: str = Field(min_length=1, max_length=2000)

    def rating_label(self, language: Language = "ko") -> str:
        return self.rating.label(language)


class OptionalCriterion(Criterion):
    """A criterion that may not apply to an answer: ``rating`` None means NA."""

    #: The grade, or None (NA) when the criterion does not apply.
    rating: Rating | None = None  # type: ignore[assignment]

    @field_validator("rating", mode="before")
    @classmethod
    def _na(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in _NA_WORDS:
            return None
        return value

    def rating_label(self, language: Language = "ko") -> str:
        return "NA" if self.rating is None else self.rating.label(language)


class SimilarityCriterion(OptionalCriterion):
    """Similarity to a reference answer: a percent match (or NA) and the grade."""

    #: How much of the reference the answer covers, 0–100; None = NA.
    match_percent: int | None = Field(None, ge=0, le=100)

    @field_validator("match_percent", mode="before")
    @classmethod
    def _percent(cls, value: object) -> object:
        # Accept "70%", 70.4 and "NA" as models write them.
        if isinstance(value, str):
            text = value.strip().rstrip("%").strip()
            if text.lower() in _NA_WORDS:
                return None
            try:
                value = float(text)
            except ValueError:
                return value  # let pydantic say what is wrong
        if isinstance(value, float):
            return round(value) if math.isfinite(value) else None
        return value

    @model_validator(mode="after")
    def _rating_from_percent(self) -> SimilarityCriterion:
        # A percent without a grade still has an obvious grade.
        if self.rating is None and self.match_percent is not None:
            self.rating = similarity_rating(self.match_percent)
        return self

    def rating_label(self, language: Language = "ko") -> str:
        label = super().rating_label(language)
        if self.match_percent is None:
            return label
        return f"{label} ({self.match_percent}%)"


def similarity_rating(percent: int) -> Rating:
    """The grade of a percent match: ≥ 50 very good, ≥ 25 fine, otherwise needs work."""
    if percent >= 50:
        return Rating.VERY_GOOD
    if percent >= 25:
        return Rating.FINE
    return Rating.NEEDS_IMPROVEMENT


#: The seven criteria in display order: (field, Korean label, English label). The
#: original project's "reference와의 유사도" reads as a half-English label on a Korean
#: page; it is shown as "참고 답안과의 유사도" (similarity to the reference answer).
CRITERIA: tuple[tuple[str, str, str], ...] = (
    ("overall", "전반적인 점수", "Overall"),
    ("similarity", "참고 답안과의 유사도", "Similarity to reference"),
    ("clarity", "명확성", "Clarity / STAR"),
    ("technical_explanation", "기술 설명", "Technical explanation"),
    ("examples", "적절한 예시", "Fitting examples"),
    ("communication", "소통 방식", "Communication style"),
    ("natural_delivery", "자연스러운 답변", "Natural delivery / filler words"),
)


class Evaluation(BaseModel):
    """One spoken answer evaluated on the seven criteria, with tips and a model answer."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    #: 전반적인 점수 — the answer as a whole.
    overall: Criterion
    #: 참고 답안과의 유사도 — closeness to a reference answer, with a percent match or NA.
    similarity: SimilarityCriterion
    #: 명확성 — clear structure (situation, task, action, result).
    clarity: Criterion
    #: 기술 설명 — correct, reasoned technical explanation.
    technical_explanation: Criterion
    #: 적절한 예시 — concrete, fitting examples; NA when the question calls for none.
    examples: OptionalCriterion
    #: 소통 방식 — tone, pace, length, directness.
    communication: Criterion
    #: 자연스러운 답변 — fluent delivery, few filler words and long pauses.
    natural_delivery: Criterion
    #: Exactly three concrete tips for the next attempt.
    tips: list[str] = Field(min_length=3, max_length=3)
    #: One model answer to the same question.
    model_answer: str = Field(min_length=1, max_length=8000)
    #: Which engine wrote it ("llm" or "offline").
    engine: EngineName = "llm"
    #: Set when the offline engine stood in because the LLM failed: what went wrong.
    fallback_error: str | None = None
    #: In an evaluation the language model wrote (``engine`` "llm"): the criteria the
    #: stated rules rated instead of the model (`llm.hybrid.RULE_CRITERIA`: overall and
    #: the measured ones). Empty when one engine rated everything (offline: all rules).
    rule_based: list[str] = Field(default_factory=list)
    #: The model's criteria that a clamp of `llm.hybrid` lowered (their reasons say why).
    clamped: list[str] = Field(default_factory=list)

    @field_validator("tips")
    @classmethod
    def _tips_non_empty(cls, value: list[str]) -> list[str]:
        return _non_empty_tips(value)

    @staticmethod
    def headers(language: Language = "ko") -> CriterionRow:
        if language == "ko":
            return CriterionRow("평가 항목", "평가", "이유")
        return CriterionRow("Criterion", "Rating", "Reason")

    def rows(self, language: Language = "ko") -> list[CriterionRow]:
        """The seven criteria as table rows: label, grade (NA / percent included), reason."""
        rows = []
        for field, ko_label, en_label in CRITERIA:
            criterion: Criterion = getattr(self, field)
            rows.append(
                CriterionRow(
                    ko_label if language == "ko" else en_label,
                    criterion.rating_label(language),
                    criterion.reason,
                )
            )
        return rows

    def as_markdown(self, language: Language = "ko") -> str:
        """The whole evaluation as Markdown (table, tips, model answer) for reports."""
        head = self.headers(language)
        lines = [f"| {head.criterion} | {head.rating} | {head.reason} |", "|---|---|---|"]
        for row in self.rows(language):
            reason = row.reason.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {row.criterion} | {row.rating} | {reason} |")
        lines += ["", "**팁**" if language == "ko" else "**Tips**", ""]
        lines += [f"{i}. {tip}" for i, tip in enumerate(self.tips, start=1)]
        lines += ["", "**모범 답안**" if language == "ko" else "**Model answer**", ""]
        lines.append(self.model_answer)
        if self.engine == "offline":
            lines += [
                "",
                "_오프라인 규칙 기반 평가_"
                if language == "ko"
                else "_Offline rule-based evaluation_",
            ]
        elif self.rule_based:
            lines += ["", f"_{rule_based_note(self.rule_based, language)}_"]
        return "\n".join(lines)


def rule_based_note(fields: list[str], language: Language = "ko") -> str:
    """One sentence saying which criteria the rules rated while the model wrote the rest."""
    labels = {field: (ko, en) for field, ko, en in CRITERIA}
    names = [labels[f][0 if language == "ko" else 1] for f in fields if f in labels]
    if language == "ko":
        return (
            f"{', '.join(names)}: 정해진 규칙으로 평가(말하기 지표, 다른 항목의 중앙값). "
            "나머지 항목과 팁, 모범 답안: AI 면접관."
        )
    return (
        f"{', '.join(names)}: rated by fixed rules (your speaking metrics, the middle of the "
        "other ratings). The other criteria, the tips and the model answer: AI interviewer."
    )


#: The criteria the language model writes (the rest of the rubric is the rules').
CONTENT_CRITERIA = ("similarity", "clarity", "technical_explanation", "examples")


class ContentEvaluation(BaseModel):
    """What the language model writes about an answer: the content criteria, three tips
    and a model answer. The rest of the rubric (overall, communication, natural delivery)
    is the rules' (`llm.hybrid.combine` puts them together into an `Evaluation`)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    #: 참고 답안과의 유사도 — closeness to the model answer, with a percent match or NA.
    similarity: SimilarityCriterion
    #: 명확성 — clear structure (situation, task, action, result).
    clarity: Criterion
    #: 기술 설명 — correct, reasoned technical explanation.
    technical_explanation: Criterion
    #: 적절한 예시 — concrete, fitting examples; NA when the question calls for none.
    examples: OptionalCriterion
    #: Exactly three concrete tips for the next attempt.
    tips: list[str] = Field(min_length=3, max_length=3)
    #: One model answer to the same question.
    model_answer: str = Field(min_length=1, max_length=8000)

    @field_validator("tips")
    @classmethod
    def _tips_non_empty(cls, value: list[str]) -> list[str]:
        return _non_empty_tips(value)


#: A number a model puts before a tip ("Tip 1:", "팁 2.", "3)"): the page numbers them.
_TIP_NUMBER = re.compile(r"^\s*(?:tip|팁)?\s*\d+\s*(?:[:)]|\.(?!\d))\s*", re.IGNORECASE)


def _non_empty_tips(value: list[str]) -> list[str]:
    tips = [_TIP_NUMBER.sub("", tip, count=1).strip() for tip in value]
    for index, tip in enumerate(tips, start=1):
        if not tip:
            raise ValueError(f"tip {index} is empty")
    return tips


#: String limits left out of the schema a model is shown and constrained by.
_STRING_LIMITS = ("maxLength", "minLength")


def llm_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema the language model must produce for `model` (engine fields left
    out: those are ours to set).

    String length limits are left out too: llama.cpp's schema-to-grammar converter
    spells a ``maxLength`` of N as N nested optional characters, and the 2,000-character
    limit of a reason made a grammar its server failed to parse ("failed to parse
    grammar", llama-cpp-python 0.3.36). The limits still hold: the reply is validated by
    `model` itself."""
    schema = _without_string_limits(model.model_json_schema())
    for name in ENGINE_FIELDS:
        schema.get("properties", {}).pop(name, None)
        if name in schema.get("required", []):
            schema["required"].remove(name)
    return schema


def _without_string_limits(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: _without_string_limits(value)
            for key, value in node.items()
            if key not in _STRING_LIMITS
        }
    if isinstance(node, list):
        return [_without_string_limits(item) for item in node]
    return node
