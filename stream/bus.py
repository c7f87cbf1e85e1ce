"""The bus client: connecting to NATS, the events stream, and reading sessions back.

Every role talks to NATS through these few functions, so reconnect policy, stream
configuration and the read-back logic live in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import (
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from prometheus_client import CollectorRegistry, start_http_server

from stream import contract
from stream.settings import BusSettings

log = logging.getLogger(__name__)


class BusUnavailableError(ConnectionError):
    """NATS could not be reached (retryable: it may come back)."""

    retryable = True


def auth_options(settings: BusSettings) -> dict:
    """nats-py connect options for the configured auth and TLS (secrets stay in memory)."""
    options: dict = {}
    if settings.nats_user:
        options["user"] = settings.nats_user
        if settings.nats_password is not None:
            options["password"] = settings.nats_password.get_secret_value()
    if settings.nats_creds_file:
        options["user_credentials"] = str(settings.nats_creds_file)
    if settings.nats_nkey_seed_file:
        options["nkeys_seed"] = str(settings.nats_nkey_seed_file)
    if settings.nats_tls_ca_file or settings.nats_tls_cert_file:
        import ssl

        context = ssl.create_default_context(
            cafile=str(settings.nats_tls_ca_file) if settings.nats_tls_ca_file else None
        )
        if settings.nats_tls_cert_file:
            context.load_cert_chain(
                str(settings.nats_tls_cert_file),
                str(settings.nats_tls_key_file) if settings.nats_tls_key_file else None,
            )
        options["tls"] = context
    return options


class BusClient(NATS):
    """A nats-py client that knows when its connection was closed on purpose (`close`,
    `drain`), so the disconnect that follows is not reported as a lost connection."""

    def __init__(self) -> None:
        super().__init__()
        self.closing_on_purpose = False

    async def close(self) -> None:
        self.closing_on_purpose = True
        await super().close()

    async def drain(self) -> None:
        self.closing_on_purpose = True
        await super().drain()


async def connect(
    settings: BusSettings,
    name: str,
    *,
    connect_timeout_s: float = 5.0,
    first_connect_timeout_s: float = 15.0,
) -> BusClient:
    """Connect; once connected, reconnect forever and log (not raise) disconnects,
    reconnects and errors (the client's own `close` or `drain` is no disconnect to warn
    about). The first connection is bounded: a wrong URL or a refused login raises
    `BusUnavailableError` after `first_connect_timeout_s` instead of hanging (nats-py
    would otherwise retry an unreachable server for ever)."""
    last_error: list[Exception] = []
    #: A refused login, kept: the reset connection that follows it is no better reason.
    refused: list[Exception] = []

    async def on_disconnected() -> None:
        # nats-py calls this on every disconnect, our own close() and drain() included
        if nc.closing_on_purpose:
            log.debug("%s: closed the NATS connection", name)
        else:
            log.warning("%s: disconnected from NATS", name)

    async def on_reconnected() -> None:
        log.info("%s: reconnected to NATS at %s", name, nc.connected_url.netloc)

    async def on_error(exc: Exception) -> None:
        last_error[:] = [exc]
        if isinstance(exc, nats.errors.AuthorizationError) or "authorization" in str(exc).lower():
            refused[:] = [exc]
        log.warning("%s: NATS error: %s", name, exc)

    servers = [url.strip() for url in settings.nats_url.split(",") if url.strip()]
    nc = BusClient()
    try:
        await asyncio.wait_for(
            nc.connect(
                **auth_options(settings),
                servers=servers,
                name=name,
                inbox_prefix=settings.nats_inbox_prefix,
                connect_timeout=connect_timeout_s,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
                error_cb=on_error,
                allow_reconnect=True,
            ),
            timeout=first_connect_timeout_s,
        )
    except (nats.errors.NoServersError, OSError, TimeoutError, nats.errors.Error) as exc:
        with contextlib.suppress(Exception):
            await nc.close()
        reason = (refused or last_error or [exc])[0]
        raise BusUnavailableError(
            f"cannot reach NATS at {settings.nats_url}: {reason or type(reason).__name__}"
        ) from exc
    return nc


#: The events stream settings `ensure_events_stream` owns (the rest keep the server's
#: defaults): a stream whose stored values equal these needs no update.
_EVENTS_STREAM_FIELDS = (
    "subjects",
    "retention",
    "storage",
    "max_age",
    "max_bytes",
    "duplicate_window",
    "num_replicas",
)


def _differs(current: StreamConfig, wanted: StreamConfig) -> list[str]:
    """The owned settings where `current` (as the server reports it) is not `wanted`."""

    def norm(value: object) -> object:
        # the server reports "no limit" as 0 where we ask with None
        if value is None:
            return 0
        if isinstance(value, list):
            return sorted(value)
        return value

    return [
        name
        for name in _EVENTS_STREAM_FIELDS
        if norm(getattr(current, name)) != norm(getattr(wanted, name))
    ]


async def ensure_events_stream(js: JetStreamContext, settings: BusSettings) -> None:
    """Create the events stream, or update it where its settings differ from `settings`
    (idempotent; safe for every role to call). An unchanged stream is only read: a role
    whose NATS user may not administer streams (`intervue up`'s locked bus, where `up`
    creates them) then never needs to."""
    config = StreamConfig(
        name=contract.EVENTS_STREAM,
        subjects=[contract.all_events_wildcard()],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=settings.events_max_age_s or None,
        max_bytes=settings.events_max_bytes,
        # A result published twice on a retry is stored once.
        duplicate_window=30.0,
        num_replicas=settings.stream_replicas,
    )
    try:
        info = await js.stream_info(contract.EVENTS_STREAM)
    except NotFoundError:
        await js.add_stream(config=config)
        log.info("created JetStream stream %s", contract.EVENTS_STREAM)
        return
    changed = _differs(info.config, config)
    if not changed:
        return
    try:
        await js.update_stream(config=config)
    except TimeoutError as exc:
        # A request the server refuses for permissions goes unanswered: say why it may
        # be, and serve with the stream as it is rather than not at all.
        log.warning(
            "could not update %s (%s differ from this role's settings): %s; is this NATS "
            "user allowed to administer streams? Serving with the stream as it is",
            contract.EVENTS_STREAM,
            ", ".join(changed),
            type(exc).__name__,
        )
        return
    log.info("updated JetStream stream %s (%s)", contract.EVENTS_STREAM, ", ".join(changed))


async def ensure_key_value(
    js: JetStreamContext, settings: BusSettings, bucket: str, description: str, ttl_s: float
) -> KeyValue:
    """Key-value `bucket` (one value per key, entries expiring `ttl_s` after their last
    write), created if missing: idempotent, its settings are the creator's."""
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        kv = await js.create_key_value(
            bucket=bucket,
            description=description,
            history=1,
            ttl=ttl_s,
            replicas=settings.stream_replicas,
        )
        log.info("created JetStream key-value bucket %s", bucket)
        return kv


