// The interview room: camera + mic to the gateway over WebRTC, results back over a data
// channel. Plain JS, no build step. `window.intervue` exposes state for tests and debugging.
"use strict";

const EMOTIONS = ["anger", "anxiety", "embarrass", "happy", "normal", "pain", "sad"];
const $ = (id) => document.getElementById(id);

const state = {
  session: null,
  connection: "new",
  results: 0,
  faceResults: 0,
  noFaceResults: 0,
  last: null,
  score: 50,
  band: "normal",
  latencies: [],      // glass-to-result ms (browser clock): capture → shown here
  captureSources: {}, // how capture times were known: rtcp | gateway
  stats: null,
  ended: null,
  errors: [],
};
window.intervue = state;

let pc = null;
let channel = null;

function percentile(values, p) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function setStatus(text) { $("status").textContent = text; }
function showError(text) { $("error").textContent = text; state.errors.push(text); }

async function api(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `${path}: HTTP ${response.status}`);
  return data;
}

function waitForIce(peer) {
  if (peer.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (peer.iceGatheringState === "complete") { peer.removeEventListener("icegatheringstatechange", done); resolve(); } };
    peer.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000); // host candidates are enough on a LAN; don't hang
  });
}

function drawFaces(result) {
  const canvas = $("overlay");
  const video = $("preview");
  const w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  if (!result || !result.faces.length) return;
  // The video is letterboxed inside the stage (object-fit: contain): map frame pixels to it.
  const vw = video.videoWidth || result.width, vh = video.videoHeight || result.height;
  const scale = Math.min(w / vw, h / vh);
  const ox = (w - vw * scale) / 2, oy = (h - vh * scale) / 2;
  const sx = (vw / result.width) * scale, sy = (vh / result.height) * scale;
  for (const face of result.faces) {
    const [x1, y1, x2, y2] = face.box;
    const colour = face.valence === "positive" ? "#1b9e4b" : "#c0392b";
    ctx.strokeStyle = colour; ctx.lineWidth = 3;
    ctx.strokeRect(ox + x1 * sx, oy + y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy);
    const text = `${face.label} ${(face.confidence * 100).toFixed(0)}%`;
    ctx.font = "600 16px system-ui, sans-serif";
    const tw = ctx.measureText(text).width + 10;
    ctx.fillStyle = colour;
    ctx.fillRect(ox + x1 * sx, Math.max(0, oy + y1 * sy - 24), tw, 22);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, ox + x1 * sx + 5, Math.max(16, oy + y1 * sy - 8));
  }
}

function showProbs(face) {
  const root = $("probs");
  root.innerHTML = "";
  if (!face) return;
  for (const name of EMOTIONS) {
    const p = face.probs[name] || 0;
    const row = document.createElement("div");
    row.innerHTML = `<span>${name}</span><span class="bar"><span style="width:${(p * 100).toFixed(1)}%"></span></span><span>${(p * 100).toFixed(0)}%</span>`;
    root.appendChild(row);
  }
}

function onEmotion(msg) {
  const shownAt = Date.now();
  state.results += 1;
  state.last = msg;
  state.score = msg.score;
  state.band = msg.band;
  const latency = shownAt - msg.capture_ms;
  state.latencies.push(latency);
  if (state.latencies.length > 1000) state.latencies.splice(0, 500);
  state.captureSources[msg.capture_source] = (state.captureSources[msg.capture_source] || 0) + 1;
  drawFaces(msg);
  if (msg.faces.length) {
    state.faceResults += 1;
    const face = msg.faces.reduce((a, b) => ((b.box[2] - b.box[0]) > (a.box[2] - a.box[0]) ? b : a));
    $("emotion").textContent = face.label;
    $("emotion-detail").textContent = `${(face.confidence * 100).toFixed(0)}% · ${face.valence}` + (msg.faces.length > 1 ? ` · ${msg.faces.length} faces` : "");
    showProbs(face);
  } else {
    state.noFaceResults += 1;
    $("emotion").textContent = "no face";
    $("emotion-detail").textContent = "no face in view";
    showProbs(null);
  }
  $("score").textContent = Number(msg.score).toFixed(1);
  $("band").textContent = msg.band;
  $("band").className = `band ${msg.band}`;
  const p50 = percentile(state.latencies, 50), p95 = percentile(state.latencies, 95);
  $("latency").textContent = `${latency.toFixed(0)} ms (p50 ${p50.toFixed(0)}, p95 ${p95.toFixed(0)}; clock: ${msg.capture_source})`;
}

function onMessage(event) {
  let msg;
  try { msg = JSON.parse(event.data); } catch (e) { return; }
  if (msg.type === "emotion") onEmotion(msg);
  else if (msg.type === "stats") {
    state.stats = msg;
    $("analysed").textContent = `${msg.results} results of ${msg.video_frames} frames`;
    $("dropped").textContent = `${msg.frames_dropped}`;
  } else if (msg.type === "ended") {
    state.ended = msg.reason;
    setStatus(`ended: ${msg.reason}`);
  }
}

async function start() {
  $("start").disabled = true;
  $("error").textContent = "";
  try {
    setStatus("asking for camera and microphone…");
    const media = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } },
      // Automatic gain control clips speech (bad for Whisper); echo cancellation stays on
      // because the room speaks its questions aloud.
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: false },
    });
    $("preview").srcObject = media;
    setStatus("creating a session…");
    const created = await api("/api/sessions", { meta: { page: "room" } });
    state.session = created.session_id;
    $("session").textContent = created.session_id;
    pc = new RTCPeerConnection({ iceServers: [] });
    pc.addEventListener("connectionstatechange", () => {
      state.connection = pc.connectionState;
      setStatus(`connection: ${pc.connectionState}`);
      if (pc.connectionState === "failed") showError("connection failed");
    });
    channel = pc.createDataChannel("results");
    channel.addEventListener("message", onMessage);
    for (const track of media.getTracks()) pc.addTrack(track, media);
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIce(pc);
    setStatus("connecting…");
    const answer = await api(created.offer_url, { sdp: pc.localDescription.sdp, type: pc.localDescription.type });
    await pc.setRemoteDescription(answer);
    $("stop").disabled = false;
  } catch (err) {
    showError(String(err.message || err));
    setStatus("not connected");
    $("start").disabled = false;
  }
}

function endSession(reason) {
  if (!state.session || state.ended) return;
  state.ended = reason;
  try { if (channel && channel.readyState === "open") channel.send(JSON.stringify({ type: "bye" })); } catch (e) { /* closing anyway */ }
  navigator.sendBeacon(`/api/sessions/${state.session}/end`, "{}");
  if (pc) pc.close();
  const media = $("preview").srcObject;
  if (media) media.getTracks().forEach((t) => t.stop());
  setStatus("session ended");
  $("stop").disabled = true;
}

$("start").addEventListener("click", start);
$("stop").addEventListener("click", () => endSession("ended by the candidate"));
window.addEventListener("pagehide", () => endSession("page closed"));
if (new URLSearchParams(location.search).has("autostart")) start();
