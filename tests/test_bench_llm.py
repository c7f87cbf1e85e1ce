"""The pure parts of `intervue bench llm` (deploy/bench/llm.py): its checked-in cases,
the scoring of language, grounding, premises and JSON validity, and its tables. No
model runs here (the bench itself is run by hand; its figures are in docs/benchmarks.md)."""

from __future__ import annotations

import pytest

from deploy.bench import llm as bench
from llm.schemas import Profile


def test_cases_are_varied_and_valid_profiles():
    cases = bench.load_cases()
    languages = [c.language for c in cases]
    assert languages.count("ko") >= 5 and languages.count("en") >= 5
    assert len({c.job_title for c in cases}) >= 10
    assert len({c.id for c in cases}) == len(cases)
    for case in cases:
        assert isinstance(case.profile(), Profile)
        assert case.answers, case.id
        for answer in case.answers:
            assert answer.kind in bench.ANSWER_KINDS and answer.seconds > 0
            # each answer is in its profile's language (names of tools aside)
            assert bench.language_ok(answer.answer + answer.question, case.language), answer
    # a default run (first answer of each profile) meets every kind in each language
    for language in ("ko", "en"):
        kinds = {c.answers[0].kind for c in cases if c.language == language}
        assert kinds == set(bench.ANSWER_KINDS), language
    # the trap the issue names: a candidate who moved away from Hadoop
    assert any("Hadoop" in c.avoid for c in cases)


def test_pick_profiles_per_language():
    cases = bench.load_cases()
    two = bench.pick_profiles(cases, "en", 2)
    assert [c.language for c in two] == ["en", "en"]
    assert len(bench.pick_profiles(cases, "ko", None)) == sum(c.language == "ko" for c in cases)


def test_step_plan_is_round_robin_over_tasks():
    cases = bench.load_cases()
    plan = bench.step_plan(bench.TASKS, cases, 2, 1)
    assert [task for task, _, _ in plan[:4]] == list(bench.TASKS)
    assert len(plan) == 8 and plan[0][2] is None and plan[2][2] is not None
    assert plan[4][1].id == bench.pick_profiles(cases, "ko", None)[1].id
    assert len(bench.step_plan(["evaluation-en"], cases, None, 2)) == 2 * sum(
        c.language == "en" for c in cases
    )


def test_answer_metrics_count_words_syllables_and_fillers():
    answer = bench.BenchAnswer("vague", 30, "왜요?", "음 그러니까 열심히 했습니다.")
    metrics = bench.answer_metrics(answer, "ko")
    assert metrics.word_count == 4 and metrics.hangul_syllables == 12
    assert metrics.filler_count >= 1 and metrics.rate_basis == "syllables"
    assert metrics.duration_s == 30 and metrics.syllables_per_second == pytest.approx(12 / 30, 0.01)
    english = bench.answer_metrics(bench.BenchAnswer("short", 6, "Q?", "Um, it worked."), "en")
    assert english.word_count == 3 and english.filler_words == ["um"]


def test_language_share_and_rules():
    assert bench.hangul_share("") == 0.0
    assert bench.hangul_share("Kafka로 옮겼습니다") == pytest.approx(6 / 11)
    # Korean prose around tool names passes; English with one Korean word fails
    assert bench.language_ok("Kafka와 Spark를 선택한 이유는 무엇인가요?", "ko")
    assert not bench.language_ok("Why did you choose Kafka and Spark over Flink?", "ko")
    assert bench.language_ok("Why did you choose Kafka?", "en")
    assert not bench.language_ok("Why did you choose Kafka? 감사합니다", "en")


def test_prose_leaves_ratings_and_engine_fields_out():
    result = {
        "overall": {"rating": "매우 좋음", "reason": "Clear and concrete."},
        "similarity": {"rating": None, "match_percent": 40, "reason": "Most points."},
        "tips": ["Lead with the result."],
        "model_answer": "I moved the ledger…",
        "engine": "llm",
        "fallback_error": None,
    }
    texts = bench.prose(result)
    assert texts == [
        "Clear and concrete.",
        "Most points.",
        "Lead with the result.",
        "I moved the ledger…",
    ]
    assert bench.language_ok("\n".join(texts), "en")  # the Korean rating is not prose


