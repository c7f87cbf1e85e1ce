"""Reading words: how a text is cut into words (Korean particles and verb endings
stripped, stop words dropped), its keywords (most frequent first) and the known skills
it names (`find_skills`, in order of first mention).
"""

from __future__ import annotations

import re
from collections import Counter

from llm.offline.vocabulary import TECH_TERMS

PUNCT = ".,!?;:\"'()[]{}<>“”‘’「」『』《》·…~`*_=|\\/-"

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

STOP_KO = set(
    """저는 제가 저희 저의 제 나는 우리 또한 그리고 하지만 그래서 그러나 가장 매우 정말 특히 이후
    당시 관련 대해 위해 이를 이러한 해당 기반 경우 부분 정도 때문 것 수 등 및 더 잘 좀 또 그 이 저
    통해 있는 없는 같은 많은 여러 다양 이번 지금 현재 앞으로 무엇 어떻게 어떤 왜 하나 골라 주세요
    말씀 여쭙겠습니다 자기소개서 언급 설명 구체적 그중 적어 순서 대안 비교 검토 선택 이유 장단점
    트레이드오프 상황 과제 행동 결과 경험 역할 문제 해결 측정 검증 성과 특히 협업 동료 팀원 의견
    예상 생겼던 중요 직무 업무 회사 지원 기술 기술적 프로젝트 년 경력 학업 개인""".split()
)
STOP_EN = set(
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


def has_hangul(text: str) -> bool:
    return re.search(r"[가-힣]", text) is not None


def hangul_share(text: str) -> float:
    """Hangul syllables among the letters (Hangul and Latin) of `text`: about 1 for Korean
    prose, lower with English tool names in it, 0 for English."""
    hangul = len(re.findall(r"[가-힣]", text))
    latin = len(re.findall(r"[A-Za-z]", text))
    return hangul / max(1, hangul + latin)


def in_language(text: str, language: str) -> bool:
    """Whether `text` is written in `language` ("ko": at least 30% of its letters Hangul,
    since Korean questions name English tools — "Hadoop에서 Spark로 옮긴 이유는?" is 45%
    — while an English sentence with a Korean word in it is under 10%; "en": no Hangul)."""
    if language == "ko":
        return hangul_share(text) >= 0.3
    return not has_hangul(text)


def normalise_word(token: str) -> str | None:
    """A content word's comparable form, or None for stop words, verbs and noise."""
    word = token.strip(PUNCT).lower()
    if not word:
        return None
    if has_hangul(word):
        if word in _KO_SUFFIX_SET:
            return None  # a particle left alone by splitting ("…’에서")
        for suffix in _KO_SUFFIXES:
            if word.endswith(suffix) and len(word) - len(suffix) >= 2:
                word = word[: -len(suffix)].strip(PUNCT)  # 'EmoVision'이라는 → emovision
                break
        else:
            if word.endswith(_KO_VERB_ENDINGS):
                return None
        if len(word) < 2 or word in STOP_KO:
            return None
        return word
    if len(word) < 3 or word in STOP_EN or word.isdigit():
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


# --------------------------------------------------------------------------- grounding


def _same_word(a: str, b: str) -> bool:
    """Two normalised words name the same thing: equal, or one holds the other (a compound:
    추천시스템 / 추천, kubernetes / kubernetes-based) when the shorter is specific enough
    (3 Hangul syllables or 4 letters; 2-syllable Korean words match only exactly)."""
    if a == b:
        return True
    short, long_ = sorted((a, b), key=len)
    minimum = 3 if has_hangul(short) else 4
    return len(short) >= minimum and short in long_


def grounding_words(question: str, intro: str) -> list[str]:
    """What `question` takes from the self-introduction `intro`: the content words and
    known skills the two share (question's order). Empty = the question is generic."""
    intro_words = set(content_words(intro))
    shared: list[str] = []
    for word in content_words(question):
        if word not in shared and any(_same_word(word, other) for other in intro_words):
            shared.append(word)
    intro_skills = set(find_skills(intro))
    for skill in find_skills(question):
        if skill in intro_skills and skill.lower() not in shared:
            shared.append(skill.lower())
    return shared


def ungrounded_questions(questions: list[str], intro: str) -> list[int]:
    """The 1-based numbers of the questions that name nothing from the self-introduction."""
    return [
        number
        for number, question in enumerate(questions, start=1)
        if not grounding_words(question, intro)
    ]


_SENTENCE_END_RE = re.compile(r"(?<=[.!?。])\s+|\n+")


def copies_intro(
    question: str, intro: str, *, min_sentence: int = 20, max_copied: int = 100
) -> bool:
    """Whether `question` is mostly the introduction copied back: two or more of its
    sentences (of at least `min_sentence` characters) word for word, or copied sentences
    of more than `max_copied` characters in all. Quoting one sentence before asking about
    it ("… 줄였습니다. 그 결과 무엇이 달라졌나요?") is a question; pasting the greeting and
    the rest of the introduction in front of one is not."""
    flat_question = " ".join(question.split())
    copied = [
        sentence
        for sentence in (" ".join(part.split()) for part in _SENTENCE_END_RE.split(intro))
        if len(sentence) >= min_sentence and sentence in flat_question
    ]
    return len(copied) >= 2 or sum(map(len, copied)) > max_copied


_CANDIDATE_VOICE = ("안녕하세요", "저는", "제가", "hello", "hi ", "hi,", "i am ", "i'm ", "my name")


def speaks_as_candidate(question: str) -> bool:
    """Whether `question` opens in the candidate's voice (a greeting, "저는 …", "I am …"):
    the introduction retold, not an interviewer's question."""
    return question.strip().lower().startswith(_CANDIDATE_VOICE)


def trim_retold_intro(question: str, intro: str) -> str:
    """`question` without the sentences in front of the question proper that retell the
    introduction: a greeting, "저는 …", or a sentence of the introduction word for word
    (small models often open with them). The last sentence always stays."""
    intro_sentences = {" ".join(part.split()) for part in _SENTENCE_END_RE.split(intro)}
    sentences = [part for part in _SENTENCE_END_RE.split(question.strip()) if part.strip()]
    while len(sentences) > 1 and (
        speaks_as_candidate(sentences[0]) or " ".join(sentences[0].split()) in intro_sentences
    ):
        sentences.pop(0)
    return " ".join(sentences)


def grounding_hints(intro: str, limit: int = 8) -> list[str]:
    """Things from the introduction a question could name: its known skills, then its
    most frequent content words."""
    hints: list[str] = []
    for word in [*find_skills(intro), *top_keywords(intro, limit)]:
        if word.lower() not in (h.lower() for h in hints):
            hints.append(word)
    return hints[:limit]
