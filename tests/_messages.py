"""Bus messages that several test modules build the same way."""

from __future__ import annotations

from stream import contract


def score_update(
    session: str, seq: int, at_ms: float, positive: int, negative: int
) -> contract.ScoreUpdate:
    """A cumulative score update (only the face counts matter to the readers under test)."""
    return contract.ScoreUpdate(
        session=session,
        seq=seq,
        score=50.0,
        band="normal",
        faces_seen=positive + negative,
        positive=positive,
        negative=negative,
        at_ms=at_ms,
    )
