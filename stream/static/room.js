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
  latencies: [],      // glass-to-result ms: capture → shown here (any capture clock)
  glass: [],          // the same, only where the capture time came from the browser's clock
  captureSources: {}, // how capture times were known: rtcp | gateway
  stats: null,
  ended: null,
  errors: [],
  interview: {
    questions: [], engine: null, current: null, transcripts: [], answers: {},
    evaluations: {}, report: null, errors: [], speaking: false,
  },
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
  if (msg.capture_source === "rtcp") {
    state.glass.push(latency);
    if (state.glass.length > 1000) state.glass.splice(0, 500);
  }
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

// ---- the interview -----------------------------------------------------------------

const TEXT = {
  ko: {
    question: (i, n) => `질문 ${i} / ${n}`, offline: "오프라인 엔진", llm: "LLM",
    speaking: "말하는 중", silent: "대기", metrics: "말하기 지표",
    duration: "길이", wpm: "분당 단어", sps: "초당 음절", fillers: "군말", pauses: "멈춤",
    longest: "최장 멈춤", tips: "개선 팁", model: "모범 답안", report: "면접 리포트",
    answer: "답변", emotion: "감정 점수", criterion: "항목", rating: "평가", reason: "이유",
    done: "면접이 끝났습니다. 수고하셨습니다!",
    current: "현재 감정", scoreTitle: "감정 점수",
    scoreHelp: "50점에서 시작; 긍정 표정(happy, normal)마다 +0.1, 부정 표정마다 −0.1",
    session: "세션", latency: "지연 (촬영→결과)", analysed: "분석", dropped: "버린 프레임",
    start: "시작", stop: "세션 종료", job: "직무", years: "경력(년)", company: "회사",
    language: "언어", intro: "자기소개서", tagline: "AI 모의 면접실 — 연습용 코칭 도구이며 채용 결정 도구가 아닙니다",
    noIntro: "자기소개서가 없어 감정 분석만 진행합니다",
  },
  en: {
    question: (i, n) => `Question ${i} of ${n}`, offline: "offline engine", llm: "LLM",
    speaking: "speaking", silent: "listening", metrics: "Speaking metrics",
    duration: "duration", wpm: "words/min", sps: "syllables/s", fillers: "fillers", pauses: "pauses",
    longest: "longest pause", tips: "Tips", model: "Model answer", report: "Interview report",
    answer: "Answer", emotion: "emotion score", criterion: "criterion", rating: "rating", reason: "reason",
    done: "The interview is over. Well done!",
    current: "Current emotion", scoreTitle: "Emotion score",
    scoreHelp: "starts at 50; +0.1 per positive face (happy, normal), −0.1 per negative one",
    session: "session", latency: "glass-to-result", analysed: "analysed", dropped: "dropped",
    start: "Start", stop: "End session", job: "Job title", years: "Years", company: "Company",
    language: "Language", intro: "Self-introduction (자기소개서)",
    tagline: "AI mock-interview room — a coaching tool, not a hiring decision",
    noIntro: "No self-introduction: emotion analysis only",
  },
};
const lang = () => $("language").value === "en" ? "en" : "ko";
const t = (key, ...args) => { const v = TEXT[lang()][key]; return typeof v === "function" ? v(...args) : v; };

