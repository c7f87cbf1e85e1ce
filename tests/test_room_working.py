"""The room page while the interviewer works (a ``working`` step): a running clock in the
candidate's language once the step has taken a moment, nothing for an instant step, and
the step's result replaces it. Real headless Chromium on the page's own files; the data
channel's messages are handed to the page's handler as the gateway would send them."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import pytest
from aiohttp import web

from deploy.browser import launch_browser, logged_page
from stream import contract

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STATIC = Path(str(resources.files("stream").joinpath("static")))


@pytest.fixture
async def room_url():
    async def page(_: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "room.html")

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_static("/", STATIC)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/"
    await runner.cleanup()


def _update(data: contract.StepData) -> str:
    """A step as the gateway sends it on the data channel (JSON text)."""
    event = contract.InterviewEvent.of("s1", data)
    return contract.encode_page(
        contract.InterviewUpdate(step=event.step, data=event.data, at_ms=event.at_ms)
    )


_ASKED = contract.AskedStep(
    index=0, attempt=1, question="EmoVision 프로젝트를 설명해 주세요.", total=3
)
_ANSWERED = contract.AnsweredStep(index=0, attempt=1, answer="저는 PyTorch로 모델을 만들었습니다.")
_WORKING = contract.WorkingStep(stage="evaluation", index=0, attempt=1, engine="llm", budget_s=90)
_ROWS = [
    ("전반적인 점수", "무난함", "나머지 항목 평가의 중앙값(무난함)."),
    ("참고 답안과의 유사도", "무난함 (40%)", "핵심 일부를 다룹니다."),
    ("명확성", "무난함", "구조가 보입니다."),
    ("기술 설명", "무난함", "이유가 있습니다. [규칙] 말로 30초(약 120음절)보다 짧은 답변은 …"),
    ("적절한 예시", "개선 필요함", "사례가 없습니다."),
    ("소통 방식", "개선 필요함", "답변이 짧습니다."),
    ("자연스러운 답변", "매우 좋음", "군말 0개."),
]
_EVALUATED = contract.EvaluatedStep(
    index=0,
    attempt=1,
    question=_ASKED.question,
    engine="llm",
    rows=_ROWS,
    evaluation=contract.Evaluation(
        tips=["팁 1", "팁 2", "팁 3"],
        model_answer="모범 답안",
        engine="llm",
        rule_based=["overall", "communication", "natural_delivery"],
        clamped=["technical_explanation"],
    ),
)

# Every text the card shows over time, as a MutationObserver sees it.
_WATCH = """() => {
  window.seen = [];
  const cards = document.getElementById("cards");
  new MutationObserver(() => window.seen.push(cards.innerText)).observe(
    cards, { childList: true, subtree: true, characterData: true });
}"""


async def _open(lp, url: str) -> None:
    await lp.page.goto(url)
    await lp.page.evaluate(
        """() => { document.getElementById("language").value = "ko"; applyLanguage();
        document.getElementById("interview").style.display = "block"; }"""
    )


async def _send(lp, *steps: contract.StepData) -> None:
    for step in steps:
        await lp.page.evaluate("(text) => onMessage({ data: text })", _update(step))


async def test_a_slow_step_shows_a_running_clock_in_korean_until_its_result(room_url, tmp_path):
    async with launch_browser() as browser, logged_page(browser, None) as lp:
        await _open(lp, room_url)
        await _send(lp, _ASKED, _ANSWERED, _WORKING)
        line = lp.page.locator("#working-line")
        await line.wait_for(timeout=5000)
        await lp.page.wait_for_function(
            "document.getElementById('working-line').innerText.includes('2초')", timeout=5000
        )
        text = await line.inner_text()
        assert text.startswith("답변을 평가하고 있어요…") and "(최대 90초)" in text, text
        shot = Path(os.environ.get("INTERVUE_SCREENSHOT_DIR", tmp_path)) / "room-working-ko.png"
        await lp.page.locator("#interview").screenshot(path=str(shot))
        await _send(lp, _EVALUATED)
        assert await line.count() == 0
        assert await lp.page.evaluate("window.intervue.interview.working") is None
        # the rows the rules rated are marked, and a note says who wrote what
        marked = await lp.page.locator("table.eval tr:has(.badge.rule) td:first-child").all()
        assert [await m.inner_text() for m in marked] == [
            "전반적인 점수",
            "소통 방식",
            "자연스러운 답변",
        ]
        assert "AI 면접관이 썼습니다" in await lp.page.locator("#cards").inner_text()
        await lp.page.locator("#interview").screenshot(
            path=str(shot.with_name("room-rules-ko.png"))
        )
        assert not lp.errors, lp.describe()


async def test_questions_being_prepared_show_in_english(room_url):
    async with launch_browser() as browser, logged_page(browser, None) as lp:
        await _open(lp, room_url)
        await lp.page.evaluate(
            '() => { document.getElementById("language").value = "en"; applyLanguage(); }'
        )
        await _send(lp, contract.WorkingStep(stage="questions", engine="llm"))
        await lp.page.wait_for_function(
            "getComputedStyle(document.getElementById('cards'), '::before').content"
            ".includes('Preparing your questions… 1 s')",
            timeout=5000,
        )
        await _send(lp, contract.QuestionsStep(questions=["a", "b", "c"], engine="llm"))
        waiting = await lp.page.get_attribute("#cards", "data-waiting")
        assert waiting == "Preparing questions from your self-introduction…"


async def test_an_instant_step_never_flashes(room_url):
    async with launch_browser() as browser, logged_page(browser, None) as lp:
        await _open(lp, room_url)
        await _send(lp, _ASKED, _ANSWERED)
        await lp.page.evaluate(_WATCH)
        offline = contract.WorkingStep(stage="evaluation", index=0, attempt=1, engine="offline")
        await _send(lp, offline, _EVALUATED)
        await lp.page.wait_for_timeout(800)  # well past the delay: nothing may appear late
        seen = await lp.page.evaluate("window.seen")
        assert seen and not any("평가하고 있어요" in text for text in seen), json.dumps(seen)
