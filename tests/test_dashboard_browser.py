"""The real dashboard in real headless Chromium: `run_dashboard` in a subprocess against
the test nats-server with replayed sessions; log in, open a session, save a screenshot,
and find the timeline and the transcript on the page."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deploy.browser import launch_browser, logged_page
from stream import bus, contract
from tests._dashboard_events import ANSWERS, QUESTIONS, interview_session, publish
from tests._dashboard_server import running_dashboard

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"


async def _full_screenshot(page, path: Path) -> None:
    """Streamlit scrolls inside its main element, not the page: grow the viewport to the
    content's height, take the picture, and restore it."""
    size = page.viewport_size
    height = await page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('[data-testid=stMain], "
        "[data-testid=stAppViewContainer], section.main')].map(e => e.scrollHeight), "
        "document.body.scrollHeight)"
    )
    await page.set_viewport_size({"width": size["width"], "height": min(int(height) + 40, 8000)})
    await page.wait_for_timeout(800)
    await page.screenshot(path=str(path), full_page=True)
    await page.set_viewport_size(size)


@pytest.fixture
def dashboard_server(bus_settings, tmp_path):
    from dashboard.auth import hash_password

    with running_dashboard(bus_settings.nats_url, tmp_path, hash_password(PASSWORD)) as server:
        yield server


async def test_log_in_open_a_session_see_timeline_and_transcript(
    bus_settings, dashboard_server, tmp_path
):
    url, log = dashboard_server
    now = contract.now_ms()
    tag = f"{os.getpid()}{int(now) % 100000}"
    live = f"brlive{tag}"
    done = f"brdone{tag}"
    nc = await bus.connect(bus_settings, "pytest-dashboard-browser")
    js = nc.jetstream()
    await bus.ensure_events_stream(js, bus_settings)
    await publish(js, interview_session(live, now - 105_000, ended=False, until_ms=now))
    await publish(js, interview_session(done, now - 600_000))
    await nc.close()

    async with launch_browser() as browser, logged_page(browser, permissions=()) as lp:
        page = lp.page
        await page.set_viewport_size({"width": 1400, "height": 1000})
        await page.goto(url)
        # Log in.
        await page.get_by_role("textbox", name="Password").fill(PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await page.get_by_text("Live now").wait_for(timeout=30_000)
        # The live session's card, then its page.
        card_button = page.locator(".st-key-open-" + live).get_by_role("button")
        await card_button.wait_for(timeout=30_000)
        await _full_screenshot(page, tmp_path / "dashboard-overview.png")
        await card_button.click()
        await page.get_by_text("Emotion timeline").wait_for(timeout=30_000)
        charts = page.locator("[data-testid='stVegaLiteChart']")
        await charts.first.wait_for(timeout=30_000)
        # Vega renders the timeline into a canvas or an SVG inside the chart element.
        await page.locator(
            "[data-testid='stVegaLiteChart'] canvas, [data-testid='stVegaLiteChart'] svg"
        ).first.wait_for(timeout=30_000)
        await page.get_by_text("Questions, answers and evaluations").wait_for()
        first_words = " ".join(ANSWERS[0].split()[:2])
        transcript = page.locator("span.w", has_text=ANSWERS[0].split()[1])
        await transcript.first.wait_for(timeout=30_000)
        await page.wait_for_timeout(1500)  # let the charts finish drawing
        shot = tmp_path / "dashboard-session.png"
        await _full_screenshot(page, shot)
        text = await page.inner_text("body")
        assert "Emotion per class" in await page.content() or await charts.count() >= 2, (
            lp.describe()
        )
        assert first_words.split()[1] in text, lp.describe()
        assert "anxiety rose during the first 10 s of Q3" in text, lp.describe()
        assert "JetStream unavailable" not in text
        assert shot.stat().st_size > 20_000
        print(f"screenshot: {shot}")
        # The report downloads as one self-contained HTML file.
        async with page.expect_download(timeout=30_000) as info:
            await page.get_by_role("button", name="Download report (HTML)").click()
        download = await info.value
        saved = tmp_path / "report.html"
        await download.save_as(saved)
        document = saved.read_text(encoding="utf-8")
        assert document.startswith("<!doctype html>") and "<svg" in document
        assert QUESTIONS[0] in document and live in document
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def test_the_report_prints_to_pdf_with_chromium(tmp_path):
    from dashboard import aggregate, report
    from stream.bus import StoredEvent
    from tests._dashboard_events import kind_of

    # .ci/run installs Chromium and the dev extra Playwright: the other browser tests
    # need them too, so their absence is a failure here, not a reason to skip
    assert report.pdf_available(), "Playwright or Chromium is not installed"
    t0 = 1_700_000_000_000.0
    messages = interview_session("pdf1", t0)
    events = [
        StoredEvent(i + 1, contract.event_subject(m.session, kind_of(m)), m)
        for i, m in enumerate(messages)
    ]
    document = report.render_html(aggregate.fold(events), t0 + 200_000)
    pdf = report.html_to_pdf(document)
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
    (tmp_path / "report.pdf").write_bytes(pdf)
