"""What the offline engine writes for a person: real sentences, in the page's language.

The engine runs for real on realistic spoken answers (whole answer turns, English and
Korean) and every person-facing string — questions, rows (label, rating, reason), tips and
the model answer — is checked: no identifiers, English counts that agree with their
number, Korean particles that fit the word before them, quoted results that keep their
verb, and the length / pace / pause windows for spoken answers.
"""

from __future__ import annotations

import re

import pytest

from llm.offline import (
    GOOD_DURATION_S,
    PACE_SPS_KO,
    PACE_WPM_EN,
    TECH_TERMS,
    OfflineEngine,
    count_noun,
    duration_en,
    duration_ko,
    final_consonant,
    find_projects,
    find_results,
    josa,
    read_intro,
    skill_label,
)
from llm.schemas import Evaluation, Profile, Rating
from tests._messages import measured

# --------------------------------------------------------------------------- material

EN_INTRO = (
    "Hello, I'm Sam Park, a machine learning engineer. At my last job I reduced its memory use "
    "by 40% and cut latency from 200 ms to 80 ms. I led the Smart Factory Monitor project and "
    "the Data Lake Migration project with PyTorch, Docker and Airflow, and used Great "
    "Expectations to validate the data."
)
KO_INTRO = (
    "안녕하세요. 저는 2년차 AI 개발자 김민수입니다. 대학원에서 'EmoVision'이라는 감정 인식 "
    "프로젝트를 진행하며 PyTorch와 YOLOv8으로 얼굴 검출 모델을 학습했고, ONNX와 TensorRT로 "
    "변환해 추론 속도를 40% 개선했습니다. 이후 스타트업에서 실시간 추천 시스템 프로젝트를 맡아 "
    "Kubernetes와 도커 기반 배포 파이프라인을 구축했고, 4명의 팀원과 협업하며 응답 시간을 "
    "120ms에서 60ms로 단축했습니다."
)

#: A whole spoken answer turn in English (about 160 words, two fillers, thinking pauses).
EN_LONG = (
    "At the time, our defect detector on the Smart Factory Monitor project was too slow for "
    "the line, um, it ran at about 200 ms per frame. My goal was to get it under 100 ms "
    "without losing accuracy. I profiled the pipeline and found that pre-processing in Python "
    "and the PyTorch model itself were the two bottlenecks. So I exported the model to ONNX and "
    "built a TensorRT engine, because TensorRT fuses layers and runs in FP16, which means far "
    "less memory traffic. For example, the backbone alone went from 120 ms to 35 ms. I also "
    "moved resizing onto the GPU with the CUDA build of OpenCV so that frames never left the "
    "device. Uh, the tricky part was keeping accuracy, so I compared both models on 5,000 "
    "labelled images before switching. As a result, latency dropped to 80 ms per frame and "
    "false alarms stayed at the same level, and I learned to measure before optimising "
    "anything."
)
#: The same in Korean.
KO_LONG = (
    "당시 EmoVision 프로젝트에서 얼굴 감정 인식 모델의 추론 속도가 너무 느려서 실시간 서비스가 "
    "어려운 상황이었습니다. 제 역할은 정확도를 유지하면서 지연 시간을 절반 이하로 줄이는 "
    "것이었습니다. 음, 먼저 병목을 분석해 보니 전처리와 모델 연산이 대부분의 시간을 차지하고 "
    "있었습니다. 그래서 PyTorch 모델을 ONNX로 변환하고 TensorRT 엔진을 만들었는데, 왜냐하면 "
    "TensorRT는 레이어를 합치고 FP16으로 연산해 메모리 이동이 줄어들기 때문입니다. 예를 들어 "
    "백본 하나만 해도 120ms에서 35ms로 줄었습니다. 또 전처리를 GPU로 옮겨서 프레임이 장치 밖으로 "
    "나가지 않도록 했습니다. 어, 가장 어려웠던 부분은 정확도를 지키는 것이었기 때문에 5천 장의 "
    "검증 이미지로 두 모델을 비교한 뒤에 교체했습니다. 그 결과 추론 속도를 40% 개선했고, 이 "
    "경험으로 최적화 전에 먼저 측정하는 습관을 배웠습니다."
)
EN_SHORT = "Yes, I used PyTorch there."
KO_SHORT = "네, 거기서 PyTorch를 썼습니다."


