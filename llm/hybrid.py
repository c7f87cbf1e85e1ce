"""The hybrid evaluation: the language model writes the content, the rules keep the
measurements and set the bounds.

A language model reads an answer's content well and its delivery badly (it cannot hear
the answer; it guesses pace and fillers from a transcript and is lenient: a small model
gave 4–5 of 5 to an answer full of fillers with no figures). So an evaluation the model
writes (`llm.client.LlmClient.evaluate`) is put together here, by `combine`, from:

- **the model** (`llm.schemas.ContentEvaluation`): similarity to its own model answer
  (with a percent), clarity / STAR, technical explanation, examples, three tips and the
  model answer;
- **the rules** (the offline engine's stated rules, `llm.offline.rating`, computed from
  the answer's measured speaking metrics): communication style (length and pace) and
  natural delivery (fillers and pauses), with their reasons, exactly as the offline engine
  rates them; and overall, by the offline engine's rule over the other six (the lower
  median, NA left out: `llm.offline.rating.overall_rating`).

Clamps: the model's ratings are capped by what the transcript shows (a clamp only lowers;
the words are counted on the transcript, so thinking pauses do not count):

1. **fragment** — an answer under 5 words (`MIN_WORDS_FOR_EXAMPLES`) is too short to
   judge: similarity, clarity and technical explanation are at most 개선 필요함 (the
   similarity percent at most 24, the top of that grade), examples NA; with no words at
   all similarity is NA.
2. **short** — an answer shorter than 30 seconds of speech (the communication rule's lower
   bound counted on the transcript: under 70 English words, under 120 Korean syllables)
   cannot be 매우 좋음 on technical explanation, examples or similarity (at most 무난함,
   the percent at most 49: it cannot cover half of a one-minute model answer; the real
   model gave a 12-word answer 80 %).
3. **no figure** — an answer with no number (digit group) cannot be 매우 좋음 on examples.
4. **no reason** — an answer with no causal connective (because, so that, 때문, 그래서, …)
   cannot be 매우 좋음 on technical explanation.
5. **no structure** — an answer in which fewer than 2 of the 4 STAR parts have a cue
   cannot be 매우 좋음 on clarity.
6. **names nothing** — an answer (of 5 words or more) that names none of the rules'
   similarity reference — the question's top keywords and the self-introduction's skills
   and keywords (`llm.offline.rating`: the offline engine's similarity, 0 %) — is at most
   개선 필요함 on every content criterion, and a criterion the model left NA is rated
   개선 필요함 (an answer about something else asks for no example, so the model says NA,
   and NA criteria drop out of overall): it is off the question, or says nothing
   concrete. The 1.5B model gave an answer about hiking, to a question about cache
   invalidation, 100 % similarity and 매우 좋음 everywhere. (Tried and left out: asking
   the model first whether the answer answers the question. It said "partly" for that
   answer, and two of three Korean evaluations then came back in English.)
7. **percent** — the similarity grade is at most what the model's own percent earns by
   the offline engine's rule (≥ 50 % 매우 좋음, ≥ 25 % 무난함): "매우 좋음 (30%)" becomes
   "무난함 (30%)"; a stricter grade than the percent stays.

When a clamp changes a rating its reason gets a sentence saying which rule did it, in the
interview's language, and the criterion is listed in ``clamped``. Tips: the model's three
(a tip it repeats is replaced by the offline engine's next tip: a 1.5B model wrote one tip
three times), except that a measured criterion rated 개선 필요함 puts its rule tip (the
offline engine's) last — natural delivery in the last place, communication before it —
since the model did not judge those. The result says ``engine="llm"`` and lists the
criteria the rules rated in ``rule_based`` (`RULE_CRITERIA`); the room and the report mark
them.
"""

from __future__ import annotations

from dataclasses import dataclass

from llm.offline.grammar import josa
from llm.offline.rating import (
    GOOD_SYLLABLES_KO,
    GOOD_WORDS_EN,
    MIN_WORDS_FOR_EXAMPLES,
    count_causal,
    count_numbers,
    delivery_measures,
    marked_down_for_pause_alone,
    overall_rating,
    spoken_syllables,
    star_parts,
)
from llm.offline.tips import tip_for
from llm.schemas import (
    CONTENT_CRITERIA,
    ContentEvaluation,
    Criterion,
    Evaluation,
    Language,
    OptionalCriterion,
    Rating,
    SimilarityCriterion,
    similarity_rating,
)
from stream.contract import SpeakingMetrics

