"""The offline engine: deterministic questions from the intro, ratings by stated rules."""

from __future__ import annotations

import pytest

from llm.offline import (
    OfflineEngine,
    find_projects,
    find_results,
    find_skills,
    read_intro,
)
from llm.schemas import Evaluation, Profile, Rating
from stream.contract import ContractError, step_data
from tests._messages import measured

KO_INTRO = (
    "안녕하세요. 저는 2년차 AI 개발자 김민수입니다. 대학원에서 'EmoVision'이라는 감정 인식 "
    "프로젝트를 진행하며 PyTorch와 YOLOv8으로 얼굴 검출 모델을 학습했고, ONNX와 TensorRT로 "
    "변환해 추론 속도를 40% 개선했습니다. 이후 스타트업에서 실시간 추천 시스템 프로젝트를 맡아 "
    "Kubernetes와 도커 기반 배포 파이프라인을 구축했고, 4명의 팀원과 협업하며 응답 시간을 "
    "120ms에서 60ms로 단축했습니다."
)
EN_INTRO = (
    "Hi, my name is Jane Doe. At my last job I led the Smart Factory Monitor project, a "
    "computer vision system built with Python, PyTorch and OpenCV that detects defects on the "
    "line. I reduced false alarms by 35% and cut inference latency to 20 ms per frame. I also "
    "built a data pipeline on AWS with Airflow and worked with a team of five."
)


@pytest.fixture
def engine() -> OfflineEngine:
    return OfflineEngine()


@pytest.fixture
def ko() -> Profile:
    return Profile(self_intro=KO_INTRO)


@pytest.fixture
def en() -> Profile:
    return Profile(self_intro=EN_INTRO, language="en", job_title="ML Engineer", company="Acme")


# --------------------------------------------------------------------------- reading the intro


def test_reads_projects_skills_results_in_korean(ko: Profile) -> None:
    facts = read_intro(ko)
    # "'EmoVision'이라는 감정 인식 프로젝트" is one project, found by its name.
    assert facts.projects == ["EmoVision", "실시간 추천 시스템 프로젝트"]
    assert facts.tools[:4] == ["PyTorch", "YOLO", "ONNX", "TensorRT"]
    assert "Docker" in facts.skills  # 도커
    assert "emotion recognition" in facts.skills  # 감정 인식: a field, not a tool
    # "4명의 팀원" is not a result; a from-to result is one phrase.
    assert facts.results == ["추론 속도 40% 개선", "응답 시간 120ms에서 60ms로 단축"]


def test_reads_projects_skills_results_in_english(en: Profile) -> None:
    facts = read_intro(en)
    assert facts.projects == ["Smart Factory Monitor"]  # not "Jane Doe", not "Acme"
    assert facts.tools == ["Python", "PyTorch", "OpenCV", "AWS", "Airflow"]
    assert facts.results == ["reduced false alarms by 35%", "cut inference latency to 20 ms"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("“스마트 팩토리” 과제를 했습니다", ["스마트 팩토리"]),
        ("졸업 작품으로 음성 비서 프로젝트를 만들었습니다", ["음성 비서 프로젝트"]),
        ("I worked on the emotion recognition project at school", ["emotion recognition project"]),
        ("DeepChef는 제 사이드 프로젝트입니다", ["DeepChef"]),
        ("이 프로젝트에서 많이 배웠습니다", []),
    ],
)
def test_find_projects(text: str, expected: list[str]) -> None:
    assert find_projects(text) == expected


def test_find_skills_word_edges_and_korean() -> None:
    assert find_skills("MySQL과 쿠버네티스, 파이썬, 딥러닝") == [
        "MySQL",
        "Kubernetes",
        "Python",
        "deep learning",
    ]
    assert find_skills("digital signals, the rest of the team") == []
    assert find_skills("a REST API in FastAPI") == ["REST API", "FastAPI"]


def test_find_results() -> None:
    # The verb stays, as a noun: a bare "처리 시간 3배" would not say which way it went.
    assert find_results("모델 정확도를 92%까지 높였고, 처리 시간을 3배 줄였습니다.") == [
        "모델 정확도 92%까지 향상",
        "처리 시간 3배 단축",
    ]
    assert find_results("2021년에 5명이 모였습니다") == []


# --------------------------------------------------------------------------- questions


