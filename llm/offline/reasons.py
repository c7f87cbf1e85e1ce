"""The reason given for each rating, in plain words.

Each reason says what was measured in plain words ("Your answer ran 42 seconds (96
words) at 137 words per minute: a good length and a comfortable pace.").
"""

from __future__ import annotations

from llm.offline.grammar import count_noun, duration_en, duration_ko, join_en, josa, window_text
from llm.offline.rating import (
    GOOD_SYLLABLES_KO,
    GOOD_WORDS_EN,
    MIN_WORDS_FOR_EXAMPLES,
    PACE_SPS_KO,
    PACE_WPM_EN,
    PACE_WPM_KO,
    PAUSE_NORMAL_S,
    PAUSE_STALL_S,
    AnswerFacts,
)
from llm.offline.vocabulary import skill_label

_WPM_EN = window_text(PACE_WPM_EN, "–")


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
            syllables = f"약 {window_text(GOOD_SYLLABLES_KO, '~')}음절"
            fits, span = f"말로 30초~3분, {syllables}", f"말로 30초~3분({syllables})"
        if a.syllables_per_second and pace is not None:
            rate, comfortable = (
                f"초당 {a.syllables_per_second:.1f}음절",
                f"초당 {window_text(PACE_SPS_KO, '~')}음절",
            )
        elif pace is not None:
            rate, comfortable = (
                f"분당 {a.words_per_minute:.0f}단어",
                f"분당 {window_text(PACE_WPM_KO, '~')}단어",
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
        else f"about {window_text(GOOD_WORDS_EN, '–')} words, or 30 seconds to 3 minutes of speech"
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


def criterion_reasons(
    a: AnswerFacts, length: str, pace: str | None, percent: int | None
) -> dict[str, str]:
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
