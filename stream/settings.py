"""Configuration for the bus and the gateway (env prefix ``INTERVUE_``, validated at start)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream import contract
from stream.ice import IceServer, IceTransportPolicy

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


class BusSettings(BaseSettings):
    """How every role reaches NATS and how long the events stream keeps what it holds."""

    model_config = SettingsConfigDict(env_prefix="INTERVUE_", extra="forbid")

    nats_url: str = Field(DEFAULT_NATS_URL, description="NATS server URL(s), comma-separated")
    #: User/password auth (or put them in the URL); the password is never logged.
    nats_user: str | None = None
    nats_password: SecretStr | None = None
    #: NATS credentials file (JWT + nkey seed), or an nkey seed file.
    nats_creds_file: Path | None = None
    nats_nkey_seed_file: Path | None = None
    #: TLS: CA bundle to verify the server, and a client certificate/key for mutual TLS.
    nats_tls_ca_file: Path | None = None
    nats_tls_cert_file: Path | None = None
    nats_tls_key_file: Path | None = None
    #: Prefix of this client's reply subjects (JetStream API answers, pull deliveries,
    #: ordered-consumer pushes). A server that gives each user its own prefix (as `intervue
    #: up` does) can then keep one role from subscribing to another role's replies.
    nats_inbox_prefix: str = Field("_INBOX", pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
    #: How long session events stay in JetStream (seconds; 0 = forever).
    events_max_age_s: float = Field(7 * 24 * 3600.0, ge=0)
    #: Cap on the events stream's size in bytes (-1 = unlimited); oldest go first.
    events_max_bytes: int = Field(-1, ge=-1)
    #: JetStream replicas of intervue's streams (events, utterances): 3 on a 3-server
    #: NATS cluster so a server loss loses nothing; 1 on a single server.
    stream_replicas: int = Field(1, ge=1, le=5)
    #: Largest frame payload a worker accepts; bigger ones are counted and skipped.
    frame_max_bytes: int = Field(512 * 1024, ge=1024, le=8 * 1024 * 1024)


class GatewaySettings(BaseSettings):
    """The WebRTC gateway and room page."""

    model_config = SettingsConfigDict(env_prefix="INTERVUE_GATEWAY_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    #: Frames per second sent for analysis (the camera may deliver 30).
    analysis_fps: float = Field(10.0, gt=0, le=60)
    #: Frames allowed on the bus without a result before newer ones replace the waiting one.
    max_in_flight: int = Field(2, ge=1, le=16)
    #: After this long without a result, an in-flight frame's slot is given back.
    result_timeout_s: float = Field(1.0, gt=0)
    jpeg_quality: int = Field(80, ge=30, le=100)
    #: Longest side of the analysed frame; larger frames are downscaled before encoding.
    max_frame_side: int = Field(640, ge=160, le=1920)
    #: The video jitter buffer: "marker" hands a frame to the decoder as soon as its
    #: marker-bit packet completes it (`stream.jitter`); "stock" keeps aiortc's, which
    #: waits for the next frame's first packet (one frame interval). The baseline of
    #: benchmarks; also the way out if an aiortc upgrade moved the seam (checked at start).
    jitter_buffer: Literal["marker", "stock"] = "marker"
    #: A created session that gets no SDP offer within this time is expired.
    offer_timeout_s: float = Field(30.0, gt=0)
    #: A live session whose camera sends nothing for this long is ended (the browser
    #: vanished without a goodbye; ICE consent would notice only after ~30 s).
    media_timeout_s: float = Field(10.0, gt=0)
    #: A page that went away without ending its session (a reload, a network hiccup) may
    #: come back to it within this time; then the session ends.
    resume_grace_s: float = Field(30.0, gt=0, le=3600)
    #: Hard cap on a session's length.
    max_session_s: float = Field(2 * 3600.0, gt=0)
    #: Largest SDP offer accepted (bytes).
    max_sdp_bytes: int = Field(64 * 1024, ge=1024)
    max_sessions: int = Field(64, ge=1)
    #: Of those, the last ones kept for invitations with no live session yet, so that a
    #: replayed link cannot take the room from a candidate with a fresh one.
    reserved_sessions: int = Field(8, ge=0)
    #: Live sessions one invitation may hold at once (a reload resumes its session).
    max_sessions_per_invitation: int = Field(2, ge=1, le=1000)
    #: Live sessions one client address may hold at once (IPv6: per network below).
    max_sessions_per_address: int = Field(16, ge=1)
    #: IPv6 clients are counted per network of this many bits (one host owns a /64).
    ipv6_prefix: int = Field(64, ge=32, le=128)
    #: Longest self-introduction accepted (characters). The one limit: the interviewer
    #: takes what the gateway accepted (`contract.profile_fields` is the rule).
    max_intro_chars: int = Field(
        contract.DEFAULT_MAX_INTRO_CHARS, ge=100, le=contract.MAX_INTRO_CHARS
    )
    #: Session creation per client address: a burst, then this many per minute (429 past it).
    session_burst: int = Field(10, ge=1, le=10_000)
    sessions_per_minute: float = Field(30.0, gt=0)
    #: Raw audio and video are never stored unless this is set: then each session is
    #: recorded to <record_dir>/<session>.mkv (VP8 + Opus; costs CPU for encoding).
    record_dir: Path | None = None
    #: Sessions need a signed invitation (`intervue invite`) unless dev mode is on.
    dev_mode: bool = False
    #: The invitation signing key, inline or in a file (at least 32 bytes; never logged).
    token_secret: SecretStr | None = None
    token_secret_file: Path | None = None
    #: STUN/TURN servers for the gateway and the page, JSON as the browser API spells
    #: them: '[{"urls": ["turn:turn.example.org:3478"]}]'. A TURN entry without
    #: username/credential gets per-session credentials from the TURN secret below.
    #: Empty (default): host candidates only, no server contacted.
    ice_servers: list[IceServer] = Field(default_factory=list)
    #: "relay": the gateway offers only TURN-relayed candidates, so it can run behind
    #: NAT (a container bridge network) with media through the TURN server's port range.
    ice_transport_policy: IceTransportPolicy = "all"
    #: Shared secret of the TURN server's REST API auth (coturn `static-auth-secret`),
    #: inline or in a file; never logged, never sent to a page.
    turn_secret: SecretStr | None = None
    turn_secret_file: Path | None = None
    #: Lifetime of minted TURN credentials; default: the longest session + 10 minutes.
    turn_credential_ttl_s: float | None = Field(None, gt=0)
    #: Proxies/load balancers whose X-Forwarded-For is believed (JSON list of networks,
    #: e.g. '["10.0.0.0/8"]'), for the per-client rate limit. Empty: the header is ignored.
    trusted_proxies: list[IPvAnyNetwork] = Field(default_factory=list)

    @model_validator(mode="after")
    def _reserve_fits(self) -> GatewaySettings:
        if self.reserved_sessions >= self.max_sessions:
            raise ValueError(
                f"reserved_sessions ({self.reserved_sessions}) must be below max_sessions "
                f"({self.max_sessions})"
            )
        return self

    @model_validator(mode="after")
    def _ice_is_usable(self) -> GatewaySettings:
        turn = [server for server in self.ice_servers if server.is_turn]
        if self.ice_transport_policy == "relay" and not turn:
            raise ValueError("ice_transport_policy 'relay' needs a TURN server in ice_servers")
        minted = any(server.needs_minted_credentials for server in turn)
        if minted and self.turn_secret is None and self.turn_secret_file is None:
            raise ValueError(
                "a TURN server in ice_servers has no username/credential: set "
                "INTERVUE_GATEWAY_TURN_SECRET_FILE (or _TURN_SECRET) to mint them"
            )
        return self

    def turn_secret_bytes(self) -> bytes | None:
        if self.turn_secret is not None:
            key = self.turn_secret.get_secret_value().encode()
        elif self.turn_secret_file is not None:
            key = self.turn_secret_file.read_bytes().strip()
        else:
            return None
        if len(key) < 16:
            raise ValueError("the TURN secret must be at least 16 bytes")
        return key

    @property
    def turn_ttl_s(self) -> float:
        if self.turn_credential_ttl_s is not None:
            return self.turn_credential_ttl_s
        return self.max_session_s + 600.0

    def secret(self) -> bytes | None:
        """The signing key, or None in dev mode; a clear error when one is required but
        not configured."""
        if self.token_secret is not None:
            key = self.token_secret.get_secret_value().encode()
        elif self.token_secret_file is not None:
            key = self.token_secret_file.read_bytes().strip()
        elif self.dev_mode:
            return None
        else:
            raise ValueError(
                "the gateway needs an invitation signing key: set "
                "INTERVUE_GATEWAY_TOKEN_SECRET_FILE (or _TOKEN_SECRET), or "
                "INTERVUE_GATEWAY_DEV_MODE=true to run without invitations"
            )
        if len(key) < 32:
            raise ValueError("the invitation signing key must be at least 32 bytes")
        return key
