"""One candidate's room session inside the gateway: peer connection, tracks, sampling,
results, score, answer turns, and a clean end that releases everything.

The gateway owns session state (the emotion score and the answer turn's clock included);
workers stay stateless. A session outlives its peer connection: when the page goes away
without ending the session (a reload, a network hiccup) the session is *detached* for
`resume_grace_s`; the same page (it holds the session's secret) can come back with a new
offer and gets the interview's history replayed. Sessions go

    created → connecting → live → [detached → resuming → connecting → live]* → ended
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRecorder, MediaRelay
from aiortc.mediastreams import MediaStreamError
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from stream import bus, contract
from stream.audio import AudioConverter
from stream.capture_clock import SenderReportClock, watch_sender_reports
from stream.jitter import MarkerJitterBuffer, ReleaseRule, install
from stream.sampler import FrameSampler, LatestFrameSlot, TokenBucket
from stream.score import EmotionScore
from stream.settings import GatewaySettings
from stream.stats import percentile
from stream.turns import AnswerTurn, TurnSettings
from stream.vad import (
    SpeechEnded,
    SpeechPaused,
    SpeechStarted,
    UtteranceAudio,
    VadSegmenter,
    VadSettings,
)

log = logging.getLogger(__name__)

#: How far a sender-report capture time may sit from the gateway's clock before we
#: distrust it (a browser on another machine with a badly set clock).
MAX_CLOCK_SKEW_MS = 10_000.0
PC_CLOSE_TIMEOUT_S = 5.0
#: Pings a page may send: a burst, then this rate; the rest get no pong.
PING_BURST = 10
PINGS_PER_S = 5.0
#: How often the answer turn's clock is checked, and how often the page hears it.
TURN_TICK_S = 0.25
TURN_STATUS_EVERY_S = 1.0
#: An utterance belongs to an answer turn when it starts no earlier than this before the
#: question was asked (the VAD keeps 300 ms of audio before speech).
TURN_PREROLL_MS = 500.0


#: Peer-connection teardowns still running: one slower than PC_CLOSE_TIMEOUT_S goes on
#: here after its session ended instead of being cancelled half-way.
_TEARDOWNS: set[asyncio.Task] = set()


class SessionError(Exception):
    """A request the session cannot honour; `status` is the HTTP status to answer."""

    retryable = False

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def new_session_id() -> str:
    return uuid.uuid4().hex[:16]


def encode_jpeg(frame: Any, max_side: int, quality: int) -> tuple[bytes, int, int]:
    """aiortc/PyAV video frame → JPEG bytes (downscaled so its longest side ≤ max_side)."""
    image = frame.to_ndarray(format="bgr24")
    height, width = image.shape[:2]
    if max(height, width) > max_side:
        scale = max_side / max(height, width)
        width, height = round(width * scale), round(height * scale)
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes(), width, height


async def close_peer_connection(pc: RTCPeerConnection, label: str) -> None:
    """Close `pc` to the end; never raises, and waits at most PC_CLOSE_TIMEOUT_S: a slower
    close is not cut off half-way but finishes in the background."""
    task = asyncio.create_task(_teardown(pc, label), name=f"pc-teardown-{label}")
    _TEARDOWNS.add(task)
    task.add_done_callback(_TEARDOWNS.discard)
    try:
        await asyncio.wait_for(asyncio.shield(task), PC_CLOSE_TIMEOUT_S)
    except TimeoutError:
        log.warning(
            "session %s: peer connection still closing after %.0f s; it goes on in the background",
            label,
            PC_CLOSE_TIMEOUT_S,
        )


async def _teardown(pc: RTCPeerConnection, label: str) -> None:
    # Exceptions are logged as text (repr): a log record holding the exception would hold
    # its traceback's frames, and through them the transports and the peer connection.
    sctp = pc.sctp
    if sctp is not None:
        # aiortc aborts the association on close but keeps its unsent and unacknowledged
        # chunks, and a retransmission (T3) already queued as a task runs after the DTLS
        # session is shut down: it dies with "SSL routines: protocol is shutdown", an
        # unretrieved task exception whose traceback holds the peer connection. Abort
        # first, with the backlog dropped, so a late retransmission has nothing to send.
        _drop_sctp_backlog(sctp)
        try:
            await sctp.stop()
        except Exception as exc:
            log.debug("session %s: SCTP abort: %s", label, repr(exc))
    try:
        await pc.close()
        return
    except Exception as exc:
        log.warning(
            "session %s: peer connection close failed (%s); stopping its transports one by one",
            label,
            repr(exc),
        )
    finally:
        _stop_decoders(pc, label)
    # aiortc's close stops at the first step that raises: stop what it did not reach.
    steps = [transceiver.stop for transceiver in pc.getTransceivers()]
    dtls = [transceiver.receiver.transport for transceiver in pc.getTransceivers()]
    if sctp is not None:
        steps.append(sctp.stop)
        dtls.append(sctp.transport)
    # bundled: one transport, several users; a rejected m-line (port 0) has none at all
    for transport in dict.fromkeys(t for t in dtls if t is not None):
        steps.append(transport.stop)
        if getattr(transport, "transport", None) is not None:
            steps.append(transport.transport.stop)
    for step in steps:
        try:
            await step()
        except Exception as exc:
            log.debug("session %s: %s: %s", label, getattr(step, "__qualname__", step), repr(exc))
    pc.remove_all_listeners()


def _stop_decoders(pc: RTCPeerConnection, label: str) -> None:
    """Stop every receiver's decoder thread, started or not. aiortc starts a receiver's
    (non-daemon) decoder thread before registering it with its transport; when that step
    fails (an offer whose m-line got no DTLS transport) the receiver never counts as
    started, its stop() skips the thread, and the thread keeps the process from exiting.
    `_handle_disconnect` is what aiortc itself calls on a lost transport: it stops the
    thread whatever the receiver's state, and does nothing when there is none."""
    for transceiver in pc.getTransceivers():
        try:
            transceiver.receiver._handle_disconnect()
        except Exception as exc:
            log.debug("session %s: stopping a decoder: %s", label, repr(exc))


