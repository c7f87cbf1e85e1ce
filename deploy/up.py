"""`intervue up`: every role on one machine, supervised.

Starts an embedded nats-server with JetStream (unless INTERVUE_NATS_URL is set), makes
sure the offline models are prepared, then runs each role as a child process with its
log lines prefixed by the role's name. A child that dies is reported and restarted with
backoff; Ctrl-C (or SIGTERM) stops the children, then NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from deploy.nats_server import EmbeddedNats
from stream import tokens

log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "intervue"


class UpSettings(BaseSettings):
    """The all-in-one launcher (env prefix ``INTERVUE_UP_``)."""

    model_config = SettingsConfigDict(env_prefix="INTERVUE_UP_", extra="forbid")

    data_dir: Path = Field(default_factory=default_data_dir)
    nats_host: str = "127.0.0.1"
    nats_port: int = Field(4222, ge=1, le=65535)
    vision_workers: int = Field(1, ge=0, le=16)
    speech_workers: int = Field(1, ge=0, le=16)
    dashboard_port: int = Field(8501, ge=1, le=65535)
    #: Skip `models prepare` (when the models directory is managed elsewhere).
    skip_prepare: bool = False
    #: The room `up` prints an invitation link for, and how long that link is valid.
    room: str = "demo"
    invite_ttl_h: float = Field(24.0, gt=0)
    #: Longest wait between restarts of a crashing child.
    max_backoff_s: float = Field(30.0, gt=0)


@dataclass
class Child:
    role: str
    argv: list[str]
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    tasks: list[asyncio.Task] = field(default_factory=list)


class Supervisor:
    """Runs children, prefixes their output, restarts the ones that die."""

    def __init__(self, max_backoff_s: float = 30.0) -> None:
        self.children: list[Child] = []
        self.stopping = asyncio.Event()
        self.max_backoff_s = max_backoff_s

    def add(self, role: str, argv: list[str], env: dict[str, str]) -> None:
        self.children.append(Child(role, argv, env))

    async def _pump(self, child: Child, stream: asyncio.StreamReader) -> None:
        prefix = f"[{child.role}] ".encode()
        while line := await stream.readline():
            sys.stdout.buffer.write(prefix + line)
            sys.stdout.flush()

    async def _run_child(self, child: Child) -> None:
        backoff = 1.0
        while not self.stopping.is_set():
            child.started_at = time.monotonic()
            child.process = await asyncio.create_subprocess_exec(
                *child.argv,
                env=child.env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us; we stop children in order
            )
            pump = asyncio.create_task(self._pump(child, child.process.stdout))
            code = await child.process.wait()
            await pump
            if self.stopping.is_set():
                return
            lived = time.monotonic() - child.started_at
            if lived > 60:
                backoff = 1.0
            child.restarts += 1
            log.error(
                "%s exited with code %s after %.1fs; restarting in %.0fs (restart #%d)",
                child.role,
                code,
                lived,
                backoff,
                child.restarts,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=backoff)
            backoff = min(backoff * 2, self.max_backoff_s)

    async def run(self) -> None:
        tasks = [asyncio.create_task(self._run_child(c), name=c.role) for c in self.children]
        await self.stopping.wait()
        await self.stop_children()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def stop_children(self, timeout_s: float = 8.0) -> None:
        live = [c for c in self.children if c.process and c.process.returncode is None]
        for child in live:
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for child in live:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                await asyncio.wait_for(child.process.wait(), timeout=remaining)
            except TimeoutError:
                log.warning("%s did not stop in time; killing it", child.role)
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
                await child.process.wait()


def ensure_signing_key(path: Path) -> Path:
    """The invitation signing key `up` generates once (0600) when none is configured."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path


def _role_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "deploy.cli", *args]


async def run_up(settings: UpSettings) -> int:
    from dashboard.auth import ensure_credentials
    from inference.prepare import default_models_dir, prepare_models
    from inference.speech.models import prepare_whisper_models
    from stream.settings import GatewaySettings

    gateway_settings = GatewaySettings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    models_dir = Path(os.environ.get("INTERVUE_MODELS_DIR") or default_models_dir())
    if not settings.skip_prepare:
        log.info("checking offline models in %s", models_dir)
        await asyncio.to_thread(prepare_models, models_dir)
        await asyncio.to_thread(prepare_whisper_models, models_dir)

    env = dict(os.environ)
    env["INTERVUE_MODELS_DIR"] = str(models_dir)
    env.setdefault("INTERVUE_DASHBOARD_DATA_DIR", str(settings.data_dir))
    username, new_password = ensure_credentials(Path(env["INTERVUE_DASHBOARD_DATA_DIR"]))
    room_query = ""
    if gateway_settings.dev_mode:
        log.warning(
            "DEV MODE: the room takes anyone without an invitation "
            "(unset INTERVUE_GATEWAY_DEV_MODE for invitations)"
        )
    else:
        if gateway_settings.token_secret is None and gateway_settings.token_secret_file is None:
            key_file = ensure_signing_key(settings.data_dir / "invitation.key")
            env["INTERVUE_GATEWAY_TOKEN_SECRET_FILE"] = str(key_file)
            gateway_settings = GatewaySettings(token_secret_file=key_file)
        token = tokens.issue(
            gateway_settings.secret(), settings.room, settings.invite_ttl_h * 3600, time.time()
        )
        room_query = f"?room={settings.room}&token={token}"
    env["PYTHONUNBUFFERED"] = "1"
    nats: EmbeddedNats | None = None
    nats_url = os.environ.get("INTERVUE_NATS_URL")
    if not nats_url:
        nats = EmbeddedNats(
            settings.data_dir / "nats",
            host=settings.nats_host,
            port=settings.nats_port,
            log_file=settings.data_dir / "nats-server.log",
        )
        await asyncio.to_thread(nats.start)
        nats_url = nats.url
        env["INTERVUE_NATS_URL"] = nats_url

    supervisor = Supervisor(settings.max_backoff_s)
    supervisor.add("gateway", _role_argv("gateway"), env)
    for i in range(settings.vision_workers):
        supervisor.add(f"vision-{i + 1}", _role_argv("worker", "vision"), env)
    for i in range(settings.speech_workers):
        supervisor.add(f"speech-{i + 1}", _role_argv("worker", "speech"), env)
    supervisor.add("interviewer", _role_argv("interviewer"), env)
    supervisor.add(
        "dashboard", _role_argv("dashboard", "--port", str(settings.dashboard_port)), env
    )

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, supervisor.stopping.set)

    host = gateway_settings.host if gateway_settings.host != "0.0.0.0" else "127.0.0.1"
    where = f" (embedded, store {nats.store_dir})" if nats else ""
    banner = (
        "\n  intervue is up\n"
        f"    room       http://{host}:{gateway_settings.port}/{room_query}\n"
        + (
            f"               (invitation to room {settings.room!r}, valid "
            f"{settings.invite_ttl_h:g} h; more with `intervue invite ROOM`)\n"
            if room_query
            else "               (DEV MODE: no invitation needed)\n"
        )
        + f"    dashboard  http://127.0.0.1:{settings.dashboard_port}/\n"
        f"    NATS       {nats_url}{where}\n"
        + (
            f"  dashboard login: {username} / {new_password}  (shown once; only its hash "
            f"is stored in {env['INTERVUE_DASHBOARD_DATA_DIR']})\n"
            if new_password
            else ""
        )
        + "  Ctrl-C stops everything.\n"
    )
    print(banner, flush=True)
    try:
        await supervisor.run()
    finally:
        if nats is not None:
            await asyncio.to_thread(nats.stop)
        log.info("stopped")
    return 0