function escapeHtml(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function speak(text) {
  // The question is read aloud by the browser's own speech synthesis (no server TTS).
  if (!window.speechSynthesis) return;
  try {
    const utterance = new SpeechSynthesisUtterance(text);
    utterance.lang = lang() === "ko" ? "ko-KR" : "en-US";
    window.speechSynthesis.cancel();
    window.speechSynthesis.speak(utterance);
  } catch (e) { /* no voices installed: the question is on screen anyway */ }
}

function metricsText(m) {
  if (!m) return "";
  const parts = [];
  if (m.duration_s != null) parts.push(`${t("duration")} ${Number(m.duration_s).toFixed(1)}s`);
  if (m.words_per_minute != null) parts.push(`${t("wpm")} ${Number(m.words_per_minute).toFixed(0)}`);
  if (m.syllables_per_second) parts.push(`${t("sps")} ${Number(m.syllables_per_second).toFixed(1)}`);
  if (m.filler_count != null) parts.push(`${t("fillers")} ${m.filler_count}${m.filler_words && m.filler_words.length ? " (" + m.filler_words.join(", ") + ")" : ""}`);
  if (m.pause_count != null) parts.push(`${t("pauses")} ${m.pause_count}`);
  if (m.longest_pause_s != null) parts.push(`${t("longest")} ${Number(m.longest_pause_s).toFixed(1)}s`);
  return `${t("metrics")}: ` + parts.join(" · ");
}

function evaluationHtml(data) {
  const rows = (data.rows || []).map((r) => `<tr><td>${escapeHtml(r[0])}</td><td>${escapeHtml(r[1])}</td><td>${escapeHtml(r[2])}</td></tr>`).join("");
  const ev = data.evaluation || {};
  const tips = (ev.tips || []).map((tip) => `<li>${escapeHtml(tip)}</li>`).join("");
  const emotion = data.emotion ? `<p class="muted">${t("emotion")}: ${data.emotion.score} <span class="band ${data.emotion.band}">${data.emotion.band}</span></p>` : "";
  return `<table class="eval"><tr><th>${t("criterion")}</th><th>${t("rating")}</th><th>${t("reason")}</th></tr>${rows}</table>`
    + `<p><b>${t("tips")}</b></p><ol>${tips}</ol><p><b>${t("model")}</b></p><p>${escapeHtml(ev.model_answer)}</p>${emotion}`;
}

function onInterview(msg) {
  const iv = state.interview;
  const data = msg.data || {};
  $("interview").style.display = "block";
  if (msg.step === "questions") {
    iv.questions = data.questions || [];
    iv.engine = data.engine;
    $("engine").textContent = data.engine === "offline" ? t("offline") : t("llm");
    $("engine").className = `badge ${data.engine === "offline" ? "offline" : ""}`;
  } else if (msg.step === "asked") {
    iv.current = data.index;
    $("q-number").textContent = t("question", data.index + 1, data.total || iv.questions.length || 3);
    $("question").textContent = data.question;
    $("transcript").innerHTML = "";
    $("metrics").textContent = "";
    $("evaluation").innerHTML = "";
    speak(data.question);
  } else if (msg.step === "answered") {
    iv.answers[data.index] = data;
    $("metrics").textContent = metricsText(data.metrics);
  } else if (msg.step === "evaluated") {
    iv.evaluations[data.index] = data;
    $("evaluation").innerHTML = evaluationHtml(data);
  } else if (msg.step === "report") {
    iv.report = data;
    showReport(data);
  } else if (msg.step === "error") {
    iv.errors.push(data);
    showError(data.message);
  }
}

function showReport(data) {
  const root = $("report");
  root.style.display = "block";
  const items = (data.items || []).map((item) => {
    const evaluated = state.interview.evaluations[item.index] || { evaluation: item.evaluation, rows: [], emotion: item.emotion };
    return `<section><div class="muted">${t("question", item.index + 1, data.items.length)}</div>`
      + `<div class="question">${escapeHtml(item.question)}</div>`
      + `<p><b>${t("answer")}</b>: ${escapeHtml(item.answer)}</p>`
      + `<p class="muted">${escapeHtml(metricsText(item.metrics))}</p>`
      + evaluationHtml(evaluated) + `</section>`;
  }).join("");
  root.innerHTML = `<h2>${t("report")}</h2><p>${t("done")}</p>${items}`;
}

function onTranscript(msg) {
  state.interview.transcripts.push(msg);
  const p = document.createElement("p");
  p.textContent = msg.text;
  $("transcript").appendChild(p);
}

function onSpeech(msg) {
  state.interview.speaking = msg.speaking;
  $("speaking").textContent = msg.speaking ? t("speaking") : t("silent");
  $("speaking").className = `badge ${msg.speaking ? "live" : ""}`;
}

async function submitProfile() {
  const profile = {
    job_title: $("job_title").value, years: Number($("years").value || 2),
    company: $("company").value, self_intro: $("self_intro").value, language: lang(),
  };
  if (!profile.self_intro.trim()) { // emotion-only session: no interview
    $("error").textContent = t("noIntro");
    return;
  }
  try {
    await api(`/api/sessions/${state.session}/profile`, profile);
    $("profile-panel").style.display = "none";
  } catch (err) {
    showError(String(err.message || err));
  }
}

function onMessage(event) {
  let msg;
  try { msg = JSON.parse(event.data); } catch (e) { return; }
  if (msg.type === "emotion") onEmotion(msg);
  else if (msg.type === "interview") onInterview(msg);
  else if (msg.type === "transcript") onTranscript(msg);
  else if (msg.type === "speech") onSpeech(msg);
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
    // The invitation link carries ?room=…&token=… (signed by `intervue invite`).
    const query = new URLSearchParams(location.search);
    const created = await api("/api/sessions", {
      room: query.get("room") || "", token: query.get("token") || "", meta: { page: "room" },
    });
    state.session = created.session_id;
    $("session").textContent = created.session_id;
    // STUN/TURN servers come from the gateway (INTERVUE_GATEWAY_ICE_SERVERS), TURN
    // credentials minted for this session only; none configured: host candidates only.
    pc = new RTCPeerConnection({ iceServers: created.ice_servers || [] });
    pc.addEventListener("connectionstatechange", () => {
      state.connection = pc.connectionState;
      setStatus(`connection: ${pc.connectionState}`);
      if (pc.connectionState === "failed") showError("connection failed");
    });
    channel = pc.createDataChannel("results");
    channel.addEventListener("message", onMessage);
    // The profile goes in once results can flow back, so no question is missed.
    channel.addEventListener("open", submitProfile, { once: true });
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

function applyLanguage() {
  document.documentElement.lang = lang();
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
}

$("language").addEventListener("change", applyLanguage);
applyLanguage();
$("start").addEventListener("click", start);
$("stop").addEventListener("click", () => endSession("ended by the candidate"));
window.addEventListener("pagehide", () => endSession("page closed"));
if (new URLSearchParams(location.search).has("autostart")) start();
