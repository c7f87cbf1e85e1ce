"""The load benchmark (`deploy.bench.load`, `intervue bench load`) and its harness
(`deploy.load`): the pure parts, and one short run against an in-process stack (gateway +
vision worker on the test nats-server)."""

from __future__ import annotations

import numpy as np
import pytest

from deploy import load
from deploy.bench import load as bench
from tests._servers import serve_app


def test_roles_are_read_from_command_lines():
    py = "/venv/bin/python"
    assert bench.role_of([py, "-m", "deploy.cli", "worker", "vision"]) == "vision"
    assert bench.role_of([py, "-m", "deploy.cli", "worker", "speech", "-v"]) == "speech"
    assert bench.role_of([py, "-m", "deploy.cli", "gateway", "--port", "1"]) == "gateway"
    assert bench.role_of(["/venv/bin/intervue", "up"]) == "up"
    assert bench.role_of(["/venv/bin/nats-server", "--jetstream"]) == "nats"
    assert bench.role_of([py, "-m", "llama_cpp.server", "--model", "m.gguf"]) == "llm"
    assert bench.role_of([py, "-m", "deploy.cli", "bench", "load"]) is None  # a harness
    assert bench.role_of([py, "-m", "pytest"]) is None


def test_the_room_link_carries_the_invitation():
    base, room, token = bench._parse_url("http://127.0.0.1:8080/?room=demo&token=a.b", "", "")
    assert (base, room, token) == ("http://127.0.0.1:8080", "demo", "a.b")
    assert bench._parse_url("http://h:1/", "r", "t") == ("http://h:1", "r", "t")
    with pytest.raises(load.LoadError):
        bench._parse_url("127.0.0.1:8080", "", "")


def test_each_candidate_gets_its_own_single_use_invitation():
    import time

    from stream import tokens

    key = b"k" * 40
    minted = bench.candidate_tokens(3, "demo", "shared", key, 600.0)
    assert len(set(minted)) == 3 and "shared" not in minted
    for token in minted:
        invitation = tokens.verify(key, token, "demo", time.time())
        assert invitation.uses == 1
    # Without the key (a gateway elsewhere, or dev mode) they share the link's.
    assert bench.candidate_tokens(3, "demo", "shared", None, 600.0) == ["shared"] * 3
    with pytest.raises(load.LoadError, match="room"):
        bench.candidate_tokens(2, "", "", key, 600.0)


def test_the_key_up_made_signs_invitations_when_none_is_configured(tmp_path, monkeypatch):
    from deploy.up import INVITATION_KEY_FILE, ensure_signing_key, local_invitation_settings
    from stream.settings import GatewaySettings

    for name in ("TOKEN_SECRET", "TOKEN_SECRET_FILE", "DEV_MODE"):
        monkeypatch.delenv(f"INTERVUE_GATEWAY_{name}", raising=False)
    bare = GatewaySettings(_env_file=None)
    assert local_invitation_settings(bare, tmp_path) is bare  # no `up` here: unchanged
    with pytest.raises(ValueError, match="signing key"):
        bare.secret()
    ensure_signing_key(tmp_path / INVITATION_KEY_FILE)
    found = local_invitation_settings(bare, tmp_path)
    assert found.secret() == (tmp_path / INVITATION_KEY_FILE).read_bytes().strip()
    configured = GatewaySettings(_env_file=None, token_secret="c" * 40)
    assert local_invitation_settings(configured, tmp_path).secret() == b"c" * 40
    dev = GatewaySettings(_env_file=None, dev_mode=True)
    assert local_invitation_settings(dev, tmp_path).secret() is None


def _window(start: float, p95: float) -> bench.Window:
    return bench.Window(start, start + 10, 1, 10, 1.0, 1.0, p95 / 2, p95, 10, 0, 0, 10, 0,
                       None, {}, {}, 0.0, 0.0)  # fmt: skip


def test_flatness_verdict():
    flat = [_window(10 * i, p) for i, p in enumerate([900, 100, 110, 105, 100, 115, 108])]
    assert bench._flatness(flat)[0] == "flat"  # the first (warm-up) window is left out
    rising = [_window(10 * i, 100 + 60 * i) for i in range(7)]
    verdict, first, last, slope = bench._flatness(rising)
    assert verdict == "rising" and last > first and slope > 0
    assert bench._flatness(flat[:3])[0] == "too short to tell"


def test_microphone_plays_the_clip_on_schedule_and_goes_quiet():
    clip = np.full(48_000, 1000, np.int16)  # 1 s
    mic = load.make_microphone(clip, every_s=3.0, offset_s=0.5)
    chunks = [mic._chunk() for _ in range(50 * 7)]  # 7 s of 20 ms frames
    loud = [any(b) for b in chunks]
    assert not any(loud[:25])  # the 0.5 s offset
    assert all(loud[25:75]) and not any(loud[75:175])  # 1 s of speech, then silence
    assert mic.clips_started == 3 and mic.clips_done == 2  # third clip plays at 6.5 s
    mic.quiet()
    rest = [mic._chunk() for _ in range(50 * 6)]
    assert mic.clips_started == 3 and mic.clips_done == 3  # finished, no new clip
    assert not any(any(b) for b in rest[30:])


@pytest.mark.slow
async def test_a_short_run_against_an_in_process_stack(nc, bus_settings, models_dir):
    import aioice.ice

    from inference.pipeline import VisionPipeline
    from inference.vision_worker import VisionSettings, VisionWorker
    from stream import bus
    from stream.gateway import create_app
    from stream.settings import GatewaySettings

    original = aioice.ice.get_host_addresses
    worker_nc = await bus.connect(bus_settings, "load-worker")
    worker = VisionWorker(
        worker_nc, VisionPipeline.load(models_dir), bus_settings, VisionSettings(name="lw")
    )
    await worker.start()
    # One live session per invitation here: both connect only because each candidate signs
    # its own (as `intervue bench load` does with up's key).
    key = b"load-test-key-" * 3
    gateway = GatewaySettings(token_secret=key.decode(), max_sessions_per_invitation=1)
    runner, base = await serve_app(create_app(gateway, bus_settings, nc=nc))
    try:
        report = await bench.run_load_async(
            f"{base}/?room=load",
            2,
            6.0,
            report_every_s=2.0,
            speech_every_s=30.0,
            drain_s=0.0,
            loopback_ice=True,
            progress=lambda text: None,
            invitation_key=key,
        )
    finally:
        aioice.ice.get_host_addresses = original
        await runner.cleanup()
        await worker.stop()
        await worker_nc.close()
    assert report.connected == 2 and not report.errors
    assert len(report.windows) == 3
    for row in report.per_session:
        assert row["results"] > 10 and row["face_fraction"] > 0.9, row
        assert row["glass_p50"] is not None and 0 < row["glass_p50"] < 5000, row
    assert report.summary["fps_per_session"] > 3
    assert report.summary["cpu"]["harness"] > 0
    text = report.markdown()
    assert "glass p95" in text and "Per session" in text