#: The criteria measured from the speaking metrics by the offline engine's rules.
MEASURED_CRITERIA = ("communication", "natural_delivery")
#: Every criterion the rules rate in a hybrid evaluation (overall: over the others).
RULE_CRITERIA = ("overall", *MEASURED_CRITERIA)
#: STAR parts with a cue an answer needs for 매우 좋음 on clarity.
MIN_STAR_PARTS = 2
#: The highest similarity percent of each grade below 매우 좋음 (`similarity_rating`).
_TOP_PERCENT = {Rating.NEEDS_IMPROVEMENT: 24, Rating.FINE: 49}

_SHORT_KO = f"말로 30초(약 {GOOD_SYLLABLES_KO[0]}음절)"
_SHORT_EN = f"about 30 seconds of speech ({GOOD_WORDS_EN[0]} words)"


@dataclass(frozen=True)
class Clamp:
    """One rule bounding a content criterion: its rating is at most `cap` (None: NA)."""

    name: str
    cap: Rating | None
    #: Why, as the start of a sentence: Korean, then English.
    why_ko: str
    why_en: str
    #: The model's NA is rated `cap` too: the rule knows there is something to rate (an
    #: answer that names nothing of the question is no reason to leave a criterion out).
    rates_na: bool = False

    def note(self, language: Language, from_na: bool = False) -> str:
        """The sentence added to a lowered criterion's reason (`from_na`: it was NA)."""
        if language == "ko":
            if self.cap is None:
                result = "NA로 처리했습니다"
            else:
                grade = f"{self.cap.label('ko')}{josa(self.cap.label('ko'), '으로')}"
                result = f"{grade} {'평가' if from_na else '조정'}했습니다"
            return f"[규칙] {self.why_ko} {result}."
        if self.cap is None:
            result = "marked NA"
        else:
            result = f"{'rated' if from_na else 'lowered to'} {self.cap.label('en').lower()}"
        return f"[Rule] {self.why_en}, so it was {result}."


_FRAGMENT = Clamp(
    "fragment",
    Rating.NEEDS_IMPROVEMENT,
    f"{MIN_WORDS_FOR_EXAMPLES}단어 미만의 답변은 내용을 판단하기에 너무 짧아",
    f"An answer under {MIN_WORDS_FOR_EXAMPLES} words is too short to judge",
)
_FRAGMENT_EXAMPLES = Clamp(
    "fragment",
    None,
    f"{MIN_WORDS_FOR_EXAMPLES}단어 미만의 답변은 예시를 판단할 수 없어",
    f"An answer under {MIN_WORDS_FOR_EXAMPLES} words is too short to judge examples",
)
_SHORT = Clamp(
    "short",
    Rating.FINE,
    f"{_SHORT_KO}보다 짧은 답변은 이 항목에서 매우 좋음이 될 수 없어",
    f"An answer shorter than {_SHORT_EN} cannot be very good here",
)
_NO_FIGURE = Clamp(
    "no_figure",
    Rating.FINE,
    "수치가 하나도 없는 답변은 예시에서 매우 좋음이 될 수 없어",
    "An answer with no figures cannot be very good on examples",
)
_NO_REASON = Clamp(
    "no_reason",
    Rating.FINE,
    "이유를 밝히는 표현(때문에, 그래서 등)이 없는 답변은 기술 설명에서 매우 좋음이 될 수 없어",
    "An answer that gives no reason (because, so that, …) cannot be very good on technical "
    "explanation",
)
_NO_STRUCTURE = Clamp(
    "no_structure",
    Rating.FINE,
    f"STAR 4요소(상황, 과제, 행동, 결과) 중 드러난 것이 {MIN_STAR_PARTS}개 미만인 답변은 "
    "명확성에서 매우 좋음이 될 수 없어",
    f"With fewer than {MIN_STAR_PARTS} of the 4 STAR parts (situation, task, action, result) "
    "an answer cannot be very good on clarity",
)
_NAMES_NOTHING = Clamp(
    "names_nothing",
    Rating.NEEDS_IMPROVEMENT,
    "질문의 핵심어와 자기소개서의 기술·키워드를 하나도 언급하지 않은 답변은 이 항목에서 무난함 "
    "이상이 될 수 없어",
    "An answer that names none of the key words of the question or of your "
    "self-introduction cannot be fine or better here",
    rates_na=True,
)
_PERCENT_NOTE = {
    "ko": "[규칙] 유사도 등급은 일치율을 넘을 수 없습니다(50% 이상 매우 좋음, 25% 이상 무난함).",
    "en": "[Rule] The similarity rating cannot exceed its match percent (50% or more: very "
    "good; 25% or more: fine).",
}
_NOTHING_TO_COMPARE = {
    "ko": "답변이 없어 비교할 수 없습니다(NA).",
    "en": "There is no answer to compare (NA).",
}