def test_korean_questions_mention_the_intro(engine: OfflineEngine, ko: Profile) -> None:
    result = engine.questions(ko)
    assert result.engine == "offline"
    q1, q2, q3 = result.questions
    assert "‘EmoVision’ 프로젝트" in q1 and "40% 개선" in q1
    assert "PyTorch" in q2 and "트레이드오프" in q2
    assert "EST Soft의 AI 개발자" in q3 and "‘실시간 추천 시스템 프로젝트’" in q3 and "STAR" in q3
    assert engine.questions(ko) == result  # deterministic


def test_english_questions_mention_the_intro(engine: OfflineEngine, en: Profile) -> None:
    q1, q2, q3 = engine.questions(en).questions
    assert '"Smart Factory Monitor" project' in q1 and "35%" in q1
    assert "Python" in q2 and "PyTorch" in q2 and "trade-offs" in q2
    assert "ML Engineer role at Acme" in q3 and "(STAR)" in q3
    assert all(not any("가" <= ch <= "힣" for ch in q) for q in (q1, q2, q3))


@pytest.mark.parametrize("language", ["ko", "en"])
def test_questions_fall_back_when_nothing_is_extractable(
    engine: OfflineEngine, language: str
) -> None:
    profile = Profile(self_intro="열심히 하겠습니다!", language=language, years=0)  # type: ignore[arg-type]
    questions = engine.questions(profile).questions
    assert len(questions) == 3 and all(questions)
    job = "AI 개발자" if language == "ko" else "AI developer"  # the default title, translated
    assert job in questions[0] and job in questions[1]
    assert "EST Soft" in questions[2]


async def test_async_interface(engine: OfflineEngine, ko: Profile) -> None:
    assert (await engine.generate_questions(ko)).questions == engine.questions(ko).questions
    evaluation = await engine.evaluate(ko, "질문", "답변입니다", None)
    assert isinstance(evaluation, Evaluation) and evaluation.engine == "offline"
    await engine.aclose()


# --------------------------------------------------------------------------- rating rules

QUESTION = "EmoVision 프로젝트에서 추론 속도를 40% 개선한 방법과 그 이유를 설명해 주세요."

GOOD_KO = (
    "당시 EmoVision 프로젝트에서 제 역할은 실시간 추론 속도를 높이는 목표를 맡는 것이었습니다. "
    "예를 들어 PyTorch 모델을 ONNX로 변환하고 TensorRT를 적용했는데, 그 이유는 커널 융합 덕분에 "
    "지연 시간이 줄기 때문입니다. 그래서 FP16 양자화도 도입했고, 결과적으로 추론 속도를 40% "
    "개선했고 정확도는 92%를 유지했습니다. 이 과정에서 팀원과 벤치마크를 함께 설계하며 많이 "
    "배웠습니다."
)
FILLER_KO = "음 어 그러니까 음 저는 어 그 프로젝트에서 음 모델을 어 만들었습니다 음 어 약간 뭐"


def test_good_answer_rates_well(engine: OfflineEngine, ko: Profile) -> None:
    metrics = {"words_per_minute": 110, "longest_pause_s": 1.2, "filler_count": 0}
    result = engine.evaluation(ko, QUESTION, GOOD_KO, measured(GOOD_KO, metrics))
    assert result.natural_delivery.rating is Rating.VERY_GOOD
    assert result.examples.rating is Rating.VERY_GOOD  # "예를 들어" + numbers
    assert result.technical_explanation.rating is Rating.VERY_GOOD  # 4 terms, 5 connectives
    assert result.clarity.rating is Rating.VERY_GOOD  # all four STAR parts
    assert result.communication.rating is Rating.VERY_GOOD
    assert result.similarity.match_percent is not None and result.similarity.match_percent >= 25
    assert result.overall.rating is Rating.VERY_GOOD
    assert "오프라인" in result.overall.reason


