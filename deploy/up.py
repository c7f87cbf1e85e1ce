"""`intervue up`: every role on one machine, supervised.

Starts an embedded nats-server with JetStream (unless INTERVUE_NATS_URL is set), locked:
one generated user per role with only the permissions that role needs
(deploy/nats_auth.py). Makes sure the offline models are prepared, then runs each role as
a child process with its log lines prefixed by the role's name. When the interviewer's
engine resolves to ``local`` (`llm.local.choice.resolve_engine`), an ``llm`` role runs
llama.cpp's server on 127.0.0.1 (llm/local/server.py), supervised like the others; the
interviewer is started once it serves (or after ``llm_wait_s``) and is given its address.
The banner with the room and dashboard links is printed once the roles are ready (the
gateway answers /healthz, the dashboard answers HTTP, each worker and the interviewer logged
that it is serving, the llm role lists its model), or after ``ready_timeout_s`` with a
warning naming what is not. A child that dies is reported and
restarted with backoff. Ctrl-C (or SIGTERM) stops the children, then NATS: every child,
nats-server included, runs in its own session, so the terminal's SIGINT reaches `up`
alone and NATS outlives the roles that are draining their connections to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import re
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from deploy import nats_auth
from deploy.nats_server import EmbeddedNats
from stream import bus, tokens
from stream.invitations import ensure_invitations_bucket
from stream.presence import ensure_presence_bucket
from stream.settings import BusSettings

if TYPE_CHECKING:
    from inference.speech.worker import SpeechSettings
    from llm.local.choice import EngineChoice
    from llm.local.server import LocalServerSettings
    from llm.settings import LlmSettings
    from stream.settings import GatewaySettings

log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "intervue"


class UpSettings(BaseSettings):
    """The all-in-one launcher (env prefix ``INTERVUE_UP_``)."""

    model_config = SettingsConfigDict(env_prefix="INTERVUE_UP_", extra="forbid")

    data_dir: Path = Field(default_factory=default_data_dir)
    #: Where the embedded NATS listens. Loopback by default: any other address exposes it
    #: to the network (without TLS), which `up` warns about.
    nats_host: str = "127.0.0.1"
    nats_port: int = Field(4222, ge=1, le=65535)
    #: The embedded NATS takes only the users `up` generates for each role at each start.
    #: false: anonymous clients, as a bare nats-server (development only; `up` warns, and
    #: refuses it with a non-loopback nats_host).
    nats_auth: bool = True
    vision_workers: int = Field(1, ge=0, le=16)
    speech_workers: int = Field(1, ge=0, le=16)
    dashboard_port: int = Field(8501, ge=1, le=65535)
    #: Skip `models prepare` (when the models directory is managed elsewhere).
    skip_prepare: bool = False
    #: The room `up` prints an invitation link for, how long that link is valid (at most
    #: the 30 days any invitation may live) and how many sessions it may open: more than
    #: `intervue invite`'s default, since whoever runs `up` tries the room several times.
    room: str = "demo"
    invite_ttl_h: float = Field(24.0, gt=0, le=tokens.MAX_TTL_S / 3600)
    invite_uses: int = Field(20, ge=1, le=tokens.MAX_USES)
    #: Longest wait between restarts of a crashing child.
    max_backoff_s: float = Field(30.0, gt=0)
    #: How long the banner waits for the roles to be ready before it is printed anyway,
    #: with a warning naming those that are not.
    ready_timeout_s: float = Field(90.0, ge=0)
    #: How long the interviewer waits for the local model's server (the ``llm`` role) to
    #: load before it starts anyway (its steps then fall back to the offline engine until
    #: the server answers). Loading the default model takes 3-7 s on 2 cores.
    llm_wait_s: float = Field(120.0, ge=0)

    @model_validator(mode="after")
    def _no_open_bus_on_the_network(self) -> UpSettings:
        if not self.nats_auth and not is_loopback(self.nats_host):
            raise ValueError(
                f"INTERVUE_UP_NATS_AUTH=false with INTERVUE_UP_NATS_HOST={self.nats_host}: "
                "an anonymous bus must listen on loopback only"
            )
        return self


def up_data_dir() -> Path:
    """The data directory `intervue up` uses with the current environment."""
    try:
        return UpSettings().data_dir
    except ValidationError:  # another INTERVUE_UP_ setting is invalid: up would not run
        return Path(os.environ.get("INTERVUE_UP_DATA_DIR") or default_data_dir())


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or "localhost") is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name: it may resolve to anything
        return False


#: The log line each bus role writes once it serves (matched on its output, which the
#: supervisor reads anyway): the cheapest signal that it is connected and subscribed.
READY_LINES: dict[str, re.Pattern[str]] = {
    "vision": re.compile(r"vision worker \S+ serving "),
    "speech": re.compile(r"speech worker \S+ pulling "),
    "interviewer": re.compile(r"interviewer \S+ consuming "),
}


@dataclass
class Child:
    role: str
    argv: list[str]
    env: dict[str, str]
    #: A line this child logs once it is ready (None: readiness is not read from its log).
    ready_line: re.Pattern[str] | None = None
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    tasks: list[asyncio.Task] = field(default_factory=list)
    #: Set when the running process logged `ready_line`; cleared at each (re)start.
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    #: A child whose readiness this one waits for before its first start (at most
    #: `after_timeout_s`): the interviewer waits for the llm role's model to load.
    after: Child | None = None
    after_timeout_s: float = 0.0


class Supervisor:
    """Runs children, prefixes their output, restarts the ones that die."""

    def __init__(self, max_backoff_s: float = 30.0) -> None:
        self.children: list[Child] = []
        self.stopping = asyncio.Event()
        self.max_backoff_s = max_backoff_s

    def add(
        self,
        role: str,
        argv: list[str],
        env: dict[str, str],
        ready_line: re.Pattern[str] | None = None,
        *,
        after: Child | None = None,
        after_timeout_s: float = 0.0,
    ) -> Child:
        child = Child(role, argv, env, ready_line, after=after, after_timeout_s=after_timeout_s)
        self.children.append(child)
        return child

    async def _wait_for_after(self, child: Child) -> None:
        """Before `child`'s first start: until the child it comes after is ready, `up` is
        stopping, or `after_timeout_s` is over (then it starts anyway, with a warning)."""
        if child.after is None:
            return
        ready = asyncio.create_task(child.after.ready.wait())
        stopping = asyncio.create_task(self.stopping.wait())
        try:
            await asyncio.wait(
                {ready, stopping},
                timeout=child.after_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            ready.cancel()
            stopping.cancel()
        if not child.after.ready.is_set() and not self.stopping.is_set():
            log.warning(
                "%s is not ready after %.0f s; starting %s anyway",
                child.after.role,
                child.after_timeout_s,
                child.role,
            )

    async def _pump(self, child: Child, stream: asyncio.StreamReader) -> None:
        prefix = f"[{child.role}] ".encode()
        while line := await stream.readline():
            sys.stdout.buffer.write(prefix + line)
            sys.stdout.flush()
            if (
                child.ready_line is not None
                and not child.ready.is_set()
                and child.ready_line.search(line.decode("utf-8", "replace"))
            ):
                child.ready.set()

    async def _run_child(self, child: Child) -> None:
        backoff = 1.0
        await self._wait_for_after(child)
        while not self.stopping.is_set():
            child.started_at = time.monotonic()
            child.ready.clear()
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


#: The invitation signing key `up` generates in its data directory when none is configured.
INVITATION_KEY_FILE = "invitation.key"


def local_invitation_settings(settings: GatewaySettings, data_dir: Path) -> GatewaySettings:
    """`settings`, or, when no signing key is configured and dev mode is off, the same with
    the key an `intervue up` generated in `data_dir` (if there is one): so `intervue invite`
    and `intervue bench load` on up's machine sign links its gateway accepts, as they are."""
    configured = settings.token_secret is not None or settings.token_secret_file is not None
    key_file = data_dir / INVITATION_KEY_FILE
    if configured or settings.dev_mode or not key_file.is_file():
        return settings
    return settings.model_copy(update={"token_secret_file": key_file})


