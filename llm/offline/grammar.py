"""Wording helpers: Korean particles chosen by the word before them (`josa`), English
counts that agree with their number (`count_noun`), lists and durations as read.
"""

from __future__ import annotations

import re

from llm.offline.vocabulary import KO_SKILL_NAMES
from llm.schemas import Language

#: How Korean speakers read the tool names whose last sound the spelling does not tell
#: (acronyms are read by their letters: ONNX → …엑스, SQL → …엘); `josa` reads them.
_KO_READINGS: dict[str, str] = {
    "Python": "파이썬",
    "PyTorch": "파이토치",
    "TensorFlow": "텐서플로",
    "Keras": "케라스",
    "scikit-learn": "사이킷런",
    "pandas": "판다스",
    "NumPy": "넘파이",
    "Hugging Face": "허깅페이스",
    "Transformer": "트랜스포머",
    "LangChain": "랭체인",
    "LoRA": "로라",
    "CUDA": "쿠다",
    "Triton": "트리톤",
    "MLOps": "엠엘옵스",
    "MLflow": "엠엘플로",
    "Kubeflow": "큐브플로",
    "Airflow": "에어플로",
    "Kubernetes": "쿠버네티스",
    "Docker": "도커",
    "Redis": "레디스",
    "Elasticsearch": "엘라스틱서치",
    "Kafka": "카프카",
    "Spark": "스파크",
    "Hadoop": "하둡",
    "Azure": "애저",
    "Git": "깃",
    "Linux": "리눅스",
    "Django": "장고",
    "Flask": "플라스크",
    "Spring": "스프링",
    "JavaScript": "자바스크립트",
    "TypeScript": "타입스크립트",
    "Java": "자바",
    "Node.js": "노드제이에스",
    "React": "리액트",
    "Vue": "뷰",
    "C++": "씨플플",
    "Kotlin": "코틀린",
    "Terraform": "테라폼",
    "Streamlit": "스트림릿",
    "Whisper": "위스퍼",
    "Great Expectations": "그레이트 익스펙테이션스",
    "dbt": "디비티",
    "Apache Beam": "아파치 빔",
    "BigQuery": "빅쿼리",
    "Snowflake": "스노플레이크",
    "Databricks": "데이터브릭스",
    "Prometheus": "프로메테우스",
    "Grafana": "그라파나",
    "Tableau": "태블로",
    "Jupyter": "주피터",
    "Label Studio": "레이블 스튜디오",
    "Weights & Biases": "웨이츠 앤드 바이어시스",
    "Stable Diffusion": "스테이블 디퓨전",
    "Go": "고",
}


# Final consonant (jongseong) index of a Hangul syllable: 0 none, 1 ㄱ, 4 ㄴ, 8 ㄹ,
# 16 ㅁ, 17 ㅂ, 21 ㅇ, …
_NO_FINAL, _RIEUL = 0, 8
#: Digits as read in Sino-Korean (일, 이, 삼, …): the final consonant of each.
_DIGIT_FINAL = {"0": 21, "1": 8, "2": 0, "3": 16, "4": 0, "5": 0, "6": 1, "7": 8, "8": 8, "9": 0}
#: 십, 백, 천 (for 10, 100, 1000) and 만, 억, 조 (each four zeros more).
_TENS_FINAL = {1: 17, 2: 1, 3: 4}
_MYRIAD_FINAL = {1: 4, 2: 1, 3: 0}
#: Latin letters read with a final consonant (엘, 엠, 엔, 알); the others end in a vowel.
_LETTER_FINAL = {"L": 8, "M": 16, "N": 4, "R": 8}
#: Units after a number, as read: 퍼센트, 밀리초, 배, 초, …
_UNIT_FINAL = {"%": 0, "ms": 0, "x": 0, "s": 0, "fps": 0, "kb": 0, "mb": 0, "gb": 0, "tb": 0}
_CLOSERS = " \t’”'\")]}」』》>.,!?…~"
_JOSA_PAIRS = (("을", "를"), ("이", "가"), ("은", "는"), ("과", "와"), ("으로", "로"))


