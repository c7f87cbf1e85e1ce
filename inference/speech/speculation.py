"""Transcripts made ahead, at a pause in the speech, for the part that may follow.

The gateway sends a speculative part (`contract.Utterance.speculative`) when the candidate
has paused for a moment inside an answer: the part as it would be cut if the answer ended
there. If the answer does end in that pause (Done pressed, or the VAD's end silence), the
real part arrives carrying the snapshot's number (``speculation``): the same speech with
more trailing silence. A worker that transcribed the snapshot hands that transcription
over instead of running Whisper again, so the words appear as soon as the snapshot's
transcription is done, or at once if it already is.

`Speculations` keeps, per utterance part, the latest snapshot's transcription (a future:
it may still be running). A newer snapshot of the same part replaces an older one (the
speech went on: the older one is stale). The table is bounded: the oldest entries go first.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class Speculation:
    """One snapshot being (or already) transcribed."""

    #: The snapshot's number within its utterance part (1, 2, …).
    number: int
    #: The transcription: a future of the transcriber's result.
    result: asyncio.Future


class Speculations:
    """Per utterance part, the latest snapshot's transcription."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._by_part: OrderedDict[str, Speculation] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_part)

    def running(self) -> int:
        """Transcriptions not finished yet."""
        return sum(1 for s in self._by_part.values() if not s.result.done())

    def add(self, part: str, number: int, result: asyncio.Future) -> None:
        """Keep `result` as snapshot `number` of `part`; an older snapshot of the part is
        stale (cancelled if it has not started)."""
        result.add_done_callback(_retrieve)
        old = self._by_part.pop(part, None)
        if old is not None:
            old.result.cancel()
        self._by_part[part] = Speculation(number, result)
        while len(self._by_part) > self.capacity:
            _, evicted = self._by_part.popitem(last=False)
            evicted.result.cancel()

    def take(self, part: str, number: int) -> asyncio.Future | None:
        """The transcription of snapshot `number` of `part`, removed from the table; None
        when there is none (never made, skipped, evicted, or a newer snapshot replaced it)."""
        kept = self._by_part.pop(part, None)
        if kept is None or number == 0 or kept.number != number:
            if kept is not None:
                kept.result.cancel()
            return None
        return kept.result

    def clear(self) -> None:
        for kept in self._by_part.values():
            kept.result.cancel()
        self._by_part.clear()


def _retrieve(future: asyncio.Future) -> None:
    # a stale snapshot's failure is nobody's business, but asyncio would log it as
    # "exception was never retrieved"
    if not future.cancelled():
        future.exception()
