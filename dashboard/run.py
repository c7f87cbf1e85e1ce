"""`intervue dashboard`: run the Streamlit app as a child process.

`run_dashboard` makes sure a login exists (generating a password when none is configured
and printing it once), then runs ``python -m streamlit run dashboard/app.py`` with the
environment passed through (the NATS URL set from the bus settings). SIGTERM and SIGINT
are passed on to Streamlit, so a supervisor that stops this process stops the app.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from dashboard.auth import ensure_credentials, generated_hash_path
from dashboard.settings import DashboardSettings
from stream.settings import BusSettings

log = logging.getLogger(__name__)

APP_PATH = Path(__file__).resolve().parent / "app.py"
REPO_ROOT = APP_PATH.parent.parent


def streamlit_argv(host: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_PATH),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--client.toolbarMode",
        "minimal",
        "--theme.base",
        "light",
    ]


def dashboard_env(bus_settings: BusSettings, settings: DashboardSettings) -> dict[str, str]:
    env = dict(os.environ)
    env["INTERVUE_NATS_URL"] = bus_settings.nats_url
    env["INTERVUE_DASHBOARD_DATA_DIR"] = str(settings.data_dir)
    # The app imports the project's packages; make them importable without an install.
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_dashboard(
    bus_settings: BusSettings,
    host: str,
    port: int,
    settings: DashboardSettings | None = None,
) -> None:
    """Run the dashboard until Streamlit exits (or this process is told to stop)."""
    settings = settings or DashboardSettings()
    if settings.auth != "oidc":
        username, password = ensure_credentials(settings=settings)
        if password is not None:
            # Printed once, on the terminal only (never logged); only its hash is stored.
            print(
                "\n  dashboard login (shown once; only its hash is kept in "
                f"{generated_hash_path(settings.data_dir)}):\n"
                f"    user      {username}\n    password  {password}\n",
                file=sys.stderr,
                flush=True,
            )
    argv = streamlit_argv(host, port)
    log.info("dashboard at http://%s:%d/", host, port)
    child = subprocess.Popen(argv, env=dashboard_env(bus_settings, settings))

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
    if code not in (0, -signal.SIGTERM, -signal.SIGINT):
        raise SystemExit(code)


if __name__ == "__main__":  # python -m dashboard.run [port] [host]
    logging.basicConfig(level=logging.INFO)
    run_dashboard(
        BusSettings(),
        sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1",
        int(sys.argv[1]) if len(sys.argv) > 1 else 8501,
    )
