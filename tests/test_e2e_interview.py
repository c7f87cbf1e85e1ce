"""End to end: a candidate in headless Chromium answers three questions aloud (fake mic
playing espeak-ng speech) and gets transcripts, evaluations and a report — with the
offline engine, the real VAD, the real Whisper and a real nats-server."""

from __future__ import annotations

import asyncio

import pytest

from inference.vision_worker import VisionSettings, VisionWorker
from llm.orchestrator import InterviewerSettings, Orchestrator
from stream import bus, contract
from stream.gateway import GATEWAY, create_app
from stream.settings import GatewaySettings
from tests._servers import serve_app
from tests.browser import launch_browser, logged_page
from tests.media import make_face_y4m, make_speech_wav
from tests.test_e2e_room import _export, _wait

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

INTRO = (
    "I am a backend engineer with two years of experience. At my last company I built the "
    "Orion Search project with Python, PostgreSQL and Kubernetes, and cut query latency by 30%."
)
ANSWER = (
    "In the Orion project I used Python and a PostgreSQL database. For example, I added an "
    "index and caching, and as a result latency dropped by thirty percent."
)


@pytest.fixture
async def interview_stack(nc, bus_settings, models_dir, tmp_path):
    from inference.pipeline import VisionPipeline
    from inference.speech.models import prepare_whisper_models
    from inference.speech.worker import SpeechSettings, SpeechWorker, load_transcriber
    from llm.offline import OfflineEngine

    await asyncio.to_thread(prepare_whisper_models, models_dir, names=("tiny.en",))
    clients = [await bus.connect(bus_settings, f"e2e-{i}") for i in range(3)]
    vision = VisionWorker(
        clients[0], VisionPipeline.load(models_dir), bus_settings, VisionSettings(name="v")
    )
    speech_settings = SpeechSettings(models_dir=models_dir, model="tiny.en", name="s")
    transcriber = await asyncio.to_thread(load_transcriber, speech_settings)
    speech = SpeechWorker(clients[1], transcriber, bus_settings, speech_settings)
    interviewer = Orchestrator(clients[2], OfflineEngine(), bus_settings, InterviewerSettings())
    for role in (vision, speech, interviewer):
        await role.start()
    app = create_app(GatewaySettings(dev_mode=True), bus_settings, nc=nc)
    runner, base = await serve_app(app)
    yield {"url": f"{base}/", "gateway": app[GATEWAY]}
    await runner.cleanup()
    for role in (vision, speech, interviewer):
        await role.stop()
    for client in clients:
        await client.close()


async def test_three_questions_answered_aloud_give_evaluations_and_a_report(
    interview_stack, bus_settings, tmp_path
):
    video = make_face_y4m(tmp_path, seconds=4.0, fps=15)
    # Silence, an answer, silence: the fake mic loops it, so each loop is one answer.
    audio = make_speech_wav(tmp_path, ANSWER, lead_silence=1.0, trail_silence=2.5)
    async with launch_browser(video=video, audio=audio) as browser:
        async with logged_page(browser, interview_stack["url"]) as lp:
            page = lp.page
            await page.select_option("#language", "en")
            await page.fill("#job_title", "Backend engineer")
            await page.fill("#self_intro", INTRO)
            await page.click("#start")
            await _wait(
                lambda: page.evaluate("window.intervue.interview.current !== null"),
                timeout=30,
                what="the first question",
                describe=lp.describe,
            )
            question = await page.text_content("#question")
            assert question and "?" in question
            assert (await page.text_content("#engine")) == "offline engine"
            state = await _wait(
                lambda: page.evaluate("window.intervue.interview.report ? window.intervue : null"),
                timeout=150,
                what="the interview report",
                describe=lambda: (
                    lp.describe() + "\ninterview state: " + str(interview_stack["gateway"].sessions)
                ),
            )
            report_text = await page.text_content("#report")
            await page.screenshot(path=str(tmp_path / "interview.png"), full_page=True)
    interview = state["interview"]
    assert len(interview["questions"]) == 3
    assert len(interview["evaluations"]) == 3
    heard = " ".join(t["text"] for t in interview["transcripts"]).lower()
    for word in ("python", "database", "orion", "30"):
        assert word in heard, heard
    for evaluation in interview["evaluations"].values():
        assert len(evaluation["rows"]) == 7
        assert len(evaluation["evaluation"]["tips"]) == 3
    assert "Interview report" in report_text
    session = state["session"]
    exported = await asyncio.to_thread(_export, session, bus_settings.nats_url)
    steps = [e.get("step") for e in exported["events"] if e["type"] == "interview"]
    assert steps.count("asked") == 3 and steps.count("evaluated") == 3
    assert "questions" in steps and steps[-1] == "report"
    transcripts = [e for e in exported["events"] if e["type"] == "transcript"]
    assert transcripts and all("words_per_minute" in t["metrics"] for t in transcripts)
    assert any(e["type"] == "profile" for e in exported["events"])
    answered = [e for e in exported["events"] if e.get("step") == "answered"]
    assert all(a["data"]["metrics"] for a in answered)
    _ = contract  # the exported types are the contract's tags
