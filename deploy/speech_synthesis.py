"""A voice for headless Chromium: a private speech-dispatcher speaking into ALSA's null device.

The room reads each question aloud with the browser's own speech synthesis
(``speechSynthesis.speak``). On Linux, Chromium speaks through speech-dispatcher, and only
when started with ``--enable-speech-dispatcher``; without it (or with no dispatcher) every
utterance fails at once with ``synthesis-failed``, so a headless run can neither test that
the question is spoken nor time it. This module starts a speech-dispatcher of our own:

* its own config, socket, pid file and logs in a work directory (never the user's
  ``~/.cache/speech-dispatcher``, never the system one), reached by Chromium through
  ``SPEECHD_ADDRESS``;
* the espeak-ng module (Debian: ``speech-dispatcher-espeak-ng``), which speaks English and
  Korean;
* audio into ALSA's ``null`` device: a machine with no sound card otherwise fails at
  "Opening audio failed" and the utterance never starts. The null device swallows a
  sentence at once, so the browser's ``end`` event follows ``start`` by ~0.1 s; with
  ``paced=True`` the audio goes through a FIFO that a thread here reads at the voice's own
  sample rate, so an utterance lasts as long as it would from a loudspeaker (what a test
  of the room's behaviour *while* a question is read aloud needs). Its limit: a
  ``speechSynthesis.cancel()`` reaching the dispatcher makes ALSA's file plugin abort it
  (``snd_pcm_file_drop`` assertion), so no later utterance of that dispatcher ends; the
  room cancels only a voice that is speaking, and a test that stops one uses no voice after.

    with PrivateSpeechDispatcher(tmp_path) as voice:
        async with launch_browser(..., speech=voice) as browser: ...

The first utterance of a browser waits for Chromium to connect and list the dispatcher's
voices (about 2 s here, thousands of espeak-ng variants); later ones start in ~0.1 s.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

#: Debian's packages for it (system-packages.sh installs them with the test tiers).
PACKAGES = ("speech-dispatcher", "speech-dispatcher-espeak-ng")
#: Where Debian keeps the espeak-ng module and its config.
MODULE_DIR = Path("/usr/lib/speech-dispatcher-modules")
SYSTEM_CONFIG_DIR = Path("/etc/speech-dispatcher")
ESPEAK_MODULE = "sd_espeak-ng"

#: The Chromium switch that lets its Linux speech synthesis use speech-dispatcher.
CHROMIUM_SWITCH = "--enable-speech-dispatcher"


class SpeechDispatcherUnavailable(RuntimeError):
    """speech-dispatcher or its espeak-ng module is not installed, or it did not start."""


def missing() -> str | None:
    """What is missing for a private speech-dispatcher, or None when it can start."""
    if shutil.which("speech-dispatcher") is None:
        return "speech-dispatcher is not installed (apt-get install " + " ".join(PACKAGES) + ")"
    if not (MODULE_DIR / ESPEAK_MODULE).exists():
        return (
            f"speech-dispatcher's espeak-ng module ({MODULE_DIR / ESPEAK_MODULE}) is not "
            "installed (apt-get install speech-dispatcher-espeak-ng)"
        )
    return None


#: The ALSA device of a paced voice (defined in the dispatcher's own ~/.asoundrc).
PACED_DEVICE = "intervue_paced"
_F_SETPIPE_SZ = 1031  # Linux fcntl: a small pipe, so the writer is held close to real time


def _paced_asoundrc(fifo: Path) -> str:
    # ALSA's file plugin copies what is played into `fifo` (a WAV header, then the samples)
    # and hands it to the null device; writing blocks while the pipe is full.
    return (
        f"pcm.{PACED_DEVICE} {{\n"
        "  type file\n"
        '  slave.pcm "null"\n'
        f'  file "{fifo}"\n'
        '  format "wav"\n'
        "}\n"
    )


def _config(audio_device: str) -> str:
    # Later settings win; nothing here is read from the user's or the system's speechd.conf
    # (its symbol tables and client rules only slow the start and log noise).
    return "\n".join(
        [
            "LogLevel 2",
            'AudioOutputMethod "alsa"',
            f'AudioALSADevice "{audio_device}"',
            f'AddModule "espeak-ng" "{ESPEAK_MODULE}" "espeak-ng.conf"',
            'DefaultModule "espeak-ng"',
            "",
        ]
    )


class PrivateSpeechDispatcher:
    """One speech-dispatcher process for this run, its files under ``workdir``.

    ``address`` is the value of ``SPEECHD_ADDRESS`` for a client (Chromium) to reach it;
    ``environ()`` a whole environment with it set."""

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        audio_device: str = "null",
        start_timeout_s: float = 15.0,
        paced: bool = False,
    ) -> None:
        self.workdir = Path(workdir) / "speech-dispatcher"
        self.paced = paced
        self.audio_device = PACED_DEVICE if paced else audio_device
        self.start_timeout_s = start_timeout_s
        # A Unix socket path must stay under ~108 bytes; a test's tmp_path can be longer.
        self._socket_dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._pacer: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def socket_path(self) -> Path:
        if self._socket_dir is None:
            self._socket_dir = Path(tempfile.mkdtemp(prefix="intervue-speechd-"))
        return self._socket_dir / "speechd.sock"

    @property
    def address(self) -> str:
        return f"unix_socket:{self.socket_path}"

    def environ(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (this process's environment by default) with ``SPEECHD_ADDRESS`` set."""
        return {**(os.environ if base is None else base), "SPEECHD_ADDRESS": self.address}

    def start(self) -> PrivateSpeechDispatcher:
        problem = missing()
        if problem:
            raise SpeechDispatcherUnavailable(problem)
        config_dir = self.workdir / "config"
        (config_dir / "modules").mkdir(parents=True, exist_ok=True)
        (self.workdir / "log").mkdir(exist_ok=True)
        (config_dir / "speechd.conf").write_text(_config(self.audio_device))
        module_config = SYSTEM_CONFIG_DIR / "modules" / "espeak-ng.conf"
        target = config_dir / "modules" / "espeak-ng.conf"
        if module_config.is_file():
            shutil.copyfile(module_config, target)
        else:
            target.write_text("")  # the module's defaults
        self.socket_path.unlink(missing_ok=True)
        env = dict(os.environ)
        if self.paced:
            env["HOME"] = str(self._paced_home())
        command = [
            "speech-dispatcher",
            "--run-single",
            "--config-dir",
            str(config_dir),
            "--log-dir",
            str(self.workdir / "log"),
            "--communication-method",
            "unix_socket",
            "--socket-path",
            str(self.socket_path),
            "--pid-file",
            str(self.workdir / "speechd.pid"),
            "--timeout",
            "0",  # stay up between browsers; stop() ends it
        ]
        stderr_path = self.workdir / "stderr.log"
        with stderr_path.open("wb") as stderr:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, env=env
            )
        deadline = time.monotonic() + self.start_timeout_s
        while not self.socket_path.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SpeechDispatcherUnavailable(
                    f"speech-dispatcher did not open {self.socket_path}: "
                    + (stderr_path.read_text(errors="replace")[-800:] or "no output")
                )
            time.sleep(0.05)
        log.info("speech-dispatcher (espeak-ng, ALSA %s) at %s", self.audio_device, self.address)
        return self

    def _paced_home(self) -> Path:
        """A HOME for the dispatcher whose ~/.asoundrc defines the paced device; starts the
        thread that reads its FIFO."""
        home = self.workdir / "home"
        home.mkdir(exist_ok=True)
        fifo = self.socket_path.parent / "voice.fifo"
        if not fifo.exists():
            os.mkfifo(fifo)
        (home / ".asoundrc").write_text(_paced_asoundrc(fifo))
        self._stopping.clear()
        self._pacer = threading.Thread(
            target=self._pace, args=(fifo,), name="speech-dispatcher-pacer", daemon=True
        )
        self._pacer.start()
        return home

    def _pace(self, fifo: Path) -> None:
        """Read each utterance's audio from `fifo` no faster than it would play."""
        while not self._stopping.is_set():
            try:
                fd = os.open(fifo, os.O_RDONLY)  # blocks until an utterance opens it
            except OSError:
                return
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, _F_SETPIPE_SZ, 4096)
            with os.fdopen(fd, "rb", buffering=0) as stream:
                header = stream.read(44)
                if len(header) < 44 or header[:4] != b"RIFF":
                    continue  # nothing played (or stop() woke us)
                channels, rate = struct.unpack_from("<HI", header, 22)
                (bits,) = struct.unpack_from("<H", header, 34)
                bytes_per_s = max(1, channels * rate * bits // 8)
                started, played = time.monotonic(), 0
                while chunk := stream.read(4096):
                    played += len(chunk)
                    ahead = played / bytes_per_s - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        # Its module (sd_espeak-ng) leaves with it: the module exits when its pipe closes.
        pacer, self._pacer = self._pacer, None
        if pacer is not None:
            self._stopping.set()
            with contextlib.suppress(OSError):  # wake a reader waiting for a writer
                os.close(
                    os.open(self.socket_path.parent / "voice.fifo", os.O_WRONLY | os.O_NONBLOCK)
                )
            pacer.join(timeout=5)
        socket_dir, self._socket_dir = self._socket_dir, None
        if socket_dir is not None:
            shutil.rmtree(socket_dir, ignore_errors=True)

    def __enter__(self) -> PrivateSpeechDispatcher:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
