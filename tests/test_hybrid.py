"""The hybrid evaluation (llm/hybrid.py): the model's content criteria within the clamps,
the measured criteria and overall by the offline engine's rules. Pure: no model."""

from __future__ import annotations

import re
from typing import Any

import pytest

from llm.hybrid import MEASURED_CRITERIA, RULE_CRITERIA, AnswerEvidence, combine
from llm.offline import OfflineEngine
from llm.offline.rating import (
    count_causal,
    count_numbers,
    overall_rating,
    spoken_syllables,
    star_parts,
)
from llm.offline.tips import TIPS
from llm.schemas import ContentEvaluation, Evaluation, Profile, Rating
from stream.contract import SpeakingMetrics

HANGUL = re.compile(r"[가-힣]")

EN_INTRO = (
    "I led the Smart Factory Monitor project with Python and PyTorch, reduced false alarms by "
    "35% and cut inference latency to 20 ms per frame."
)
KO_INTRO = (
    "저는 'EmoVision' 프로젝트에서 PyTorch로 얼굴 검출 모델을 학습했고, TensorRT로 변환해 "
    "추론 속도를 40% 개선했습니다."
)
EN_QUESTION = "How did you cut the inference latency of the Smart Factory Monitor?"
KO_QUESTION = "EmoVision 프로젝트에서 추론 속도를 40% 개선한 방법을 설명해 주세요."

#: A full answer: over 70 words, figures, reasons, all four STAR parts.
EN_RICH = (
    "At the time our defect detector ran at 80 ms per frame, and my goal was to reach 20 ms "
    "because the line moves fast. I profiled the model and implemented an ONNX export with "
    "TensorRT, and I quantised it to int8 so that the GPU could batch frames. For example, "
    "the backbone alone took 50 ms, so I replaced it with a lighter one. As a result latency "
    "dropped to 18 ms per frame and false alarms fell by 35 percent, which the plant manager "
    "confirmed over a month of production data with three shifts."
)
#: The same length, no digits (numbers as words).
EN_NO_FIGURE = re.sub(r"\d+", "many", EN_RICH)
#: Long, figures and STAR, but no causal connective.
EN_NO_REASON = (
    "At the time our defect detector ran at 80 ms per frame, and my goal was to reach 20 ms. "
    "I profiled the model and implemented an ONNX export with TensorRT, and I quantised it to "
    "int8. For example, the backbone alone took 50 ms, and I replaced it with a lighter one. "
    "Latency dropped to 18 ms per frame and false alarms fell by 35 percent, and the plant "
    "manager confirmed it over a month of production data with three shifts and two lines "
    "and a review."
)
#: Long, figures and a reason, but no STAR cue beyond one.
EN_NO_STRUCTURE = (
    "Latency matters on a factory line because every frame counts, and the model has a heavy "
    "backbone of 50 layers that is slow on our hardware. The plant has three shifts and two "
    "lines, and the cameras capture 30 frames per second of each belt. Int8 quantisation is a "
    "known trick, and TensorRT is a fast runtime for it. The team liked the idea and the "
    "manager agreed, and the numbers looked good on the dashboard for the whole month of "
    "June, which everyone appreciated a lot."
)
#: 20 words: short, but with a figure, a reason and STAR cues.
EN_SHORT = (
    "My goal was 20 ms, so I implemented TensorRT because it was fast; in the end latency "
    "improved to 18."
)
KO_RICH = (
    "당시 EmoVision 프로젝트의 추론 속도가 프레임당 80ms로 느려서 실시간 서비스가 어려운 "
    "상황이었습니다. "
    "제 역할은 속도를 20ms 이하로 줄이는 것이었고, 예를 들어 백본이 50ms를 차지했기 때문에 "
    "PyTorch 모델을 ONNX로 변환하고 TensorRT로 int8 양자화를 적용했습니다. 그 결과 추론 속도가 "
    "40% 개선되어 18ms가 되었고, 정확도는 거의 그대로 유지되었습니다. 이 경험으로 측정부터 하고 "
    "병목을 찾는 습관을 배웠습니다."
)
KO_SHORT = "TensorRT로 변환했기 때문에 결과적으로 속도가 40% 개선되었습니다."

