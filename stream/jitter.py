"""A video jitter buffer that releases a frame on its marker bit (issue 15).

aiortc's own buffer (`aiortc.jitterbuffer.JitterBuffer`) knows a video frame is complete
only when the first packet of the *next* frame arrives (a timestamp change), so every
frame waits one frame interval (67 ms at 15 fps) before it is decoded. A sender marks the
last packet of each frame with the RTP marker bit (VP8: RFC 7741 §4.1, H.264: RFC 6184
§5.1), so a frame is known complete as soon as

* its packets, from its first to its marker packet, are all present (sequence numbers
  contiguous, one RTP timestamp), and
* its first packet starts a frame by its payload format's rule (`starts_frame`): VP8, the
  payload descriptor's S bit with partition index 0; H.264, a single NAL unit, a STAP-A,
  or an FU-A with its start bit.

`MarkerJitterBuffer.add` releases such a frame at once (rule "marker"). Otherwise it
falls back to aiortc's rule (rule "timestamp"): a frame that lost its marker or its first
packet, or that began before the buffer did, is released when a packet of the next frame
follows it contiguously. Everything else is aiortc 1.16.0's algorithm, kept on purpose
(the same ring of `capacity` packets indexed by sequence number mod capacity, so 65535 → 0
needs nothing special; timestamps are only compared for equality, so 2^32 wraps are
harmless): a packet more than 100 behind the oldest one held resets the buffer and asks for
a picture (PLI); one that would not fit drops just enough whole frames and asks for a
picture; a late packet or duplicate of a released frame is dropped. NACKs are not the
buffer's job: aiortc's receiver sends them from sequence gaps before it calls the buffer
(`NackGenerator`), and a retransmission (unwrapped from RTX) is added here like any packet,
so a frame that waited for one is released on its marker the moment the gap fills.

A padding-only packet (no payload: a sender's bandwidth probe, stamped with the last
frame's timestamp) that reaches the head of the buffer is dropped: it belongs to no frame,
and an empty frame would read as "flush" to a decoder. If the packet that follows a frame
released on its marker carries that frame's timestamp, the sender marked something other
than a frame's last packet; the marker rule is then turned off for the stream (a warning,
counted as `marker_off` fallbacks) and frames are released by timestamp only, as aiortc
would.

The seam. aiortc creates a receiver's buffer in `RTCRtpReceiver.__init__` (a name-mangled
`_RTCRtpReceiver__jitter_buffer`) and calls only `buffer.add(packet)`, expecting
`(pli_flag, JitterFrame | None)`, after setting `packet._data` to the depayloaded bytes.
`install` swaps that one attribute on a receiver right after `setRemoteDescription`
created it and before any RTP can arrive (no media flows before the answer). Chosen over
subclassing `RTCRtpReceiver` (the peer connection creates receivers itself, so a subclass
would mean patching the module or the peer connection) and over subclassing
`JitterBuffer` (that would lean on its private `_remove_frame` / `_packets`; this class
owns its state and borrows only `JitterFrame`). The start-of-frame rule needs the codec of
a payload type: the receiver's own map (`_RTCRtpReceiver__codecs`), read when a packet
comes. `check_aiortc_seam` verifies all of that on a real receiver once at gateway start
and raises `JitterSeamError` naming what moved; aiortc versions it was tested with:
`TESTED_AIORTC_VERSIONS`.
"""

from __future__ import annotations

import inspect
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from enum import StrEnum
from functools import cache
from types import SimpleNamespace
from typing import Any, Protocol

from aiortc.jitterbuffer import JitterFrame

log = logging.getLogger(__name__)

#: aiortc releases this buffer was tested against; another one stops the gateway at start
#: (`INTERVUE_GATEWAY_JITTER_BUFFER=stock` runs aiortc's own buffer on any version).
TESTED_AIORTC_VERSIONS = frozenset({"1.16.0"})
#: Where aiortc keeps a receiver's buffer and its payload type → codec map.
RECEIVER_BUFFER_ATTRIBUTE = "_RTCRtpReceiver__jitter_buffer"
RECEIVER_CODECS_ATTRIBUTE = "_RTCRtpReceiver__codecs"
#: aiortc's video buffer size (packets, a power of two dividing 65536) and its reorder
#: window: a packet further behind than this is taken as a restarted stream.
VIDEO_CAPACITY = 512
MAX_MISORDER = 100
_SEQ_WRAP = 1 << 16

VP8 = "VP8"
H264 = "H264"
_H264_STAP_A = 24
_H264_FU_A = 28


class ReleaseRule(StrEnum):
    """Why a frame left the buffer."""

    MARKER = "marker"  # complete from its first packet to its marker packet
    TIMESTAMP = "timestamp"  # aiortc's rule: the next frame's first packet followed it


class Fallback(StrEnum):
    """Why a frame was released by timestamp instead of on its marker."""

    NO_MARKER = "no_marker"  # its last packet held no marker (not marked, or the tail lost)
    NO_START = "no_start"  # its first packet does not start a frame (head lost, mid-frame)
    MARKER_OFF = "marker_off"  # the stream marked a packet that was not a frame's last