@pytest.fixture(scope="module")
def engine() -> OfflineEngine:
    return OfflineEngine()


@pytest.fixture(scope="module")
def en() -> Profile:
    return Profile(
        self_intro=EN_INTRO, language="en", job_title="ML Engineer", company="Acme", years=1
    )


@pytest.fixture(scope="module")
def ko() -> Profile:
    return Profile(self_intro=KO_INTRO)


def _turn_metrics(words: int, seconds: float, **more: object) -> dict[str, object]:
    """Metrics of a whole answer turn, as the speech worker's keys name them."""
    return {"duration_s": seconds, "word_count": words, **more}


def person_facing(evaluation: Evaluation, language: str) -> list[str]:
    """Every string of an evaluation that a person reads on the page."""
    texts = [text for row in evaluation.rows(language) for text in row]  # type: ignore[arg-type]
    texts += list(evaluation.headers(language))  # type: ignore[arg-type]
    texts += [*evaluation.tips, evaluation.model_answer, evaluation.as_markdown(language)]  # type: ignore[arg-type]
    return texts


def _evaluations(engine: OfflineEngine, profile: Profile) -> list[Evaluation]:
    """The engine on a spread of answers: long, short, empty, filler-heavy, odd metrics."""
    ko = profile.language == "ko"
    long, short = (KO_LONG, KO_SHORT) if ko else (EN_LONG, EN_SHORT)
    question = engine.questions(profile).questions[0]
    words = len(long.split())
    filler = ("음 어 그러니까 음 저는 어 그 프로젝트에서 음 모델을 어 만들었습니다" if ko else
              "um uh so um I uh built you know the um model basically uh yes")  # fmt: skip
    return [
        engine.evaluation(
            profile, question, long, measured(long, _turn_metrics(words, 75.0, longest_pause_s=3.4))
        ),
        engine.evaluation(profile, question, long, None),
        engine.evaluation(
            profile, question, long, measured(long, {"words_per_minute": 300, "filler_count": 1})
        ),
        engine.evaluation(
            profile, question, short, measured(short, {"duration_s": 4.0, "longest_pause_s": 12.0})
        ),
        engine.evaluation(profile, question, filler, measured(filler, {"longest_pause_s": 7.0})),
        engine.evaluation(profile, question, "   ", None),
        engine.evaluation(profile, "Why PyTorch?" if not ko else "PyTorch를 고른 이유는?", long),
    ]


# --------------------------------------------------------------------------- no identifiers

_IDENTIFIER = re.compile(r"\b[A-Za-z]+_[A-Za-z0-9_]+\b")
_ENUM_NAMES = ("NEEDS_IMPROVEMENT", "VERY_GOOD", "Rating.", "None", "null")


@pytest.mark.parametrize("language", ["en", "ko"])
def test_no_identifier_reaches_a_person(engine: OfflineEngine, language: str, en, ko) -> None:
    profile = en if language == "en" else ko
    texts = list(engine.questions(profile).questions)
    for evaluation in _evaluations(engine, profile):
        texts += person_facing(evaluation, language)
    for text in texts:
        assert not _IDENTIFIER.search(text), text
        assert not any(name in text for name in _ENUM_NAMES), text


def test_rating_labels_are_words() -> None:
    assert [r.label("en") for r in Rating] == ["Needs improvement", "Fine", "Very good"]
    assert [r.label("ko") for r in Rating] == ["개선 필요함", "무난함", "매우 좋음"]
    # A model replying with the English words (or the old identifiers) still parses.
    assert Rating("Needs improvement") is Rating.NEEDS_IMPROVEMENT
    assert Rating("very_good") is Rating.VERY_GOOD


