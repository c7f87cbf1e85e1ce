"""Invitation uses and revocations, counted on the bus so that every gateway agrees.

A signed token (stream/tokens.py) says how many sessions its invitation may open; the
count of sessions it has opened, and whether it was revoked, live in the JetStream
key-value bucket ``INVITATIONS_BUCKET`` under the invitation's nonce. A use is claimed
with compare-and-set on the entry's revision, so two gateways (or two tabs) racing for an
invitation's last use cannot both win.

`claim_next` is the pure decision; `InvitationLedger` is the I/O around it.
"""

from __future__ import annotations

import logging

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from stream import bus, contract, tokens
from stream.settings import BusSettings

log = logging.getLogger(__name__)

#: Records outlive the longest invitation by a day, then the bucket forgets them.
RECORD_TTL_S = tokens.MAX_TTL_S + 24 * 3600.0
#: Compare-and-set retries before a claim gives up (only under a storm of the same link).
CLAIM_ATTEMPTS = 8


class InvitationRefused(tokens.TokenError):
    """The invitation is genuine but opens no more sessions (used up or revoked)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 403)


class LedgerUnavailable(RuntimeError):
    """The bucket could not be read or written (the bus is down): try again shortly."""

    retryable = True


def claim_next(
    record: contract.InvitationRecord | None, invitation: tokens.Invitation
) -> contract.InvitationRecord:
    """The record after one more session opens on `invitation`, or `InvitationRefused`."""
    record = record or contract.InvitationRecord()
    if record.revoked:
        raise InvitationRefused("this invitation has been withdrawn; ask for a new link")
    if record.used >= invitation.uses:
        times = "once" if invitation.uses == 1 else f"{invitation.uses} times"
        raise InvitationRefused(
            f"this invitation has already been used {times}; ask for a new link"
        )
    return contract.InvitationRecord(used=record.used + 1)


async def ensure_invitations_bucket(js: JetStreamContext, settings: BusSettings) -> KeyValue:
    """The invitations bucket, created if missing (idempotent; gateways and the CLI)."""
    return await bus.ensure_key_value(
        js,
        settings,
        contract.INVITATIONS_BUCKET,
        "intervue invitation uses and revocations, by nonce",
        RECORD_TTL_S,
    )


class InvitationLedger:
    """Claims and revokes invitation uses in the bucket."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def _read(self, nonce: str) -> tuple[contract.InvitationRecord | None, int]:
        """The record under `nonce` and its revision (0: none yet)."""
        try:
            entry = await self.kv.get(nonce)
        except KeyNotFoundError:  # also a deleted key
            return None, 0
        if entry.value is None:
            return None, entry.revision or 0
        try:
            return contract.decode_invitation(entry.value), entry.revision or 0
        except contract.ContractError as exc:
            # Only the gateways and the CLI write here; a record nobody can read must not
            # reopen the invitation: treat it as revoked.
            log.error("invitation %s: unreadable record (%s); treated as revoked", nonce, exc)
            return contract.InvitationRecord(revoked=True, reason="unreadable"), entry.revision

    async def claim(self, invitation: tokens.Invitation) -> int:
        """Count one more session on `invitation`; its use number (1 = first). Raises
        `InvitationRefused` (used up, revoked) or `LedgerUnavailable`."""
        for _ in range(CLAIM_ATTEMPTS):
            try:
                record, revision = await self._read(invitation.nonce)
                updated = claim_next(record, invitation)
                payload = contract.encode_invitation(updated)
                if revision:
                    await self.kv.update(invitation.nonce, payload, last=revision)
                else:
                    await self.kv.create(invitation.nonce, payload)
                return updated.used
            except KeyWrongLastSequenceError:
                continue  # another claim won this round: read again
            except InvitationRefused:
                raise
            except Exception as exc:  # timeouts, no responders, a closed connection
                raise LedgerUnavailable(f"the invitation ledger is unavailable: {exc!r}") from exc
        raise LedgerUnavailable("the invitation ledger is busy; try again")

    async def revoke(self, nonce: str, reason: str, at_ms: float) -> contract.InvitationRecord:
        """Mark `nonce` revoked (it keeps its count); the new record."""
        for _ in range(CLAIM_ATTEMPTS):
            record, revision = await self._read(nonce)
            updated = contract.InvitationRecord(
                used=record.used if record else 0,
                revoked=True,
                revoked_at_ms=at_ms,
                reason=reason[:200],
            )
            try:
                payload = contract.encode_invitation(updated)
                if revision:
                    await self.kv.update(nonce, payload, last=revision)
                else:
                    await self.kv.create(nonce, payload)
                return updated
            except KeyWrongLastSequenceError:
                continue
        raise LedgerUnavailable("the invitation ledger is busy; try again")

    async def record(self, nonce: str) -> contract.InvitationRecord | None:
        return (await self._read(nonce))[0]
