"""Shared fixtures: a real nats-server per test session, prepared models, settings."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from deploy.nats_server import EmbeddedNats
from stream import bus
from stream.ports import free_port
from stream.settings import BusSettings


def own_nats_server(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[EmbeddedNats]:
    """A real nats-server with JetStream on a free port and a temporary store (for a
    fixture: yields the running server, stops it afterwards)."""
    store = tmp_path_factory.mktemp(name)
    server = EmbeddedNats(store, port=free_port(), log_file=store / "nats.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """The test session's shared nats-server."""
    yield from own_nats_server(tmp_path_factory, "nats-store")


@pytest.fixture(scope="session")
def bus_settings(nats_server: EmbeddedNats) -> BusSettings:
    return BusSettings(nats_url=nats_server.url)


@pytest.fixture
async def nc(bus_settings: BusSettings) -> AsyncIterator:
    client = await bus.connect(bus_settings, "pytest")
    await bus.ensure_events_stream(client.jetstream(), bus_settings)
    yield client
    await client.close()


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The offline models, prepared once per test session by the product's own code."""
    from inference.prepare import prepare_models

    directory = tmp_path_factory.mktemp("models")
    prepare_models(directory)
    return directory


@pytest.fixture(scope="session")
def speech_voice(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A private speech-dispatcher (espeak-ng, ALSA null device) for browsers that must read
    the room's questions aloud (`launch_browser(..., speech=speech_voice)`). Its packages
    are the test tiers' (scripts/system-packages.sh): missing, the fixture fails."""
    from deploy.speech_synthesis import PrivateSpeechDispatcher

    with PrivateSpeechDispatcher(tmp_path_factory.mktemp("speech")) as voice:
        yield voice


def _threads_that_block_exit() -> list[threading.Thread]:
    """Live non-daemon threads the interpreter would wait for at exit. Thread-pool workers
    are left out: Python stops them itself at exit, once their pool's work is done."""
    return [
        thread
        for thread in threading.enumerate()
        if thread.is_alive()
        and not thread.daemon
        and thread is not threading.main_thread()
        and getattr(getattr(thread, "_target", None), "__module__", "")
        != "concurrent.futures.thread"
    ]


def pytest_unconfigure(config: pytest.Config) -> None:
    """A leaked non-daemon thread (aiortc's decoder threads are) keeps the test process
    alive after the last test, until CI's time limit: fail loudly instead, naming it."""
    deadline = time.monotonic() + 10.0
    for thread in _threads_that_block_exit():
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = _threads_that_block_exit()
    if stuck:
        names = ", ".join(f"{t.name} ({getattr(t, '_target', None)!r})" for t in stuck)
        sys.stdout.flush()
        sys.stderr.write(
            f"\nFAILED: {len(stuck)} non-daemon thread(s) still running after the tests would "
            f"keep this process from ever exiting: {names}\n"
        )
        sys.stderr.flush()
        os._exit(1)