def test_rows_read_as_words_in_both_languages(engine: OfflineEngine, en, ko) -> None:
    answer_en = engine.evaluation(
        en, "Why PyTorch?", EN_LONG, measured(EN_LONG, _turn_metrics(160, 70.0))
    )
    for row in answer_en.rows("en"):
        rating = re.sub(r" \(\d+%\)$", "", row.rating)
        assert rating in {"Needs improvement", "Fine", "Very good", "NA"}, row
    answer_ko = engine.evaluation(
        ko, "PyTorch를 고른 이유는?", KO_LONG, measured(KO_LONG, _turn_metrics(90, 75.0))
    )
    labels = [row.criterion for row in answer_ko.rows("ko")]
    assert labels[1] == "참고 답안과의 유사도"  # not "reference와의 유사도"
    for row in answer_ko.rows("ko"):
        assert re.search(r"[가-힣]", row.criterion), row  # a Korean label on a Korean page
        rating = re.sub(r" \(\d+%\)$", "", row.rating)
        assert rating in {"개선 필요함", "무난함", "매우 좋음", "NA"}, row
    assert answer_en.rows("en")[1].criterion == "Similarity to reference"


def test_fields_are_named_in_korean_on_a_korean_page(engine: OfflineEngine, ko) -> None:
    texts = list(engine.questions(ko).questions)
    evaluation = engine.evaluation(
        ko, texts[0], KO_LONG, measured(KO_LONG, _turn_metrics(90, 75.0))
    )
    texts += person_facing(evaluation, "ko")
    for english in ("emotion recognition", "recommender system", "deep learning"):
        assert not any(english in text for text in texts), english
    assert "감정 인식" in evaluation.technical_explanation.reason
    assert skill_label("emotion recognition", "ko") == "감정 인식"
    assert skill_label("emotion recognition", "en") == "emotion recognition"


# --------------------------------------------------------------------------- English counts

_COUNTED = (
    "technical term",
    "connective",
    "filler word",
    "example phrase",
    "number",
    "project",
    "key word",
    "word",
    "second",
    "minute",
    "year",
    "character",
)


def test_count_noun_and_durations() -> None:
    assert [count_noun(n, "term") for n in (0, 1, 2)] == ["0 terms", "1 term", "2 terms"]
    assert duration_en(1) == "1 second" and duration_en(42) == "42 seconds"
    assert duration_en(60) == "1 minute" and duration_en(61) == "1 minute 1 second"
    assert duration_en(125) == "2 minutes 5 seconds"
    assert duration_ko(42) == "42초" and duration_ko(60) == "1분" and duration_ko(125) == "2분 5초"


@pytest.mark.parametrize(
    ("answer", "count"),
    [
        ("We made the service better by changing some things over there.", 0),
        (
            "For example, I chose PyTorch because it was simple, um, and it saved 3 days on "
            "the Smart Factory Monitor.",
            1,
        ),
        (
            "For example, and for instance, I chose PyTorch and Docker because it was simple, "
            "so that, um, uh, we saved 3 days and 4 hours on the Smart Factory Monitor and the "
            "Data Lake Migration.",
            2,
        ),
    ],
)
def test_english_counts_agree_with_their_number(
    engine: OfflineEngine, en: Profile, answer: str, count: int
) -> None:
    result = engine.evaluation(
        en, "Why PyTorch?", answer, measured(answer, {"longest_pause_s": 1.0})
    )
    technical = result.technical_explanation.reason
    examples = result.examples.reason
    delivery = result.natural_delivery.reason
    expected = {
        technical: [
            count_noun(count, "technical term"),
            count_noun(count, "connective") + " giving a reason",
        ],
        examples: [
            count_noun(count, "example phrase"),
            count_noun(count, "number"),
            count_noun(count, "project") + " from your self-introduction",
        ],
        delivery: [count_noun(count, "filler word"), "longest pause was 1 second "],
    }
    for text, parts in expected.items():
        for part in parts:
            assert part in text, (part, text)
    if count == 1:
        assert "1 technical term (PyTorch)" in technical and "1 filler word (" in delivery


@pytest.mark.parametrize("language", ["en"])
def test_no_singular_count_with_a_plural_noun_anywhere(
    engine: OfflineEngine, en: Profile, language: str
) -> None:
    texts = list(engine.questions(en).questions)
    for evaluation in _evaluations(engine, en):
        texts += person_facing(evaluation, language)
    texts += [" ".join(map(str, en.rows("en")))]
    for text in texts:
        for noun in _COUNTED:
            assert not re.search(rf"(?<![\d.,]){1} {noun}s\b", text), (noun, text)


