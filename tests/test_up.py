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

from deploy.nats_server import free_port

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
            _ctrl_c(up)
            try:
                code = up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
                raise
    assert code == 0, log.read_text()[-3000:]