def _drop_sctp_backlog(sctp: Any) -> None:
    """Forget an SCTP association's queued and in-flight data and stop its retransmission
    timer (aiortc 1.16 internals, each looked up defensively)."""
    for name in ("_outbound_queue", "_sent_queue", "_data_channel_queue"):
        queue = getattr(sctp, name, None)
        if queue is not None:
            queue.clear()
    if getattr(sctp, "_forward_tsn_chunk", None) is not None:
        sctp._forward_tsn_chunk = None
    cancel_t3 = getattr(sctp, "_t3_cancel", None)
    if cancel_t3 is not None:
        cancel_t3()


@dataclass
class SessionCounters:
    video_frames: int = 0
    audio_frames: int = 0
    results: int = 0
    no_face_results: int = 0
    late_results: int = 0
    utterances: int = 0
    #: Speculative parts sent at pauses (`_speculate`); not answers' parts (kept out of
    #: `as_dict`: the page's stats message has no such field).
    speculations: int = 0
    publish_errors: int = 0
    #: Data-channel messages from the page that were not a room request (ignored).
    refused_page_messages: int = 0
    #: Pings past the per-session rate (answered with nothing).
    pings_dropped: int = 0
    latency_ms: list[float] = field(default_factory=list)  # capture → result at gateway

    def as_dict(self, slot: LatestFrameSlot) -> dict[str, float]:
        p50 = percentile(self.latency_ms, 50)
        return {
            "video_frames": self.video_frames,
            "audio_frames": self.audio_frames,
            "frames_sampled": slot.counters.offered,
            "frames_sent": slot.counters.sent,
            "frames_dropped": slot.counters.dropped,
            "frames_timed_out": slot.counters.timed_out,
            "results": self.results,
            "no_face_results": self.no_face_results,
            "late_results": self.late_results,
            "utterances": self.utterances,
            "result_latency_p50_ms": 0.0 if p50 is None else round(p50, 1),
        }


