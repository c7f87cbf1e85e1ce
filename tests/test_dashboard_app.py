"""The Streamlit app through `streamlit.testing.v1.AppTest`, with sessions replayed into the
real nats-server of the test session: login, overview cards, a session's page, the
follow-up round trip through JetStream, bad input and JetStream going away and back."""

from __future__ import annotations

import asyncio
import html
import importlib.util
import json
import os
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import auth, login_limit
from dashboard.settings import DashboardSettings
from dashboard.store import shared_store
from deploy.nats_server import EmbeddedNats
from stream import bus, contract
from stream.ports import free_port
from stream.settings import BusSettings
from tests._dashboard_events import ANSWERS, QUESTIONS, interview_session, publish

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
PASSWORD = "s3cret-pass phrase"
_counter = iter(range(1_000_000))


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}x{next(_counter)}x{int(time.time() * 1000) % 1_000_000}"


def run_async(fn, *args):
    """Run a coroutine function in a thread of its own (the tests are synchronous)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(fn(*args))).result(60)


async def _replay(settings: BusSettings, messages, raw: list[tuple[str, bytes]]) -> None:
    nc = await bus.connect(settings, "pytest-dashboard-app")
    try:
        js = nc.jetstream()
        await bus.ensure_events_stream(js, settings)
        await publish(js, messages)
        for subject, payload in raw:
            await js.publish(subject, payload)
    finally:
        await nc.close()


def replay(settings: BusSettings, messages, raw=()) -> None:
    run_async(_replay, settings, list(messages), list(raw))


async def _commands(settings: BusSettings, session: str):
    nc = await bus.connect(settings, "pytest-dashboard-app")
    try:
        js = nc.jetstream()
        return await bus.read_events(js, contract.event_subject(session, "command"))
    finally:
        await nc.close()


def wait_in_store(url: str, session: str, count: int) -> None:
    store = shared_store(url)
    assert store.wait_for_events(session, count, 20), (session, count, store.status())


@pytest.fixture(scope="module", autouse=True)
def _stop_the_store(bus_settings):
    """The app's store follows the test server from a thread; stop it with the module."""
    yield
    shared_store(bus_settings.nats_url).stop()


@pytest.fixture(scope="module")
def password_hash() -> str:
    return auth.hash_password(PASSWORD)


@pytest.fixture(autouse=True)
def _fresh_login_limits():
    """The login limiter is process-wide (it must outlive browser sessions): each test
    starts with none, as a fresh dashboard would."""
    login_limit.forget_shared_limiters()
    yield
    login_limit.forget_shared_limiters()


