"""Frame sampling and backpressure for one session, as pure logic (no I/O, no clock reads).

`FrameSampler` decides which camera frames are analysed (a steady analysis rate, whatever
the camera delivers). `LatestFrameSlot` keeps at most one frame waiting for the bus and at
most `max_in_flight` frames on it: a newer frame replaces the waiting one (latest frame
wins) and the replaced one is counted as dropped, so a slow worker never builds a queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


class FrameSampler:
    """Accepts frames at no more than `fps` per second of their timestamps."""

    def __init__(self, fps: float) -> None:
        if fps <= 0:
            raise ValueError("analysis fps must be positive")
        self.interval_s = 1.0 / fps
        self._next_due: float | None = None

    def should_sample(self, t: float) -> bool:
        """True if the frame at time `t` (seconds, monotonic) should be analysed."""
        if self._next_due is None or t - self._next_due > self.interval_s:
            # First frame, or after a gap (the camera paused): re-anchor rather than
            # burst to catch up.
            self._next_due = t + self.interval_s
            return True
        # A little slack so camera timestamp jitter (or float rounding) does not push a
        # frame that is due "now" to the next one, halving the rate.
        if t >= self._next_due - 0.1 * self.interval_s:
            # Step from the due time, not from t, so the rate holds on average.
            self._next_due += self.interval_s
            return True
        return False


@dataclass
class SlotCounters:
    offered: int = 0
    sent: int = 0
    dropped: int = 0
    completed: int = 0
    timed_out: int = 0


@dataclass
class LatestFrameSlot(Generic[T]):
    """One waiting slot plus a bounded set of in-flight sequence numbers."""

    max_in_flight: int = 1
    waiting: tuple[int, T] | None = None
    in_flight: dict[int, float] = field(default_factory=dict)
    counters: SlotCounters = field(default_factory=SlotCounters)

    def offer(self, seq: int, item: T) -> None:
        """A new sampled frame: it becomes the waiting one; an older waiting one is dropped."""
        self.counters.offered += 1
        if self.waiting is not None:
            self.counters.dropped += 1
        self.waiting = (seq, item)

    def take(self, now: float) -> tuple[int, T] | None:
        """The waiting frame, if there is one and a bus slot is free (it becomes in flight)."""
        if self.waiting is None or len(self.in_flight) >= self.max_in_flight:
            return None
        seq, item = self.waiting
        self.waiting = None
        self.in_flight[seq] = now
        self.counters.sent += 1
        return seq, item

    def complete(self, seq: int) -> bool:
        """A result came back for `seq`; frees its slot. False for unknown/late results."""
        if self.in_flight.pop(seq, None) is None:
            return False
        self.counters.completed += 1
        return True

    def expire(self, now: float, timeout_s: float) -> int:
        """Free slots whose frames got no result within `timeout_s` (a worker died, say)."""
        stale = [seq for seq, sent in self.in_flight.items() if now - sent >= timeout_s]
        for seq in stale:
            del self.in_flight[seq]
        self.counters.timed_out += len(stale)
        return len(stale)


@dataclass
class TokenBucket:
    """A rate limit per key (pure: the caller passes the time). Each key may spend up to
    `burst` tokens at once; tokens come back at `rate_per_s`."""

    burst: int
    rate_per_s: float
    max_keys: int = 10_000
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def allow(self, key: str, now: float) -> float:
        """0.0 if the request may go ahead (a token is spent), else the seconds to wait."""
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate_per_s)
        if tokens < 1.0:
            self._buckets.pop(key, None)
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate_per_s
        if len(self._buckets) >= self.max_keys and key not in self._buckets:
            # Bounded memory under many addresses: forget the longest-idle key (dicts
            # keep insertion order and every update re-inserts at the end).
            del self._buckets[next(iter(self._buckets))]
        self._buckets.pop(key, None)
        self._buckets[key] = (tokens - 1.0, now)
        return 0.0