async def ensure_utterances_stream(
    js: JetStreamContext, settings: BusSettings | None = None
) -> None:
    """Create the utterances work queue if missing (idempotent). Work-queue retention: a
    message leaves the stream when a speech worker acknowledges it, so an utterance whose
    worker died is redelivered to another one, and none is lost."""
    config = StreamConfig(
        name=contract.UTTERANCES_STREAM,
        subjects=[contract.utterances_wildcard()],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        # Unanswered audio is worthless after a day; a cap keeps a dead fleet from
        # filling the disk.
        max_age=24 * 3600.0,
        num_replicas=settings.stream_replicas if settings else 1,
    )
    try:
        await js.stream_info(contract.UTTERANCES_STREAM)
    except NotFoundError:
        await js.add_stream(config=config)
        log.info("created JetStream work queue %s", contract.UTTERANCES_STREAM)


async def publish_event(js: JetStreamContext, message: contract.BusMessage, kind: str) -> None:
    """Persist one event on the events stream (waits for JetStream's acknowledgement)."""
    await js.publish(contract.event_subject(message.session, kind), contract.encode(message))


@dataclass
class StoredEvent:
    """An event read back from JetStream."""

    seq: int
    subject: str
    message: contract.BusMessage | None
    #: Set when the stored payload does not decode (kept so exports show it, not hide it).
    error: str = ""

    def to_json(self) -> dict:
        data: dict = {"stream_seq": self.seq, "subject": self.subject}
        if self.message is not None:
            data.update(contract.to_builtins(self.message))
        else:
            data["error"] = self.error
        return data


async def subject_counts(js: JetStreamContext, subject_filter: str) -> dict[str, int]:
    """Stored events per subject matching `subject_filter` (one stream-info request)."""
    return await _count(js, subject_filter)