@pytest.fixture
def app_env(monkeypatch, bus_settings, password_hash, tmp_path):
    for name in list(os.environ):
        if name.startswith("INTERVUE_DASHBOARD_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("INTERVUE_NATS_URL", bus_settings.nats_url)
    monkeypatch.setenv("INTERVUE_DASHBOARD_PASSWORD_HASH", password_hash)
    monkeypatch.setenv("INTERVUE_DASHBOARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)  # no .streamlit/secrets.toml: password login
    return bus_settings


def app(user: str | None = "tester", session: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    if user:
        at.session_state["user"] = user
    if session:
        at.query_params["session"] = session
    return at


def texts(at: AppTest) -> str:
    """Everything the page says in markdown, captions, alerts, headers and metrics (with
    character references decoded, as the browser shows them: text from the bus is written
    with them, dashboard/markdown_text.py)."""
    parts = [m.value for m in at.markdown]
    parts += [c.value for c in at.caption]
    for kind in ("error", "warning", "info", "success", "title", "subheader", "header"):
        parts += [e.value for e in getattr(at, kind)]
    parts += [f"{m.label}: {m.value}" for m in at.metric]
    return html.unescape("\n".join(str(p) for p in parts))


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]


def chart_data(at: AppTest) -> list[dict]:
    """Every row of every dataset the page's charts carry (Arrow IPC in the proto)."""
    import pyarrow as pa

    rows = []
    for chart in at.get("vega_lite_chart"):
        for dataset in chart.proto.datasets:
            table = pa.ipc.open_stream(dataset.data.data).read_all()
            rows += table.to_pylist()
    return rows


# --------------------------------------------------------------------------- login


def test_login_refuses_a_wrong_password_and_admits_the_right_one(app_env):
    at = app(user=None).run()
    assert not at.exception
    assert [t.value for t in at.title] == ["intervue"]
    at.text_input(key="login-password").input("wrong password")
    at.button(key="login-submit").click().run()
    assert "Wrong user name or password." in [e.value for e in at.error]
    assert "user" not in at.session_state
    assert "Interview sessions" not in [t.value for t in at.title]
    # A wrong user name with the right password is refused too.
    at.text_input(key="login-user").input("mallory")
    at.text_input(key="login-password").input(PASSWORD)
    at.button(key="login-submit").click().run()
    assert "user" not in at.session_state
    at.text_input(key="login-user").input("interviewer")
    at.text_input(key="login-password").input(PASSWORD)
    at.button(key="login-submit").click().run()
    assert not at.exception
    assert at.session_state["user"] == "interviewer"
    assert "Interview sessions" in [t.value for t in at.title]


def test_repeated_failures_lock_the_login_for_a_while(app_env, monkeypatch):
    monkeypatch.setenv("INTERVUE_DASHBOARD_MAX_FAILED_LOGINS", "2")
    at = app(user=None).run()
    for _ in range(2):
        at.text_input(key="login-password").input("nope")
        at.button(key="login-submit").click().run()
    at.text_input(key="login-password").input(PASSWORD)
    at.button(key="login-submit").click().run()
    assert any(
        "Too many failed logins" in e.value and "the password was not checked" in e.value
        for e in at.error
    ), [e.value for e in at.error]
    assert "user" not in at.session_state


def test_no_configured_password_is_a_clear_error(app_env, monkeypatch):
    monkeypatch.delenv("INTERVUE_DASHBOARD_PASSWORD_HASH")
    at = app(user=None).run()
    assert not at.exception
    assert any("No dashboard password is configured" in e.value for e in at.error)
    assert not at.text_input


def test_generated_credentials_are_stored_hashed_once(tmp_path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("INTERVUE_DASHBOARD_"):
            monkeypatch.delenv(name)
    user, password = auth.ensure_credentials(tmp_path)
    assert user == "interviewer" and password and len(password) >= 16
    path = auth.generated_hash_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert password not in path.read_text()
    assert auth.ensure_credentials(tmp_path) == ("interviewer", None)  # only once
    creds = auth.load_credentials(DashboardSettings(data_dir=tmp_path))
    assert creds.source == "generated" and password not in repr(creds)
    assert creds.check("interviewer", password)
    assert not creds.check("interviewer", password + "x")
    # A configured password file (a mounted secret) wins; nothing is generated then.
    secret = tmp_path / "secret"
    secret.write_text("plain-secret\n")
    monkeypatch.setenv("INTERVUE_DASHBOARD_PASSWORD_FILE", str(secret))
    assert auth.ensure_credentials(tmp_path / "other") == ("interviewer", None)
    assert not auth.generated_hash_path(tmp_path / "other").exists()
    creds = auth.load_credentials(DashboardSettings())
    assert creds.check("interviewer", "plain-secret") and not creds.check("interviewer", "x")
    hashed = auth.hash_password("pw", "pbkdf2_sha256")
    assert auth.verify_password("pw", hashed) and not auth.verify_password("pw2", hashed)
    assert not auth.verify_password("pw", "scrypt$broken")


# --------------------------------------------------------------------------- pages


@pytest.fixture(scope="module")
def sessions(bus_settings):
    """A live session (answering Q3), a finished one and one that stopped mid-way."""
    now = contract.now_ms()
    ids = {"live": unique("live"), "done": unique("done"), "stalled": unique("stall")}
    live = interview_session(ids["live"], now - 105_000, ended=False, until_ms=now)
    done = interview_session(ids["done"], now - 900_000)
    stalled = interview_session(ids["stalled"], now - 3_600_000, ended=False)[:400]
    bad = [(contract.event_subject(ids["done"], "emotion"), b"\x00 not msgpack")]
    replay(bus_settings, [*live, *done, *stalled], bad)
    wait_in_store(bus_settings.nats_url, ids["live"], len(live))
    wait_in_store(bus_settings.nats_url, ids["done"], len(done) + 1)
    wait_in_store(bus_settings.nats_url, ids["stalled"], len(stalled))
    return ids


def test_overview_shows_live_cards_and_finished_sessions(app_env, sessions):
    at = app().run()
    assert not at.exception
    page = texts(at)
    card = next(
        html.unescape(m.value) for m in at.markdown if f"<code>{sessions['live']}</code>" in m.value
    )
    assert "ML Engineer · Acme (3 y)" in card
    assert "LIVE" in card and "speaking" in card
    assert f"Q3/3 · {QUESTIONS[2]}" in card
    assert 'class="iv-score"' in card and "iv-band" in card
    assert "last 30 s: " in card and "anxiety" in card  # the mix of the last 30 s
    assert "fps" in card and "dropped" in card and "glass→result" in card
    assert at.button(key=f"open-{sessions['live']}")
    # Finished and stalled sessions are in the table, not among the cards.
    table = at.dataframe[0].value
    rows = {r["session"]: r for r in table.to_dict("records")}
    assert rows[sessions["done"]]["status"].startswith("ended")
    assert rows[sessions["done"]]["malformed"] == 1
    assert rows[sessions["stalled"]]["status"] == "stalled"
    assert sessions["live"] not in rows
    assert "JetStream unavailable" not in page
    # Opening a card's session goes to its page.
    at.button(key=f"open-{sessions['live']}").click().run()
    assert sessions["live"] in str(at.query_params["session"])
    assert "Emotion timeline" in [s.value for s in at.subheader]


def test_a_finished_session_replays_with_timeline_transcript_and_evaluations(app_env, sessions):
    at = app(session=sessions["done"]).run()
    assert not at.exception
    page = texts(at)
    specs = charts(at)
    titles = json.dumps(specs)
    assert "Emotion per class" in titles and "Valence" in titles
    assert "Emotion mix over time" in titles
    # Answer spans and question marks are layers of the timeline, over its data.
    rows = chart_data(at)
    assert {"answer to Q1", "answer to Q2", "answer to Q3"} <= {r.get("answer") for r in rows}
    assert {"Q1", "Q2", "Q3"} <= {r.get("label") for r in rows}
    assert {r["emotion"] for r in rows if "p" in r} == set(contract.EMOTIONS)
    assert any(r.get("valence", 0) < 0 for r in rows)  # the anxious start of Q3
    assert "ENDED" in page and "client ended the session" in page
    for question in QUESTIONS:
        assert question in page
    for word in ANSWERS[1].split()[:5]:
        assert f">{word}</span>" in page
    assert "anxiety rose during the first 10 s of Q3" in page
    assert "Answered: 3 / 3" in page
    assert "1 malformed event(s)" in page
    assert any(t.value.shape == (7, 3) for t in at.table)  # a rubric table
    assert "Overall:" in page and "Needs improvement" in json.dumps(
        [t.value.to_dict() for t in at.table], ensure_ascii=False
    )
    assert at.download_button(key="download-html")
    assert not at.text_area  # no follow-up form for a finished session


def test_a_session_that_ended_long_ago_is_archived_and_read_back_when_opened(app_env, bus_settings):
    session = unique("old")
    messages = interview_session(session, contract.now_ms() - 3 * 3600_000)
    replay(bus_settings, messages)
    store = shared_store(bus_settings.nats_url)
    deadline = time.monotonic() + 20
    while store.event_count(session) < len(messages):
        assert time.monotonic() < deadline, store.status()
        time.sleep(0.05)
    # Ended hours ago: only its summary events stay in memory ...
    assert store.archived(session)
    _, kept = store.events(session)
    kinds = [e.subject.rsplit(".", 1)[-1] for e in kept]
    assert "emotion" not in kinds and kinds.count("score") == 1
    assert len(kept) < len(messages) / 5
    # ... the overview lists it from them, with the true event count ...
    at = app().run()
    assert not at.exception
    rows = {r["session"]: r for r in at.dataframe[0].value.to_dict("records")}
    assert rows[session]["events"] == len(messages)
    assert rows[session]["answered"] == 3 and rows[session]["status"].startswith("ended")
    # ... and its page reads every event back from JetStream: the whole timeline.
    at = app(session=session).run()
    assert not at.exception
    assert {r["emotion"] for r in chart_data(at) if "p" in r} == set(contract.EMOTIONS)
    assert "anxiety rose during the first 10 s of Q3" in texts(at)


def test_follow_up_round_trip_through_jetstream(app_env, sessions, bus_settings):
    session = sessions["live"]
    at = app(user="kim", session=session).run()
    assert not at.exception
    assert "Now asking Q3:" in texts(at)
    before = len(shared_store(bus_settings.nats_url).events(session)[1])
    at.text_area(key="follow-up-text").input("  Why did you choose Python?  ")
    at.button(key="follow-up-send").click().run()
    assert any("Sent" in s.value for s in at.success), texts(at)
    commands = run_async(_commands, bus_settings, session)
    assert len(commands) == 1
    command = commands[0].message
    assert isinstance(command, contract.InterviewCommand)
    assert (command.command, command.text, command.by) == (
        "follow_up",
        "Why did you choose Python?",
        "kim",
    )
    # The page lists it as waiting until the interviewer asks it.
    wait_in_store(bus_settings.nats_url, session, before + 1)
    at.run()
    assert "Follow-up waiting to be asked: “Why did you choose Python?”" in texts(at)
    # An empty question is not sent.
    at.text_area(key="follow-up-text").input("   ")
    at.button(key="follow-up-send").click().run()
    assert any("Type a question first" in w.value for w in at.warning)
    assert len(run_async(_commands, bus_settings, session)) == 1


def test_pages_for_missing_bad_and_stalled_sessions(app_env, sessions):
    at = app(session=unique("nothing")).run()
    assert not at.exception
    assert any("No events for this session yet" in i.value for i in at.info)
    at = app(session="not.a.session").run()
    assert any("Not a session id" in e.value for e in at.error)
    at = app(session=sessions["stalled"]).run()
    assert not at.exception
    assert any("stopped mid-way" in w.value for w in at.warning)
    assert "STALLED" in texts(at)


def test_jetstream_unavailable_banner_and_recovery(app_env, monkeypatch, tmp_path):
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    monkeypatch.setenv("INTERVUE_NATS_URL", url)
    store = shared_store(url)
    try:
        deadline = time.monotonic() + 15
        while store.status().state != "unavailable" and time.monotonic() < deadline:
            time.sleep(0.1)
        at = app().run()
        assert not at.exception
        banner = [e.value for e in at.error if "JetStream unavailable" in e.value]
        assert banner and "reconnecting automatically" in banner[0]
        # NATS comes back (and a session is recorded): the banner goes, the session shows.
        server = EmbeddedNats(tmp_path / "nats", port=port, log_file=tmp_path / "nats.log")
        server.start()
        try:
            session = unique("back")
            messages = interview_session(session, contract.now_ms() - 900_000, questions=1)
            replay(BusSettings(nats_url=url), messages)
            assert store.wait_for_events(session, len(messages), 30), store.status()
            at.run()
            assert not at.exception
            assert not [e.value for e in at.error if "JetStream unavailable" in e.value]
            rows = at.dataframe[0].value.to_dict("records")
            assert session in [r["session"] for r in rows]
        finally:
            server.stop()
    finally:
        store.stop()


def test_oidc_login_is_used_when_streamlit_auth_is_configured(app_env, monkeypatch):
    at = app(user=None)
    at.secrets = {
        "auth": {
            "redirect_uri": "http://localhost:8501/oauth2callback",
            "cookie_secret": "x" * 32,
            "client_id": "id",
            "client_secret": "secret",
            "server_metadata_url": "https://idp.example/.well-known/openid-configuration",
        }
    }
    at.run()
    assert not at.exception
    if importlib.util.find_spec("authlib") is None:
        assert any("needs Authlib" in e.value for e in at.error)
    else:  # AppTest's user is logged in: the dashboard opens without the password form
        assert "Interview sessions" in [t.value for t in at.title]
    assert not [t for t in at.text_input if t.key == "login-password"]
    # Asking for OIDC without configuring it is a clear error, not a crash.
    monkeypatch.setenv("INTERVUE_DASHBOARD_AUTH", "oidc")
    at = app(user=None).run()
    assert not at.exception
    assert any("no [auth] section" in e.value for e in at.error)


# --------------------------------------------------------------------------- round trip


def _steps_in_store(store, session: str) -> list[contract.InterviewEvent]:
    return [
        e.message
        for e in store.events(session)[1]
        if isinstance(e.message, contract.InterviewEvent)
    ]


def wait_step(store, session: str, step: str, count: int = 1, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        steps = _steps_in_store(store, session)
        if sum(s.step == step for s in steps) >= count:
            return steps
        time.sleep(0.1)
    raise AssertionError(f"no {step!r} x{count}: {[s.step for s in steps]}")


class Interviewer:
    """The real orchestrator with the offline engine, in a thread with its own loop."""

    def __init__(self, settings: BusSettings) -> None:
        self.settings = settings
        self.ready = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        from llm.offline import OfflineEngine
        from llm.orchestrator import InterviewerSettings, Orchestrator
        from llm.settings import LlmSettings

        self.loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        nc = await bus.connect(self.settings, "dashboard-test-interviewer")
        orchestrator = Orchestrator(
            nc, OfflineEngine(LlmSettings()), self.settings, InterviewerSettings(ack_wait_s=5)
        )
        await orchestrator.start()
        self.ready.set()
        try:
            await self.stop_event.wait()
        finally:
            await orchestrator.stop()
            await nc.close()

    def __enter__(self) -> Interviewer:
        self.thread.start()
        assert self.ready.wait(20)
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(20)


def test_a_follow_up_from_the_dashboard_is_asked_and_evaluated(app_env, monkeypatch, tmp_path):
    # A server of its own: the interviewer replays the whole stream and would otherwise
    # take up the other tests' recorded sessions.
    server = EmbeddedNats(tmp_path / "nats", port=free_port(), log_file=tmp_path / "nats.log")
    server.start()
    settings = BusSettings(nats_url=server.url)
    monkeypatch.setenv("INTERVUE_NATS_URL", server.url)
    store = shared_store(server.url)
    session = unique("fu")

    def say(uid: str, text: str, question: int) -> None:
        """One answer turn: its transcript, its end (Done), as the gateway stores them."""
        now = contract.now_ms()
        replay(
            settings,
            [
                contract.Transcript(
                    session=session,
                    utterance_id=uid,
                    text=text,
                    language="en",
                    start_ms=now - 4_000,
                    end_ms=now,
                    cut_ms=now,
                    done_ms=now + 200,
                    metrics=contract.SpeakingMetrics(duration_s=4.0, word_count=len(text.split())),
                    question=question,
                    attempt=1,
                ),
                contract.AnswerEnded(
                    session=session,
                    question=question,
                    attempt=1,
                    reason="done",
                    parts=[f"{uid}#0"],
                    opened_ms=now - 5_000,
                    at_ms=now + 100,
                ),
            ],
        )

    def next_question(question: int) -> None:
        """The candidate read the feedback and pressed Next."""
        request = contract.CandidateRequest(
            session=session, request="next", question=question, attempt=1, at_ms=1.0
        )
        replay(settings, [request])

    try:
        with Interviewer(settings):
            now = contract.now_ms()
            replay(
                settings,
                [
                    contract.SessionEvent(session=session, event="started", at_ms=now),
                    contract.Profile(
                        session=session,
                        job_title="Backend Engineer",
                        years=4,
                        company="Initech",
                        self_intro="I build Python services with PostgreSQL and Kafka at scale.",
                        language="en",
                        at_ms=now,
                    ),
                ],
            )
            wait_step(store, session, "asked")
            at = app(user="lee", session=session).run()
            assert not at.exception
            at.text_area(key="follow-up-text").input("Why did you pick Kafka over RabbitMQ?")
            at.button(key="follow-up-send").click().run()
            assert any("Sent" in s.value for s in at.success), texts(at)
            # The candidate answers the first question; the interviewer evaluates it, then
            # (when the candidate presses Next) asks the interviewer's question.
            say("a1", "I designed an order service in Python that handled ten thousand rps.", 0)
            wait_step(store, session, "evaluated")
            next_question(0)
            steps = wait_step(store, session, "asked", count=2)
            asked = [s for s in steps if s.step == "asked"]
            assert asked[1].data.follow_up is True
            assert asked[1].data.question == "Why did you pick Kafka over RabbitMQ?"
            say("a2", "Kafka kept the event log so consumers could replay it after a failure.", 1)
            wait_step(store, session, "evaluated", count=2)
            at.run()
            assert not at.exception
            page = texts(at)
            assert "#### Q2 · interviewer's follow-up" in page
            assert "Why did you pick Kafka over RabbitMQ?" in page
            assert "Follow-up waiting" not in page
            assert any(e.label.startswith("Evaluation of Q2") for e in at.expander)
            commands = run_async(_commands, settings, session)
            assert [c.message.by for c in commands] == ["lee"]
    finally:
        store.stop()
        server.stop()


# --------------------------------------------------------------------------- invitations


def test_the_dashboard_makes_invitation_links_the_gateway_accepts(app_env, monkeypatch):
    from stream import tokens

    key = "dashboard-invitation-signing-key-0123456789"
    monkeypatch.setenv("INTERVUE_GATEWAY_TOKEN_SECRET", key)
    monkeypatch.setenv("INTERVUE_DASHBOARD_GATEWAY_URL", "https://rooms.example/")
    at = app().run()
    [room] = [t for t in at.sidebar.text_input if t.label == "Room"]
    room.input("kim-1")
    at.sidebar.button[-1].click().run()
    assert not at.exception
    [link] = [c.value for c in at.sidebar.code]
    assert link.startswith("https://rooms.example/?room=kim-1&token=")
    token = link.split("token=", 1)[1]
    assert tokens.verify(key.encode(), token, "kim-1", time.time()).room == "kim-1"
