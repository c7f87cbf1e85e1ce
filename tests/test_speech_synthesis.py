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


CANCEL_THEN_SPEAK = """async ([long, short, lang]) => {
  const say = (text) => new Promise((resolve) => {
    const utterance = new SpeechSynthesisUtterance(text);
    utterance.lang = lang;
    const started = Date.now();
    let began = null;
    utterance.onstart = () => { began = Date.now() - started; };
    utterance.onend = () => resolve({ started: began, ended: Date.now() - started });
    utterance.onerror = (e) => resolve({ error: e.error, after: Date.now() - started });
    speechSynthesis.speak(utterance);
    setTimeout(() => resolve({ error: "no end within 30 s" }), 30000);
  });
  const first = say(long);
  await new Promise((resolve) => setTimeout(resolve, 2500));
  speechSynthesis.cancel();  // what Answer now does while the question is read
  return { first: await first, second: await say(short) };
}"""


@pytest.mark.parametrize(("lang", "long", "short"), [
    ("en-US", "Tell me about a cache you built, why you built it, and what it cost you "
     "in memory, in latency and in the time your team spent on it.", "What did you learn?"),
    ("ko-KR", "캐시를 만든 경험과 그 이유, 그리고 메모리와 지연 시간, 팀의 시간에서 "
     "치른 비용을 말해 주세요.", "무엇을 배웠나요?"),
])  # fmt: skip
async def test_a_paced_voice_stopped_midway_speaks_again(tmp_path, lang, long, short) -> None:
    # Answer now cancels the voice mid-question; the next question must still be read
    # aloud, as long as it takes (the first paced voice died at its first cancel).
    with PrivateSpeechDispatcher(tmp_path, paced=True) as voice:
        async with (
            launch_browser(speech=voice) as browser,
            logged_page(browser, "data:text/html,<p>room</p>", permissions=()) as lp,
        ):
            result = await lp.page.evaluate(CANCEL_THEN_SPEAK, [long, short, lang])
    assert result["first"].get("error") in ("interrupted", "canceled"), result
    assert "error" not in result["second"], result
    assert result["second"]["ended"] - result["second"]["started"] >= 700, result


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