async def _count(js: JetStreamContext, subject_filter: str) -> dict[str, int]:
    try:
        info = await js.stream_info(contract.EVENTS_STREAM, subjects_filter=subject_filter)
    except NotFoundError:
        return {}
    return dict(info.state.subjects or {})


async def read_events(
    js: JetStreamContext,
    subject_filter: str,
    *,
    idle_timeout_s: float = 2.0,
    since_ms: float | None = None,
) -> list[StoredEvent]:
    """Every stored event matching `subject_filter`, in stream order; with `since_ms`
    (Unix milliseconds) only those the server stored at or after that time (JetStream's
    own timestamp, not a message's `at_ms`)."""
    counts = await _count(js, subject_filter)
    if not counts:
        return []
    events: list[StoredEvent] = []
    if since_ms is None:
        start = {"deliver_policy": DeliverPolicy.ALL}
    else:
        when = datetime.datetime.fromtimestamp(since_ms / 1000.0, datetime.UTC)
        start = {
            "config": ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_TIME,
                opt_start_time=when.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            )
        }
    sub = await js.subscribe(
        subject_filter, stream=contract.EVENTS_STREAM, ordered_consumer=True, **start
    )
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=idle_timeout_s)
            except TimeoutError:
                break
            try:
                message = contract.decode(msg.data)
                events.append(StoredEvent(msg.metadata.sequence.stream, msg.subject, message))
            except contract.ContractError as exc:
                events.append(
                    StoredEvent(msg.metadata.sequence.stream, msg.subject, None, str(exc))
                )
            if msg.metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return events


@dataclass
class SessionSummary:
    """One session as `intervue session list` shows it."""

    session: str
    status: str  # "live" | "ended" | "unknown"; `intervue session list` adds "gone"
    started_ms: float | None = None
    ended_ms: float | None = None
    events: int = 0
    reason: str = ""
    stats: dict[str, float] = field(default_factory=dict)


async def list_sessions(js: JetStreamContext) -> list[SessionSummary]:
    """Sessions that have lifecycle events, newest first."""
    per_subject = await _count(js, contract.all_events_wildcard())
    totals: dict[str, int] = {}
    for subject, count in per_subject.items():
        session = contract.session_from_subject(subject)
        totals[session] = totals.get(session, 0) + count
    summaries: list[SessionSummary] = []
    for session, count in totals.items():
        summary = SessionSummary(session=session, status="unknown", events=count)
        lifecycle = [
            e.message
            for e in await read_events(js, contract.event_subject(session, "lifecycle"))
            if isinstance(e.message, contract.SessionEvent)
        ]
        for event in lifecycle:
            if event.event == "started":
                summary.started_ms = event.at_ms
                summary.status = "live"
            elif event.event == "ended":
                summary.ended_ms = event.at_ms
                summary.status = "ended"
                summary.reason = event.reason
                summary.stats = dict(event.stats)
        summaries.append(summary)
    summaries.sort(key=lambda s: s.started_ms or 0.0, reverse=True)
    return summaries


class Role(Protocol):
    """A long-running bus role (vision worker, speech worker, interviewer)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


async def serve(
    settings: BusSettings,
    name: str,
    make_role: Callable[[NATS], Role],
    *,
    registry: CollectorRegistry | None = None,
    metrics_port: int = 0,
) -> None:
    """Run one role until cancelled: metrics endpoint (if a port is given), connect,
    start, wait; then stop the role and drain the connection (in-flight acks go out)."""
    if metrics_port and registry is not None:
        start_http_server(metrics_port, registry=registry)
    nc = await connect(settings, name)
    role = make_role(nc)
    await role.start()
    try:
        await asyncio.Event().wait()
    finally:
        await role.stop()
        await nc.drain()
        log.info("%s stopped", name)


async def wait_for_server(settings: BusSettings, timeout_s: float = 10.0) -> None:
    """Block until a NATS server with JetStream answers at `settings.nats_url`."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    last: Exception | None = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            nc = await connect(
                settings, "intervue-probe", connect_timeout_s=1.0, first_connect_timeout_s=1.0
            )
        except BusUnavailableError as exc:
            last = exc
            await asyncio.sleep(0.1)
            continue
        try:
            await nc.jetstream().account_info()
            return
        except Exception as exc:  # JetStream not ready yet
            last = exc
            await asyncio.sleep(0.1)
        finally:
            await nc.close()
    raise BusUnavailableError(f"NATS at {settings.nats_url} not ready after {timeout_s}s: {last}")
