"""The offline engine: questions and evaluations by stated rules, with no language model.

It runs when no LLM endpoint is configured, and stands in for one that fails
(`llm.engine.FallbackEngine`). It is honest about what it is: every result carries
``engine="offline"``, the overall reason says the evaluation is rule-based, and the
model answer is a labelled template. It is deterministic: the same input gives the
same output. Everything it writes for a person is a sentence in the interview's
language: no identifier, English plurals that agree with their number ("1 term",
"2 terms"), Korean particles chosen by the word before them (`josa`).

Reading the self-introduction
-----------------------------
- **Skills**: a fixed vocabulary (`TECH_TERMS`: Python, PyTorch, TensorFlow, YOLO,
  Kubernetes, Docker, SQL, React, AWS, Great Expectations, … and Korean terms such as
  딥러닝, 자연어 처리, 객체 탐지, 모델 경량화, 도커 → Docker), in order of first
  mention. Fields (`CONCEPTS`: deep learning, 감정 인식, …) are shown in Korean on a
  Korean page (`skill_label`).
- **Projects**: quoted names ("…", '…', “…”, 「…」, 『…』), CamelCase names
  (EmoVision) that are not skills, up to three noun words before 프로젝트 ("감정 인식
  프로젝트") or before "project" ("the emotion recognition project"), and runs of two to
  four Capitalised Words (Smart Factory Monitor) that hold no known skill (so "Great
  Expectations" or "Apache Airflow" are tools, not projects) — minus the company and
  the job title.
- **Results**: a number with a unit (%, 배, x, ms, 초, 명, users, …) as a phrase that
  reads on its own. English: from the past-tense result verb before it (reduced, cut,
  improved, …) to the number, a "to N unit" that follows included ("reduced its memory
  use by 40%", "cut latency from 200 ms to 80 ms"); without such a verb, the bare figure
  (with a comparative after it: "40% faster"). Korean: up to two nouns before it, the
  number with its 에서/로/까지, and the result verb after it as a noun ("추론 속도 40%
  개선", "처리 시간 3배 단축", "응답 시간 120ms에서 60ms로 단축"). A ratio (%, 배, x,
  times, percent) always counts; another unit (ms, 초, 명, users, …) only with a result
  verb or word next to it, so "4명의 팀" is not a result.
- **Keywords**: the remaining content words (Korean particles and verb endings
  stripped, stop words dropped), most frequent first.

Questions (always three, in the profile's language)
---------------------------------------------------
1. A deep dive into the first project (role, hardest problem, solution), asking how
   the first result was measured (an English verb phrase is put to the candidate in the
   second person: "You also write that you reduced its memory use by 40%: how did you
   measure and verify that result?"; a bare figure as "the result you mention (40%)");
   without a project, the same about the first skill, then the top keyword; then a
   generic project question for the job title.
2. Why the first tool was chosen (a skill that is not a field such as 딥러닝), and its
   trade-offs, naming the second skill too; with only a field, which tool they chose
   in it and why; with neither, a technical-choice question for the job title.
3. A STAR collaboration / problem-solving question for the job title at the company,
   set in the second project (or the first; or the years of experience).

Rating an answer (개선 필요함 = 0, 무난함 = 1, 매우 좋음 = 2)
----------------------------------------------------------
An answer is a whole answer turn: every utterance from the question to "Done", joined,
thinking pauses included. Words are the transcript's whitespace-separated tokens
(Korean: 어절). Its time, pace, fillers and pauses are the answer's measured speaking
metrics (`stream.contract.SpeakingMetrics`, merged over its utterances; read as they are,
never recomputed here): time is ``duration_s``, and a 0 there or in a rate means it was
not measured. Without metrics (an answer that was not spoken) only the length in words or
syllables and the fillers in the transcript are judged. An empty
answer gets 개선 필요함 everywhere except similarity and examples (NA).

- **communication (소통 방식)** — length and pace of a *spoken* answer:

  - Length is right at **30 seconds to 3 minutes** of answer time: an interview answer
    under half a minute says too little, one over three minutes loses the listener.
    Without a measured time, the same span in words at a typical pace: **70–450
    English words** (30 s at ~140 words per minute to 3 min at ~150), **120–900 Korean
    syllables** (30 s at ~4 syllables per second to 3 min at ~5; Hangul syllables, each
    run of Latin letters or digits — a name or a number — counted as 3).
  - Pace is right at **90–180 words per minute in English** (conversational English
    runs ~130–160; the lower bound leaves room for the thinking pauses a whole turn
    holds, the upper one is where listeners start to miss words) and **2.5–6.0
    syllables per second in Korean** (conversational Korean runs ~3.5–5.5, with the same
    allowance for pauses). Korean pace is the metrics' ``syllables_per_second``, else
    (an answer without Hangul) their ``words_per_minute`` at **50–120 어절 per minute**
    (the syllable window over ~3 syllables per 어절). English pace is
    ``words_per_minute``. Unknown pace counts as right (it is not judged).

  매우 좋음: length and pace right; 무난함: one of them; 개선 필요함: neither.
- **natural_delivery (자연스러운 답변)**: filler rate = filler words per 100 words (the
  metrics' ``filler_count``; without metrics, the fillers `stream.fillers.find_fillers`
  finds in the transcript, the same rule the speech worker counts them by: 음, 어, um,
  uh, …, and 뭐, 그러니까, you know, basically, … when set off by commas) and
  the longest pause (``longest_pause_s``; unknown = not judged). A pause of a few
  seconds to think is normal in a spoken answer and costs nothing: only a pause **over
  5 s** counts against delivery, and one of **10 s or more** is a stall. 매우 좋음: rate
  < 3 and no pause over 5 s; 개선 필요함: rate ≥ 8 or a pause ≥ 10 s; otherwise 무난함.
- **examples (적절한 예시)**: NA for answers under 5 words. Markers (예를 들어, 예를 들면,
  예컨대, 가령, 실제로, for example, for instance, such as, e.g., …) and numbers
  (digit groups). 매우 좋음: a marker and a number; 무난함: a marker, a number, or one of
  the intro's named projects; otherwise 개선 필요함.
- **technical_explanation (기술 설명)**: T = distinct skills from `TECH_TERMS` named in
  the answer, C = causal connectives (때문, 왜냐하면, 그래서, 따라서, 덕분에, 위해,
  because, therefore, so that, in order to, as a result, …). 매우 좋음: T ≥ 2 and C ≥ 2;
  무난함: T ≥ 1 and C ≥ 1, or T ≥ 3; otherwise 개선 필요함.
- **clarity (명확성, STAR)**: which of situation / task / action / result have a cue
  (당시, 상황 / 목표, 역할, 맡 / 구현, 설계, 도입 / 결과, 개선, 향상; when, at the time /
  goal, my role, had to / implemented, built, designed / result, improved, reduced, …).
  매우 좋음: all four; 무난함: two or three; 개선 필요함: one or none.
- **similarity (참고 답안과의 유사도)**: the reference is the top 8 keywords of the
  question (company and job-title words left out) plus 8 of the self-introduction's
  skills and keywords (skills first); match % = the
  share of them the answer mentions (a Korean word matches with its particles; a word
  matches a longer one it starts). 매우 좋음: ≥ 50 %; 무난함: ≥ 25 %; otherwise 개선 필요함.
  NA when there is no reference or no answer.
- **overall (전반적인 점수)**: the lower median (statistics.median_low) of the other
  six scores, NA ones left out.

Each reason says what was measured in plain words ("Your answer ran 42 seconds (96
words) at 137 words per minute: a good length and a comfortable pace.").

Tips: one per criterion, the three weakest first (lowest score; ties in the fixed order
natural_delivery, clarity, examples, technical_explanation, communication, similarity),
phrased as a fix when the score is below 매우 좋음 and as a way to keep it otherwise
(natural delivery marked down for a long pause alone gets a tip about pauses, not
fillers). Model answer: a STAR template filled with the question's topic (a skill it
names; none of its own when it asks about a project; else its first keyword that is not
our own template wording; else the job title) and the candidate's own project, skills and
result (an English verb phrase as "As a result I reduced …").
"""

from __future__ import annotations

import functools
import itertools
import re
import statistics
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

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
from stream.fillers import find_fillers

# --------------------------------------------------------------------------- vocabulary

