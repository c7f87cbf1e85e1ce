"""The marker jitter buffer (`stream.jitter`) on synthetic RTP: real `aiortc.rtp.RtpPacket`s
with VP8 and H.264 payloads, depayloaded by aiortc as its receiver does. Each test says
which packet releases a frame; aiortc's own `JitterBuffer` runs beside it where the two
must agree (loss handling, no marker)."""

from __future__ import annotations

import random
import struct

import aiortc
import pytest
from aiortc.codecs import depayload
from aiortc.codecs.vpx import VpxPayloadDescriptor
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import NackGenerator, RTCRtpReceiver
from aiortc.rtp import RtpPacket

from stream import jitter
from stream.jitter import (
    Fallback,
    JitterSeamError,
    MarkerJitterBuffer,
    ReleaseRule,
    check_aiortc_seam,
    install,
    starts_frame,
)
from stream.settings import GatewaySettings

VP8_PT, H264_PT = 96, 102
CODECS = {
    VP8_PT: RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=VP8_PT),
    H264_PT: RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=H264_PT),
}
TICKS_15FPS = 6000  # 90 kHz / 15


def codec_of(payload_type: int) -> str | None:
    codec = CODECS.get(payload_type)
    return None if codec is None else codec.name


def rtp(payload_type: int, seq: int, ts: int, payload: bytes, marker: bool) -> RtpPacket:
    """A packet as aiortc's receiver hands it to the buffer: `_data` depayloaded."""
    packet = RtpPacket(
        payload_type=payload_type,
        marker=int(marker),
        sequence_number=seq % 65536,
        timestamp=ts % (1 << 32),
        ssrc=1234,
        payload=payload,
    )
    # as the receiver does: an empty payload (padding) is not depayloaded
    data = depayload(CODECS[payload_type], payload) if payload else b""
    packet._data = data  # type: ignore[attr-defined]
    return packet


def vp8_frame(
    seq: int, ts: int, parts: int, picture_id: int = 0, marker: bool = True
) -> list[RtpPacket]:
    """One VP8 frame in `parts` packets: S=1/PID=0 on the first, the marker on the last."""
    packets = []
    for index in range(parts):
        descriptor = VpxPayloadDescriptor(
            partition_start=int(index == 0), partition_id=0, picture_id=picture_id
        )
        body = bytes([picture_id % 256, index]) * 40
        last = index == parts - 1
        packets.append(rtp(VP8_PT, seq + index, ts, bytes(descriptor) + body, marker and last))
    return packets


def _stap_a(*nals: bytes) -> bytes:
    return bytes([24 | 0x60]) + b"".join(struct.pack("!H", len(n)) + n for n in nals)