def ensure_signing_key(path: Path) -> Path:
    """The invitation signing key `up` generates once (0600) when none is configured."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path


@dataclass
class EmbeddedBus:
    """The nats-server `up` runs, and who may use it."""

    server: EmbeddedNats
    #: Each role's user (None: the server takes anonymous clients).
    credentials: dict[str, nats_auth.RoleCredentials] | None
    #: What `up` wrote for it (config, credentials file): removed when it stops.
    files: list[Path] = field(default_factory=list)

    @property
    def credentials_file(self) -> Path | None:
        return next((f for f in self.files if f.name == nats_auth.CREDENTIALS_FILE), None)

    def settings(self, role: str, base: BusSettings | None = None) -> BusSettings:
        """`base` (the environment's bus settings) for `role` on this server."""
        base = base or BusSettings()
        update: dict = {"nats_url": self.server.url}
        if self.credentials is not None:
            creds = self.credentials[role]
            update |= {
                "nats_user": creds.user,
                "nats_password": creds.password,
                "nats_inbox_prefix": creds.inbox_prefix,
                "nats_creds_file": None,
                "nats_nkey_seed_file": None,
            }
        return base.model_copy(update=update)

    def child_env(self, env: dict[str, str], role: str) -> dict[str, str]:
        """`env` for a child of `role`: its own user only."""
        child = dict(env)
        child["INTERVUE_NATS_URL"] = self.server.url
        if self.credentials is not None:
            for name in nats_auth.FOREIGN_AUTH_ENV:
                child.pop(name, None)
            child |= nats_auth.role_env(self.credentials[role])
        return child

    def remove_files(self) -> None:
        for path in self.files:
            path.unlink(missing_ok=True)


async def start_embedded_bus(settings: UpSettings, bus_settings: BusSettings) -> EmbeddedBus:
    """Start nats-server (locked unless ``nats_auth`` is off) and create intervue's
    streams as the admin user, so that no role needs the right to create, change or
    delete them."""
    if not is_loopback(settings.nats_host):
        log.warning(
            "the embedded NATS listens on %s, not on loopback: other machines can reach "
            "it (INTERVUE_UP_NATS_HOST). Clients still need the generated credentials, but "
            "nothing is encrypted: passwords, frames and audio cross the network in clear",
            settings.nats_host,
        )
    credentials = None
    files: list[Path] = []
    config_file = None
    if settings.nats_auth:
        if (
            bus_settings.nats_user
            or bus_settings.nats_creds_file
            or bus_settings.nats_nkey_seed_file
        ):
            log.warning(
                "INTERVUE_NATS_USER/_PASSWORD/_CREDS_FILE/_NKEY_SEED_FILE are for an "
                "external server (with INTERVUE_NATS_URL); the embedded one gives each role "
                "a user of its own instead"
            )
        credentials = nats_auth.generate_credentials()
        config_file = nats_auth.write_private(
            settings.data_dir / nats_auth.CONFIG_FILE, nats_auth.server_config(credentials)
        )
        files.append(config_file)
    else:
        log.warning(
            "INTERVUE_UP_NATS_AUTH=false: THE EMBEDDED NATS TAKES ANONYMOUS CLIENTS. Anyone "
            "on this machine can read every session's events, live frames and audio, "
            "publish fake events and delete the streams. For development only"
        )
    server = EmbeddedNats(
        settings.data_dir / "nats",
        host=settings.nats_host,
        port=settings.nats_port,
        log_file=settings.data_dir / "nats-server.log",
        config_file=config_file,
    )
    embedded = EmbeddedBus(server, credentials, files)
    try:
        await asyncio.to_thread(server.start)
        if credentials is not None:
            files.append(
                nats_auth.write_credentials_file(
                    settings.data_dir / nats_auth.CREDENTIALS_FILE, server.url, credentials
                )
            )
        admin = embedded.settings("admin", bus_settings)
        await bus.wait_for_server(admin, timeout_s=15.0)
        nc = await bus.connect(admin, "intervue-up")
        try:
            js = nc.jetstream()
            await bus.ensure_events_stream(js, admin)
            await bus.ensure_utterances_stream(js, admin)
            await ensure_invitations_bucket(js, admin)
            await ensure_presence_bucket(js, admin)
        finally:
            await nc.close()
    except BaseException:
        await asyncio.to_thread(server.stop)
        embedded.remove_files()
        raise
    log.info(
        "NATS at %s %s",
        server.url,
        f"is locked: one user per role (the command line's in {embedded.credentials_file})"
        if credentials is not None
        else "takes anonymous clients",
    )
    return embedded


def _role_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "deploy.cli", *args]


