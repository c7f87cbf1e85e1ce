"""The load harness: synthetic candidates that act as the room page, for `intervue bench
load` (deploy/bench/load.py) and the fault suites (tests/test_faults.py).

Each candidate is what the room page (`stream/static/room.js`) is, played by aiortc
instead of a browser:

* ``POST /api/sessions`` with the room and its invitation token (none in dev mode), an
  ``RTCPeerConnection`` with a data channel ``results``, a camera track and a microphone
  track, the SDP offer after ICE gathering to ``/api/sessions/{id}/offer``, and the
  profile (``/api/sessions/{id}/profile``, English) once the data channel opens;
* the camera: 640×480 frames of a real face (scikit-image's astronaut photo, drifting a
  few pixels per frame: `deploy.bench.media.face_frames`) at ``fps`` (15 by default), each
  frame stamped with its capture time on this process's wall clock (``pts`` in 90 kHz
  ticks from the track's start), so RTCP sender reports map RTP timestamps to it;
* the microphone: a sentence spoken by espeak-ng (generated here, 48 kHz mono), repeated
  every ``speech_every_s`` seconds with silence in between; each start is offset at random
  so the sessions do not speak in lockstep;
* the interview, played as a person would: once it has spoken in an open answer turn and
  falls silent, it presses *Done answering* (``done``), and when the evaluation arrives it
  presses *Next question* (``next``) — the data channel's typed messages
  (`stream.contract.RoomRequest`);
* at the end: ``{"type": "bye"}`` on the data channel, ``POST /end`` (the page's beacon),
  and the peer connection closed.

The data channel is spoken only through `stream.contract`'s structs (`decode_page`,
`encode_room_request`), as the checked-in stream/static/protocol.schema.json describes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from stream import contract

log = logging.getLogger(__name__)

VIDEO_CLOCK_HZ = 90_000
AUDIO_RATE = 48_000
AUDIO_PTIME_S = 0.020
SPEECH_TEXT = (
    "I built a Python service with a PostgreSQL database, and I cut its latency by thirty percent."
)
SELF_INTRO = (
    "I am a backend engineer with two years of experience. I built the Orion search "
    "service with Python, PostgreSQL and Kubernetes and cut its latency by thirty percent."
)
#: Silence after a clip before it counts as a finished utterance (the VAD needs 0.8 s).
UTTERANCE_TAIL_S = 1.2


class LoadError(RuntimeError):
    """The harness cannot run (missing tool, unreachable gateway, bad arguments)."""

    retryable = False


# ---------------------------------------------------------------------------------------
# media


def speech_clip(text: str = SPEECH_TEXT, voice: str = "en-us", rate: int = AUDIO_RATE):
    """`text` spoken by espeak-ng, as mono int16 samples at `rate` Hz."""
    from deploy.fake_media import espeak_samples

    try:
        return espeak_samples(text, voice, 150, rate)
    except (RuntimeError, ValueError) as exc:  # not installed, no such voice, it failed
        raise LoadError(f"the synthetic candidates' speech: {exc}") from exc


def camera_frames(count: int = 30) -> list[np.ndarray]:
    """640×480 frames of a real face as yuv420p arrays, played forwards then backwards so
    the loop has no jump."""
    import av
    import cv2

    from deploy.bench.media import face_frames

    images = [
        cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR) for j in face_frames(count)
    ]
    planes = [
        av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p").to_ndarray()
        for img in images
    ]
    return planes + planes[-2:0:-1]


def _sender_state(sender: Any) -> tuple[int, int] | None:
    """(NTP timestamp, RTP timestamp) of the last packet the aiortc sender sent."""
    ntp = getattr(sender, "_RTCRtpSender__ntp_timestamp", None)
    rtp = getattr(sender, "_RTCRtpSender__rtp_timestamp", None)
    if not ntp or rtp is None:
        return None
    return ntp, rtp


def _ntp_to_ms(ntp: int) -> float:
    return ((ntp >> 32) - 2208988800 + (ntp & 0xFFFFFFFF) / float(1 << 32)) * 1000.0


def _media_track_base():  # aiortc imported lazily: `intervue --help` stays fast
    from aiortc import MediaStreamTrack

    return MediaStreamTrack


def make_camera(frames: list[np.ndarray], fps: float):
    """A video track that plays `frames` at `fps` with wall-clock capture timestamps."""
    import av
    from aiortc.mediastreams import MediaStreamError

    class SyntheticCamera(_media_track_base()):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self.interval = 1.0 / fps
            self.sender: Any = None
            self.t0: float | None = None
            self.index = -1
            self.frames_sent = 0
            self.frames_skipped = 0  # the harness was late: a real camera would drop them
            self.encode_delay_ms: list[float] = []
            self._last_capture: float | None = None
            self._last_rtp: int | None = None

        def _note_sent(self) -> None:
            # The sender encodes and sends frame k before it asks for frame k+1, so its
            # last packet now is frame k's: its NTP stamp minus k's capture time is the
            # encoder hand-off delay that sender-report mapping adds to capture times.
            state = _sender_state(self.sender) if self.sender is not None else None
            if state is None or self._last_capture is None:
                return
            ntp, rtp = state
            if rtp != self._last_rtp:
                self._last_rtp = rtp
                delay = _ntp_to_ms(ntp) - self._last_capture * 1000.0
                if 0 <= delay < 5000:
                    self.encode_delay_ms.append(delay)
                    if len(self.encode_delay_ms) > 4000:
                        del self.encode_delay_ms[:2000]

        async def recv(self):  # type: ignore[override]
            if self.readyState != "live":
                raise MediaStreamError
            now = time.time()
            if self.t0 is None:
                self.t0 = now
                self.index = 0
            else:
                self.index += 1
                due = self.t0 + self.index * self.interval
                if due > now:
                    await asyncio.sleep(due - now)
                elif now - due > self.interval:
                    behind = int((now - due) / self.interval)
                    self.frames_skipped += behind
                    self.index += behind
            self._note_sent()
            captured = time.time()
            frame = av.VideoFrame.from_ndarray(frames[self.index % len(frames)], format="yuv420p")
            frame.pts = round((captured - self.t0) * VIDEO_CLOCK_HZ)
            frame.time_base = fractions.Fraction(1, VIDEO_CLOCK_HZ)
            self._last_capture = captured
            self.frames_sent += 1
            return frame

    return SyntheticCamera()


def make_microphone(clip: np.ndarray, every_s: float, offset_s: float):
    """An audio track that plays `clip` every `every_s` seconds (first after `offset_s`),
    silence otherwise; `quiet()` lets a clip in progress finish, then silence only."""
    import av
    from aiortc.mediastreams import MediaStreamError

    samples_per_frame = int(AUDIO_RATE * AUDIO_PTIME_S)
    clip_frames = math.ceil(clip.size / samples_per_frame)
    padded = np.zeros(clip_frames * samples_per_frame, np.int16)
    padded[: clip.size] = clip
    period_frames = max(
        round(every_s / AUDIO_PTIME_S), clip_frames + math.ceil(UTTERANCE_TAIL_S / AUDIO_PTIME_S)
    )
    silence = bytes(2 * samples_per_frame)

    class SyntheticMicrophone(_media_track_base()):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self.t0: float | None = None
            self._sent = 0
            self.frame_index = -round(offset_s / AUDIO_PTIME_S)  # negative: lead silence
            self.clips_started = 0
            self.clips_done = 0
            self._quiet = False
            self._muted = False

        def quiet(self) -> None:
            """Let a clip in progress finish; no new clip starts."""
            self._quiet = True

        def _chunk(self) -> bytes:
            index = self.frame_index
            self.frame_index += 1
            if index < 0 or self._muted:
                return silence
            phase = index % period_frames
            if phase == 0:
                if self._quiet:
                    self._muted = True
                    return silence
                self.clips_started += 1
            if phase == clip_frames:
                self.clips_done += 1
            if phase >= clip_frames:
                return silence
            start = phase * samples_per_frame
            return padded[start : start + samples_per_frame].astype("<i2").tobytes()

        async def recv(self):  # type: ignore[override]
            if self.readyState != "live":
                raise MediaStreamError
            if self.t0 is None:
                self.t0 = time.time()
            else:
                self._sent += samples_per_frame
                wait = self.t0 + self._sent / AUDIO_RATE - time.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            frame = av.AudioFrame(format="s16", layout="mono", samples=samples_per_frame)
            frame.planes[0].update(self._chunk())
            frame.pts = self._sent
            frame.sample_rate = AUDIO_RATE
            frame.time_base = fractions.Fraction(1, AUDIO_RATE)
            return frame

    return SyntheticMicrophone()


def force_loopback_ice() -> None:
    """Make aiortc (aioice) in this process offer only 127.0.0.1 host candidates, so media
    never uses another interface (tests, and the harness's ``loopback_ice`` option)."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


# ---------------------------------------------------------------------------------------
# one synthetic candidate


@dataclass
class ResultSample:
    arrival_ms: float
    glass_ms: float | None  # None: capture time was the gateway's receive time
    face: bool
    #: The part of it after the gateway had the result (data channel back to the candidate).
    back_ms: float | None = None


@dataclass
class CandidateStats:
    index: int
    session: str = ""
    error: str = ""
    ended: str = ""
    connected_at: float | None = None
    results: list[ResultSample] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)
    transcripts: list[str] = field(default_factory=list)
    steps: dict[str, int] = field(default_factory=dict)
    create_attempts: int = 0
    rate_limited: int = 0