def _fu_a(nal: bytes, pieces: int) -> list[bytes]:
    header, body = nal[0], nal[1:]
    size = -(-len(body) // pieces)
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    out = []
    for index, chunk in enumerate(chunks):
        fu_header = header & 0x1F
        if index == 0:
            fu_header |= 0x80
        if index == len(chunks) - 1:
            fu_header |= 0x40
        out.append(bytes([(header & 0xE0) | 28, fu_header]) + chunk)
    return out


def h264_frame(seq: int, ts: int, keyframe: bool = True, marker: bool = True) -> list[RtpPacket]:
    """An access unit: STAP-A (SPS, PPS) + an IDR slice in 3 FU-A fragments, or one
    single-NAL P slice; the marker on the last packet."""
    if keyframe:
        sps, pps = b"\x67" + b"\x42" * 10, b"\x68" + b"\xce" * 4
        payloads = [_stap_a(sps, pps), *_fu_a(b"\x65" + bytes(range(200)) * 3, 3)]
    else:
        payloads = [b"\x41" + bytes(range(100))]
    last = len(payloads) - 1
    return [rtp(H264_PT, seq + i, ts, p, marker and i == last) for i, p in enumerate(payloads)]


def frame_bytes(packets: list[RtpPacket]) -> bytes:
    return b"".join(p._data for p in packets)  # type: ignore[attr-defined]


def feed(buffer, packets):
    """Add each packet; the (index, pli, frame) of every add that released something or
    asked for a picture."""
    out = []
    for index, packet in enumerate(packets):
        pli, frame = buffer.add(packet)
        if pli or frame is not None:
            out.append((index, pli, frame))
    return out


def stream_of(frames: list[list[RtpPacket]]) -> list[RtpPacket]:
    return [packet for frame in frames for packet in frame]


def vp8_stream(count: int, seq0: int = 1000, ts0: int = 90000, parts: int = 3):
    frames, seq = [], seq0
    for n in range(count):
        frames.append(vp8_frame(seq, ts0 + n * TICKS_15FPS, parts, picture_id=n))
        seq += parts
    return frames


# ---- the start-of-frame rule ---------------------------------------------------------


@pytest.mark.parametrize(
    ("codec", "payload", "starts"),
    [
        ("VP8", b"\x10\xab", True),  # S=1, PID=0
        ("VP8", b"\x90\x80\x81\x02\xab", True),  # extended descriptor with a picture id
        ("VP8", b"\x00\xab", False),  # S=0: a continuation
        ("VP8", b"\x11\xab", False),  # S=1 but partition 1: not the frame's start
        ("H264", b"\x67\x42", True),  # single NAL unit (SPS)
        ("H264", b"\x41\x9a", True),  # single NAL unit (non-IDR slice)
        ("H264", b"\x78\x00\x02\x67\x42", True),  # STAP-A
        ("H264", b"\x7c\x85\x00", True),  # FU-A, start bit
        ("H264", b"\x7c\x05\x00", False),  # FU-A, middle
        ("H264", b"\x7c\x45\x00", False),  # FU-A, end
        ("H264", b"\x7d\x85\x00", False),  # FU-B is not something aiortc depayloads
        ("VP9", b"\x10\xab", False),  # no rule for another codec: timestamp rule only
        ("VP8", b"", False),
    ],
)
def test_start_of_frame_rule(codec, payload, starts):
    assert starts_frame(codec, payload) is starts


# ---- in order ------------------------------------------------------------------------


def test_vp8_in_order_each_frame_is_released_on_its_marker_packet():
    frames = vp8_stream(5)
    buffer = MarkerJitterBuffer(codec_of)
    released = feed(buffer, stream_of(frames))
    # released by frame n's own last packet (index 3n+2), not by frame n+1's first
    assert [i for i, _, _ in released] == [2, 5, 8, 11, 14]
    assert [f.data for _, _, f in released] == [frame_bytes(f) for f in frames]
    assert [f.timestamp for _, _, f in released] == [f[0].timestamp for f in frames]
    assert not any(pli for _, pli, _ in released)
    assert buffer.released == {ReleaseRule.MARKER: 5}


def test_h264_in_order_each_access_unit_is_released_on_its_marker_packet():
    key = h264_frame(500, 3000)  # 4 packets: STAP-A + FU-A start/middle/end
    delta = h264_frame(504, 3000 + TICKS_15FPS, keyframe=False)  # 1 packet
    key2 = h264_frame(505, 3000 + 2 * TICKS_15FPS)
    buffer = MarkerJitterBuffer(codec_of)
    released = feed(buffer, key + delta + key2)
    assert [i for i, _, _ in released] == [3, 4, 8]
    assert [f.data for _, _, f in released] == [
        frame_bytes(key),
        frame_bytes(delta),
        frame_bytes(key2),
    ]
    assert released[0][2].data.startswith(b"\x00\x00\x00\x01\x67")  # Annex B, SPS first
    assert buffer.released == {ReleaseRule.MARKER: 3}


def test_a_frame_of_one_packet_is_released_by_that_packet():
    buffer = MarkerJitterBuffer(codec_of)
    [packet] = vp8_frame(7, 1234, parts=1)
    pli, frame = buffer.add(packet)
    assert not pli and frame is not None and frame.data == frame_bytes([packet])


def test_the_marker_frames_are_the_stock_frames_one_packet_earlier():
    """Loss-free streams of random frame sizes: the same frames, in the same order, as
    aiortc's buffer; each is released by its own marker packet, the stock one by the
    next frame's first packet."""
    rng = random.Random(15)
    seq, ts, frames = 65000, (1 << 32) - 20000, []  # both wrap on the way
    for n in range(60):
        parts = rng.choice([1, 1, 2, 3, 7])
        frames.append(vp8_frame(seq, ts, parts, picture_id=n))
        seq, ts = seq + parts, ts + TICKS_15FPS
    packets = stream_of(frames)
    ours = feed(MarkerJitterBuffer(codec_of), packets)
    stock = feed(JitterBuffer(capacity=512, is_video=True), packets)
    assert [f.data for _, _, f in ours][:-1] == [f.data for _, _, f in stock]
    assert [f.timestamp for _, _, f in ours][:-1] == [f.timestamp for _, _, f in stock]
    assert [i + 1 for i, _, _ in ours][:-1] == [i for i, _, _ in stock]
    assert len(ours) == len(frames)  # the stock one still holds the last frame


# ---- reordered, duplicated, lost -----------------------------------------------------


def test_reordered_packets_release_the_frame_on_the_last_one_to_arrive():
    first, second = vp8_stream(2, parts=4)
    arrival = [first[0], first[3], first[2], first[1], second[2], second[3], second[0], second[1]]
    buffer = MarkerJitterBuffer(codec_of)
    released = feed(buffer, arrival)
    # frame 1 on first[1] (its gap filled), frame 2 on second[1]: the marker packet came
    # early, so the frame is released when its last missing packet arrives
    assert [(i, f.data) for i, _, f in released] == [
        (3, frame_bytes(first)),
        (7, frame_bytes(second)),
    ]
    assert buffer.released == {ReleaseRule.MARKER: 2}


def test_duplicates_change_nothing_and_late_duplicates_are_dropped():
    first, second = vp8_stream(2)
    arrival = [first[0], first[0], first[1], first[2], first[1], first[2], *second]
    buffer = MarkerJitterBuffer(codec_of)
    released = feed(buffer, arrival)
    # frame 1 on its marker (index 3); the late copies of its packets release nothing,
    # ask for nothing; frame 2 on its own marker (index 8)
    assert [(i, pli, f.data) for i, pli, f in released] == [
        (3, False, frame_bytes(first)),
        (8, False, frame_bytes(second)),
    ]


def test_a_lost_packet_holds_the_frame_until_its_retransmission_and_nack_is_kept():
    """The receiver NACKs from sequence gaps before it calls the buffer (aiortc's
    NackGenerator, run here as the receiver runs it); the retransmitted packet completes
    the frame, released on its marker then. The frame after it waits behind the gap, as in
    aiortc's buffer (one frame per add), and leaves on the next packet."""
    frames = vp8_stream(3)
    lost = frames[0][1]
    nacks = NackGenerator()
    buffer = MarkerJitterBuffer(codec_of)
    sent = []
    for packet in [p for p in frames[0] + frames[1] if p is not lost]:
        if nacks.add(packet):
            sent.append(sorted(nacks.missing))
        assert buffer.add(packet) == (False, None)  # nothing passes the gap
    assert sent == [[lost.sequence_number]]
    nacks.add(lost)  # the retransmission (RTX is unwrapped by the receiver first)
    assert nacks.missing == set()
    pli, frame = buffer.add(lost)  # frame 0: on the retransmitted packet
    assert not pli and frame.data == frame_bytes(frames[0])
    pli, frame = buffer.add(frames[2][0])  # frame 1: complete, leaves on the next add
    assert not pli and frame.data == frame_bytes(frames[1])
    assert buffer.released == {ReleaseRule.MARKER: 2}


def test_a_packet_never_retransmitted_ends_in_an_overflow_a_pli_and_recovery():
    """Capacity 16 (aiortc's video buffer holds 512): a frame with a packet lost for good
    holds everything behind it until a packet would not fit; then whole frames are dropped
    and a picture asked for (PLI) by the same packet as aiortc's buffer, and the next
    complete frame is released on its marker."""
    frames = vp8_stream(10, parts=3)
    lost = frames[0][1]
    packets = [p for p in stream_of(frames) if p is not lost]
    ours = feed(MarkerJitterBuffer(codec_of, capacity=16), packets)
    stock = feed(JitterBuffer(capacity=16, is_video=True), packets)
    first_pli = next(i for i, pli, _ in stock if pli)
    assert next(i for i, pli, _ in ours if pli) == first_pli
    # the overflow drops frame 0 (never complete); the same whole frames follow as from
    # aiortc's buffer, the backlog one per add, then each on its own marker packet
    assert [f.timestamp for _, _, f in ours][: len(stock)] == [f.timestamp for _, _, f in stock]
    assert len(ours) == len(stock) + 1
    whole = {frame_bytes(f) for f in frames[1:]}
    assert all(f.data in whole for _, _, f in ours)
    assert ours[-1][0] == len(packets) - 1  # the last frame on its own marker packet


def test_a_packet_far_behind_resets_the_buffer_and_asks_for_a_picture():
    buffer = MarkerJitterBuffer(codec_of)
    feed(buffer, stream_of(vp8_stream(2, seq0=5000)))
    restarted = vp8_frame(5000 - 300, 1, parts=2)  # > 100 behind: a restarted sender
    assert buffer.add(restarted[0]) == (True, None)
    pli, frame = buffer.add(restarted[1])
    assert not pli and frame.data == frame_bytes(restarted)


def test_a_stream_joined_mid_frame_falls_back_to_the_timestamp_rule():
    """The first packet seen is the middle of a frame (its head was lost before the
    buffer began): that fragment cannot be known complete by a marker, so it leaves when
    the next frame begins (rule timestamp, as aiortc), and the next frame on its marker."""
    first, second = vp8_stream(2)
    buffer = MarkerJitterBuffer(codec_of)
    released = feed(buffer, first[1:] + second)
    assert [(i, f.data) for i, _, f in released] == [
        (2, frame_bytes(first[1:])),
        (4, frame_bytes(second)),
    ]
    assert buffer.released == {ReleaseRule.TIMESTAMP: 1, ReleaseRule.MARKER: 1}
    assert buffer.fallbacks == {Fallback.NO_START: 1}


def test_h264_joined_on_a_middle_fragment_falls_back_to_the_timestamp_rule():
    key = h264_frame(10, 0)
    delta = h264_frame(14, TICKS_15FPS, keyframe=False)
    buffer = MarkerJitterBuffer(codec_of)
    released = feed(buffer, key[2:] + delta)  # FU-A middle + end, then a P slice
    assert [(i, f.data) for i, _, f in released] == [(2, frame_bytes(key[2:]))]
    assert buffer.fallbacks == {Fallback.NO_START: 1}
    assert buffer.released == {ReleaseRule.TIMESTAMP: 1}  # the P slice on the next add


# ---- missing marker, misplaced marker ------------------------------------------------


def test_without_markers_frames_leave_on_the_next_frames_first_packet_as_in_aiortc():
    frames = [
        vp8_frame(100 + 2 * n, n * TICKS_15FPS, parts=2, picture_id=n, marker=False)
        for n in range(4)
    ]
    packets = stream_of(frames)
    buffer = MarkerJitterBuffer(codec_of)
    ours = feed(buffer, packets)
    stock = feed(JitterBuffer(capacity=512, is_video=True), packets)
    assert [(i, f.data, f.timestamp) for i, _, f in ours] == [
        (i, f.data, f.timestamp) for i, _, f in stock
    ]
    assert [i for i, _, _ in ours] == [2, 4, 6]  # frame n on frame n+1's first packet
    assert buffer.released == {ReleaseRule.TIMESTAMP: 3}
    assert buffer.fallbacks == {Fallback.NO_MARKER: 3}


def test_a_lost_marker_packet_retransmitted_late_still_ends_its_frame():
    """The marker packet is lost and the next frame arrives whole: the gap where the
    marker packet belongs holds both frames (no timestamp release across a gap); the
    retransmission completes the first, released on its marker."""
    first, second = vp8_stream(2)
    buffer = MarkerJitterBuffer(codec_of)
    assert feed(buffer, first[:2] + second) == []
    pli, frame = buffer.add(first[2])
    assert not pli and frame.data == frame_bytes(first)
    assert buffer.released == {ReleaseRule.MARKER: 1}


def test_a_marker_on_every_packet_turns_the_marker_rule_off():
    """A sender that marks packets that are not a frame's last: the first such frame is
    cut at the marker (what a trusting receiver must do), the next packet of the same
    timestamp reveals it, and from then on frames leave by timestamp only."""
    frames = vp8_stream(3)
    for packet in stream_of(frames):
        packet.marker = 1
    buffer = MarkerJitterBuffer(codec_of)
    released = feed(buffer, stream_of(frames))
    assert not buffer.marker_rule
    assert released[0][0] == 0 and released[0][2].data == frame_bytes(frames[0][:1])
    assert [f.data for _, _, f in released[1:]] == [
        frame_bytes(frames[0][1:]),
        frame_bytes(frames[1]),
    ]
    assert buffer.fallbacks == {Fallback.MARKER_OFF: 2}


def padding(seq: int, ts: int) -> RtpPacket:
    """A padding-only packet (a bandwidth probe): no payload, the last frame's timestamp."""
    return rtp(VP8_PT, seq, ts, b"", marker=False)


def test_padding_after_a_marker_frame_is_no_frame_and_keeps_the_marker_rule():
    """A probe stamped with the frame just released on its marker: dropped at the head of
    the buffer (never an empty frame, which a decoder takes as a flush), and no reason to
    distrust the marker; the next frame leaves on its own marker."""
    first = vp8_frame(100, 0, parts=2)
    probes = [padding(102, 0), padding(103, 0)]
    second = vp8_frame(104, TICKS_15FPS, parts=2, picture_id=1)
    buffer = MarkerJitterBuffer(codec_of)
    released = feed(buffer, first + probes + second)
    assert [(i, f.data) for i, _, f in released] == [
        (1, frame_bytes(first)),
        (5, frame_bytes(second)),
    ]
    assert buffer.marker_rule and buffer.released == {ReleaseRule.MARKER: 2}


def test_padding_before_the_first_frame_is_dropped():
    frame = vp8_frame(11, 5 * TICKS_15FPS, parts=2)
    buffer = MarkerJitterBuffer(codec_of)
    released = feed(buffer, [padding(10, 0), *frame])
    assert [(i, f.data) for i, _, f in released] == [(2, frame_bytes(frame))]


# ---- wrap-around ---------------------------------------------------------------------


def test_sequence_numbers_wrapping_65535_to_0_inside_a_frame():
    straddling = vp8_stream(2, seq0=65534, parts=3)  # 65534, 65535, 0 | 1, 2, 3
    assert [p.sequence_number for p in straddling[0]] == [65534, 65535, 0]
    buffer = MarkerJitterBuffer(codec_of)
    released = feed(buffer, stream_of(straddling))
    assert [(i, f.data) for i, _, f in released] == [
        (2, frame_bytes(straddling[0])),
        (5, frame_bytes(straddling[1])),
    ]


def test_reordered_across_the_sequence_wrap():
    frame = vp8_frame(65534, 50, parts=4)  # 65534, 65535, 0, 1
    buffer = MarkerJitterBuffer(codec_of)
    released = feed(buffer, [frame[0], frame[3], frame[2], frame[1]])
    assert [(i, f.data) for i, _, f in released] == [(3, frame_bytes(frame))]


def test_timestamps_wrapping_2_32():
    top = (1 << 32) - TICKS_15FPS // 2
    frames = vp8_stream(3, ts0=top, parts=2)
    assert frames[1][0].timestamp < frames[0][0].timestamp  # wrapped
    buffer = MarkerJitterBuffer(codec_of)
    released = feed(buffer, stream_of(frames))
    assert [(i, f.timestamp) for i, _, f in released] == [
        (1, top),
        (3, top + TICKS_15FPS - (1 << 32)),
        (5, top + 2 * TICKS_15FPS - (1 << 32)),
    ]


# ---- the seam ------------------------------------------------------------------------


class _Transport:
    state = "new"


def test_install_replaces_a_real_receivers_buffer_and_reads_its_codecs():
    assert check_aiortc_seam() == aiortc.__version__
    receiver = RTCRtpReceiver("video", _Transport())  # type: ignore[arg-type]
    released: list[ReleaseRule] = []
    buffer = install(receiver, released.append)
    assert getattr(receiver, jitter.RECEIVER_BUFFER_ATTRIBUTE) is buffer
    assert buffer.capacity == 512
    # the codec map is the receiver's own, filled when it starts receiving
    getattr(receiver, jitter.RECEIVER_CODECS_ATTRIBUTE).update(CODECS)
    feed(buffer, stream_of(vp8_stream(2)))
    assert released == [ReleaseRule.MARKER, ReleaseRule.MARKER]


def test_an_untested_aiortc_version_stops_the_marker_buffer(monkeypatch):
    check_aiortc_seam.cache_clear()
    monkeypatch.setattr(aiortc, "__version__", "99.0.0")
    try:
        with pytest.raises(
            JitterSeamError, match=r"99\.0\.0.*INTERVUE_GATEWAY_JITTER_BUFFER=stock"
        ):
            check_aiortc_seam()
    finally:
        check_aiortc_seam.cache_clear()


def test_a_moved_receiver_attribute_stops_the_marker_buffer(monkeypatch):
    monkeypatch.setattr(jitter, "RECEIVER_BUFFER_ATTRIBUTE", "_RTCRtpReceiver__buffer")
    check_aiortc_seam.cache_clear()
    try:
        with pytest.raises(JitterSeamError, match="no JitterBuffer at _RTCRtpReceiver__buffer"):
            check_aiortc_seam()
    finally:
        check_aiortc_seam.cache_clear()


def test_a_changed_add_signature_stops_the_marker_buffer(monkeypatch):
    def add(self, packet, arrival_time_ms):  # pragma: no cover - never called
        raise AssertionError

    monkeypatch.setattr(JitterBuffer, "add", add)
    check_aiortc_seam.cache_clear()
    try:
        with pytest.raises(JitterSeamError, match=r"no longer add\(packet\)"):
            check_aiortc_seam()
    finally:
        check_aiortc_seam.cache_clear()


def test_the_gateway_refuses_to_start_when_the_seam_moved_unless_stock(monkeypatch):
    from stream.gateway import create_app

    def moved() -> str:
        raise JitterSeamError("seam moved")

    monkeypatch.setattr(jitter, "check_aiortc_seam", moved)
    with pytest.raises(JitterSeamError, match="seam moved"):
        create_app(GatewaySettings(dev_mode=True))
    create_app(GatewaySettings(dev_mode=True, jitter_buffer="stock"))  # starts


def test_the_setting_defaults_to_marker_and_takes_only_known_buffers(monkeypatch):
    assert GatewaySettings(dev_mode=True).jitter_buffer == "marker"
    monkeypatch.setenv("INTERVUE_GATEWAY_JITTER_BUFFER", "stock")
    assert GatewaySettings(dev_mode=True).jitter_buffer == "stock"
    monkeypatch.setenv("INTERVUE_GATEWAY_JITTER_BUFFER", "fast")
    with pytest.raises(ValueError, match="jitter_buffer"):
        GatewaySettings(dev_mode=True)