# (canonical name, regex). Latin terms match as whole words, case-insensitively; Korean
# terms as substrings (Korean attaches particles: 도커를, 딥러닝으로).
_TECH: tuple[tuple[str, str], ...] = (
    ("Python", r"python|파이썬"),
    ("PyTorch", r"pytorch|파이토치"),
    ("TensorFlow", r"tensorflow|텐서플로우?"),
    ("Keras", r"keras|케라스"),
    ("scikit-learn", r"scikit-learn|sklearn"),
    ("pandas", r"pandas|판다스"),
    ("NumPy", r"numpy|넘파이"),
    ("OpenCV", r"opencv"),
    ("YOLO", r"yolo(?:v\d+)?|욜로"),
    ("Hugging Face", r"hugging\s?face|허깅\s?페이스"),
    ("Transformer", r"transformers?|트랜스포머"),
    ("BERT", r"bert"),
    ("GPT", r"gpt(?:-?\d+(?:\.\d+)?)?"),
    ("LLM", r"llms?|대규모\s?언어\s?모델"),
    ("RAG", r"rag"),
    ("LangChain", r"langchain|랭체인"),
    ("LoRA", r"lora"),
    ("CNN", r"cnns?"),
    ("RNN", r"rnns?"),
    ("LSTM", r"lstm"),
    ("GAN", r"gans?"),
    ("ONNX", r"onnx"),
    ("TensorRT", r"tensorrt"),
    ("CUDA", r"cuda"),
    ("Triton", r"triton"),
    ("vLLM", r"vllm"),
    ("MLOps", r"mlops"),
    ("MLflow", r"mlflow"),
    ("Kubeflow", r"kubeflow"),
    ("Airflow", r"airflow|에어플로우"),
    ("Kubernetes", r"kubernetes|k8s|쿠버네티스"),
    ("Docker", r"docker|도커"),
    ("PostgreSQL", r"postgres(?:ql)?"),
    ("MySQL", r"mysql"),
    ("MongoDB", r"mongodb|몽고\s?db"),
    ("Redis", r"redis|레디스"),
    ("Elasticsearch", r"elasticsearch"),
    ("SQL", r"sql"),
    ("Kafka", r"kafka|카프카"),
    ("Spark", r"(?:apache\s)?spark|pyspark|스파크"),
    ("Hadoop", r"hadoop|하둡"),
    ("AWS", r"aws|sagemaker|amazon\sweb\sservices"),
    ("GCP", r"gcp|google\scloud"),
    ("Azure", r"azure"),
    ("Git", r"git|github|gitlab|깃허브"),
    ("Linux", r"linux|리눅스"),
    ("FastAPI", r"fastapi"),
    ("Django", r"django|장고"),
    ("Flask", r"flask|플라스크"),
    ("Spring", r"spring\s?boot|spring\sframework|스프링"),
    ("JavaScript", r"javascript|자바스크립트"),
    ("TypeScript", r"typescript|타입스크립트"),
    ("Java", r"java|자바(?!스크립트)"),
    ("Node.js", r"node\.?js"),
    ("React", r"react|리액트"),
    ("Vue", r"vue(?:\.js)?"),
    ("C++", r"c\+\+"),
    ("Kotlin", r"kotlin|코틀린"),
    ("REST API", r"rest(?:ful)?\s?apis?|restful"),
    ("GraphQL", r"graphql"),
    ("gRPC", r"grpc"),
    ("CI/CD", r"ci/cd|jenkins|github\sactions"),
    ("Terraform", r"terraform"),
    ("Streamlit", r"streamlit"),
    ("WebRTC", r"webrtc"),
    ("Whisper", r"whisper"),
    # Tools whose names look like project names ("Great Expectations"): known, they are
    # skills, not projects.
    ("Great Expectations", r"great\sexpectations"),
    ("dbt", r"dbt"),
    ("Apache Beam", r"apache\sbeam"),
    ("BigQuery", r"bigquery|빅쿼리"),
    ("Snowflake", r"snowflake"),
    ("Databricks", r"databricks"),
    ("Prometheus", r"prometheus|프로메테우스"),
    ("Grafana", r"grafana|그라파나"),
    ("Tableau", r"tableau|태블로"),
    ("Power BI", r"power\s?bi"),
    ("Jupyter", r"jupyter|주피터"),
    ("Label Studio", r"label\sstudio"),
    ("Weights & Biases", r"weights\s?(?:&|and)\s?biases|wandb"),
    ("Stable Diffusion", r"stable\sdiffusion"),
    ("Go", r"golang"),
    ("NLP", r"nlp|natural\slanguage\sprocessing|자연어\s?처리"),
    ("computer vision", r"computer\svision|컴퓨터\s?비전"),
    ("machine learning", r"machine\slearning|머신\s?러닝|기계\s?학습"),
    ("deep learning", r"deep\slearning|딥\s?러닝|심층\s?학습"),
    ("reinforcement learning", r"reinforcement\slearning|강화\s?학습"),
    ("fine-tuning", r"fine-?tun(?:ing|ed|e)|파인\s?튜닝|미세\s?조정"),
    ("quantization", r"quantiz(?:ation|ed)|양자화"),
    ("model compression", r"model\scompression|경량화"),
    ("distributed training", r"distributed\straining|분산\s?학습"),
    ("object detection", r"object\sdetection|객체\s?(?:탐지|검출)"),
    ("image classification", r"image\sclassification|이미지\s?분류"),
    ("speech recognition", r"speech\srecognition|음성\s?인식"),
    ("emotion recognition", r"emotion\srecognition|감정\s?인식"),
    ("recommender system", r"recommend(?:er|ation)\ssystems?|추천\s?시스템"),
    ("data pipeline", r"data\spipelines?|데이터\s?파이프라인|etl"),
    ("data analysis", r"data\sanalysis|데이터\s?분석"),
    ("preprocessing", r"pre-?processing|전처리"),
    ("embedding", r"embeddings?|임베딩"),
    ("vector database", r"vector\s(?:database|db)|벡터\s?(?:데이터베이스|db)"),
    ("microservices", r"microservices?|마이크로\s?서비스"),
    ("cloud", r"cloud|클라우드"),
    ("database", r"databases?|데이터베이스"),
    ("backend", r"back-?end|백엔드"),
    ("frontend", r"front-?end|프론트엔드"),
    ("A/B test", r"a/b\s?test(?:ing)?|a/b\s?테스트"),
    ("API", r"apis?"),
)


#: Vocabulary entries that name a field or a kind of system rather than a tool one
#: "chooses": the trade-off question prefers tools (PyTorch, Docker) over these.
CONCEPTS = frozenset(
    {
        "NLP",
        "computer vision",
        "machine learning",
        "deep learning",
        "reinforcement learning",
        "fine-tuning",
        "quantization",
        "model compression",
        "distributed training",
        "object detection",
        "image classification",
        "speech recognition",
        "emotion recognition",
        "recommender system",
        "data pipeline",
        "data analysis",
        "preprocessing",
        "embedding",
        "microservices",
        "cloud",
        "database",
        "backend",
        "frontend",
        "A/B test",
        "API",
    }
)


def _compile_term(pattern: str) -> re.Pattern[str]:
    # Latin alternatives need word edges (so SQL does not fire inside MySQL, Git inside
    # digital); Korean ones must not (particles are glued on).
    parts = []
    for alternative in pattern.split("|"):
        if re.search(r"[가-힣]", alternative):
            parts.append(alternative)
        else:
            parts.append(rf"(?<![A-Za-z0-9]){alternative}(?![A-Za-z0-9+])")
    return re.compile("|".join(parts), re.IGNORECASE)


#: (canonical name, compiled pattern) for every known skill, in a fixed order.
TECH_TERMS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, _compile_term(pattern)) for name, pattern in _TECH
)

#: How a field (`CONCEPTS`) is named on a Korean page; tools keep their own names.
KO_SKILL_NAMES: dict[str, str] = {
    "NLP": "자연어 처리",
    "computer vision": "컴퓨터 비전",
    "machine learning": "머신러닝",
    "deep learning": "딥러닝",
    "reinforcement learning": "강화 학습",
    "fine-tuning": "파인튜닝",
    "quantization": "양자화",
    "model compression": "모델 경량화",
    "distributed training": "분산 학습",
    "object detection": "객체 탐지",
    "image classification": "이미지 분류",
    "speech recognition": "음성 인식",
    "emotion recognition": "감정 인식",
    "recommender system": "추천 시스템",
    "data pipeline": "데이터 파이프라인",
    "data analysis": "데이터 분석",
    "preprocessing": "전처리",
    "embedding": "임베딩",
    "vector database": "벡터 데이터베이스",
    "microservices": "마이크로서비스",
    "cloud": "클라우드",
    "database": "데이터베이스",
    "backend": "백엔드",
    "frontend": "프론트엔드",
    "A/B test": "A/B 테스트",
}

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


def skill_label(name: str, language: Language) -> str:
    """A skill as a person reads it: fields in Korean on a Korean page."""
    return KO_SKILL_NAMES.get(name, name) if language == "ko" else name


# --------------------------------------------------------------------------- wording helpers

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


_PUNCT = ".,!?;:\"'()[]{}<>“”‘’「」『』《》·…~`*_=|\\/-"

# Korean particles and copula/verb suffixes, stripped from the end of a word (longest
# first) when at least two characters remain: 프로젝트에서 → 프로젝트, 개발했습니다 → 개발.
_KO_SUFFIXES = tuple(
    sorted(
        """에서부터 으로부터 이라는 이라고 에서는 에서도 에서의 에게서 으로는 으로서 으로써 로서는
        하였습니다 했습니다 합니다 했으며 하면서 하였고 했는데 했던 했고 하고 하며 하여 해서 하는
        하기 하게 했다 한다 입니다 이었습니다 였습니다 이며 이고 이다 시켰습니다 되었습니다 됐습니다
        되는 되어 된 까지 부터 에서 에게 한테 처럼 보다 으로 로서 라는 라고 와의 과의 에는 이나
        은 는 이 가 을 를 에 의 로 와 과 랑 한""".split(),
        key=len,
        reverse=True,
    )
)
# Endings that mark a word as a verb or adverb form (dropped as keywords).
_KO_SUFFIX_SET = frozenset(_KO_SUFFIXES)
_KO_VERB_ENDINGS = tuple(
    """다 요 고 며 면 어서 아서 지만 는데 면서 던 게 히 도록 려고 해 한 된 인 할 될 신 은 는 의
    거나 는지 는지도 셨 었 았 겠 운 른 런 있는 없는 같은""".split()
)