class Candidate:
    """One synthetic candidate: the room page's HTTP calls and WebRTC, no browser."""

    def __init__(
        self,
        index: int,
        http: Any,
        base_url: str,
        room: str,
        token: str,
        camera: Any,
        microphone: Any,
        *,
        language: str = "en",
        send_profile: bool = True,
    ) -> None:
        self.index = index
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.room, self.token = room, token
        self.secret: str | None = None
        self.camera, self.microphone = camera, microphone
        self.language = language
        self.send_profile = send_profile
        self.out = CandidateStats(index)
        self.pc: Any = None
        self.channel: Any = None
        self.turn: contract.TurnUpdate | None = None
        self.open = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()

    async def _post(self, path: str, body: dict) -> tuple[int, dict, dict]:
        # every call on the session proves it is ours (the gateway answers 403 otherwise)
        headers = {"X-Session-Secret": self.secret} if self.secret else {}
        async with self.http.post(self.base_url + path, json=body, headers=headers) as response:
            try:
                data = await response.json(content_type=None)
            except ValueError:
                data = {}
            return response.status, data if isinstance(data, dict) else {}, response.headers

    async def create(self, deadline: float) -> None:
        """POST /api/sessions, waiting out 429 answers (Retry-After) until `deadline`."""
        body = {
            "room": self.room,
            "token": self.token,
            "meta": {"page": "load", "candidate": str(self.index)},
        }
        while True:
            self.out.create_attempts += 1
            status, data, headers = await self._post("/api/sessions", body)
            if status == 201:
                self.out.session = data["session_id"]
                self.secret = data["session_secret"]
                return
            if status in (429, 503) and time.monotonic() < deadline:
                self.out.rate_limited += status == 429
                try:
                    wait = float(headers.get("Retry-After", "1"))
                except ValueError:
                    wait = 1.0
                await asyncio.sleep(min(max(wait, 0.2), max(0.0, deadline - time.monotonic())))
                continue
            raise LoadError(f"POST /api/sessions answered {status}: {data.get('error', data)}")

    async def connect(self, timeout_s: float = 30.0) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = channel = pc.createDataChannel("results")
        channel.on("message", self._on_message)

        @channel.on("open")
        def on_open() -> None:
            self.open.set()
            if self.send_profile:
                self._spawn(self._profile())

        self.camera.sender = pc.addTrack(self.camera)
        pc.addTrack(self.microphone)
        await pc.setLocalDescription(await pc.createOffer())  # gathers host candidates
        status, data, _ = await self._post(
            f"/api/sessions/{self.out.session}/offer",
            {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type},
        )
        if status != 200:
            raise LoadError(f"offer answered {status}: {data.get('error', data)}")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=data["sdp"], type=data["type"]))
        await asyncio.wait_for(self.open.wait(), timeout_s)
        self.out.connected_at = time.monotonic()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _profile(self) -> None:
        body = {
            "job_title": "Backend engineer",
            "years": 2,
            "company": "EST Soft",
            "self_intro": SELF_INTRO,
            "language": self.language,
        }
        try:
            status, data, _ = await self._post(f"/api/sessions/{self.out.session}/profile", body)
            if status != 202:
                self.out.error = f"profile answered {status}: {data.get('error', data)}"
        except Exception as exc:
            self.out.error = f"profile failed: {exc}"

    def _on_message(self, message: Any) -> None:
        if not isinstance(message, str):
            return
        try:
            msg = contract.decode_page(message)
        except contract.ContractError:
            return
        if isinstance(msg, contract.EmotionUpdate):
            arrival = time.time() * 1000.0
            glass = None
            if msg.capture_source == "rtcp":
                glass = arrival - msg.capture_ms
            back = arrival - msg.gateway_ms
            self.out.results.append(ResultSample(arrival, glass, bool(msg.faces), back))
        elif isinstance(msg, contract.RoomStats):
            self.out.stats = {
                k: v for k, v in msgspec.structs.asdict(msg).items() if isinstance(v, int | float)
            }
        elif isinstance(msg, contract.TranscriptUpdate):
            if msg.text:
                self.out.transcripts.append(msg.text)
        elif isinstance(msg, contract.TurnUpdate):
            self.turn = msg if msg.state == "answering" else None
        elif isinstance(msg, contract.SpeechUpdate):
            turn = self.turn
            if not msg.speaking and turn is not None and turn.spoken:
                # finished speaking in an open turn: Done answering
                self._send(contract.DoneAnswering(question=turn.question, attempt=turn.attempt))
        elif isinstance(msg, contract.InterviewUpdate):
            self.out.steps[msg.step] = self.out.steps.get(msg.step, 0) + 1
            data = msg.data
            if isinstance(data, contract.EvaluatedStep):  # read the feedback, then go on
                self._send(contract.NextQuestion(question=data.index, attempt=data.attempt))
        elif isinstance(msg, contract.SessionEnded):
            self.out.ended = msg.reason

    def _send(self, message: contract.RoomRequest) -> None:
        with contextlib.suppress(Exception):
            if self.channel is not None and self.channel.readyState == "open":
                self.channel.send(contract.encode_room_request(message))

    async def close(self, goodbye: bool = True, timeout_s: float = 10.0) -> None:
        """End like the page does (bye + beacon), then close the peer connection."""
        if goodbye and self.out.session:
            with contextlib.suppress(Exception):
                if self.channel is not None and self.channel.readyState == "open":
                    self.channel.send(contract.encode_room_request(contract.Bye()))
            with contextlib.suppress(Exception):
                await self._post(f"/api/sessions/{self.out.session}/end", {})
        for task in list(self._tasks):
            task.cancel()
        if self.pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pc.close(), timeout_s)
        self.camera.stop()
        self.microphone.stop()
