"""The interview orchestrator on a real nats-server: LLM failures fall back to the
offline engine with an error event, a restart resumes without repeating, bad profiles
give an error event."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from llm.engine import build_engine
from llm.offline import OfflineEngine
from llm.orchestrator import InterviewerSettings, Orchestrator
from llm.settings import LlmSettings
from stream import bus, contract
from stream.presence import PresenceBoard, ensure_presence_bucket
from stream.settings import BusSettings
from tests._messages import score_update
from tests.conftest import own_nats_server
from tests.fake_openai import FakeOpenAI, Reply
from tests.test_llm_client import QUESTIONS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bus_settings(tmp_path_factory):
    """A nats-server of this module's own: the interviewer's durable consumer replays the
    whole events stream, and other tests' sessions must not take the fake LLM's replies."""
    for server in own_nats_server(tmp_path_factory, "orchestrator-nats"):
        yield BusSettings(nats_url=server.url)


INTRO = (
    "저는 Python과 PyTorch로 YOLO 기반 'Vision Guard' 프로젝트를 만들어 정확도를 12% 높였습니다."
)


def _transcript(session, uid, text, start, end, question=0, attempt=1):
    return contract.Transcript(
        session=session,
        utterance_id=uid,
        text=text,
        language="ko",
        start_ms=start,
        end_ms=end,
        cut_ms=end,
        done_ms=end + 300,
        metrics=contract.SpeakingMetrics(duration_s=(end - start) / 1000, word_count=12),
        question=question,
        attempt=attempt,
    )


def _ended(session, question, parts, opened, at, attempt=1):
    return contract.AnswerEnded(
        session=session,
        question=question,
        attempt=attempt,
        reason="done",
        parts=parts,
        opened_ms=opened,
        at_ms=at,
    )


async def _answer(js, session, question, text, start, end):
    """One answer turn as the gateway and a speech worker store it."""
    uid = f"{session}-u{question}"
    await bus.publish_event(
        js, _transcript(session, uid, text, start, end, question=question), "transcript"
    )
    await bus.publish_event(
        js, _ended(session, question, [f"{uid}#0"], start - 500, end + 500), "turn"
    )


def _request(session, question, kind="next", attempt=1):
    return contract.CandidateRequest(
        session=session, request=kind, question=question, attempt=attempt, at_ms=1.0
    )


async def _next(js, session, question):
    """The candidate read the feedback and pressed Next."""
    await bus.publish_event(js, _request(session, question), "request")


async def _steps(nc, session, want_step, count=1, timeout=20.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        events = await bus.read_events(
            nc.jetstream(), contract.event_subject(session, "interview"), idle_timeout_s=0.3
        )
        steps = [e.message for e in events]
        if sum(s.step == want_step for s in steps) >= count:
            return steps
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no {want_step!r} ×{count} for {session}: {steps}")
        await asyncio.sleep(0.2)


async def _orchestrator(bus_settings, engine):
    client = await bus.connect(bus_settings, "orchestrator-test")
    orchestrator = Orchestrator(client, engine, bus_settings, InterviewerSettings(ack_wait_s=5))
    await orchestrator.start()
    return client, orchestrator


async def _stop(client, orchestrator):
    await orchestrator.stop()
    await client.close()


async def test_llm_failure_falls_back_offline_with_an_error_event(nc, bus_settings):
    server = FakeOpenAI()
    await server.start()
    # Questions from the LLM; the evaluation gets 500s until retries run out.
    server.push(Reply.json(QUESTIONS), *[Reply.error(500)] * 6)
    settings = LlmSettings(
        base_url=server.base_url, max_retries=1, backoff_base_s=0.01, backoff_max_s=0.02
    )
    client, orchestrator = await _orchestrator(bus_settings, build_engine(settings))
    try:
        js = nc.jetstream()
        session = "orch-llm"
        await bus.publish_event(
            js, contract.Profile(session=session, self_intro=INTRO, at_ms=1.0), "profile"
        )
        steps = await _steps(nc, session, "asked")
        assert steps[0].step == "questions" and steps[0].data.engine == "llm"
        assert steps[1].data.question == QUESTIONS["questions"][0]
        # The question text the LLM saw is the candidate's, inside its delimiters.
        assert INTRO in server.user_text(0)
        now = contract.now_ms()
        await _answer(js, session, 0, "YOLO 모델을 경량화했습니다", now, now + 3000)
        steps = await _steps(nc, session, "evaluated")
        errors = [s for s in steps if s.step == "error"]
        assert errors and errors[0].data.stage == "evaluation"
        assert "오프라인 엔진" in errors[0].data.message  # the interview's language (ko)
        evaluated = next(s for s in steps if s.step == "evaluated")
        assert evaluated.data.engine == "offline"
        assert len(evaluated.data.rows) == 7
        # The interview goes on when the candidate asks: the second question is asked.
        assert [s.step for s in steps].count("asked") == 1
        await _next(js, session, 0)
        await _steps(nc, session, "asked", count=2)
    finally:
        await _stop(client, orchestrator)
        await server.stop()


async def test_a_restarted_orchestrator_resumes_without_repeating(nc, bus_settings):
    js = nc.jetstream()
    session = "orch-restart"
    client, orchestrator = await _orchestrator(bus_settings, OfflineEngine())
    await bus.publish_event(
        js, contract.Profile(session=session, self_intro=INTRO, at_ms=1.0), "profile"
    )
    await _steps(nc, session, "asked")
    await _stop(client, orchestrator)  # the orchestrator dies between two answers

    now = contract.now_ms()
    await _answer(js, session, 0, "저는 PyTorch로 모델을 만들었습니다", now, now + 2000)
    await _next(js, session, 0)  # pressed as soon as the card shows: stored before it
    client, orchestrator = await _orchestrator(bus_settings, OfflineEngine())
    try:
        steps = await _steps(nc, session, "asked", count=2)
        kinds = [s.step for s in steps]
        assert kinds.count("questions") == 1
        assert [s.data.index for s in steps if s.step == "asked"] == [0, 1]
        assert kinds.count("answered") == 1 and kinds.count("evaluated") == 1
    finally:
        await _stop(client, orchestrator)


async def test_an_unusable_profile_gives_an_error_event(nc, bus_settings):
    js = nc.jetstream()
    session = "orch-bad-profile"
    client, orchestrator = await _orchestrator(bus_settings, OfflineEngine())
    try:
        await bus.publish_event(
            js, contract.Profile(session=session, self_intro="  ", at_ms=1.0), "profile"
        )
        steps = await _steps(nc, session, "error")
        assert steps[0].data.stage == "profile"
        assert "empty" in steps[0].data.message
        assert all(s.step == "error" for s in steps)
    finally:
        await _stop(client, orchestrator)


@pytest.mark.parametrize("offset_s", [0.0, 300.0], ids=["recent-read", "full-read-fallback"])
async def test_an_answer_emotion_counts_only_the_faces_seen_while_answering(
    nc, bus_settings, offset_s
):
    # offset_s moves the answer's times (the gateway's clock) 5 minutes ahead of the
    # server's storage times: the last-minute read then finds no baseline update and the
    # orchestrator must fall back to reading the whole score stream.
    js = nc.jetstream()
    session = f"orch-emotion-{int(offset_s)}"
    client, orchestrator = await _orchestrator(bus_settings, OfflineEngine())
    try:
        await bus.publish_event(
            js, contract.Profile(session=session, self_intro=INTRO, at_ms=1.0), "profile"
        )
        await _steps(nc, session, "asked")
        start = contract.now_ms() + offset_s * 1000
        for seq, (at, pos, neg) in enumerate(
            [(start - 9000, 2, 0), (start - 5000, 5, 1), (start + 500, 7, 1), (start + 2500, 9, 2)]
        ):
            await bus.publish_event(js, score_update(session, seq, at, pos, neg), "score")
        # a face after the answer ended does not count
        await bus.publish_event(js, score_update(session, 4, start + 9000, 20, 9), "score")
        await bus.publish_event(
            js,
            _transcript(session, "u1", "모델을 경량화했습니다", start + 1000, start + 2000),
            "transcript",
        )
        # the turn (on the gateway's clock, as the score updates): from start to start + 3 s
        await bus.publish_event(js, _ended(session, 0, ["u1#0"], start, start + 3000), "turn")
        steps = await _steps(nc, session, "evaluated")
        evaluated = next(s for s in steps if s.step == "evaluated")
        # (9 - 5) positive and (2 - 1) negative faces while answering: 50 + 0.1 × 3
        assert evaluated.data.emotion == contract.AnswerEmotion(score=50.3, band="normal", faces=5)
    finally:
        await _stop(client, orchestrator)


async def _all_steps(nc, session):
    events = await bus.read_events(
        nc.jetstream(), contract.event_subject(session, "interview"), idle_timeout_s=0.3
    )
    return [e.message for e in events]


@contextlib.asynccontextmanager
async def _two_interviewers(nc, bus_settings, session):
    """A session with its profile stored, and two interviewers (not consuming: the tests
    hand them events) on connections of their own."""
    profile = contract.Profile(session=session, self_intro=INTRO, at_ms=1.0)
    await bus.publish_event(nc.jetstream(), profile, "profile")
    clients = [await bus.connect(bus_settings, f"{session}-{i}") for i in range(2)]
    try:
        yield (
            profile,
            [
                Orchestrator(c, OfflineEngine(), bus_settings, InterviewerSettings())
                for c in clients
            ],
        )
    finally:
        for client in clients:
            await client.close()


async def test_two_interviewers_racing_on_one_session_publish_each_step_once(nc, bus_settings):
    # Two interviewers hold the same profile at once (as two members of a group can):
    # JetStream's expected-last-sequence check lets one publish each step, the other
    # rebuilds and finds nothing left to do.
    js = nc.jetstream()
    session = "orch-race"
    async with _two_interviewers(nc, bus_settings, session) as (profile, racers):
        await asyncio.gather(*(r.process(session, profile) for r in racers))
        steps = await _all_steps(nc, session)
        assert [s.step for s in steps] == ["questions", "asked"]
        # both caches now agree with the stream, whoever published
        now = contract.now_ms()
        answer = _transcript(session, "u1", "PyTorch로 모델을 만들었습니다", now, now + 2000)
        ended = _ended(session, 0, ["u1#0"], now - 500, now + 2500)
        for message, kind in ((answer, "transcript"), (ended, "turn")):
            await bus.publish_event(js, message, kind)
            await asyncio.gather(*(r.process(session, message) for r in racers))
        kinds = [s.step for s in await _all_steps(nc, session)]
        assert kinds == ["questions", "asked", "answered", "evaluated"]
        request = _request(session, 0)
        await bus.publish_event(js, request, "request")
        await asyncio.gather(*(r.process(session, request) for r in racers))
        kinds = [s.step for s in await _all_steps(nc, session)]
        assert kinds == ["questions", "asked", "answered", "evaluated", "asked"]


async def test_a_group_of_interviewers_runs_sessions_without_repeating_a_step(nc, bus_settings):
    js = nc.jetstream()
    group = [await _orchestrator(bus_settings, OfflineEngine()) for _ in range(3)]
    sessions = [f"orch-group-{i}" for i in range(3)]
    try:
        for session in sessions:
            await bus.publish_event(
                js, contract.Profile(session=session, self_intro=INTRO, at_ms=1.0), "profile"
            )
        for index in range(3):
            for session in sessions:
                await _steps(nc, session, "asked", count=index + 1)
                now = contract.now_ms()
                await _answer(js, session, index, "모델을 만들었습니다", now, now + 1500)
            for session in sessions:
                await _steps(nc, session, "evaluated", count=index + 1)
                await _next(js, session, index)
            if index == 1:  # one member dies mid-interview; the others carry on
                await _stop(*group.pop())
        for session in sessions:
            steps = await _steps(nc, session, "report")
            kinds = [s.step for s in steps]
            assert kinds.count("questions") == 1 and kinds.count("report") == 1, kinds
            assert [s.data.index for s in steps if s.step == "asked"] == [0, 1, 2]
            assert sorted(s.data.index for s in steps if s.step == "evaluated") == [0, 1, 2]
    finally:
        for member in group:
            await _stop(*member)


async def test_an_interviewer_sees_the_partial_transcript_another_one_took(nc, bus_settings):
    # A long answer comes in parts; the first part is consumed by one member of the group
    # (no step follows a part), the second by another, whose cached state predates the
    # first part, and the turn's end by the first again, whose cache predates the second:
    # each must notice and rebuild, or the answer loses a part.
    js = nc.jetstream()
    session = "orch-partial"
    async with _two_interviewers(nc, bus_settings, session) as (profile, (first, second)):
        await first.process(session, profile)
        await second.process(session, profile)  # both now hold a cached state
        now = contract.now_ms()
        part0 = _transcript(session, "u1", "처음 부분입니다", now, now + 8000)
        part0.final = False
        await bus.publish_event(js, part0, "transcript")
        await first.process(session, part0)
        part1 = _transcript(session, "u1", "마지막 부분입니다", now + 8000, now + 9000)
        part1.part = 1
        await bus.publish_event(js, part1, "transcript")
        await second.process(session, part1)
        ended = _ended(session, 0, ["u1#0", "u1#1"], now - 500, now + 9500)
        await bus.publish_event(js, ended, "turn")
        await first.process(session, ended)  # its cache predates the second part
        [answered] = [s for s in await _all_steps(nc, session) if s.step == "answered"]
        assert answered.data.answer == "처음 부분입니다 마지막 부분입니다"


class _BudgetedEngine(OfflineEngine):
    """The offline engine, saying it has time budgets (as a FallbackEngine over a model)."""

    name = "llm"

    def budget_s(self, stage: str) -> float:
        return {"questions": 60.0, "evaluation": 90.0}[stage]


async def test_a_working_step_precedes_the_questions_and_each_evaluation(nc, bus_settings):
    js = nc.jetstream()
    session = "orch-working"
    client, orchestrator = await _orchestrator(bus_settings, _BudgetedEngine())
    try:
        await bus.publish_event(
            js, contract.Profile(session=session, self_intro=INTRO, at_ms=1.0), "profile"
        )
        await _steps(nc, session, "asked")
        for index in range(2):
            now = contract.now_ms()
            await _answer(js, session, index, "저는 PyTorch로 모델을 만들었습니다", now, now + 2000)
            await _steps(nc, session, "evaluated", count=index + 1)
            await _next(js, session, index)
            await _steps(nc, session, "asked", count=index + 2)
        events = []
        for kind in ("interview", "progress"):
            events += await bus.read_events(
                js, contract.event_subject(session, kind), idle_timeout_s=0.3
            )
        events.sort(key=lambda e: e.seq)
        progress = [e for e in events if e.subject.endswith(".progress")]
        assert all(e.message.step == "working" for e in progress)
        steps = [(e.message.step, e.message.data) for e in events]
        kinds = [kind for kind, _ in steps]
        # the progress step comes right before the step it announced
        assert kinds[:3] == ["working", "questions", "asked"]
        assert steps[0][1] == contract.WorkingStep(stage="questions", engine="llm", budget_s=60.0)
        for index in range(2):
            at = next(
                i
                for i, (kind, data) in enumerate(steps)
                if kind == "evaluated" and data.index == index
            )
            assert kinds[at - 1] == "working" and kinds[at - 2] == "answered"
            assert steps[at - 1][1] == contract.WorkingStep(
                stage="evaluation", index=index, attempt=1, engine="llm", budget_s=90.0
            )
        assert kinds.count("working") == 3
    finally:
        await _stop(client, orchestrator)


async def test_old_events_of_a_session_no_gateway_holds_take_no_step(nc, bus_settings):
    """An interviewer reading a backlog (it started late, or was down): a session whose
    gateway is gone (it crashed: nobody ended the session) gets no questions; a session
    a live gateway holds does. (presence_after_s=0 makes every event "old".)"""
    js = nc.jetstream()
    board = PresenceBoard(await ensure_presence_bucket(js, bus_settings), "gateway-test")
    here, gone = "orch-present", "orch-gone"
    await board.mark(here)
    for session in (gone, here):
        await bus.publish_event(
            js, contract.Profile(session=session, self_intro=INTRO, at_ms=1.0), "profile"
        )
    client = await bus.connect(bus_settings, "orchestrator-test")
    settings = InterviewerSettings(ack_wait_s=5, presence_after_s=0)
    orchestrator = Orchestrator(client, OfflineEngine(), bus_settings, settings)
    await orchestrator.start()
    try:
        await _steps(nc, here, "asked")
        for _ in range(100):  # until the gone session's profile was taken too
            info = await js.consumer_info(contract.EVENTS_STREAM, contract.INTERVIEWER_CONSUMER)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                break
            await asyncio.sleep(0.1)
        assert info.num_pending == 0 and info.num_ack_pending == 0
        steps = await bus.read_events(
            js, contract.event_subject(gone, "interview"), idle_timeout_s=0.3
        )
        assert steps == []
    finally:
        await _stop(client, orchestrator)
        await board.unmark(here)