def test_years_of_experience_and_profile_rows_agree(engine: OfflineEngine) -> None:
    one = Profile(self_intro="I like building things.", language="en", years=1)
    two = one.model_copy(update={"years": 2})
    assert "your 1 year of experience" in engine.questions(one).questions[2]
    assert "your 2 years of experience" in engine.questions(two).questions[2]
    assert one.rows("en")[1].value == "1 year" and two.rows("en")[1].value == "2 years"
    assert Profile(self_intro="x", language="en").rows("en")[4].value == "1 character"


# --------------------------------------------------------------------------- Korean particles


@pytest.mark.parametrize(
    ("word", "particle", "expected"),
    [
        # Hangul: the last syllable's final consonant.
        ("프로젝트", "을", "를"),
        ("모델", "를", "을"),
        ("감정 인식", "와", "과"),
        ("추천 시스템", "가", "이"),
        ("데이터베이스", "은", "는"),
        ("서울", "으로", "로"),  # ㄹ takes 로
        ("인식", "로", "으로"),
        ("‘감정 인식’", "와", "과"),  # looked through the closing quote
        # Tools by their Korean reading, acronyms by their letters.
        ("Docker", "과", "와"),  # 도커
        ("Python", "를", "을"),  # 파이썬
        ("Kubernetes", "을", "를"),  # 쿠버네티스
        ("Git", "가", "이"),  # 깃
        ("ONNX", "이", "가"),  # …엑스
        ("SQL", "를", "을"),  # …엘
        ("SQL", "으로", "로"),
        ("vLLM", "는", "은"),  # …엠
        ("TensorRT", "을", "를"),  # …티
        # Numbers as Sino-Korean numerals, with their unit.
        ("3", "를", "을"),  # 삼
        ("2", "이", "가"),  # 이
        ("10", "는", "은"),  # 십
        ("1", "으로", "로"),  # 일
        ("6", "로", "으로"),  # 육
        ("1000", "와", "과"),  # 천
        ("40%", "을", "를"),  # 퍼센트
        ("2.5", "이", "가"),  # 오
        # An unknown Latin word: the written form that covers both.
        ("Foobar", "을", "을(를)"),
        ("Foobar", "로", "(으)로"),
        ("Foobar", "와", "과(와)"),
    ],
)
def test_josa(word: str, particle: str, expected: str) -> None:
    assert josa(word, particle) == expected


def test_every_known_skill_has_a_known_last_sound() -> None:
    # So a particle after a skill is always the right one, never the covering form.
    for name, _ in TECH_TERMS:
        assert final_consonant(skill_label(name, "ko")) is not None, name


def _wrong_particles(text: str) -> list[str]:
    """을/를 and 으로/로 after a Hangul syllable that does not take them (looking through
    quotes and a bracketed aside, which the particle skips: "성과(…)를" → 성과를)."""
    plain = re.sub(r"\([^()]*\)", "", text).replace("’", "").replace("‘", "")
    wrong = []
    for match in re.finditer(r"([가-힣])(을|를|으로|로)(?=[\s.,?!]|$)", plain):
        syllable, particle = match.groups()
        final = (ord(syllable) - 0xAC00) % 28
        good = {
            "을": final != 0,
            "를": final == 0,
            "으로": final not in (0, 8),
            "로": final in (0, 8) or syllable in "새바따도",  # 새로, 바로, 따로: adverbs
        }[particle]
        if not good:
            wrong.append(plain[max(0, match.start() - 8) : match.end()])
    return wrong


def test_korean_sentences_take_the_right_particles(engine: OfflineEngine, ko: Profile) -> None:
    texts = list(engine.questions(ko).questions)
    for evaluation in _evaluations(engine, ko):
        texts += person_facing(evaluation, "ko")
    for text in texts:
        assert _wrong_particles(text) == [], text
        assert "을(를)" not in text and "(으)로" not in text  # every word here is known