METRICS_GOOD = SpeakingMetrics(
    duration_s=60.0, words_per_minute=130.0, syllables_per_second=4.0, filler_count=0
)


def _profile(language: str) -> Profile:
    return Profile(self_intro=KO_INTRO if language == "ko" else EN_INTRO, language=language)


def _content(rating: str = "매우 좋음", **overrides: Any) -> ContentEvaluation:
    data: dict[str, Any] = {
        "similarity": {"rating": rating, "match_percent": 80, "reason": "model's similarity"},
        "clarity": {"rating": rating, "reason": "model's clarity"},
        "technical_explanation": {"rating": rating, "reason": "model's technical"},
        "examples": {"rating": rating, "reason": "model's examples"},
        "tips": ["model tip 1", "model tip 2", "model tip 3"],
        "model_answer": "model answer",
    }
    data.update(overrides)
    return ContentEvaluation.model_validate(data)


def _combine(
    answer: str,
    language: str = "en",
    content: ContentEvaluation | None = None,
    metrics: SpeakingMetrics | None = METRICS_GOOD,
) -> Evaluation:
    profile = _profile(language)
    question = KO_QUESTION if language == "ko" else EN_QUESTION
    measured = OfflineEngine().evaluation(profile, question, answer, metrics)
    return combine(content or _content(), measured, answer, metrics, language=profile.language)


def _is_korean(text: str) -> bool:
    return bool(HANGUL.search(text))


# --------------------------------------------------------------------------- premises


def test_the_answers_have_what_the_tests_say():
    assert len(EN_RICH.split()) >= 70 and count_numbers(EN_RICH) and count_causal(EN_RICH)
    assert len(star_parts(EN_RICH)) == 4
    assert len(EN_NO_FIGURE.split()) >= 70 and not count_numbers(EN_NO_FIGURE)
    assert len(EN_NO_REASON.split()) >= 70 and not count_causal(EN_NO_REASON)
    assert len(star_parts(EN_NO_REASON)) >= 2
    assert len(EN_NO_STRUCTURE.split()) >= 70 and len(star_parts(EN_NO_STRUCTURE)) < 2
    assert count_numbers(EN_NO_STRUCTURE) and count_causal(EN_NO_STRUCTURE)
    assert len(EN_SHORT.split()) == 20 and len(star_parts(EN_SHORT)) >= 2
    assert spoken_syllables(KO_RICH) >= 120 and len(star_parts(KO_RICH)) == 4
    assert spoken_syllables(KO_SHORT) < 120 and count_numbers(KO_SHORT)


# --------------------------------------------------------------------------- no clamp


@pytest.mark.parametrize(("answer", "language"), [(EN_RICH, "en"), (KO_RICH, "ko")])
def test_a_full_answer_keeps_the_models_ratings_and_reasons(answer, language):
    result = _combine(answer, language)
    assert result.clamped == []
    for field in ("similarity", "clarity", "technical_explanation", "examples"):
        criterion = getattr(result, field)
        assert criterion.rating is Rating.VERY_GOOD
        assert criterion.reason.startswith("model's") and "[" not in criterion.reason
    assert result.similarity.match_percent == 80
    assert result.engine == "llm" and result.rule_based == list(RULE_CRITERIA)
    assert result.model_answer == "model answer"


def test_the_models_na_on_examples_stays_na():
    result = _combine(EN_RICH, content=_content(examples={"rating": "NA", "reason": "none"}))
    assert result.examples.rating is None and "examples" not in result.clamped


# --------------------------------------------------------------------------- measured


