"""The interview orchestrator (`intervue interviewer`): drives each session's interview
from bus events and persists every step as an `InterviewEvent` on JetStream.

It consumes profiles, transcripts and session ends through one durable JetStream consumer
and acknowledges a message only after the steps it caused were published, so a restart
(or a crash mid-step) redelivers the message; the state is rebuilt by folding the
session's persisted events (`llm.interview.InterviewState`), which never repeats a step
that was already published.

Several interviewers may share the consumer (a group: for availability and for LLM
throughput). Two of them can then hold messages of the same session at once, so every
step is published with optimistic concurrency: JetStream's
``Nats-Expected-Last-Subject-Sequence`` header carries the last step of the session this
interviewer's state has seen, and JetStream refuses the step if another interviewer
published one since. The refused interviewer rebuilds the session from the stream and
looks again at what is left to do: each step is published exactly once, whoever does it
(an LLM call may be spent twice in such a race). A cached state is used only while the
session's stored events of the kinds it folds are exactly those it has seen (plus the one
being handled): one stream-info request per event; anything another interviewer took in
(a partial transcript, a command) makes it rebuild.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import OrderedDict
from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError, NotFoundError
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from llm.interview import Action, InterviewState
from llm.schemas import Profile
from stream import bus, contract
from stream.presence import session_present
from stream.settings import BusSettings

log = logging.getLogger(__name__)

CONSUMED_KINDS = ("profile", "transcript", "lifecycle", "command", "turn", "request")
#: What a session's state is folded from (score updates are read at each evaluation).
REBUILD_KINDS = ("profile", "interview", "transcript", "lifecycle", "command", "turn", "request")
#: How far before an answer's start its emotion read looks for the baseline score update.
SCORE_LOOKBACK_MS = 60_000.0
#: JetStream's optimistic-concurrency header and the error code of its refusal.
EXPECTED_LAST_SUBJECT_SEQUENCE = "Nats-Expected-Last-Subject-Sequence"
WRONG_LAST_SEQUENCE = 10071
#: Rebuilds after refused steps before a message is given back for redelivery.
MAX_STALE_RETRIES = 5
#: How long one pull waits for events; a graceful stop waits for the open one to run out.
FETCH_TIMEOUT_S = 1.0


class StaleSessionError(Exception):
    """Another interviewer published a step of the session since this state was built."""

    retryable = True


class InterviewerSettings(BaseSettings):
    """The orchestrator (env prefix ``INTERVUE_INTERVIEWER_``)."""

    model_config = SettingsConfigDict(env_prefix="INTERVUE_INTERVIEWER_", extra="forbid")

    #: Seconds JetStream waits for our ack before redelivering (LLM calls can be slow;
    #: we also send in-progress heartbeats between steps).
    ack_wait_s: float = Field(120.0, gt=0)
    #: Sessions kept in memory; older ones are rebuilt from JetStream when they speak.
    max_cached_sessions: int = Field(256, ge=1)
    #: An event that waited longer than this (seconds, from when the bus stored it) is
    #: acted on only if a live gateway still holds its session (`stream.presence`): an
    #: interviewer reading a backlog spends no model time on candidates who are gone,
    #: such as those of a gateway that crashed. 0: ask for every event.
    presence_after_s: float = Field(60.0, ge=0)
    name: str = Field(default_factory=lambda: f"interviewer-{socket.gethostname()}-{os.getpid()}")


class Orchestrator:
    def __init__(
        self,
        nc: NATS,
        engine: Any,
        bus_settings: BusSettings,
        settings: InterviewerSettings,
        max_intro_chars: int = contract.MAX_INTRO_CHARS,
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.engine = engine
        self.bus_settings = bus_settings
        self.settings = settings
        # The gateway applied the configured limit (INTERVUE_GATEWAY_MAX_INTRO_CHARS) when
        # it published the profile; re-checking with the most any configuration allows
        # refuses junk on the bus without refusing what a gateway accepted.
        self.max_intro_chars = max_intro_chars
        self.states: dict[str, InterviewState] = {}
        #: per session: the stream sequence of the last step the cached state has seen,
        #: and how many events of each folded kind it has seen
        self._step_seq: dict[str, int] = {}
        self._seen_counts: dict[str, dict[str, int]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._task: asyncio.Task | None = None
        self._stopping = False
        self._inflight: set[asyncio.Task] = set()
        # sessions found gone (logged once each; bounded like the state cache)
        self._gone: OrderedDict[str, None] = OrderedDict()

    async def start(self) -> None:
        self._stopping = False
        await bus.ensure_events_stream(self.js, self.bus_settings)
        config = ConsumerConfig(
            durable_name=contract.INTERVIEWER_CONSUMER,
            filter_subjects=[f"{contract.EVENTS_PREFIX}.*.{kind}" for kind in CONSUMED_KINDS],
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.settings.ack_wait_s,
            deliver_policy=DeliverPolicy.ALL,
            max_deliver=20,
        )
        try:
            info = await self.js.consumer_info(
                contract.EVENTS_STREAM, contract.INTERVIEWER_CONSUMER
            )
            current = sorted(info.config.filter_subjects or [])
        except NotFoundError:
            current = None
        if current != sorted(config.filter_subjects):
            # new, or made by an older build that consumed fewer kinds: JetStream updates
            # a durable consumer's filter in place (its position is kept)
            await self.js.add_consumer(contract.EVENTS_STREAM, config)
        self._sub = await self.js.pull_subscribe_bind(
            contract.INTERVIEWER_CONSUMER, stream=contract.EVENTS_STREAM
        )
        self._task = asyncio.create_task(self._fetch_loop(), name="interviewer-fetch")
        log.info("interviewer %s consuming %s", self.settings.name, ", ".join(CONSUMED_KINDS))

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            # a cancelled fetch leaves its pull request open at the server, and events it
            # then delivers would wait out ack_wait before another interviewer saw them:
            # the fetch runs out (FETCH_TIMEOUT_S) and the loop hands back what it brought
            await asyncio.wait([self._task], timeout=FETCH_TIMEOUT_S + 1.0)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await asyncio.gather(*self._inflight, return_exceptions=True)

    async def _fetch_loop(self) -> None:
        # nats-py's fetch can swallow a cancellation (it surfaces as a timeout), so the
        # loop also watches a flag: stop() must not hang on it
        while not self._stopping:
            try:
                messages = await self._sub.fetch(batch=32, timeout=FETCH_TIMEOUT_S)
            except (NatsTimeoutError, TimeoutError):
                continue
            except Exception as exc:  # NATS away: wait and try again
                log.warning("interviewer fetch failed: %s", exc)
                await asyncio.sleep(1.0)
                continue
            for msg in messages:
                if self._stopping:  # came in while stopping: another interviewer takes it
                    try:
                        await msg.nak()
                    except Exception as exc:  # NATS gone: redelivered after ack_wait anyway
                        log.debug("could not hand back %s: %s", msg.subject, exc)
                    continue
                task = asyncio.create_task(self._handle(msg))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)

    async def _handle(self, msg: Msg) -> None:
        session = contract.session_from_subject(msg.subject)
        try:
            message = contract.decode(msg.data)
        except contract.ContractError as exc:
            log.warning("skipping an undecodable event on %s: %s", msg.subject, exc)
            await msg.term()
            return
        if await self._left(session, msg):
            await msg.ack()  # folded from the stream if the session is ever rebuilt
            return
        try:
            await self.process(session, message, msg)
        except Exception:
            log.exception("interview step failed for session %s; will retry", session)
            await msg.nak(delay=2.0)
            return
        await msg.ack()

    async def _left(self, session: str, msg: Msg) -> bool:
        """Whether `msg` is an old event of a session no live gateway holds: nobody would
        see a step taken on it (see `InterviewerSettings.presence_after_s`)."""
        try:
            waited_s = time.time() - msg.metadata.timestamp.timestamp()
        except (AttributeError, ValueError):  # not a JetStream delivery
            return False
        if waited_s < self.settings.presence_after_s:
            return False
        try:
            present = await session_present(self.js, session)
        except Exception as exc:  # cannot tell: act as before presence existed
            log.warning("session %s: presence unknown (%s); taking the step", session, exc)
            return False
        if present is not False:
            return False
        if session not in self._gone:
            self._gone[session] = None
            while len(self._gone) > self.settings.max_cached_sessions:
                self._gone.popitem(last=False)
            log.info(
                "session %s: no gateway holds it (its candidate is gone); its events from "
                "%.0f s ago are recorded, no step is taken",
                session,
                waited_s,
            )
        self._forget(session)
        return True

    async def process(
        self, session: str, message: contract.BusMessage, msg: Msg | None = None
    ) -> None:
        """Apply one consumed event to its session and carry out every step it calls for;
        when another interviewer got a step in first, rebuild and look again."""
        lock = self._locks.setdefault(session, asyncio.Lock())
        async with lock:
            kind = type(message).__struct_config__.tag  # its subject's last token
            for _ in range(MAX_STALE_RETRIES):
                state = await self._state(session, kind)
                state.apply(message)
                try:
                    await self.advance(state, msg)
                    return
                except StaleSessionError as exc:
                    log.info("session %s: %s; rebuilding it", session, exc)
                    self._forget(session)
            raise StaleSessionError(f"session {session} kept changing under this interviewer")

    def _forget(self, session: str) -> None:
        self.states.pop(session, None)
        self._step_seq.pop(session, None)
        self._seen_counts.pop(session, None)

    async def _stored_counts(self, session: str) -> dict[str, int]:
        per_subject = await bus.subject_counts(self.js, contract.session_events_wildcard(session))
        return {k: per_subject.get(contract.event_subject(session, k), 0) for k in REBUILD_KINDS}

    async def _state(self, session: str, kind: str | None = None) -> InterviewState:
        """The session's state: the cached one while nothing but the event being handled
        (of `kind`) was stored since it was folded, else rebuilt from the stream."""
        counts = await self._stored_counts(session)
        state = self.states.get(session)
        if state is not None:
            seen = self._seen_counts.get(session, {})
            with_this = dict(seen)
            if kind in with_this:
                with_this[kind] += 1
            if counts in (seen, with_this):
                self._seen_counts[session] = counts
                return state
            self._forget(session)  # another interviewer took in events of this session
        state = InterviewState(session)
        events = []
        for kind in REBUILD_KINDS:
            events += await bus.read_events(
                self.js, contract.event_subject(session, kind), idle_timeout_s=1.0
            )
        for event in sorted(events, key=lambda e: e.seq):
            if event.message is not None:
                state.apply(event.message)
        if len(self.states) >= self.settings.max_cached_sessions:
            self._forget(next(iter(self.states)))
        self.states[session] = state
        self._step_seq[session] = max(
            (e.seq for e in events if e.subject.endswith(".interview")), default=0
        )
        # what was folded (read after `counts`: anything stored in between is counted now)
        self._seen_counts[session] = {
            k: sum(1 for e in events if e.subject == contract.event_subject(session, k))
            for k in REBUILD_KINDS
        }
        return state

    async def advance(self, state: InterviewState, msg: Msg | None = None) -> None:
        """Carry out every step the state calls for, publishing each one."""
        while (action := state.next_action()) is not None:
            if msg is not None:
                await msg.in_progress()
            try:
                await self._do(state, action)
            except contract.ProfileError as exc:
                await self._publish(
                    state, contract.ErrorStep(message=str(exc), stage="profile", retryable=False)
                )
                state.failed = True  # nothing can happen without a valid profile
                return

    async def _publish(self, state: InterviewState, data: contract.StepData) -> None:
        """Publish one step, only if no other step of the session was stored since this
        state's last one (`StaleSessionError` otherwise)."""
        event = contract.InterviewEvent.of(state.session, data)
        step = event.step
        expected = self._step_seq.get(state.session, 0)
        try:
            ack = await self.js.publish(
                contract.event_subject(state.session, "interview"),
                contract.encode(event),
                headers={EXPECTED_LAST_SUBJECT_SEQUENCE: str(expected)},
            )
        except BadRequestError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                raise StaleSessionError(
                    f"another interviewer published a step first (not {step!r} after "
                    f"sequence {expected})"
                ) from exc
            raise
        self._step_seq[state.session] = ack.seq
        seen = self._seen_counts.setdefault(state.session, dict.fromkeys(REBUILD_KINDS, 0))
        seen["interview"] += 1
        state.apply(event)

    async def _progress(self, state: InterviewState, data: contract.WorkingStep) -> None:
        """Publish a progress step on the session's ``progress`` subject: advisory, so with
        no concurrency check (it is no step of the state machine: the state does not fold
        it) and a failure costs only the candidate's clock, never the step."""
        event = contract.InterviewEvent.of(state.session, data)
        try:
            await self.js.publish(
                contract.event_subject(state.session, "progress"), contract.encode(event)
            )
        except Exception as exc:
            log.warning("session %s: cannot publish progress: %s", state.session, exc)

    def _profile(self, state: InterviewState) -> Profile:
        return Profile.parse(state.profile, max_intro_chars=self.max_intro_chars)

    async def _report_fallback(self, state: InterviewState, result: Any, stage: str) -> None:
        # `fallback_error` is already the candidate's sentence, in the interview's language
        # (llm.engine.fallback_label: too slow, unavailable, unusable or ungrounded output).
        error = getattr(result, "fallback_error", None)
        if error:
            await self._publish(
                state,
                contract.ErrorStep(
                    message=error,
                    stage=stage,
                    retryable=True,
                ),
            )

    def _working(
        self, stage: contract.WorkingStage, index: int = -1, attempt: int = 1
    ) -> contract.WorkingStep:
        """The progress step published before the engine is called (the room shows it,
        with a running clock, until the step's result replaces it)."""
        budget = getattr(self.engine, "budget_s", None)  # (stage) -> seconds or None
        return contract.WorkingStep(
            stage=stage,
            index=index,
            attempt=attempt,
            engine=str(getattr(self.engine, "name", "")),
            budget_s=budget(stage) if callable(budget) else None,
        )

    async def _do(self, state: InterviewState, action: Action) -> None:
        if action.kind == "questions":
            profile = self._profile(state)
            await self._progress(state, self._working("questions"))
            result = await self.engine.generate_questions(profile)
            await self._report_fallback(state, result, "questions")
            await self._publish(
                state,
                contract.QuestionsStep(
                    questions=list(result.questions),
                    engine=result.engine,
                    language=profile.language,
                ),
            )
        elif action.kind in ("ask", "retry", "follow_up"):
            follow_up = action.kind == "follow_up"
            if action.kind == "retry":
                attempt = state.current.attempt + 1
                question = state.current.question
                follow_up = state.current.follow_up
            else:
                attempt = 1
                question = state.follow_ups[0] if follow_up else state.questions[action.index]
            total = len(state.questions) + (len(state.follow_ups) if follow_up else 0)
            await self._publish(
                state,
                contract.AskedStep(
                    index=action.index,
                    attempt=attempt,
                    question=question,
                    total=max(total, action.index + 1),
                    follow_up=follow_up,
                ),
            )
        elif action.kind == "answered":
            await self._publish(state, state.answered_data())
        elif action.kind == "evaluate":
            await self._evaluate(state)
        elif action.kind == "report":
            await self._publish(
                state, contract.ReportStep(items=state.report_items(), engine=state.engine)
            )

    async def _scores_around(
        self, session: str, start_ms: float | None
    ) -> list[tuple[float, int, int]]:
        """The session's score updates an answer's emotion needs: those from its start on
        and one before it (the cumulative counts are differenced). Score updates arrive
        ~10 per second for a whole session, so only the last minute before the answer is
        read, and everything only when that minute holds no update from before it."""
        if start_ms is not None:
            recent = await _read_scores(self.js, session, start_ms - SCORE_LOOKBACK_MS)
            if any(at < start_ms for at, _, _ in recent):
                return recent
        return await _read_scores(self.js, session, None)

    async def _evaluate(self, state: InterviewState) -> None:
        turn = state.current
        record = state.answers[turn.key]
        data = contract.EvaluatedStep(
            index=turn.index, attempt=turn.attempt, question=turn.question
        )
        if record.text:
            profile = self._profile(state)
            await self._progress(state, self._working("evaluation", turn.index, turn.attempt))
            result = await self.engine.evaluate(profile, turn.question, record.text, record.metrics)
            await self._report_fallback(state, result, "evaluation")
            data.evaluation = msgspec.convert(result.model_dump(mode="json"), contract.Evaluation)
            data.rows = [tuple(row) for row in result.rows(profile.language)]
            data.engine = result.engine
        else:
            # nothing was heard (Done pressed before speaking, or the time cap): there is
            # nothing to judge, and the card says so instead of grading silence
            data.engine, data.no_answer = state.engine, True
        state.scores = await self._scores_around(state.session, record.ended.opened_ms)
        data.emotion = state.answer_score(turn.key)
        await self._publish(state, data)


async def _read_scores(
    js: Any, session: str, since_ms: float | None
) -> list[tuple[float, int, int]]:
    events = await bus.read_events(
        js, contract.event_subject(session, "score"), idle_timeout_s=1.0, since_ms=since_ms
    )
    return [
        (e.message.at_ms, e.message.positive, e.message.negative)
        for e in events
        if isinstance(e.message, contract.ScoreUpdate)
    ]


async def run_interviewer(bus_settings: BusSettings, settings: InterviewerSettings) -> None:
    """Entry point of `intervue interviewer`."""
    from llm.engine import build_engine
    from llm.settings import LlmSettings

    llm_settings = LlmSettings()
    engine = build_engine(llm_settings)
    await bus.serve(
        bus_settings,
        settings.name,
        lambda nc: Orchestrator(nc, engine, bus_settings, settings),
    )
