"""The private speech-dispatcher gives headless Chromium a voice, in English and Korean; the
room asks for the voices at once so its first question is not held up by the connection."""

from __future__ import annotations

import pytest

from deploy import speech_synthesis
from deploy.browser import launch_browser, logged_page
from deploy.speech_synthesis import PrivateSpeechDispatcher

pytestmark = [pytest.mark.e2e]

SPEAK = """async ([text, lang]) => {
  const started = Date.now();
  return await new Promise((resolve) => {
    const utterance = new SpeechSynthesisUtterance(text);
    utterance.lang = lang;
    let began = null;
    utterance.onstart = () => { began = Date.now() - started; };
    utterance.onend = () => resolve({ started: began, ended: Date.now() - started });
    utterance.onerror = (e) => resolve({ error: e.error });
    speechSynthesis.speak(utterance);
    setTimeout(() => resolve({ error: "no start within 15 s" }), 15000);
  });
}"""


async def test_headless_chromium_speaks_english_and_korean(speech_voice) -> None:
    async with (
        launch_browser(speech=speech_voice) as browser,
        logged_page(browser, "data:text/html,<p>room</p>", permissions=()) as lp,
    ):
        for text, lang in (
            ("Tell me about a cache you built.", "en-US"),
            ("캐시를 만든 경험을 말해 주세요.", "ko-KR"),
        ):
            result = await lp.page.evaluate(SPEAK, [text, lang])
            assert "error" not in result, (lang, result, lp.describe())


async def test_a_paced_voice_lasts_as_long_as_it_speaks(tmp_path) -> None:
    # The null device swallows a sentence at once; paced, the voice reads it in real time
    # (espeak-ng at its default 175 wpm: ~2.5 s for these 7 words)
    with PrivateSpeechDispatcher(tmp_path, paced=True) as voice:
        async with (
            launch_browser(speech=voice) as browser,
            logged_page(browser, "data:text/html,<p>room</p>", permissions=()) as lp,
        ):
            result = await lp.page.evaluate(SPEAK, ["Tell me about a cache you built.", "en-US"])
    assert "error" not in result, result
    assert result["ended"] - result["started"] >= 1500, result


async def test_without_a_voice_the_browser_says_why(tmp_path) -> None:
    # What the room meets on a machine without speech-dispatcher: an error, at once; the
    # room keeps the question on screen and records the reason (bench room reports it).
    async with (
        launch_browser() as browser,
        logged_page(browser, "data:text/html,<p>room</p>", permissions=()) as lp,
    ):
        result = await lp.page.evaluate(SPEAK, ["Hello.", "en-US"])
    assert result == {"error": "synthesis-failed"}


def test_a_dispatcher_stops_with_its_socket(tmp_path) -> None:
    voice = PrivateSpeechDispatcher(tmp_path)
    with voice:
        socket = voice.socket_path
        assert socket.exists() and voice.environ({})["SPEECHD_ADDRESS"] == f"unix_socket:{socket}"
        assert len(str(socket)) < 100  # a Unix socket path's limit, whatever tmp_path is
    assert not socket.exists() and not socket.parent.exists()


def test_what_is_missing_names_the_package(monkeypatch) -> None:
    monkeypatch.setattr(speech_synthesis.shutil, "which", lambda name: None)
    assert "apt-get install speech-dispatcher" in speech_synthesis.missing()
    with pytest.raises(speech_synthesis.SpeechDispatcherUnavailable, match="not installed"):
        PrivateSpeechDispatcher("/nonexistent").start()
