"""The offline engine: questions and evaluations by stated rules, with no language model.

It runs when no LLM endpoint is configured, and stands in for one that fails
(`llm.engine.FallbackEngine`). It is honest about what it is: every result carries
``engine="offline"``, the overall reason says the evaluation is rule-based, and the
model answer is a labelled template. It is deterministic: the same input gives the
same output.

Reading the self-introduction
-----------------------------
- **Skills**: a fixed vocabulary (`TECH_TERMS`: Python, PyTorch, TensorFlow, YOLO,
  Kubernetes, Docker, SQL, React, AWS, … and Korean terms such as 딥러닝, 자연어 처리,
  객체 탐지, 모델 경량화, 도커 → Docker), in order of first mention.
- **Projects**: quoted names ("…", '…', “…”, 「…」, 『…』), CamelCase names
  (EmoVision) that are not skills, up to three noun words before 프로젝트 ("감정 인식
  프로젝트") or before "project" ("the emotion recognition project"), and runs of two to
  four Capitalised Words (Smart Factory Monitor) — minus the company and the job title.
- **Results**: a number with a unit (%, 배, x, ms, 초, 명, users, …) and the words
  around it ("추론 속도 40% 개선", "cut latency by 40%").
- **Keywords**: the remaining content words (Korean particles and verb endings
  stripped, stop words dropped), most frequent first.

Questions (always three, in the profile's language)
---------------------------------------------------
1. A deep dive into the first project (role, hardest problem, solution), asking how
   the first result was measured; without a project, the same about the first skill,
   then the top keyword; then a generic project question for the job title.
2. Why the first tool was chosen (a skill that is not a field such as 딥러닝), and its
   trade-offs, naming the second skill too; with only a field, which tool they chose
   in it and why; with neither, a technical-choice question for the job title.
3. A STAR collaboration / problem-solving question for the job title at the company,
   set in the second project (or the first; or the years of experience).

Rating an answer (개선 필요함 = 0, 무난함 = 1, 매우 좋음 = 2)
----------------------------------------------------------
Words are the transcript's whitespace-separated tokens. An empty answer gets 개선 필요함
everywhere except similarity and examples (NA).

- **natural_delivery (자연스러운 답변)**: filler rate = filler words per 100 words (the
  speech worker's ``filler_count`` if given, else fillers counted in the transcript:
  음, 어, 아, 뭐, 막, 약간, 그러니까, um, uh, er, you know, i mean, basically, …);
  longest pause from the metrics (unknown = not judged). 매우 좋음: rate < 3 and
  longest pause < 3 s; 개선 필요함: rate ≥ 8 or longest pause ≥ 6 s; otherwise 무난함.
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
- **communication (소통 방식)**: length is right at 25–400 words in Korean (40–400 in
  English); pace is right at 3–7 Hangul syllables per second in Korean when measured
  (else 60–160 words per minute), 100–180 words per minute in English (unknown pace
  counts as right: it is not judged). 매우 좋음: both right; 무난함: one;
  개선 필요함: neither.
- **similarity (reference와의 유사도)**: the reference is the top 8 keywords of the
  question (company and job-title words left out) plus 8 of the self-introduction's
  skills and keywords (skills first); match % = the
  share of them the answer mentions (a Korean word matches with its particles; a word
  matches a longer one it starts). 매우 좋음: ≥ 50 %; 무난함: ≥ 25 %; otherwise 개선 필요함.
  NA when there is no reference or no answer.
- **overall (전반적인 점수)**: the lower median (statistics.median_low) of the other
  six scores, NA ones left out.

Tips: one per criterion, the three weakest first (lowest score; ties in the fixed order
natural_delivery, clarity, examples, technical_explanation, communication, similarity),
phrased as a fix when the score is below 매우 좋음 and as a way to keep it otherwise.
Model answer: a STAR template filled with the question's topic and the candidate's own
project, skills and result.
"""

from __future__ import annotations