_STOP_KO = set(
    """저는 제가 저희 저의 제 나는 우리 또한 그리고 하지만 그래서 그러나 가장 매우 정말 특히 이후
    당시 관련 대해 위해 이를 이러한 해당 기반 경우 부분 정도 때문 것 수 등 및 더 잘 좀 또 그 이 저
    통해 있는 없는 같은 많은 여러 다양 이번 지금 현재 앞으로 무엇 어떻게 어떤 왜 하나 골라 주세요
    말씀 여쭙겠습니다 자기소개서 언급 설명 구체적 그중 적어 순서 대안 비교 검토 선택 이유 장단점
    트레이드오프 상황 과제 행동 결과 경험 역할 문제 해결 측정 검증 성과 특히 협업 동료 팀원 의견
    예상 생겼던 중요 직무 업무 회사 지원 기술 기술적 프로젝트 년 경력 학업 개인""".split()
)
_STOP_EN = set(
    """a an the and or but if then than so as at by for from in into of on onto to with without
    about above after again against all am are aren't be because been before being below between
    both can could did do does doing down during each few further had has have having he her here
    hers him his how i i'm i've me more most my myself no nor not now off once only other our ours
    out over own same she should some such that that's their them there these they this those
    through too under until up very was we we're were what when where which while who whom why
    will would you your yours also just like really many much well get got make made use used
    using one two three first second third new work worked working years year experience company
    team teams project projects role describe explain mention mentioned self-introduction
    introduction hardest problem solve solved measured measure result results choose chose chosen
    trade-offs tradeoffs trade-off alternatives considered compared situation task action actions
    star walk think time teammate unexpected matters collaboration skills list among why what
    technical please tell give example name last job led built took wrote ran hello hi i'd i'll
    currently recently hit its it's itself""".split()
)

_CAUSAL_RE = re.compile(
    r"때문|왜냐하면|그래서|따라서|그러므로|덕분에|위해|위하여|결과적으로|그\s?결과|이유는|므로"
    r"|\b(?:because|therefore|thus|hence|consequently|so that|in order to|as a result|which means"
    r"|which meant|that's why|that is why|due to|the reason)\b",
    re.IGNORECASE,
)
_EXAMPLE_RE = re.compile(
    r"예를\s?들어|예를\s?들면|예컨대|가령|일례로|실제로|구체적으로|예시로|사례"
    r"|\b(?:for example|for instance|such as|e\.g\.|to give an example|in one case"
    r"|specifically|in practice)",
    re.IGNORECASE,
)
_NUMBER_RE = re.compile(r"\d+(?:[.,]\d+)?")

_STAR_CUES: dict[str, re.Pattern[str]] = {
    "situation": re.compile(
        r"당시|상황|때|에서\s?일할|처음에|배경"
        r"|\b(?:when|at the time|situation|background|while working|during|in my previous"
        r"|at my last|back then)\b",
        re.IGNORECASE,
    ),
    "task": re.compile(
        r"목표|과제|역할|맡|담당|해야|요구|문제는"
        r"|\b(?:goal|task|my role|responsible|needed to|had to|objective|challenge|was asked)\b",
        re.IGNORECASE,
    ),
    "action": re.compile(
        r"구현|개발|적용|도입|설계|분석|해결|시도|작성|구축|변경|제안|만들"
        r"|\b(?:implemented|built|designed|introduced|analy[sz]ed|developed|decided|wrote"
        r"|proposed|refactored|set up|created|added|applied|used)\b",
        re.IGNORECASE,
    ),
    "result": re.compile(
        r"결과|성과|개선|향상|감소|단축|달성|덕분에|배웠|줄였|늘렸|높였|낮췄"
        r"|\b(?:result|results|as a result|improved|reduced|increased|achieved|outcome|learned"
        r"|saved|cut|faster|decreased)\b",
        re.IGNORECASE,
    ),
}

_UNIT = (
    r"%p|%|퍼센트|배|x(?![A-Za-z0-9])|times|ms|초|분|시간|명|건|개|만|천|억|원|fps|percent"
    r"|points?|hours?|minutes?|seconds?|users?|requests?"
)
_RESULT_RE = re.compile(rf"(\d+(?:[.,]\d+)?)\s?({_UNIT})(?![A-Za-z])", re.IGNORECASE)
_RATIO_UNITS = {"%", "%p", "퍼센트", "배", "x", "times", "percent", "points", "point"}
#: Words next to a figure that make it a result (with units that are not ratios).
_RESULT_WORDS_EN = {
    "improved",
    "improving",
    "reduced",
    "reducing",
    "increased",
    "cut",
    "faster",
    "boosted",
    "saved",
    "lowered",
    "raised",
    "by",
    "down",
    "up",
}
#: Past-tense verbs a result phrase starts at ("reduced its memory use by 40%").
_RESULT_VERBS_EN = frozenset(
    """reduced cut improved increased boosted saved lowered raised grew doubled tripled
    halved achieved reached decreased shortened dropped trimmed lifted slashed accelerated
    sped brought expanded scaled maintained kept hit delivered""".split()
)
#: Comparatives that belong to a bare figure ("40% faster").
_COMPARATIVES_EN = frozenset(
    "faster slower fewer less more lower higher smaller larger cheaper better".split()
)
#: "… to 80 ms" after a figure: the end of a from-to result.
_RANGE_TAIL_RE = re.compile(
    rf"\s+(?:down\s+|up\s+)?to\s+\d+(?:[.,]\d+)?\s?(?:{_UNIT})(?![A-Za-z])", re.IGNORECASE
)
_SENTENCE_END_RE = re.compile(r"[.!?;](?=\s|$)|\n")
#: How far before a figure (words) its verb may stand.
_RESULT_VERB_REACH = 10
#: Korean result verb stems and the noun each result phrase ends with (줄였 → 감소).
_RESULT_VERBS_KO = (
    ("개선", "개선"),
    ("향상", "향상"),
    ("감소", "감소"),
    ("단축", "단축"),
    ("증가", "증가"),
    ("절감", "절감"),
    ("달성", "달성"),
    ("상승", "상승"),
    ("기록", "기록"),
    ("줄", "감소"),
    ("늘", "증가"),
    ("높", "향상"),
    ("낮", "감소"),
)
#: Particles kept on a Korean figure (they carry from/to: "120ms에서 60ms로").
_KO_RANGE_PARTICLES = ("에서", "으로", "로", "까지")
#: First person → second person, for putting an intro's phrase to the candidate.
_SECOND_PERSON = {
    "i": "you",
    "me": "you",
    "my": "your",
    "mine": "yours",
    "myself": "yourself",
    "we": "you",
    "us": "you",
    "our": "your",
    "ours": "yours",
    "ourselves": "yourselves",
}

_QUOTED_RE = re.compile(
    r"\"([^\"\n]{2,40})\"|(?<![A-Za-z])'([^'\n]{2,40})'(?![A-Za-z])|“([^”\n]{2,40})”"
    r"|‘([^’\n]{2,40})’|「([^」\n]{2,40})」|『([^』\n]{2,40})』|《([^》\n]{2,40})》"
)
_CAMEL_RE = re.compile(r"(?<![A-Za-z0-9])[A-Z][a-z0-9]+(?:[A-Z][A-Za-z0-9]*)+(?![A-Za-z0-9])")
_CAPITALISED_RE = re.compile(r"(?<![A-Za-z0-9])[A-Z][A-Za-z0-9]*(?:[ \t]+[A-Z][A-Za-z0-9]*){1,3}")
#: Words that make a project generic, not named ("사이드 프로젝트", "team project").
_GENERIC_PROJECT_WORDS = frozenset(
    "사이드 개인 토이 졸업 팀 다른 첫 관련 신규 기존 주요 대형 소규모 연구 "
    "side personal toy team group school class university capstone final new big small "
    "research other first main".split()
)
_NAME_INTRO_RE = re.compile(r"(?:name is|i am|i'm|this is)\s*$", re.IGNORECASE)
_LEADING_STOP = {
    "the",
    "in",
    "at",
    "during",
    "my",
    "our",
    "we",
    "i",
    "when",
    "while",
    "after",
    "as",
    "this",
    "that",
    "also",
    "then",
    "since",
    "for",
    "from",
    "with",
    "a",
    "an",
    "on",
    "hello",
    "hi",
    "previous",
    "current",
    "last",
    "role",
    "job",
    "position",
    "several",
    "various",
    "multiple",
    "different",
    "other",
    "side",
    "these",
    "those",
    "all",
}

# The windows below are for spoken answers (see the module docstring for why).
#: Answer time of the right length, seconds: half a minute to three minutes.
GOOD_DURATION_S = (30.0, 180.0)
#: The same length in English words when no time was measured (30 s at ~140 words per
#: minute to 3 min at ~150).
GOOD_WORDS_EN = (70, 450)
#: The same length in Korean spoken syllables (30 s at ~4 per second to 3 min at ~5).
GOOD_SYLLABLES_KO = (120, 900)
#: Syllables a run of Latin letters or digits (a name, a number) counts for in Korean.
LATIN_RUN_SYLLABLES = 3
#: Comfortable English pace, words per minute.
PACE_WPM_EN = (90.0, 180.0)
#: Comfortable Korean pace, Hangul syllables per second.
PACE_SPS_KO = (2.5, 6.0)
#: Comfortable Korean pace in 어절 per minute, read only when nothing else is known.
PACE_WPM_KO = (50.0, 120.0)
#: Filler words per 100 words: under the first is very good, the second or more is poor.
FILLER_RATE_GOOD, FILLER_RATE_POOR = 3.0, 8.0
#: Longest pause, seconds: up to the first is thinking time (normal); the second or more
#: is a stall.
PAUSE_NORMAL_S, PAUSE_STALL_S = 5.0, 10.0
#: Answers shorter than this (words) are too short to judge examples in (NA).
MIN_WORDS_FOR_EXAMPLES = 5
#: How many question / intro keywords form the similarity reference.
REFERENCE_KEYWORDS = 8