@pytest.mark.parametrize("language", ["en", "ko"])
@pytest.mark.parametrize(
    "metrics",
    [
        METRICS_GOOD,
        SpeakingMetrics(duration_s=12.0, words_per_minute=230.0, filler_count=9),
        SpeakingMetrics(duration_s=200.0, words_per_minute=70.0, longest_pause_s=12.0),
        None,
    ],
)
def test_measured_criteria_are_always_the_rules(language, metrics):
    answer = KO_RICH if language == "ko" else EN_RICH
    profile = _profile(language)
    question = KO_QUESTION if language == "ko" else EN_QUESTION
    rules = OfflineEngine().evaluation(profile, question, answer, metrics)
    for model_says in ("매우 좋음", "개선 필요함"):
        result = _combine(answer, language, _content(model_says), metrics)
        for field in MEASURED_CRITERIA:
            assert getattr(result, field) == getattr(rules, field)


def test_a_model_reply_with_every_criterion_is_read_for_its_content_only():
    """A model that writes the whole rubric anyway: its delivery and overall are ignored."""
    reply = _content().model_dump() | {
        "overall": {"rating": "매우 좋음", "reason": "great"},
        "natural_delivery": {"rating": "매우 좋음", "reason": "no fillers"},
        "communication": {"rating": "매우 좋음", "reason": "great pace"},
    }
    fillers = SpeakingMetrics(duration_s=60.0, words_per_minute=130.0, filler_count=20)
    result = _combine(EN_RICH, content=ContentEvaluation.model_validate(reply), metrics=fillers)
    assert result.natural_delivery.rating is Rating.NEEDS_IMPROVEMENT
    assert "no fillers" not in result.natural_delivery.reason


@pytest.mark.parametrize("language", ["en", "ko"])
def test_overall_is_the_lower_median_of_the_other_six(language):
    answer = KO_RICH if language == "ko" else EN_RICH
    slow = SpeakingMetrics(duration_s=12.0, words_per_minute=40.0, filler_count=30)
    content = _content(
        "무난함",
        similarity={"rating": "매우 좋음", "match_percent": 70, "reason": "r"},
        examples={"rating": "NA", "reason": "r"},
    )
    result = _combine(answer, language, content, slow)
    others = [
        result.similarity.rating,
        result.clarity.rating,
        result.technical_explanation.rating,
        result.examples.rating,
        result.communication.rating,
        result.natural_delivery.rating,
    ]
    assert result.overall.rating is overall_rating(others)
    # scores 2, 1, 1, NA, 0, 0 → the lower median of five is 1
    assert result.overall.rating is Rating.FINE
    assert _is_korean(result.overall.reason) == (language == "ko")


# --------------------------------------------------------------------------- clamps


@pytest.mark.parametrize(("language", "marker"), [("en", "[Rule]"), ("ko", "[규칙]")])
def test_fragment_answer_is_needs_improvement_and_examples_na(language, marker):
    result = _combine("TensorRT 썼어요" if language == "ko" else "I used TensorRT", language)
    for field in ("similarity", "clarity", "technical_explanation"):
        criterion = getattr(result, field)
        assert criterion.rating is Rating.NEEDS_IMPROVEMENT, field
        assert marker in criterion.reason and _is_korean(criterion.reason) == (language == "ko")
    assert result.similarity.match_percent == 24  # the top of needs improvement
    assert result.examples.rating is None and marker in result.examples.reason
    assert set(result.clamped) == {"similarity", "clarity", "technical_explanation", "examples"}


def test_no_answer_has_nothing_to_compare():
    result = _combine("", "en", metrics=None)
    assert result.similarity.rating is None and result.similarity.match_percent is None
    assert "no answer" in result.similarity.reason.lower()
    assert result.examples.rating is None