class RoomSession:
    """A session from creation to its end; every resource it holds is released by `close`."""

    def __init__(
        self,
        session_id: str,
        nc: NATS,
        settings: GatewaySettings,
        executor: Executor,
        on_closed: Callable[[RoomSession], None],
        meta: dict[str, str] | None = None,
        vad_settings: VadSettings | None = None,
        rtc_config: RTCConfiguration | None = None,
        turn_settings: TurnSettings | None = None,
        on_video_frame_released: Callable[[ReleaseRule], None] | None = None,
    ) -> None:
        self.id = session_id
        #: Proof of ownership the page keeps (sessionStorage) to come back after a reload.
        self.secret = secrets.token_urlsafe(32)
        # No STUN/TURN unless configured: aiortc would otherwise reach for a public STUN server.
        self.rtc_config = rtc_config or RTCConfiguration(iceServers=[])
        self.nc = nc
        self.js = nc.jetstream()
        self.settings = settings
        self.executor = executor
        self.meta = meta or {}
        self._on_closed = on_closed
        self.state = "created"
        self.created_at = time.monotonic()
        self.last_media_at = self.created_at
        self.detached_at: float | None = None
        self.detach_reason = ""
        self.connections = 0
        self.pc: RTCPeerConnection | None = None
        self.recorder: MediaRecorder | None = None
        self._relay: MediaRelay | None = None
        self.channel: Any = None
        self.sampler = FrameSampler(settings.analysis_fps)
        self.slot: LatestFrameSlot[tuple[Any, float, str]] = LatestFrameSlot(
            max_in_flight=settings.max_in_flight
        )
        self.score = EmotionScore()
        self.capture_clock = SenderReportClock()
        self._pts_to_rtp: Callable[[int], int] | None = None
        self._on_video_frame_released = on_video_frame_released
        #: The marker jitter buffer of the current connection's video (None: aiortc's own).
        self.video_buffer: MarkerJitterBuffer | None = None
        self.counters = SessionCounters()
        #: Pongs are cheap but not free (a page could ask thousands a second).
        self._pings = TokenBucket(burst=PING_BURST, rate_per_s=PINGS_PER_S, max_keys=1)
        self._rates = _RateMeter()
        self._seq = 0
        self.vad_settings = vad_settings or VadSettings()
        self.turn_settings = turn_settings or TurnSettings()
        self.profile: contract.Profile | None = None
        self.speaking = False
        #: The answer turn open now, or the last one (ended).
        self.turn: AnswerTurn | None = None
        #: The last attempt the interviewer evaluated, and the requests sent for it.
        self.evaluated: tuple[int, int] | None = None
        self._requested: set[tuple[int, int]] = set()
        self._segmenter: VadSegmenter | None = None
        self._stream_t0_ms: float | None = None
        # an utterance is published and named in its turn under this lock, so a turn's end
        # (which takes it) lists every part that reached the bus
        self._utterance_lock = asyncio.Lock()
        self._kick = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()  # the session's own
        self._media_tasks: set[asyncio.Task] = set()  # one peer connection's
        self._result_sub = None
        self._closing: asyncio.Task | None = None
        self._detaching: asyncio.Task | None = None
        self.end_reason = ""
        self._spawn(self._watchdog(), "watchdog")
        self._spawn(self._turn_clock(), "turn-clock")

    # ---- lifecycle -------------------------------------------------------------------

    def _spawn(self, coro: Any, name: str, media: bool = False) -> asyncio.Task:
        task = asyncio.create_task(coro, name=f"session-{self.id}-{name}")
        tasks = self._media_tasks if media else self._tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return task

    def owned_by(self, secret: object) -> bool:
        """Whether `secret` is this session's (constant-time comparison)."""
        return isinstance(secret, str) and hmac.compare_digest(
            secret.encode("utf-8", "replace"), self.secret.encode()
        )

    async def answer(self, sdp: str, sdp_type: str) -> RTCSessionDescription:
        """Take the browser's offer, start receiving, and return our answer."""
        if self.state not in ("created", "resuming") or self.pc is not None:
            raise SessionError(f"session {self.id} already has a connection", 409)
        if sdp_type != "offer":
            raise SessionError(f"expected an SDP offer, got type {sdp_type!r}")
        if "m=video" not in sdp:
            raise SessionError("the offer has no video track (m=video line)")
        pc = RTCPeerConnection(self.rtc_config)
        # Known before the first await, so that a close() meanwhile (end beacon, offer
        # timeout, shutdown) closes it; every await below checks the session is still on.
        self.pc = pc
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=sdp_type))
        except Exception as exc:  # aiortc raises ValueError and friends on bad SDP
            if self.pc is pc:
                self.pc = None  # the session may still take a good offer
            await close_peer_connection(pc, self.id)
            self._raise_if_ended()
            raise SessionError(f"malformed SDP offer: {exc}") from exc
        self._raise_if_ended()
        resumed = self.state == "resuming"
        self.state = "connecting"
        self.connections += 1
        self.last_media_at = time.monotonic()  # ICE + DTLS take a moment before media
        pc.on("datachannel", lambda channel: self._on_datachannel(channel, pc, resumed))
        pc.on("connectionstatechange", lambda: self._on_connection_state(pc))
        recorder = self._recorder() if self.recorder is None else None
        for transceiver in pc.getTransceivers():
            track = transceiver.receiver.track
            if track is None:
                continue
            if recorder is not None:
                # One track, two readers: the analysis and the recording.
                self._relay = self._relay or MediaRelay()
                recorder.addTrack(self._relay.subscribe(track))
                track = self._relay.subscribe(track)
            if track.kind == "video":
                # a new connection has RTP timestamps of its own: a fresh capture clock
                self.capture_clock = SenderReportClock()
                self._pts_to_rtp = watch_sender_reports(transceiver.receiver, self.capture_clock)
                if self.settings.jitter_buffer == "marker":
                    # no RTP before our answer, so the receiver's buffer is still empty
                    self.video_buffer = install(transceiver.receiver, self._on_video_frame_released)
                self._spawn(self._consume_video(track, pc), "video", media=True)
            elif track.kind == "audio":
                self._spawn(self._consume_audio(track), "audio", media=True)
        if self._result_sub is None:
            subscription = await self.nc.subscribe(
                contract.session_events_wildcard(self.id), cb=self._on_event
            )
            if self.state == "ended":  # close() ran meanwhile and could not see it
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()
                self._raise_if_ended()
            self._result_sub = subscription
        self._spawn(self._publish_frames(), "publish", media=True)
        self._spawn(self._stats_loop(), "stats", media=True)
        if recorder is not None:
            await recorder.start()
            self.recorder = recorder
        try:
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except Exception as exc:
            self._raise_if_ended()
            await self.close("bad offer", "connection")
            raise SessionError(f"cannot answer the offer: {exc}") from exc
        self._raise_if_ended()
        if self.rtc_config.iceTransportPolicy.value == "relay" and (
            "typ relay" not in pc.localDescription.sdp
        ):
            # relay-only with no relayed candidate: the browser could never connect, so
            # say so now instead of letting the page wait for ICE to fail
            log.warning(
                "session %s: no relayed ICE candidate (is the TURN server reachable, and its "
                "secret the gateway's?)",
                self.id,
            )
            await self.close("no TURN relay", "connection")
            raise SessionError(
                "the media relay (TURN) is unreachable; the room cannot connect", 503
            )
        if not resumed:
            await self._publish_lifecycle("started")
        return pc.localDescription

    def _raise_if_ended(self) -> None:
        """For `answer`: the session ended while it awaited (close() released what it held)."""
        if self.state == "ended":
            raise SessionError(
                f"session {self.id} ended while its offer was answered ({self.end_reason})", 404
            )

    def _recorder(self) -> MediaRecorder | None:
        """Raw audio and video are stored only when recording is turned on
        (INTERVUE_GATEWAY_RECORD_DIR): then the session's media goes to <dir>/<id>.mkv."""
        if self.settings.record_dir is None:
            return None
        self.settings.record_dir.mkdir(parents=True, exist_ok=True)
        path = self.settings.record_dir / f"{self.id}.mkv"
        log.info("session %s: recording to %s", self.id, path)
        return MediaRecorder(str(path))

    def _on_datachannel(self, channel: Any, pc: RTCPeerConnection, resumed: bool) -> None:
        if pc is not self.pc:
            return  # a connection this session has already let go
        self.channel = channel

        @channel.on("message")
        def on_message(message: Any) -> None:
            if channel is not self.channel or not isinstance(message, str | bytes):
                return
            try:
                request = contract.decode_room_request(message)
            except contract.ContractError as exc:
                self.counters.refused_page_messages += 1
                log.debug("session %s: ignoring a page message: %s", self.id, exc)
                return
            self._on_request(request)

        @channel.on("close")
        def on_close() -> None:
            if channel is self.channel:
                self.detach_soon("data channel closed")

        def greet() -> None:
            self.send(
                contract.Hello(
                    session=self.id, analysis_fps=self.settings.analysis_fps, resumed=resumed
                )
            )
            if resumed:
                self._spawn(self._replay_history(), "replay")

        if channel.readyState == "open":
            greet()
        else:
            channel.once("open", greet)

    def _on_request(self, request: contract.RoomRequest) -> None:
        if isinstance(request, contract.Ping):
            if self._pings.allow("ping", time.monotonic()) > 0:
                self.counters.pings_dropped += 1
                return
            self.send(contract.Pong(t0=request.t0, server_ms=contract.now_ms()))
        elif isinstance(request, contract.Bye):
            self.close_soon("ended by the candidate", "candidate")
        elif isinstance(request, contract.DoneAnswering):
            turn = self.turn
            if turn is not None and turn.open and turn.key == (request.question, request.attempt):
                self._spawn(self.end_turn("done"), "turn-end")
        elif isinstance(request, contract.NextQuestion | contract.TryAgain):
            kind = "next" if isinstance(request, contract.NextQuestion) else "retry"
            self._spawn(self.request(kind, request.question, request.attempt), "request")

    def _on_connection_state(self, pc: RTCPeerConnection) -> None:
        if pc is not self.pc:
            return
        state = pc.connectionState
        log.info("session %s: connection %s", self.id, state)
        if state == "connected" and self.state == "connecting":
            self.state = "live"
            turn = self.turn
            if turn is not None and turn.open and turn.silence_since_ms is not None:
                # back from a reload: the silence is counted from now, not from before it
                turn.silence_since_ms = contract.now_ms()
        elif state in ("failed", "closed"):
            self.detach_soon(f"connection {state}")

    def close_soon(self, reason: str, code: contract.EndCode = "other") -> None:
        """Schedule `close` from a callback (idempotent)."""
        if self._closing is None:
            self._closing = asyncio.create_task(self.close(reason, code), name=f"close-{self.id}")

    def detach_soon(self, reason: str) -> None:
        """Schedule `detach` from a callback (idempotent per connection)."""
        if self.state in ("connecting", "live") and self._detaching is None:
            self._detaching = asyncio.create_task(self.detach(reason), name=f"detach-{self.id}")

    async def detach(self, reason: str) -> None:
        """The page went away without ending the session: let its connection go and wait
        `resume_grace_s` for it to come back (a reload) before ending the session."""
        if self.state not in ("connecting", "live"):
            return
        log.info(
            "session %s detached: %s (kept %.0f s for the page to come back)",
            self.id,
            reason,
            self.settings.resume_grace_s,
        )
        self.state = "detached"
        self.detached_at = time.monotonic()
        self.detach_reason = reason
        try:
            await self._release_connection()
        finally:
            self._detaching = None

    async def resume(self) -> None:
        """The session's page came back (it proved ownership): get ready for its offer."""
        if self.state == "ended":
            raise SessionError(f"unknown or ended session {self.id!r}", 404)
        if self.state in ("connecting", "live"):
            await self.detach("another page took the session over")
        elif self._detaching is not None:
            await asyncio.gather(self._detaching, return_exceptions=True)
        if self.state == "created":
            return  # it never connected: the first offer is still welcome
        self.state = "resuming"
        self.detached_at = time.monotonic()

    async def _release_connection(self) -> None:
        """Stop this connection's media tasks and close its peer connection."""
        current = asyncio.current_task()
        tasks = [t for t in self._media_tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.channel = None
        self.slot.waiting = None
        self.speaking = False
        pc, self.pc = self.pc, None
        if pc is not None:
            # aiortc's close waits for its RTCP loops; a peer that vanished mid-
            # handshake must not keep the session (and its slot) alive.
            await close_peer_connection(pc, self.id)

    async def close(self, reason: str, code: contract.EndCode = "other") -> None:
        """End the session: stop tasks, close the peer connection, persist the end."""
        if self.state == "ended":
            return
        previous = self.state
        self.state = "ended"
        self.end_reason = reason
        log.info("session %s ended: %s", self.id, reason)
        self.send(contract.SessionEnded(code=code, reason=reason))
        try:
            if self.turn is not None and self.turn.open:
                await self._finish_turn("session_end")
            current = asyncio.current_task()
            for task in list(self._tasks):
                if task is not current:
                    task.cancel()
            await asyncio.gather(
                *(t for t in self._tasks if t is not current), return_exceptions=True
            )
            await self._release_connection()
            if self._result_sub is not None:
                with contextlib.suppress(Exception):
                    await self._result_sub.unsubscribe()
                self._result_sub = None
            if self.recorder is not None:
                try:
                    await asyncio.wait_for(self.recorder.stop(), timeout=PC_CLOSE_TIMEOUT_S)
                except Exception as exc:  # a half-written file is still a file
                    log.warning("session %s: recording did not close cleanly: %s", self.id, exc)
                self.recorder = None
            if previous != "created":
                await self._publish_lifecycle("ended", reason)
        finally:
            self._on_closed(self)

    async def _watchdog(self) -> None:
        """Expire a session that never got an offer, detach one whose media stopped, end
        one whose page did not come back, and cap a session's length."""
        s = self.settings
        tick = min(1.0, s.media_timeout_s / 4, s.offer_timeout_s / 4, s.resume_grace_s / 4)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if self.state == "created":
                if now - self.created_at >= s.offer_timeout_s:
                    self.close_soon("no offer before the timeout", "no_offer")
                    return
            elif self.state in ("detached", "resuming"):
                if self.detached_at is not None and now - self.detached_at >= s.resume_grace_s:
                    self.close_soon(
                        f"the page did not come back within {s.resume_grace_s:.0f}s "
                        f"after: {self.detach_reason}",
                        "left",
                    )
                    return
            elif now - self.last_media_at >= s.media_timeout_s:
                self.detach_soon(f"no media for {s.media_timeout_s:.0f}s (browser gone?)")
            if now - self.created_at >= s.max_session_s:
                self.close_soon("maximum session length reached", "max_length")
                return

    # ---- media -----------------------------------------------------------------------

    async def _consume_video(self, track: MediaStreamTrack, pc: RTCPeerConnection) -> None:
        try:
            while True:
                frame = await track.recv()
                self.counters.video_frames += 1
                self.last_media_at = time.monotonic()
                if not self.sampler.should_sample(time.monotonic()):
                    continue
                received_ms = contract.now_ms()
                capture_ms, source = None, "gateway"
                if frame.pts is not None and self._pts_to_rtp is not None:
                    capture_ms = self.capture_clock.capture_ms(self._pts_to_rtp(frame.pts))
                if capture_ms is None or abs(capture_ms - received_ms) > MAX_CLOCK_SKEW_MS:
                    capture_ms = received_ms
                else:
                    source = "rtcp"
                self._seq += 1
                self.slot.offer(self._seq, (frame, capture_ms, source))
                self._kick.set()
        except MediaStreamError:
            if pc is self.pc:
                self.detach_soon("video track ended")

    async def _consume_audio(self, track: MediaStreamTrack) -> None:
        """48 kHz WebRTC audio → 16 kHz mono → VAD → utterances on the work queue.

        Resampling and webrtcvad cost microseconds per 20 ms frame, so they run inline;
        the utterance is published (and persisted) before the next frame is read."""
        converter = AudioConverter()
        segmenter = self._segmenter = VadSegmenter(self.vad_settings)
        stream_t0_ms: float | None = None
        try:
            while True:
                frame = await track.recv()
                self.counters.audio_frames += 1
                if stream_t0_ms is None:
                    stream_t0_ms = self._stream_t0_ms = contract.now_ms()
                try:
                    samples = converter.convert(frame)
                except ValueError as exc:
                    log.warning("session %s: unusable audio frame: %s", self.id, exc)
                    continue
                for event in segmenter.push(samples):
                    await self._on_vad_event(event, stream_t0_ms)
        except MediaStreamError:
            pass
        finally:
            # the connection ended (or was let go): what was being said is still an
            # utterance; published from a task of the session's own, so letting the
            # connection go cannot cancel it half-way
            if self._segmenter is segmenter:
                self._segmenter = None
            events = segmenter.flush()
            if events and self.state != "ended":
                t0 = stream_t0_ms or contract.now_ms()
                self._spawn(self._publish_vad_events(events, t0), "audio-flush")

    async def _publish_vad_events(self, events: list, stream_t0_ms: float) -> None:
        for event in events:
            await self._on_vad_event(event, stream_t0_ms)

    async def _on_vad_event(self, event: object, stream_t0_ms: float) -> None:
        now = contract.now_ms()
        if isinstance(event, SpeechStarted):
            await self._set_speaking(True, stream_t0_ms + event.start_ms)
        elif isinstance(event, SpeechPaused):
            await self._speculate(event.utterance, stream_t0_ms)
        elif isinstance(event, SpeechEnded):
            audio = event.utterance
            async with self._utterance_lock:
                turn = self._answer_turn(stream_t0_ms + audio.start_ms)
                utterance = self._utterance(audio, stream_t0_ms, now, turn)
                try:
                    await self.js.publish(
                        contract.utterances_subject(self.id), contract.encode(utterance)
                    )
                    self.counters.utterances += 1
                    if turn is not None:
                        turn.add_part(utterance.part_key)
                except Exception as exc:
                    self.counters.publish_errors += 1
                    log.warning("session %s: cannot queue utterance: %s", self.id, exc)
            if audio.final:
                await self._set_speaking(False, stream_t0_ms + audio.end_ms)

    def _answer_turn(self, start_ms: float) -> AnswerTurn | None:
        """The open answer turn that speech starting at `start_ms` belongs to, if any."""
        turn = self.turn if self.turn is not None and self.turn.open else None
        if turn is not None and start_ms < turn.opened_ms - TURN_PREROLL_MS:
            return None  # speech that began before the question was asked is not its answer
        return turn

    def _utterance(
        self,
        audio: UtteranceAudio,
        stream_t0_ms: float,
        cut_ms: float,
        turn: AnswerTurn | None,
        speculative: bool = False,
    ) -> contract.Utterance:
        return contract.Utterance(
            session=self.id,
            utterance_id=f"{self.id}-{audio.utterance_id}",
            part=audio.part,
            final=audio.final,
            start_ms=stream_t0_ms + audio.start_ms,
            end_ms=stream_t0_ms + audio.end_ms,
            cut_ms=cut_ms,
            pcm=audio.pcm.astype("<i2").tobytes(),
            language=self.profile.language if self.profile else "",
            question=turn.question if turn else -1,
            attempt=turn.attempt if turn else 0,
            speculative=speculative,
            speculation=audio.speculation,
        )

    async def _speculate(self, audio: UtteranceAudio, stream_t0_ms: float) -> None:
        """Send the answer so far at a pause, so that its transcript is ready (or under
        way) if the turn ends in this pause: a speculative part, never an answer's part.
        Only inside an open answer turn: elsewhere nobody waits for the words."""
        turn = self._answer_turn(stream_t0_ms + audio.start_ms)
        if turn is None:
            return
        now = contract.now_ms()
        utterance = self._utterance(audio, stream_t0_ms, now, turn, speculative=True)
        try:
            await self.js.publish(contract.utterances_subject(self.id), contract.encode(utterance))
            self.counters.speculations += 1
        except Exception as exc:  # a guess: the real part follows anyway
            log.debug("session %s: cannot send a speculative part: %s", self.id, exc)

    async def _set_speaking(self, speaking: bool, at_ms: float) -> None:
        self.speaking = speaking
        if self.turn is not None:
            self.turn.speech(speaking, min(at_ms, contract.now_ms()))
            self._send_turn()
        self.send(contract.SpeechUpdate(speaking=speaking, at_ms=at_ms))
        try:
            await bus.publish_event(
                self.js,
                contract.SpeechActivity(session=self.id, speaking=speaking, at_ms=at_ms),
                "speech",
            )
        except Exception as exc:
            log.warning("session %s: cannot persist speech activity: %s", self.id, exc)

    async def submit_profile(self, profile: contract.Profile) -> None:
        """The candidate's form: persisted for the interviewer, once per session."""
        if self.profile is not None:
            raise SessionError("this session already has a profile", 409)
        self.profile = profile
        await bus.publish_event(self.js, profile, "profile")

    async def _publish_frames(self) -> None:
        loop = asyncio.get_running_loop()
        subject = contract.frames_subject(self.id)
        timeout = self.settings.result_timeout_s
        while True:
            self.slot.expire(time.monotonic(), timeout)
            taken = self.slot.take(time.monotonic())
            if taken is None:
                self._kick.clear()
                # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the result
                # when the kick and a cancel land in the same loop turn, swallowing the
                # cancel, and close() then waits for this task forever
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout / 4):
                        await self._kick.wait()
                continue
            seq, (frame, capture_ms, source) = taken
            try:
                jpeg, width, height = await loop.run_in_executor(
                    self.executor,
                    encode_jpeg,
                    frame,
                    self.settings.max_frame_side,
                    self.settings.jpeg_quality,
                )
            except Exception as exc:
                log.warning("session %s: cannot encode frame %d: %s", self.id, seq, exc)
                self.slot.complete(seq)
                continue
            message = contract.Frame(
                session=self.id,
                seq=seq,
                capture_ms=capture_ms,
                capture_source=source,
                sent_ms=contract.now_ms(),
                width=width,
                height=height,
                jpeg=jpeg,
            )
            try:
                await self.nc.publish(subject, contract.encode(message))
            except Exception as exc:
                self.counters.publish_errors += 1
                log.warning("session %s: cannot publish frame %d: %s", self.id, seq, exc)
                self.slot.complete(seq)

    # ---- answer turns ------------------------------------------------------------------

    def _open_turn(self, question: int, attempt: int) -> None:
        turn = self.turn
        if turn is not None and turn.key == (question, attempt):
            return  # the same step again (a replay)
        if turn is not None and turn.open:
            log.warning(
                "session %s: question %d asked while answer %s was open; closing it",
                self.id,
                question,
                turn.key,
            )
            self._spawn(self.end_turn("done"), "turn-end")
        # speech that began before the question does not count as having answered
        self.turn = AnswerTurn(
            self.turn_settings, question, attempt, contract.now_ms(), speaking=self.speaking
        )
        self._send_turn()

    async def end_turn(self, reason: contract.TurnEndReason) -> None:
        """End the open answer turn: cut what is being said now, then publish the end."""
        if self.turn is None or not self.turn.open:
            return
        await self._finish_turn(reason)

    async def _finish_turn(self, reason: contract.TurnEndReason) -> None:
        turn = self.turn
        # the last words are cut now, not after the VAD's end silence: when the turn is
        # known to be over there is nothing left to wait for
        segmenter, t0 = self._segmenter, self._stream_t0_ms
        if segmenter is not None and t0 is not None:
            await self._publish_vad_events(segmenter.flush(), t0)
        async with self._utterance_lock:
            if not turn.open:
                return
            turn.end(reason, contract.now_ms())
        self._send_turn()
        if reason == "session_end" and not turn.parts:
            return  # nothing was said: there is no answer to keep
        try:
            await bus.publish_event(self.js, turn.ended_event(self.id), "turn")
        except Exception as exc:
            self.counters.publish_errors += 1
            log.warning(
                "session %s: cannot persist the end of answer %s: %s", self.id, turn.key, exc
            )

    async def request(self, kind: str, question: int, attempt: int) -> None:
        """The candidate's Next / Try again on the card of `(question, attempt)`: passed to
        the interviewer once, and only for the attempt it has evaluated last."""
        key = (question, attempt)
        if key != self.evaluated or key in self._requested:
            return  # a stale or repeated press
        self._requested.add(key)
        message = contract.CandidateRequest(
            session=self.id,
            request=kind,  # type: ignore[arg-type]
            question=question,
            attempt=attempt,
            at_ms=contract.now_ms(),
        )
        try:
            await bus.publish_event(self.js, message, "request")
        except Exception as exc:
            self._requested.discard(key)
            log.warning("session %s: cannot pass on the candidate's %s: %s", self.id, kind, exc)

    async def _auto_advance(self, key: tuple[int, int]) -> None:
        await asyncio.sleep(self.turn_settings.auto_advance_s)
        await self.request("next", *key)

    async def _turn_clock(self) -> None:
        """End the open turn at a long silence or the time cap; keep the page's clock."""
        last_status = 0.0
        last_flags: tuple[bool, bool] | None = None
        while True:
            await asyncio.sleep(TURN_TICK_S)
            turn = self.turn
            if turn is None or not turn.open:
                continue
            now = contract.now_ms()
            reason = turn.due(now, listening=self.state == "live")
            if reason is not None:
                await self.end_turn(reason)
                continue
            status = turn.status(now)
            flags = (status.countdown, status.silence_hint)
            if flags != last_flags or time.monotonic() - last_status >= TURN_STATUS_EVERY_S:
                self.send(status)
                last_status, last_flags = time.monotonic(), flags

    def _send_turn(self) -> None:
        if self.turn is not None:
            self.send(self.turn.status(contract.now_ms()))

    async def _replay_history(self) -> None:
        """A page that came back gets the interview so far: every step (progress
        included: a step still being written shows its clock) and caption."""
        kinds = ("interview", "progress", "transcript")
        events = []
        for kind in kinds:
            events += await bus.read_events(
                self.js, contract.event_subject(self.id, kind), idle_timeout_s=1.0
            )
        for event in sorted(events, key=lambda e: e.seq):
            message = event.message
            if isinstance(message, contract.InterviewEvent):
                self.send(_interview_update(message, replay=True))
            elif isinstance(message, contract.Transcript) and message.text.strip():
                self.send(_transcript_update(message, replay=True))
        self._send_turn()

    # ---- results ---------------------------------------------------------------------

    async def _on_event(self, msg: Msg) -> None:
        """Every event of this session on the bus: results drive the score; the
        interviewer's steps and transcripts are forwarded to the page."""
        try:
            message = contract.decode(msg.data)
        except contract.ContractError as exc:
            log.warning("session %s: bad event on %s: %s", self.id, msg.subject, exc)
            return
        if isinstance(message, contract.EmotionResult):
            await self._on_result(message)
        elif isinstance(message, contract.InterviewEvent):
            self._on_step(message)
            self.send(_interview_update(message))
        elif isinstance(message, contract.Transcript):
            if message.text.strip():  # an empty part is bookkeeping, never shown
                self.send(_transcript_update(message))

    def _on_step(self, event: contract.InterviewEvent) -> None:
        data = event.data
        if isinstance(data, contract.AskedStep):
            self._open_turn(data.index, data.attempt)
        elif isinstance(data, contract.EvaluatedStep):
            key = (data.index, data.attempt)
            self.evaluated = key
            if self.turn_settings.auto_advance_s > 0 and self.state != "ended":
                self.send(
                    contract.AutoAdvance(
                        question=key[0],
                        attempt=key[1],
                        in_ms=self.turn_settings.auto_advance_s * 1000.0,
                    )
                )
                self._spawn(self._auto_advance(key), "auto-advance")
        elif isinstance(data, contract.ReportStep):
            self.evaluated = None

    async def _on_result(self, result: contract.EmotionResult) -> None:
        if not self.slot.complete(result.seq):
            self.counters.late_results += 1
        self._kick.set()
        self.counters.results += 1
        arrived_ms = contract.now_ms()
        self.counters.latency_ms.append(arrived_ms - result.capture_ms)
        if len(self.counters.latency_ms) > 2000:
            del self.counters.latency_ms[:1000]
        counted = False
        if result.no_face:
            self.counters.no_face_results += 1
        else:
            counted = self.score.add_result(
                result.capture_ms, [face.label for face in result.faces]
            )
        self.send(
            contract.EmotionUpdate(
                seq=result.seq,
                width=result.width,
                height=result.height,
                faces=[_page_face(f) for f in result.faces],
                capture_ms=result.capture_ms,
                capture_source=result.capture_source,
                gateway_ms=arrived_ms,
                timings=result.timings,
                score=self.score.score,
                band=self.score.band,
                faces_seen=self.score.faces_seen,
                counted=counted,
            )
        )
        if counted:
            update = contract.ScoreUpdate(
                session=self.id,
                seq=result.seq,
                score=self.score.score,
                band=self.score.band,
                faces_seen=self.score.faces_seen,
                positive=self.score.positive,
                negative=self.score.negative,
                at_ms=arrived_ms,
            )
            try:
                await bus.publish_event(self.js, update, "score")
            except Exception as exc:
                self.counters.publish_errors += 1
                log.warning("session %s: cannot persist score: %s", self.id, exc)

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            self.send(contract.RoomStats(**self.stats(), **self._rates.rates(self.counters)))

    # ---- helpers ---------------------------------------------------------------------

    def stats(self) -> dict[str, float]:
        return self.counters.as_dict(self.slot)

    def send(self, message: contract.PageMessage) -> None:
        channel = self.channel
        if channel is not None and channel.readyState == "open":
            try:
                channel.send(contract.encode_page(message))
            except Exception as exc:  # the transport went away under us
                log.debug("session %s: data channel send failed: %s", self.id, exc)

    async def _publish_lifecycle(self, event: str, reason: str = "") -> None:
        message = contract.SessionEvent(
            session=self.id,
            event=event,
            at_ms=contract.now_ms(),
            reason=reason,
            stats=self.stats() if event == "ended" else {},
            meta=self.meta,
        )
        try:
            await bus.publish_event(self.js, message, "lifecycle")
        except Exception as exc:
            log.warning("session %s: cannot persist %s event: %s", self.id, event, exc)

    def describe(self) -> dict:
        return {
            "session_id": self.id,
            "state": self.state,
            "score": self.score.score,
            "band": self.score.band,
            "stats": self.stats(),
        }


