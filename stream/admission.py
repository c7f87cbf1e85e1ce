"""Who may open a new session now (pure logic: counts in, a refusal or None out).

One invitation, or one address, must not be able to fill the gateway: live sessions are
capped per invitation and per client address (an IPv6 client by its /64, which one host
usually owns whole), and the last `reserved` slots of the gateway go only to invitations
that have no live session yet, so a candidate with a fresh link still gets in while
someone replays another link.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AdmissionLimits:
    #: Live sessions on this gateway, in all.
    max_sessions: int
    #: Of those, the ones kept for invitations with no live session (0: no reserve).
    reserved: int
    #: Live sessions one invitation may hold at once.
    per_invitation: int
    #: Live sessions one client address (an IPv6 /64) may hold at once.
    per_address: int


@dataclass(frozen=True)
class LiveCounts:
    """Live sessions now: all of them, the requesting invitation's (0 in dev mode, where
    there are no invitations) and the requesting address's."""

    total: int
    of_invitation: int
    of_address: int


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


def refusal(limits: AdmissionLimits, counts: LiveCounts, invited: bool) -> Refusal | None:
    """Why a new session may not open now, or None. `invited`: the request carries an
    invitation (False in dev mode: there are no invitations to tell apart, so no reserve,
    and the per-address cap does the work)."""
    if counts.total >= limits.max_sessions:
        return Refusal(503, "the interview room is full right now; try again in a few minutes")
    if invited and counts.of_invitation >= limits.per_invitation:
        return Refusal(
            429,
            f"this invitation already has {counts.of_invitation} live session(s); "
            "end it (or close its tab) before starting another",
        )
    if counts.of_address >= limits.per_address:
        return Refusal(429, "too many live sessions from this address")
    in_reserve = counts.total >= limits.max_sessions - limits.reserved
    if in_reserve and invited and counts.of_invitation > 0:
        return Refusal(503, "the interview room is nearly full; try again in a few minutes")
    return None
