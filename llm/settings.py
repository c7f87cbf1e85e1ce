"""Configuration of the interviewer's language model (env prefix ``INTERVUE_LLM_``).

With no ``INTERVUE_LLM_BASE_URL`` the interviewer runs the offline engine
(`llm.offline`), so a fresh install works with no endpoint and no key.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class LlmSettings(BaseSettings):
    """How the interviewer reaches an OpenAI-compatible endpoint, and its input limits."""

    model_config = SettingsConfigDict(env_prefix="INTERVUE_LLM_", extra="forbid")

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
        """True when no endpoint is configured and the offline engine answers."""
        return self.base_url is None
