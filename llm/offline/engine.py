"""The offline engine: questions and evaluations by stated rules, with no language model.

It runs when no LLM endpoint is configured, and stands in for one that fails
(`llm.engine.FallbackEngine`). It is honest about what it is: every result carries
``engine="offline"``, the overall reason says the evaluation is rule-based, and the
model answer is a labelled template. It is deterministic: the same input gives the
same output. Everything it writes for a person is a sentence in the interview's
language: no identifier, English plurals that agree with their number ("1 term",
"2 terms"), Korean particles chosen by the word before them (`josa`).

The rules are stated beside the code that applies them: `llm.offline.intro` (reading
the self-introduction), `llm.offline.questions`, `llm.offline.rating` (each criterion),
`llm.offline.reasons` and `llm.offline.tips` (tips and the model answer).
"""

from __future__ import annotations

from collections.abc import Mapping

from llm.offline.intro import read_intro
from llm.offline.questions import compose_questions
from llm.offline.rating import (
    analyse_answer,
    length_verdict,
    marked_down_for_pause_alone,
    overall_rating,
    pace_verdict,
    rate_clarity,
    rate_delivery,
    rate_examples,
    rate_technical,
    similarity_percent,
)
from llm.offline.reasons import criterion_reasons
from llm.offline.tips import TIP_ORDER, model_answer, tip_for
from llm.schemas import (
    Criterion,
    Evaluation,
    Language,
    OptionalCriterion,
    Profile,
    Questions,
    Rating,
    SimilarityCriterion,
    similarity_rating,
)
from llm.settings import LlmSettings
from stream.contract import SpeakingMetrics


class OfflineEngine:
    """Rule-based questions and evaluations (each llm.offline module states its rules)."""

    #: Which engine this is, as results and events name it.
    name = "offline"

    def __init__(self, settings: LlmSettings | None = None) -> None:
        self.settings = settings or LlmSettings()

    async def generate_questions(self, profile: Profile) -> Questions:
        return self.questions(profile)

    async def aclose(self) -> None:
        """Nothing to release (the engine interface has it for the LLM client)."""

    async def evaluate(
        self,
        profile: Profile,
        question: str,
        answer: str,
        metrics: SpeakingMetrics | None = None,
    ) -> Evaluation:
        return self.evaluation(profile, question, answer, metrics)

    def questions(self, profile: Profile) -> Questions:
        """The three questions, synchronously (pure CPU, microseconds)."""
        return Questions(
            questions=compose_questions(profile, read_intro(profile)), engine="offline"
        )

    def evaluation(
        self,
        profile: Profile,
        question: str,
        answer: str,
        metrics: SpeakingMetrics | None = None,
    ) -> Evaluation:
        """The seven-criterion evaluation, synchronously (`metrics`: how the answer was
        spoken, None for an answer that was not)."""
        language = profile.language
        answer = answer[: self.settings.max_answer_chars]
        facts = read_intro(profile)
        a = analyse_answer(profile, facts, question, answer, metrics)
        length, pace = length_verdict(a), pace_verdict(a)
        percent = similarity_percent(a)
        reasons = criterion_reasons(a, length, pace, percent)

        if a.words == 0:
            empty = (
                "답변이 인식되지 않았습니다." if language == "ko" else "No answer was recognised."
            )
            ratings: dict[str, Rating | None] = dict.fromkeys(TIP_ORDER, Rating.NEEDS_IMPROVEMENT)
            ratings["examples"] = None
            ratings["similarity"] = None
            reasons = {key: empty for key in reasons} | {"similarity": reasons["similarity"]}
        else:
            ratings = {
                "natural_delivery": rate_delivery(a),
                "examples": rate_examples(a),
                "technical_explanation": rate_technical(a),
                "clarity": rate_clarity(a),
                "communication": Rating.from_score(int(length == "ok") + int(pace in ("ok", None))),
                "similarity": None if percent is None else similarity_rating(percent),
            }
        overall = overall_rating(ratings.values())
        overall_reason = (
            f"오프라인 규칙 기반 평가: 나머지 항목 점수의 중앙값({overall.label('ko')})."
            if language == "ko"
            else "Offline rule-based evaluation: the middle rating of the other criteria "
            f"({overall.label('en')})."
        )
        pause_only = marked_down_for_pause_alone(a.words, a.filler_rate, a.longest_pause_s)

        def plain(key: str) -> Criterion:
            rating = ratings[key]
            assert rating is not None
            return Criterion(rating=rating, reason=reasons[key])

        return Evaluation(
            overall=Criterion(rating=overall, reason=overall_reason),
            similarity=SimilarityCriterion(
                rating=ratings["similarity"], match_percent=percent, reason=reasons["similarity"]
            ),
            clarity=plain("clarity"),
            technical_explanation=plain("technical_explanation"),
            examples=OptionalCriterion(rating=ratings["examples"], reason=reasons["examples"]),
            communication=plain("communication"),
            natural_delivery=plain("natural_delivery"),
            tips=self._tips(ratings, language, pause_only=pause_only),
            model_answer=model_answer(question, profile, facts),
            engine="offline",
        )

    @staticmethod
    def _tips(
        ratings: Mapping[str, Rating | None], language: Language, *, pause_only: bool = False
    ) -> list[str]:
        ranked = sorted(
            (key for key in TIP_ORDER if ratings.get(key) is not None),
            key=lambda key: (ratings[key].score, TIP_ORDER.index(key)),  # type: ignore[union-attr]
        )
        return [
            tip_for(key, ratings[key], language, pause_only=pause_only)  # type: ignore[arg-type]
            for key in ranked[:3]
        ]