def test_filler_heavy_answer_needs_improvement(engine: OfflineEngine, ko: Profile) -> None:
    result = engine.evaluation(
        ko, QUESTION, FILLER_KO, measured(FILLER_KO, {"words_per_minute": 90})
    )
    assert result.natural_delivery.rating is Rating.NEEDS_IMPROVEMENT
    # counted in the transcript by the speech worker's rule: 그러니까, 약간 and 뭐 run on here
    # without commas, so they are words, not fillers
    assert "군말 8개" in result.natural_delivery.reason
    assert result.overall.rating is Rating.NEEDS_IMPROVEMENT
    # The weakest criteria get the tips, natural delivery first (tie order).
    assert len(result.tips) == 3 and "군말" in result.tips[0]


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        ({"filler_count": 0, "longest_pause_s": 1.0}, Rating.VERY_GOOD),
        ({"filler_count": 1, "longest_pause_s": 1.0}, Rating.FINE),  # 5 per 100 words
        # A pause to think of up to 5 s is normal; over 5 s is noticeable; 10 s is a stall.
        ({"filler_count": 0, "longest_pause_s": 4.0}, Rating.VERY_GOOD),
        ({"filler_count": 0, "longest_pause_s": 5.0}, Rating.VERY_GOOD),
        ({"filler_count": 0, "longest_pause_s": 6.5}, Rating.FINE),
        ({"filler_count": 0, "longest_pause_s": 10.0}, Rating.NEEDS_IMPROVEMENT),
        ({"filler_count": 2}, Rating.NEEDS_IMPROVEMENT),  # 10 per 100 words
        ({}, Rating.VERY_GOOD),  # no fillers in the text, pause unknown
    ],
)
def test_natural_delivery_rule(
    engine: OfflineEngine, ko: Profile, metrics: dict, expected: Rating
) -> None:
    answer = " ".join(["단어"] * 20)
    assert (
        engine.evaluation(ko, QUESTION, answer, measured(answer, metrics)).natural_delivery.rating
        is expected
    )


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("For example, we cut latency from 80 ms to 20 ms with batching.", Rating.VERY_GOOD),
        ("We cut latency from 80 ms to 20 ms with batching.", Rating.FINE),
        ("For instance, we batched requests on the server side.", Rating.FINE),
        ("We made the service faster by changing some things there.", Rating.NEEDS_IMPROVEMENT),
        ("Yes, I did.", None),  # too short to judge: NA
    ],
)
def test_examples_rule(
    engine: OfflineEngine, en: Profile, answer: str, expected: Rating | None
) -> None:
    result = engine.evaluation(en, "How did you make it faster?", answer)
    assert result.examples.rating is expected
    if expected is None:
        assert result.rows("en")[4].rating == "NA"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("I chose PyTorch and ONNX because export was simple, so that we could ship fast.", 2),
        ("I chose PyTorch because it was simple.", 1),
        ("We used PyTorch, Docker and Kubernetes.", 1),
        ("We used PyTorch.", 0),
    ],
)
def test_technical_rule(engine: OfflineEngine, en: Profile, answer: str, expected: int) -> None:
    result = engine.evaluation(en, "Why PyTorch?", answer)
    assert result.technical_explanation.rating.score == expected


def test_clarity_rule(engine: OfflineEngine, en: Profile) -> None:
    star = (
        "At the time our model was slow. My goal was real-time inference. I implemented "
        "TensorRT export. As a result latency improved."
    )
    assert engine.evaluation(en, "Q?", star).clarity.rating is Rating.VERY_GOOD
    two = "My goal was real-time inference, so I implemented TensorRT export."
    assert engine.evaluation(en, "Q?", two).clarity.rating is Rating.FINE
    assert engine.evaluation(en, "Q?", "It was okay.").clarity.rating is Rating.NEEDS_IMPROVEMENT


def test_communication_rule(engine: OfflineEngine, en: Profile) -> None:
    answer = " ".join(["word"] * 100)  # 70–450 words when no time was measured
    assert (
        engine.evaluation(
            en, "Q?", answer, measured(answer, {"words_per_minute": 150})
        ).communication.rating.score
        == 2
    )
    assert (
        engine.evaluation(
            en, "Q?", answer, measured(answer, {"words_per_minute": 250})
        ).communication.rating.score
        == 1
    )
    short = "word " * 10
    fast = measured(short, {"words_per_minute": 250})
    assert engine.evaluation(en, "Q?", short, fast).communication.rating.score == 0