@pytest.mark.parametrize(
    ("answer", "language", "marker", "words"),
    [
        (EN_SHORT, "en", "[Rule] An answer shorter than about 30 seconds", "very good"),
        (KO_SHORT, "ko", "[규칙] 말로 30초(약 120음절)보다 짧은 답변", "무난함으로 조정"),
    ],
)
def test_short_answer_cannot_be_very_good_on_technical_examples_or_similarity(
    answer, language, marker, words
):
    result = _combine(answer, language)
    for field in ("similarity", "technical_explanation", "examples"):
        criterion = getattr(result, field)
        assert criterion.rating is Rating.FINE, field
        assert marker in criterion.reason and words in criterion.reason
        assert criterion.reason.startswith("model's")  # the model's reason, then the rule
    assert result.similarity.match_percent == 49  # the top of fine
    assert {"similarity", "technical_explanation", "examples"} <= set(result.clamped)


@pytest.mark.parametrize("language", ["en", "ko"])
def test_no_figure_caps_examples(language):
    answer = EN_NO_FIGURE if language == "en" else re.sub(r"\d+", "여러", KO_RICH)
    assert not count_numbers(answer)
    result = _combine(answer, language)
    assert result.examples.rating is Rating.FINE
    note = "no figures" if language == "en" else "수치가 하나도 없는"
    assert note in result.examples.reason
    assert result.clamped == ["examples"]


def test_no_reason_caps_technical_explanation():
    result = _combine(EN_NO_REASON)
    assert result.technical_explanation.rating is Rating.FINE
    assert "gives no reason" in result.technical_explanation.reason
    assert result.clamped == ["technical_explanation"]


def test_no_reason_in_korean():
    answer = KO_RICH.replace("때문에", "그리고").replace("느려서", "느리고")
    answer = answer.replace("그 결과", "이후")
    assert not count_causal(answer)
    result = _combine(answer, "ko")
    assert result.technical_explanation.rating is Rating.FINE
    assert "이유를 밝히는 표현" in result.technical_explanation.reason


def test_no_structure_caps_clarity():
    result = _combine(EN_NO_STRUCTURE)
    assert result.clarity.rating is Rating.FINE
    assert "STAR" in result.clarity.reason and "[Rule]" in result.clarity.reason
    assert result.clamped == ["clarity"]


def test_a_clamp_never_raises_a_rating():
    result = _combine(EN_SHORT, content=_content("개선 필요함"))
    assert result.clamped == []
    for field in ("clarity", "technical_explanation", "examples"):
        assert getattr(result, field).rating is Rating.NEEDS_IMPROVEMENT


EN_OFF_TOPIC = (
    "I go hiking most weekends, and last month I walked the whole ridge trail in 3 days. "
    "Staying fit matters for developers too, because a long week at a desk is hard on you, "
    "so I also run twice a week and I enjoy team dinners."
)
KO_OFF_TOPIC = (
    "저는 주말에 등산을 자주 다니는데요, 최근에는 지리산 종주를 3일 동안 다녀왔습니다. 체력 "
    "관리가 개발자에게도 정말 중요하다고 생각해서 꾸준히 운동하고 있습니다. 팀 회식도 좋아합니다."
)


@pytest.mark.parametrize(
    ("language", "answer", "note"),
    [
        ("en", EN_OFF_TOPIC, "names none of the key words"),
        ("ko", KO_OFF_TOPIC, "하나도 언급하지 않은"),
    ],
)
def test_an_answer_that_names_nothing_of_the_question_or_intro_needs_improvement(
    language, answer, note
):
    """What the real 1.5B model did with an answer about hiking: 100 % similar, very good
    everywhere. The rules see it names none of the question's or the intro's key words."""
    content = _content(similarity={"rating": "매우 좋음", "match_percent": 100, "reason": "ok"})
    result = _combine(answer, language, content)
    for field in ("similarity", "clarity", "technical_explanation", "examples"):
        criterion = getattr(result, field)
        assert criterion.rating is Rating.NEEDS_IMPROVEMENT, field
        assert note in criterion.reason, criterion.reason
    assert result.similarity.match_percent == 24
    assert result.overall.rating is Rating.NEEDS_IMPROVEMENT
    assert set(result.clamped) == {"similarity", "clarity", "technical_explanation", "examples"}


