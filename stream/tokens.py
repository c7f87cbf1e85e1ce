"""Signed, expiring room invitations (pure logic: no I/O, the clock is passed in).

A token is ``base64url(claims JSON) "." base64url(HMAC-SHA256(secret, claims))`` with
claims ``{"v": 1, "room": str, "exp": unix seconds, "iat": unix seconds, "nonce": str}``.
The gateway checks it before any WebRTC work: missing, malformed, forged or expired →
401; a valid token for another room → 403.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass

TOKEN_VERSION = 1
_ROOM = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class TokenError(Exception):
    """The request carries no acceptable token; `status` is the HTTP status to answer."""

    retryable = False

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Invitation:
    room: str
    expires_at: float
    issued_at: float


def valid_room(room: str) -> bool:
    return bool(_ROOM.match(room))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, body: str) -> str:
    return _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())


def issue(secret: bytes, room: str, ttl_s: float, now: float) -> str:
    """A token for `room` valid for `ttl_s` seconds from `now`."""
    if not valid_room(room):
        raise ValueError(f"room names are 1–64 letters, digits, '.', '_' or '-': {room!r}")
    if ttl_s <= 0:
        raise ValueError("an invitation must live for a positive time")
    claims = {
        "v": TOKEN_VERSION,
        "room": room,
        "iat": int(now),
        "exp": int(now + ttl_s),
        "nonce": secrets.token_hex(6),
    }
    body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_sign(secret, body)}"


def verify(secret: bytes, token: str | None, room: str, now: float) -> Invitation:
    """The invitation `token` carries, if it is genuine, unexpired and for `room`."""
    if not token:
        raise TokenError("this room needs an invitation link (no token given)")
    # A genuine token is base64url "." base64url: plain ASCII text. Anything else (a JSON
    # number or list, non-ASCII, lone surrogates) is malformed, never a server error.
    if not isinstance(token, str) or not token.isascii():
        raise TokenError("the invitation token is malformed")
    body, dot, signature = token.partition(".")
    if not dot or not body or not signature or len(token) > 2048:
        raise TokenError("the invitation token is malformed")
    if not hmac.compare_digest(_sign(secret, body), signature):
        raise TokenError("the invitation token is not genuine")
    try:
        claims = json.loads(_unb64(body))
        token_room, expires, issued = str(claims["room"]), float(claims["exp"]), claims["iat"]
        if claims.get("v") != TOKEN_VERSION:
            raise TokenError(f"unsupported invitation version {claims.get('v')!r}")
    except (ValueError, KeyError, TypeError) as exc:
        raise TokenError("the invitation token is malformed") from exc
    if now >= expires:
        raise TokenError("the invitation has expired; ask for a new link")
    if not valid_room(room) or not hmac.compare_digest(token_room.encode(), room.encode()):
        raise TokenError("this invitation is for another room", 403)
    return Invitation(room=token_room, expires_at=expires, issued_at=float(issued))