# --------------------------------------------------------------------------- reading text


def _has_hangul(text: str) -> bool:
    return re.search(r"[가-힣]", text) is not None


def normalise_word(token: str) -> str | None:
    """A content word's comparable form, or None for stop words, verbs and noise."""
    word = token.strip(_PUNCT).lower()
    if not word:
        return None
    if _has_hangul(word):
        if word in _KO_SUFFIX_SET:
            return None  # a particle left alone by splitting ("…’에서")
        for suffix in _KO_SUFFIXES:
            if word.endswith(suffix) and len(word) - len(suffix) >= 2:
                word = word[: -len(suffix)].strip(_PUNCT)  # 'EmoVision'이라는 → emovision
                break
        else:
            if word.endswith(_KO_VERB_ENDINGS):
                return None
        if len(word) < 2 or word in _STOP_KO:
            return None
        return word
    if len(word) < 3 or word in _STOP_EN or word.isdigit():
        return None
    if len(word) > 4 and word.endswith("ed"):
        return None  # a past-tense verb (reduced, detected), not a topic
    if not re.search(r"[a-z]", word):
        return None
    return word


# Words are split at spaces and at brackets, quotes and separators ("성과(추론" → 2 words).
_WORD_SPLIT_RE = re.compile(r"[\s()\[\]{}<>,;:!?\"“”‘’「」『』《》·…~|]+")


def content_words(text: str) -> list[str]:
    """The normalised content words of `text`, in order."""
    words = []
    for token in _WORD_SPLIT_RE.split(text):
        word = normalise_word(token)
        if word is not None:
            words.append(word)
    return words


def top_keywords(text: str, limit: int) -> list[str]:
    """The most frequent content words (ties: first mention first)."""
    words = content_words(text)
    counts = Counter(words)
    first = {}
    for index, word in enumerate(words):
        first.setdefault(word, index)
    ranked = sorted(counts, key=lambda w: (-counts[w], first[w]))
    return ranked[:limit]


def find_skills(text: str) -> list[str]:
    """Known skills named in `text`, in order of first mention."""
    found = []
    for name, pattern in TECH_TERMS:
        match = pattern.search(text)
        if match:
            found.append((match.start(), match.end(), name))
    found.sort()
    # A generic term inside a specific one's match (API inside "REST API") is not a skill
    # of its own.
    return [
        name
        for start, end, name in found
        if not any(s <= start and end <= e and (s, e) != (start, end) for s, e, _ in found)
    ]


def _is_skill(text: str) -> bool:
    return any(pattern.fullmatch(text.strip()) for _, pattern in TECH_TERMS)


def _noun_run_before(words: list[str], limit: int = 3) -> list[str]:
    """Up to `limit` noun-like words at the end of `words` (Korean: no particle/ending)."""
    run: list[str] = []
    for token in reversed(words):
        bare = token.strip(_PUNCT)
        lowered = bare.lower()
        if not bare or len(run) == limit:
            break
        if lowered in _STOP_KO or lowered in _STOP_EN or lowered in _LEADING_STOP:
            break
        # A Korean word carrying a particle or a verb ending belongs to the sentence,
        # not to the name ("진행하며 | 음성 비서 프로젝트").
        if _has_hangul(bare) and normalise_word(bare) != lowered:
            break
        run.insert(0, bare)
    return run