@pytest.mark.parametrize(
    ("intro", "q1_part", "q2_part"),
    [
        ("Docker와 Kubernetes로 배포를 자동화했습니다.", "‘Docker’와 관련된", "Kubernetes를 선택"),
        ("Python과 FastAPI로 서버를 만들었습니다.", "‘Python’과 관련된", "FastAPI를 선택"),
        ("Kafka와 SQL로 파이프라인을 만들었습니다.", "‘Kafka’와 관련된", "SQL을 선택"),
        ("감정 인식 연구를 했습니다.", "‘감정 인식’과 관련된", "감정 인식 분야에서"),
        ("추천 시스템을 연구했습니다.", "‘추천 시스템’과 관련된", "추천 시스템 분야에서"),
    ],
)
def test_korean_questions_pick_particles_by_the_word(
    engine: OfflineEngine, intro: str, q1_part: str, q2_part: str
) -> None:
    q1, q2, _ = engine.questions(Profile(self_intro=intro)).questions
    assert q1_part in q1 and q2_part in q2, (q1, q2)


# --------------------------------------------------------------------------- quoted results


def test_results_are_whole_phrases() -> None:
    intro = "At my last job I reduced its memory use by 40% and cut latency from 200 ms to 80 ms."
    assert find_results(intro) == [
        "reduced its memory use by 40%",
        "cut latency from 200 ms to 80 ms",  # one from-to phrase, not "and cut … 200 ms"
    ]
    assert find_results("We made inference 40% faster.") == ["40% faster"]
    assert find_results("Accuracy went from 85% to 92%.") == ["from 85% to 92%"]
    assert find_results("GPU 메모리를 30% 줄였고, 사용자 수를 2배 늘렸습니다.") == [
        "GPU 메모리 30% 감소",
        "사용자 수 2배 증가",
    ]


def test_the_question_keeps_the_results_verb(engine: OfflineEngine, en: Profile) -> None:
    q1 = engine.questions(en).questions[0]
    assert "You also write that you reduced its memory use by 40%: how did you" in q1
    assert "(its memory use by 40%)" not in q1
    model = engine.evaluation(en, q1, EN_LONG).model_answer
    assert "As a result I reduced its memory use by 40%, which I verified" in model


def test_a_bare_figure_is_named_as_one(engine: OfflineEngine) -> None:
    profile = Profile(self_intro="We made inference 40% faster with ONNX.", language="en")
    q1 = engine.questions(profile).questions[0]
    assert "the result you mention (40% faster)" in q1
    model = engine.evaluation(profile, q1, EN_LONG).model_answer
    assert "the figure in my self-introduction (40% faster)" in model


def test_second_person_and_korean_result(engine: OfflineEngine, ko: Profile) -> None:
    profile = Profile(self_intro="I cut our cloud bill by 30% at Acme.", language="en")
    assert "you cut your cloud bill by 30%" in engine.questions(profile).questions[0]
    q1 = engine.questions(ko).questions[0]
    assert "성과(추론 속도 40% 개선)는" in q1


def test_a_tool_is_not_a_project(engine: OfflineEngine, en: Profile) -> None:
    facts = read_intro(en)
    assert facts.projects == ["Smart Factory Monitor", "Data Lake Migration"]
    assert "Great Expectations" in facts.skills
    assert find_projects("I used Apache Airflow and PyTorch Lightning at work.") == []
    assert not any(
        "Great Expectations" in q and "project" in q for q in engine.questions(en).questions
    )


def test_english_questions_with_no_material_read_well(engine: OfflineEngine) -> None:
    profile = Profile(self_intro="열심히 하겠습니다!", language="en", years=0)
    q1, q2, q3 = engine.questions(profile).questions
    assert "the AI developer role" in q1 and "the AI developer role" in q2
    assert " a AI " not in q1 + q2 + q3  # no article to get wrong
    assert "your studies or personal projects" in q3


# --------------------------------------------------------------------------- spoken windows


def _words(n: int) -> str:
    return " ".join(["word"] * n)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(20.0, "short"), (30.0, "ok"), (90.0, "ok"), (180.0, "ok"), (200.0, "long")],
)
def test_english_length_by_answer_time(
    engine: OfflineEngine, en: Profile, seconds: float, expected: str
) -> None:
    words = round(seconds * 140 / 60)  # a comfortable pace, so only the length varies
    result = engine.evaluation(
        en, "Q?", _words(words), measured(_words(words), {"duration_s": seconds})
    )
    assert result.communication.rating is (Rating.VERY_GOOD if expected == "ok" else Rating.FINE)
    reason = result.communication.reason
    assert reason.startswith(f"Your answer ran {duration_en(seconds)} ({words} words) at ")
    window = "30 seconds to 3 minutes"
    phrase = {"ok": "a good length", "short": "too short", "long": "too long"}[expected]
    assert phrase in reason and window in reason


