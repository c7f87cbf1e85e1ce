"""A live, in-memory copy of the events stream, kept up to date by a background thread.

`EventStore` runs its own asyncio loop and NATS connection in a daemon thread. It follows
every subject of ``INTERVUE_EVENTS`` with an ordered consumer from the start of the stream
(deliver all), decodes each message once, and files it under its session. Readers (the
Streamlit script threads) take cheap snapshots under a lock.

Memory stays bounded by the live and recent sessions: a session that ended more than
`archive_after_s` ago (or that never ended — its gateway died — and has been silent for
twice that, at least an hour) is *archived* — its per-frame events (emotion results, score
updates but the last) leave memory, the rest (lifecycle, profile, questions, transcripts,
evaluations, report: what the overview needs) stays. `full_events` reads an archived
session back from JetStream when someone opens it (a few are kept, least recently used
first out). Sessions that ended longer ago than the stream keeps events
(`INTERVUE_EVENTS_MAX_AGE_S`) are forgotten, as JetStream forgets them. Ages are taken
from JetStream's own storage times and the messages' times, never from when this process
happened to read them, so a restarted dashboard treats old sessions as old.

When NATS or JetStream goes away the store says so (`status().state == "unavailable"`),
keeps what it has, reconnects with backoff and resumes after the last stream sequence it
saw. A stream that was recreated (its sequence numbers went backwards) is read again from
the start. Messages that do not decode are kept as `StoredEvent(message=None)` and counted.

The dashboard app creates one store per NATS URL through ``st.cache_resource``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client as NATS
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from stream import bus, contract
from stream.bus import StoredEvent
from stream.settings import BusSettings

log = logging.getLogger(__name__)

#: Event kinds that come with every analysed frame: what archiving drops from memory.
PER_FRAME_KINDS = frozenset({"emotion", "score"})


@dataclass
class StoreStatus:
    state: str  # "connecting" | "ok" | "no-stream" | "unavailable"
    detail: str = ""
    since: float = field(default_factory=time.time)  # wall-clock seconds of the last change
    last_ok: float | None = None
    events: int = 0
    malformed: int = 0
    last_seq: int = 0
    sessions: int = 0

    @property
    def available(self) -> bool:
        return self.state in ("ok", "no-stream")


@dataclass
class SessionLog:
    session: str
    events: list[StoredEvent] = field(default_factory=list)
    version: int = 0  # bumped on every change
    malformed: int = 0
    last_wall: float = 0.0  # when the store last received an event for it (wall clock)
    count: int = 0  # events received, including those archiving dropped from memory
    ended_at_ms: float | None = None  # the lifecycle "ended" event's time
    last_event_s: float = 0.0  # JetStream's storage time of its newest event (epoch s)
    archived: bool = False  # per-frame events dropped; `EventStore.full_events` reads them


class EventStore:
    """Follows the events stream into memory; thread-safe snapshots for the app."""

    def __init__(
        self,
        bus_settings: BusSettings,
        *,
        name: str = "intervue-dashboard",
        probe_every_s: float = 2.0,
        max_backoff_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        archive_after_s: float = 1800.0,
        keep_loaded: int = 4,
    ) -> None:
        self.bus_settings = bus_settings
        self.name = name
        self.probe_every_s = probe_every_s
        self.max_backoff_s = max_backoff_s
        self._clock = clock
        self.archive_after_s = archive_after_s
        #: Ended sessions older than this are forgotten (0: never), like the stream does.
        self.forget_after_s = bus_settings.events_max_age_s
        self.keep_loaded = max(1, keep_loaded)
        self._lock = threading.Lock()
        self._sessions: dict[str, SessionLog] = {}
        self._loaded: OrderedDict[str, tuple[int, list[StoredEvent]]] = OrderedDict()
        self._last_archive_pass = 0.0
        self._status = StoreStatus("connecting", "connecting to NATS")
        self._last_seq = 0
        self._events = 0
        self._malformed = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nc: NATS | None = None
        self._js: Any = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake: asyncio.Event | None = None  # set on stop (lives in the store's loop)
        self._ready = threading.Event()
        self._caught_up = threading.Event()

    # ---- lifecycle --------------------------------------------------------------------

    def start(self) -> EventStore:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._thread_main, name=self.name, daemon=True)
        self._thread.start()
        self._ready.wait(5.0)
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stopping.set()
        loop = self._loop
        if loop is not None and loop.is_running():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake_up)
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def wait_caught_up(self, timeout_s: float = 10.0) -> bool:
        """Block until the store has read what the stream held when it (re)connected."""
        return self._caught_up.wait(timeout_s)

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._ready.set()
        try:
            loop.run_until_complete(self._run())
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    # ---- reading ----------------------------------------------------------------------

    def status(self) -> StoreStatus:
        with self._lock:
            s = self._status
            return StoreStatus(
                s.state,
                s.detail,
                s.since,
                s.last_ok,
                self._events,
                self._malformed,
                self._last_seq,
                len(self._sessions),
            )

    def sessions(self) -> dict[str, tuple[int, float]]:
        """Every session the store knows: id → (version, wall time of its last event)."""
        with self._lock:
            return {k: (v.version, v.last_wall) for k, v in self._sessions.items()}

    def version(self, session: str) -> int:
        """A number that changes whenever the session's events change (0: unknown)."""
        with self._lock:
            entry = self._sessions.get(session)
            return entry.version if entry is not None else 0

    def wait_for_events(self, session: str, count: int, timeout_s: float = 10.0) -> bool:
        """Block until the store holds at least `count` events of `session` (for tests and
        scripts; the app never waits)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                entry = self._sessions.get(session)
                if entry is not None and len(entry.events) >= count:
                    return True
            time.sleep(0.05)
        return False

    def events(self, session: str) -> tuple[int, list[StoredEvent]]:
        """A session's events in stream order (a copy) and its version: all of them, or for
        an archived session those kept in memory (no per-frame events but its last score)."""
        with self._lock:
            log_ = self._sessions.get(session)
            if log_ is None:
                return 0, []
            return log_.version, list(log_.events)

    def archived(self, session: str) -> bool:
        with self._lock:
            entry = self._sessions.get(session)
            return entry is not None and entry.archived

    def event_count(self, session: str) -> int:
        """Events received for the session, archived ones included."""
        with self._lock:
            entry = self._sessions.get(session)
            return entry.count if entry is not None else 0

    def full_events(self, session: str, timeout_s: float = 10.0) -> tuple[int, list[StoredEvent]]:
        """Every event of the session: from memory, or for an archived session read back
        from JetStream (blocking; raises `bus.BusUnavailableError` when it cannot be)."""
        with self._lock:
            entry = self._sessions.get(session)
            if entry is None:
                return 0, []
            if not entry.archived:
                return entry.version, list(entry.events)
            version = entry.version
            hit = self._loaded.get(session)
            if hit is not None and hit[0] == version:
                self._loaded.move_to_end(session)
                return hit
        loop, js = self._loop, self._js
        if loop is None or js is None or not self.status().available:
            raise bus.BusUnavailableError("JetStream is unavailable; try again when it is back")
        read = bus.read_events(js, contract.session_events_wildcard(session), idle_timeout_s=2.0)
        future = asyncio.run_coroutine_threadsafe(read, loop)
        try:
            events = future.result(timeout_s)
        except Exception as exc:
            future.cancel()
            raise bus.BusUnavailableError(f"could not read the session back: {exc}") from exc
        with self._lock:
            self._loaded[session] = (version, events)
            self._loaded.move_to_end(session)
            while len(self._loaded) > self.keep_loaded:
                self._loaded.popitem(last=False)
        return version, events

    def archive_pass(self) -> None:
        """Archive sessions that ended `archive_after_s` ago; forget those the stream no
        longer keeps. Runs in the follower every few seconds; tests call it directly."""
        now = self._clock()
        abandoned_after_s = max(2 * self.archive_after_s, 3600.0)
        with self._lock:
            for session, entry in list(self._sessions.items()):
                ended_s = entry.ended_at_ms / 1000.0 if entry.ended_at_ms is not None else None
                last_s = max(entry.last_event_s, ended_s or 0.0)
                if self.forget_after_s and now - last_s > self.forget_after_s:
                    del self._sessions[session]
                    self._loaded.pop(session, None)
                elif entry.archived:
                    continue
                elif ended_s is not None and now - ended_s >= self.archive_after_s:
                    _archive(entry)
                elif ended_s is None and now - last_s >= abandoned_after_s:
                    _archive(entry)  # no end will come: its gateway died with it

    # ---- publishing (from other threads) ----------------------------------------------

    def publish(self, message: contract.BusMessage, kind: str, timeout_s: float = 5.0) -> None:
        """Persist one event on the stream; raises `bus.BusUnavailableError` when it cannot."""
        loop, js = self._loop, self._js
        if loop is None or js is None or not self.status().available:
            raise bus.BusUnavailableError("JetStream is unavailable; try again when it is back")
        future = asyncio.run_coroutine_threadsafe(bus.publish_event(js, message, kind), loop)
        try:
            future.result(timeout_s)
        except Exception as exc:
            future.cancel()
            raise bus.BusUnavailableError(f"could not publish to JetStream: {exc}") from exc

    # ---- the follower -----------------------------------------------------------------

    def _set_status(self, state: str, detail: str = "") -> None:
        with self._lock:
            changed = self._status.state != state
            if changed or self._status.detail != detail:
                since = self._clock() if changed else self._status.since
                self._status = StoreStatus(state, detail, since, self._status.last_ok)
            if state in ("ok", "no-stream"):
                self._status.last_ok = self._clock()
        if changed and state == "unavailable":
            log.warning("dashboard store: JetStream unavailable: %s", detail)
        elif changed and state == "ok":
            log.info("dashboard store: following %s", contract.EVENTS_STREAM)

    async def _run(self) -> None:
        backoff = 0.25
        while not self._stopping.is_set():
            nc = None
            # nats-py keeps trying an unreachable server; say so after a short while.
            watchdog = asyncio.get_running_loop().call_later(
                2.5,
                self._set_status,
                "unavailable",
                f"cannot reach NATS at {self.bus_settings.nats_url}",
            )
            try:
                nc = await bus.connect(self.bus_settings, self.name, connect_timeout_s=2.0)
                watchdog.cancel()
                self._nc = nc
                await self._follow(nc)
                backoff = 0.25
            except Exception as exc:
                watchdog.cancel()
                self._caught_up.clear()
                self._js = None
                self._set_status("unavailable", _describe(exc))
            finally:
                self._js = None
                if nc is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(nc.close(), 2.0)
                self._nc = None
            if self._stopping.is_set():
                break
            await self._sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)

    async def _sleep(self, seconds: float) -> None:
        if self._wake is None:
            self._wake = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _follow(self, nc: NATS) -> None:
        js = nc.jetstream(timeout=3.0)
        # Wait for the stream (a fresh server has none until a role creates it).
        while True:
            try:
                info = await js.stream_info(contract.EVENTS_STREAM)
                break
            except NotFoundError:
                self._js = js
                self._set_status("no-stream", "the events stream does not exist yet")
                self._caught_up.set()
                await self._sleep(self.probe_every_s)
                if self._stopping.is_set():
                    return
                if not nc.is_connected:
                    raise bus.BusUnavailableError("disconnected from NATS") from None
        last_in_stream = info.state.last_seq
        if last_in_stream < self._last_seq:
            log.warning(
                "the events stream was recreated (last seq %d < %d seen); reading it again",
                last_in_stream,
                self._last_seq,
            )
            self._reset()
        if self._last_seq:
            sub = await js.subscribe(
                contract.all_events_wildcard(),
                stream=contract.EVENTS_STREAM,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self._last_seq + 1,
            )
        else:
            sub = await js.subscribe(
                contract.all_events_wildcard(),
                stream=contract.EVENTS_STREAM,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.ALL,
            )
        self._js = js
        self._set_status("ok")
        if self._last_seq >= last_in_stream:
            self._caught_up.set()
        last_probe = time.monotonic()
        try:
            while not self._stopping.is_set():
                try:
                    msg = await sub.next_msg(timeout=0.5)
                except TimeoutError:
                    msg = None
                if time.monotonic() - self._last_archive_pass >= self.probe_every_s:
                    self._last_archive_pass = time.monotonic()
                    self.archive_pass()
                if msg is None:
                    if not nc.is_connected:
                        raise bus.BusUnavailableError("disconnected from NATS")
                    if time.monotonic() - last_probe >= self.probe_every_s:
                        info = await js.stream_info(contract.EVENTS_STREAM)
                        last_probe = time.monotonic()
                        if info.state.last_seq < self._last_seq:
                            raise bus.BusUnavailableError("the events stream was recreated")
                        self._set_status("ok")
                    continue
                meta = msg.metadata
                self._ingest(
                    meta.sequence.stream, msg.subject, msg.data, meta.timestamp.timestamp()
                )
                if meta.num_pending == 0 or self._last_seq >= last_in_stream:
                    self._caught_up.set()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sub.unsubscribe(), 1.0)

    def _reset(self) -> None:
        with self._lock:
            self._sessions.clear()
            self._loaded.clear()
            self._last_seq = 0
            self._events = 0
            self._malformed = 0

    def _ingest(self, seq: int, subject: str, data: bytes, stored_s: float | None = None) -> None:
        try:
            session = contract.session_from_subject(subject)
        except contract.ContractError:
            session = "_unknown"
        try:
            message: contract.BusMessage | None = contract.decode(data)
            error = ""
        except contract.ContractError as exc:
            message, error = None, str(exc)
        event = StoredEvent(seq, subject, message, error)
        with self._lock:
            if seq <= self._last_seq:
                return  # delivered again after a reconnect
            self._last_seq = seq
            self._events += 1
            entry = self._sessions.get(session)
            if entry is None:
                entry = self._sessions[session] = SessionLog(session)
            kind = subject.rsplit(".", 1)[-1]
            if entry.archived and kind in PER_FRAME_KINDS:
                # late per-frame events of an archived session: only a newer score stays
                if kind == "score":
                    entry.events = [e for e in entry.events if _kind(e) != "score"] + [event]
            else:
                entry.events.append(event)
            entry.count += 1
            entry.version += 1
            entry.last_wall = self._clock()
            entry.last_event_s = max(entry.last_event_s, stored_s or entry.last_wall)
            if isinstance(message, contract.SessionEvent) and message.event == "ended":
                entry.ended_at_ms = message.at_ms
                # replaying a stream of old sessions: archive each as it ends, so memory
                # never holds them all at once
                if (self._clock() * 1000.0 - message.at_ms) / 1000.0 >= self.archive_after_s:
                    _archive(entry)
            if message is None:
                entry.malformed += 1
                self._malformed += 1


def _kind(event: StoredEvent) -> str:
    return event.subject.rsplit(".", 1)[-1]


def _archive(entry: SessionLog) -> None:
    """Drop the per-frame events of `entry` from memory but its last score (caller holds
    the lock)."""
    scores = [e for e in entry.events if _kind(e) == "score"]
    kept = [e for e in entry.events if _kind(e) not in PER_FRAME_KINDS]
    entry.events = sorted(kept + scores[-1:], key=lambda e: e.seq)
    entry.archived = True
    entry.version += 1


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        text = "JetStream did not answer in time"
    return text[:300]


_shared: dict[str, EventStore] = {}
_shared_lock = threading.Lock()


def shared_store(
    nats_url: str, *, archive_after_s: float = 1800.0, keep_loaded: int = 4
) -> EventStore:
    """The process's one started store for a NATS URL (what the app's cached resource
    returns; tests reach the same instance through here). The archive settings apply when
    the store is created."""
    with _shared_lock:
        store = _shared.get(nats_url)
        if store is None or not store.running:
            store = _shared[nats_url] = EventStore(
                BusSettings(nats_url=nats_url),
                archive_after_s=archive_after_s,
                keep_loaded=keep_loaded,
            ).start()
        return store
