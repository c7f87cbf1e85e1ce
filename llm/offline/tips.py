"""Tips and the model answer.

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

from llm.offline.grammar import join_en, josa, window_text
from llm.offline.intro import IntroFacts, is_verb_phrase, read_intro
from llm.offline.questions import as_written, compose_questions, job_title, project_en, project_ko
from llm.offline.rating import PACE_WPM_EN
from llm.offline.vocabulary import CONCEPTS, KO_SKILL_NAMES, skill_label
from llm.offline.words import content_words, find_skills, top_keywords
from llm.schemas import Language, Profile, Rating

_WPM_EN = window_text(PACE_WPM_EN, "–")

TIPS: dict[str, dict[str, tuple[str, str]]] = {
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


def tip_for(key: str, rating: Rating, language: Language, *, pause_only: bool = False) -> str:
    """One criterion's tip: its fix below 매우 좋음, how to keep it at 매우 좋음 (natural
    delivery marked down for a long pause alone: the tip about pauses)."""
    fix, keep = TIPS[key][language]
    if key == "natural_delivery" and pause_only:
        fix = TIPS["long_pause"][language][0]
    return keep if rating is Rating.VERY_GOOD else fix


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
    return None, (as_written(keyword, question) if keyword else None) or job_title(profile)


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
        where = project_ko(project) if project else "이전 프로젝트"
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
    where = project_en(project) if project else "a previous project"
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
        f"(Result) {outcome} I would bring the same approach to the {job_title(profile)} role "
        f"at {profile.company}."
    )