@pytest.mark.parametrize(("words", "expected"), [(69, 1), (70, 2), (450, 2), (451, 1)])
def test_english_length_in_words_when_not_timed(
    engine: OfflineEngine, en: Profile, words: int, expected: int
) -> None:
    result = engine.evaluation(
        en, "Q?", _words(words), measured(_words(words), {"words_per_minute": 140})
    )
    assert result.communication.rating.score == expected
    assert "70–450 words" in result.communication.reason


@pytest.mark.parametrize(
    ("wpm", "verdict"),
    [
        (85, "too slow"),
        (90, "a comfortable pace"),
        (180, "a comfortable pace"),
        (185, "too fast"),
    ],
)
def test_english_pace_window(engine: OfflineEngine, en: Profile, wpm: int, verdict: str) -> None:
    result = engine.evaluation(
        en, "Q?", _words(150), measured(_words(150), {"words_per_minute": wpm})
    )
    assert verdict in result.communication.reason
    assert "90–180 words per minute" in result.communication.reason
    assert result.communication.rating.score == (2 if verdict.startswith("a ") else 1)


def test_the_example_sentence(engine: OfflineEngine, en: Profile) -> None:
    result = engine.evaluation(en, "Q?", _words(96), measured(_words(96), {"duration_s": 42.0}))
    assert result.communication.reason == (
        "Your answer ran 42 seconds (96 words) at 137 words per minute: a good length "
        "(30 seconds to 3 minutes) and a comfortable pace (90–180 words per minute)."
    )


@pytest.mark.parametrize(
    ("sps", "expected"),
    [
        (2.4, "말이 느립니다"),
        (2.5, "듣기 편한 속도"),
        (6.0, "듣기 편한 속도"),
        (6.1, "말이 빠릅니다"),
    ],
)
def test_korean_pace_in_syllables(
    engine: OfflineEngine, ko: Profile, sps: float, expected: str
) -> None:
    result = engine.evaluation(
        ko, "질문", KO_LONG, measured(KO_LONG, {"duration_s": 75.0, "syllables_per_second": sps})
    )
    reason = result.communication.reason
    assert f"초당 {sps:.1f}음절" in reason and expected in reason
    assert "답변 시간 1분 15초(" in reason and "길이가 알맞습니다(30초~3분)" in reason


def test_korean_pace_is_measured_from_the_transcript(engine: OfflineEngine, ko: Profile) -> None:
    # A whole turn's merged metrics carry the time but no syllable rate.
    result = engine.evaluation(ko, "질문", KO_LONG, measured(KO_LONG, {"duration_s": 80.0}))
    rate = float(re.search(r"초당 (\d+\.\d)음절", result.communication.reason).group(1))
    assert PACE_SPS_KO[0] <= rate <= PACE_SPS_KO[1]
    assert result.communication.rating is Rating.VERY_GOOD


@pytest.mark.parametrize(("count", "score"), [(39, 1), (40, 2)])
def test_korean_length_in_syllables_when_not_timed(
    engine: OfflineEngine, ko: Profile, count: int, score: int
) -> None:
    answer = " ".join(["모델을"] * count)  # 3 syllables each: 117 and 120
    result = engine.evaluation(ko, "질문", answer, measured(answer, {"words_per_minute": 80}))
    assert result.communication.rating.score == score
    assert f"약 {3 * count}음절" in result.communication.reason
    assert "120~900음절" in result.communication.reason
    if score == 1:
        assert "답변이 짧습니다. 말로 30초~3분(약 120~900음절) 분량이 알맞습니다." in (
            result.communication.reason
        )


@pytest.mark.parametrize(("wpm", "score"), [(45, 1), (50, 2), (120, 2), (125, 1)])
def test_korean_words_per_minute_fallback(
    engine: OfflineEngine, ko: Profile, wpm: int, score: int
) -> None:
    result = engine.evaluation(ko, "질문", KO_LONG, measured(KO_LONG, {"words_per_minute": wpm}))
    assert result.communication.rating.score == score
    assert "분당 50~120단어" in result.communication.reason


