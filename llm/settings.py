"""Configuration of the interviewer's language model (env prefix ``INTERVUE_LLM_``).

Which engine answers is one setting, ``INTERVUE_LLM_ENGINE`` (`resolve_engine` in
`llm.local.choice` applies it; docs/local-llm.md states the rule):

- ``offline``: the rule-based offline engine (`llm.offline`);
- ``local``: llama.cpp's server on this machine (`intervue up` runs it as the ``llm``
  role and hands the interviewer its ``base_url``);
- ``remote``: the OpenAI-compatible endpoint at ``INTERVUE_LLM_BASE_URL``;
- ``auto`` (default): remote when ``base_url`` is set, else local when llama.cpp, the
  model and the machine's cores and memory allow it, else offline. So a fresh install,
  with no endpoint and no key, runs the offline engine, as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class LlmSettings(BaseSettings):
    """How the interviewer reaches an OpenAI-compatible endpoint, and its input limits."""

    model_config = SettingsConfigDict(env_prefix="INTERVUE_LLM_", extra="forbid")

    #: Which engine answers (module docstring). ``base_url`` set and ``auto``: remote.
    engine: Literal["auto", "offline", "local", "remote"] = "auto"
    #: OpenAI-compatible API root, e.g. ``https://api.openai.com/v1`` or
    #: ``http://127.0.0.1:11434/v1`` (Ollama). None (or empty) = the offline engine.
    base_url: str | None = None
    #: Sent as the bearer token. Local servers (vLLM, Ollama) accept anything, so it may
    #: stay empty. A SecretStr so that no repr, log line or error message shows it.
    api_key: SecretStr = SecretStr("")
    #: Model name as the endpoint knows it.
    model: str = Field("gpt-4o-mini", min_length=1)
    #: Per-request timeout (connect + read), seconds.
    timeout_s: float = Field(30.0, gt=0, le=600)
    #: Retries after the first attempt for timeouts, connection errors, 429 and 5xx.
    max_retries: int = Field(3, ge=0, le=10)
    #: First backoff delay; doubles per retry up to `backoff_max_s`, with jitter.
    backoff_base_s: float = Field(0.5, ge=0, le=60)
    #: Cap on one backoff delay (a 429's Retry-After is capped by it too).
    backoff_max_s: float = Field(8.0, ge=0, le=300)
    #: Sampling temperature; low, because the output is structured JSON.
    temperature: float = Field(0.3, ge=0, le=2)
    #: An answer transcript longer than this is cut (with a marker) before it enters a
    #: prompt, so one rambling answer cannot blow the model's context window.
    max_answer_chars: int = Field(8000, ge=100, le=100_000)
    #: Default interview language when a profile does not say.
    language: Literal["ko", "en"] = "ko"
    #: Ask a remote server for ``response_format={"type": "json_schema", …}`` (OpenAI's
    #: structured outputs, vLLM) instead of plain JSON mode. Off by default: not every
    #: OpenAI-compatible server knows it (a 400 turns it off for the client, as JSON mode).
    remote_json_schema: bool = False

    # ------------------------------------------------------------- the local engine
    #: The GGUF llama.cpp serves. None: the verified default model that
    #: ``bash scripts/setup.sh --local-llm`` assembles (`llm.local.model.default_gguf_path`).
    #: Any other GGUF works (a bigger model on a bigger machine).
    local_model: Path | None = None
    #: CPU threads for generation. None: every core the process may use.
    local_threads: int | None = Field(None, ge=1, le=256)
    #: The context window in tokens: the prompt (profile, question, answer, schema) plus
    #: the reply. 4096 holds the longest evaluation prompt (an 8000-character answer).
    local_context: int = Field(4096, ge=512, le=131_072)
    #: The port of the embedded server on 127.0.0.1. 0: a free port at each start.
    local_port: int = Field(0, ge=0, le=65535)
    #: The name the embedded server gives the model (``--model_alias``), sent as ``model``.
    local_alias: str = Field("intervue-local", min_length=1)

    # ------------------------------------------------------------- step budgets
    #: A questions step that takes longer than this is abandoned and the offline engine
    #: answers it, labelled "too slow". 0 = no budget. Measured on 2 cores (docs/local-llm.md):
    #: about 26 s alone, 2-5x that while the vision and speech workers share the cores.
    questions_budget_s: float = Field(60.0, ge=0, le=3600)
    #: The same for an evaluation (a longer reply: about 39 s for the full rubric alone).
    evaluation_budget_s: float = Field(90.0, ge=0, le=3600)

    @field_validator("base_url", mode="before")
    @classmethod
    def _empty_is_offline(cls, value: object) -> object:
        # `INTERVUE_LLM_BASE_URL=` in an env file means "no endpoint", not "the URL ''".
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https:// (got {value!r})")
        return value

    @model_validator(mode="after")
    def _backoff_order(self) -> LlmSettings:
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError("backoff_max_s must be at least backoff_base_s")
        return self

    @property
    def offline(self) -> bool:
        """True when the offline engine answers: no endpoint, or the engine chosen so."""
        return self.base_url is None or self.engine == "offline"

    @property
    def talks_to_local_server(self) -> bool:
        """True when ``base_url`` is the embedded llama.cpp server (engine ``local``)."""
        return self.engine == "local" and self.base_url is not None

    def budget_s(self, stage: str) -> float | None:
        """The time budget of a step ("questions" or "evaluation"); None: no budget."""
        budget = self.questions_budget_s if stage == "questions" else self.evaluation_budget_s
        return budget or None
