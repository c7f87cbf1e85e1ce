"""Configuration of the interviewer dashboard (env prefix ``INTERVUE_DASHBOARD_``).

The NATS URL is the bus's own setting (``INTERVUE_NATS_URL``, `stream.settings.BusSettings`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, IPvAnyNetwork, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """Where `intervue up` keeps its state (the same place as deploy.up's default)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "intervue"


class DashboardSettings(BaseSettings):
    """The dashboard (env prefix ``INTERVUE_DASHBOARD_``)."""

    model_config = SettingsConfigDict(env_prefix="INTERVUE_DASHBOARD_", extra="forbid")

    #: "password" (the default), "oidc" (Streamlit's st.login; needs an ``[auth]`` section in
    #: .streamlit/secrets.toml and Authlib), or "auto": OIDC when it is configured, else the
    #: password.
    auth: Literal["auto", "password", "oidc"] = "auto"
    #: The room's public address, for invitation links made on the dashboard.
    gateway_url: str = "http://127.0.0.1:8080/"
    #: The login name (the password is shared by every interviewer who knows it).
    username: str = Field("interviewer", min_length=1, max_length=64)
    #: A salted hash of the password: ``scrypt$n$r$p$salt$hash`` or
    #: ``pbkdf2_sha256$iterations$salt$hash`` (base64 salt/hash), as printed by
    #: ``python -m dashboard.auth hash``.
    password_hash: SecretStr | None = None
    #: A file holding such a hash, or the password itself (a mounted secret).
    password_file: Path | None = None
    #: Where a generated password's hash is kept when nothing is configured.
    data_dir: Path = Field(default_factory=default_data_dir)
    #: Seconds between refreshes of the live panels.
    refresh_s: float = Field(2.0, ge=0.5, le=60)
    #: A session without an end whose last event is older than this is shown as stalled.
    stale_after_s: float = Field(120.0, gt=0)
    #: A session that ended this long ago keeps only its summary events in memory (no
    #: per-frame emotion results); opening it reads the rest back from JetStream.
    archive_after_s: float = Field(1800.0, ge=0)
    #: Archived sessions kept whole in memory after being opened (least recent out first).
    loaded_sessions: int = Field(4, ge=1, le=64)
    #: Consecutive failed logins for one user name, or from one client address, that lock
    #: that user name / address out for `lockout_s`; each further lockout of the same one
    #: doubles, up to `lockout_max_s`. Kept in the dashboard's server process: a reload or a
    #: new tab does not reset it (dashboard/login_limit.py).
    max_failed_logins: int = Field(5, ge=1)
    lockout_s: float = Field(30.0, ge=0)
    lockout_max_s: float = Field(900.0, ge=0)
    #: Failed logins per minute from everyone together before every login waits.
    failed_logins_per_minute: int = Field(30, ge=1)
    #: Proxies/load balancers whose X-Forwarded-For is believed for the per-address login
    #: limit (JSON list of networks, e.g. '["10.0.0.0/8"]'). Empty: the header is ignored.
    trusted_proxies: list[IPvAnyNetwork] = Field(default_factory=list)