@dataclass
class ReadinessCheck:
    """One thing the banner waits for."""

    name: str
    #: What "ready" means, for the waiting line and the warning.
    what: str
    is_ready: Callable[[], Awaitable[bool]]


def http_ready(url: str, timeout_s: float = 2.0) -> Callable[[], Awaitable[bool]]:
    """A check that `url` answers 200."""

    async def check() -> bool:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http,
                http.get(url) as response,
            ):
                return response.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    return check


def logged_ready(child: Child) -> Callable[[], Awaitable[bool]]:
    """A check that the running `child` logged its ready line."""

    async def check() -> bool:
        return child.ready.is_set()

    return check


async def wait_until_ready(
    checks: list[ReadinessCheck],
    timeout_s: float,
    *,
    poll_s: float = 0.5,
    remind_every_s: float = 15.0,
) -> list[ReadinessCheck]:
    """Poll `checks` until all passed once or `timeout_s` is over (saying what it waits
    for at the start and every `remind_every_s`); return those that never passed."""
    pending = list(checks)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    next_reminder = loop.time()
    while pending:
        now = loop.time()
        if now >= next_reminder:
            log.info(
                "waiting for %s (up to %.0f s more)",
                ", ".join(f"{c.name} ({c.what})" for c in pending),
                max(0.0, deadline - now),
            )
            next_reminder = now + remind_every_s
        results = await asyncio.gather(*(c.is_ready() for c in pending))
        pending = [c for c, ready in zip(pending, results, strict=True) if not ready]
        if not pending or loop.time() >= deadline:
            break
        await asyncio.sleep(min(poll_s, max(0.0, deadline - loop.time())))
    return pending


