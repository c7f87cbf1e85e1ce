"""Test media generators round trips, and real headless Chromium playing them as camera/mic."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import time
import wave
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from aiohttp import web

from deploy import browser as tb
from deploy import fake_media as media

SPEECH_EN = "Hello, I am ready for the interview. Thank you for having me today."
SPEECH_KO = "안녕하세요. 오늘 면접 기회를 주셔서 감사합니다."


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def face_y4m(media_dir: Path) -> Path:
    return media.make_face_y4m(media_dir)


@pytest.fixture(scope="session")
def noface_y4m(media_dir: Path) -> Path:
    return media.make_noface_y4m(media_dir)


@pytest.fixture(scope="session")
def speech_wav(media_dir: Path) -> Path:
    return media.make_speech_wav(media_dir, SPEECH_EN)


def _haar_faces(rgb: np.ndarray) -> np.ndarray:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    found = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(60, 60))
    return np.asarray(found).reshape(-1, 4)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------
# media generators


def test_face_y4m_round_trip(face_y4m: Path) -> None:
    assert face_y4m.read_bytes().startswith(b"YUV4MPEG2 W640 H480 F15:1 Ip A1:1 C420jpeg\n")
    info, frames = media.read_y4m(face_y4m)
    assert (info.width, info.height, info.fps, info.frames) == (640, 480, 15, 60)
    assert info.seconds == pytest.approx(4.0)
    assert face_y4m.stat().st_size == len(info.header) + 1 + 60 * (6 + 640 * 480 * 3 // 2)

    frames = list(frames)
    # slight motion: consecutive frames differ, but only a little
    diffs = [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in itertools.pairwise(frames)]
    assert min(diffs) > 0.5, diffs
    assert max(diffs) < 25, diffs
    # a large frontal face in every sampled frame
    for i in range(0, 60, 6):
        faces = _haar_faces(frames[i])
        assert len(faces) == 1, (i, faces)
        x, y, w, h = faces[0]
        assert 180 <= h <= 250, (i, faces)
        assert 200 < x + w / 2 < 440 and 120 < y + h / 2 < 320, (i, faces)

    # FFmpeg's y4m demuxer (what PyAV uses) reads it the same way
    with av.open(str(face_y4m)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height, stream.format.name) == (640, 480, "yuv420p")
        assert stream.average_rate == 15
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(decoded) == 60
    assert np.abs(decoded[0].astype(int) - frames[0].astype(int)).mean() < 3


def test_noface_y4m_round_trip(noface_y4m: Path) -> None:
    info, frames = media.read_y4m(noface_y4m)
    assert (info.width, info.height, info.frames, info.colorspace) == (640, 480, 60, "420jpeg")
    frames = list(frames)
    assert frames[0].std() > 20  # a real scene, not a flat colour
    assert np.abs(frames[0].astype(int) - frames[15].astype(int)).mean() > 0.5
    assert all(len(_haar_faces(f)) == 0 for f in frames[::3])
    with av.open(str(noface_y4m)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 60


def test_video_options_and_cache(media_dir: Path, tmp_path: Path) -> None:
    small = media.make_face_y4m(media_dir, seconds=1.0, fps=10, size=(320, 240))
    info = media.y4m_info(small)
    assert (info.width, info.height, info.fps, info.frames) == (320, 240, 10, 10)
    faces = _haar_faces(media.y4m_frame(small, 0))
    assert len(faces) == 1 and 90 <= faces[0][3] <= 125, faces

    # same arguments: the cached file, untouched; explicit file paths work too
    mtime = small.stat().st_mtime_ns
    assert media.make_face_y4m(media_dir, seconds=1.0, fps=10, size=(320, 240)) == small
    assert small.stat().st_mtime_ns == mtime
    explicit = media.make_face_y4m(tmp_path / "cam.y4m", seconds=1.0, fps=10, size=(320, 240))
    assert explicit == tmp_path / "cam.y4m"
    assert _sha(explicit) == _sha(small)  # deterministic
    # different arguments at the same explicit path regenerate it
    media.make_face_y4m(tmp_path / "cam.y4m", seconds=0.5, fps=10, size=(320, 240))
    assert media.y4m_info(explicit).frames == 5

    with pytest.raises(ValueError, match="even"):
        media.make_face_y4m(tmp_path, size=(321, 240))


def test_speech_wav_round_trip(speech_wav: Path, tmp_path: Path) -> None:
    info = media.wav_info(speech_wav)
    assert (info.sample_rate, info.channels, info.sample_width) == (48000, 1, 2)
    assert 2.5 < info.seconds < 8.0, info
    samples, rate = media.read_wav(speech_wav)
    assert rate == 48000
    peak = np.abs(samples).max()
    assert peak > 3000, peak  # audible speech, not silence
    # deterministic: same arguments in another place give the same bytes
    again = media.make_speech_wav(tmp_path / "again.wav", SPEECH_EN)
    assert _sha(again) == _sha(speech_wav)
    # faster speech is shorter
    fast = media.make_speech_wav(tmp_path, SPEECH_EN, rate_wpm=250)
    assert media.wav_info(fast).seconds < info.seconds * 0.8


def test_speech_wav_korean_stereo_padded(tmp_path: Path) -> None:
    wav = media.make_speech_wav(
        tmp_path, SPEECH_KO, voice="ko", sample_rate=44100, channels=2, lead_silence=0.5,
        trail_silence=0.25,
    )  # fmt: skip
    info = media.wav_info(wav)
    assert (info.sample_rate, info.channels, info.sample_width) == (44100, 2, 2)
    assert info.seconds > 2.0, info
    samples, _ = media.read_wav(wav)
    assert np.abs(samples).max() > 3000
    assert np.abs(samples[: int(0.45 * 44100)]).max() == 0  # the lead silence
    assert np.abs(samples[-int(0.2 * 44100) :]).max() == 0  # the trail silence

    with pytest.raises(ValueError, match="empty"):
        media.make_speech_wav(tmp_path, "   ")
    with pytest.raises(ValueError, match="no voice"):
        media.make_speech_wav(tmp_path, "hello", voice="no-such-voice")
    assert {"en", "en-us", "ko"} <= media.espeak_voices()


def test_silence_wav(tmp_path: Path) -> None:
    wav = media.make_silence_wav(tmp_path / "quiet.wav", 1.5)
    with wave.open(str(wav), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (48000, 1, 2)
        assert w.getnframes() == 72000
        assert not any(w.readframes(w.getnframes()))


# --------------------------------------------------------------------------------------------
# real headless Chromium

PROBE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>intervue media probe</title>
<link rel="icon" href="data:,"></head>
<body>
<video id="v" autoplay playsinline muted></video>
<canvas id="c"></canvas>
<script>
const frames = (video, n) => new Promise((resolve) => {
  let left = n;
  const tick = () => (--left <= 0 ? resolve() : video.requestVideoFrameCallback(tick));
  video.requestVideoFrameCallback(tick);
});

// getUserMedia, then one camera frame (as PNG) and the loudest 20 ms of the microphone
window.probe = async (listenMs) => {
  const stream = await navigator.mediaDevices.getUserMedia({video: true, audio: true});
  const [vt] = stream.getVideoTracks();
  const [at] = stream.getAudioTracks();
  const video = document.getElementById("v");
  video.srcObject = stream;
  await video.play();
  await frames(video, 10);
  const w = video.videoWidth, h = video.videoHeight;
  const canvas = document.getElementById("c");
  canvas.width = w; canvas.height = h;
  canvas.getContext("2d").drawImage(video, 0, 0, w, h);

  const ac = new AudioContext();
  await ac.resume();
  const analyser = ac.createAnalyser();
  analyser.fftSize = 2048;
  ac.createMediaStreamSource(stream).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  let rmsMax = 0;
  const until = performance.now() + listenMs;
  while (performance.now() < until) {
    await new Promise((r) => setTimeout(r, 20));
    analyser.getFloatTimeDomainData(buf);
    let s = 0;
    for (const v of buf) s += v * v;
    rmsMax = Math.max(rmsMax, Math.sqrt(s / buf.length));
  }
  const result = {
    width: w, height: h,
    png: canvas.toDataURL("image/png"),
    video: {label: vt.label, readyState: vt.readyState, settings: vt.getSettings()},
    audio: at ? {label: at.label, readyState: at.readyState, muted: at.muted,
                 enabled: at.enabled, settings: at.getSettings()} : null,
    audioContext: {state: ac.state, sampleRate: ac.sampleRate},
    rmsMax,
  };
  await ac.close();
  stream.getTracks().forEach((t) => t.stop());
  return result;
};
</script>
</body></html>
"""