import itertools
import re
import statistics
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llm.schemas import (
    Criterion,
    Evaluation,
    Language,
    OptionalCriterion,
    Profile,
    Questions,
    Rating,
    SimilarityCriterion,
    SpeakingMetrics,
    similarity_rating,
)
from llm.settings import LlmSettings

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
    currently recently hit""".split()
)

_FILLERS_KO = {
    "음",
    "음음",
    "으음",
    "음…",
    "어",
    "어어",
    "아",
    "에",
    "엄",
    "흠",
    "뭐",
    "막",
    "약간",
    "그니까",
    "그러니까",
    "뭐랄까",
    "이제",
    "그냥",
}
_FILLERS_EN = {"um", "umm", "uh", "uhh", "uhm", "er", "erm", "ah", "hmm", "mm", "basically"}
_FILLER_BIGRAMS_EN = {("you", "know"), ("i", "mean")}

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
_RESULT_RE = re.compile(rf"(\d+(?:[.,]\d+)?)\s?({_UNIT})", re.IGNORECASE)
_RATIO_UNITS = {"%", "%p", "퍼센트", "배", "x", "times", "percent", "points", "point"}
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
_RESULT_VERBS_KO = (
    "개선",
    "향상",
    "감소",
    "단축",
    "증가",
    "절감",
    "달성",
    "상승",
    "줄",
    "늘",
    "높",
    "낮",
)

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

#: Longest answer still of the right length (words); about three minutes of speech.
MAX_GOOD_WORDS = 400
#: Shortest answer of the right length, by language (a Korean word carries more).
MIN_GOOD_WORDS = {"ko": 25, "en": 40}
#: Pace range (words per minute) counted as right, by language.
PACE_RANGE = {"ko": (60.0, 160.0), "en": (100.0, 180.0)}
#: Korean pace range in Hangul syllables per second (read first when measured).
SYLLABLE_RANGE = (3.0, 7.0)
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
        if len(words) >= 2 and 2 * lowercase > len(words) and not all(map(_is_skill, words)):
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


def find_results(text: str) -> list[str]:
    """Measured results: a number with a unit and the words around it. A ratio (%, 배,
    x, times, percent) always counts; another unit (ms, 초, 명, users, …) only next to a
    result word (개선, 단축, improved, reduced, …), so "4명의 팀" is not a result."""
    results = []
    for match in _RESULT_RE.finditer(text):
        ratio = match.group(2).lower() in _RATIO_UNITS
        sentence_start = max(text.rfind(".", 0, match.start()), text.rfind("\n", 0, match.start()))
        before = text[sentence_start + 1 : match.start()].split()
        after = text[match.end() :].split()
        if _has_hangul(text[max(0, match.start() - 20) : match.end() + 20]):
            lead = [w for w in (normalise_word(t) for t in before[-2:]) if w][-2:]
            stem = after[0].strip(_PUNCT) if after else ""
            tail = next((verb for verb in _RESULT_VERBS_KO if stem.startswith(verb)), "")
            if not (ratio or tail):
                continue
            tail = tail if len(tail) > 1 else ""  # 줄였 → keep the phrase, drop the stub
            phrase = " ".join([*lead, match.group(0).strip(), tail]).strip()
        else:
            lead = [t.strip(_PUNCT) for t in before[-4:] if t.strip(_PUNCT)]
            nearby = {t.lower() for t in [*lead, *(t.strip(_PUNCT) for t in after[:2])]}
            if not (ratio or nearby & _RESULT_WORDS_EN):
                continue
            phrase = " ".join([*lead, match.group(0).strip()]).strip()
        if phrase not in results:
            results.append(phrase)
    return results


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


def compose_questions(profile: Profile, facts: IntroFacts) -> list[str]:
    """The three questions (see the module docstring), in the profile's language."""
    project = facts.projects[0] if facts.projects else None
    other = facts.projects[1] if len(facts.projects) > 1 else project
    result = facts.results[0] if facts.results else None
    # Tools first: "why PyTorch?" is a better trade-off question than "why deep learning?".
    skills = facts.tools + [skill for skill in facts.skills if skill in CONCEPTS]
    # Without a named project, the first question is about a skill, then a keyword.
    keyword = None if project else (skills[0] if skills else None)
    if keyword is None and not project and facts.keywords:
        keyword = facts.keywords[0]
    if keyword is not None and skills and keyword == skills[0] and len(skills) > 1:
        skills = [skills[1], skills[0], *skills[2:]]  # the second question takes another
    job, company, years = _job_title(profile), profile.company, profile.years

    if profile.language == "ko":
        if project:
            q1 = (
                f"자기소개서에서 언급하신 {_project_ko(project)}에 대해 여쭙겠습니다. "
                "그 프로젝트에서 맡으신 역할과 가장 어려웠던 기술적 문제는 무엇이었고, "
                "어떻게 해결하셨나요?"
            )
        elif keyword:
            q1 = (
                f"자기소개서에서 ‘{keyword}’ 관련 경험을 말씀하셨습니다. 그 경험에서 맡으신 역할과 "
                "가장 어려웠던 문제, 그리고 어떻게 해결하셨는지 구체적으로 설명해 주세요."
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
                f"자기소개서에 {skills[0]}, {skills[1]} 등의 기술을 적어 주셨습니다. "
                f"그중 {skills[0]} 기술을 선택한 이유는 무엇이며, "
                "검토했던 다른 대안과 비교해 어떤 트레이드오프가 있었나요?"
            )
        elif skills and skills[0] not in CONCEPTS:
            q2 = (
                f"자기소개서에 적어 주신 {skills[0]} 기술을 선택한 이유는 무엇이며, 검토했던 다른 "
                "대안과 비교해 어떤 장단점(트레이드오프)이 있었나요?"
            )
        elif skills:  # a field (딥러닝, 추천 시스템), not a tool: ask for the tool
            q2 = (
                f"자기소개서에 적어 주신 {skills[0]} 분야에서 직접 선택한 핵심 기술이나 "
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
            context = f"{years}년의 경력"
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
    elif keyword:
        q1 = (
            f'Your self-introduction mentions experience with "{keyword}". What was your role, '
            "what was the hardest problem, and how did you solve it?"
        )
    else:
        q1 = (
            f"Pick the project most relevant to the {job} role that you have worked on: what was "
            "your role, what was the hardest technical problem, and how did you solve it?"
        )
    if result:
        q1 += f" Also explain how you measured and verified the result you describe ({result})."
    if len(skills) >= 2 and skills[0] not in CONCEPTS:
        q2 = (
            f"You list {skills[0]} and {skills[1]} among your skills. Why did you choose "
            f"{skills[0]}, and what trade-offs did it have compared with the alternatives you "
            "considered?"
        )
    elif skills and skills[0] not in CONCEPTS:
        q2 = (
            f"Why did you choose {skills[0]}, and what trade-offs did it have compared with the "
            "alternatives you considered?"
        )
    elif skills:  # a field (machine learning), not a tool: ask for the tool
        q2 = (
            f"In your work on {skills[0]}, pick one key technology or method you chose yourself: "
            "why did you choose it, and what trade-offs did it have compared with the "
            "alternatives?"
        )
    else:
        q2 = (
            f"Pick one key technology you used recently as a {job}: why did you choose it, and "
            "what trade-offs did it have compared with the alternatives?"
        )
    if other:
        context = _project_en(other)
    elif years > 0:
        context = f"your {years} years of experience"
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

    #: Whitespace-separated words in the transcript.
    words: int
    #: Filler words (from the metrics when the speech worker counted them).
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


def _count_fillers(text: str) -> int:
    tokens = [t.strip(_PUNCT).lower() for t in text.split()]
    tokens = [t for t in tokens if t]
    count = sum(1 for t in tokens if t in _FILLERS_KO or t in _FILLERS_EN)
    count += sum(1 for pair in itertools.pairwise(tokens) if pair in _FILLER_BIGRAMS_EN)
    return count


def _word_matches(reference: str, words: list[str]) -> bool:
    for word in words:
        if word == reference:
            return True
        shorter = min(len(word), len(reference))
        needed = 2 if _has_hangul(reference) else 4
        if shorter >= needed and (word.startswith(reference) or reference.startswith(word)):
            return True
    return False


def analyse_answer(
    profile: Profile,
    facts: IntroFacts,
    question: str,
    answer: str,
    metrics: SpeakingMetrics,
) -> AnswerFacts:
    """Measure `answer` for the rating rules."""
    tokens = answer.split()
    words = len(tokens)
    fillers = metrics.filler_count if metrics.filler_count is not None else _count_fillers(answer)
    rate = 100.0 * fillers / words if words else 0.0
    wpm = metrics.words_per_minute
    if wpm is None and metrics.duration_s and words:
        wpm = words / metrics.duration_s * 60.0

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
        words=words,
        fillers=fillers,
        filler_rate=rate,
        longest_pause_s=metrics.longest_pause_s,
        words_per_minute=wpm,
        syllables_per_second=metrics.syllables_per_second,
        skills=answer_skills,
        causal=len(_CAUSAL_RE.findall(answer)),
        example_markers=len(_EXAMPLE_RE.findall(answer)),
        numbers=len(_NUMBER_RE.findall(answer)),
        projects=mentioned_projects,
        star=[part for part, cue in _STAR_CUES.items() if cue.search(answer)],
        reference=reference,
        matched=matched,
    )