class JitterSeamError(RuntimeError):
    """aiortc no longer offers what the marker buffer plugs into."""


class RtpPacketLike(Protocol):
    """What the buffer reads of `aiortc.rtp.RtpPacket` (plus `_data`, set by the receiver)."""

    sequence_number: int
    timestamp: int
    marker: int
    payload_type: int
    payload: bytes


def _seq_add(a: int, b: int) -> int:
    return (a + b) % _SEQ_WRAP


def starts_frame(codec: str | None, payload: bytes) -> bool:
    """Whether a packet of `codec` with this payload can be the first of a frame."""
    if not payload:
        return False
    if codec == VP8:
        # RFC 7741 §4.2: S=1 starts a partition; a frame starts with partition 0
        return bool(payload[0] & 0x10) and payload[0] & 0x0F == 0
    if codec == H264:
        nal_type = payload[0] & 0x1F
        if 1 <= nal_type < _H264_STAP_A or nal_type == _H264_STAP_A:
            return True  # a single NAL unit or an aggregation: whole NAL units
        if nal_type == _H264_FU_A:
            return len(payload) > 1 and bool(payload[1] & 0x80)  # the first fragment
        return False
    return False  # a codec without a rule here: timestamp rule only


class MarkerJitterBuffer:
    """A video jitter buffer with aiortc's interface: `add(packet)` → `(pli, frame)`.

    `codec_of(payload_type)` names a packet's codec ("VP8", "H264", anything else: no
    start rule, so the timestamp rule only); `on_release(rule)` is called for each
    released frame (metrics). `released` and `fallbacks` count frames by rule and by why
    the marker rule did not apply."""

    def __init__(
        self,
        codec_of: Callable[[int], str | None],
        capacity: int = VIDEO_CAPACITY,
        on_release: Callable[[ReleaseRule], None] | None = None,
    ) -> None:
        if capacity <= 0 or capacity & (capacity - 1) or _SEQ_WRAP % capacity:
            raise ValueError(f"capacity must be a power of two up to 65536, not {capacity}")
        self._capacity = capacity
        self._codec_of = codec_of
        self._on_release = on_release
        self._origin: int | None = None
        self._packets: list[Any | None] = [None] * capacity
        #: the timestamp of the last frame released on its marker, until the next packet
        self._after_marker: int | None = None
        self.marker_rule = True
        self.released: Counter[ReleaseRule] = Counter()
        self.fallbacks: Counter[Fallback] = Counter()

    @property
    def capacity(self) -> int:
        return self._capacity

    def add(self, packet: RtpPacketLike) -> tuple[bool, JitterFrame | None]:
        """Take one packet; return whether to ask for a picture, and a frame if one is
        complete. The same contract and loss handling as aiortc's `JitterBuffer.add`."""
        pli = False
        if self._origin is None:
            self._origin = packet.sequence_number
            delta = misorder = 0
        else:
            delta = (packet.sequence_number - self._origin) % _SEQ_WRAP
            misorder = (self._origin - packet.sequence_number) % _SEQ_WRAP
        if misorder < delta:  # behind the oldest packet held
            if misorder >= MAX_MISORDER:  # far behind: the sender restarted its sequence
                self._drop(self._capacity)
                self._origin = packet.sequence_number
                self._after_marker = None
                delta = 0
                pli = True
            else:  # late: a released frame's packet, a retransmission too late, a duplicate
                return pli, None
        if delta >= self._capacity:
            # drop just enough whole frames to fit this packet; the picture is broken
            if self._drop_frames(delta - self._capacity + 1):
                self._origin = packet.sequence_number
            self._after_marker = None
            pli = True
        self._packets[packet.sequence_number % self._capacity] = packet
        return pli, self._release()

    def _release(self) -> JitterFrame | None:
        """The oldest frame if it is complete, by its marker or by the next frame."""
        assert self._origin is not None
        first = self._packets[self._origin % self._capacity]
        while first is not None and not first.payload:
            # padding only (a bandwidth probe, with the last frame's timestamp): part of no
            # frame; handed on alone it would be an empty frame, which a decoder takes as
            # "flush"
            self._drop(1)
            first = self._packets[self._origin % self._capacity]
        if first is None:
            return None
        timestamp = first.timestamp
        if self._after_marker is not None:
            # the first packet after a frame released on its marker must start a new one
            if self.marker_rule and timestamp == self._after_marker:
                self.marker_rule = False
                log.warning(
                    "video stream marks packets that are not a frame's last (RTP timestamp "
                    "%d went on after its marker); frames are released by timestamp from now on",
                    timestamp,
                )
            self._after_marker = None
        by_marker = self.marker_rule and starts_frame(
            self._codec_of(first.payload_type), first.payload
        )
        frame: list[Any] = []
        for count in range(self._capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is None:
                return None  # a gap: wait (the receiver has NACKed it)
            if packet.timestamp != timestamp:
                if not self.marker_rule:
                    why = Fallback.MARKER_OFF
                elif not by_marker:
                    why = Fallback.NO_START
                else:
                    why = Fallback.NO_MARKER
                self.fallbacks[why] += 1
                return self._emit(frame, timestamp, ReleaseRule.TIMESTAMP)
            frame.append(packet)
            if by_marker and packet.marker:
                self._after_marker = timestamp
                return self._emit(frame, timestamp, ReleaseRule.MARKER)
        return None

    def _emit(self, frame: list[Any], timestamp: int, rule: ReleaseRule) -> JitterFrame:
        self._drop(len(frame))
        self.released[rule] += 1
        if self._on_release is not None:
            self._on_release(rule)
        return JitterFrame(data=b"".join(p._data for p in frame), timestamp=timestamp)

    def _drop(self, count: int) -> None:
        assert self._origin is not None
        for _ in range(count):
            self._packets[self._origin % self._capacity] = None
            self._origin = _seq_add(self._origin, 1)

    def _drop_frames(self, count: int) -> bool:
        """Drop at least `count` packet slots, stopping at a frame boundary (aiortc's
        `smart_remove`: never hand the decoder half a frame). True if all were dropped."""
        assert self._origin is not None
        timestamp = None
        for index in range(self._capacity):
            slot = self._origin % self._capacity
            packet = self._packets[slot]
            if packet is not None:
                if index >= count and timestamp != packet.timestamp:
                    return False
                timestamp = packet.timestamp
            self._packets[slot] = None
            self._origin = _seq_add(self._origin, 1)
        return True


# ---- the aiortc seam ------------------------------------------------------------------


def _codec_lookup(codecs: Mapping[int, Any]) -> Callable[[int], str | None]:
    def codec_of(payload_type: int) -> str | None:
        codec = codecs.get(payload_type)
        return None if codec is None else getattr(codec, "name", None)

    return codec_of


@cache
def check_aiortc_seam() -> str:
    """Raise `JitterSeamError` unless this aiortc is one the marker buffer was tested with
    and still has the seam (`install`'s attributes on a real receiver, `add(packet)`,
    `JitterFrame(data, timestamp)`). Returns the aiortc version."""
    import aiortc
    from aiortc.jitterbuffer import JitterBuffer
    from aiortc.rtcrtpreceiver import RTCRtpReceiver

    version = getattr(aiortc, "__version__", "unknown")
    hint = "; set INTERVUE_GATEWAY_JITTER_BUFFER=stock to run aiortc's own buffer"
    if version not in TESTED_AIORTC_VERSIONS:
        raise JitterSeamError(
            f"the marker jitter buffer is tested with aiortc {sorted(TESTED_AIORTC_VERSIONS)}, "
            f"not {version}{hint}"
        )
    if list(inspect.signature(JitterBuffer.add).parameters) != ["self", "packet"]:
        raise JitterSeamError(f"aiortc's JitterBuffer.add is no longer add(packet){hint}")
    if list(inspect.signature(JitterFrame).parameters) != ["data", "timestamp"]:
        raise JitterSeamError(f"aiortc's JitterFrame is no longer (data, timestamp){hint}")
    # a receiver needs only a transport that is not closed to be built (nothing starts)
    receiver = RTCRtpReceiver("video", SimpleNamespace(state="new"))  # type: ignore[arg-type]
    stock = getattr(receiver, RECEIVER_BUFFER_ATTRIBUTE, None)
    if not isinstance(stock, JitterBuffer):
        raise JitterSeamError(
            f"aiortc's RTCRtpReceiver has no JitterBuffer at {RECEIVER_BUFFER_ATTRIBUTE}{hint}"
        )
    if not isinstance(getattr(receiver, RECEIVER_CODECS_ATTRIBUTE, None), dict):
        raise JitterSeamError(
            f"aiortc's RTCRtpReceiver has no codec map at {RECEIVER_CODECS_ATTRIBUTE}{hint}"
        )
    return version


def install(
    receiver: object, on_release: Callable[[ReleaseRule], None] | None = None
) -> MarkerJitterBuffer | None:
    """Put a `MarkerJitterBuffer` in place of a video receiver's stock buffer, before any
    RTP reached it. None (and an error logged; the stock buffer stays) if the receiver
    lacks the seam, which `check_aiortc_seam` at start has already ruled out."""
    stock = getattr(receiver, RECEIVER_BUFFER_ATTRIBUTE, None)
    codecs = getattr(receiver, RECEIVER_CODECS_ATTRIBUTE, None)
    if stock is None or not isinstance(codecs, dict):
        log.error("aiortc receiver has no jitter-buffer seam; keeping aiortc's buffer")
        return None
    buffer = MarkerJitterBuffer(
        _codec_lookup(codecs),
        capacity=getattr(stock, "capacity", VIDEO_CAPACITY),
        on_release=on_release,
    )
    setattr(receiver, RECEIVER_BUFFER_ATTRIBUTE, buffer)
    return buffer
