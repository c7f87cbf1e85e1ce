"""`intervue up` as a user runs it: embedded NATS, supervised roles, URLs, clean stop."""

from __future__ import annotations

import json
import os
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


def test_up_runs_everything_restarts_a_crashed_child_and_stops_cleanly(tmp_path, models_dir):
    ports = {name: free_port() for name in ("nats", "gateway", "dashboard")}
    env = {
        **os.environ,
        "INTERVUE_UP_DATA_DIR": str(tmp_path / "data"),
        "INTERVUE_UP_NATS_PORT": str(ports["nats"]),
        "INTERVUE_UP_DASHBOARD_PORT": str(ports["dashboard"]),
        "INTERVUE_GATEWAY_PORT": str(ports["gateway"]),
        "INTERVUE_MODELS_DIR": str(models_dir),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("INTERVUE_NATS_URL", None)
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "deploy.cli", "up"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        room = f"http://127.0.0.1:{ports['gateway']}/"
        _wait_until(lambda: "intervue is up" in log.read_text(), 60, "the banner", log)
        text = log.read_text()
        assert room in text
        assert f"http://127.0.0.1:{ports['dashboard']}/" in text
        assert f"nats://127.0.0.1:{ports['nats']}" in text
        _wait_until(lambda: _get(room)[0] == 200, 60, "the room page", log)
        # The printed room link carries an invitation the gateway accepts; none → 401.
        [link] = [w for w in text.split() if w.startswith(room + "?room=demo&token=")]
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)
        body = {"room": query["room"][0], "token": query["token"][0]}
        assert _post(room + "api/sessions", body) == 201
        assert _post(room + "api/sessions", {"room": "demo"}) == 401
        _wait_until(lambda: _get(room + "healthz")[0] == 200, 30, "gateway health", log)
        _wait_until(
            lambda: _get(f"http://127.0.0.1:{ports['dashboard']}/_stcore/health")[1] == "ok",
            60,
            "the dashboard",
            log,
        )
        # No dashboard credentials configured: up generated a login and printed it once.
        assert "dashboard login: interviewer / " in text
        _wait_until(lambda: "[vision-1]" in log.read_text(), 60, "the vision worker's log", log)
        _wait_until(
            lambda: "interviewer" in log.read_text() and "consuming" in log.read_text(),
            60,
            "the interviewer",
            log,
        )
        _wait_until(lambda: "[speech-1]" in log.read_text(), 60, "the speech worker", log)
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
    finally:
        up.send_signal(signal.SIGINT)
        try:
            code = up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()
            raise
    assert code == 0, log.read_text()[-3000:]
    assert _children(up.pid) == {}
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", ports["nats"]), timeout=0.5).close()
