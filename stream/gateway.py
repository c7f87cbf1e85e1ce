"""The WebRTC gateway: serves the room page, creates sessions, answers SDP offers.

HTTP API (JSON):
    POST   /api/sessions               {"room", "token"} → 201 {"session_id", "offer_url",
                                        "ice_servers", "session_secret"} (401 no/forged/
                                        expired invitation, 403 wrong room, used up or
                                        revoked; no token needed in dev mode; 429 past a
                                        per-invitation or per-address limit; 503 full)
    Every call below acts on one session and must carry its secret: the HttpOnly cookie
    `intervue_session` that creating it set (scoped to /api/sessions/{id}; what the page
    and its unload beacon use), or the header `X-Session-Secret` (API clients). Wrong or
    missing → 403 and the session is untouched.
    POST   /api/sessions/{id}/offer    {"sdp", "type": "offer"} → {"sdp", "type": "answer"}
    GET    /api/sessions/{id}          → the session's state, score and counters
    POST   /api/sessions/{id}/profile  {"job_title", "years", "company", "self_intro",
                                        "language": "ko"|"en"} → 202 (starts the interview)
    POST   /api/sessions/{id}/leave    → 204: the page is going away (a reload?); the
                                        session waits `resume_grace_s` for it (a beacon)
    POST   /api/sessions/{id}/resume   → 200 {"session_id", "offer_url", "ice_servers",
                                        "language"}: the page is back; a new offer follows
                                        and the interview so far is replayed
    POST   /api/sessions/{id}/end      → 204 (also for a session that has just ended)
    GET    /healthz, GET /metrics
There is no list of sessions here: interviewers see them in the dashboard, operators with
`intervue session list` (both read the bus with their own credentials).
Errors answer {"error": message} with 400 (bad input), 401/403 (invitation, or not this
session's secret), 404 (unknown or ended session), 409 (offer twice), 429 (limits) or
503 (full, bus down).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import socket
import time
from collections import Counter as Tally
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

from aiohttp import web
from nats.aio.client import Client as NATS
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from stream import bus, contract, ice, jitter, tokens
from stream.admission import AdmissionLimits, LiveCounts, refusal
from stream.client_address import address_key, client_address
from stream.invitations import (
    InvitationLedger,
    InvitationRefused,
    LedgerUnavailable,
    ensure_invitations_bucket,
)
from stream.presence import PresenceBoard, ensure_presence_bucket
from stream.sampler import TokenBucket
from stream.session import RoomSession, SessionError, new_session_id
from stream.settings import BusSettings, GatewaySettings
from stream.turns import TurnSettings

log = logging.getLogger(__name__)

#: Bytes read of a profile request: far above any sane form (a 50,000-character Korean
#: introduction is ~300 kB as JSON), so an oversized one gets the clear
#: "the self-introduction is N characters" message rather than a size error.
PROFILE_MAX_BYTES = 1024 * 1024
#: Ended sessions remembered so that a late End (the page's beacon after its goodbye on
#: the data channel) is answered 204, not 404.
REMEMBER_ENDED = 4096
#: Where a session's secret travels: a cookie the page never sees (HttpOnly, scoped to
#: the session's own API path, sent by its unload beacon too), or a header (API clients).
SESSION_COOKIE = "intervue_session"
SESSION_HEADER = "X-Session-Secret"
#: The room page runs only its own script, talks only to its own origin, and is never
#: framed; its URL carries the invitation, so it is never sent as a referrer.
ROOM_CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self' blob: mediastream:",
        "connect-src 'self'",
        "font-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class Gateway:
    """The gateway's state: live sessions, the bus connection, the encoder pool, metrics."""

    def __init__(
        self,
        settings: GatewaySettings,
        bus_settings: BusSettings,
        turn_settings: TurnSettings | None = None,
    ) -> None:
        self.settings = settings
        self.bus_settings = bus_settings
        self.session_limit = TokenBucket(
            settings.session_burst, settings.sessions_per_minute / 60.0
        )
        # Read (and checked) once at start: a missing key stops the gateway here.
        self.token_key = settings.secret()
        if settings.jitter_buffer == "marker":
            # an aiortc whose receiver moved the seam stops the gateway here, by name
            log.info("marker jitter buffer on aiortc %s", jitter.check_aiortc_seam())
        self.turn_secret = settings.turn_secret_bytes()
        self.nc: NATS | None = None
        self.owns_nc = False
        self.sessions: dict[str, RoomSession] = {}
        # who holds each live session: (invitation nonce or None in dev mode, address key)
        self.holders: dict[str, tuple[str | None, str]] = {}
        self.limits = AdmissionLimits(
            max_sessions=settings.max_sessions,
            reserved=settings.reserved_sessions,
            per_invitation=settings.max_sessions_per_invitation,
            per_address=settings.max_sessions_per_address,
        )
        self.ledger: InvitationLedger | None = None  # on start, when invitations are on
        # marks the sessions held here on the bus (on start; None in handler-only tests)
        self.presence: PresenceBoard | None = None
        # ended sessions → their secret, so a late End is answered only to their owner
        self.recently_ended: OrderedDict[str, str] = OrderedDict()
        # validated at start like every setting: a bad INTERVUE_TURN_* stops the gateway
        self.turn_settings = turn_settings or TurnSettings()
        # JPEG encoding and frame conversion run here, never on the event loop.
        self.executor = ThreadPoolExecutor(2, thread_name_prefix="gateway-encode")
        self.registry = CollectorRegistry()
        self.sessions_gauge = Gauge(
            "intervue_gateway_sessions", "Live sessions", registry=self.registry
        )
        self.sessions_total = Counter(
            "intervue_gateway_sessions_created", "Sessions created", registry=self.registry
        )
        self.rejected = Counter(
            "intervue_gateway_rejected_requests",
            "Requests answered with an error",
            ["status"],
            registry=self.registry,
        )
        self.video_frames_released = Counter(
            "intervue_gateway_video_frames_released",
            "Video frames the jitter buffer handed to the decoder, by the rule that "
            "completed them (marker: its marker-bit packet; timestamp: the next frame began)",
            ["rule"],
            registry=self.registry,
        )
        self.refused_owner = Counter(
            "intervue_gateway_wrong_session_secret",
            "Calls on a session without its secret (refused)",
            registry=self.registry,
        )

    def count_video_frame(self, rule: jitter.ReleaseRule) -> None:
        self.video_frames_released.labels(rule=rule.value).inc()

    def ice_servers(self, name: str) -> list[dict[str, object]]:
        """The configured STUN/TURN servers for one peer, TURN credentials minted for it."""
        return ice.resolve(
            self.settings.ice_servers, self.turn_secret, name, time.time(), self.settings.turn_ttl_s
        )

    def client(self, request: web.Request) -> str:
        """The requesting client's address (X-Forwarded-For believed from trusted proxies)."""
        return client_address(
            request.remote,
            request.headers.getall("X-Forwarded-For", []),
            self.settings.trusted_proxies,
        )

    def address_key(self, request: web.Request) -> str:
        return address_key(self.client(request), self.settings.ipv6_prefix)

    def live_counts(self, nonce: str | None, address: str) -> LiveCounts:
        holders = self.holders.values()
        return LiveCounts(
            total=len(self.sessions),
            of_invitation=0 if nonce is None else Tally(n for n, _ in holders)[nonce],
            of_address=Tally(a for _, a in holders)[address],
        )

    def session_closed(self, session: RoomSession) -> None:
        self.sessions.pop(session.id, None)
        self.holders.pop(session.id, None)
        if self.presence is not None:
            self.presence.forget(session.id)
        self.sessions_gauge.set(len(self.sessions))
        self.recently_ended[session.id] = session.secret
        while len(self.recently_ended) > REMEMBER_ENDED:
            self.recently_ended.popitem(last=False)

    def ledger_for(self) -> InvitationLedger:
        if self.ledger is None:  # the app did not start (a test calling a handler)
            raise LedgerUnavailable("the invitation ledger is not open")
        return self.ledger

    def get(self, session_id: str) -> RoomSession:
        session = self.sessions.get(session_id)
        if session is None or session.state == "ended":
            raise SessionError(f"unknown or ended session {session_id!r}", 404)
        return session


