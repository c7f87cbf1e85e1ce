"""Which engine the interviewer uses: ``INTERVUE_LLM_ENGINE`` applied to what is
installed and what the machine can afford.

`decide_engine` is the rule, pure (the facts are given); `machine_facts` gathers the facts
(importlib, a stat, /proc/meminfo); `resolve_engine` is both. The rule:

- an explicit ``offline`` / ``local`` / ``remote`` wins; ``local`` without llama.cpp or
  without its model, and ``remote`` without ``INTERVUE_LLM_BASE_URL``, are start-up errors
  (`EngineChoiceError`) that say what to do;
- ``auto``: remote when ``INTERVUE_LLM_BASE_URL`` is set; else local when llama.cpp's
  server is installed AND the model is ready AND the machine can afford it; else offline.

"Can afford": at least `MIN_CORES` cores and ``MemAvailable`` of at least the model file's
size plus `MEMORY_HEADROOM_BYTES` (2.5 GiB). Measured with the default model (1.04 GiB
file, 4096 tokens of context, 2 threads): the server's RSS is 1.85 GiB once loaded (the
weights are mmapped and count in it), 2.9 GiB after its first schema-constrained reply
and up to 3.8 GiB after questions and evaluations in both languages, so about 2.8 GiB
beyond the file. With one core, generation competes with the speech and vision workers
for the only core, and the offline engine answers sooner than the model.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from llm.settings import LlmSettings

log = logging.getLogger(__name__)

Engine = Literal["offline", "local", "remote"]

MIN_CORES = 2
MEMORY_HEADROOM_BYTES = 5 * 512 * 1024 * 1024  # 2.5 GiB
SETUP_COMMAND = "bash scripts/setup.sh --local-llm"


class EngineChoiceError(RuntimeError):
    """An explicit engine choice that cannot run here; the message says what to do."""


@dataclass(frozen=True)
class MachineFacts:
    """What the choice depends on, gathered once at start-up."""

    #: llama-cpp-python and its server's dependencies are importable.
    llama_cpp: bool
    #: The GGUF the local engine would serve.
    model_path: Path
    #: None when the model is ready; otherwise what is wrong with it, in words.
    model_problem: str | None
    #: The model file's size in bytes (0 when it is missing).
    model_bytes: int
    #: Cores this process may run on.
    cores: int
    #: /proc/meminfo's MemAvailable in bytes (None where it cannot be read).
    mem_available: int | None


@dataclass(frozen=True)
class EngineChoice:
    engine: Engine
    #: Why, in one sentence (logged, and printed by `intervue up`).
    reason: str
    #: The GGUF to serve when ``engine`` is local.
    model_path: Path | None = None


def affordable(facts: MachineFacts) -> str | None:
    """None when this machine can run the local model next to the other roles; otherwise
    why not."""
    if facts.cores < MIN_CORES:
        return f"{facts.cores} core(s) (the local model needs at least {MIN_CORES})"
    if facts.mem_available is not None:
        needed = facts.model_bytes + MEMORY_HEADROOM_BYTES
        if facts.mem_available < needed:
            return (
                f"{_gib(facts.mem_available)} of memory available (the local model needs "
                f"{_gib(needed)}: its file plus {_gib(MEMORY_HEADROOM_BYTES)})"
            )
    return None


def decide_engine(settings: LlmSettings, facts: MachineFacts | None) -> EngineChoice:
    """The engine for `settings` on a machine described by `facts` (pure). `facts` may be
    None when the choice does not depend on them (offline, remote, or ``base_url`` set)."""
    choice = settings.engine
    if choice == "offline":
        return EngineChoice("offline", "INTERVUE_LLM_ENGINE=offline")
    if choice == "remote" or (choice == "auto" and settings.base_url is not None):
        if settings.base_url is None:
            raise EngineChoiceError(
                "INTERVUE_LLM_ENGINE=remote needs INTERVUE_LLM_BASE_URL (an OpenAI-compatible "
                "API root such as https://api.openai.com/v1)"
            )
        why = "INTERVUE_LLM_ENGINE=remote" if choice == "remote" else "INTERVUE_LLM_BASE_URL is set"
        return EngineChoice("remote", f"{why}: {settings.model} at {settings.base_url}")
    if choice == "local" and settings.base_url is not None:
        # `intervue up` hands the interviewer its embedded server's address this way.
        return EngineChoice("local", f"the embedded llama.cpp server at {settings.base_url}")
    if facts is None:
        raise ValueError("the local engine's choice needs the machine's facts")
    missing = _local_missing(facts)
    if choice == "local":
        if missing:
            raise EngineChoiceError(
                f"INTERVUE_LLM_ENGINE=local, but {missing}. Install the local model with "
                f"`{SETUP_COMMAND}`, point INTERVUE_LLM_LOCAL_MODEL at a GGUF, or choose "
                "INTERVUE_LLM_ENGINE=offline"
            )
        return EngineChoice(
            "local", f"INTERVUE_LLM_ENGINE=local: {facts.model_path.name}", facts.model_path
        )
    # auto, no endpoint
    if missing:
        return EngineChoice(
            "offline", f"auto: {missing} (`{SETUP_COMMAND}` installs the local model)"
        )
    too_small = affordable(facts)
    if too_small:
        return EngineChoice("offline", f"auto: the local model is installed, but {too_small}")
    return EngineChoice(
        "local",
        f"auto: llama.cpp and {facts.model_path.name} are installed, {facts.cores} cores and "
        f"{_gib(facts.mem_available) if facts.mem_available is not None else 'unknown'} "
        "of memory available",
        facts.model_path,
    )


def _local_missing(facts: MachineFacts) -> str | None:
    if not facts.llama_cpp:
        return "llama-cpp-python's server is not installed"
    if facts.model_problem:
        return facts.model_problem
    return None


def _gib(size: int) -> str:
    return f"{size / 1024**3:.1f} GiB"


# ----------------------------------------------------------------------------- I/O


def available_cores() -> int:
    """Cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def mem_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """MemAvailable in bytes, or None where the kernel does not say."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def model_problem(settings: LlmSettings) -> tuple[Path, str | None]:
    """The GGUF the local engine would serve, and what is wrong with it (None: ready).
    The default model must be assembled and verified (its stamp); a user's own GGUF must
    be a readable GGUF file."""
    from llm.local.model import LocalModelError, check_gguf, default_gguf_path, local_model_ready

    if settings.local_model is not None:
        path = settings.local_model.expanduser()
        try:
            check_gguf(path)
        except LocalModelError as exc:
            return path, f"INTERVUE_LLM_LOCAL_MODEL: {exc}"
        return path, None
    path = default_gguf_path()
    if not local_model_ready(path):
        return path, f"the local model is not prepared in {path.parent}"
    return path, None


def machine_facts(settings: LlmSettings) -> MachineFacts:
    """The facts `decide_engine` needs, read from this machine."""
    from llm.local.model import llama_cpp_installed

    path, problem = model_problem(settings)
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    return MachineFacts(
        llama_cpp=llama_cpp_installed(),
        model_path=path,
        model_problem=problem,
        model_bytes=size,
        cores=available_cores(),
        mem_available=mem_available(),
    )


def resolve_engine(settings: LlmSettings | None = None) -> EngineChoice:
    """`decide_engine` with this machine's facts (read only when the choice needs them),
    logged."""
    settings = settings or LlmSettings()
    needs_facts = settings.engine in ("auto", "local") and settings.base_url is None
    choice = decide_engine(settings, machine_facts(settings) if needs_facts else None)
    log.info("LLM engine: %s (%s)", choice.engine, choice.reason)
    return choice
