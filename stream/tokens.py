"""Signed, expiring room invitations (pure logic: no I/O, the clock is passed in).

A token is ``base64url(claims JSON) "." base64url(HMAC-SHA256(secret, claims))`` with
claims ``{"v": 1, "room": str, "exp": unix seconds, "iat": unix seconds, "nonce": str,
"uses": int}``. The gateway checks it before any per-session work: missing, malformed,
forged or expired → 401; a valid token for another room → 403. An invitation lives at
most `MAX_TTL_S` (a longer one is refused when minted and when presented: a leaked link
must die on its own). `uses` is how many sessions it may open; the gateway counts them
per nonce on the bus (stream/invitations.py), where a nonce can also be revoked. A token
minted before `uses` existed counts as single-use.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import urllib.parse
from dataclasses import dataclass

TOKEN_VERSION = 1
#: The longest an invitation may live: 30 days.
MAX_TTL_S = 30 * 24 * 3600.0
#: The most sessions one invitation may open.
MAX_USES = 1000
#: Sessions an invitation opens unless told otherwise: one interview, plus room for a
#: crashed browser or a second try (a reload resumes its session and costs nothing).
DEFAULT_USES = 3
_ROOM = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class TokenError(Exception):
    """The request carries no acceptable token; `status` is the HTTP status to answer."""

    retryable = False

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Invitation:
    """What a genuine token grants."""

    #: The room it opens.
    room: str
    #: Unix seconds after which it is refused.
    expires_at: float
    #: Unix seconds when it was minted.
    issued_at: float
    #: Its identity: uses are counted, and it is revoked, by nonce.
    nonce: str
    #: How many sessions it may open in all.
    uses: int


def valid_room(room: str) -> bool:
    return bool(_ROOM.match(room))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, body: str) -> str:
    return _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())


def issue(secret: bytes, room: str, ttl_s: float, now: float, uses: int = DEFAULT_USES) -> str:
    """A token for `room` valid for `ttl_s` seconds from `now`, for `uses` sessions."""
    return issue_with_nonce(secret, room, ttl_s, now, uses)[0]


def issue_with_nonce(
    secret: bytes, room: str, ttl_s: float, now: float, uses: int = DEFAULT_USES
) -> tuple[str, str]:
    """`issue`, and the new invitation's nonce (to revoke it by)."""
    if not valid_room(room):
        raise ValueError(f"room names are 1–64 letters, digits, '.', '_' or '-': {room!r}")
    if not 0 < ttl_s <= MAX_TTL_S:  # also refuses NaN
        raise ValueError(
            f"an invitation lives for more than 0 and at most {MAX_TTL_S / 86400:.0f} days"
        )
    if isinstance(uses, bool) or not isinstance(uses, int) or not 1 <= uses <= MAX_USES:
        raise ValueError(f"an invitation opens 1 to {MAX_USES} sessions")
    nonce = secrets.token_hex(8)
    claims = {
        "v": TOKEN_VERSION,
        "room": room,
        "iat": int(now),
        "exp": int(now + ttl_s),
        "nonce": nonce,
        "uses": uses,
    }
    body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_sign(secret, body)}", nonce


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
        issued, nonce, uses = float(issued), str(claims["nonce"]), claims.get("uses", 1)
        if claims.get("v") != TOKEN_VERSION:
            raise TokenError(f"unsupported invitation version {claims.get('v')!r}")
        if isinstance(uses, bool) or not isinstance(uses, int) or not 1 <= uses <= MAX_USES:
            raise ValueError("uses")
    except (ValueError, KeyError, TypeError) as exc:
        raise TokenError("the invitation token is malformed") from exc
    # Signed by us, so minted by an older `intervue invite` or with a leaked key: either way
    # a link that would live for years is not honoured. (NaN compares false: refused too.)
    if not expires - issued <= MAX_TTL_S + 60:
        raise TokenError(
            f"the invitation lives longer than {MAX_TTL_S / 86400:.0f} days; ask for a new link"
        )
    if now >= expires:
        raise TokenError("the invitation has expired; ask for a new link")
    if not valid_room(room) or not hmac.compare_digest(token_room.encode(), room.encode()):
        raise TokenError("this invitation is for another room", 403)
    return Invitation(room=token_room, expires_at=expires, issued_at=issued, nonce=nonce, uses=uses)


def invite_url(base_url: str, room: str, token: str) -> str:
    """The link a candidate opens: the gateway's public URL with ``?room=…&token=…``
    (the only place it is built: `intervue up`, `intervue invite` and the dashboard)."""
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"the gateway's URL must start with http:// or https://: {base_url!r}")
    if parts.query or parts.fragment:
        # The room page reads its own query; anything already there would be lost.
        raise ValueError(f"the gateway's URL must not carry a query or fragment: {base_url!r}")
    query = urllib.parse.urlencode({"room": room, "token": token})
    path = parts.path.rstrip("/") + "/"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def split_invite_url(url: str) -> tuple[str, str, str]:
    """`invite_url`'s inverse: (the gateway's URL without a trailing slash, room, token);
    room and token are "" when the link carries none."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not a gateway URL: {url!r} (e.g. http://127.0.0.1:8080/)")
    query = urllib.parse.parse_qs(parts.query)
    base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    return base, query.get("room", [""])[0], query.get("token", [""])[0]