@dataclass(frozen=True)
class AnswerEvidence:
    """What the clamps read in an answer's transcript (and its metrics, for the tips)."""

    language: Language
    #: Whitespace-separated words (Korean: 어절).
    words: int
    #: Spoken syllables (Korean length: Hangul syllables, a Latin/digit run as 3).
    syllables: int
    numbers: int
    causal: int
    star: tuple[str, ...]
    filler_rate: float
    longest_pause_s: float | None
    #: The share (%) of the rules' similarity reference — the question's keywords and the
    #: self-introduction's skills and keywords — that the answer names (the offline
    #: engine's similarity percent); None: no reference or no answer.
    key_terms_percent: int | None = None

    @classmethod
    def of(
        cls,
        answer: str,
        metrics: SpeakingMetrics | None,
        language: Language,
        key_terms_percent: int | None = None,
    ) -> AnswerEvidence:
        _, filler_rate, longest_pause = delivery_measures(answer, metrics)
        return cls(
            key_terms_percent=key_terms_percent,
            language=language,
            words=len(answer.split()),
            syllables=spoken_syllables(answer),
            numbers=count_numbers(answer),
            causal=count_causal(answer),
            star=tuple(star_parts(answer)),
            filler_rate=filler_rate,
            longest_pause_s=longest_pause,
        )

    @property
    def short(self) -> bool:
        """Shorter than 30 seconds of speech, counted on the transcript."""
        if self.language == "ko":
            return self.syllables < GOOD_SYLLABLES_KO[0]
        return self.words < GOOD_WORDS_EN[0]


def clamps_for(evidence: AnswerEvidence) -> dict[str, list[Clamp]]:
    """The clamps that bound each content criterion of this answer (see the module
    docstring; `combine` applies them)."""
    bounds: dict[str, list[Clamp]] = {field: [] for field in CONTENT_CRITERIA}
    if evidence.words < MIN_WORDS_FOR_EXAMPLES:
        for field in ("similarity", "clarity", "technical_explanation"):
            bounds[field].append(_FRAGMENT)
        bounds["examples"].append(_FRAGMENT_EXAMPLES)
        return bounds
    if evidence.key_terms_percent == 0:
        for field in CONTENT_CRITERIA:
            bounds[field].append(_NAMES_NOTHING)
    if evidence.short:
        for field in ("similarity", "technical_explanation", "examples"):
            bounds[field].append(_SHORT)
    if not evidence.numbers:
        bounds["examples"].append(_NO_FIGURE)
    if not evidence.causal:
        bounds["technical_explanation"].append(_NO_REASON)
    if len(evidence.star) < MIN_STAR_PARTS:
        bounds["clarity"].append(_NO_STRUCTURE)
    return bounds


def _bounded(rating: Rating | None, clamps: list[Clamp]) -> tuple[Rating | None, list[Clamp]]:
    """The rating within its clamps, and the clamps that lowered it (or rated the
    model's NA: `Clamp.rates_na`)."""
    if rating is None:
        rating_na = [c for c in clamps if c.rates_na and c.cap is not None]
        if rating_na:
            return Rating.from_score(min(c.cap.score for c in rating_na if c.cap)), rating_na
        return None, []  # the model's NA stays NA
    if any(clamp.cap is None for clamp in clamps):
        return None, [clamp for clamp in clamps if clamp.cap is None]
    lowering = [c for c in clamps if c.cap is not None and c.cap.score < rating.score]
    if not lowering:
        return rating, []
    return Rating.from_score(min(c.cap.score for c in lowering if c.cap is not None)), lowering


def _with_notes(reason: str, notes: list[str]) -> str:
    return " ".join([reason.strip(), *notes]).strip()