@pytest.mark.parametrize(("language", "answer"), [("en", EN_OFF_TOPIC), ("ko", KO_OFF_TOPIC)])
def test_an_na_the_model_gives_an_answer_that_names_nothing_is_rated(language, answer):
    """The other way the real model let an off-topic answer through (bench llm, en-sre):
    similarity and examples NA ("it does not relate to the question"), which drop out of
    overall, so overall came out fine. The rule rates them."""
    content = _content(
        "무난함",
        similarity={"rating": None, "match_percent": None, "reason": "unrelated"},
        examples={"rating": None, "reason": "no examples"},
    )
    result = _combine(answer, language, content)
    assert result.similarity.rating is Rating.NEEDS_IMPROVEMENT
    assert result.similarity.match_percent is None
    assert result.examples.rating is Rating.NEEDS_IMPROVEMENT
    rated = "rated needs improvement" if language == "en" else "개선 필요함으로 평가했습니다"
    assert rated in result.examples.reason, result.examples.reason
    assert result.overall.rating is Rating.NEEDS_IMPROVEMENT


@pytest.mark.parametrize(("answer", "language"), [(EN_RICH, "en"), (KO_RICH, "ko")])
def test_an_answer_that_names_the_questions_words_is_not_held_to_that_rule(answer, language):
    result = _combine(answer, language)
    assert "names_nothing" not in str(result.model_dump())
    for field in ("similarity", "technical_explanation", "examples"):
        assert "key words" not in getattr(result, field).reason
        assert "핵심어" not in getattr(result, field).reason


@pytest.mark.parametrize(("language", "note"), [("en", "match percent"), ("ko", "일치율")])
def test_similarity_grade_cannot_exceed_its_percent(language, note):
    content = _content(similarity={"rating": "매우 좋음", "match_percent": 30, "reason": "r"})
    result = _combine(EN_RICH if language == "en" else KO_RICH, language, content)
    assert result.similarity.rating is Rating.FINE and result.similarity.match_percent == 30
    assert note in result.similarity.reason and result.clamped == ["similarity"]
    # a grade stricter than the percent stays as the model gave it
    strict = _content(similarity={"rating": "무난함", "match_percent": 80, "reason": "r"})
    kept = _combine(EN_RICH, "en", strict)
    assert kept.similarity.rating is Rating.FINE and kept.similarity.match_percent == 80
    assert kept.clamped == []


# --------------------------------------------------------------------------- tips


@pytest.mark.parametrize("language", ["en", "ko"])
def test_measured_criteria_that_need_improvement_bring_their_rule_tips(language):
    answer = KO_RICH if language == "ko" else EN_RICH
    good = _combine(answer, language)
    assert good.tips == ["model tip 1", "model tip 2", "model tip 3"]
    fillers = SpeakingMetrics(duration_s=60.0, words_per_minute=130.0, filler_count=20)
    one = _combine(answer, language, metrics=fillers)
    assert one.tips[:2] == ["model tip 1", "model tip 2"]
    assert one.tips[2] == TIPS["natural_delivery"][language][0]
    both = SpeakingMetrics(duration_s=5.0, words_per_minute=400.0, filler_count=20)
    two = _combine(answer, language, metrics=both)
    assert two.communication.rating is Rating.NEEDS_IMPROVEMENT
    assert two.tips == [
        "model tip 1",
        TIPS["communication"][language][0],
        TIPS["natural_delivery"][language][0],
    ]