def test_grounding_names_words_skills_and_figures_of_the_intro():
    intro = (
        "I replaced our Nagios checks with Prometheus for 40 services and cut pages by 60%. "
        "I run chaos drills with Litmus."
    )
    exclude = "Site Reliability Engineer Datadog"
    assert "litmus" in bench.grounding_terms(
        "What did the Litmus chaos drills teach you?", intro, exclude
    )
    assert "60" in bench.grounding_terms("How did you cut pages by 60%?", intro, exclude)
    # only the job, the company and generic words: not grounded
    assert (
        bench.grounding_terms(
            "Why do you want to be a Site Reliability Engineer at Datadog?", intro, exclude
        )
        == []
    )
    assert bench.grounding_terms("How do you improve system performance?", intro, exclude) == []


def test_grounding_in_korean_strips_particles():
    intro = "주문 시스템을 Kafka 이벤트로 분리하고 Redis 캐시를 두어 p99 지연을 180ms로 줄였습니다."
    terms = bench.grounding_terms(
        "Redis 캐시의 무효화 규칙은 어떻게 정하셨나요?", intro, "백엔드 개발자 카카오페이"
    )
    assert "redis" in terms and "캐시" in terms
    assert (
        bench.grounding_terms(
            "백엔드 개발자로서 카카오페이에 지원한 이유는?", intro, "백엔드 개발자 카카오페이"
        )
        == []
    )


@pytest.mark.parametrize(
    ("question", "flagged"),
    [
        ("Why did you choose Hadoop for the nightly batch?", "Hadoop"),
        ("Hadoop을 선택한 이유는 무엇인가요?", "Hadoop"),
        ("Why did you choose Spark over Hadoop?", None),
        ("Hadoop에서 Spark로 옮길 때 무엇을 선택 기준으로 삼았나요?", None),
        ("Hadoop 대신 Spark를 선택한 이유는?", None),
        ("How did you migrate away from Hadoop?", None),  # no choice asked
        ("Why did you choose Iceberg?", None),
    ],
)
def test_wrong_premise(question, flagged):
    assert bench.wrong_premise(question, ("Hadoop", "하둡")) == flagged


def test_repeated_questions():
    first = "주문 시스템의 p99 지연을 180ms로 줄인 방법을 설명해 주세요."
    assert bench.repeated_questions([first, first, "Redis 캐시 무효화 규칙은?"]) == 1
    assert bench.repeated_questions([first, first + " 구체적으로요.", first]) == 2
    assert bench.repeated_questions(["Why Kafka?", "Why Redis?", "How did you test it?"]) == 0


def test_json_outcome_and_first_reply():
    assert bench.json_outcome(1, True) == "first"
    assert bench.json_outcome(2, True) == "retried"
    assert bench.json_outcome(2, False) == "failed"
    assert bench.json_outcome(0, False, unavailable=True) == "error"
    assert bench.first_reply_is_json('```json\n{"questions": []}\n```') is True
    assert bench.first_reply_is_json("Sure! Here are your questions: 1. …") is False
    assert bench.first_reply_is_json(None) is None


def _step(task, seconds, outcome="first", tokens=(300, 100), **kw):
    call = bench.CallRecord(seconds=seconds, prompt_tokens=tokens[0], completion_tokens=tokens[1])
    return bench.StepResult(
        task=task, profile="p", seconds=seconds, calls=[call], outcome=outcome, **kw
    )


def test_a_streamed_reply_is_counted_by_llama_cpps_own_timers():
    """The product streams its replies, and a stream carries no usage: the token columns
    come from the server's log then (they were empty in the first table)."""
    log = (
        "llama_perf_context_print: prompt eval time =    9000.00 ms /   315 tokens\n"
        "llama_perf_context_print:        eval time =   20000.00 ms /   160 runs\n"
    )
    step = _step(
        "evaluation-en", 30.0, tokens=(None, None), server_perf=bench.ServerPerf.parse(log)
    )
    assert (step.prompt_tokens, step.completion_tokens) == (315, 160)
    summary = bench.TaskSummary.of("evaluation-en", [step])
    assert summary.completion_tokens == 160 and summary.tokens_per_s == pytest.approx(160 / 30)
    # usage, when a server sends it, is what counts
    assert _step("evaluation-en", 30.0).completion_tokens == 100