def _similarity(
    content: SimilarityCriterion, clamps: list[Clamp], evidence: AnswerEvidence
) -> tuple[SimilarityCriterion, bool]:
    """Similarity within its rules: NA with no answer, the grade from the percent, then
    the clamps (a lowered grade lowers the percent to the top of that grade)."""
    language = evidence.language
    if evidence.words == 0:
        changed = content.rating is not None
        return SimilarityCriterion(reason=_NOTHING_TO_COMPARE[language]), changed
    rating, percent, notes = content.rating, content.match_percent, []
    if (
        percent is not None
        and rating is not None
        and similarity_rating(percent).score < rating.score
    ):
        rating = similarity_rating(percent)
        notes.append(_PERCENT_NOTE[language])
    bounded, lowering = _bounded(rating, clamps)
    if lowering and bounded is not None:
        notes += [clamp.note(language, from_na=rating is None) for clamp in lowering]
        if percent is not None:
            percent = min(percent, _TOP_PERCENT[bounded])
    changed = bounded is not content.rating or percent != content.match_percent
    result = SimilarityCriterion(
        rating=bounded, match_percent=percent, reason=_with_notes(content.reason, notes)
    )
    return result, changed and bool(notes)


def _tips(content: ContentEvaluation, measured: Evaluation, evidence: AnswerEvidence) -> list[str]:
    """The model's distinct tips (a repeated one replaced by the offline engine's next
    tip), with the rule tip of each measured criterion rated 개선 필요함 in the last
    places (natural delivery last)."""
    tips: list[str] = []
    # a small model may write one tip three times: the rules' tips fill the repeats
    for tip in [*content.tips, *measured.tips]:
        if len(tips) < len(content.tips) and tip not in tips:
            tips.append(tip)
    slot = len(tips) - 1
    for field in reversed(MEASURED_CRITERIA):  # natural delivery, then communication
        rating = getattr(measured, field).rating
        if rating is not Rating.NEEDS_IMPROVEMENT:
            continue
        pause_only = field == "natural_delivery" and marked_down_for_pause_alone(
            evidence.words, evidence.filler_rate, evidence.longest_pause_s
        )
        tips[slot] = tip_for(field, rating, evidence.language, pause_only=pause_only)
        slot -= 1
    return tips


def _overall_reason(overall: Rating, language: Language) -> str:
    if language == "ko":
        return (
            f"나머지 항목 평가의 중앙값({overall.label('ko')}): 내용 항목은 AI 면접관이, 소통 "
            "방식과 자연스러운 답변은 말하기 지표로 정해진 규칙에 따라 평가했습니다."
        )
    return (
        f"The middle rating of the other criteria ({overall.label('en')}): the AI interviewer "
        "rated the content; communication style and natural delivery were measured from your "
        "speech by fixed rules."
    )


def combine(
    content: ContentEvaluation,
    measured: Evaluation,
    answer: str,
    metrics: SpeakingMetrics | None,
    *,
    language: Language,
) -> Evaluation:
    """The evaluation of `answer`: the model's `content` within the clamps, the measured
    criteria of `measured` (the offline engine's evaluation of the same answer and
    metrics) as they are, overall by the rule over both (see the module docstring)."""
    evidence = AnswerEvidence.of(
        answer, metrics, language, key_terms_percent=measured.similarity.match_percent
    )
    bounds = clamps_for(evidence)
    clamped: list[str] = []

    similarity, changed = _similarity(content.similarity, bounds["similarity"], evidence)
    if changed:
        clamped.append("similarity")
    criteria: dict[str, Criterion] = {"similarity": similarity}
    for field in ("clarity", "technical_explanation", "examples"):
        given: Criterion = getattr(content, field)
        rating, lowering = _bounded(given.rating, bounds[field])
        notes = [clamp.note(language, from_na=given.rating is None) for clamp in lowering]
        if lowering:
            clamped.append(field)
        kind = OptionalCriterion if field == "examples" else Criterion  # only examples: NA
        criteria[field] = kind(rating=rating, reason=_with_notes(given.reason, notes))
    for field in MEASURED_CRITERIA:
        criteria[field] = getattr(measured, field)
    overall = overall_rating(criterion.rating for criterion in criteria.values())
    return Evaluation(
        overall=Criterion(rating=overall, reason=_overall_reason(overall, language)),
        similarity=similarity,
        clarity=criteria["clarity"],
        technical_explanation=criteria["technical_explanation"],
        examples=criteria["examples"],  # type: ignore[arg-type]
        communication=criteria["communication"],
        natural_delivery=criteria["natural_delivery"],
        tips=_tips(content, measured, evidence),
        model_answer=content.model_answer,
        engine="llm",
        rule_based=list(RULE_CRITERIA),
        clamped=clamped,
    )