class _RateMeter:
    """Camera and analysis frame rates over the interval between two readings."""

    def __init__(self) -> None:
        self._last: tuple[float, int, int] | None = None

    def rates(self, counters: SessionCounters) -> dict[str, float]:
        now = time.monotonic()
        last, self._last = self._last, (now, counters.video_frames, counters.results)
        if last is None or now <= last[0]:
            return {"camera_fps": 0.0, "analysed_fps": 0.0}
        dt = now - last[0]
        return {
            "camera_fps": round((counters.video_frames - last[1]) / dt, 1),
            "analysed_fps": round((counters.results - last[2]) / dt, 1),
        }


def _page_face(face: contract.Face) -> contract.PageFace:
    return contract.PageFace(
        box=face.box,
        label=face.label,
        confidence=face.confidence,
        probs=face.probs,
        valence=face.valence,
    )


def _interview_update(
    event: contract.InterviewEvent, replay: bool = False
) -> contract.InterviewUpdate:
    return contract.InterviewUpdate(
        step=event.step, data=event.data, at_ms=event.at_ms, replay=replay
    )


def _transcript_update(
    message: contract.Transcript, replay: bool = False
) -> contract.TranscriptUpdate:
    return contract.TranscriptUpdate(
        utterance_id=message.utterance_id,
        part=message.part,
        final=message.final,
        text=message.text,
        language=message.language,
        metrics=message.metrics,
        latency_ms=round(message.done_ms - message.cut_ms, 1),
        question=message.question,
        attempt=message.attempt,
        replay=replay,
    )