def _integer_final(digits: str) -> int | None:
    digits = digits.lstrip("0")
    if not digits:
        return 21  # 영
    zeros = len(digits) - len(digits.rstrip("0"))
    if zeros == 0:
        return _DIGIT_FINAL[digits[-1]]
    if zeros < 4:
        return _TENS_FINAL[zeros]
    return _MYRIAD_FINAL.get(zeros // 4)


def final_consonant(word: str) -> int | None:
    """The final consonant of `word` as a Korean speaker reads it (0 = ends in a vowel,
    8 = ㄹ, other jongseong indexes), or None when the spelling does not tell (an
    unknown Latin word). Closing quotes and brackets are looked through."""
    text = word.rstrip(_CLOSERS)
    if not text:
        return None
    last = text[-1]
    if "가" <= last <= "힣":
        return (ord(last) - 0xAC00) % 28
    reading = _KO_READINGS.get(text) or KO_SKILL_NAMES.get(text)
    if reading is not None and reading != text:
        return final_consonant(reading)
    number = re.search(r"(\d[\d,]*)(?:\.(\d+))?\s*([A-Za-z%]*)$", text)
    if number is not None:
        unit = number.group(3).lower()
        if unit:
            return _UNIT_FINAL.get(unit)
        if number.group(2):
            return _DIGIT_FINAL[number.group(2)[-1]]
        return _integer_final(number.group(1).replace(",", ""))
    if re.search(r"(?:^|[^A-Za-z])[A-Z]$|[A-Z]{2,}$", text):
        return _LETTER_FINAL.get(last, _NO_FINAL)  # an acronym, read letter by letter
    return None


def josa(word: str, particle: str) -> str:
    """The form of a Korean particle that follows `word`: 을/를, 이/가, 은/는, 과/와,
    으로/로 (either form may be passed). After a final consonant the first form, after a
    vowel the second (으로/로: 로 after ㄹ too). Hangul is read from the last syllable,
    numbers as Sino-Korean numerals (3 → 삼, 10 → 십, 40% → 퍼센트), acronyms letter by
    letter, known tool names by their Korean reading; any other Latin word gets the safe
    written form that covers both (을(를), (으)로)."""
    pair = next((pair for pair in _JOSA_PAIRS if particle in pair), None)
    if pair is None:
        raise ValueError(f"no consonant/vowel forms for the particle {particle!r}")
    after_consonant, after_vowel = pair
    final = final_consonant(word)
    if final is None:
        return "(으)로" if after_vowel == "로" else f"{after_consonant}({after_vowel})"
    if after_vowel == "로":
        return after_vowel if final in (_NO_FINAL, _RIEUL) else after_consonant
    return after_vowel if final == _NO_FINAL else after_consonant


def count_noun(count: int, singular: str, plural: str | None = None) -> str:
    """An English count that agrees with its number: "0 terms", "1 term", "2 terms"."""
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def join_en(items: list[str]) -> str:
    """ "A", "A and B", "A, B and C"."""
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def duration_en(seconds: float) -> str:
    """ "42 seconds", "1 minute", "2 minutes 5 seconds"."""
    total = round(seconds)
    minutes, rest = divmod(total, 60)
    if not minutes:
        return count_noun(rest, "second")
    text = count_noun(minutes, "minute")
    return f"{text} {count_noun(rest, 'second')}" if rest else text


def duration_ko(seconds: float) -> str:
    """ "42초", "1분", "2분 5초"."""
    minutes, rest = divmod(round(seconds), 60)
    if not minutes:
        return f"{rest}초"
    return f"{minutes}분 {rest}초" if rest else f"{minutes}분"


def window_text(window: tuple[float, float], sep: str) -> str:
    return f"{window[0]:g}{sep}{window[1]:g}"


#: The identifiers a model sees in its prompt and schema, in the words a candidate reads:
#: (Korean, English). A small model sometimes writes "compared with the model_answer";
#: the page must not show a field name (`in_plain_words`). Only these are replaced: a
#: snake_case word of the candidate's own (a service they built) is theirs to keep.
FIELD_WORDS: dict[str, tuple[str, str]] = {
    "model_answer": ("모범 답안", "model answer"),
    "match_percent": ("일치율", "match percentage"),
    "technical_explanation": ("기술 설명", "technical explanation"),
    "natural_delivery": ("자연스러운 답변", "natural delivery"),
    "self_introduction": ("자기소개서", "self-introduction"),
    "self_intro": ("자기소개서", "self-introduction"),
    "job_title": ("지원 직무", "job title"),
    "answer_transcript": ("답변", "answer"),
    "candidate_profile": ("지원자 정보", "profile"),
    "speaking_metrics": ("말하기 지표", "speaking metrics"),
    "words_per_minute": ("분당 단어 수", "words per minute"),
    "filler_count": ("군말 횟수", "filler words"),
    "longest_pause_s": ("가장 긴 멈춤", "longest pause"),
}

#: One of `FIELD_WORDS`, in backticks or not, not inside a longer identifier, and the
#: Korean particle written straight after it (re-chosen for the words: "모범 답안과", not
#: "모범 답안와"). No \b: in "model_answer를" the Hangul is a word character too.
_FIELD_NAME = re.compile(
    r"`?(?<![A-Za-z0-9_])("
    + "|".join(sorted(FIELD_WORDS, key=len, reverse=True))
    + r")(?![A-Za-z0-9_])`?(으로|로|을|를|이|가|은|는|과|와)?"
)


def in_plain_words(text: str, language: Language) -> str:
    """`text` with each field name of `FIELD_WORDS` written as the words a candidate
    reads in `language`."""

    def words(match: re.Match[str]) -> str:
        ko, en = FIELD_WORDS[match.group(1)]
        particle = match.group(2) or ""
        if language != "ko":
            return en + particle
        return ko + (josa(ko, particle) if particle else "")

    return _FIELD_NAME.sub(words, text)
