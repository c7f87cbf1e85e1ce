"""Questions (always three, in the profile's language).

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
"""

from __future__ import annotations

import re

from llm.offline.grammar import count_noun, josa
from llm.offline.intro import IntroFacts, is_verb_phrase, second_person
from llm.offline.vocabulary import CONCEPTS, skill_label
from llm.schemas import Profile


def project_ko(name: str) -> str:
    return f"‘{name}’" if name.endswith("프로젝트") else f"‘{name}’ 프로젝트"


def project_en(name: str) -> str:
    return f'the "{name}"' if name.lower().endswith("project") else f'the "{name}" project'


def job_title(profile: Profile) -> str:
    # The default title is Korean; an English interview shows it in English.
    if profile.language == "en" and profile.job_title == "AI 개발자":
        return "AI developer"
    return profile.job_title


def as_written(word: str, text: str) -> str:
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
        keyword = as_written(facts.keywords[0], profile.self_intro)
    if keyword is not None and skills and keyword == skills[0] and len(skills) > 1:
        skills = [skills[1], skills[0], *skills[2:]]  # the second question takes another
    job, company, years = job_title(profile), profile.company, profile.years
    names = [skill_label(skill, language) for skill in skills]
    topic = skill_label(keyword, language) if keyword else None

    if language == "ko":
        if project:
            q1 = (
                f"자기소개서에서 언급하신 {project_ko(project)}에 대해 여쭙겠습니다. "
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
            context = project_ko(other)
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
            f"In your self-introduction you mention {project_en(project)}. What was your role, "
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
        context = project_en(other)
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
