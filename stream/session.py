"""One candidate's room session inside the gateway: peer connection, tracks, sampling,
results, score, and a clean end that releases everything.

The gateway owns session state (the emotion score included); workers stay stateless.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
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
from stream.sampler import FrameSampler, LatestFrameSlot
from stream.score import EmotionScore
from stream.settings import GatewaySettings
from stream.vad import SpeechEnded, SpeechStarted, VadSegmenter, VadSettings

log = logging.getLogger(__name__)

#: How far a sender-report capture time may sit from the gateway's clock before we
#: distrust it (a browser on another machine with a badly set clock).
MAX_CLOCK_SKEW_MS = 10_000.0
PC_CLOSE_TIMEOUT_S = 5.0

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
    # aiortc's close stops at the first step that raises: stop what it did not reach.
    steps = [transceiver.stop for transceiver in pc.getTransceivers()]
    dtls = [transceiver.receiver.transport for transceiver in pc.getTransceivers()]
    if sctp is not None:
        steps.append(sctp.stop)
        dtls.append(sctp.transport)
    for transport in dict.fromkeys(dtls):  # bundled: one transport, several users
        steps += [transport.stop, transport.transport.stop]
    for step in steps:
        try:
            await step()
        except Exception as exc:
            log.debug("session %s: %s: %s", label, getattr(step, "__qualname__", step), repr(exc))
    pc.remove_all_listeners()


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
    publish_errors: int = 0
    latency_ms: list[float] = field(default_factory=list)  # capture → result at gateway

    def as_dict(self, slot: LatestFrameSlot) -> dict[str, float]:
        lat = sorted(self.latency_ms)
        p50 = lat[len(lat) // 2] if lat else 0.0
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
            "result_latency_p50_ms": round(p50, 1),
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
    ) -> None:
        self.id = session_id
        # No STUN/TURN unless configured: aiortc would otherwise reach for a public STUN server.
        self.rtc_config = rtc_config or RTCConfiguration(iceServers=[])
        self.nc = nc
        self.js = nc.jetstream()
        self.settings = settings
        self.executor = executor
        self.meta = meta or {}
        self._on_closed = on_closed
        self.state = "created"  # created → connecting → live → ended
        self.created_at = time.monotonic()
        self.last_media_at = self.created_at
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
        self.counters = SessionCounters()
        self._seq = 0
        self.vad_settings = vad_settings or VadSettings()
        self.profile: contract.Profile | None = None
        self.speaking = False
        self._kick = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._result_sub = None
        self._closing: asyncio.Task | None = None
        self.end_reason = ""
        self._spawn(self._watchdog(), "watchdog")

    # ---- lifecycle -------------------------------------------------------------------

    def _spawn(self, coro: Any, name: str) -> asyncio.Task:
        task = asyncio.create_task(coro, name=f"session-{self.id}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def answer(self, sdp: str, sdp_type: str) -> RTCSessionDescription:
        """Take the browser's offer, start receiving, and return our answer."""
        if self.state != "created" or self.pc is not None:
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
        self.state = "connecting"
        self.last_media_at = time.monotonic()  # ICE + DTLS take a moment before media
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_connection_state)
        recorder = self._recorder()
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
                self._pts_to_rtp = watch_sender_reports(transceiver.receiver, self.capture_clock)
                self._spawn(self._consume_video(track), "video")
            elif track.kind == "audio":
                self._spawn(self._consume_audio(track), "audio")
        subscription = await self.nc.subscribe(
            contract.session_events_wildcard(self.id), cb=self._on_event
        )
        if self.state == "ended":  # close() ran meanwhile and could not see it
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
            self._raise_if_ended()
        self._result_sub = subscription
        self._spawn(self._publish_frames(), "publish")
        self._spawn(self._stats_loop(), "stats")
        if recorder is not None:
            await recorder.start()
            self.recorder = recorder
        try:
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except Exception as exc:
            self._raise_if_ended()
            await self.close("bad offer")
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
            await self.close("no TURN relay")
            raise SessionError(
                "the media relay (TURN) is unreachable; the room cannot connect", 503
            )
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

    def _on_datachannel(self, channel: Any) -> None:
        self.channel = channel
        self.send({"type": "hello", "session": self.id, "analysis_fps": self.settings.analysis_fps})

        @channel.on("message")
        def on_message(message: Any) -> None:
            if not isinstance(message, str):
                return
            try:
                data = json.loads(message)
            except ValueError:
                return
            if data.get("type") == "ping":
                self.send({"type": "pong", "t0": data.get("t0"), "server_ms": contract.now_ms()})
            elif data.get("type") == "bye":
                self.close_soon("browser said bye")

        @channel.on("close")
        def on_close() -> None:
            self.close_soon("data channel closed")

        if channel.readyState == "open":
            self.send({"type": "hello", "session": self.id})

    async def _on_connection_state(self) -> None:
        state = self.pc.connectionState if self.pc else "closed"
        log.info("session %s: connection %s", self.id, state)
        if state == "connected" and self.state == "connecting":
            self.state = "live"
        elif state in ("failed", "closed"):
            self.close_soon(f"connection {state}")

    def close_soon(self, reason: str) -> None:
        """Schedule `close` from a callback (idempotent)."""
        if self._closing is None:
            self._closing = asyncio.create_task(self.close(reason), name=f"close-{self.id}")

    async def close(self, reason: str) -> None:
        """End the session: stop tasks, close the peer connection, persist the end."""
        if self.state == "ended":
            return
        previous = self.state
        self.state = "ended"
        self.end_reason = reason
        log.info("session %s ended: %s", self.id, reason)
        self.send({"type": "ended", "reason": reason})
        current = asyncio.current_task()
        try:
            for task in list(self._tasks):
                if task is not current:
                    task.cancel()
            await asyncio.gather(
                *(t for t in self._tasks if t is not current), return_exceptions=True
            )
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
            self.channel = None
            if self.pc is not None:
                # aiortc's close waits for its RTCP loops; a peer that vanished mid-
                # handshake must not keep the session (and its slot) alive.
                pc, self.pc = self.pc, None
                await close_peer_connection(pc, self.id)
            self.slot.waiting = None
            if previous != "created":
                await self._publish_lifecycle("ended", reason)
        finally:
            self._on_closed(self)

    async def _watchdog(self) -> None:
        """Expire a session that never got an offer, end one whose media stopped, and
        cap a session's length."""
        s = self.settings
        tick = min(1.0, s.media_timeout_s / 4, s.offer_timeout_s / 4)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if self.state == "created":
                if now - self.created_at >= s.offer_timeout_s:
                    self.close_soon("no offer before the timeout")
                    return
            elif now - self.last_media_at >= s.media_timeout_s:
                self.close_soon(f"no media for {s.media_timeout_s:.0f}s (browser gone?)")
                return
            if now - self.created_at >= s.max_session_s:
                self.close_soon("maximum session length reached")
                return

    # ---- media -----------------------------------------------------------------------

    async def _consume_video(self, track: MediaStreamTrack) -> None:
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
            self.close_soon("video track ended")

    async def _consume_audio(self, track: MediaStreamTrack) -> None:
        """48 kHz WebRTC audio → 16 kHz mono → VAD → utterances on the work queue.

        Resampling and webrtcvad cost microseconds per 20 ms frame, so they run inline;
        the utterance is published (and persisted) before the next frame is read."""
        converter = AudioConverter()
        segmenter = VadSegmenter(self.vad_settings)
        stream_t0_ms: float | None = None
        try:
            while True:
                frame = await track.recv()
                self.counters.audio_frames += 1
                if stream_t0_ms is None:
                    stream_t0_ms = contract.now_ms()
                try:
                    samples = converter.convert(frame)
                except ValueError as exc:
                    log.warning("session %s: unusable audio frame: %s", self.id, exc)
                    continue
                for event in segmenter.push(samples):
                    await self._on_vad_event(event, stream_t0_ms)
        except MediaStreamError:
            for event in segmenter.flush():
                await self._on_vad_event(event, stream_t0_ms or contract.now_ms())

    async def _on_vad_event(self, event: object, stream_t0_ms: float) -> None:
        now = contract.now_ms()
        if isinstance(event, SpeechStarted):
            await self._set_speaking(True, stream_t0_ms + event.start_ms)
        elif isinstance(event, SpeechEnded):
            audio = event.utterance
            utterance = contract.Utterance(
                session=self.id,
                utterance_id=f"{self.id}-{audio.utterance_id}",
                part=audio.part,
                final=audio.final,
                start_ms=stream_t0_ms + audio.start_ms,
                end_ms=stream_t0_ms + audio.end_ms,
                cut_ms=now,
                pcm=audio.pcm.astype("<i2").tobytes(),
                language=self.profile.language if self.profile else "",
            )
            try:
                await self.js.publish(
                    contract.utterances_subject(self.id), contract.encode(utterance)
                )
                self.counters.utterances += 1
            except Exception as exc:
                self.counters.publish_errors += 1
                log.warning("session %s: cannot queue utterance: %s", self.id, exc)
            if audio.final:
                await self._set_speaking(False, stream_t0_ms + audio.end_ms)

    async def _set_speaking(self, speaking: bool, at_ms: float) -> None:
        self.speaking = speaking
        self.send({"type": "speech", "speaking": speaking, "at_ms": at_ms})
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
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), timeout=timeout / 4)
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
            self.send({"type": "interview", "step": message.step, "data": message.data})
        elif isinstance(message, contract.Transcript):
            self.send(
                {
                    "type": "transcript",
                    "text": message.text,
                    "language": message.language,
                    "metrics": message.metrics,
                    "final": message.final,
                    "latency_ms": round(message.done_ms - message.cut_ms, 1),
                }
            )

    async def _on_result(self, result: contract.EmotionResult) -> None:
        if not self.slot.complete(result.seq):
            self.counters.late_results += 1
        self._kick.set()
        self.counters.results += 1
        arrived_ms = contract.now_ms()
        self.counters.latency_ms.append(arrived_ms - result.capture_ms)
        if len(self.counters.latency_ms) > 2000:
            del self.counters.latency_ms[:1000]
        if result.no_face:
            self.counters.no_face_results += 1
        else:
            self.score.add_faces(face.label for face in result.faces)
        self.send(
            {
                "type": "emotion",
                "seq": result.seq,
                "width": result.width,
                "height": result.height,
                "faces": [_face_json(f) for f in result.faces],
                "capture_ms": result.capture_ms,
                "capture_source": result.capture_source,
                "gateway_ms": arrived_ms,
                "timings": result.timings,
                "score": self.score.score,
                "band": self.score.band,
                "faces_seen": self.score.faces_seen,
            }
        )
        if result.faces:
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
            self.send({"type": "stats", **self.stats()})

    # ---- helpers ---------------------------------------------------------------------

    def stats(self) -> dict[str, float]:
        return self.counters.as_dict(self.slot)

    def send(self, data: dict) -> None:
        channel = self.channel
        if channel is not None and channel.readyState == "open":
            try:
                channel.send(json.dumps(data))
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


def _face_json(face: contract.Face) -> dict:
    return {
        "box": list(face.box),
        "label": face.label,
        "confidence": face.confidence,
        "probs": face.probs,
        "valence": face.valence,
    }
