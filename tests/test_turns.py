"""Answer turns (pure): a pause to think never ends an answer; a long silence after
speech, the time cap, or Done does; the page's clock says what is coming."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stream.turns import AnswerTurn, TurnSettings

SETTINGS = TurnSettings(silence_end_s=5.0, silence_hint_s=2.0, max_answer_s=60.0, countdown_s=10.0)


def _turn(**kwargs) -> AnswerTurn:
    return AnswerTurn(SETTINGS, question=0, attempt=1, opened_ms=0.0, **kwargs)


def test_thinking_pauses_never_end_an_answer():
    turn = _turn()
    at = 1000.0
    for _ in range(6):  # speech, then a 2.5 s pause, six times
        turn.speech(True, at)
        turn.speech(False, at + 4000)
        at += 6500
        assert turn.due(at) is None
    assert turn.open


def test_a_long_silence_after_speech_ends_it_with_a_hint_first():
    turn = _turn()
    turn.speech(True, 1000)
    turn.speech(False, 3000)
    status = turn.status(5500)
    assert status.silence_left_ms == 2500 and not status.silence_hint
    status = turn.status(6200)
    assert status.silence_hint and status.silence_left_ms == 1800
    assert turn.due(7999) is None
    assert turn.due(8000) == "silence"


def test_silence_before_any_speech_waits_for_the_candidate():
    turn = _turn()
    assert turn.due(50_000) is None
    assert turn.status(50_000).silence_left_ms is None
    # speech that began before the question and ends in the turn does not count either
    early = _turn(speaking=True)
    early.speech(False, 1000)
    assert early.due(30_000) is None and not early.spoken


def test_no_silence_end_while_the_page_reconnects():
    turn = _turn()
    turn.speech(True, 1000)
    turn.speech(False, 2000)
    assert turn.due(9000, listening=False) is None
    assert turn.due(9000) == "silence"


def test_the_time_cap_ends_it_with_a_countdown_first():
    turn = _turn()
    turn.speech(True, 1000)  # talking on and on
    assert not turn.status(49_000).countdown
    status = turn.status(51_000)
    assert status.countdown and status.cap_left_ms == 9000
    assert turn.due(59_999) is None
    assert turn.due(60_000) == "time_cap"


def test_an_ended_turn_lists_its_parts_and_takes_no_more():
    turn = _turn()
    turn.add_part("u1#0")
    turn.add_part("u1#1")
    turn.add_part("u1#1")
    turn.end("done", 12_000)
    turn.add_part("u2#0")
    turn.end("silence", 13_000)  # the first end counts
    event = turn.ended_event("s1")
    assert (event.reason, event.parts, event.at_ms) == ("done", ["u1#0", "u1#1"], 12_000)
    assert turn.due(100_000) is None
    status = turn.status(20_000)
    assert status.state == "ended" and status.reason == "done" and status.elapsed_ms == 12_000


def test_settings_are_checked():
    with pytest.raises(ValidationError):
        TurnSettings(silence_end_s=3.0, silence_hint_s=3.0)
    assert TurnSettings(silence_end_s=0).silence_end_s == 0  # silence never ends an answer
    off = AnswerTurn(TurnSettings(silence_end_s=0), 0, 1, 0.0)
    off.speech(True, 0)
    off.speech(False, 1)
    assert off.due(170_000) is None
