"""Login throttling for the dashboard (pure logic; the clock is injected).

Three limits, all checked before any password is:

- **per account** (the user name as typed, case-folded) and **per client address**: each
  counts consecutive failed logins; the `max_failures`-th starts a lockout of
  `lockout_s`, and every further lockout of the same key doubles it, up to
  `max_lockout_s` (exponential backoff). A key left alone for `forget_after_s` after its
  last failure is forgotten, and its backoff starts over. A successful login forgets the
  address and resets the account's count (not its backoff level);
- **globally**: at most `global_max_failures` failed logins in any `global_window_s`,
  whoever sends them; past that every login waits until the window has room again.

While a limit holds, the password is not checked at all: the right one is refused too,
with the time to wait. Attempts are serialised (one password check at a time), so tabs
sending logins in parallel cannot all pass the check before any failure is counted.

Where it lives: one `LoginLimiter` per policy in this module (`shared_limiter`), that is
in the Streamlit server process, shared by every browser tab, reload and session. Not in
``st.session_state`` (a reload starts a new one) and not in ``st.cache_resource`` (any
websocket client may send Streamlit's ``clear_cache`` message, which empties it for
everyone). A restart of the dashboard forgets every lockout.

Every failed login and every lockout is logged (user name and address, never the
password).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)

Scope = Literal["account", "address", "global"]
#: Longest account name kept as a key (and logged).
MAX_ACCOUNT_CHARS = 64


@dataclass(frozen=True)
class LoginPolicy:
    """The limits (DashboardSettings carries the configurable ones)."""

    #: Consecutive failures of one account, or from one address, that start a lockout.
    max_failures: int = 5
    #: The first lockout; each further one of the same key doubles, up to `max_lockout_s`.
    lockout_s: float = 30.0
    max_lockout_s: float = 900.0
    #: A key with no failure for this long (and no lockout running) is forgotten.
    forget_after_s: float = 3600.0
    #: Failed logins allowed in any `global_window_s`, from everyone together.
    global_max_failures: int = 30
    global_window_s: float = 60.0
    #: Keys remembered at most (least recently used forgotten first).
    max_tracked: int = 10_000


@dataclass(frozen=True)
class LoginOutcome:
    """What became of one login attempt."""

    #: The user name and password were right and no limit held.
    ok: bool
    #: Whether the password was checked at all (not while a limit holds).
    checked: bool
    #: Seconds until a login may be tried again (0: now): the lockout that refused this
    #: attempt, or the one this failure started.
    retry_after_s: float = 0.0
    #: Which limit refused the attempt or was reached by it.
    scope: Scope | None = None

    @property
    def refused(self) -> bool:
        """Refused without checking the password (a limit held)."""
        return not self.checked


@dataclass
class _KeyState:
    failures: int = 0  # consecutive, since the last lockout or success
    level: int = 0  # lockouts so far: the next one lasts lockout_s * 2**level
    locked_until: float = 0.0
    last_failure: float = 0.0


def account_key(name: str) -> str:
    """The key an account name is counted under (what the login compares, case-folded)."""
    return name.strip().casefold()[:MAX_ACCOUNT_CHARS]


class LoginLimiter:
    """Lockouts per account and per address plus a global ceiling (thread-safe)."""

    def __init__(self, policy: LoginPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._keys: OrderedDict[tuple[Scope, str], _KeyState] = OrderedDict()
        self._recent_failures: deque[float] = deque()
        # Held across the password check too: one attempt at a time (see the module doc).
        self._lock = threading.Lock()

    # ---- the one entry point ------------------------------------------------------

    def attempt(self, account: str, address: str, verify: Callable[[], bool]) -> LoginOutcome:
        """Check the limits, then (if none holds) the password with `verify`, and count
        the result. `address` is the client's address as best known ("?" if unknown)."""
        keys = (("account", account_key(account)), ("address", address))
        with self._lock:
            refusal = self._refusal(keys, self._clock())
            if refusal is not None:
                scope, wait = refusal
                log.warning(
                    "dashboard login refused without checking the password: %s locked for "
                    "another %.0f s (user %r from %s)",
                    scope,
                    wait,
                    account_key(account),
                    address,
                )
                return LoginOutcome(ok=False, checked=False, retry_after_s=wait, scope=scope)
            ok = bool(verify())
            now = self._clock()
            if ok:
                self._keys.pop(("address", address), None)
                state = self._keys.get(keys[0])
                if state is not None:
                    state.failures = 0
                return LoginOutcome(ok=True, checked=True)
            return self._fail(keys, now)

    # ---- inspection (tests, the login form) ----------------------------------------

    def locked_for(self, account: str, address: str) -> tuple[Scope, float] | None:
        """The limit that would refuse a login now and how long it still holds."""
        keys = (("account", account_key(account)), ("address", address))
        with self._lock:
            return self._refusal(keys, self._clock())

    def tracked(self) -> int:
        with self._lock:
            return len(self._keys)

    # ---- internals (the lock is held) ------------------------------------------------

    def _refusal(
        self, keys: tuple[tuple[Scope, str], ...], now: float
    ) -> tuple[Scope, float] | None:
        worst: tuple[Scope, float] | None = None
        for key in keys:
            state = self._state(key, now, create=False)
            if state is not None and state.locked_until > now:
                wait = state.locked_until - now
                if worst is None or wait > worst[1]:
                    worst = (key[0], wait)
        self._expire_global(now)
        if len(self._recent_failures) >= self.policy.global_max_failures:
            wait = self._recent_failures[0] + self.policy.global_window_s - now
            if worst is None or wait > worst[1]:
                worst = ("global", max(wait, 0.0))
        return worst

    def _fail(self, keys: tuple[tuple[Scope, str], ...], now: float) -> LoginOutcome:
        policy = self.policy
        started: tuple[Scope, float] | None = None
        counts = []
        for key in keys:
            state = self._state(key, now, create=True)
            assert state is not None
            state.failures += 1
            state.last_failure = now
            counts.append(state.failures)
            if state.failures >= policy.max_failures:
                duration = min(policy.lockout_s * 2.0**state.level, policy.max_lockout_s)
                state.level += 1
                state.failures = 0
                state.locked_until = now + duration
                log.warning(
                    "dashboard login locked for %.0f s: %s %r (lockout %d in a row)",
                    duration,
                    key[0],
                    key[1],
                    state.level,
                )
                if started is None or duration > started[1]:
                    started = (key[0], duration)
        self._recent_failures.append(now)
        if len(self._recent_failures) == policy.global_max_failures:
            log.warning(
                "dashboard login paused for everyone: %d failed logins in %.0f s",
                policy.global_max_failures,
                policy.global_window_s,
            )
            wait = self._recent_failures[0] + policy.global_window_s - now
            if started is None or wait > started[1]:
                started = ("global", wait)
        log.warning(
            "dashboard login failed: user %r from %s (%d failed in a row for the user, "
            "%d from the address)",
            keys[0][1],
            keys[1][1],
            counts[0],
            counts[1],
        )
        if started is None:
            return LoginOutcome(ok=False, checked=True)
        return LoginOutcome(ok=False, checked=True, retry_after_s=started[1], scope=started[0])

    def _state(self, key: tuple[Scope, str], now: float, create: bool) -> _KeyState | None:
        state = self._keys.get(key)
        if state is not None and (
            state.locked_until <= now and now - state.last_failure >= self.policy.forget_after_s
        ):
            del self._keys[key]  # quiet long enough: its backoff starts over
            state = None
        if state is None:
            if not create:
                return None
            state = _KeyState()
            self._keys[key] = state
            while len(self._keys) > self.policy.max_tracked:
                self._keys.popitem(last=False)
        self._keys.move_to_end(key)
        return state

    def _expire_global(self, now: float) -> None:
        window = self.policy.global_window_s
        while self._recent_failures and self._recent_failures[0] <= now - window:
            self._recent_failures.popleft()


_SHARED: dict[LoginPolicy, LoginLimiter] = {}
_SHARED_LOCK = threading.Lock()


def shared_limiter(policy: LoginPolicy) -> LoginLimiter:
    """The process-wide limiter for `policy` (created on first use, kept until exit)."""
    with _SHARED_LOCK:
        limiter = _SHARED.get(policy)
        if limiter is None:
            limiter = _SHARED[policy] = LoginLimiter(policy)
        return limiter


def forget_shared_limiters() -> None:
    """Drop every process-wide limiter (tests that run many apps in one process)."""
    with _SHARED_LOCK:
        _SHARED.clear()


def wait_words(seconds: float) -> str:
    """A wait in words for the login form: "42 s", "3 min 5 s"."""
    total = max(1, math.ceil(seconds))
    minutes, rest = divmod(total, 60)
    if not minutes:
        return f"{rest} s"
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"
