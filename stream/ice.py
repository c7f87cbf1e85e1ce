"""ICE configuration for the gateway and the room page: STUN/TURN servers and short-lived
TURN credentials (pure logic apart from reading a secret file; the clock is passed in).

Why: aiortc gathers candidates on the interfaces it sees and picks ephemeral UDP ports
(aioice has no port-range option). In a container on a bridge network those are private
addresses no browser can reach, so without a relay the gateway needs host networking.
With a TURN server (coturn) and ``ice_transport_policy = "relay"`` the gateway offers only
relayed candidates: its media leaves through the TURN server, whose public address and
UDP port range the operator controls, and the gateway can sit behind any NAT.

Credentials follow the TURN REST API convention (draft-uberti-behave-turn-rest-00, what
coturn's ``use-auth-secret`` / ``static-auth-secret`` checks): username
``"<unix expiry>:<name>"``, password ``base64(HMAC-SHA1(secret, username))``. The gateway
mints one pair per session for itself and one for the browser, so no long-lived TURN
password ever reaches a page.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Literal

from aiortc import RTCConfiguration, RTCIceServer, RTCIceTransportPolicy
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

IceTransportPolicy = Literal["all", "relay"]

# stun:host[:port], turn:host[:port][?transport=udp|tcp], turns:host[:port][?transport=tcp]
# (aiortc has no stuns:)
_ICE_URL = re.compile(r"^(stun|turn|turns):[^\s?]+(\?transport=(udp|tcp))?$")


class IceServer(BaseModel):
    """One entry of RTCConfiguration.iceServers, as the browser's API spells it.

    A TURN entry without ``username``/``credential`` gets per-session credentials minted
    from the gateway's TURN secret (`INTERVUE_GATEWAY_TURN_SECRET_FILE`)."""

    model_config = ConfigDict(extra="forbid")

    urls: list[str]
    username: str | None = None
    credential: SecretStr | None = None

    @field_validator("urls", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("urls")
    @classmethod
    def _valid_urls(cls, urls: list[str]) -> list[str]:
        if not urls:
            raise ValueError("an ICE server needs at least one URL")
        for url in urls:
            if not _ICE_URL.match(url):
                raise ValueError(
                    f"not a STUN/TURN URL: {url!r} (stun:HOST[:PORT], "
                    "turn:HOST[:PORT][?transport=udp|tcp] or turns:…)"
                )
        return urls

    @property
    def is_turn(self) -> bool:
        return any(url.startswith(("turn:", "turns:")) for url in self.urls)

    @property
    def needs_minted_credentials(self) -> bool:
        return self.is_turn and self.username is None and self.credential is None


def turn_rest_credentials(secret: bytes, name: str, now: float, ttl_s: float) -> tuple[str, str]:
    """(username, password) that a TURN server sharing `secret` accepts until now + ttl_s."""
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    if ":" in name:
        raise ValueError("the name part of a TURN REST username may not contain ':'")
    username = f"{int(now + ttl_s)}:{name}"
    digest = hmac.new(secret, username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def resolve(
    servers: list[IceServer], turn_secret: bytes | None, name: str, now: float, ttl_s: float
) -> list[dict[str, object]]:
    """The servers as RTCConfiguration.iceServers JSON (what the page's RTCPeerConnection
    takes), TURN credentials minted for `name` where the entry has none."""
    resolved: list[dict[str, object]] = []
    for server in servers:
        entry: dict[str, object] = {"urls": list(server.urls)}
        if server.needs_minted_credentials:
            if turn_secret is None:
                raise ValueError(
                    f"{server.urls[0]} has no username/credential and no TURN secret is set"
                )
            entry["username"], entry["credential"] = turn_rest_credentials(
                turn_secret, name, now, ttl_s
            )
        elif server.username is not None or server.credential is not None:
            entry["username"] = server.username or ""
            entry["credential"] = (
                server.credential.get_secret_value() if server.credential is not None else ""
            )
        resolved.append(entry)
    return resolved


def rtc_configuration(
    resolved: list[dict[str, object]], policy: IceTransportPolicy
) -> RTCConfiguration:
    """aiortc's configuration for `resolved` servers. aiortc uses the first STUN and the
    first TURN URL it finds (aioice holds one of each), so list the preferred one first."""
    servers = [
        RTCIceServer(
            urls=entry["urls"],  # type: ignore[arg-type]
            username=entry.get("username"),  # type: ignore[arg-type]
            credential=entry.get("credential"),  # type: ignore[arg-type]
        )
        for entry in resolved
    ]
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=RTCIceTransportPolicy(policy))