async def _serve(app: web.Application):
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/"


@pytest.fixture
async def probe_url():
    async def index(_request: web.Request) -> web.Response:
        return web.Response(text=PROBE_PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    runner, url = await _serve(app)
    try:
        yield url
    finally:
        await runner.cleanup()


async def _probe(video: Path | None, audio: Path | None, url: str) -> tuple[dict, np.ndarray]:
    """Run the probe page in a fresh browser; returns its report and the frame (RGB)."""
    async with tb.launch_browser(video=video, audio=audio) as browser:
        async with tb.logged_page(browser, url) as lp:
            try:
                result = await asyncio.wait_for(lp.page.evaluate("window.probe(1500)"), 60)
            except Exception as exc:
                raise AssertionError(f"probe failed: {exc}\n{lp.describe()}") from exc
            png = base64.b64decode(result.pop("png").split(",", 1)[1])
            bgr = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
            result["logs"] = lp.describe()
            return result, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _closest(frame: np.ndarray, frames: list[np.ndarray]) -> float:
    """Mean absolute difference (0-255) to the most similar of ``frames``, at 64x48."""
    small = cv2.resize(frame, (64, 48), interpolation=cv2.INTER_AREA).astype(np.float64)
    return min(
        float(np.abs(small - cv2.resize(f, (64, 48), interpolation=cv2.INTER_AREA)).mean())
        for f in frames
    )


@pytest.mark.e2e
@pytest.mark.slow
async def test_chromium_plays_fake_camera_and_microphone(
    face_y4m: Path, noface_y4m: Path, speech_wav: Path, media_dir: Path, probe_url: str
) -> None:
    face_frames = list(media.read_y4m(face_y4m)[1])
    noface_frames = list(media.read_y4m(noface_y4m)[1])

    started = time.monotonic()
    result, frame = await _probe(face_y4m, speech_wav, probe_url)
    print(f"browser probe (face + speech) took {time.monotonic() - started:.2f}s")
    info = json.dumps(result, indent=1)

    assert (result["width"], result["height"]) == (640, 480), info
    assert frame.shape == (480, 640, 3), info
    assert result["video"]["label"].endswith(face_y4m.name), info
    assert result["video"]["settings"]["frameRate"] == 15, info
    # the camera plays the y4m, not Chromium's green test pattern (also 640x480): a real
    # picture whose mean colour and layout match the file's frames, with the face detectable
    assert cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).std() > 20, info
    file_mean = np.mean([f.reshape(-1, 3).mean(0) for f in face_frames], axis=0)
    frame_mean = frame.reshape(-1, 3).mean(0)
    assert np.abs(frame_mean - file_mean).max() < 12, (frame_mean, file_mean, info)
    assert _closest(frame, face_frames) < 12, info
    assert _closest(frame, noface_frames) > 40, info
    faces = _haar_faces(frame)
    assert len(faces) == 1 and 180 <= faces[0][3] <= 250, (faces, info)

    # the microphone is live and plays the speech file
    audio = result["audio"]
    assert audio and audio["readyState"] == "live" and not audio["muted"], info
    assert result["rmsMax"] > 0.02, info

    # the faceless video plays as itself; the silent file gives silence, not the fake beep
    silence = media.make_silence_wav(media_dir, 2.0)
    result2, frame2 = await _probe(noface_y4m, silence, probe_url)
    info2 = json.dumps(result2, indent=1)
    assert (result2["width"], result2["height"]) == (640, 480), info2
    assert _closest(frame2, noface_frames) < 12, info2
    assert _closest(frame2, face_frames) > 40, info2
    assert len(_haar_faces(frame2)) == 0, info2
    assert result2["audio"]["readyState"] == "live", info2
    assert result2["rmsMax"] < 0.005, info2


