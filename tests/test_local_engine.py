"""The local engine's pure parts: which engine runs (the auto rule), llama.cpp's command
line, the schema sent as a constraint, the grounding check, the step budget and the
labels the room shows. No model here: tests/test_local_llm.py runs the real one."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from deploy.up import Supervisor, engine_line, interviewer_llm_env, local_llm_server
from llm.client import (
    LlmClient,
    LlmTooSlowError,
    LlmUnavailableError,
    LlmUngroundedError,
    question_problems,
    response_format_for,
)
from llm.engine import FallbackEngine, build_engine, fallback_label
from llm.local.choice import (
    MEMORY_HEADROOM_BYTES,
    EngineChoice,
    EngineChoiceError,
    MachineFacts,
    decide_engine,
    mem_available,
)
from llm.local.server import LocalServerSettings
from llm.offline import OfflineEngine
from llm.offline.words import (
    copies_intro,
    grounding_hints,
    grounding_words,
    speaks_as_candidate,
    trim_retold_intro,
    ungrounded_questions,
)
from llm.prompts import grounding_message
from llm.schemas import Evaluation, Profile, Questions, llm_json_schema
from llm.settings import LlmSettings

GIB = 1024**3
HANGUL = re.compile(r"[가-힣]")
MODEL = Path("/models/llm/model.gguf")
READY = MachineFacts(
    llama_cpp=True,
    model_path=MODEL,
    model_problem=None,
    model_bytes=GIB,
    cores=2,
    mem_available=8 * GIB,
)


# --------------------------------------------------------------------------- the rule


def test_auto_prefers_a_configured_endpoint() -> None:
    settings = LlmSettings(base_url="https://api.example.com/v1")
    choice = decide_engine(settings, None)  # no facts needed
    assert choice.engine == "remote" and "INTERVUE_LLM_BASE_URL" in choice.reason


def test_auto_runs_the_local_model_when_installed_ready_and_affordable() -> None:
    choice = decide_engine(LlmSettings(), READY)
    assert choice == EngineChoice("local", choice.reason, MODEL)
    assert "2 cores" in choice.reason


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"llama_cpp": False}, "not installed"),
        ({"model_problem": "the local model is not prepared in /m/llm"}, "not prepared"),
        ({"cores": 1}, "1 core(s)"),
        ({"mem_available": GIB + MEMORY_HEADROOM_BYTES - 1}, "of memory available"),
    ],
)
def test_auto_falls_back_offline_and_says_why(change: dict, said: str) -> None:
    choice = decide_engine(LlmSettings(), replace(READY, **change))
    assert choice.engine == "offline" and said in choice.reason


def test_auto_with_exactly_enough_memory_is_local() -> None:
    facts = replace(READY, mem_available=GIB + MEMORY_HEADROOM_BYTES)
    assert decide_engine(LlmSettings(), facts).engine == "local"
    # Unknown memory (no /proc/meminfo) does not forbid it.
    assert decide_engine(LlmSettings(), replace(READY, mem_available=None)).engine == "local"


def test_explicit_choices_win() -> None:
    assert decide_engine(LlmSettings(engine="offline"), READY).engine == "offline"
    remote = LlmSettings(engine="offline", base_url="http://127.0.0.1:1/v1")
    assert decide_engine(remote, READY).engine == "offline"
    # local on a small machine: the user asked for it.
    assert decide_engine(LlmSettings(engine="local"), replace(READY, cores=1)).engine == "local"
    # local with a base_url: the embedded server `up` started.
    handed = LlmSettings(engine="local", base_url="http://127.0.0.1:9/v1")
    assert decide_engine(handed, None).engine == "local"


@pytest.mark.parametrize(
    "facts", [replace(READY, llama_cpp=False), replace(READY, model_problem="no model")]
)
def test_explicit_local_without_its_parts_is_a_start_up_error(facts: MachineFacts) -> None:
    with pytest.raises(EngineChoiceError, match=re.escape("bash scripts/setup.sh --local-llm")):
        decide_engine(LlmSettings(engine="local"), facts)


def test_explicit_remote_needs_an_endpoint() -> None:
    with pytest.raises(EngineChoiceError, match="INTERVUE_LLM_BASE_URL"):
        decide_engine(LlmSettings(engine="remote"), READY)


def test_mem_available_reads_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 100 kB\nMemAvailable:    2048 kB\n")
    assert mem_available(meminfo) == 2048 * 1024
    assert mem_available(tmp_path / "missing") is None


def test_build_engine_never_starts_a_server() -> None:
    assert isinstance(build_engine(LlmSettings()), OfflineEngine)  # auto, no endpoint
    with pytest.raises(EngineChoiceError, match="intervue up"):
        build_engine(LlmSettings(engine="local"))
    local = build_engine(
        LlmSettings(engine="local", base_url="http://127.0.0.1:9/v1", timeout_s=30)
    )
    assert isinstance(local, FallbackEngine)
    # The step budget bounds a local step, not the per-request timeout.
    assert local.primary.settings.timeout_s == 90
    assert local.budgets_s == {"questions": 60, "evaluation": 90}
    assert local.primary.schema_mode == "llama_schema"


# --------------------------------------------------------------------------- the server


def test_the_interviewer_alone_on_the_local_engine_says_what_to_do() -> None:
    """`intervue interviewer` in its own terminal with the local engine and no server to
    talk to: one sentence naming the setting (or the setup), no traceback."""
    from tests._cli import run_cli

    done = run_cli({"INTERVUE_LLM_ENGINE": "local"}, "interviewer")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("interviewer: INTERVUE_LLM_ENGINE=local") or (
        "scripts/setup.sh --local-llm" in done.stderr
    ), done.stderr
    assert "Traceback" not in done.stderr


def test_server_command_line_is_loopback_with_the_settings() -> None:
    server = LocalServerSettings(MODEL, port=8123, threads=2, context=4096, alias="m")
    argv = server.argv("/venv/bin/python")
    assert argv[:3] == ["/venv/bin/python", "-m", "llama_cpp.server"]
    options = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert options == {
        "--model": str(MODEL),
        "--model_alias": "m",
        "--host": "127.0.0.1",
        "--port": "8123",
        "--n_ctx": "4096",
        "--n_threads": "2",
        "--n_threads_batch": "2",
        "--verbose": "False",
        "--interrupt_requests": "False",  # a second session waits, it does not cut the first
    }
    assert "--chat_format" not in argv  # the GGUF's own chat template
    assert server.base_url == "http://127.0.0.1:8123/v1"
    assert server.env({"PATH": "/bin"})["PYTHONUNBUFFERED"] == "1"


def test_server_settings_from_llm_settings() -> None:
    settings = LlmSettings(local_threads=3, local_context=2048, local_port=9000)
    server = LocalServerSettings.from_llm_settings(settings, MODEL)
    assert (server.port, server.threads, server.context) == (9000, 3, 2048)
    assert LocalServerSettings.from_llm_settings(LlmSettings(), MODEL).port > 0  # a free one


def test_up_runs_an_llm_role_only_for_the_local_engine() -> None:
    settings = LlmSettings(local_port=8200)
    assert local_llm_server(settings, EngineChoice("offline", "auto: no llama.cpp")) is None
    assert local_llm_server(settings, EngineChoice("remote", "base_url")) is None
    server = local_llm_server(settings, EngineChoice("local", "auto: …", MODEL))
    assert server is not None and server.port == 8200
    env = interviewer_llm_env(server)
    assert env == {
        "INTERVUE_LLM_ENGINE": "local",
        "INTERVUE_LLM_BASE_URL": "http://127.0.0.1:8200/v1",
        "INTERVUE_LLM_MODEL": "intervue-local",
    }
    # What the interviewer makes of that environment: the embedded server, as local.
    assert LlmSettings(
        **{k[len("INTERVUE_LLM_") :].lower(): v for k, v in env.items()}
    ).talks_to_local_server
    assert engine_line(EngineChoice("local", "auto: why", MODEL), server).startswith(
        "local (model.gguf on llama.cpp at http://127.0.0.1:8200/v1"
    )
    assert engine_line(EngineChoice("offline", "auto: why"), None) == "offline (auto: why)"


async def test_a_child_waits_for_the_one_it_comes_after() -> None:
    supervisor = Supervisor()
    first = supervisor.add("llm", ["true"], {})
    second = supervisor.add("interviewer", ["true"], {}, after=first, after_timeout_s=30)
    waiting = asyncio.create_task(supervisor._wait_for_after(second))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    first.ready.set()
    await asyncio.wait_for(waiting, 5)
    # A timeout of 0: it starts anyway.
    late = supervisor.add("late", ["true"], {}, after=supervisor.add("x", ["true"], {}))
    await asyncio.wait_for(supervisor._wait_for_after(late), 5)


# --------------------------------------------------------------------------- the constraint


def test_constraint_schema_drops_string_lengths_only() -> None:
    schema = llm_json_schema(Questions)
    assert "maxLength" not in json.dumps(schema)
    questions = schema["properties"]["questions"]
    assert questions["minItems"] == questions["maxItems"] == 3
    assert "engine" not in schema["properties"]
    assert "maxLength" not in json.dumps(llm_json_schema(Evaluation))


def test_response_format_per_server() -> None:
    assert response_format_for("json_object", Questions) == {"type": "json_object"}
    local = response_format_for("llama_schema", Questions)
    assert local["type"] == "json_object" and local["schema"] == llm_json_schema(Questions)
    remote = response_format_for("json_schema", Questions)
    assert remote["type"] == "json_schema"
    assert remote["json_schema"]["schema"] == llm_json_schema(Questions)


def test_client_schema_mode_follows_the_engine() -> None:
    url = "http://127.0.0.1:9/v1"
    assert LlmClient(LlmSettings(base_url=url)).schema_mode == "json_object"
    assert LlmClient(LlmSettings(base_url=url, remote_json_schema=True)).schema_mode == (
        "json_schema"
    )
    assert LlmClient(LlmSettings(base_url=url, engine="local")).schema_mode == "llama_schema"


# --------------------------------------------------------------------------- grounding

INTRO_KO = (
    "저는 추천시스템을 개발했고 Hadoop에서 Spark로 데이터 파이프라인을 이전해 처리 시간을 "
    "40% 줄였습니다. Kubernetes 기반 배포를 맡았습니다."
)
INTRO_EN = (
    "I moved our batch pipeline from Hadoop to Spark, cutting nightly runs from 6 to 2 "
    "hours, and I run the Grafana dashboards for the payments team."
)


@pytest.mark.parametrize(
    ("question", "intro", "grounded_by"),
    [
        ("Hadoop에서 Spark로 이전하면서 가장 어려웠던 점은?", INTRO_KO, "hadoop"),
        ("추천 시스템의 성능은 어떻게 측정하셨나요?", INTRO_KO, "recommender system"),
        ("쿠버네티스가 아니라 Kubernetes 배포에서 맡은 역할은?", INTRO_KO, "kubernetes"),
        ("Why did the Spark migration cut the nightly runs?", INTRO_EN, "spark"),
        ("How do your Grafana dashboards help the payments team?", INTRO_EN, "grafana"),
    ],
)
def test_a_question_that_names_the_intro_is_grounded(
    question: str, intro: str, grounded_by: str
) -> None:
    assert grounded_by in grounding_words(question, intro)


@pytest.mark.parametrize(
    ("question", "intro"),
    [
        ("팀에서 갈등이 생기면 어떻게 하시나요?", INTRO_KO),
        ("왜 저희 회사에 지원하셨나요?", INTRO_KO),
        ("What motivates you?", INTRO_EN),
        ("Tell me about a time you disagreed with a teammate.", INTRO_EN),
    ],
)
def test_a_generic_question_is_not_grounded(question: str, intro: str) -> None:
    assert grounding_words(question, intro) == []


def test_ungrounded_questions_are_numbered_from_one() -> None:
    questions = ["Why Spark over Hadoop?", "What motivates you?", "Which Grafana panels?"]
    assert ungrounded_questions(questions, INTRO_EN) == [2]
    # A two-syllable Korean word matches only exactly; a compound holds a longer one.
    intro = "자동배포시스템과 데이터파이프라인을 구축했습니다."
    assert grounding_words("배포 주기는?", intro) == []
    assert grounding_words("파이프라인의 구조는?", intro) == ["파이프라인"]


def test_a_thin_intro_is_checked_for_language_and_repeats_only() -> None:
    thin = Profile(self_intro="안녕하세요.")
    generic = Questions(questions=["자기소개를 해 주세요.", "강점은?", "강점은?"])
    assert question_problems(generic, thin) == {3: "repeated"}
    english = Questions(questions=["Your strengths?", "자기소개를 해 주세요.", "Your goals?"])
    assert question_problems(english, thin) == {1: "language", 3: "language"}
    assert question_problems(english, Profile(self_intro="Hi.", language="en")) == {2: "language"}
    assert question_problems(generic, Profile(self_intro=INTRO_KO)) == {
        1: "ungrounded",
        2: "ungrounded",
        3: "repeated",
    }


def test_a_question_that_copies_the_intro_is_not_grounded_by_it() -> None:
    profile = Profile(self_intro=INTRO_KO)
    copied = (
        "말씀하신 대로 " + INTRO_KO.replace("줄였습니다. ", "줄였습니다.\n") + " 어떻게 개선할까요?"
    )
    quoted = INTRO_KO.split(". ")[0] + ". 어떻게 개선할 수 있을까요?"  # one sentence: fine
    questions = Questions(
        questions=[copied, "Hadoop에서 Spark로 옮긴 이유는?", "Kubernetes 배포에서 맡은 일은?"]
    )
    assert question_problems(questions, profile) == {1: "copied"}
    assert copies_intro(copied, INTRO_KO) and not copies_intro(quoted, INTRO_KO)
    assert not copies_intro("Spark를 고른 이유는?", INTRO_KO)


def test_a_question_in_the_candidates_voice_is_refused() -> None:
    profile = Profile(self_intro=INTRO_KO)
    retold = "안녕하세요. 저는 Hadoop에서 Spark로 정산을 옮겼습니다. 어떻게 개선할 수 있나요?"
    questions = Questions(
        questions=[retold, "Hadoop에서 Spark로 옮긴 이유는?", "Kubernetes 배포에서 맡은 일은?"]
    )
    assert question_problems(questions, profile) == {1: "voice"}
    assert speaks_as_candidate("I am a backend engineer. Why Spark?")
    assert not speaks_as_candidate("In your Spark migration, what did I miss?")


def test_a_retold_intro_in_front_of_a_question_is_trimmed() -> None:
    retold = (
        "안녕하세요. 저는 결제 팀에서 일했습니다. Kubernetes 기반 배포를 맡았습니다. "
        "Kubernetes 배포에서 가장 어려웠던 점은 무엇인가요?"
    )
    assert (
        trim_retold_intro(retold, INTRO_KO) == "Kubernetes 배포에서 가장 어려웠던 점은 무엇인가요?"
    )
    # A question alone, or one whose lead-in is the interviewer's, stays as it is.
    plain = "Spark로 옮긴 뒤 무엇이 달라졌나요? 수치로 말씀해 주세요."
    assert trim_retold_intro(plain, INTRO_KO) == plain
    assert trim_retold_intro("저는 궁금합니다", INTRO_KO) == "저는 궁금합니다"  # the last stays


async def test_the_client_trims_before_it_checks(tmp_path: Path) -> None:
    from tests.fake_openai import FakeOpenAI, Reply

    server = FakeOpenAI()
    await server.start()
    try:
        reply = {
            "questions": [
                "안녕하세요. 저는 백엔드 개발자입니다. Hadoop에서 Spark로 옮긴 이유는?",
                "Kubernetes 배포에서 맡은 일은?",
                "추천시스템 성능은 어떻게 측정했나요?",
            ]
        }
        server.push(Reply.json(reply))
        async with LlmClient(LlmSettings(base_url=server.base_url)) as client:
            questions = await client.generate_questions(Profile(self_intro=INTRO_KO))
        assert questions.questions[0] == "Hadoop에서 Spark로 옮긴 이유는?"
    finally:
        await server.stop()


def test_the_correction_names_the_questions_and_what_the_intro_offers() -> None:
    hints = grounding_hints(INTRO_EN)
    assert {"Hadoop", "Spark", "Grafana"} <= set(hints)
    ko = grounding_message({3: "ungrounded", 2: "repeated"}, hints, "ko")["content"]
    assert "질문 3" in ko and "질문 2" in ko and "Hadoop" in ko
    en = grounding_message({1: "copied"}, hints, "en")["content"]
    assert "question 1" in en and "Grafana" in en and not HANGUL.search(en)


# --------------------------------------------------------------------------- budget, labels


class SlowEngine:
    """An engine whose steps wait until released (or cancelled, which it records)."""

    name = "llm"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.cancelled: list[str] = []

    async def _wait(self, stage: str) -> None:
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(stage)
            raise

    async def generate_questions(self, profile: Profile) -> Questions:
        await self._wait("questions")
        return Questions(questions=["a", "b", "c"])

    async def evaluate(self, profile, question, answer, metrics=None) -> Evaluation:
        await self._wait("evaluation")
        raise AssertionError("never released in these tests")

    async def aclose(self) -> None:
        pass


async def test_a_step_over_its_budget_is_abandoned_and_answered_offline() -> None:
    slow = SlowEngine()
    reported = []
    engine = FallbackEngine(
        slow,
        OfflineEngine(),
        on_error=reported.append,
        questions_budget_s=0.01,
        evaluation_budget_s=0.01,
    )
    profile = Profile(self_intro=INTRO_KO)
    questions = await engine.generate_questions(profile)
    assert questions.engine == "offline"
    assert questions.fallback_error == fallback_label(LlmTooSlowError("x"), "ko", 0.01)
    assert "제한 시간(0.01초)" in questions.fallback_error
    assert isinstance(reported[0].error, LlmTooSlowError) and reported[0].retryable
    evaluation = await engine.evaluate(
        Profile(self_intro=INTRO_EN, language="en"), "Why Spark?", "Because it is faster."
    )
    assert evaluation.engine == "offline"
    assert evaluation.fallback_error.startswith("The language model did not answer within")
    # The abandoned steps were cancelled (their HTTP requests with them).
    assert slow.cancelled == ["questions", "evaluation"]


async def test_no_budget_waits_for_the_step() -> None:
    slow = SlowEngine()
    engine = FallbackEngine(slow, OfflineEngine())
    step = asyncio.create_task(engine.generate_questions(Profile(self_intro=INTRO_KO)))
    await asyncio.sleep(0.05)
    assert not step.done()
    slow.release.set()
    assert (await step).engine == "llm"


@pytest.mark.parametrize(
    ("error", "ko", "en"),
    [
        (LlmTooSlowError("x"), "제한 시간(60초)", "within its 60 s budget"),
        (LlmUnavailableError("x"), "연결할 수 없어", "unavailable"),
        (LlmUngroundedError("x"), "자기소개서 내용을 다루지 않아", "named nothing from"),
    ],
)
def test_every_fallback_label_exists_in_korean_and_english(error, ko: str, en: str) -> None:
    assert ko in fallback_label(error, "ko", 60) and "오프라인 엔진" in fallback_label(error, "ko")
    assert en in fallback_label(error, "en", 60) and "offline engine" in fallback_label(error, "en")