GATEWAY = web.AppKey("gateway", Gateway)


def _error(gateway: Gateway, status: int, message: str) -> web.Response:
    gateway.rejected.labels(status=str(status)).inc()
    return web.json_response({"error": message}, status=status)


async def _read_json(request: web.Request, limit: int) -> dict:
    if request.content_length is not None and request.content_length > limit:
        raise SessionError(f"request body too large ({request.content_length} > {limit} bytes)")
    chunks, size = [], 0
    while chunk := await request.content.read(64 * 1024):  # read() may return less
        size += len(chunk)
        if size > limit:
            raise SessionError(f"request body too large (over {limit} bytes)")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        return {}
    try:
        data = json.loads(body, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SessionError(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SessionError("request body must be a JSON object")
    try:  # "\ud800" is valid JSON but not Unicode text: nothing downstream can encode it
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SessionError("request body holds invalid Unicode (a lone surrogate)") from exc
    return data


def _not_json(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _text(value: object, limit: int) -> str:
    """`value` as text of at most `limit` characters that UTF-8 (the bus) can carry."""
    return str(value)[:limit].encode("utf-8", "replace").decode("utf-8")


def _handle_errors(handler):  # type: ignore[no-untyped-def]
    async def wrapped(request: web.Request) -> web.StreamResponse:
        gateway = request.app[GATEWAY]
        try:
            return await handler(request, gateway)
        except SessionError as exc:
            return _error(gateway, exc.status, str(exc))
        except Exception:
            log.exception("unexpected error in %s %s", request.method, request.path)
            return _error(gateway, 500, "internal error; see the gateway log")

    return wrapped


@_handle_errors
async def create_session(request: web.Request, gateway: Gateway) -> web.Response:
    data = await _read_json(request, 16 * 1024)
    room = str(data.get("room") or ("dev" if gateway.token_key is None else ""))
    # The invitation first: nothing below (limits, the ledger, a session) is spent on a
    # request that does not carry one.
    invitation: tokens.Invitation | None = None
    if gateway.token_key is not None:
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        token = data.get("token") or bearer or None
        try:
            invitation = tokens.verify(gateway.token_key, token, room, time.time())
        except tokens.TokenError as exc:
            return _error(gateway, exc.status, str(exc))
    meta_in = data.get("meta", {})
    if not isinstance(meta_in, dict):
        raise SessionError("meta must be an object of strings")
    meta = {_text(k, 64): _text(v, 256) for k, v in list(meta_in.items())[:16]}
    # aiohttp decodes header bytes that are not UTF-8 as lone surrogates
    meta["user_agent"] = _text(request.headers.get("User-Agent", ""), 256)
    meta["room"] = room
    address = gateway.address_key(request)
    wait_s = gateway.session_limit.allow(address, time.monotonic())
    if wait_s > 0:
        gateway.rejected.labels(status="429").inc()
        return web.json_response(
            {"error": f"too many new sessions from this address; retry in {wait_s:.0f} s"},
            status=429,
            headers={"Retry-After": str(max(1, round(wait_s)))},
        )
    if gateway.nc is None or not gateway.nc.is_connected:
        return _error(gateway, 503, "the message bus is not reachable; try again shortly")
    nonce = invitation.nonce if invitation else None
    refused = refusal(gateway.limits, gateway.live_counts(nonce, address), invitation is not None)
    if refused is not None:
        return _error(gateway, refused.status, refused.message)
    if invitation is not None:
        # Last, so a refusal above never spends one of the invitation's uses.
        try:
            use = await gateway.ledger_for().claim(invitation)
        except InvitationRefused as exc:
            log.info("invitation %s refused from %s: %s", invitation.nonce, address, exc)
            return _error(gateway, exc.status, str(exc))
        except LedgerUnavailable as exc:
            log.warning("invitation %s: %s", invitation.nonce, exc)
            return _error(gateway, 503, "invitations cannot be checked right now; try again")
        meta["invitation"] = invitation.nonce
        meta["invitation_use"] = f"{use}/{invitation.uses}"
    session_id = new_session_id()
    rtc_config = ice.rtc_configuration(
        gateway.ice_servers(f"gateway-{session_id}"), gateway.settings.ice_transport_policy
    )
    session = RoomSession(
        session_id,
        gateway.nc,
        gateway.settings,
        gateway.executor,
        gateway.session_closed,
        meta,
        rtc_config=rtc_config,
        turn_settings=gateway.turn_settings,
        on_video_frame_released=gateway.count_video_frame,
    )
    if gateway.presence is not None:  # before anything of the session is on the bus
        await gateway.presence.mark(session_id)
    gateway.sessions[session_id] = session
    gateway.holders[session_id] = (nonce, address)
    gateway.sessions_total.inc()
    gateway.sessions_gauge.set(len(gateway.sessions))
    response = web.json_response(
        {
            "session_id": session_id,
            "offer_url": f"/api/sessions/{session_id}/offer",
            "ice_servers": gateway.ice_servers(f"room-{session_id}"),
            "session_secret": session.secret,
        },
        status=201,
    )
    response.set_cookie(
        SESSION_COOKIE,
        session.secret,
        path=f"/api/sessions/{session_id}",
        httponly=True,
        samesite="Strict",
        secure=_is_https(request),
    )
    return response


def _is_https(request: web.Request) -> bool:
    # behind a TLS-terminating proxy (compose.tls.yaml) the hop to us is plain HTTP
    return request.scheme == "https" or request.headers.get("X-Forwarded-Proto") == "https"


def _presented_secret(request: web.Request) -> str | None:
    return request.headers.get(SESSION_HEADER) or request.cookies.get(SESSION_COOKIE)


def _secret_matches(presented: str | None, secret: str) -> bool:
    return isinstance(presented, str) and hmac.compare_digest(
        presented.encode("utf-8", "replace"), secret.encode()
    )


def _owned(request: web.Request, gateway: Gateway) -> RoomSession:
    """The session named in the path, if the request carries its secret (403 otherwise:
    the session is not touched)."""
    session = gateway.get(request.match_info["session_id"])
    if not session.owned_by(_presented_secret(request)):
        gateway.refused_owner.inc()
        log.info(
            "session %s: %s %s without its secret from %s",
            session.id,
            request.method,
            request.path.rsplit("/", 1)[-1],
            gateway.client(request),
        )
        raise SessionError("this is not your session", 403)
    return session


@_handle_errors
async def offer(request: web.Request, gateway: Gateway) -> web.Response:
    session = _owned(request, gateway)
    data = await _read_json(request, gateway.settings.max_sdp_bytes)
    sdp, sdp_type = data.get("sdp"), data.get("type")
    if not isinstance(sdp, str) or not isinstance(sdp_type, str):
        raise SessionError('the body must be {"sdp": string, "type": "offer"}')
    if not sdp.startswith("v=0"):
        raise SessionError("malformed SDP offer: it must start with v=0")
    answer = await session.answer(sdp, sdp_type)
    return web.json_response({"sdp": answer.sdp, "type": answer.type})


def parse_profile(session_id: str, data: dict, max_intro_chars: int) -> contract.Profile:
    """The candidate's form → a Profile (the contract's rule), or a SessionError that says
    what to fix."""
    try:
        return contract.parse_profile(session_id, data, max_intro_chars=max_intro_chars)
    except contract.ProfileError as exc:
        raise SessionError(str(exc)) from None


@_handle_errors
async def submit_profile(request: web.Request, gateway: Gateway) -> web.Response:
    session = _owned(request, gateway)
    # A 50 kB introduction must get our clear message, not a generic size error.
    data = await _read_json(request, PROFILE_MAX_BYTES)
    profile = parse_profile(session.id, data, gateway.settings.max_intro_chars)
    await session.submit_profile(profile)
    return web.json_response({"ok": True}, status=202)


@_handle_errors
async def end_session(request: web.Request, gateway: Gateway) -> web.Response:
    session_id = request.match_info["session_id"]
    ended_secret = gateway.recently_ended.get(session_id)
    if ended_secret is not None:  # the data channel's goodbye was first
        if not _secret_matches(_presented_secret(request), ended_secret):
            raise SessionError("this is not your session", 403)
        return web.Response(status=204)
    session = _owned(request, gateway)
    await session.close("ended by the candidate", "candidate")
    # The cookie stays (it dies with the browser session, and opens nothing now): a
    # second End from the page, its beacon after a fetch, is still the owner's 204.
    return web.Response(status=204)


@_handle_errors
async def leave_session(request: web.Request, gateway: Gateway) -> web.Response:
    session = _owned(request, gateway)
    await session.detach("the page is going away (reload or closed tab)")
    return web.Response(status=204)


@_handle_errors
async def resume_session(request: web.Request, gateway: Gateway) -> web.Response:
    session = _owned(request, gateway)
    await session.resume()
    return web.json_response(
        {
            "session_id": session.id,
            "offer_url": f"/api/sessions/{session.id}/offer",
            "ice_servers": gateway.ice_servers(f"room-{session.id}-{session.connections}"),
            "language": session.profile.language if session.profile else None,
        }
    )


@_handle_errors
async def get_session(request: web.Request, gateway: Gateway) -> web.Response:
    return web.json_response(_owned(request, gateway).describe())


@_handle_errors
async def healthz(request: web.Request, gateway: Gateway) -> web.Response:
    connected = gateway.nc is not None and gateway.nc.is_connected
    return web.json_response(
        {"ok": connected, "nats": connected, "sessions": len(gateway.sessions)},
        status=200 if connected else 503,
    )


@_handle_errors
async def metrics(request: web.Request, gateway: Gateway) -> web.Response:
    return web.Response(
        body=generate_latest(gateway.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


def _static_text(name: str) -> str:
    return resources.files("stream").joinpath("static", name).read_text(encoding="utf-8")


async def room_page(request: web.Request) -> web.Response:
    return web.Response(
        text=_static_text("room.html"),
        content_type="text/html",
        headers={"Content-Security-Policy": ROOM_CSP, "Cache-Control": "no-store"},
    )


async def room_script(request: web.Request) -> web.Response:
    return web.Response(text=_static_text("room.js"), content_type="application/javascript")


async def room_style(request: web.Request) -> web.Response:
    return web.Response(text=_static_text("room.css"), content_type="text/css")


async def _add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Headers every response carries, aiohttp's own 404/405/413 included; API answers
    are never cached (they hold secrets)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")


async def favicon(request: web.Request) -> web.Response:
    return web.Response(
        text=_static_text("favicon.svg"),
        content_type="image/svg+xml",
        headers={"Cache-Control": "max-age=86400"},
    )


def create_app(
    settings: GatewaySettings | None = None,
    bus_settings: BusSettings | None = None,
    nc: NATS | None = None,
    turn_settings: TurnSettings | None = None,
) -> web.Application:
    """The gateway as an aiohttp application. Pass `nc` to share a connection (tests);
    otherwise the app connects on startup and closes on cleanup."""
    gateway = Gateway(settings or GatewaySettings(), bus_settings or BusSettings(), turn_settings)
    gateway.nc = nc
    # Allow a little over the SDP limit so oversized offers get our 400, not aiohttp's 413.
    app = web.Application(
        client_max_size=max(gateway.settings.max_sdp_bytes * 4, PROFILE_MAX_BYTES * 2),
    )
    app[GATEWAY] = gateway
    app.router.add_get("/", room_page)
    app.router.add_get("/room.js", room_script)
    app.router.add_get("/room.css", room_style)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/favicon.svg", favicon)
    app.router.add_post("/api/sessions", create_session)
    app.router.add_post("/api/sessions/{session_id}/offer", offer)
    app.router.add_get("/api/sessions/{session_id}", get_session)
    app.router.add_post("/api/sessions/{session_id}/profile", submit_profile)
    app.router.add_post("/api/sessions/{session_id}/end", end_session)
    app.router.add_post("/api/sessions/{session_id}/leave", leave_session)
    app.router.add_post("/api/sessions/{session_id}/resume", resume_session)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.on_response_prepare.append(_add_security_headers)
    app.on_startup.append(_on_startup)
    app.on_shutdown.append(_on_shutdown)
    return app


async def _on_startup(app: web.Application) -> None:
    gateway = app[GATEWAY]
    if gateway.nc is None:
        gateway.nc = await bus.connect(gateway.bus_settings, "intervue-gateway")
        gateway.owns_nc = True
    await bus.ensure_events_stream(gateway.nc.jetstream(), gateway.bus_settings)
    await bus.ensure_utterances_stream(gateway.nc.jetstream(), gateway.bus_settings)
    if gateway.token_key is not None:
        kv = await ensure_invitations_bucket(gateway.nc.jetstream(), gateway.bus_settings)
        gateway.ledger = InvitationLedger(kv)
    presence = await ensure_presence_bucket(gateway.nc.jetstream(), gateway.bus_settings)
    gateway.presence = PresenceBoard(presence, f"gateway-{socket.gethostname()}-{os.getpid()}")
    gateway.presence.start(lambda: list(gateway.sessions))


async def _on_shutdown(app: web.Application) -> None:
    gateway = app[GATEWAY]
    await asyncio.gather(
        *(s.close("gateway shutting down", "shutdown") for s in list(gateway.sessions.values())),
        return_exceptions=True,
    )
    if gateway.presence is not None:
        await gateway.presence.stop()
    if gateway.owns_nc and gateway.nc is not None:
        await gateway.nc.drain()
    gateway.executor.shutdown(wait=False, cancel_futures=True)


def run_gateway(settings: GatewaySettings, bus_settings: BusSettings) -> None:
    """Entry point of `intervue gateway`."""
    app = create_app(settings, bus_settings)
    log.info("room at http://%s:%d/", settings.host, settings.port)
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None)
