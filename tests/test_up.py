"""`intervue up` as a user runs it: embedded NATS, supervised roles, URLs, clean stop."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from stream.ports import free_port
from tests._cli import run_cli

pytestmark = pytest.mark.slow


def _children(pid: int) -> dict[int, str]:
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found[int(proc.name)] = (
                    (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                )
        except (OSError, ValueError, IndexError):
            continue
    return found


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except Exception as exc:
        return 0, str(exc)


def _post(url: str, body: dict) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _wait_until(check, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; up's output:\n{log.read_text()[-4000:]}")


def _exited(pid: int) -> bool:
    """Gone, or a zombie its parent has not reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _start_up(tmp_path: Path, ports: dict[str, int], models_dir: Path, **extra_env: str):
    env = {
        **os.environ,
        "INTERVUE_UP_DATA_DIR": str(tmp_path / "data"),
        "INTERVUE_UP_NATS_PORT": str(ports["nats"]),
        "INTERVUE_UP_DASHBOARD_PORT": str(ports["dashboard"]),
        "INTERVUE_GATEWAY_PORT": str(ports["gateway"]),
        "INTERVUE_MODELS_DIR": str(models_dir),
        "PYTHONUNBUFFERED": "1",
        **extra_env,
    }
    env.pop("INTERVUE_NATS_URL", None)
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        # Its own process group, as a shell gives a foreground job: Ctrl-C is then a
        # SIGINT to that whole group (os.killpg), not to `up` alone.
        up = subprocess.Popen(
            [sys.executable, "-m", "deploy.cli", "up"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return up, log


def _ctrl_c(up: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(up.pid, signal.SIGINT)


def _stop(up: subprocess.Popen, timeout_s: float = 60) -> int:
    """Ctrl-C `up` and wait for its exit code (killed, and the test fails, if it hangs)."""
    _ctrl_c(up)
    try:
        return up.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(up.pid, signal.SIGKILL)
        raise


def test_up_runs_everything_restarts_a_crashed_child_and_stops_cleanly(tmp_path, models_dir):
    ports = {name: free_port() for name in ("nats", "gateway", "dashboard")}
    up, log = _start_up(tmp_path, ports, models_dir, INTERVUE_SPEECH_MODEL="tiny.en")
    try:
        room = f"http://127.0.0.1:{ports['gateway']}/"
        _wait_until(lambda: "intervue is up" in log.read_text(), 120, "the banner", log)
        # The banner comes once everything is ready: the room and the dashboard answer
        # at once (no waiting here), and each bus role has said it is serving.
        assert _get(room + "healthz")[0] == 200
        assert _get(f"http://127.0.0.1:{ports['dashboard']}/_stcore/health")[1] == "ok"
        text = log.read_text()
        before_banner = text[: text.index("intervue is up")]
        assert "waiting for gateway (answers /healthz)" in before_banner
        for role, ready_line in (
            ("vision-1", "vision worker"),
            ("speech-1", "speech worker"),
            ("interviewer", "interviewer"),
        ):
            assert re.search(rf"\[{role}\] .*{ready_line} \S+ (serving|pulling|consuming) ",
                             before_banner), role  # fmt: skip
        assert "not ready" not in text
        # Only the configured Whisper model was prepared.
        assert "Whisper tiny.en ready" in text and "Whisper base" not in text
        assert room in text
        assert f"http://127.0.0.1:{ports['dashboard']}/" in text
        assert f"nats://127.0.0.1:{ports['nats']}" in text
        assert _get(room)[0] == 200
        # The printed room link carries an invitation the gateway accepts; none → 401.
        [link] = [w for w in text.split() if w.startswith(room + "?room=demo&token=")]
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)
        body = {"room": query["room"][0], "token": query["token"][0]}
        assert _post(room + "api/sessions", body) == 201
        assert _post(room + "api/sessions", {"room": "demo"}) == 401
        # No dashboard credentials configured: up generated a login and printed it once.
        assert "dashboard login: interviewer / " in text
        # Log lines are prefixed by role, and no role has died on its own.
        text = log.read_text()
        assert "[gateway]" in text
        assert "exited with code" not in text, text[-3000:]

        # A crashed child is reported and restarted.
        workers = [p for p, cmd in _children(up.pid).items() if "worker vision" in cmd]
        assert len(workers) == 1
        os.kill(workers[0], signal.SIGKILL)
        _wait_until(lambda: "vision-1 exited with code -9" in log.read_text(), 20, "report", log)
        _wait_until(
            lambda: [
                p for p, c in _children(up.pid).items() if "worker vision" in c and p != workers[0]
            ],
            30,
            "the restarted worker",
            log,
        )
        _wait_until(
            lambda: (
                len(re.findall(r"\[vision-1\] .*vision worker \S+ serving ", log.read_text())) == 2
            ),
            60,
            "the restarted worker to serve",
            log,
        )

        # Ctrl-C at the terminal: the roles stop first (draining their NATS connections),
        # nats-server last, and nobody reports a lost connection.
        children = _children(up.pid)
        [nats_pid] = [p for p, cmd in children.items() if "nats-server" in cmd]
        roles = set(children) - {nats_pid}
        assert len(roles) == 5, children  # gateway, vision, speech, interviewer, dashboard
        stop_mark = len(log.read_bytes())
        _ctrl_c(up)
        exited_at_poll: dict[int, int] = {}  # pid → the poll that first saw it gone
        polls = 0
        deadline = time.monotonic() + 60
        while up.poll() is None and time.monotonic() < deadline:
            polls += 1
            exited_at_poll |= {p: polls for p in children if p not in exited_at_poll and _exited(p)}
            time.sleep(0.01)
        exited_at_poll |= {p: polls + 1 for p in children if p not in exited_at_poll}
        assert all(exited_at_poll[nats_pid] >= exited_at_poll[p] for p in roles), (
            exited_at_poll,
            children,
        )
        stop_output = log.read_bytes()[stop_mark:].decode("utf-8", "replace")
        assert "disconnected from NATS" not in stop_output, stop_output
        assert "NATS error" not in stop_output, stop_output
        code = up.wait(timeout=30)
    finally:
        if up.poll() is None:
            _ctrl_c(up)
            try:
                up.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
                raise
    assert code == 0, log.read_text()[-3000:]
    assert _children(up.pid) == {}
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", ports["nats"]), timeout=0.5).close()


def test_up_prints_the_links_anyway_after_the_ready_timeout(tmp_path, models_dir):
    """A role that never gets ready delays the banner only so long, and is named."""
    ports = {name: free_port() for name in ("nats", "gateway", "dashboard")}
    # The dashboard's port is taken by a socket that never answers.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", ports["dashboard"]))
        squatter.listen(1)
        up, log = _start_up(
            tmp_path, ports, models_dir,
            INTERVUE_UP_READY_TIMEOUT_S="5",
            INTERVUE_UP_VISION_WORKERS="0",
            INTERVUE_UP_SPEECH_WORKERS="0",
        )  # fmt: skip
        try:
            _wait_until(lambda: "intervue is up" in log.read_text(), 120, "the banner", log)
            text = log.read_text()
            [warning] = [line for line in text.splitlines() if "not ready after 5 s" in line]
            assert "dashboard (answers HTTP)" in warning
            assert re.search(r"not ready yet: .*dashboard", text), text[-2000:]
            assert "waiting for " in text[: text.index("not ready after")]
            assert "Whisper" not in text  # no speech workers: no Whisper model prepared
        finally:
            code = _stop(up)
    assert code == 0, log.read_text()[-3000:]


def _nats_connect_error(url: str) -> str:
    """How the server at `url` answers a client without credentials ("" if it lets it in)."""
    import asyncio

    from stream import bus
    from stream.settings import BusSettings

    async def attempt() -> str:
        try:
            nc = await bus.connect(
                BusSettings(nats_url=url), "anonymous", first_connect_timeout_s=3
            )
        except bus.BusUnavailableError as exc:
            return str(exc)
        await nc.close()
        return ""

    return asyncio.run(attempt())


def test_up_locks_its_bus_and_every_role_works_through_it(tmp_path, models_dir):
    """The embedded NATS refuses anonymous clients; one synthetic candidate goes through
    the gateway, vision, speech and the interviewer, each on its own user, without the
    server refusing any of them anything; `intervue session` in another terminal reads
    it back with no credentials configured; the credentials never show."""
    import asyncio

    import aioice.ice

    from deploy.bench import load

    ports = {name: free_port() for name in ("nats", "gateway", "dashboard")}
    data = tmp_path / "data"
    up, log = _start_up(tmp_path, ports, models_dir, INTERVUE_SPEECH_MODEL="tiny.en")
    try:
        _wait_until(lambda: "intervue is up" in log.read_text(), 120, "the banner", log)
        nats_url = f"nats://127.0.0.1:{ports['nats']}"
        creds_file = data / "nats-credentials.json"
        config_file = data / "nats-server.conf"
        for path in (creds_file, config_file):
            assert path.stat().st_mode & 0o777 == 0o600, path
        text = log.read_text()
        assert f"finds its own in {creds_file} (0600)" in text
        assert "authorization" in _nats_connect_error(nats_url).lower()

        [link] = [
            w for w in text.split()
            if w.startswith(f"http://127.0.0.1:{ports['gateway']}/?room=demo&token=")
        ]  # fmt: skip
        original = aioice.ice.get_host_addresses
        try:
            report = asyncio.run(
                load.run_load_async(
                    link, 1, 12.0, report_every_s=4.0, speech_every_s=5.0, drain_s=45.0,
                    loopback_ice=True, progress=lambda line: None,
                )
            )  # fmt: skip
        finally:
            aioice.ice.get_host_addresses = original
        assert report.connected == 1 and not report.errors, report.errors
        [session] = [row["session"] for row in report.per_session]

        env = {"INTERVUE_UP_DATA_DIR": str(data), "INTERVUE_NATS_URL": nats_url}
        listed = run_cli(env, "session", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert session in [s["session"] for s in json.loads(listed.stdout)]
        exported = run_cli(env, "session", "export", session)
        assert exported.returncode == 0, exported.stderr
        types = {e["type"] for e in json.loads(exported.stdout)["events"]}
        # gateway, vision, speech and interviewer all published what they own
        assert {"lifecycle", "profile", "emotion", "score", "transcript", "interview"} <= types

        secrets = [u["password"] for u in json.loads(creds_file.read_text())["users"].values()]
        outputs = log.read_text() + listed.stdout + listed.stderr + exported.stderr
        assert not any(secret in outputs for secret in secrets)
        violations = [
            line for line in (data / "nats-server.log").read_text().splitlines()
            if "permissions violation" in line.lower()
        ]  # fmt: skip
        assert not violations, violations
        assert "permissions violation" not in log.read_text().lower()
    finally:
        code = _stop(up)
    assert code == 0, log.read_text()[-3000:]
    # the credentials lived as long as the server
    assert not creds_file.exists() and not config_file.exists()


def test_up_with_an_open_bus_says_so(tmp_path, models_dir):
    """INTERVUE_UP_NATS_AUTH=false: anonymous clients are let in, loudly."""
    ports = {name: free_port() for name in ("nats", "gateway", "dashboard")}
    up, log = _start_up(
        tmp_path, ports, models_dir,
        INTERVUE_UP_NATS_AUTH="false",
        INTERVUE_UP_VISION_WORKERS="0",
        INTERVUE_UP_SPEECH_WORKERS="0",
    )  # fmt: skip
    try:
        _wait_until(lambda: "intervue is up" in log.read_text(), 120, "the banner", log)
        text = log.read_text()
        assert "THE EMBEDDED NATS TAKES ANONYMOUS CLIENTS" in text
        assert "OPEN: anonymous clients allowed" in text
        assert _nats_connect_error(f"nats://127.0.0.1:{ports['nats']}") == ""
        assert not (tmp_path / "data" / "nats-credentials.json").exists()
        assert "exited with code" not in text, text[-3000:]
    finally:
        code = _stop(up)
    assert code == 0, log.read_text()[-3000:]