@pytest.mark.parametrize(
    ("pause", "rating", "note"),
    [
        (1.5, Rating.VERY_GOOD, "thinking pauses of up to 5 seconds are normal"),
        (3.0, Rating.VERY_GOOD, "thinking pauses of up to 5 seconds are normal"),
        (5.0, Rating.VERY_GOOD, "thinking pauses of up to 5 seconds are normal"),
        (7.2, Rating.FINE, "a pause over 5 seconds is noticeable"),
        (12.0, Rating.NEEDS_IMPROVEMENT, "a pause of 10 seconds or more sounds like a stall"),
    ],
)
def test_thinking_pauses_are_not_disfluencies(
    engine: OfflineEngine, en: Profile, pause: float, rating: Rating, note: str
) -> None:
    metrics = _turn_metrics(160, 70.0, longest_pause_s=pause, filler_count=0, pause_count=9)
    result = engine.evaluation(en, "Q?", EN_LONG, measured(EN_LONG, metrics))
    assert result.natural_delivery.rating is rating
    assert note in result.natural_delivery.reason
    if rating is not Rating.VERY_GOOD:  # marked down for the pause alone: a tip about pauses
        assert any("A few seconds of silence to think is fine" in tip for tip in result.tips)


def test_korean_pause_reason(engine: OfflineEngine, ko: Profile) -> None:
    result = engine.evaluation(
        ko, "질문", KO_LONG, measured(KO_LONG, {"longest_pause_s": 3.0, "filler_count": 0})
    )
    assert result.natural_delivery.rating is Rating.VERY_GOOD
    assert "가장 긴 멈춤 3초(생각하며 5초 이내로 멈추는 것은 자연스럽습니다)" in (
        result.natural_delivery.reason
    )


# --------------------------------------------------------------------------- whole answers


def test_a_long_english_answer_turn(engine: OfflineEngine, en: Profile) -> None:
    question = engine.questions(en).questions[0]
    words = len(EN_LONG.split())
    metrics = _turn_metrics(words, 70.0, longest_pause_s=3.4)  # fillers counted in the text
    result = engine.evaluation(en, question, EN_LONG, measured(EN_LONG, metrics))
    assert result.natural_delivery.rating is Rating.VERY_GOOD  # 2 fillers in ~160 words
    assert result.communication.rating is Rating.VERY_GOOD
    assert result.clarity.rating is Rating.VERY_GOOD
    assert result.technical_explanation.rating is Rating.VERY_GOOD
    assert result.examples.rating is Rating.VERY_GOOD
    assert "2 filler words" in result.natural_delivery.reason
    assert "Your answer ran 1 minute 10 seconds" in result.communication.reason
    wpm = round(words * 60 / 70)
    assert PACE_WPM_EN[0] <= wpm <= PACE_WPM_EN[1]
    assert "1 project from your self-introduction" in result.examples.reason
    assert GOOD_DURATION_S == (30.0, 180.0)


def test_a_long_korean_answer_turn(engine: OfflineEngine, ko: Profile) -> None:
    question = engine.questions(ko).questions[0]
    metrics = _turn_metrics(len(KO_LONG.split()), 75.0, longest_pause_s=2.8)
    result = engine.evaluation(ko, question, KO_LONG, measured(KO_LONG, metrics))
    assert result.natural_delivery.rating is Rating.VERY_GOOD
    assert result.communication.rating is Rating.VERY_GOOD
    assert result.clarity.rating is Rating.VERY_GOOD
    assert result.technical_explanation.rating is Rating.VERY_GOOD
    assert result.examples.rating is Rating.VERY_GOOD
    assert "군말 2개" in result.natural_delivery.reason
    assert result.clarity.reason == "STAR 4요소가 모두 드러납니다(상황, 과제, 행동, 결과)."
    assert "(결과) 그 결과 자기소개서에 적은 성과(추론 속도 40% 개선)를 냈고" in result.model_answer


def test_the_model_answer_topic_is_never_our_own_wording(engine: OfflineEngine) -> None:
    profile = Profile(self_intro="Numbers: 1.5x and 100 users, improved.", language="en")
    for question in engine.questions(profile).questions:
        model = engine.evaluation(profile, question, "so").model_answer
        assert not any(f'around "{word}"' in model for word in ("mentions", "pick", "key"))
