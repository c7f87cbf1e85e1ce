"""Shared fixtures: a real nats-server per test session, prepared models, settings."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from deploy.nats_server import EmbeddedNats, free_port
from stream import bus
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
