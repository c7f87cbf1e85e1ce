"""A voice for headless Chromium: a private speech-dispatcher that speaks with espeak-ng.

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
  sentence at once, so the browser's ``end`` event follows ``start`` by ~0.1 s.

With ``paced=True`` an utterance lasts as long as it would from a loudspeaker (what a test
of the room's behaviour *while* a question is read aloud needs): the dispatcher speaks
through its generic module instead, which runs ``espeak-ng --stdout`` into a small pacer
process (``PACER``) that reads the WAV no faster than it plays, and reports the end when
that process exits. A ``speechSynthesis.cancel()`` kills the process group, so a paced
voice can be stopped and speak again. (An earlier paced voice played through ALSA's file
plugin into a FIFO: any ``snd_pcm_drop`` with bytes still buffered aborted the whole
dispatcher at a ``pcm_file.c`` assertion; CI met it once with no cancel from the room.)

    with PrivateSpeechDispatcher(tmp_path) as voice:
        async with launch_browser(..., speech=voice) as browser: ...

The first utterance of a browser waits for Chromium to connect and list the dispatcher's
voices (about 2 s here, thousands of espeak-ng variants); later ones start in ~0.1 s.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
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
GENERIC_MODULE = "sd_generic"

#: The Chromium switch that lets its Linux speech synthesis use speech-dispatcher.
CHROMIUM_SWITCH = "--enable-speech-dispatcher"


class SpeechDispatcherUnavailable(RuntimeError):
    """speech-dispatcher or its espeak-ng module is not installed, or it did not start."""


def missing(*, paced: bool = False) -> str | None:
    """What is missing for a private speech-dispatcher (``paced``: one whose voice lasts as
    long as it speaks), or None when it can start."""
    if shutil.which("speech-dispatcher") is None:
        return "speech-dispatcher is not installed (apt-get install " + " ".join(PACKAGES) + ")"
    if paced:
        if not (MODULE_DIR / GENERIC_MODULE).exists():
            return f"speech-dispatcher's generic module ({MODULE_DIR / GENERIC_MODULE}) is missing"
        if shutil.which("espeak-ng") is None:
            return "espeak-ng is not installed (apt-get install espeak-ng)"
    elif not (MODULE_DIR / ESPEAK_MODULE).exists():
        return (
            f"speech-dispatcher's espeak-ng module ({MODULE_DIR / ESPEAK_MODULE}) is not "
            "installed (apt-get install speech-dispatcher-espeak-ng)"
        )
    return None


#: The generic module's name for a paced voice, and its voices (language, espeak-ng voice).
PACED_MODULE = "intervue-paced"
PACED_VOICES = (("en", "en-us"), ("ko", "ko"))

#: The pacer: reads a WAV from stdin no faster than it would play, then exits (the
#: generic module reports the utterance's end when its command exits).
PACER = """\
import struct, sys, time
stream = sys.stdin.buffer
header = stream.read(44)
if len(header) == 44 and header[:4] == b"RIFF":
    channels, rate = struct.unpack_from("<HI", header, 22)
    (bits,) = struct.unpack_from("<H", header, 34)
    bytes_per_s = max(1, channels * rate * bits // 8)
    started, played = time.monotonic(), 0
    while chunk := stream.read(4096):
        played += len(chunk)
        ahead = played / bytes_per_s - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(ahead)
"""


def _paced_module_config(pacer: Path) -> str:
    # sd_generic substitutes $DATA (quotes escaped), $VOICE, $RATE, $PITCH and $PUNCT, and
    # kills the command's process group on a cancel. Rate and pitch map SSIP's -100..100
    # onto espeak-ng's (as Debian's espeak-ng generic configs do).
    synth = (
        "printf %s \\'$DATA\\' | espeak-ng -v $VOICE -s $RATE -p $PITCH $PUNCT --stdin "
        f"--stdout | {shlex.quote(sys.executable)} {shlex.quote(str(pacer))}"
    )
    lines = [
        f'GenericExecuteSynth "{synth}"',
        'GenericCmdDependency "espeak-ng"',
        'GenericPunctNone ""',
        'GenericPunctSome "--punct=\\"()[]{};:\\""',
        'GenericPunctMost "--punct=\\"()[]{};:\\""',
        'GenericPunctAll "--punct"',
    ]
    for language, voice in PACED_VOICES:
        lines.append(f'GenericLanguage "{language}" "{voice}" "utf-8"')
    for language, voice in PACED_VOICES:
        lines.append(f'AddVoice "{language}" "MALE1" "{voice}"')
    lines += [
        f'DefaultVoice "{PACED_VOICES[0][1]}"',
        "GenericRateAdd 160",
        "GenericRateMultiply 160",
        "GenericRateForceInteger 1",
        "GenericPitchAdd 50",
        "GenericPitchMultiply 50",
        "GenericPitchForceInteger 1",
        "",
    ]
    return "\n".join(lines)


def _config(audio_device: str, *, paced: bool) -> str:
    # Later settings win; nothing here is read from the user's or the system's speechd.conf
    # (its symbol tables and client rules only slow the start and log noise). A paced
    # voice plays no audio of its own, but every module opens the audio device at start.
    if paced:
        module = f'AddModule "{PACED_MODULE}" "{GENERIC_MODULE}" "{PACED_MODULE}.conf"'
    else:
        module = f'AddModule "espeak-ng" "{ESPEAK_MODULE}" "espeak-ng.conf"'
    return "\n".join(
        [
            "LogLevel 2",
            'AudioOutputMethod "alsa"',
            f'AudioALSADevice "{audio_device}"',
            module,
            f'DefaultModule "{PACED_MODULE if paced else "espeak-ng"}"',
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
        self.audio_device = audio_device
        self.start_timeout_s = start_timeout_s
        # A Unix socket path must stay under ~108 bytes; a test's tmp_path can be longer.
        self._socket_dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

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
        problem = missing(paced=self.paced)
        if problem:
            raise SpeechDispatcherUnavailable(problem)
        config_dir = self.workdir / "config"
        (config_dir / "modules").mkdir(parents=True, exist_ok=True)
        (self.workdir / "log").mkdir(exist_ok=True)
        (config_dir / "speechd.conf").write_text(_config(self.audio_device, paced=self.paced))
        if self.paced:
            pacer = self.workdir / "pacer.py"
            pacer.write_text(PACER)
            modules = config_dir / "modules" / f"{PACED_MODULE}.conf"
            modules.write_text(_paced_module_config(pacer))
        else:
            module_config = SYSTEM_CONFIG_DIR / "modules" / "espeak-ng.conf"
            target = config_dir / "modules" / "espeak-ng.conf"
            if module_config.is_file():
                shutil.copyfile(module_config, target)
            else:
                target.write_text("")  # the module's defaults
        self.socket_path.unlink(missing_ok=True)
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
                command, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr
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
        log.info(
            "speech-dispatcher (%s) at %s",
            "espeak-ng, paced" if self.paced else f"espeak-ng, ALSA {self.audio_device}",
            self.address,
        )
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        # Its module (sd_espeak-ng, sd_generic) leaves with it: a module exits when its
        # pipe closes.
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