def find_projects(text: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """Named projects in `text`, in order of first mention (see the module docstring)."""
    found: list[tuple[int, str]] = []
    for match in _QUOTED_RE.finditer(text):
        name = next(group for group in match.groups() if group)
        found.append((match.start(), name.strip()))
    for match in _CAMEL_RE.finditer(text):
        found.append((match.start(), match.group(0)))
    for match in re.finditer(r"프로젝트", text):
        before = text[max(0, match.start() - 60) : match.start()]
        before = re.split(r"[.!?\n,]", before)[-1]
        tokens = before.split()
        run = _noun_run_before(tokens)
        stopper = tokens[-len(run) - 1] if len(tokens) > len(run) else ""
        if run and not stopper.endswith("라는") and not set(run) <= _GENERIC_PROJECT_WORDS:
            # ("'EmoVision'이라는 감정 인식 프로젝트" is one project, already found by name.)
            # "감정 인식 프로젝트" and "EmoVision프로젝트" both name a project.
            found.append((match.start() - len(" ".join(run)) - 1, " ".join([*run, "프로젝트"])))
    for match in re.finditer(r"(?<![A-Za-z])projects?(?![A-Za-z])", text, re.IGNORECASE):
        before = re.split(r"[.!?\n,]", text[max(0, match.start() - 80) : match.start()])[-1]
        run = _noun_run_before(before.split())
        if run and not {w.lower() for w in run} <= _GENERIC_PROJECT_WORDS:
            # "Smart Factory Monitor project" is named "Smart Factory Monitor".
            name = " ".join(run if all(w[0].isupper() for w in run) else [*run, "project"])
            found.append((match.start() - len(" ".join(run)) - 1, name))
    for match in _CAPITALISED_RE.finditer(text):
        if _NAME_INTRO_RE.search(text[max(0, match.start() - 16) : match.start()]):
            continue  # "My name is Jane Doe": a person, not a project
        words = match.group(0).split()
        while words and words[0].lower() in _LEADING_STOP:
            words.pop(0)
        while words and (len(words[-1]) == 1 or words[-1].lower() in _LEADING_STOP):
            words.pop()  # "… at Google I worked": the pronoun is not part of the name
        # Acronym runs ("AI ML") are titles or skills, not names: most words need lowercase.
        lowercase = sum(1 for word in words if any(ch.islower() for ch in word))
        # A run holding a known tool names the tool ("Apache Airflow", "PyTorch
        # Lightning"), not a project.
        if len(words) >= 2 and 2 * lowercase > len(words) and not find_skills(" ".join(words)):
            found.append((match.start(), " ".join(words)))

    excluded = {item.strip().lower() for item in exclude if item.strip()}
    names: list[str] = []
    for _, name in sorted(found, key=lambda item: item[0]):
        key = name.lower()
        if key in excluded or _is_skill(name) or len(name) < 2:
            continue
        if any(key in kept.lower() or kept.lower() in key for kept in names):
            continue  # "EmoVision" and "EmoVision 프로젝트" are the same project
        names.append(name)
    return names


def _result_en(text: str, match: re.Match[str], ratio: bool) -> tuple[str, int] | None:
    """The English result phrase around the figure `match` and where it ends, or None."""
    bounds = [m.end() for m in _SENTENCE_END_RE.finditer(text, 0, match.start())]
    sentence_start = bounds[-1] if bounds else 0
    end = match.end()
    tail = _RANGE_TAIL_RE.match(text, end)
    if tail:
        end = tail.end()  # "from 200 ms to 80 ms"
    before = list(re.finditer(r"\S+", text[sentence_start : match.start()]))
    verb_at = None
    for token in reversed(before[-_RESULT_VERB_REACH:]):
        if token.group(0).strip(_PUNCT).lower() in _RESULT_VERBS_EN:
            verb_at = sentence_start + token.start()
            break
    if verb_at is not None:
        return text[verb_at:end].strip().rstrip(_PUNCT), end
    after = text[end:].split()
    nearby = {t.strip(_PUNCT).lower() for t in [*(b.group(0) for b in before[-4:]), *after[:2]]}
    if not (ratio or nearby & _RESULT_WORDS_EN):
        return None
    start = match.start()
    if before and before[-1].group(0).lower() == "from":
        start = sentence_start + before[-1].start()  # "from 85% to 92%"
    phrase = text[start:end].strip()
    if after and after[0].strip(_PUNCT).lower() in _COMPARATIVES_EN:
        phrase += " " + after[0].strip(_PUNCT)  # "40% faster"
    return phrase, end


def _result_ko(text: str, match: re.Match[str], ratio: bool) -> str | None:
    """The Korean result phrase around the figure `match`, or None."""
    bounds = [m.end() for m in _SENTENCE_END_RE.finditer(text, 0, match.start())]
    sentence_start = bounds[-1] if bounds else 0
    tokens = list(re.finditer(r"\S+", text[sentence_start:]))
    at = next(i for i, t in enumerate(tokens) if t.end() + sentence_start > match.start())
    figure = tokens[at].group(0).rstrip(_PUNCT)
    later = [t.group(0).strip(_PUNCT) for t in tokens[at + 1 : at + 3]]
    if figure.endswith("에서") and later and _RESULT_RE.search(later[0]):
        return None  # "120ms에서 60ms로": the phrase is made at its second figure
    noun = ""
    for word in later:
        noun = next((n for stem, n in _RESULT_VERBS_KO if word.startswith(stem)), "")
        if noun or word.endswith((",", ".")):
            break
    if not (ratio or noun):
        return None
    keep = next((p for p in _KO_RANGE_PARTICLES if figure.endswith(p)), "")
    figure = text[match.start() : match.end()] + keep  # "(약40%를" → "40%"
    parts = [figure]
    index = at - 1
    if (
        index >= 0
        and tokens[index].group(0).endswith("에서")
        and _RESULT_RE.search(tokens[index].group(0))
    ):
        parts.insert(0, tokens[index].group(0).strip(_PUNCT))  # the "from" figure
        index -= 1
    lead: list[str] = []
    while index >= 0 and len(lead) < 2:
        token = tokens[index].group(0)
        if token.endswith((",", ".")) or normalise_word(token) is None:
            break
        lead.insert(0, _strip_particle(token.strip(_PUNCT)))
        index -= 1
    if noun == "감소" and any(word.endswith("시간") for word in lead):
        noun = "단축"  # 시간을 줄였다 → 시간 단축
    return " ".join([*lead, *parts, noun]).strip()


_KO_PARTICLES = ("에서", "으로", "을", "를", "이", "가", "은", "는", "의", "로", "과", "와")


def _strip_particle(word: str) -> str:
    """A Korean noun without the particle on its end (시간을 → 시간); case kept."""
    for particle in _KO_PARTICLES:
        # 을/를 never end a noun; the others may ("평가", "차이"), so those need two
        # syllables before them.
        stem = 1 if particle in ("을", "를") else 2
        if word.endswith(particle) and len(word) >= len(particle) + stem:
            return word[: -len(particle)]
    return word


def find_results(text: str) -> list[str]:
    """Measured results as phrases that read on their own (see the module docstring):
    "reduced its memory use by 40%", "cut latency from 200 ms to 80 ms", "40% faster",
    "추론 속도 40% 개선", "응답 시간 120ms에서 60ms로 단축"."""
    results: list[str] = []
    covered = 0
    for match in _RESULT_RE.finditer(text):
        if match.start() < covered:
            continue  # the "to" figure of a from-to phrase already taken
        ratio = match.group(2).lower() in _RATIO_UNITS
        if _has_hangul(text[max(0, match.start() - 20) : match.end() + 20]):
            phrase = _result_ko(text, match, ratio)
        else:
            found = _result_en(text, match, ratio)
            phrase, covered = found if found else (None, covered)
        if phrase and phrase not in results:
            results.append(phrase)
    return results


def is_verb_phrase(result: str) -> bool:
    """Whether an English result starts at its verb ("reduced … by 40%")."""
    first = result.split(maxsplit=1)[0].lower() if result.strip() else ""
    return first in _RESULT_VERBS_EN and not _has_hangul(result)


def second_person(phrase: str) -> str:
    """An intro's first-person phrase said back to the candidate (my → your, we → you)."""
    return re.sub(
        r"\b(?:I|me|my|mine|myself|we|us|our|ours|ourselves)\b",
        lambda m: _SECOND_PERSON[m.group(0).lower()],
        phrase,
        flags=re.IGNORECASE,
    )


@dataclass(frozen=True)
class IntroFacts:
    """What the offline engine read from a self-introduction."""

    #: Named projects, in order of first mention.
    projects: list[str] = field(default_factory=list)
    #: Known skills (canonical names), in order of first mention.
    skills: list[str] = field(default_factory=list)
    #: Measured results ("추론 속도 40% 개선"), in order.
    results: list[str] = field(default_factory=list)
    #: Other content words, most frequent first.
    keywords: list[str] = field(default_factory=list)

    @property
    def tools(self) -> list[str]:
        """The skills that are tools one chooses (not fields such as deep learning)."""
        return [skill for skill in self.skills if skill not in CONCEPTS]


def read_intro(profile: Profile) -> IntroFacts:
    """Projects, skills, results and keywords of the profile's self-introduction."""
    text = profile.self_intro
    skills = find_skills(text)
    projects = find_projects(text, exclude=(profile.company, profile.job_title))
    skill_words = {w.lower() for s in skills for w in s.split()}
    keywords = [w for w in top_keywords(text, 30) if w not in skill_words]
    return IntroFacts(
        projects=projects, skills=skills, results=find_results(text), keywords=keywords[:15]
    )


# --------------------------------------------------------------------------- questions


def _project_ko(name: str) -> str:
    return f"‘{name}’" if name.endswith("프로젝트") else f"‘{name}’ 프로젝트"


def _project_en(name: str) -> str:
    return f'the "{name}"' if name.lower().endswith("project") else f'the "{name}" project'


def _job_title(profile: Profile) -> str:
    # The default title is Korean; an English interview shows it in English.
    if profile.language == "en" and profile.job_title == "AI 개발자":
        return "AI developer"
    return profile.job_title


def _as_written(word: str, text: str) -> str:
    """A keyword (stored lower-cased) in the case the candidate wrote it."""
    found = re.search(re.escape(word), text, re.IGNORECASE)
    return found.group(0) if found else word


def _result_question_en(result: str) -> str:
    if is_verb_phrase(result):
        # The candidate's own clause, said back: "You also write that you reduced …".
        return (
            f" You also write that you {second_person(result)}: how did you measure and "
            "verify that result?"
        )
    return f" Also explain how you measured and verified the result you mention ({result})."


def compose_questions(profile: Profile, facts: IntroFacts) -> list[str]:
    """The three questions (see the module docstring), in the profile's language."""
    language = profile.language
    project = facts.projects[0] if facts.projects else None
    other = facts.projects[1] if len(facts.projects) > 1 else project
    result = facts.results[0] if facts.results else None
    # Tools first: "why PyTorch?" is a better trade-off question than "why deep learning?".
    skills = facts.tools + [skill for skill in facts.skills if skill in CONCEPTS]
    # Without a named project, the first question is about a skill, then a keyword.
    keyword = None if project else (skills[0] if skills else None)
    if keyword is None and not project and facts.keywords:
        keyword = _as_written(facts.keywords[0], profile.self_intro)
    if keyword is not None and skills and keyword == skills[0] and len(skills) > 1:
        skills = [skills[1], skills[0], *skills[2:]]  # the second question takes another
    job, company, years = _job_title(profile), profile.company, profile.years
    names = [skill_label(skill, language) for skill in skills]
    topic = skill_label(keyword, language) if keyword else None

    if language == "ko":
        if project:
            q1 = (
                f"자기소개서에서 언급하신 {_project_ko(project)}에 대해 여쭙겠습니다. "
                "그 프로젝트에서 맡으신 역할과 가장 어려웠던 기술적 문제는 무엇이었고, "
                "어떻게 해결하셨나요?"
            )
        elif topic:
            q1 = (
                f"자기소개서에서 ‘{topic}’{josa(topic, '과')} 관련된 경험을 말씀하셨습니다. "
                "그 경험에서 맡으신 역할과 가장 어려웠던 문제, 그리고 어떻게 해결하셨는지 "
                "구체적으로 설명해 주세요."
            )
        else:
            q1 = (
                f"지금까지 진행한 프로젝트 중 {job} 직무와 가장 관련 깊은 것 하나를 골라, 맡은 "
                "역할과 가장 어려웠던 기술적 문제, 그리고 해결 과정을 설명해 주세요."
            )
        if result:
            q1 += (
                f" 특히 자기소개서에 적은 성과({result})는 어떻게 측정하고 검증하셨는지도 "
                "말씀해 주세요."
            )
        if len(skills) >= 2 and skills[0] not in CONCEPTS:
            q2 = (
                f"자기소개서에 {names[0]}, {names[1]} 등의 기술을 적어 주셨습니다. "
                f"그중 {names[0]}{josa(names[0], '을')} 선택한 이유는 무엇이며, "
                "검토했던 다른 대안과 비교해 어떤 트레이드오프가 있었나요?"
            )
        elif skills and skills[0] not in CONCEPTS:
            q2 = (
                f"자기소개서에 적어 주신 {names[0]}{josa(names[0], '을')} 선택한 이유는 "
                "무엇이며, 검토했던 다른 대안과 비교해 어떤 장단점(트레이드오프)이 있었나요?"
            )
        elif skills:  # a field (딥러닝, 추천 시스템), not a tool: ask for the tool
            q2 = (
                f"자기소개서에 적어 주신 {names[0]} 분야에서 직접 선택한 핵심 기술이나 "
                "방법 하나를 골라, 그것을 선택한 이유와 다른 대안과 비교한 트레이드오프를 "
                "설명해 주세요."
            )
        else:
            q2 = (
                f"{job} 업무에서 최근 사용한 핵심 기술 하나를 골라, 그 기술을 선택한 이유와 다른 "
                "대안과 비교한 트레이드오프를 설명해 주세요."
            )
        if other:
            context = _project_ko(other)
        elif years > 0:
            context = f"지난 {years}년간의 업무"
        else:
            context = "학업이나 개인 프로젝트"
        q3 = (
            f"{company}의 {job} 직무에서는 동료와의 협업이 중요합니다. {context}에서 팀원과 의견이 "
            "달랐거나 예상치 못한 문제가 생겼던 상황을 하나 골라, 상황·과제·행동·결과(STAR) 순서로 "
            "어떻게 해결했는지 말씀해 주세요."
        )
        return [q1, q2, q3]

    if project:
        q1 = (
            f"In your self-introduction you mention {_project_en(project)}. What was your role, "
            "what was the hardest technical problem, and how did you solve it?"
        )
    elif topic:
        q1 = (
            f'Your self-introduction mentions experience with "{topic}". What was your role, '
            "what was the hardest problem, and how did you solve it?"
        )
    else:
        q1 = (
            f"Of the projects you have worked on, pick the one most relevant to the {job} role: "
            "what was your role, what was the hardest technical problem, and how did you "
            "solve it?"
        )
    if result:
        q1 += _result_question_en(result)
    if len(skills) >= 2 and skills[0] not in CONCEPTS:
        q2 = (
            f"You list {names[0]} and {names[1]} among your skills. Why did you choose "
            f"{names[0]}, and what trade-offs did it have compared with the alternatives you "
            "considered?"
        )
    elif skills and skills[0] not in CONCEPTS:
        q2 = (
            f"Why did you choose {names[0]}, and what trade-offs did it have compared with the "
            "alternatives you considered?"
        )
    elif skills:  # a field (machine learning), not a tool: ask for the tool
        q2 = (
            f"In your work on {names[0]}, pick one key technology or method you chose yourself: "
            "why did you choose it, and what trade-offs did it have compared with the "
            "alternatives?"
        )
    else:
        q2 = (
            "Pick one key technology you have used recently that matters for the "
            f"{job} role: why did you choose it, and what trade-offs did it have compared with "
            "the alternatives?"
        )
    if other:
        context = _project_en(other)
    elif years > 0:
        context = f"your {count_noun(years, 'year')} of experience"
    else:
        context = "your studies or personal projects"
    q3 = (
        f"Collaboration matters in the {job} role at {company}. Think of a time during "
        f"{context} when you disagreed with a teammate or hit an unexpected problem, and "
        "walk me through the situation, your task, the actions you took and the result (STAR)."
    )
    return [q1, q2, q3]


# --------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class AnswerFacts:
    """What the offline engine measured in one answer (the inputs of the rules)."""

    #: The interview's language (which windows apply).
    language: Language
    #: Whitespace-separated words in the transcript (Korean: 어절).
    words: int
    #: Spoken syllables (Hangul syllables, a Latin/digit run counted as 3).
    syllables: int
    #: Answer time, seconds (None = not measured).
    duration_s: float | None
    #: Filler words (the metrics' count; without metrics, found in the transcript).
    fillers: int
    #: Fillers per 100 words.
    filler_rate: float
    #: Longest pause, seconds (None = unknown).
    longest_pause_s: float | None
    #: Words per minute (None = unknown).
    words_per_minute: float | None
    #: Hangul syllables per second (None = unknown; Korean pace is read from it).
    syllables_per_second: float | None
    #: Distinct known skills named in the answer.
    skills: list[str]
    #: Causal connectives (because, 때문에, …).
    causal: int
    #: Example markers (for example, 예를 들어, …).
    example_markers: int
    #: Digit groups.
    numbers: int
    #: Named projects of the intro that the answer mentions.
    projects: list[str]
    #: STAR components with a cue in the answer, in S-T-A-R order.
    star: list[str]
    #: The similarity reference keywords, and those the answer covers.
    reference: list[str]
    matched: list[str]
    #: How to show a matched keyword (a skill by its name, a word as it was written).
    shown: dict[str, str] = field(default_factory=dict)


def spoken_syllables(text: str) -> int:
    """Syllables `text` takes to say in Korean: each Hangul syllable, and each run of
    Latin letters or digits (PyTorch, 40%, 120ms) as `LATIN_RUN_SYLLABLES`."""
    hangul = len(re.findall(r"[가-힣]", text))
    runs = len(re.findall(r"[A-Za-z0-9]+(?:[.,'+][A-Za-z0-9]+)*", text))
    return hangul + LATIN_RUN_SYLLABLES * runs


def _word_matches(reference: str, words: list[str]) -> bool:
    for word in words:
        if word == reference:
            return True
        shorter = min(len(word), len(reference))
        needed = 2 if _has_hangul(reference) else 4
        if shorter >= needed and (word.startswith(reference) or reference.startswith(word)):
            return True
    return False


def _shown_words(
    words: list[str], language: Language, skills: list[str], answer: str
) -> dict[str, str]:
    """Keywords (stored lower-cased, particles stripped) as a person should read them."""
    names = {skill.lower(): skill_label(skill, language) for skill in skills}
    return {word: names.get(word) or _as_written(word, answer) for word in words}


def analyse_answer(
    profile: Profile,
    facts: IntroFacts,
    question: str,
    answer: str,
    metrics: SpeakingMetrics | None,
) -> AnswerFacts:
    """Measure `answer` for the rating rules (time, pace, fillers and pauses are read from
    `metrics` as measured, never recomputed)."""
    language = profile.language
    tokens = answer.split()
    words = len(tokens)
    syllables = spoken_syllables(answer)
    if metrics is None:  # not spoken: no time, pace or pauses to judge
        fillers = len(find_fillers(answer))
        duration = wpm = sps = longest_pause = None
    else:
        fillers = metrics.filler_count
        # A 0 means there was no time span to measure over: not measured.
        duration = metrics.duration_s or None
        wpm = metrics.words_per_minute or None
        sps = metrics.syllables_per_second or None
        longest_pause = metrics.longest_pause_s
    rate = 100.0 * fillers / words if words else 0.0

    answer_words = content_words(answer)
    # The company and job title are in our own question templates; they are not content.
    scaffold = set(content_words(f"{profile.company} {profile.job_title} {_job_title(profile)}"))
    reference: list[str] = []
    for word in [
        *top_keywords(question, REFERENCE_KEYWORDS),
        *[s.lower() for s in facts.skills[:REFERENCE_KEYWORDS]],
        *facts.keywords[: max(0, REFERENCE_KEYWORDS - len(facts.skills))],
    ]:
        if word not in reference and word not in scaffold:
            reference.append(word)
    answer_skills = find_skills(answer)
    answer_lower = answer.lower()
    matched = [
        word
        for word in reference
        if _word_matches(word, answer_words)
        or (" " in word and word in answer_lower)
        or any(word == s.lower() for s in answer_skills)
    ]
    mentioned_projects = [
        p for p in facts.projects if p.lower().removesuffix(" 프로젝트") in answer_lower
    ]
    return AnswerFacts(
        language=language,
        words=words,
        syllables=syllables,
        duration_s=duration,
        fillers=fillers,
        filler_rate=rate,
        longest_pause_s=longest_pause,
        words_per_minute=wpm,
        syllables_per_second=sps,
        skills=answer_skills,
        causal=len(_CAUSAL_RE.findall(answer)),
        example_markers=len(_EXAMPLE_RE.findall(answer)),
        numbers=len(_NUMBER_RE.findall(answer)),
        projects=mentioned_projects,
        star=[part for part, cue in _STAR_CUES.items() if cue.search(answer)],
        reference=reference,
        matched=matched,
        shown=_shown_words(matched, language, [*facts.skills, *answer_skills], answer),
    )


def _rate_delivery(a: AnswerFacts) -> Rating:
    pause = a.longest_pause_s
    if a.filler_rate >= FILLER_RATE_POOR or (pause is not None and pause >= PAUSE_STALL_S):
        return Rating.NEEDS_IMPROVEMENT
    if a.filler_rate < FILLER_RATE_GOOD and (pause is None or pause <= PAUSE_NORMAL_S):
        return Rating.VERY_GOOD
    return Rating.FINE


def _rate_examples(a: AnswerFacts) -> Rating | None:
    if a.words < MIN_WORDS_FOR_EXAMPLES:
        return None
    if a.example_markers and a.numbers:
        return Rating.VERY_GOOD
    if a.example_markers or a.numbers or a.projects:
        return Rating.FINE
    return Rating.NEEDS_IMPROVEMENT


def _rate_technical(a: AnswerFacts) -> Rating:
    terms = len(a.skills)
    if terms >= 2 and a.causal >= 2:
        return Rating.VERY_GOOD
    if (terms >= 1 and a.causal >= 1) or terms >= 3:
        return Rating.FINE
    return Rating.NEEDS_IMPROVEMENT


def _rate_clarity(a: AnswerFacts) -> Rating:
    if len(a.star) == 4:
        return Rating.VERY_GOOD
    if len(a.star) >= 2:
        return Rating.FINE
    return Rating.NEEDS_IMPROVEMENT


def _within(value: float, window: tuple[float, float], low: str, high: str) -> str:
    return low if value < window[0] else high if value > window[1] else "ok"


def length_verdict(a: AnswerFacts) -> str:
    """ "ok", "short" or "long": by answer time when measured, else by words (English)
    or spoken syllables (Korean)."""
    if a.duration_s:
        return _within(a.duration_s, GOOD_DURATION_S, "short", "long")
    if a.language == "ko":
        return _within(a.syllables, GOOD_SYLLABLES_KO, "short", "long")
    return _within(a.words, GOOD_WORDS_EN, "short", "long")


def pace_verdict(a: AnswerFacts) -> str | None:
    """ "ok", "slow", "fast", or None when the pace is unknown (not judged)."""
    if a.language == "ko" and a.syllables_per_second:
        return _within(a.syllables_per_second, PACE_SPS_KO, "slow", "fast")
    if a.words_per_minute is None:
        return None
    window = PACE_WPM_KO if a.language == "ko" else PACE_WPM_EN
    return _within(a.words_per_minute, window, "slow", "fast")


def _similarity_percent(a: AnswerFacts) -> int | None:
    if not a.reference or not a.words:
        return None
    return round(100 * len(a.matched) / len(a.reference))


# --------------------------------------------------------------------------- wording


def _span(window: tuple[float, float], sep: str) -> str:
    return f"{window[0]:g}{sep}{window[1]:g}"


_WPM_EN = _span(PACE_WPM_EN, "–")

_TIPS: dict[str, dict[str, tuple[str, str]]] = {
    # criterion → language → (tip when below 매우 좋음, tip to keep a 매우 좋음)
    "natural_delivery": {
        "ko": (
            "군말(음, 어, 그러니까)이 나오려 할 때 잠깐 멈추고 숨을 고르세요. 핵심 문장 세 개를 "
            "미리 정해 두면 말이 끊기지 않습니다.",
            "지금처럼 군말 없이 말하되, 중요한 수치 앞에서는 일부러 짧게 멈춰 강조해 보세요.",
        ),
        "en": (
            "When a filler (um, uh, you know) is coming, pause and breathe instead; settling "
            "three key sentences beforehand keeps the answer flowing.",
            "Keep speaking this cleanly, and try a deliberate short pause before key numbers.",
        ),
    },
    # natural_delivery marked down for a long pause alone: a tip about pauses.
    "long_pause": {
        "ko": (
            "생각하느라 몇 초 멈추는 것은 괜찮습니다. 더 오래 걸릴 것 같으면 “잠시 생각해 "
            "보겠습니다”라고 말하거나 질문을 되짚으며 생각을 정리하세요.",
            "",
        ),
        "en": (
            "A few seconds of silence to think is fine; if you need longer, say so (“let me "
            "think for a moment”) or restate the question while you gather your thoughts.",
            "",
        ),
    },
    "clarity": {
        "ko": (
            "상황 → 과제 → 행동 → 결과(STAR) 순서로 답하세요. 특히 마지막에 결과를 수치로 한 문장 "
            "덧붙이면 답변이 분명해집니다.",
            "STAR 구조가 좋습니다. 첫 문장에서 결론을 먼저 말하면 더 명확해집니다.",
        ),
        "en": (
            "Answer in the order situation → task → action → result (STAR), and close with one "
            "sentence stating the result in numbers.",
            "Good STAR structure; stating your conclusion in the first sentence makes it sharper.",
        ),
    },
    "examples": {
        "ko": (
            "‘예를 들어’로 시작하는 실제 사례 하나와 수치(정확도, 처리 시간, 사용자 수 등)를 "
            "넣으세요.",
            "사례가 좋습니다. 사례 전후의 수치를 비교해 보여 주면 더 설득력이 있습니다.",
        ),
        "en": (
            "Add one real case, introduced with “for example”, and a number (accuracy, "
            "latency, number of users…).",
            "Good examples; a before/after number comparison would make them more convincing.",
        ),
    },
    "technical_explanation": {
        "ko": (
            "사용한 기술의 이름을 정확히 말하고, ‘왜’ 그 방법을 택했는지 ‘~때문에’로 근거를 "
            "설명하세요.",
            "기술 설명이 탄탄합니다. 검토했던 대안과의 비교를 한 문장 덧붙여 보세요.",
        ),
        "en": (
            "Name the technologies you used precisely and explain why you chose them "
            "(“because …”, “so that …”).",
            "Solid technical explanation; add one sentence comparing the alternative you rejected.",
        ),
    },
    "communication": {
        "ko": (
            "답변은 1~2분 분량이 적당합니다. 질문에 대한 답을 첫 문장에서 바로 하고, 말하는 "
            "속도를 일정하게 유지하세요.",
            "길이와 속도가 적절합니다. 면접관의 질문 단어를 그대로 받아 답을 시작해 보세요.",
        ),
        "en": (
            "Aim for one to two minutes: answer the question in your first sentence, then keep "
            f"an even pace (about {_WPM_EN} words per minute).",
            "Good length and pace; try opening with the interviewer's own key words.",
        ),
    },
    "similarity": {
        "ko": (
            "질문이 묻는 핵심 단어와 자기소개서에 쓴 프로젝트·기술을 답변에 직접 언급해 "
            "질문과의 연결을 분명히 하세요.",
            "질문의 핵심을 잘 짚었습니다. 마지막에 지원 직무와의 연결을 한 문장 덧붙여 보세요.",
        ),
        "en": (
            "Use the question's key words and name the projects and skills from your "
            "self-introduction so the link to the question is explicit.",
            "You addressed the question well; close with one sentence linking it to the role.",
        ),
    },
}
#: Tie order when choosing tips (earlier = chosen first among equally weak criteria).
TIP_ORDER = (
    "natural_delivery",
    "clarity",
    "examples",
    "technical_explanation",
    "communication",
    "similarity",
)


def _seconds_en(seconds: float) -> str:
    """ "3 seconds", "1 second", "2.5 seconds"."""
    if abs(seconds - round(seconds)) < 0.05:
        return count_noun(round(seconds), "second")
    return f"{seconds:.1f} seconds"


def _seconds_ko(seconds: float) -> str:
    return f"{round(seconds)}초" if abs(seconds - round(seconds)) < 0.05 else f"{seconds:.1f}초"


def _communication_reason(a: AnswerFacts, length: str, pace: str | None) -> str:
    timed = bool(a.duration_s)
    if a.language == "ko":
        if timed:
            said = f"답변 시간 {duration_ko(a.duration_s or 0)}({a.words}단어)"
            fits, span = "30초~3분", "30초~3분"
        else:
            said = f"답변 {a.words}단어(약 {a.syllables}음절)"
            syllables = f"약 {_span(GOOD_SYLLABLES_KO, '~')}음절"
            fits, span = f"말로 30초~3분, {syllables}", f"말로 30초~3분({syllables})"
        if a.syllables_per_second and pace is not None:
            rate, comfortable = (
                f"초당 {a.syllables_per_second:.1f}음절",
                f"초당 {_span(PACE_SPS_KO, '~')}음절",
            )
        elif pace is not None:
            rate, comfortable = (
                f"분당 {a.words_per_minute:.0f}단어",
                f"분당 {_span(PACE_WPM_KO, '~')}단어",
            )
        else:
            rate = comfortable = ""
        first = (
            f"{said}, 말하기 속도 {rate}."
            if rate
            else f"{said}. 말하기 속도는 측정되지 않았습니다."
        )
        length_text = {
            "ok": f"길이가 알맞습니다({fits}).",
            "short": f"답변이 짧습니다. {span} 분량이 알맞습니다.",
            "long": f"답변이 깁니다. {span} 분량이 알맞습니다.",
        }[length]
        pace_text = {
            None: "",
            "ok": f" 듣기 편한 속도입니다({comfortable}).",
            "fast": f" 말이 빠릅니다. {comfortable}{josa(comfortable, '이')} 듣기 편합니다.",
            "slow": f" 말이 느립니다. {comfortable}{josa(comfortable, '이')} 듣기 편합니다.",
        }[pace]
        return f"{first} {length_text}{pace_text}"

    words = count_noun(a.words, "word")
    said = (
        f"Your answer ran {duration_en(a.duration_s or 0)} ({words})"
        if timed
        else (f"Your answer has {words}")
    )
    if pace is not None and a.words_per_minute is not None:
        said += f" at {count_noun(round(a.words_per_minute), 'word')} per minute"
    else:
        said += " (pace not measured)"
    window = (
        "30 seconds to 3 minutes"
        if timed
        else f"about {_span(GOOD_WORDS_EN, '–')} words, or 30 seconds to 3 minutes of speech"
    )
    good, bad = [], []
    if length == "ok":
        good.append(f"a good length ({window})")
    else:
        bad.append(f"{'too short' if length == 'short' else 'too long'} (aim for {window})")
    if pace == "ok":
        good.append(f"a comfortable pace ({_WPM_EN} words per minute)")
    elif pace is not None:
        bad.append(f"too {pace} ({_WPM_EN} words per minute is easy to follow)")
    verdict = join_en(good)
    if bad:
        verdict = f"{verdict}, but {join_en(bad)}" if good else join_en(bad)
    return f"{said}: {verdict}."


def _delivery_reason(a: AnswerFacts) -> str:
    pause = a.longest_pause_s
    if a.language == "ko":
        if pause is None:
            pause_text = "멈춤은 측정되지 않았습니다"
        else:
            note = (
                "생각하며 5초 이내로 멈추는 것은 자연스럽습니다"
                if pause <= PAUSE_NORMAL_S
                else "5초를 넘는 멈춤은 눈에 띕니다"
                if pause < PAUSE_STALL_S
                else "10초 이상 멈추면 답변이 끊긴 것처럼 들립니다"
            )
            pause_text = f"가장 긴 멈춤 {_seconds_ko(pause)}({note})"
        return (
            f"군말 {a.fillers}개(100단어당 {a.filler_rate:.1f}개), {pause_text}. 기준: 100단어당 "
            "3개 미만이고 5초를 넘는 멈춤이 없으면 매우 좋음, 100단어당 8개 이상이거나 10초 이상 "
            "멈추면 개선 필요함."
        )
    if pause is None:
        pause_text = "pauses were not measured"
    else:
        note = (
            "thinking pauses of up to 5 seconds are normal"
            if pause <= PAUSE_NORMAL_S
            else "a pause over 5 seconds is noticeable"
            if pause < PAUSE_STALL_S
            else "a pause of 10 seconds or more sounds like a stall"
        )
        pause_text = f"your longest pause was {_seconds_en(pause)} ({note})"
    return (
        f"{count_noun(a.fillers, 'filler word')} ({a.filler_rate:.1f} per 100 words); "
        f"{pause_text}. Rule: fewer than 3 filler words per 100 words and no pause over 5 "
        "seconds is very good; 8 or more per 100 words, or a pause of 10 seconds or more, "
        "needs improvement."
    )


def _reasons(a: AnswerFacts, length: str, pace: str | None, percent: int | None) -> dict[str, str]:
    language = a.language
    skills = [skill_label(skill, language) for skill in a.skills]
    shown = [a.shown.get(word, word) for word in a.matched[:6]]
    if language == "ko":
        star_ko = {"situation": "상황", "task": "과제", "action": "행동", "result": "결과"}
        parts_ko = ", ".join(star_ko[p] for p in a.star)
        return {
            "natural_delivery": _delivery_reason(a),
            "examples": (
                f"예시 표현(예를 들어 등) {a.example_markers}개, 수치 {a.numbers}개, "
                f"자기소개서의 프로젝트 언급 {len(a.projects)}개."
                if a.words >= MIN_WORDS_FOR_EXAMPLES
                else "답변이 너무 짧아 예시를 판단할 수 없습니다(NA)."
            ),
            "technical_explanation": (
                f"기술 용어 {len(skills)}개"
                + (f"({', '.join(skills)})" if skills else "")
                + f", 이유를 밝히는 표현(때문에, 그래서 등) {a.causal}개."
            ),
            "clarity": (
                "STAR 4요소(상황, 과제, 행동, 결과)가 드러나지 않습니다."
                if not a.star
                else f"STAR 4요소가 모두 드러납니다({parts_ko})."
                if len(a.star) == 4
                else f"STAR 4요소 중 {len(a.star)}개가 드러납니다({parts_ko})."
            ),
            "communication": _communication_reason(a, length, pace),
            "similarity": (
                "비교할 기준이나 답변이 없습니다(NA)."
                if percent is None
                else f"질문과 자기소개서의 핵심어 {len(a.reference)}개 중 {len(a.matched)}개를 "
                "언급했습니다" + (f"({', '.join(shown)})." if shown else ".")
            ),
        }
    return {
        "natural_delivery": _delivery_reason(a),
        "examples": (
            f"{count_noun(a.example_markers, 'example phrase')} (for example, such as, …), "
            f"{count_noun(a.numbers, 'number')} and "
            f"{count_noun(len(a.projects), 'project')} from your self-introduction."
            if a.words >= MIN_WORDS_FOR_EXAMPLES
            else "The answer is too short to judge examples (NA)."
        ),
        "technical_explanation": (
            count_noun(len(skills), "technical term")
            + (f" ({', '.join(skills)})" if skills else "")
            + f" and {count_noun(a.causal, 'connective')} giving a reason (because, so that, …)."
        ),
        "clarity": (
            "Found none of the 4 STAR parts (situation, task, action, result)."
            if not a.star
            else f"Found all 4 STAR parts ({', '.join(a.star)})."
            if len(a.star) == 4
            else f"Found {len(a.star)} of the 4 STAR parts ({', '.join(a.star)})."
        ),
        "communication": _communication_reason(a, length, pace),
        "similarity": (
            "Nothing to compare (NA)."
            if percent is None
            else f"The answer mentions {len(a.matched)} of "
            f"{count_noun(len(a.reference), 'key word')} from the question and your "
            "self-introduction" + (f" ({', '.join(shown)})." if shown else ".")
        ),
    }


def _topic(question: str, facts: IntroFacts, profile: Profile) -> tuple[str | None, str | None]:
    """(the intro's project the question is about, the question's technical topic). A
    question about a project with no skill in it has no topic of its own (None)."""
    lowered = question.lower()
    project = next((p for p in facts.projects if p.lower() in lowered), None)
    skill = next((s for s in [*facts.tools, *facts.skills] if s.lower() in lowered), None)
    if skill is None:
        skill = next(iter(find_skills(question)), None)
    if skill is not None:
        return project, skill_label(skill, profile.language)
    if project is not None:
        return project, None
    own = _template_words()
    keyword = next((w for w in top_keywords(question, 10) if w not in own), None)
    return None, (_as_written(keyword, question) if keyword else None) or _job_title(profile)


@functools.cache
def _template_words() -> frozenset[str]:
    """The content words of our own question templates ("mentions", "진행"): they are
    the wording of a question, never its topic."""
    samples = ("", "Docker와 Kubernetes", "machine learning", "'Zeta' 프로젝트 'Zeta' project")
    words: set[str] = set()
    for language, intro, years in itertools.product(("ko", "en"), samples, (0, 2)):
        profile = Profile(self_intro=intro or "-", language=language, years=years)
        for question in compose_questions(profile, read_intro(profile)):
            words.update(content_words(question))
    names = " ".join([*samples, *KO_SKILL_NAMES.values()])
    return frozenset(words - set(content_words(names)))


def model_answer(question: str, profile: Profile, facts: IntroFacts) -> str:
    """A STAR template filled with the question's topic and the candidate's own material."""
    language = profile.language
    asked_project, topic = _topic(question, facts, profile)
    project = asked_project or (facts.projects[0] if facts.projects else None)
    skills = [*facts.tools, *(s for s in facts.skills if s in CONCEPTS)][:3]
    names = [skill_label(skill, language) for skill in skills]
    result = facts.results[0] if facts.results else None
    if language == "ko":
        where = _project_ko(project) if project else "이전 프로젝트"
        problem = (
            f"‘{topic}’{josa(topic, '과')} 관련된 문제" if topic else "가장 어려웠던 기술적 문제"
        )
        tools = f"{', '.join(names)} 기술을 활용해" if names else "적합한 도구를 골라"
        outcome = (
            f"그 결과 자기소개서에 적은 성과({result})를 냈고, 이를 지표로 검증했습니다."
            if result
            else "그 결과 핵심 지표(예: 처리 시간, 정확도)를 수치로 개선했습니다."
        )
        return (
            "[오프라인 템플릿: 괄호 부분을 자신의 실제 경험으로 채워 말해 보세요] "
            f"(상황) {where}에서 {problem}{josa(problem, '을')} 해결해야 했습니다. "
            "(과제) 제가 맡은 목표는 (구체적 목표)였습니다. "
            f"(행동) {tools} 원인을 분석하고 해결책을 설계·구현했습니다. 이 방법을 고른 이유는 "
            "(다른 대안보다 나은 점) 때문입니다. 예를 들어 (구체적 사례)가 있었습니다. "
            f"(결과) {outcome} 이 경험을 살려 {profile.company}의 {profile.job_title} 업무에서도 "
            "같은 방식으로 기여하겠습니다."
        )
    where = _project_en(project) if project else "a previous project"
    problem = f'a problem around "{topic}"' if topic else "(the hardest technical problem)"
    tools = f"I used {join_en(names)}" if names else "I chose suitable tools"
    if result and is_verb_phrase(result):
        outcome = f"As a result I {result}, which I verified against our metrics."
    elif result:
        outcome = (
            f"As a result we reached the figure in my self-introduction ({result}), which I "
            "verified against our metrics."
        )
    else:
        outcome = "As a result the key metric (e.g. latency or accuracy) improved measurably."
    return (
        "[Offline template: fill the brackets with your own experience] "
        f"(Situation) In {where} we had to solve {problem}. "
        "(Task) My goal was (the concrete goal). "
        f"(Action) {tools} to analyse the cause and to design and build a fix; I chose this "
        "approach because (why it beat the alternatives). For example, (a concrete case). "
        f"(Result) {outcome} I would bring the same approach to the {_job_title(profile)} role "
        f"at {profile.company}."
    )


# --------------------------------------------------------------------------- the engine


class OfflineEngine:
    """Rule-based questions and evaluations (the module docstring states the rules)."""

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
        percent = _similarity_percent(a)
        reasons = _reasons(a, length, pace, percent)

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
                "natural_delivery": _rate_delivery(a),
                "examples": _rate_examples(a),
                "technical_explanation": _rate_technical(a),
                "clarity": _rate_clarity(a),
                "communication": Rating.from_score(int(length == "ok") + int(pace in ("ok", None))),
                "similarity": None if percent is None else similarity_rating(percent),
            }
        scores = [r.score for r in ratings.values() if r is not None]
        overall = Rating.from_score(statistics.median_low(scores)) if scores else Rating.FINE
        overall_reason = (
            f"오프라인 규칙 기반 평가: 나머지 항목 점수의 중앙값({overall.label('ko')})."
            if language == "ko"
            else "Offline rule-based evaluation: the middle rating of the other criteria "
            f"({overall.label('en')})."
        )
        # Marked down for a long pause alone (few fillers): the tip is about pauses.
        pause_only = (
            a.words > 0
            and a.filler_rate < FILLER_RATE_GOOD
            and a.longest_pause_s is not None
            and a.longest_pause_s > PAUSE_NORMAL_S
        )

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
        tips = []
        for key in ranked[:3]:
            fix, keep = _TIPS[key][language]
            if key == "natural_delivery" and pause_only:
                fix = _TIPS["long_pause"][language][0]
            tips.append(keep if ratings[key] is Rating.VERY_GOOD else fix)
        return tips
