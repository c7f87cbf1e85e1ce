"""The real dashboard in real headless Chromium against hostile use (issue 12):

- the login lockout lives in the dashboard's server process: a reload or a fresh browser
  context is still locked out, and the right password is refused meanwhile, with the
  time to wait;
- text from candidates and from the bus is shown as text: Markdown and HTML in a job
  title, a question, a transcript, an evaluation, a model answer or an error make no link,
  no image and no request (a local HTTP server counts any request that would reach it).
"""

from __future__ import annotations

import asyncio
import http.server
import re
import threading
import typing
from collections.abc import Iterator

import msgspec
import pytest

from dashboard.auth import hash_password
from deploy.browser import launch_browser, new_logged_page
from stream import bus, contract
from stream.ports import free_port
from tests._dashboard_events import interview_session, publish
from tests._dashboard_server import running_dashboard

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def password_hash() -> str:
    return hash_password(PASSWORD)


async def _log_in(page, password: str) -> None:
    await page.get_by_role("textbox", name="Password").fill(password)
    await page.get_by_role("button", name="Log in").click()


async def _until(predicate, timeout_s: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


# --------------------------------------------------------------------------- lockout


async def _settled(page) -> None:
    """Wait for the script run a click started to finish (Streamlit marks its state on the
    app's root element)."""
    app = page.locator("[data-testid='stApp']")
    try:
        await page.locator("[data-test-script-state='running']").wait_for(timeout=3_000)
    except Exception:
        pass  # already over
    await app.and_(page.locator("[data-test-script-state='notRunning']")).wait_for(timeout=30_000)


async def _logged_in_or_refused(page) -> str:
    """ "logged in" when the dashboard opened, else the login form's error message."""
    opened = page.get_by_text("Interview sessions")
    error = page.locator("[data-testid='stAlert']")
    await opened.or_(error).first.wait_for(timeout=30_000)
    if await opened.count():
        return "logged in"
    return await error.first.inner_text()


async def test_a_lockout_survives_reloads_and_new_browsers(bus_settings, tmp_path, password_hash):
    wrong = ["guess-one", "guess-two", "guess-three"]
    with running_dashboard(
        bus_settings.nats_url, tmp_path, password_hash, max_failed_logins="3", lockout_s="120"
    ) as (url, log):
        async with launch_browser() as browser:
            first = await new_logged_page(browser, url, permissions=())
            await first.page.get_by_role("textbox", name="Password").wait_for()
            for guess in wrong:
                await _log_in(first.page, guess)
                await _settled(first.page)
            assert "Wrong user name or password" in await _logged_in_or_refused(first.page)

            # A reload of the same page: a new Streamlit session, still locked.
            await first.page.reload()
            await _log_in(first.page, PASSWORD)
            await _settled(first.page)
            after_reload = await _logged_in_or_refused(first.page)
            assert "password was not checked" in after_reload, after_reload

            # A fresh browser context (no cookies, no storage): still locked, the right
            # password refused with the time to wait.
            second = await new_logged_page(browser, url, permissions=())
            await _log_in(second.page, PASSWORD)
            await _settled(second.page)
            text = await _logged_in_or_refused(second.page)
            assert "Too many failed logins" in text and "password was not checked" in text, text
            assert re.search(r"Try again in (\d+ min )?\d+ s", text), text
            assert await second.page.get_by_role("textbox", name="Password").count() == 1
            await first.context.close()
            await second.context.close()
    logged = log.read_text()
    assert logged.count("dashboard login failed") == 3
    assert "dashboard login locked for 120 s: account 'interviewer'" in logged
    assert "dashboard login locked for 120 s: address '127.0.0.1'" in logged
    assert logged.count("refused without checking the password") == 2
    for secret in (*wrong, PASSWORD):
        assert secret not in logged
    assert "Traceback" not in logged, logged[-3000:]


# --------------------------------------------------------------------------- hostile text


class _Tripwire(http.server.BaseHTTPRequestHandler):
    hits: typing.ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/gif")
        self.end_headers()
        self.wfile.write(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def tripwire() -> Iterator[tuple[int, list[str]]]:
    """A local HTTP server that records every request: nothing may reach it."""
    port = free_port()
    handler = type("Tripwire", (_Tripwire,), {"hits": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield port, handler.hits
    server.shutdown()
    server.server_close()


def hostile_session(session: str, t0_ms: float, now_ms: float, port: int) -> tuple[list, dict]:
    """A live session whose every free-text field holds Markdown/HTML that would fetch
    from the tripwire or make a link; returns its messages and the strings to look for."""
    pixel = f"http://127.0.0.1:{port}"
    text = {
        "job": "[click](http://evil.example/job)",
        "company": f"![logo]({pixel}/company) <img src={pixel}/company2>",
        "intro": f"![x]({pixel}/intro)",
        "candidate": f"<img src={pixel}/meta onerror=window.__pwned=1>",
        "question": f"![q]({pixel}/question) **bold** <img src=x onerror=window.__pwned=1>",
        "word": f"![w]({pixel}/word)",
        "reason": f"![r]({pixel}/reason) [why](http://evil.example/why)",
        "tip": f"[tip](http://evil.example/tip) ![t]({pixel}/tip)",
        "model": f"**model** ![m]({pixel}/model)\n\n<script>window.__pwned=1</script>",
        "stage": "<b>stage</b>",
        "error": f"![e]({pixel}/error) `code`",
        "engine": "[engine](http://evil.example/engine)",
        "follow_up": f"![f]({pixel}/follow)",
    }
    out = []
    for m in interview_session(session, t0_ms, ended=False, until_ms=now_ms):
        if isinstance(m, contract.SessionEvent):
            m = msgspec.structs.replace(m, meta={"candidate": text["candidate"]})
        elif isinstance(m, contract.Profile):
            m = msgspec.structs.replace(
                m, job_title=text["job"], company=text["company"], self_intro=text["intro"]
            )
        elif isinstance(m, contract.Transcript):
            words = [*m.words[:3], contract.Word(text["word"], 1.0, 1.5, 0.9), *m.words[3:]]
            m = msgspec.structs.replace(m, text=" ".join(w.text for w in words), words=words)
        elif isinstance(m, contract.InterviewEvent) and m.step == "questions":
            data = msgspec.structs.replace(
                m.data, questions=[text["question"]] * 3, engine=text["engine"]
            )
            m = msgspec.structs.replace(m, data=data)
        elif isinstance(m, contract.InterviewEvent) and m.step == "asked":
            m = msgspec.structs.replace(
                m, data=msgspec.structs.replace(m.data, question=text["question"])
            )
        elif isinstance(m, contract.InterviewEvent) and m.step == "evaluated":
            rows = [(c, r, text["reason"]) for c, r, _ in m.data.rows]
            evaluation = contract.Evaluation(tips=[text["tip"]] * 3, model_answer=text["model"])
            data = msgspec.structs.replace(
                m.data, rows=rows, evaluation=evaluation, engine=text["engine"]
            )
            m = msgspec.structs.replace(m, data=data)
        out.append(m)
    out.append(
        contract.InterviewEvent(
            session=session,
            step="error",
            at_ms=now_ms - 500,
            data={"stage": text["stage"], "message": text["error"], "retryable": True},
        )
    )
    out.append(
        contract.InterviewCommand(
            session=session, command="follow_up", text=text["follow_up"], by="x", at_ms=now_ms
        )
    )
    return out, text


async def test_candidate_and_bus_text_is_shown_as_text(
    bus_settings, tmp_path, password_hash, tripwire
):
    port, hits = tripwire
    now = contract.now_ms()
    session = f"hostile{int(now) % 10_000_000}"
    messages, text = hostile_session(session, now - 105_000, now, port)
    nc = await bus.connect(bus_settings, "pytest-dashboard-security")
    try:
        js = nc.jetstream()
        await bus.ensure_events_stream(js, bus_settings)
        await publish(js, messages)
    finally:
        await nc.close()

    with running_dashboard(bus_settings.nats_url, tmp_path, password_hash) as (url, log):
        async with launch_browser() as browser:
            lp = await new_logged_page(browser, url, permissions=())
            page = lp.page
            await page.set_viewport_size({"width": 1400, "height": 1000})
            dialogs: list[str] = []
            page.on("dialog", lambda dialog: dialogs.append(dialog.message))
            await _log_in(page, PASSWORD)
            # The overview's card: title (candidate, job, company) and current question.
            card = page.locator(".st-key-open-" + session).get_by_role("button")
            await card.wait_for(timeout=30_000)
            await page.get_by_text("evil.example/job").first.wait_for(timeout=30_000)
            # (the word joiners markdown_text.literal puts in "://" and the like are invisible)
            overview = (await page.inner_text("body")).replace("\u2060", "")
            await card.click()
            await page.get_by_text("Questions, answers and evaluations").wait_for(timeout=30_000)
            await page.get_by_text("Interviewer errors").wait_for(timeout=30_000)
            # Open every expander so that everything in them is laid out and loaded.
            for summary in await page.locator("[data-testid='stExpander'] summary").all():
                await summary.click()
            await _settled(page)
            await page.wait_for_timeout(2500)  # time for any image or link to load
            body = (await page.inner_text("body")).replace("\u2060", "")
            found = await page.evaluate(
                """(port) => ({
                    pwned: window.__pwned,
                    images: [...document.images].map(i => i.src)
                        .filter(s => s.includes(':' + port) || s.endsWith('/x')),
                    // (a heading's own "#…" anchor is Streamlit's, not a link out)
                    links: [...document.querySelectorAll('a[href]')]
                        .filter(a => !a.getAttribute('href').startsWith('#'))
                        .filter(a => a.href.includes('evil') || a.href.includes(':' + port))
                        .map(a => a.href + ' in ' + (a.closest('[data-testid]') || {}).outerHTML),
                    scripts: [...document.scripts].filter(s => s.textContent.includes('pwned'))
                        .length,
                })""",
                str(port),
            )
            await lp.context.close()
    assert hits == [], f"the dashboard fetched from the tripwire: {hits}"
    assert found == {"pwned": None, "images": [], "links": [], "scripts": 0}, found
    assert not dialogs, dialogs
    # The text itself is shown, literally.
    assert text["job"] in overview and "<img src=" in overview
    for key in ("job", "question", "word", "reason", "tip", "stage", "error", "follow_up"):
        assert text[key] in body, (key, text[key])
    assert "**model**" in body and "<script>window.__pwned=1</script>" in body
    assert "[engine](http://evil.example/engine)" in body
    assert "Traceback" not in log.read_text()