def test_similarity_is_keyword_overlap(engine: OfflineEngine, en: Profile) -> None:
    question = "How did the Smart Factory Monitor detect defects?"
    on_topic = engine.evaluation(
        en, question, "The Smart Factory Monitor used OpenCV and PyTorch to detect defects."
    )
    off_topic = engine.evaluation(en, question, "I enjoy hiking on weekends with friends.")
    assert on_topic.similarity.match_percent > off_topic.similarity.match_percent
    assert off_topic.similarity.match_percent == 0
    assert off_topic.similarity.rating is Rating.NEEDS_IMPROVEMENT
    assert "Smart" in on_topic.similarity.reason  # shown as the candidate said it


def test_empty_answer(engine: OfflineEngine, ko: Profile) -> None:
    result = engine.evaluation(ko, QUESTION, "   ")
    assert result.similarity.rating is None and result.similarity.match_percent is None
    assert result.examples.rating is None
    for name in ("overall", "clarity", "technical_explanation", "communication"):
        assert getattr(result, name).rating is Rating.NEEDS_IMPROVEMENT
    assert len(result.tips) == 3


def test_overall_is_the_lower_median(engine: OfflineEngine, en: Profile) -> None:
    result = engine.evaluation(en, "Why PyTorch?", "I chose PyTorch because it was simple.")
    others = [
        c.rating.score
        for c in (
            result.similarity,
            result.clarity,
            result.technical_explanation,
            result.examples,
            result.communication,
            result.natural_delivery,
        )
        if c.rating is not None
    ]
    assert result.overall.rating.score == sorted(others)[(len(others) - 1) // 2]


def test_tips_and_model_answer(engine: OfflineEngine, ko: Profile, en: Profile) -> None:
    result = engine.evaluation(
        ko, QUESTION, GOOD_KO, measured(GOOD_KO, {"filler_count": 0, "words_per_minute": 110})
    )
    assert len(result.tips) == 3 and len(set(result.tips)) == 3
    assert "EmoVision" in result.model_answer and "PyTorch" in result.model_answer
    assert "40% 개선" in result.model_answer and "오프라인 템플릿" in result.model_answer
    english = engine.evaluation(en, "Why did you choose PyTorch?", "Because it is flexible.")
    assert '"PyTorch"' in english.model_answer and "Smart Factory Monitor" in english.model_answer
    assert "Offline template" in english.model_answer
    assert english.rows("en")[0].criterion == "Overall"
    assert engine.evaluation(en, "Q?", "Because it is flexible.") == engine.evaluation(
        en, "Q?", "Because it is flexible."
    )


def test_questions_without_a_project_use_skills(engine: OfflineEngine) -> None:
    tools = Profile(self_intro="Docker와 Kubernetes로 배포를 자동화했습니다.")
    q1, q2, _ = engine.questions(tools).questions
    assert "‘Docker’와 관련된 경험" in q1  # 도커: a vowel, so 와
    assert "Kubernetes를 선택한 이유" in q2  # the second question takes another skill
    field_only = Profile(self_intro="I love machine learning.", language="en")
    q1, q2, _ = engine.questions(field_only).questions
    assert '"machine learning"' in q1
    assert "In your work on machine learning, pick one key technology" in q2


def test_speech_worker_metrics_are_read(engine: OfflineEngine, ko: Profile) -> None:
    # The keys inference/speech/metrics.py puts in Transcript.metrics.
    worker = {
        "duration_s": 30.0,
        "speech_s": 28.0,
        "word_count": 30,
        "words_per_minute": 64.3,
        "hangul_syllables": 150,
        "syllables_per_second": 9.5,  # far too fast
        "rate_basis": "syllables",
        "filler_words": ["음", "어", "음"],
        "filler_count": 3,
        "filler_rate": 0.1,
        "pause_count": 1,
        "longest_pause_s": 2.0,
        "total_pause_s": 2.0,
        "language": "ko",
    }
    answer = " ".join(["단어"] * 30)
    result = engine.evaluation(ko, QUESTION, answer, measured(answer, worker))
    assert result.natural_delivery.rating is Rating.NEEDS_IMPROVEMENT  # 10 per 100 words
    assert result.communication.rating is Rating.FINE  # length right, pace not
    assert "초당 9.5음절" in result.communication.reason
    # An odd value never reaches an engine: the contract refuses it where it is decoded.
    with pytest.raises(ContractError):
        step_data("answered", {"index": 0, "metrics": {"longest_pause_s": "long"}})
