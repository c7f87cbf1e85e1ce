"""llama.cpp's OpenAI-compatible server on loopback: its command line, its readiness, and
`LocalLlmServer`, which starts one on a free port for tests and benchmarks.

`intervue up` runs the same command line as its ``llm`` role (supervised, restarted, its
log prefixed); the interviewer then talks to it through `llm.client.LlmClient` like any
OpenAI-compatible endpoint. The server listens on 127.0.0.1 only: it has no
authentication, and nothing but the interviewer on this machine needs it.

The chat template is the GGUF's own (``tokenizer.chat_template``, which llama-cpp-python
uses when no ``--chat_format`` is given), so any instruct GGUF a user supplies is
prompted the way it was trained.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp

from llm.settings import LlmSettings
from stream.ports import free_port

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
#: What the server logs once the model is loaded and it accepts requests (uvicorn's line).
READY_LINE = re.compile(r"Uvicorn running on http://")


@dataclass(frozen=True)
class LocalServerSettings:
    """One embedded llama.cpp server."""

    model_path: Path
    port: int
    #: Generation threads (llama.cpp's ``n_threads``; prompt processing uses as many).
    threads: int
    #: The context window, tokens.
    context: int = 4096
    #: The model's name in the API (``model`` in requests, ``/v1/models``).
    alias: str = "intervue-local"
    host: str = LOOPBACK
    #: llama.cpp's model-loading dump and per-request timings: off, since they would flood
    #: `up`'s log; `intervue bench llm` turns them on to read the server's own timings.
    verbose: bool = False

    @classmethod
    def from_llm_settings(
        cls, settings: LlmSettings, model_path: Path, port: int | None = None
    ) -> LocalServerSettings:
        from llm.local.choice import available_cores

        return cls(
            model_path=model_path,
            port=port if port is not None else (settings.local_port or free_port()),
            threads=settings.local_threads or available_cores(),
            context=settings.local_context,
            alias=settings.local_alias,
        )

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root the interviewer is given."""
        return f"http://{self.host}:{self.port}/v1"

    def argv(self, python: str = sys.executable) -> list[str]:
        """The command line of ``python -m llama_cpp.server`` for these settings."""
        return [
            python,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model_path),
            "--model_alias",
            self.alias,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.context),
            "--n_threads",
            str(self.threads),
            "--n_threads_batch",
            str(self.threads),
            "--verbose",
            str(self.verbose),
            # llama-cpp-python's server ends a streaming reply as soon as another request
            # waits for the model (its default): a second candidate's question would cut
            # the first one's evaluation short, an empty reply. Requests wait their turn
            # instead; each step's budget bounds the wait.
            "--interrupt_requests",
            "False",
        ]

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment to run it in: `base` (default: this process's), unbuffered so
        that its ready line reaches the supervisor at once."""
        env = dict(os.environ if base is None else base)
        env["PYTHONUNBUFFERED"] = "1"
        # llama.cpp's OpenMP threads would otherwise spin-wait between tokens on the cores
        # the vision and speech workers need.
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        return env


async def server_ready(base_url: str, timeout_s: float = 2.0) -> bool:
    """Whether the server at `base_url` (the API root) answers ``GET /models`` with a
    model list: it is up and its model is loaded."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as http,
            http.get(base_url.rstrip("/") + "/models") as response,
        ):
            if response.status != 200:
                return False
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return False
    return isinstance(body, dict) and bool(body.get("data"))


class LocalServerError(RuntimeError):
    """The embedded server exited or did not become ready; carries its last log lines."""


class LocalLlmServer:
    """``async with LocalLlmServer(settings) as server:`` — llama.cpp's server on
    `settings.port`, ready (``GET /v1/models`` answers) inside the block, killed on exit.

    For tests and benchmarks; `intervue up` supervises the same command line itself. The
    process belongs to no event loop (a plain ``Popen``; its log read by a thread, or
    written to `log_path`), so a synchronous caller can start it with one ``asyncio.run``,
    run other loops meanwhile, and stop it with `stop_now` (`intervue bench llm` does)."""

    def __init__(
        self,
        settings: LocalServerSettings,
        *,
        start_timeout_s: float = 120.0,
        nice: int = 0,
        log_lines: int = 40,
        log_path: Path | None = None,
    ) -> None:
        self.settings = settings
        self.start_timeout_s = start_timeout_s
        self.nice = nice
        #: Where the whole log goes (the benchmark reads llama.cpp's timings from it);
        #: None: only the last `log_lines` lines are kept, for error messages.
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        #: Seconds from start to ready.
        self.ready_s: float | None = None
        self._log: collections.deque[str] = collections.deque(maxlen=log_lines)
        self._reader: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def log_tail(self) -> str:
        if self.log_path is not None and self.log_path.exists():
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
            return "\n".join(lines[-(self._log.maxlen or 40) :])
        return "\n".join(self._log)

    async def start(self) -> None:
        argv = self.settings.argv()
        if self.nice:
            argv = ["nice", "-n", str(self.nice), *argv]
        log.info("starting llama.cpp's server on %s", self.base_url)
        started = time.monotonic()
        self.process = await asyncio.to_thread(self._spawn, argv)
        while not await server_ready(self.base_url):
            if self.process.poll() is not None:
                self._join_reader()
                raise LocalServerError(
                    f"llama.cpp's server exited with code {self.process.returncode} before it "
                    f"was ready:\n{self.log_tail}"
                )
            if time.monotonic() - started > self.start_timeout_s:
                await self.stop()
                raise LocalServerError(
                    f"llama.cpp's server was not ready within {self.start_timeout_s:.0f} s:\n"
                    f"{self.log_tail}"
                )
            await asyncio.sleep(0.25)
        self.ready_s = time.monotonic() - started
        log.info("llama.cpp's server ready in %.1f s", self.ready_s)

    def _spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        output = self.log_path.open("wb") if self.log_path is not None else subprocess.PIPE
        try:
            process = subprocess.Popen(
                argv,
                env=self.settings.env(),
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: killed whole on exit
            )
        finally:
            if output is not subprocess.PIPE:
                output.close()  # the child holds its own descriptor
        if process.stdout is not None:
            self._reader = threading.Thread(
                target=self._read_log, args=(process.stdout,), daemon=True
            )
            self._reader.start()
        return process

    def _read_log(self, stream: IO[bytes]) -> None:
        for line in stream:
            self._log.append(line.decode("utf-8", "replace").rstrip())

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5.0)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM its process group, SIGKILL after `timeout_s` (waiting off the loop)."""
        await asyncio.to_thread(self.stop_now, timeout_s)

    def stop_now(self, timeout_s: float = 10.0) -> None:
        """`stop`, for a synchronous caller: blocks until the process is gone."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self._join_reader()
        if process.stdout is not None:
            process.stdout.close()

    async def __aenter__(self) -> LocalLlmServer:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
