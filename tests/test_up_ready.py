"""`intervue up`'s parts that need no roles running: what the banner waits for, and which
Whisper model it prepares."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from aiohttp import web

from deploy.nats_server import EmbeddedNats
from deploy.up import (
    READY_LINES,
    Child,
    ReadinessCheck,
    http_ready,
    logged_ready,
    prepare_speech_model,
    wait_until_ready,
)
from inference.speech.worker import SpeechSettings
from stream.ports import free_port
from tests._servers import serve_app


async def test_the_wait_ends_when_every_check_passed(caplog: pytest.LogCaptureFixture) -> None:
    answers = iter([503, 503, 200])

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(status=next(answers, 200))

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner, url = await serve_app(app)
    child = Child("speech-1", [], {}, READY_LINES["speech"])
    child.ready.set()  # as Supervisor._pump does on the child's ready line
    try:
        with caplog.at_level(logging.INFO, logger="deploy.up"):
            not_ready = await wait_until_ready(
                [
                    ReadinessCheck("gateway", "answers /healthz", http_ready(url + "/healthz")),
                    ReadinessCheck("speech-1", "serving on the bus", logged_ready(child)),
                ],
                timeout_s=60,
                poll_s=0.05,
            )
    finally:
        await runner.cleanup()
    assert not_ready == []
    assert "waiting for gateway (answers /healthz)" in caplog.text


async def test_the_wait_is_bounded_and_names_what_is_not_ready() -> None:
    never = Child("interviewer", [], {}, READY_LINES["interviewer"])
    refused = ReadinessCheck("dashboard", "answers HTTP", http_ready("http://127.0.0.1:9/"))
    silent = ReadinessCheck("interviewer", "serving on the bus", logged_ready(never))
    not_ready = await wait_until_ready([refused, silent], timeout_s=0.3, poll_s=0.05)
    assert [c.name for c in not_ready] == ["dashboard", "interviewer"]


def test_ready_lines_match_what_the_roles_log() -> None:
    # The lines as the roles write them (inference/vision_worker.py,
    # inference/speech/worker.py, llm/orchestrator.py); test_up checks them live.
    assert READY_LINES["vision"].search(
        "vision worker vision-host-12 serving intervue.frames.* in queue group vision (…)"
    )
    assert READY_LINES["speech"].search(
        "speech worker speech-host-13 pulling intervue.utterances.* from INTERVUE_UTTERANCES"
    )
    assert READY_LINES["interviewer"].search(
        "interviewer interviewer-host-14 consuming profile, transcript"
    )


def test_up_prepares_only_the_configured_whisper_model(tmp_path: Path) -> None:
    prepared = prepare_speech_model(tmp_path, SpeechSettings(model="tiny.en"))
    assert prepared is not None and prepared["name"] == "tiny.en"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["whisper-tiny.en"]

    # a models directory of the speech workers' own wins, as it does in the workers
    own = tmp_path / "speech-models"
    prepare_speech_model(tmp_path, SpeechSettings(model="whisper-tiny.en", models_dir=own))
    assert sorted(p.name for p in own.iterdir()) == ["whisper-tiny.en"]

    # a name that is not shipped offline is the workers' (faster-whisper's) business
    assert prepare_speech_model(tmp_path, SpeechSettings(model="small")) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["speech-models", "whisper-tiny.en"]


def test_nats_server_runs_in_its_own_session(tmp_path: Path) -> None:
    """A terminal's Ctrl-C (SIGINT to the foreground process group) must not reach it."""
    with EmbeddedNats(tmp_path / "store", port=free_port()) as server:
        assert server.process is not None
        assert os.getsid(server.process.pid) == server.process.pid
        assert os.getpgid(server.process.pid) != os.getpgid(0)
