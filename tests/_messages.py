"""Bus messages that several test modules build the same way."""

from __future__ import annotations

import msgspec

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


def measured(
    answer: str, values: dict | contract.SpeakingMetrics | None
) -> contract.SpeakingMetrics | None:
    """The speaking metrics the speech worker would send with `answer` (no word timings,
    so its rates are over `duration_s`), with `values` set as a test needs them (they win
    over the measured ones; a rate given without a time stands for a measured rate)."""
    from inference.speech.metrics import speaking_metrics

    if values is None or isinstance(values, contract.SpeakingMetrics):
        return values
    base = speaking_metrics([], answer, "", float(values.get("duration_s", 0.0)))
    return msgspec.structs.replace(base, **values)
