"""When did the browser capture this video frame? (for glass-to-result latency)

A browser stamps each video frame with an RTP timestamp (90 kHz) derived from its capture
time, and its RTCP sender reports pair one RTP timestamp with the sender's NTP wall clock.
With the latest report, a frame's capture time on the browser's wall clock is

    ntp_ms(report) + (rtp(frame) − rtp(report)) / 90

aiortc keeps sender reports to itself, so `watch_sender_reports` wraps the one receiver
method that sees them (a narrow seam; if aiortc changes it, we fall back to the gateway's
receive time and say so in the frame's `capture_source`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

NTP_EPOCH_OFFSET_S = 2208988800  # seconds from 1900-01-01 to 1970-01-01
VIDEO_CLOCK_HZ = 90_000
_RTP_WRAP = 1 << 32


def ntp_to_unix_ms(ntp: int) -> float:
    """64-bit NTP timestamp (32.32 fixed point since 1900) → ms since the Unix epoch."""
    seconds = (ntp >> 32) - NTP_EPOCH_OFFSET_S
    fraction = (ntp & 0xFFFFFFFF) / float(1 << 32)
    return (seconds + fraction) * 1000.0


@dataclass
class SenderReportClock:
    """Maps RTP timestamps of one stream to the sender's wall clock (pure logic)."""

    clock_hz: int = VIDEO_CLOCK_HZ
    report_rtp: int | None = None
    report_ms: float | None = None

    def on_sender_report(self, ntp: int, rtp: int) -> None:
        self.report_rtp = rtp & 0xFFFFFFFF
        self.report_ms = ntp_to_unix_ms(ntp)

    def capture_ms(self, rtp: int) -> float | None:
        """Sender wall-clock ms of the frame with RTP timestamp `rtp`, if a report came."""
        if self.report_rtp is None or self.report_ms is None:
            return None
        delta = (rtp - self.report_rtp) % _RTP_WRAP
        if delta >= _RTP_WRAP // 2:  # the frame is older than the report
            delta -= _RTP_WRAP
        return self.report_ms + delta * 1000.0 / self.clock_hz


def watch_sender_reports(receiver: object, clock: SenderReportClock) -> Callable[[int], int] | None:
    """Feed `clock` from the RTCP sender reports `receiver` (an aiortc RTCRtpReceiver) gets.

    Returns a function mapping a decoded frame's `pts` back to its RTP timestamp (aiortc
    rebases pts to start at 0 by subtracting the stream's first RTP timestamp), or None
    when this aiortc version does not expose what is needed."""
    original = getattr(receiver, "_handle_rtcp_packet", None)
    mapper = getattr(receiver, "_RTCRtpReceiver__timestamp_mapper", None)
    try:
        from aiortc.rtp import RtcpSrPacket
    except ImportError:
        original = None
    if original is None or mapper is None or not hasattr(mapper, "_origin"):
        log.info("aiortc receiver has no RTCP hook; capture times fall back to receive times")
        return None

    async def handle(packet: object) -> None:
        if isinstance(packet, RtcpSrPacket):
            clock.on_sender_report(
                packet.sender_info.ntp_timestamp, packet.sender_info.rtp_timestamp
            )
            log.debug(
                "sender report: ntp %.1f ms, rtp %d (local clock %.1f ms)",
                clock.report_ms,
                clock.report_rtp,
                time.time() * 1000,
            )
        await original(packet)

    receiver._handle_rtcp_packet = handle  # type: ignore[attr-defined]

    def pts_to_rtp(pts: int) -> int:
        origin = mapper._origin
        return (pts + (origin or 0)) & 0xFFFFFFFF

    return pts_to_rtp
