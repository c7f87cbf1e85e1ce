"""Dashboard login: one shared password, stored only as a salted hash.

Where the password comes from, first match wins:

1. ``INTERVUE_DASHBOARD_PASSWORD_HASH``: ``scrypt$n$r$p$salt$hash`` or
   ``pbkdf2_sha256$iterations$salt$hash`` (salt and hash base64), as printed by
   ``python -m dashboard.auth hash``;
2. ``INTERVUE_DASHBOARD_PASSWORD_FILE``: a file holding such a hash, or the password itself
   (a mounted secret; compared in constant time like a hash);
3. the hash `ensure_credentials` generated under the data directory
   (``<data_dir>/dashboard-password.hash``, mode 0600) when nothing was configured.

Passwords and hashes are never logged. OIDC through Streamlit's own ``st.login`` is used
instead when ``INTERVUE_DASHBOARD_AUTH`` is ``oidc`` (or ``auto`` and ``.streamlit/
secrets.toml`` has an ``[auth]`` section): see docs/dashboard.md.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import logging
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashboard.settings import DashboardSettings

log = logging.getLogger(__name__)

GENERATED_HASH_FILE = "dashboard-password.hash"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
PBKDF2_ITERATIONS = 600_000


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, method: str = "scrypt") -> str:
    """A salted hash of `password` in the format the dashboard reads."""
    if not password:
        raise ValueError("the password is empty")
    salt = secrets.token_bytes(16)
    secret = password.encode("utf-8")
    if method == "scrypt":
        digest = hashlib.scrypt(secret, salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
        return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"
    if method == "pbkdf2_sha256":
        digest = hashlib.pbkdf2_hmac("sha256", secret, salt, PBKDF2_ITERATIONS)
        return f"pbkdf2_sha256${PBKDF2_ITERATIONS}${_b64(salt)}${_b64(digest)}"
    raise ValueError(f"unknown hash method {method!r} (scrypt or pbkdf2_sha256)")


def is_hash(text: str) -> bool:
    return text.startswith(("scrypt$", "pbkdf2_sha256$"))


def verify_password(password: str, encoded: str) -> bool:
    """True when `password` matches the hash `encoded` (constant-time comparison)."""
    try:
        method, *fields = encoded.strip().split("$")
        secret = password.encode("utf-8")
        if method == "scrypt" and len(fields) == 5:
            n, r, p = (int(x) for x in fields[:3])
            salt, expected = base64.b64decode(fields[3]), base64.b64decode(fields[4])
            maxmem = 256 * r * (n + p + 2) + 2**20
            digest = hashlib.scrypt(
                secret, salt=salt, n=n, r=r, p=p, dklen=len(expected), maxmem=maxmem
            )
        elif method == "pbkdf2_sha256" and len(fields) == 3:
            iterations = int(fields[0])
            salt, expected = base64.b64decode(fields[1]), base64.b64decode(fields[2])
            digest = hashlib.pbkdf2_hmac("sha256", secret, salt, iterations, len(expected))
        else:
            log.warning("the configured dashboard password hash is not in a known format")
            return False
    except (ValueError, TypeError, MemoryError):
        log.warning("the configured dashboard password hash cannot be read")
        return False
    return hmac.compare_digest(digest, expected)


@dataclass(frozen=True)
class Credentials:
    """Who may log in: a user name and a verifier (a hash, or a plain secret from a file)."""

    username: str
    verifier: str
    source: str  # "env hash" | "password file" | "generated"

    def check(self, username: str, password: str) -> bool:
        user_ok = hmac.compare_digest(username.strip().encode(), self.username.encode())
        if is_hash(self.verifier):
            password_ok = verify_password(password, self.verifier)
        else:
            password_ok = hmac.compare_digest(password.encode(), self.verifier.encode())
        return user_ok and password_ok

    def __repr__(self) -> str:  # never show the verifier
        return f"Credentials(username={self.username!r}, source={self.source!r})"


def generated_hash_path(data_dir: Path) -> Path:
    return Path(data_dir) / GENERATED_HASH_FILE


def load_credentials(settings: DashboardSettings) -> Credentials | None:
    """The configured credentials, or None when nothing is configured (or readable)."""
    if settings.password_hash is not None and settings.password_hash.get_secret_value():
        return Credentials(settings.username, settings.password_hash.get_secret_value(), "env hash")
    if settings.password_file is not None:
        try:
            text = settings.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            log.error("cannot read the dashboard password file %s: %s", settings.password_file, exc)
            return None
        if not text:
            log.error("the dashboard password file %s is empty", settings.password_file)
            return None
        return Credentials(settings.username, text, "password file")
    path = generated_hash_path(settings.data_dir)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return Credentials(settings.username, text, "generated") if text else None


def ensure_credentials(
    data_dir: str | os.PathLike[str] | None = None, settings: DashboardSettings | None = None
) -> tuple[str, str | None]:
    """Make sure the dashboard has a password; return (username, new password or None).

    When a password is configured (env hash or file) or one was generated before, nothing
    changes and the password part is None. Otherwise a random password is generated, only
    its hash is stored under `data_dir` (mode 0600), and the plaintext is returned so the
    caller can print it once. The dashboard process finds that hash when its
    ``INTERVUE_DASHBOARD_DATA_DIR`` is the same directory."""
    settings = settings or DashboardSettings()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": Path(data_dir)})
    if settings.password_hash is not None or settings.password_file is not None:
        return settings.username, None
    path = generated_hash_path(settings.data_dir)
    if path.exists():
        return settings.username, None
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process generated one just now
        return settings.username, None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(hash_password(password) + "\n")
    log.info("generated a dashboard password; its hash is stored in %s", path)
    return settings.username, password


def oidc_configured(secrets_map: Mapping[str, Any] | None) -> bool:
    """True when Streamlit's secrets have an ``[auth]`` section that st.login can use."""
    try:
        if not secrets_map:
            return False
        auth = secrets_map.get("auth")
    except Exception:  # st.secrets raises when no secrets file exists
        return False
    return isinstance(auth, Mapping) and bool(auth.get("redirect_uri"))


def main(argv: list[str] | None = None) -> int:
    """``python -m dashboard.auth hash [--pbkdf2]``: prompt for a password, print its hash."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "hash":
        print("usage: python -m dashboard.auth hash [--pbkdf2]", file=sys.stderr)
        return 2
    method = "pbkdf2_sha256" if "--pbkdf2" in args else "scrypt"
    if sys.stdin.isatty():
        first = getpass.getpass("dashboard password: ")
        if first != getpass.getpass("again: "):
            print("the passwords differ", file=sys.stderr)
            return 1
    else:
        first = sys.stdin.readline().rstrip("\r\n")
    try:
        print(hash_password(first, method))
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
