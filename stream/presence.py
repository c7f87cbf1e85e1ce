"""Which sessions a live gateway holds: a JetStream key-value bucket.

A session lives in one gateway's memory. When that gateway stops cleanly each session
publishes its ``ended`` lifecycle event, but a gateway that crashes (or a machine that
loses power) ends nothing: its sessions stay "started" on the bus forever, and an
interviewer reading a backlog would spend a language model's minutes on questions and
evaluations nobody will see.

So each gateway writes, under `contract.PRESENCE_BUCKET`, one key per session it holds
(the session id; its value the gateway's name) when the session is made and every
`REFRESH_S` after, and deletes it when the session ends. The bucket's entries expire
after `TTL_S`, so the sessions of a gateway that died are gone from it within that time.
A detached session (its page reloading) is still held, so still present.

The interviewer asks `session_present` before a step whose event has waited longer
than its ``presence_after_s``: an event that fresh comes from a candidate who was there a
moment ago (and a gateway writes the key before it publishes anything of the session).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from stream import bus, contract
from stream.settings import BusSettings

log = logging.getLogger(__name__)

#: How long a key outlives its last refresh (seconds): the bucket's max age.
TTL_S = 30.0
#: How often a gateway rewrites the keys of the sessions it holds (seconds).
REFRESH_S = 10.0


async def ensure_presence_bucket(
    js: JetStreamContext, settings: BusSettings, ttl_s: float = TTL_S
) -> KeyValue:
    """The presence bucket, created if missing (idempotent; `intervue up` makes it as the
    bus's admin, a gateway on an open bus makes it itself). `ttl_s`: for tests."""
    return await bus.ensure_key_value(
        js,
        settings,
        contract.PRESENCE_BUCKET,
        "intervue sessions held by a live gateway, by session id",
        ttl_s,
    )


class PresenceBoard:
    """A gateway's side: marks the sessions it holds, refreshes them, unmarks ended ones.
    Failures are logged, never raised: presence only spares the interviewer's work, and
    a bus hiccup must not touch a live session."""

    def __init__(self, kv: KeyValue, holder: str) -> None:
        self.kv = kv
        self.holder = holder.encode()
        self._task: asyncio.Task | None = None
        self._unmarking: set[asyncio.Task] = set()

    async def mark(self, session: str) -> None:
        try:
            await self.kv.put(session, self.holder)
        except Exception as exc:
            log.warning("could not mark session %s present: %s", session, exc)

    async def unmark(self, session: str) -> None:
        try:
            await self.kv.delete(session)
        except Exception as exc:  # it expires after TTL_S anyway
            log.debug("could not unmark session %s: %s", session, exc)

    def forget(self, session: str) -> None:
        """`unmark` from synchronous code (a session's close callback); `stop` waits for it."""
        task = asyncio.get_running_loop().create_task(self.unmark(session))
        self._unmarking.add(task)
        task.add_done_callback(self._unmarking.discard)

    def start(self, held: Callable[[], Iterable[str]], every_s: float = REFRESH_S) -> None:
        """Refresh the keys of the sessions `held()` names every `every_s`."""
        self._task = asyncio.create_task(self._refresh(held, every_s), name="presence")

    async def _refresh(self, held: Callable[[], Iterable[str]], every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            for session in list(held()):
                await self.mark(session)

    async def stop(self) -> None:
        """Stop refreshing; wait for the ended sessions' keys to be deleted."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await asyncio.gather(*self._unmarking, return_exceptions=True)


async def session_present(js: JetStreamContext, session: str) -> bool | None:
    """Whether a live gateway holds `session`; None when no gateway keeps presence on this
    bus (no bucket: an older deployment), so nothing can be told."""
    try:
        kv = await js.key_value(contract.PRESENCE_BUCKET)
    except BucketNotFoundError:
        return None
    try:
        entry = await kv.get(session)
    except KeyNotFoundError:  # never marked, deleted at its end, or expired
        return False
    return entry.value is not None