def test_a_repeated_tip_is_replaced_by_the_rules_next_tip():
    profile = _profile("ko")
    measured = OfflineEngine().evaluation(profile, KO_QUESTION, KO_RICH, METRICS_GOOD)
    same = _content(tips=["같은 팁", "같은 팁", "같은 팁"])
    result = combine(same, measured, KO_RICH, METRICS_GOOD, language="ko")
    assert result.tips == ["같은 팁", *measured.tips[:2]]
    assert len(set(result.tips)) == 3


def test_a_long_pause_alone_brings_the_pause_tip():
    stall = SpeakingMetrics(
        duration_s=60.0, words_per_minute=130.0, filler_count=0, longest_pause_s=12.0
    )
    result = _combine(EN_RICH, metrics=stall)
    assert result.natural_delivery.rating is Rating.NEEDS_IMPROVEMENT
    assert result.tips[2] == TIPS["long_pause"]["en"][0]


# --------------------------------------------------------------------------- display


def test_evidence_counts_words_on_the_transcript():
    evidence = AnswerEvidence.of(EN_SHORT, METRICS_GOOD, "en")
    assert evidence.words == 20 and evidence.short
    assert not AnswerEvidence.of(EN_RICH, None, "en").short


@pytest.mark.parametrize(("language", "text"), [("en", "fixed rules"), ("ko", "정해진 규칙")])
def test_the_markdown_says_which_criteria_the_rules_rated(language, text):
    markdown = _combine(EN_RICH, language).as_markdown(language)
    assert text in markdown


def test_the_schema_the_model_is_given_has_no_string_limits_but_the_reply_is_held_to_them():
    """llama.cpp turns a maxLength of N into N nested optionals: a grammar its server
    fails to parse. The schema leaves them out; validation keeps them."""
    import json

    from pydantic import ValidationError

    from llm.schemas import Questions, llm_json_schema

    for model in (ContentEvaluation, Questions):
        text = json.dumps(llm_json_schema(model))
        assert "maxLength" not in text and "minLength" not in text
    assert llm_json_schema(ContentEvaluation)["properties"]["tips"]["maxItems"] == 3
    with pytest.raises(ValidationError):
        _content(clarity={"rating": "무난함", "reason": "x" * 2001})


def test_a_number_the_model_puts_before_a_tip_is_dropped_as_the_page_numbers_tips() -> None:
    from llm.schemas import ContentEvaluation

    base = {
        "similarity": {"match_percent": 50, "reason": "일부를 다룹니다."},
        "clarity": {"rating": "무난함", "reason": "구조가 보입니다."},
        "technical_explanation": {"rating": "무난함", "reason": "이유가 있습니다."},
        "examples": {"rating": None, "reason": "예시가 필요 없습니다."},
        "model_answer": "모범 답안입니다.",
    }
    tips = ["Tip 1: Say the result.", "팁 2. 이유를 말하세요", "1.5배 빨라진 결과를 말하세요"]
    parsed = ContentEvaluation.model_validate({**base, "tips": tips})
    assert parsed.tips == ["Say the result.", "이유를 말하세요", "1.5배 빨라진 결과를 말하세요"]


def test_the_names_nothing_rule_over_the_benchs_answers():
    """docs/interview.md's figures for the rule: every off-topic answer of the bench's
    cases is held to it, no strong one is."""
    from deploy.bench.llm import CASES_PATH, load_cases

    held: dict[str, list[bool]] = {}
    for case in load_cases(CASES_PATH):
        profile = Profile(
            self_intro=case.self_intro,
            language=case.language,
            job_title=case.job_title,
            years=case.years,
            company=case.company,
        )
        for answer in case.answers:
            measured = OfflineEngine().evaluation(profile, answer.question, answer.answer, None)
            held.setdefault(answer.kind, []).append(measured.similarity.match_percent == 0)
    assert held["off_topic"] == [True] * 4
    assert not any(held["strong"]) and len(held["strong"]) == 9
    assert sum(held["vague"]) == 4 and sum(held["short"]) == 3