# --------------------------------------------------------------------------------------------
# WebRTC from Chromium to an aiortc peer on 127.0.0.1

CALL_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"></head><body><script>
window.call = async () => {
  const stream = await navigator.mediaDevices.getUserMedia({video: true, audio: true});
  const pc = new RTCPeerConnection({iceServers: []});
  window.pc = pc;
  stream.getTracks().forEach((t) => pc.addTrack(t, stream));
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange",
                        () => pc.iceGatheringState === "complete" && resolve());
  });
  const res = await fetch("/offer", {method: "POST", headers: {"content-type": "application/json"},
                                     body: JSON.stringify(pc.localDescription)});
  await pc.setRemoteDescription(await res.json());
  return pc.localDescription.sdp;
};
window.selectedPair = async () => {
  const stats = await window.pc.getStats();
  const out = {connectionState: window.pc.connectionState};
  stats.forEach((s) => {
    if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") {
      out.local = stats.get(s.localCandidateId).address;
      out.remote = stats.get(s.remoteCandidateId).address;
    }
  });
  return out;
};
</script></body></html>
"""


@pytest.mark.e2e
@pytest.mark.slow
async def test_chromium_webrtc_to_aiortc_over_loopback(
    face_y4m: Path, speech_wav: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The browser flags make 127.0.0.1 host candidates usable: aiortc, restricted to
    127.0.0.1 (aioice never offers loopback on its own), receives the fake camera and mic."""
    import aioice.ice
    from aiortc import RTCPeerConnection, RTCSessionDescription

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    received: dict[str, list] = {"video": [], "audio": []}
    pcs: list[RTCPeerConnection] = []
    pumps: list[asyncio.Task] = []

    async def pump(track) -> None:
        while True:
            try:
                frame = await track.recv()
            except Exception:  # MediaStreamError when the peer goes away
                return
            if track.kind == "video":
                received["video"].append(frame.to_ndarray(format="rgb24"))
                del received["video"][:-3]  # keep the latest few
            else:
                received["audio"].append(frame.sample_rate)

    async def offer(request: web.Request) -> web.Response:
        desc = await request.json()
        pc = RTCPeerConnection()
        pcs.append(pc)
        pc.on("track", lambda track: pumps.append(asyncio.ensure_future(pump(track))))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=desc["sdp"], type=desc["type"]))
        await pc.setLocalDescription(await pc.createAnswer())
        return web.json_response({"sdp": pc.localDescription.sdp, "type": "answer"})

    async def index(_request: web.Request) -> web.Response:
        return web.Response(text=CALL_PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_post("/offer", offer)
    runner, url = await _serve(app)
    started = time.monotonic()
    try:
        async with tb.launch_browser(video=face_y4m, audio=speech_wav) as browser:
            async with tb.logged_page(browser, url) as lp:
                offer_sdp = await asyncio.wait_for(lp.page.evaluate("window.call()"), 30)
                assert " 127.0.0.1 " in offer_sdp, offer_sdp  # loopback host candidate
                for _ in range(300):
                    if len(received["audio"]) >= 20 and len(received["video"]) >= 3:
                        break
                    await asyncio.sleep(0.05)
                pair = await lp.page.evaluate("window.selectedPair()")
                context = f"pair={pair} audio frames={len(received['audio'])}\n{lp.describe()}"
                assert pair.get("remote") == "127.0.0.1", context
                assert len(received["video"]) >= 3 and len(received["audio"]) >= 20, context
        print(f"browser -> aiortc call took {time.monotonic() - started:.2f}s, pair {pair}")
    finally:
        for pc in pcs:
            await pc.close()
        for task in pumps:
            task.cancel()
        await runner.cleanup()

    frame = received["video"][-1]
    # the sender may scale down under CPU or bandwidth pressure, never change the aspect
    height, width = frame.shape[:2]
    assert width * 3 == height * 4 and width >= 320, frame.shape
    frame = cv2.resize(frame, (640, 480), interpolation=cv2.INTER_LINEAR)
    # VP8 at a loopback bitrate is lossy; the face must still be there
    assert _closest(frame, list(media.read_y4m(face_y4m)[1])) < 25
    assert len(_haar_faces(frame)) == 1
    assert set(received["audio"]) == {48000}
