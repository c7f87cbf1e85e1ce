"""The real dashboard (`run_dashboard`, i.e. ``streamlit run dashboard/app.py``) in a
subprocess on a free port, for tests that drive it with Chromium."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stream.ports import free_port

_RUN = (
    "import sys\n"
    "from dashboard.run import run_dashboard\n"
    "from stream.settings import BusSettings\n"
    "run_dashboard(BusSettings(nats_url=sys.argv[1]), '127.0.0.1', int(sys.argv[2]))\n"
)


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode()
    except Exception as exc:
        return f"error: {exc}"


@contextmanager
def running_dashboard(
    nats_url: str, workdir: Path, password_hash: str, **settings: str
) -> Iterator[tuple[str, Path]]:
    """Yield (base URL, log file) of a dashboard logging in with `password_hash`;
    `settings` are more ``INTERVUE_DASHBOARD_<NAME>`` values. Stopped with SIGTERM."""
    port = free_port()
    env = {name: value for name, value in os.environ.items() if "INTERVUE_DASHBOARD_" not in name}
    env.update(
        {
            "INTERVUE_DASHBOARD_PASSWORD_HASH": password_hash,
            "INTERVUE_DASHBOARD_DATA_DIR": str(workdir / "data"),
            "INTERVUE_DASHBOARD_REFRESH_S": "2",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update({f"INTERVUE_DASHBOARD_{k.upper()}": v for k, v in settings.items()})
    log = workdir / "dashboard.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", _RUN, nats_url, str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,  # no .streamlit/secrets.toml here: password login
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while _get(url + "_stcore/health") != "ok":
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the dashboard did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    try:
        yield url, log
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