def test_summary_counts_and_table_cells():
    case = next(c for c in bench.load_cases() if c.id == "ko-data")
    good = _step("questions-ko", 20.0)
    bench.score_questions(
        good,
        case,
        [
            "Spark와 Iceberg로 옮긴 뒤 야간 배치가 40분이 된 과정을 설명해 주세요.",
            "Great Expectations 검사는 어떻게 설계하셨나요?",
            "Hadoop을 선택한 이유는 무엇인가요?",
        ],
    )
    assert good.language_ok and good.grounded == [True, True, True]
    assert good.wrong_premises == ["Hadoop"]
    bad = _step("questions-ko", 40.0, outcome="retried")
    bench.score_questions(bad, case, ["What was hard?", "Why this job?", "Tell me about a team."])
    assert not bad.language_ok and bad.grounded == [False, False, False]
    failed = _step("questions-ko", 60.0, outcome="failed")

    summary = bench.TaskSummary.of("questions-ko", [good, bad, failed])
    assert summary.steps == 3 and summary.latency_p50 == 40.0
    assert summary.outcomes == {"first": 1, "retried": 1, "failed": 1, "error": 0}
    assert (summary.language_ok, summary.language_n) == (1, 2)
    assert (summary.grounded, summary.questions_n, summary.sets_grounded) == (3, 6, 1)
    assert (summary.sets_n, summary.sets_distinct) == (2, 2)
    assert summary.wrong_premises == 1
    assert summary.tokens_per_s == pytest.approx(300 / 120)
    assert summary.prompt_tokens == 300 and summary.completion_tokens == 100

    table = bench.summary_table([summary])
    assert table[0].count("|") == table[1].count("|") == table[2].count("|")
    row = table[2]
    assert "| questions ko | 3 | 40.0 |" in row
    assert "| 2.5 | – | – | 1 / 1 / 1 / 0 |" in row and "| 1/2 | 3/6 | 1/2 | 2/2 | 1 |" in row


LLAMA_LOG = """\
INFO:     127.0.0.1:49176 - "GET /v1/models HTTP/1.1" 200 OK
llama_perf_context_print:        load time =       0.96 ms
llama_perf_context_print: prompt eval time =   36559.07 ms /   875 tokens (   41.78 ms per token, …)
llama_perf_context_print:        eval time =  210972.04 ms /   251 runs   (  840.53 ms per token, …)
llama_perf_context_print:       total time =  301230.57 ms /  1126 tokens
INFO:     127.0.0.1:49180 - "POST /v1/chat/completions HTTP/1.1" 200 OK
Llama.generate: 490 prefix-match hit, remaining 334 prompt tokens to eval
llama_perf_context_print: prompt eval time =    9000.00 ms /   334 tokens
llama_perf_context_print:        eval time =   20000.00 ms /   100 runs
"""


def test_server_perf_from_llama_cpp_log_lines(tmp_path):
    perf = bench.ServerPerf.parse(LLAMA_LOG)
    assert perf == bench.ServerPerf(875 + 334, 36559.07 + 9000.0, 251 + 100, 210972.04 + 20000.0)
    assert bench.ServerPerf.parse("INFO: nothing timed") is None
    assert bench.rate(100, 20000.0) == 5.0 and bench.rate(1, 0.0) is None
    log = tmp_path / "server.log"
    log.write_text("before\n")
    tail = bench.LogTail(log)
    with log.open("a") as f:
        f.write(LLAMA_LOG)
    assert bench.ServerPerf.parse(tail.read_new()).decoded_tokens == 351
    assert tail.read_new() == ""
    step = _step("questions-en", 30.0, server_perf=bench.ServerPerf(300, 10_000.0, 50, 10_000.0))
    summary = bench.TaskSummary.of("questions-en", [step])
    assert (summary.prompt_eval_per_s, summary.decode_per_s) == (30.0, 5.0)