def prepare_speech_model(models_dir: Path, speech_settings: SpeechSettings) -> dict | None:
    """Prepare the offline Whisper model the speech workers are configured to load
    (``INTERVUE_SPEECH_MODEL``, into ``INTERVUE_SPEECH_MODELS_DIR`` or `models_dir`, as
    the workers resolve it), and no other. A name that is not shipped offline is left to
    the workers (faster-whisper fetches it when online); returns None then."""
    from inference.speech.models import canonical_name, prepare_whisper_model

    name = canonical_name(speech_settings.model)
    if name is None:
        log.info(
            "speech model %r is not shipped offline: the speech workers load it themselves",
            speech_settings.model,
        )
        return None
    prepared = prepare_whisper_model(name, speech_settings.models_dir or models_dir)
    log.info("Whisper %s ready in %s", name, prepared["path"])
    return prepared


def local_llm_server(llm_settings: LlmSettings, engine: EngineChoice) -> LocalServerSettings | None:
    """The embedded model server `up` runs for `engine`, or None when the interviewer
    uses the offline engine or a remote endpoint."""
    if engine.engine != "local" or engine.model_path is None:
        return None
    from llm.local.server import LocalServerSettings

    return LocalServerSettings.from_llm_settings(llm_settings, engine.model_path)


def interviewer_llm_env(server: LocalServerSettings) -> dict[str, str]:
    """What tells the interviewer to use the embedded server."""
    return {
        "INTERVUE_LLM_ENGINE": "local",
        "INTERVUE_LLM_BASE_URL": server.base_url,
        "INTERVUE_LLM_MODEL": server.alias,
    }


