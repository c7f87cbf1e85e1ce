"""The locked bus of `intervue up`: one NATS user per role, with permissions.

`intervue up` generates fresh random credentials for every role at each start, writes a
nats-server config with those users (`server_config`) and a credentials file for the
command line (`write_credentials_file`), both mode 0600 in its data directory, and gives
each child only its own role's user (`role_env`). `intervue session list` / `export` (and
a role started by hand in another terminal) find their user in that file when no
``INTERVUE_NATS_*`` credentials are set and they dial the URL `up` serves on
(`local_bus_settings`).

What each role may do is derived from the bus contract (`stream.contract`): the event
kinds it publishes (`EVENT_PUBLISHERS`), the core subjects and JetStream consumers it uses.
No role but ``admin`` (`up` itself, and the command line) may create, update, delete or
purge a stream or delete a message or a consumer; each role receives replies only on its
own inbox prefix, so none can listen to another's JetStream deliveries (the speech
workers' pulls carry raw audio).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
import typing
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from stream import contract
from stream.settings import BusSettings

log = logging.getLogger(__name__)

#: The roles that connect to up's NATS. ``admin`` is `up` itself (it creates the
#: streams) and the command line (`intervue session …`): the machine's owner.
ROLES: tuple[str, ...] = ("gateway", "vision", "speech", "interviewer", "dashboard", "admin")

#: Who publishes each kind of session event (`contract.EventKind`): exactly one role each,
#: so a role cannot forge another's events (a dashboard user cannot fake a question, an
#: evaluation or a session's end). The dashboard's one kind is the interviewer's
#: follow-up question (`InterviewCommand`), which it legitimately sends.
EVENT_PUBLISHERS: dict[str, str] = {
    "emotion": "vision",
    "score": "gateway",
    "lifecycle": "gateway",
    "profile": "gateway",
    "speech": "gateway",
    "turn": "gateway",
    "request": "gateway",
    "transcript": "speech",
    "interview": "interviewer",
    "progress": "interviewer",
    "command": "dashboard",
}

#: Names of the files `up` writes in its data directory.
CONFIG_FILE = "nats-server.conf"
CREDENTIALS_FILE = "nats-credentials.json"

#: What no role but admin may ask JetStream: listed explicitly (besides not being allowed)
#: so a wider allow entry added later cannot let them through.
DESTRUCTIVE_JS_API: tuple[str, ...] = (
    "$JS.API.STREAM.CREATE.>",
    "$JS.API.STREAM.UPDATE.>",
    "$JS.API.STREAM.DELETE.>",
    "$JS.API.STREAM.PURGE.>",
    "$JS.API.STREAM.MSG.DELETE.>",
    "$JS.API.CONSUMER.DELETE.>",
)


def _js_api(*tokens: str) -> str:
    return ".".join(("$JS.API", *tokens))


def _consumer_admin(stream: str, consumer: str) -> list[str]:
    """Create/update, inspect and pull from one durable consumer, and acknowledge its
    messages (every subject nats-py uses for that, old servers' included)."""
    return [
        _js_api("CONSUMER", "CREATE", stream, consumer),
        _js_api("CONSUMER", "CREATE", stream, consumer, ">"),  # … with its filter subject
        _js_api("CONSUMER", "DURABLE", "CREATE", stream, consumer),  # nats-server < 2.9
        _js_api("CONSUMER", "INFO", stream, consumer),
        _js_api("CONSUMER", "MSG", "NEXT", stream, consumer),
        f"$JS.ACK.{stream}.{consumer}.>",
    ]


def _events_reader() -> list[str]:
    """Read the events stream back: its info (with per-subject counts) and ephemeral
    ordered consumers (nats-py creates them unnamed; their flow control is answered)."""
    return [
        _js_api("STREAM", "INFO", contract.EVENTS_STREAM),
        _js_api("CONSUMER", "CREATE", contract.EVENTS_STREAM),
        f"$JS.FC.{contract.EVENTS_STREAM}.>",
    ]


def _invitations_ledger() -> list[str]:
    """Read and write the invitations key-value bucket (uses and revocations, by nonce):
    look the bucket up, get a record (direct or through the stream), create/update one."""
    stream = f"KV_{contract.INVITATIONS_BUCKET}"
    return [
        _js_api("STREAM", "INFO", stream),
        _js_api("DIRECT", "GET", stream, ">"),
        _js_api("STREAM", "MSG", "GET", stream),
        f"$KV.{contract.INVITATIONS_BUCKET}.>",
    ]


def _presence(write: bool) -> list[str]:
    """Look the presence bucket up and read a session's key (`stream.presence`); with
    `write`, put and delete keys too (gateways)."""
    stream = f"KV_{contract.PRESENCE_BUCKET}"
    subjects = [
        _js_api("STREAM", "INFO", stream),
        _js_api("DIRECT", "GET", stream, ">"),
        _js_api("STREAM", "MSG", "GET", stream),
    ]
    return [*subjects, f"$KV.{contract.PRESENCE_BUCKET}.>"] if write else subjects


def _events_of(role: str) -> list[str]:
    return [
        contract.event_subject("*", kind)  # type: ignore[arg-type]
        for kind, publisher in EVENT_PUBLISHERS.items()
        if publisher == role
    ]


def inbox_prefix(role: str) -> str:
    """The reply-subject prefix of `role`'s clients (`BusSettings.nats_inbox_prefix`)."""
    return f"_INBOX_{role}"


def role_permissions(role: str) -> dict | None:
    """nats-server permissions of `role` (None for admin: everything)."""
    if role == "admin":
        return None
    if role == "gateway":
        publish = [
            *_events_of(role),
            contract.frames_subject("*"),
            contract.utterances_subject("*"),
            _js_api("STREAM", "INFO", contract.UTTERANCES_STREAM),
            *_events_reader(),  # a reloaded page's session is replayed from the stream
            *_invitations_ledger(),
            *_presence(write=True),
        ]
        subscribe = [contract.session_events_wildcard("*")]  # results for live sessions
    elif role == "vision":
        publish = [*_events_of(role), _js_api("STREAM", "INFO", contract.EVENTS_STREAM)]
        subscribe = [contract.frames_wildcard()]
    elif role == "speech":
        publish = [
            *_events_of(role),
            _js_api("STREAM", "INFO", contract.EVENTS_STREAM),
            _js_api("STREAM", "INFO", contract.UTTERANCES_STREAM),
            *_consumer_admin(contract.UTTERANCES_STREAM, contract.SPEECH_CONSUMER),
        ]
        subscribe = [
            # the server's word that an utterance was given up on (max_deliver)
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES."
            f"{contract.UTTERANCES_STREAM}.{contract.SPEECH_CONSUMER}"
        ]
    elif role == "interviewer":
        publish = [
            *_events_of(role),
            *_events_reader(),  # sessions are rebuilt from the stream
            *_consumer_admin(contract.EVENTS_STREAM, contract.INTERVIEWER_CONSUMER),
            *_presence(write=False),  # is the candidate of an old event still there?
        ]
        subscribe = []
    elif role == "dashboard":
        publish = [*_events_of(role), *_events_reader()]
        subscribe = []
    else:
        raise ValueError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    return {
        "publish": {"allow": publish, "deny": list(DESTRUCTIVE_JS_API)},
        "subscribe": {"allow": [*subscribe, f"{inbox_prefix(role)}.>"]},
    }


@dataclass(frozen=True)
class RoleCredentials:
    """One role's NATS user on up's server. The password is never logged or printed."""

    role: str
    user: str
    password: SecretStr

    @property
    def inbox_prefix(self) -> str:
        return inbox_prefix(self.role)


def generate_credentials() -> dict[str, RoleCredentials]:
    """Fresh credentials for every role: 256 random bits of password each."""
    return {
        role: RoleCredentials(role, f"intervue-{role}", SecretStr(secrets.token_urlsafe(32)))
        for role in ROLES
    }


def server_config(credentials: dict[str, RoleCredentials]) -> str:
    """The nats-server config: JetStream, and only these users (anonymous clients are
    refused once users exist). Store, address and port come from the command line.
    Written as JSON, which nats-server's config format accepts, so no value needs
    escaping by hand."""
    users = []
    for creds in credentials.values():
        user: dict = {"user": creds.user, "password": creds.password.get_secret_value()}
        permissions = role_permissions(creds.role)
        if permissions is not None:
            user["permissions"] = permissions
        users.append(user)
    config = {"jetstream": {}, "authorization": {"users": users}}
    return json.dumps(config, indent=2) + "\n"


def write_private(path: Path, text: str) -> Path:
    """Write `text` to `path`, readable by its owner only (0600) from the first byte: a
    temporary file created 0600, then renamed over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o600)  # a leftover temp file from a crash may have been reused
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_credentials_file(path: Path, url: str, credentials: dict[str, RoleCredentials]) -> Path:
    """The file the command line reads to reach up's server (0600)."""
    document = {
        "note": "written by `intervue up` at each start; do not share",
        "url": url,
        "users": {
            role: {
                "user": creds.user,
                "password": creds.password.get_secret_value(),
                "inbox_prefix": creds.inbox_prefix,
            }
            for role, creds in credentials.items()
        },
    }
    return write_private(path, json.dumps(document, indent=2) + "\n")


def role_env(creds: RoleCredentials) -> dict[str, str]:
    """The ``INTERVUE_NATS_*`` variables of one child of `up` (BusSettings reads them)."""
    return {
        "INTERVUE_NATS_USER": creds.user,
        "INTERVUE_NATS_PASSWORD": creds.password.get_secret_value(),
        "INTERVUE_NATS_INBOX_PREFIX": creds.inbox_prefix,
    }


#: Variables that would add another identity to a child's connection (a JWT or an nkey
#: meant for an external server): removed from the children of a locked `up`.
FOREIGN_AUTH_ENV = ("INTERVUE_NATS_CREDS_FILE", "INTERVUE_NATS_NKEY_SEED_FILE")


def _same_url(a: str, b: str) -> bool:
    def norm(url: str) -> list[str]:
        return [u.strip().rstrip("/") for u in url.split(",") if u.strip()]

    return norm(a) == norm(b)


def local_bus_settings(settings: BusSettings, role: str, data_dir: Path) -> BusSettings:
    """`settings`, with `role`'s user from the credentials file of an `intervue up` on
    this machine (`data_dir`: `deploy.up.up_data_dir()`, passed in because `up` sits above
    this module) when no credentials are configured and `settings` dials the URL that
    `up` serves on; `settings` unchanged otherwise.

    The file is used only if it belongs to this user and nobody else may read or write
    it (as `up` writes it), so another local account cannot plant one."""
    if settings.nats_user or settings.nats_creds_file or settings.nats_nkey_seed_file:
        return settings
    path = data_dir / CREDENTIALS_FILE
    try:
        info = path.stat()
    except OSError:
        return settings
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        log.warning("ignoring %s: it must belong to you and be readable by you only (0600)", path)
        return settings
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        url = document["url"]
        entry = document["users"][role]
        user, password, prefix = entry["user"], entry["password"], entry["inbox_prefix"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring %s: unreadable (%s)", path, type(exc).__name__)
        return settings
    if not _same_url(url, settings.nats_url):
        return settings
    log.debug("using the %s credentials of intervue up from %s", role, path)
    return settings.model_copy(
        update={
            "nats_user": user,
            "nats_password": SecretStr(password),
            "nats_inbox_prefix": prefix,
        }
    )


def event_kinds() -> tuple[str, ...]:
    """Every kind of session event the contract names (for checks of the table above)."""
    return typing.get_args(contract.EventKind)