def test_evaluation_rows_and_leniency():
    case = next(c for c in bench.load_cases() if c.id == "en-backend")
    step = _step("evaluation-en", 30.0, answer_kind="short")
    result = {
        "overall": {"rating": "무난함", "reason": "Too short to judge."},
        "tips": ["Give an example.", "Name a figure.", "Say what you did."],
        "model_answer": "After the retry storm we added idempotency keys…",
    }
    bench.score_evaluation(step, case, result)
    assert step.language_ok and step.overall_score == 1
    summary = bench.TaskSummary.of("evaluation-en", [step])
    assert summary.grounded is None and summary.wrong_premises is None
    assert "| – | – | – |" in bench.summary_table([summary])[2]
    leniency = bench.leniency_table([step])
    assert leniency[0] == "| task | strong | vague | short | off-topic |"
    assert leniency[2] == "| evaluation en | – | – | 1.0 (n=1) | – |"
    assert bench.leniency_table([_step("questions-en", 1.0)]) == []


def test_report_has_the_machine_line_and_interference_ratios():
    rows = [bench.Interference("vision per frame", "ms", [3.0, 3.0, 3.0], [6.0, 6.0, 6.0])]
    meta = {
        "model": "m.gguf",
        "server": "s",
        "profiles": "2 ko",
        "answers": 1,
        "load_start": "1.0, 1.0, 1.0",
        "load_end": "2.0, 2.0, 2.0",
        "interference_note": "note",
    }
    report = bench.render_report([_step("questions-ko", 10.0)], bench.TASKS, meta, rows)
    assert "Machine: " in report and "Load average at start 1.0, 1.0, 1.0" in report
    assert "| questions ko | 1 |" in report and "evaluation ko" not in report
    assert "| vision per frame | ms | 3 / 3 | 3.00 | 3.00 | 6.00 | 6.00 | 2.00× | 2.00× |" in report
    assert report.endswith("note\n")


def test_server_argv_is_loopback_with_threads_and_context(tmp_path):
    from llm.local.server import LocalServerSettings

    argv = LocalServerSettings(tmp_path / "m.gguf", 8123, 2, 4096, "m", verbose=True).argv()
    assert argv[1:3] == ["-m", "llama_cpp.server"]
    pairs = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert pairs["--host"] == "127.0.0.1" and pairs["--port"] == "8123"
    assert pairs["--n_threads"] == "2" and pairs["--n_ctx"] == "4096"
    assert pairs["--verbose"] == "True"  # the bench reads llama.cpp's own timings
    with pytest.raises(FileNotFoundError, match="models prepare --llm"):
        with bench.started_llama_server(tmp_path / "missing.gguf", 2):
            pass


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match="unknown task"):
        bench.run_llm_bench(tasks=["questions-fr"])


async def test_a_streamed_reply_is_noted_when_read_to_its_end():
    """The product streams the local server's replies: the call's seconds and text are
    the whole reply's (noted at its end), not the moment the stream opened (the output
    tok/s column read 33,000 tokens/s from that)."""
    import asyncio
    from types import SimpleNamespace

    def chunk(text, finish=None):
        delta = SimpleNamespace(content=text)
        return SimpleNamespace(choices=[SimpleNamespace(delta=delta, finish_reason=finish)])

    class Stream:
        closed = False

        async def __aiter__(self):
            for part in ('{"a"', ": 1}"):
                await asyncio.sleep(0.05)
                yield chunk(part)
            yield chunk("", "stop")

        async def close(self):
            self.closed = True

    class Completions:
        async def create(self, **kwargs):
            return Stream()

    calls: list = []
    recording = bench._RecordingCompletions(Completions(), calls)
    stream = await recording.create(model="m", messages=[], stream=True)
    assert calls == []  # not yet: nothing was read
    parts = [c.choices[0].delta.content async for c in stream]
    await stream.close()
    assert "".join(parts) == '{"a": 1}'
    assert len(calls) == 1 and calls[0].text == '{"a": 1}' and calls[0].finish_reason == "stop"
    assert calls[0].seconds >= 0.1