def engine_line(engine: EngineChoice, server: LocalServerSettings | None) -> str:
    """The banner's line about the interviewer's engine, and why."""
    if server is not None:
        where = (
            f"{server.model_path.name} on llama.cpp at {server.base_url}, {server.threads} threads"
        )
        return f"local ({where}); {engine.reason}"
    return f"{engine.engine} ({engine.reason})"


def llm_ready(base_url: str) -> Callable[[], Awaitable[bool]]:
    """A check that the model server at `base_url` lists its model."""

    async def check() -> bool:
        from llm.local.server import server_ready

        return await server_ready(base_url)

    return check


async def _print_banner_when_ready(
    banner: str, checks: list[ReadinessCheck], timeout_s: float, supervisor: Supervisor
) -> None:
    """Print `banner` once every check passed, or after `timeout_s` with what is not
    ready; print nothing when `up` is told to stop first (no links to a room going away)."""
    waiting = asyncio.create_task(wait_until_ready(checks, timeout_s))
    stopped = asyncio.create_task(supervisor.stopping.wait())
    try:
        await asyncio.wait({waiting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not waiting.done():
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        return
    not_ready = waiting.result()
    if not_ready:
        log.warning(
            "not ready after %.0f s: %s; printing the links anyway",
            timeout_s,
            ", ".join(f"{c.name} ({c.what})" for c in not_ready),
        )
        banner += "  not ready yet: " + ", ".join(c.name for c in not_ready) + "\n"
    print(banner, flush=True)


async def run_up(
    settings: UpSettings,
    speech_settings: SpeechSettings | None = None,
    bus_settings: BusSettings | None = None,
    llm_settings: LlmSettings | None = None,
) -> int:
    from dashboard.auth import ensure_credentials
    from inference.prepare import default_models_dir, prepare_models
    from inference.speech.worker import SpeechSettings
    from llm.local.choice import resolve_engine
    from llm.local.server import READY_LINE as LLM_READY_LINE
    from llm.settings import LlmSettings
    from stream.settings import GatewaySettings

    gateway_settings = GatewaySettings()
    speech_settings = speech_settings or SpeechSettings()
    bus_settings = bus_settings or BusSettings()
    llm_settings = llm_settings or LlmSettings()
    # First, so that an impossible choice (engine=local without the model) stops `up`
    # before anything starts.
    engine = resolve_engine(llm_settings)
    # Owner only when new: it holds the bus's credentials, store and the signing key.
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    models_dir = Path(os.environ.get("INTERVUE_MODELS_DIR") or default_models_dir())
    if not settings.skip_prepare:
        log.info("checking offline models in %s", models_dir)
        await asyncio.to_thread(prepare_models, models_dir)
        if settings.speech_workers:
            await asyncio.to_thread(prepare_speech_model, models_dir, speech_settings)

    env = dict(os.environ)
    env["INTERVUE_MODELS_DIR"] = str(models_dir)
    env.setdefault("INTERVUE_DASHBOARD_DATA_DIR", str(settings.data_dir))
    username, new_password = ensure_credentials(Path(env["INTERVUE_DASHBOARD_DATA_DIR"]))
    token = ""
    if gateway_settings.dev_mode:
        log.warning(
            "DEV MODE: the room takes anyone without an invitation "
            "(unset INTERVUE_GATEWAY_DEV_MODE for invitations)"
        )
    else:
        if gateway_settings.token_secret is None and gateway_settings.token_secret_file is None:
            key_file = ensure_signing_key(settings.data_dir / INVITATION_KEY_FILE)
            env["INTERVUE_GATEWAY_TOKEN_SECRET_FILE"] = str(key_file)
            gateway_settings = GatewaySettings(token_secret_file=key_file)
        token = tokens.issue(
            gateway_settings.secret(),
            settings.room,
            settings.invite_ttl_h * 3600,
            time.time(),
            uses=settings.invite_uses,
        )
    env["PYTHONUNBUFFERED"] = "1"
    nats: EmbeddedBus | None = None
    nats_url = os.environ.get("INTERVUE_NATS_URL")
    if not nats_url:
        nats = await start_embedded_bus(settings, bus_settings)
        nats_url = nats.server.url

    def role_env(role: str) -> dict[str, str]:
        # An external server's credentials (if any) reach every role as they are.
        return nats.child_env(env, role) if nats is not None else env

    host = gateway_settings.host if gateway_settings.host != "0.0.0.0" else "127.0.0.1"
    room_url = f"http://{host}:{gateway_settings.port}/"
    room_link = tokens.invite_url(room_url, settings.room, token) if token else room_url
    dashboard_url = f"http://127.0.0.1:{settings.dashboard_port}/"
    supervisor = Supervisor(settings.max_backoff_s)
    checks = [ReadinessCheck("gateway", "answers /healthz", http_ready(room_url + "healthz"))]
    supervisor.add("gateway", _role_argv("gateway"), role_env("gateway"))
    local_server = local_llm_server(llm_settings, engine)
    llm_child = None
    interviewer_env = role_env("interviewer")
    if local_server is not None:
        # No bus credentials: the model server never talks to NATS.
        llm_child = supervisor.add(
            "llm", local_server.argv(), local_server.env(env), LLM_READY_LINE
        )
        checks.append(ReadinessCheck("llm", "serves the model", llm_ready(local_server.base_url)))
        interviewer_env = interviewer_env | interviewer_llm_env(local_server)
    bus_roles = [
        *(supervisor.add(f"vision-{i + 1}", _role_argv("worker", "vision"), role_env("vision"),
                         READY_LINES["vision"]) for i in range(settings.vision_workers)),
        *(supervisor.add(f"speech-{i + 1}", _role_argv("worker", "speech"), role_env("speech"),
                         READY_LINES["speech"]) for i in range(settings.speech_workers)),
        supervisor.add("interviewer", _role_argv("interviewer"), interviewer_env,
                       READY_LINES["interviewer"], after=llm_child,
                       after_timeout_s=settings.llm_wait_s),
    ]  # fmt: skip
    checks += [ReadinessCheck(c.role, "serving on the bus", logged_ready(c)) for c in bus_roles]
    supervisor.add(
        "dashboard",
        _role_argv("dashboard", "--port", str(settings.dashboard_port)),
        role_env("dashboard"),
    )
    checks.append(
        ReadinessCheck("dashboard", "answers HTTP", http_ready(dashboard_url + "_stcore/health"))
    )

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, supervisor.stopping.set)

    where = f" (embedded, store {nats.server.store_dir})\n" if nats else "\n"
    if nats is not None and nats.credentials is not None:
        # Where the command line's credentials are, never the credentials themselves.
        where += (
            "               locked: a generated user per role; `intervue session …` finds "
            f"its own in {nats.credentials_file} (0600)\n"
        )
    elif nats is not None:
        where += "               OPEN: anonymous clients allowed (INTERVUE_UP_NATS_AUTH=false)\n"
    banner = (
        "\n  intervue is up\n"
        f"    room       {room_link}\n"
        + (
            f"               (invitation to room {settings.room!r}: {settings.invite_uses} "
            f"sessions within {settings.invite_ttl_h:g} h; more with `intervue invite ROOM`)\n"
            if token
            else "               (DEV MODE: no invitation needed)\n"
        )
        + f"    dashboard  {dashboard_url}\n"
        f"    NATS       {nats_url}{where}"
        f"    LLM        {engine_line(engine, local_server)}\n"
        + (
            f"  dashboard login: {username} / {new_password}  (shown once; only its hash "
            f"is stored in {env['INTERVUE_DASHBOARD_DATA_DIR']})\n"
            if new_password
            else ""
        )
        + "  Ctrl-C stops everything.\n"
    )
    running = asyncio.create_task(supervisor.run(), name="supervisor")
    try:
        await _print_banner_when_ready(banner, checks, settings.ready_timeout_s, supervisor)
        await running
    finally:
        if not running.done():  # an error above: the roles still stop before NATS
            supervisor.stopping.set()
            await asyncio.gather(running, return_exceptions=True)
        # Only now: the roles have stopped and drained their connections.
        if nats is not None:
            await asyncio.to_thread(nats.server.stop)
            nats.remove_files()  # these credentials die with the server
        log.info("stopped")
    return 0
