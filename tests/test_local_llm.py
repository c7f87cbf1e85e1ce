"""The local engine with the REAL model: llama.cpp's server (llama-cpp-python) serving the
verified GGUF, reached through the product's own client.

One server for the module (loading it takes seconds, each generation tens of seconds on
two cores), niced so that it yields to whatever else runs. Skipped, with the reason, when
llama-cpp-python's server or the model is missing (`bash scripts/setup.sh --local-llm`
installs both; CI runs it). Nothing here asserts a wall-clock limit: the figures are
printed (`-s`) and docs/local-llm.md keeps them.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from llm.client import (
    MIN_MODEL_QUESTIONS,
    LlmClient,
    LlmOutputError,
    LlmTooSlowError,
    LlmUnavailableError,
    question_problems,
)
from llm.engine import FallbackEngine, fallback_label
from llm.local.choice import machine_facts
from llm.local.server import LocalLlmServer, LocalServerSettings
from llm.offline import OfflineEngine
from llm.offline.words import hangul_share, in_language
from llm.schemas import Evaluation, Profile, Questions
from llm.settings import LlmSettings
from stream.contract import SpeakingMetrics
from stream.ports import free_port
from stream.settings import BusSettings
from tests.conftest import own_nats_server

pytestmark = pytest.mark.slow

_FACTS = machine_facts(LlmSettings())
if not _FACTS.llama_cpp:
    pytest.skip(
        "llama-cpp-python's server is not installed (bash scripts/setup.sh --local-llm)",
        allow_module_level=True,
    )
if _FACTS.model_problem:
    pytest.skip(
        f"{_FACTS.model_problem} (bash scripts/setup.sh --local-llm)", allow_module_level=True
    )
MODEL = _FACTS.model_path

INTRO_KO = (
    "안녕하세요. 저는 3년 차 백엔드 개발자입니다. 결제 서비스 팀에서 Hadoop 기반 배치 정산을 "
    "Spark와 Airflow로 옮겨 야간 정산 시간을 6시간에서 2시간으로 줄였습니다. 또 Kafka로 "
    "결제 이벤트 파이프라인을 만들고 Grafana 대시보드로 장애 알림을 정리했습니다."
)
INTRO_EN = (
    "I am a backend engineer with three years on a payments team. I moved our nightly "
    "settlement batch away from Hadoop to Spark and Airflow, cutting it from six hours to two, "
    "built a Kafka pipeline for payment events, and cleaned up our Grafana alerting."
)
QUESTION_KO = "Hadoop에서 Spark로 정산 배치를 옮기면서 가장 어려웠던 점은 무엇이었나요?"
ANSWER_KO = (
    "음 가장 어려웠던 건 데이터 정합성이었습니다. 기존 Hadoop 결과와 Spark 결과를 2주 동안 "
    "매일 비교하는 검증 잡을 만들어서 차이를 0.01% 미만으로 맞춘 뒤에 전환했습니다."
)
QUESTION_EN = "What was the hardest part of moving the settlement batch from Hadoop to Spark?"
ANSWER_EN = (
    "Um, the hardest part was data consistency. For two weeks we ran both pipelines and a "
    "job compared their outputs every night, and we switched once the gap was under 0.01%."
)
METRICS = SpeakingMetrics(words_per_minute=130.0, filler_count=1, longest_pause_s=1.2)

HANGUL = re.compile(r"[가-힣]")


def local_settings(server: LocalLlmServer, **overrides: object) -> LlmSettings:
    values: dict = {
        "engine": "local",
        "base_url": server.base_url,
        "model": server.settings.alias,
        "timeout_s": 600,
        "max_retries": 1,
        "backoff_base_s": 0.1,
        "backoff_max_s": 0.2,
    }
    values.update(overrides)
    return LlmSettings(**values)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[LocalLlmServer]:
    settings = LocalServerSettings.from_llm_settings(LlmSettings(), MODEL, port=free_port())
    started = time.monotonic()
    async with LocalLlmServer(settings, nice=5) as running:
        print(f"\nllama.cpp server ready in {time.monotonic() - started:.1f} s, "
              f"RSS {rss_kib(running.process.pid) / 1024**2:.2f} GiB")  # fmt: skip
        yield running
        print(f"llama.cpp server RSS at the end {rss_kib(running.process.pid) / 1024**2:.2f} GiB")


@pytest.fixture
def own_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BusSettings]:
    """A nats-server of the test's own: on the session's shared one, the interviewer's
    durable consumer still holds the start events of sessions that earlier tests opened
    with no interviewer running, and would ask the model for their questions too."""
    for running in own_nats_server(tmp_path_factory, "local-llm-nats"):
        yield BusSettings(nats_url=running.url)


@pytest.fixture(scope="module")
async def client(server: LocalLlmServer) -> AsyncIterator[LlmClient]:
    async with LlmClient(local_settings(server)) as llm:
        yield llm


# --------------------------------------------------------------------------- questions


@pytest.mark.parametrize(("language", "intro"), [("ko", INTRO_KO), ("en", INTRO_EN)])
async def test_three_grounded_questions_in_the_right_language(
    client: LlmClient, language: str, intro: str
) -> None:
    profile = Profile(self_intro=intro, language=language, job_title="Backend engineer")
    # A sampled 1.5B model misses a whole Korean set now and then (`bench llm`: 1 set in 6
    # fell back after its correction): that is what the labelled fallback is for, and it is
    # tested below; here the model must write a usable set in one of two interviews.
    for attempt in (1, 2):
        started = time.monotonic()
        try:
            questions = await client.generate_questions(profile)  # usable, or it raises
        except LlmOutputError as exc:
            print(f"\nquestions {language}, try {attempt}: unusable ({exc})")
            if attempt == 2:
                raise
            continue
        break
    print(f"\nquestions {language}: {time.monotonic() - started:.1f} s: {questions.questions}")
    assert isinstance(questions, Questions) and questions.engine == "llm"
    assert len(questions.questions) == 3
    for question in questions.questions:
        assert in_language(question, language), question
    assert question_problems(questions, profile) == {}
    # At least two are the model's; one that still missed after the correction may be the
    # offline engine's at its place, and then the step says so (a 1.5B model writes a
    # generic Korean question now and then).
    rules = OfflineEngine().questions(profile).questions
    from_model = [q for q in questions.questions if q not in rules]
    assert len(from_model) >= MIN_MODEL_QUESTIONS, questions.questions
    if len(from_model) < 3:
        assert questions.fallback_error, "a question by the rules without a label"


# --------------------------------------------------------------------------- evaluation


@pytest.mark.parametrize(
    ("language", "intro", "question", "answer"),
    [("ko", INTRO_KO, QUESTION_KO, ANSWER_KO), ("en", INTRO_EN, QUESTION_EN, ANSWER_EN)],
)
async def test_an_evaluation_in_the_answers_language(
    client: LlmClient, language: str, intro: str, question: str, answer: str
) -> None:
    profile = Profile(self_intro=intro, language=language)
    started = time.monotonic()
    evaluation = await client.evaluate(profile, question, answer, METRICS)
    print(f"\nevaluation {language}: {time.monotonic() - started:.1f} s")
    assert isinstance(evaluation, Evaluation) and evaluation.engine == "llm"
    assert len(evaluation.tips) == 3 and evaluation.model_answer
    written = " ".join([*evaluation.tips, evaluation.model_answer, evaluation.overall.reason])
    if language == "ko":
        assert hangul_share(written) > 0.5, written  # prose, mostly Korean
    else:
        assert not HANGUL.search(written), written


async def test_two_sessions_at_once_each_get_a_whole_reply(server: LocalLlmServer) -> None:
    """Two candidates' steps reach the one model together: the second waits its turn.
    (llama-cpp-python's server, by default, ends the first streamed reply as soon as a
    second request waits: an empty reply, and a step fallen back for nothing.)"""
    import openai

    api = openai.AsyncOpenAI(base_url=server.base_url, api_key="local", max_retries=0)

    async def count_to(n: int) -> str:
        stream = await api.chat.completions.create(
            model=server.settings.alias,
            messages=[{"role": "user", "content": f"Count from 1 to {n}, digits only."}],
            max_tokens=48,
            temperature=0,
            stream=True,
        )
        parts = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
        return "".join(parts)

    try:
        first = asyncio.create_task(count_to(20))
        await asyncio.sleep(1.0)  # the first is streaming when the second arrives
        replies = await asyncio.gather(first, count_to(10))
    finally:
        await api.close()
    for reply in replies:
        assert re.sub(r"\D", "", reply).startswith("12345"), replies


# --------------------------------------------------------------------------- fallbacks


async def test_a_step_over_its_budget_falls_back_and_the_model_is_free_again(
    server: LocalLlmServer,
) -> None:
    profile = Profile(self_intro=INTRO_EN, language="en")
    engine = FallbackEngine(
        LlmClient(local_settings(server)), OfflineEngine(), questions_budget_s=0.5
    )
    try:
        questions = await engine.generate_questions(profile)
        assert questions.engine == "offline"
        assert questions.fallback_error == fallback_label(LlmTooSlowError("x"), "en", 0.5)
        # The abandoned request was streamed: the server stops generating at its next token
        # once the client went away (after the prompt, which it cannot interrupt), instead
        # of finishing a reply for nobody while the next step waits.
        for _ in range(600):
            if "Disconnected from client" in server.log_tail:
                break
            await asyncio.sleep(0.5)
        assert "Disconnected from client" in server.log_tail, server.log_tail
        engine.budgets_s["questions"] = None
        questions = await engine.generate_questions(profile)
        assert questions.engine == "llm" and questions.fallback_error is None
    finally:
        await engine.aclose()


async def test_a_server_killed_mid_interview_falls_back_offline() -> None:
    settings = LocalServerSettings.from_llm_settings(LlmSettings(), MODEL, port=free_port())
    async with LocalLlmServer(settings, nice=5) as own:
        engine = FallbackEngine(LlmClient(local_settings(own)), OfflineEngine())
        try:
            # Mid-interview: the questions came from the model, then the server dies.
            await own.stop()
            profile = Profile(self_intro=INTRO_KO)
            evaluation = await engine.evaluate(profile, QUESTION_KO, ANSWER_KO, METRICS)
            assert evaluation.engine == "offline"
            assert evaluation.fallback_error == fallback_label(LlmUnavailableError("x"), "ko")
            assert len(evaluation.rows()) == 7
        finally:
            await engine.aclose()


# --------------------------------------------------------------------------- intervue up


def test_up_runs_the_llm_role_and_hands_it_to_the_interviewer(tmp_path, models_dir) -> None:
    from tests.test_up import _children, _exited, _start_up, _stop, _wait_until

    ports = {name: free_port() for name in ("nats", "gateway", "dashboard")}
    up, log = _start_up(
        tmp_path,
        ports,
        models_dir,
        INTERVUE_UP_VISION_WORKERS="0",
        INTERVUE_UP_SPEECH_WORKERS="0",
        INTERVUE_LLM_ENGINE="local",
        INTERVUE_LLM_LOCAL_MODEL=str(MODEL),  # a user's GGUF works the same way
    )
    try:
        _wait_until(lambda: "intervue is up" in log.read_text(), 180, "the banner", log)
        text = log.read_text()
        before_banner = text[: text.index("intervue is up")]
        assert "[llm] " in before_banner and "Uvicorn running on http://127.0.0.1:" in text
        # The interviewer started after the model server was ready, and uses it.
        assert before_banner.index("Uvicorn running") < before_banner.index("[interviewer]")
        assert re.search(r"\[interviewer\] .*LLM engine: local, model intervue-local at "
                         r"http://127\.0\.0\.1:\d+/v1", text)  # fmt: skip
        assert re.search(
            r"LLM +local \(\S+\.gguf on llama\.cpp at http://127\.0\.0\.1:\d+/v1", text
        )
        assert "not ready" not in text
        [llm_pid] = [pid for pid, cmd in _children(up.pid).items() if "llama_cpp.server" in cmd]
    finally:
        code = _stop(up)
    assert code == 0, log.read_text()[-3000:]
    assert _exited(llm_pid)  # llama.cpp's server stopped with the rest


# --------------------------------------------------------------------------- a whole interview


@pytest.mark.e2e
@pytest.mark.timeout(1800)  # four model steps and Whisper on two cores: minutes, not seconds
@pytest.mark.parametrize("language", ["en", "ko"])
async def test_a_whole_interview_written_by_the_local_model(
    server: LocalLlmServer, own_bus: BusSettings, models_dir, tmp_path, language: str
) -> None:
    """As a candidate meets it: headless Chromium with a fake camera and microphone, the
    real VAD and Whisper, and the interviewer on the local model (`build_engine` with
    engine=local, as `intervue up` gives it): the questions and each spoken answer's
    evaluation are the model's (an offline stand-in would say engine "offline"), in the
    interview's language. The budgets are generous: Whisper and the vision worker share the
    two cores with the model here, and this is about who writes, not how fast."""
    from deploy.browser import launch_browser, logged_page
    from deploy.fake_media import make_answer_wav, make_face_y4m
    from llm.engine import build_engine
    from stream.turns import TurnSettings
    from tests import test_e2e_interview as e2e
    from tests.test_e2e_room import _export

    intro = e2e.INTRO if language == "en" else e2e.INTRO_KO
    sentences = e2e.SENTENCES[:3] if language == "en" else e2e.SENTENCES_KO[:3]
    video = make_face_y4m(tmp_path, seconds=4.0, fps=15)
    audio = make_answer_wav(
        tmp_path,
        sentences,
        [1.5, 1.5],
        voice="en-us" if language == "en" else "ko",
        lead_silence=4.0,
        trail_silence=8.0,
    )
    settings = local_settings(server, questions_budget_s=480.0, evaluation_budget_s=480.0)
    engine = build_engine(settings)
    whisper = "tiny.en" if language == "en" else "base"
    try:
        # Answers end by Done. The microphone's loop is silent for 12 s (trail + lead): a
        # question that comes as one of its sentences ends would have the silence rule (5 s
        # after speech) end that answer before any caption, by the luck of when the model's
        # questions come (it did in CI, 2026-12-07)
        async with e2e.interview_stack(
            own_bus, models_dir, whisper, TurnSettings(silence_end_s=0.0), engine=engine
        ) as stack:
            async with launch_browser(video=video, audio=audio) as browser:
                async with logged_page(browser, stack["url"]) as lp:
                    page = lp.page
                    await e2e._start(page, language, intro, job="Backend engineer")
                    await e2e._until(page, e2e._card("0-1"), 600, "the model's questions")
                    for index in range(3):
                        key = f"{index}-1"
                        if index:
                            await page.click("#next")
                            await e2e._until(page, e2e._card(key), 30, f"question {index + 1}")
                        # a caption of the answer, then Done: a spoken answer to evaluate
                        await e2e._until(
                            page,
                            e2e._card(key, "?.transcripts && Object.keys("
                                      + e2e._card(key) + ".transcripts).length"),
                            120, f"a caption of answer {index + 1}", lp.describe,
                        )  # fmt: skip
                        await page.keyboard.press("Control+Enter")
                        await e2e._until(
                            page, e2e._card(key, "?.evaluated"), 600,
                            f"the evaluation of answer {index + 1}", lp.describe,
                        )  # fmt: skip
                    await page.screenshot(path=str(tmp_path / f"local-{language}.png"))
                    text = await e2e._visible_text(page)
                    session = await page.evaluate("window.intervue.session")
                    e2e._no_identifiers(text, session)
    finally:
        await engine.aclose()
    events = (await asyncio.to_thread(_export, session, own_bus.nats_url))["events"]
    steps = {step: [e["data"] for e in events if e.get("step") == step] for step in
             ("questions", "asked", "evaluated")}  # fmt: skip
    [questions] = steps["questions"]
    if questions["engine"] != "llm":
        # a whole set the model missed (see the questions test): labelled for the candidate
        errors = [e["data"] for e in events if e.get("step") == "error"]
        assert any(e["stage"] == "questions" and e["message"] for e in errors), events
    for asked in steps["asked"]:
        assert in_language(asked["question"], language), asked["question"]
    evaluated = steps["evaluated"]
    assert len(evaluated) == 3
    for step in evaluated:
        evaluation = step["evaluation"]
        written = " ".join([*evaluation["tips"], evaluation["model_answer"]])
        assert in_language(written, language), written
        if step["engine"] != "llm" or evaluation.get("fallback_error"):
            # the rules wrote it, or part of it: the card says so, in the interview's language
            label = evaluation["fallback_error"]
            assert label and in_language(label, language) and label in text, evaluation
    # The model wrote the evaluations: a sampled 1.5B model misses a whole Korean one now
    # and then (one in three in one CI run, before a reply partly in another language was
    # mended part by part), and that one is the offline engine's, labelled, as above.
    by_model = [step for step in evaluated if step["engine"] == "llm"]
    assert by_model, evaluated
    print(f"\n{language}: {len(by_model)} of 3 evaluations by the model")
    print(f"\n{language}: questions {[a['question'] for a in steps['asked']]}")