def _rate_delivery(a: AnswerFacts) -> Rating:
    pause = a.longest_pause_s
    if a.filler_rate >= 8 or (pause is not None and pause >= 6.0):
        return Rating.NEEDS_IMPROVEMENT
    if a.filler_rate < 3 and (pause is None or pause < 3.0):
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


def _communication_checks(a: AnswerFacts, language: Language) -> tuple[bool, bool]:
    length_ok = MIN_GOOD_WORDS[language] <= a.words <= MAX_GOOD_WORDS
    if language == "ko" and a.syllables_per_second:
        low, high = SYLLABLE_RANGE
        return length_ok, low <= a.syllables_per_second <= high
    low, high = PACE_RANGE[language]
    pace_ok = a.words_per_minute is None or low <= a.words_per_minute <= high
    return length_ok, pace_ok


def _similarity_percent(a: AnswerFacts) -> int | None:
    if not a.reference or not a.words:
        return None
    return round(100 * len(a.matched) / len(a.reference))


# --------------------------------------------------------------------------- wording

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
            "사례가 좋습니다. 사례 전후의 수치를 비교해 보여 주면 더 설득력 있습니다.",
        ),
        "en": (
            "Add one real case introduced with “for example”, with a number (accuracy, latency, "
            "users…).",
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
            "an even pace (about 100–180 words per minute).",
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


def _reasons(
    a: AnswerFacts, language: Language, length_ok: bool, pace_ok: bool, percent: int | None
) -> dict[str, str]:
    pause = "unknown" if a.longest_pause_s is None else f"{a.longest_pause_s:.1f} s"
    wpm = "unknown" if a.words_per_minute is None else f"{a.words_per_minute:.0f}"
    skills = ", ".join(a.skills) or "-"
    star_ko = {"situation": "상황", "task": "과제", "action": "행동", "result": "결과"}
    if language == "ko":
        pause_ko = "측정 안 됨" if a.longest_pause_s is None else f"{a.longest_pause_s:.1f}초"
        if a.syllables_per_second:
            wpm_ko, range_ko = f"초당 {a.syllables_per_second:.1f}음절", "3~7음절"
        elif a.words_per_minute is not None:
            wpm_ko, range_ko = f"분당 {a.words_per_minute:.0f}단어", "분당 60~160단어"
        else:
            wpm_ko, range_ko = "측정 안 됨", "분당 60~160단어"
        return {
            "natural_delivery": (
                f"군말 {a.fillers}개(100단어당 {a.filler_rate:.1f}개), 가장 긴 멈춤 {pause_ko}. "
                "기준: 100단어당 3개 미만·3초 미만이면 매우 좋음, "
                "8개 이상이거나 6초 이상이면 개선 필요함."
            ),
            "examples": (
                f"예시 표현 {a.example_markers}개, 수치 {a.numbers}개, 자기소개서 프로젝트 언급 "
                f"{len(a.projects)}개."
                if a.words >= MIN_WORDS_FOR_EXAMPLES
                else "답변이 너무 짧아 예시를 판단할 수 없습니다(NA)."
            ),
            "technical_explanation": (
                f"기술 용어 {len(a.skills)}개({skills}), 인과 표현(때문에, 그래서 등) {a.causal}개."
            ),
            "clarity": (
                "STAR 요소 "
                + (", ".join(star_ko[p] for p in a.star) or "없음")
                + f" ({len(a.star)}/4)."
            ),
            "communication": (
                f"답변 {a.words}단어({'적절' if length_ok else '부적절'}: 25~400), 속도 {wpm_ko}"
                f"({'적절' if pace_ok else '부적절'}: {range_ko})."
            ),
            "similarity": (
                "비교할 기준이나 답변이 없습니다(NA)."
                if percent is None
                else f"질문·자기소개서 핵심어 {len(a.reference)}개 중 {len(a.matched)}개 언급"
                f"({', '.join(a.matched[:6]) or '-'})."
            ),
        }
    return {
        "natural_delivery": (
            f"{a.fillers} filler words ({a.filler_rate:.1f} per 100 words), longest pause "
            f"{pause}. Rule: under 3 per 100 and under 3 s is very good; 8 or more, or 6 s or "
            "more, needs improvement."
        ),
        "examples": (
            f"Example markers: {a.example_markers}; numbers: {a.numbers}; projects from the "
            f"self-introduction mentioned: {len(a.projects)}."
            if a.words >= MIN_WORDS_FOR_EXAMPLES
            else "The answer is too short to judge examples (NA)."
        ),
        "technical_explanation": (
            f"{len(a.skills)} technical terms ({skills}), {a.causal} causal connectives "
            "(because, so that, …)."
        ),
        "clarity": f"STAR parts found: {', '.join(a.star) or 'none'} ({len(a.star)}/4).",
        "communication": (
            f"{a.words} words ({'right' if length_ok else 'off'}: 40–400), pace {wpm} words per "
            f"minute ({'right' if pace_ok else 'off'}: 100–180)."
        ),
        "similarity": (
            "Nothing to compare (NA)."
            if percent is None
            else f"Mentions {len(a.matched)} of {len(a.reference)} key words of the question and "
            f"self-introduction ({', '.join(a.matched[:6]) or '-'})."
        ),
    }


def _topic(question: str, facts: IntroFacts, profile: Profile) -> tuple[str | None, str]:
    """(the intro's project the question is about, the question's technical topic)."""
    lowered = question.lower()
    project = next((p for p in facts.projects if p.lower() in lowered), None)
    skill = next((s for s in [*facts.tools, *facts.skills] if s.lower() in lowered), None)
    if skill is None:
        skill = next(iter(find_skills(question)), None)
    if skill is None:
        taken = set(content_words(project or ""))
        skill = next((w for w in top_keywords(question, 5) if w not in taken), None)
    return project, skill or _job_title(profile)


def model_answer(question: str, profile: Profile, facts: IntroFacts) -> str:
    """A STAR template filled with the question's topic and the candidate's own material."""
    asked_project, topic = _topic(question, facts, profile)
    project = asked_project or (facts.projects[0] if facts.projects else None)
    skills = ", ".join([*facts.tools, *(s for s in facts.skills if s in CONCEPTS)][:3])
    result = facts.results[0] if facts.results else None
    if profile.language == "ko":
        where = _project_ko(project) if project else "이전 프로젝트"
        tools = f"{skills} 기술을 활용해" if skills else "적합한 도구를 골라"
        outcome = (
            f"그 결과 자기소개서에 적은 성과({result})를 냈고, 이를 지표로 검증했습니다."
            if result
            else "그 결과 핵심 지표(예: 처리 시간, 정확도)를 수치로 개선했습니다."
        )
        return (
            "[오프라인 템플릿: 괄호 부분을 자신의 실제 경험으로 채워 말해 보세요] "
            f"(상황) {where}에서 ‘{topic}’ 관련 문제를 해결해야 했습니다. "
            "(과제) 제가 맡은 목표는 (구체적 목표)였습니다. "
            f"(행동) {tools} 원인을 분석하고 해결책을 설계·구현했습니다. 이 방법을 고른 이유는 "
            "(다른 대안보다 나은 점) 때문입니다. 예를 들어 (구체적 사례)가 있었습니다. "
            f"(결과) {outcome} 이 경험을 살려 {profile.company}의 {profile.job_title} 업무에서도 "
            "같은 방식으로 기여하겠습니다."
        )
    where = _project_en(project) if project else "a previous project"
    tools = f"I used {skills}" if skills else "I chose suitable tools"
    outcome = (
        f"As a result we achieved {result}, which I verified against our metrics."
        if result
        else "As a result the key metric (e.g. latency or accuracy) improved measurably."
    )
    return (
        "[Offline template: fill the brackets with your own experience] "
        f'(Situation) In {where} we had to solve a problem around "{topic}". '
        "(Task) My goal was (the concrete goal). "
        f"(Action) {tools} to analyse the cause and design and build a fix; I chose this because "
        "(why it beat the alternatives). For example, (a concrete case). "
        f"(Result) {outcome} I would bring the same approach to the {_job_title(profile)} role at "
        f"{profile.company}."
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
        metrics: SpeakingMetrics | Mapping[str, Any] | None = None,
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
        metrics: SpeakingMetrics | Mapping[str, Any] | None = None,
    ) -> Evaluation:
        """The seven-criterion evaluation, synchronously."""
        language = profile.language
        measured = SpeakingMetrics.coerce(metrics)
        answer = answer[: self.settings.max_answer_chars]
        facts = read_intro(profile)
        a = analyse_answer(profile, facts, question, answer, measured)
        length_ok, pace_ok = _communication_checks(a, language)
        percent = _similarity_percent(a)
        reasons = _reasons(a, language, length_ok, pace_ok, percent)

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
                "communication": Rating.from_score(int(length_ok) + int(pace_ok)),
                "similarity": None if percent is None else similarity_rating(percent),
            }
        scores = [r.score for r in ratings.values() if r is not None]
        overall = Rating.from_score(statistics.median_low(scores)) if scores else Rating.FINE
        overall_reason = (
            f"오프라인 규칙 기반 평가: 나머지 항목 점수의 중앙값({overall.value})."
            if language == "ko"
            else "Offline rule-based evaluation: the median of the other criteria "
            f"({overall.english})."
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
            tips=self._tips(ratings, language),
            model_answer=model_answer(question, profile, facts),
            engine="offline",
        )

    @staticmethod
    def _tips(ratings: Mapping[str, Rating | None], language: Language) -> list[str]:
        ranked = sorted(
            (key for key in TIP_ORDER if ratings.get(key) is not None),
            key=lambda key: (ratings[key].score, TIP_ORDER.index(key)),  # type: ignore[union-attr]
        )
        tips = []
        for key in ranked[:3]:
            fix, keep = _TIPS[key][language]
            tips.append(keep if ratings[key] is Rating.VERY_GOOD else fix)
        return tips
