"""Audio from WebRTC to what the VAD and Whisper want: 16 kHz mono signed 16-bit samples.

aiortc hands the gateway PyAV `AudioFrame`s, typically 48 kHz s16 (packed), stereo or mono,
960 samples per 20 ms. `AudioConverter` runs them through one FFmpeg resampler
(``av.AudioResampler(format="s16", layout="mono", rate=16000)``) and returns plain int16
NumPy arrays; a change of input format mid-stream (a renegotiated track) rebuilds the
resampler after draining the old one, so no samples are lost at the switch.

`resample_to_16k_mono` is the dependency-free NumPy path for whole clips (tests, benchmarks,
WAV files): downmix by averaging the channels, windowed-sinc low-pass, then decimation (an
integer ratio such as 48 kHz → 16 kHz) or linear interpolation (any other ratio). It is
stateless, so calling it per 20 ms chunk would leave small seams at chunk edges: streams go
through `AudioConverter`.
"""

from __future__ import annotations

import logging

import av
import numpy as np

log = logging.getLogger(__name__)

TARGET_RATE = 16_000


class AudioFormatError(ValueError):
    """An audio frame or array this module cannot convert (never retryable)."""

    retryable = False


class AudioConverter:
    """PyAV audio frames in, 16 kHz mono int16 chunks out (one converter per track).

    ``samples_out`` counts every sample returned so far: the stream position in samples at
    16 kHz, which is the VAD's clock (``ms = samples * 1000 / 16000``)."""

    def __init__(self, rate: int = TARGET_RATE) -> None:
        self.rate = rate
        self._resampler: av.AudioResampler | None = None
        self._input_key: tuple[str, str, int] | None = None
        self.samples_in = 0
        self.samples_out = 0

    def _new_resampler(self) -> av.AudioResampler:
        return av.AudioResampler(format="s16", layout="mono", rate=self.rate)

    @staticmethod
    def _to_array(frames: list[av.AudioFrame]) -> np.ndarray:
        if not frames:
            return np.zeros(0, np.int16)
        # s16 mono is packed: to_ndarray() is (1, samples)
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(
            np.int16, copy=False
        )

    def convert(self, frame: av.AudioFrame) -> np.ndarray:
        """Resample one frame; returns the 16 kHz mono samples that are ready (the FFmpeg
        resampler holds back a few samples of filter delay until the next frame or
        `flush`)."""
        if frame.sample_rate <= 0 or frame.samples <= 0:
            raise AudioFormatError(f"empty or rateless audio frame: {frame!r}")
        key = (frame.format.name, frame.layout.name, int(frame.sample_rate))
        drained = np.zeros(0, np.int16)
        if key != self._input_key:
            if self._resampler is not None:
                log.info("audio input changed from %s to %s; new resampler", self._input_key, key)
                drained = self._to_array(self._resampler.resample(None))
            self._resampler = self._new_resampler()
            self._input_key = key
        # The resampler follows frame pts; aiortc's pts are continuous, but a gap or a reset
        # would make FFmpeg insert or drop audio. The VAD clock is the sample count, so
        # strip pts and let samples flow back to back.
        frame.pts = None
        self.samples_in += frame.samples
        out = self._to_array(self._resampler.resample(frame))
        if drained.size:
            out = np.concatenate([drained, out])
        self.samples_out += out.size
        return out

    def flush(self) -> np.ndarray:
        """The samples still held in the resampler (call once at the end of the track)."""
        if self._resampler is None:
            return np.zeros(0, np.int16)
        out = self._to_array(self._resampler.resample(None))
        self._resampler = None
        self._input_key = None
        self.samples_out += out.size
        return out


def _lowpass_kernel(cutoff: float, taps: int = 63) -> np.ndarray:
    """Hann-windowed sinc low-pass, `cutoff` as a fraction of the input rate (0..0.5)."""
    n = np.arange(taps) - (taps - 1) / 2.0
    kernel = 2.0 * cutoff * np.sinc(2.0 * cutoff * n) * np.hanning(taps)
    return kernel / kernel.sum()


def resample_to_16k_mono(
    samples: np.ndarray, rate: int, channels: int = 1, *, target_rate: int = TARGET_RATE
) -> np.ndarray:
    """Convert a whole clip to ``target_rate`` mono int16 with NumPy only.

    `samples` may be 1-D (interleaved when ``channels > 1``) or shaped ``(frames,
    channels)``; integer samples are taken as int16 full scale, float samples as -1..1."""
    if rate <= 0 or channels <= 0:
        raise AudioFormatError(f"bad rate/channels: {rate}/{channels}")
    x = np.asarray(samples)
    if x.ndim == 1:
        if x.size % channels:
            raise AudioFormatError(f"{x.size} samples do not split into {channels} channels")
        x = x.reshape(-1, channels)
    elif x.ndim != 2 or x.shape[1] != channels:
        raise AudioFormatError(f"expected (frames, {channels}) samples, got {x.shape}")
    if np.issubdtype(x.dtype, np.floating):
        mono = x.astype(np.float64).mean(axis=1) * 32768.0
    else:
        mono = x.astype(np.float64).mean(axis=1)
    if mono.size == 0:
        return np.zeros(0, np.int16)
    if rate != target_rate:
        if rate > target_rate:  # anti-alias below the new Nyquist (with a little margin)
            mono = np.convolve(mono, _lowpass_kernel(0.45 * target_rate / rate), mode="same")
        if rate % target_rate == 0:
            mono = mono[:: rate // target_rate]
        else:
            n_out = round(mono.size * target_rate / rate)
            t_out = np.arange(n_out) * (rate / target_rate)
            mono = np.interp(t_out, np.arange(mono.size), mono)
    return np.clip(np.round(mono), -32768, 32767).astype(np.int16)
