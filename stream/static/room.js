// The interview room: camera + mic to the gateway over WebRTC, results back over a data
// channel whose messages are the typed structs of stream/contract.py (PageMessage in,
// RoomRequest out), as described by protocol.schema.json beside this file (generated from
// them; tests/test_room_protocol.py checks this file against it). Plain JS, no build step.
// `window.intervue` exposes state for tests.
"use strict";

// The data channel's protocol version (the schema's x-protocol-version; `hello` carries v).
const PROTOCOL_VERSION = 1;

// The rubric's criteria in the order of an evaluated step's rows (llm.schemas.CRITERIA).
const CRITERIA = ["overall", "similarity", "clarity", "technical_explanation", "examples", "communication", "natural_delivery"];
const EMOTIONS = ["anger", "anxiety", "embarrass", "happy", "normal", "pain", "sad"];
const STORE_KEY = "intervue.session";
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
  glassCount: 0,      // how many glass latencies were ever pushed (the list keeps the last ≤ 1000)
  captureSources: {}, // how capture times were known: rtcp | gateway
  stats: null,
  ended: null,        // the end code once the session is over
  resumed: 0,         // how many times this page came back to its session
  errors: [],
  turn: null,         // the last TurnUpdate
  interview: {
    questions: [], engine: null, total: null,
    cards: {},        // "index-attempt" → card state
    order: [],        // card keys in the order asked
    current: null,    // key of the latest card
    report: null, errors: [], speaking: false,
    working: null,    // the interviewer's slow step under way (a "working" step) + since
    reading: null,    // key of the card whose question is being read aloud (mic held)
  },
};
window.intervue = state;

let pc = null;
let channel = null;
let media = null;

// ---- words a person reads ------------------------------------------------------------

const TEXT = {
  ko: {
    title: "intervue — 면접실",
    tagline: "AI 모의 면접실 — 연습용 코칭 도구이며 채용 결정 도구가 아닙니다",
    start: "시작", stop: "세션 종료", job: "직무", years: "경력(년)", company: "회사",
    language: "언어", intro: "자기소개서",
    introPlaceholder: "자기소개서를 붙여 넣으세요. 질문은 이 내용으로 만들어집니다.",
    defaults: { job_title: "AI 개발자", company: "EST Soft" },
    current: "현재 감정", scoreTitle: "감정 점수 (세션 전체)",
    scoreHelp: "50점에서 시작해, 얼굴이 보이는 1초마다 긍정 표정(기쁨, 중립)이면 +0.1, 부정 표정이면 −0.1. 70점 초과는 좋음, 40점 초과는 보통.",
    session: "세션", latency: "지연 (촬영→결과)", analysed: "분석한 프레임", dropped: "건너뛴 프레임",
    waitingCamera: "카메라를 기다리는 중", noFace: "얼굴 없음", noFaceDetail: "화면에 얼굴이 보이지 않습니다",
    faces: (n) => `얼굴 ${n}개`,
    emotions: { anger: "분노", anxiety: "불안", embarrass: "당황", happy: "기쁨", normal: "중립", pain: "상처", sad: "슬픔" },
    valence: { positive: "긍정", negative: "부정" },
    bands: { good: "좋음", normal: "보통", bad: "나쁨" },
    analysedText: (n, a, c) => `${n.toLocaleString("ko-KR")}장 (초당 ${a}장 분석 / 카메라 초당 ${c}장)`,
    droppedText: (n) => n ? `${n.toLocaleString("ko-KR")}장 (분석이 밀려 최신 프레임만 분석)` : "없음",
    latencyText: (ms, p50, p95) => `${ms} ms (중앙값 ${p50}, 95% ${p95})`,
    status: {
      idle: "연결 전", media: "카메라와 마이크를 요청하는 중…", creating: "세션을 만드는 중…",
      connecting: "연결하는 중…", live: "연결됨", reconnecting: "면접에 다시 연결하는 중…",
      failed: "연결이 끊겼습니다", ended: "세션이 끝났습니다",
    },
    endCodes: {
      candidate: "세션을 종료했습니다", left: "페이지가 돌아오지 않아 세션이 끝났습니다",
      no_media: "카메라 영상이 끊겨 세션이 끝났습니다", no_offer: "연결되지 않아 세션이 끝났습니다",
      max_length: "최대 세션 시간이 지나 끝났습니다", connection: "연결 문제로 세션이 끝났습니다",
      shutdown: "서버가 종료되어 세션이 끝났습니다", other: "세션이 끝났습니다",
    },
    noIntro: "자기소개서가 없어 면접 없이 감정 분석만 합니다. 면접을 하려면 자기소개서를 입력하고 다시 시작하세요.",
    connectionFailed: "연결에 실패했습니다. 네트워크를 확인하고 다시 시도하세요.",
    progress: (i, n) => `질문 ${i} / ${n}`,
    attempt: (a) => `${a}번째 시도`,
    followUp: "면접관 추가 질문",
    offline: "오프라인 엔진", llm: "AI 면접관",
    speaking: "말하는 중", listening: "듣는 중",
    speakingAside: "말하는 중 · 답변 아님", micAside: "마이크 켜짐 · 답변 중 아님",
    micHeld: "질문 읽는 중 · 마이크 대기",
    reading: "질문을 읽어 드리는 중입니다. 다 읽으면 마이크가 답변을 듣기 시작합니다.",
    answerNow: "바로 답변하기",
    waitingQuestions: "자기소개서로 질문을 만드는 중…",
    captionEmpty: "답변을 말씀하세요. 말한 내용이 여기에 나타납니다.",
    answering: "답변 중 — 생각할 시간이 필요하면 잠시 멈춰도 됩니다.",
    done: "답변 완료", doneHint: "Ctrl+Enter",
    silenceHint: (s) => `아직 계신가요? ${s}초 뒤 답변이 끝납니다. 계속 말씀하시거나 [답변 완료]를 누르세요.`,
    countdown: (t) => `남은 답변 시간 ${t}`,
    transcribing: "답변을 받아 적는 중…", evaluating: "답변을 평가하는 중…",
    preparingQuestions: (s, b) => `질문을 준비하고 있어요… ${s}초` + (b ? ` (최대 ${b}초)` : ""),
    writingFeedback: (s, b) => `답변을 평가하고 있어요… ${s}초` + (b ? ` (최대 ${b}초)` : ""),
    reasons: {
      done: "답변을 마쳤습니다.", silence: "긴 침묵으로 답변이 끝났습니다.",
      time_cap: "답변 시간이 끝났습니다.", session_end: "세션이 끝나 답변이 끝났습니다.",
    },
    noAnswer: "들린 답변이 없습니다. 다시 시도하거나 다음 질문으로 넘어가세요.",
    next: "다음 질문", finish: "면접 마치기", retry: "다시 답변하기",
    autoNext: (s) => `${s}초 뒤 다음 질문으로 넘어갑니다.`,
    metrics: "말하기 지표",
    metricsText: (m) => metricsKo(m),
    emotion: (score, band) => `이 답변의 감정 점수 ${score} (${band})`,
    tips: "개선 팁", model: "모범 답안", criterion: "평가 항목", rating: "평가", reason: "이유",
    report: "면접 리포트", reportDone: "면접이 끝났습니다. 수고하셨습니다! 위의 카드에서 질문별 피드백을 다시 볼 수 있습니다.",
    reportQuestion: "질문", reportAttempts: "시도", reportOverall: "전반적인 평가", reportEmotion: "감정",
    noAnswerShort: "답변 없음",
    engineOffline: "오프라인 규칙 기반 평가입니다 (언어 모델 없음).",
    rule: "규칙",
    ruleNote: "‘규칙’ 항목은 말하기 지표와 정해진 규칙으로 평가했습니다(전반적인 점수는 다른 항목의 중앙값). 나머지 항목과 팁, 모범 답안은 AI 면접관이 썼습니다.",
    error: "오류",
  },
  en: {
    title: "intervue — interview room",
    tagline: "AI mock-interview room — a coaching tool, not a hiring decision",
    start: "Start", stop: "End session", job: "Job title", years: "Years of experience", company: "Company",
    language: "Language", intro: "Self-introduction",
    introPlaceholder: "Paste your self-introduction (cover letter). The questions are made from it.",
    defaults: { job_title: "AI engineer", company: "EST Soft" },
    current: "Current emotion", scoreTitle: "Emotion score (whole session)",
    scoreHelp: "Starts at 50; every second your face is seen adds 0.1 for a positive expression (happiness, neutral) and takes 0.1 for a negative one. Above 70 is good, above 40 normal.",
    session: "Session", latency: "Delay (camera → result)", analysed: "Frames analysed", dropped: "Frames skipped",
    waitingCamera: "Waiting for the camera", noFace: "No face", noFaceDetail: "No face in view",
    faces: (n) => `${n} faces`,
    emotions: { anger: "Anger", anxiety: "Anxiety", embarrass: "Embarrassment", happy: "Happiness", normal: "Neutral", pain: "Pain", sad: "Sadness" },
    valence: { positive: "positive", negative: "negative" },
    bands: { good: "Good", normal: "Normal", bad: "Bad" },
    analysedText: (n, a, c) => `${n.toLocaleString("en-US")} (${a} per second of the camera's ${c})`,
    droppedText: (n) => n ? `${n.toLocaleString("en-US")} (analysis was behind; the newest frame went first)` : "none",
    latencyText: (ms, p50, p95) => `${ms} ms (median ${p50}, 95th percentile ${p95})`,
    status: {
      idle: "Not connected", media: "Asking for the camera and microphone…", creating: "Creating a session…",
      connecting: "Connecting…", live: "Connected", reconnecting: "Reconnecting to your interview…",
      failed: "Connection lost", ended: "Session ended",
    },
    endCodes: {
      candidate: "You ended the session", left: "The page did not come back, so the session ended",
      no_media: "The camera stopped, so the session ended", no_offer: "The room never connected, so the session ended",
      max_length: "The session reached its maximum length", connection: "The session ended because of a connection problem",
      shutdown: "The server stopped, so the session ended", other: "The session ended",
    },
    noIntro: "No self-introduction, so this is emotion analysis only. For an interview, paste your self-introduction and start again.",
    connectionFailed: "The connection failed. Check your network and try again.",
    progress: (i, n) => `Question ${i} of ${n}`,
    attempt: (a) => `attempt ${a}`,
    followUp: "interviewer's follow-up",
    offline: "offline engine", llm: "AI interviewer",
    speaking: "speaking", listening: "listening",
    speakingAside: "speaking · not an answer", micAside: "mic on · not answering",
    micHeld: "reading the question · mic waits",
    reading: "Reading the question aloud. The microphone starts listening when it ends.",
    answerNow: "Answer now",
    waitingQuestions: "Preparing questions from your self-introduction…",
    captionEmpty: "Answer aloud; what you say appears here.",
    answering: "Answering — pause to think whenever you need to.",
    done: "Done answering", doneHint: "Ctrl+Enter",
    silenceHint: (s) => `Still there? Your answer ends in ${s} s. Keep talking, or press Done answering.`,
    countdown: (t) => `${t} left to answer`,
    transcribing: "Writing down your answer…", evaluating: "Evaluating your answer…",
    preparingQuestions: (s, b) => `Preparing your questions… ${s} s` + (b ? ` (up to ${b} s)` : ""),
    writingFeedback: (s, b) => `Writing feedback on your answer… ${s} s` + (b ? ` (up to ${b} s)` : ""),
    reasons: {
      done: "You finished your answer.", silence: "The answer ended after a long silence.",
      time_cap: "The time for this answer is up.", session_end: "The session ended during the answer.",
    },
    noAnswer: "No answer was heard. Try again, or go on to the next question.",
    next: "Next question", finish: "Finish the interview", retry: "Try again",
    autoNext: (s) => `The next question comes in ${s} s.`,
    metrics: "Speaking",
    metricsText: (m) => metricsEn(m),
    emotion: (score, band) => `Emotion score during this answer: ${score} (${band})`,
    tips: "Tips", model: "Model answer", criterion: "Criterion", rating: "Rating", reason: "Reason",
    report: "Interview report", reportDone: "The interview is over. Well done! Each question's feedback stays in its card above.",
    reportQuestion: "Question", reportAttempts: "Attempts", reportOverall: "Overall", reportEmotion: "Emotion",
    noAnswerShort: "no answer",
    engineOffline: "Evaluated by offline rules (no language model).",
    rule: "rule",
    ruleNote: "Rows marked “rule” were rated by fixed rules from your speaking metrics (overall: the middle of the other ratings); the AI interviewer wrote the other criteria, the tips and the model answer.",
    error: "Error",
  },
};
const lang = () => ($("language").value === "en" ? "en" : "ko");
const T = () => TEXT[lang()];
const t = (key, ...args) => { const v = T()[key]; return typeof v === "function" ? v(...args) : v; };
const emotionName = (label) => T().emotions[label] || label;
const bandName = (band) => T().bands[band] || band;

function plural(n, one, many) { return `${n} ${n === 1 ? one : many}`; }
function seconds(value) { return Number(value).toFixed(value < 10 ? 1 : 0); }

function metricsEn(m) {
  const parts = [];
  if (m.duration_s != null) parts.push(`${seconds(m.duration_s)} s of speech`);
  if (m.rate_basis === "syllables" && m.syllables_per_second) parts.push(`${Number(m.syllables_per_second).toFixed(1)} syllables per second`);
  else if (m.words_per_minute != null) parts.push(`${Number(m.words_per_minute).toFixed(0)} words per minute`);
  if (m.filler_count != null) {
    const which = m.filler_words && m.filler_words.length ? ` (${[...new Set(m.filler_words)].join(", ")})` : "";
    parts.push(plural(m.filler_count, "filler word", "filler words") + which);
  }
  if (m.pause_count != null) {
    let text = plural(m.pause_count, "pause", "pauses");
    if (m.pause_count && m.longest_pause_s != null) text += `, the longest ${seconds(m.longest_pause_s)} s`;
    parts.push(text);
  }
  return parts.join(" · ");
}

function metricsKo(m) {
  const parts = [];
  if (m.duration_s != null) parts.push(`말한 시간 ${seconds(m.duration_s)}초`);
  if (m.rate_basis === "syllables" && m.syllables_per_second) parts.push(`초당 ${Number(m.syllables_per_second).toFixed(1)}음절`);
  else if (m.words_per_minute != null) parts.push(`분당 ${Number(m.words_per_minute).toFixed(0)}단어`);
  if (m.filler_count != null) {
    const which = m.filler_words && m.filler_words.length ? ` (${[...new Set(m.filler_words)].join(", ")})` : "";
    parts.push(`군말 ${m.filler_count}번${which}`);
  }
  if (m.pause_count != null) {
    let text = `멈춤 ${m.pause_count}번`;
    if (m.pause_count && m.longest_pause_s != null) text += `, 가장 긴 멈춤 ${seconds(m.longest_pause_s)}초`;
    parts.push(text);
  }
  return parts.join(" · ");
}

function clockText(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  return `${Math.floor(total / 60)}:${String(total % 60).padStart(2, "0")}`;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

// ---- status and errors ---------------------------------------------------------------

let statusKey = "idle";
function setStatus(key) { statusKey = key; $("status").textContent = T().status[key] || key; }
function showError(text) { $("error").textContent = text; state.errors.push(text); }

// ---- the gateway ---------------------------------------------------------------------

async function api(path, body) {
  const response = await fetch(path, {
    method: "POST",
    // The session's secret is an HttpOnly cookie scoped to /api/sessions/<id>: the page
    // never holds it, the browser sends it (also with the unload beacon below).
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data.error || `${path}: HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function send(message) {
  if (channel && channel.readyState === "open") channel.send(JSON.stringify(message));
}

function waitForIce(peer) {
  if (peer.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (peer.iceGatheringState === "complete") { peer.removeEventListener("icegatheringstatechange", done); resolve(); } };
    peer.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000); // host candidates are enough on a LAN; don't hang
  });
}

// ---- emotion -------------------------------------------------------------------------

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
    const text = `${emotionName(face.label)} ${(face.confidence * 100).toFixed(0)}%`;
    ctx.font = `600 16px ${getComputedStyle(document.body).fontFamily}`;
    const tw = ctx.measureText(text).width + 10;
    ctx.fillStyle = colour;
    ctx.fillRect(ox + x1 * sx, Math.max(0, oy + y1 * sy - 24), tw, 22);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, ox + x1 * sx + 5, Math.max(16, oy + y1 * sy - 8));
  }
}

function showProbs(face) {
  const root = $("probs");
  root.replaceChildren();
  if (!face) return;
  for (const name of EMOTIONS) {
    const p = face.probs[name] || 0;
    const fill = el("span");
    fill.style.width = `${(p * 100).toFixed(1)}%`;
    root.append(el("div", {}, el("span", { text: emotionName(name) }), el("span", { class: "bar" }, fill), el("span", { text: `${(p * 100).toFixed(0)}%` })));
  }
}

function showScore() {
  $("score").textContent = Number(state.score).toFixed(1);
  $("band").textContent = bandName(state.band);
  $("band").className = `band ${["good", "normal", "bad"].includes(state.band) ? state.band : "normal"}`;
}

function onEmotion(msg) {
  if (state.ended) return;
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
    state.glassCount += 1;
    if (state.glass.length > 1000) state.glass.splice(0, 500);
  }
  state.captureSources[msg.capture_source] = (state.captureSources[msg.capture_source] || 0) + 1;
  drawFaces(msg);
  if (msg.faces.length) {
    state.faceResults += 1;
    const face = msg.faces.reduce((a, b) => ((b.box[2] - b.box[0]) > (a.box[2] - a.box[0]) ? b : a));
    $("emotion").textContent = emotionName(face.label);
    $("emotion-detail").textContent = `${(face.confidence * 100).toFixed(0)}% · ${T().valence[face.valence] || ""}` + (msg.faces.length > 1 ? ` · ${t("faces", msg.faces.length)}` : "");
    showProbs(face);
  } else {
    state.noFaceResults += 1;
    $("emotion").textContent = t("noFace");
    $("emotion-detail").textContent = t("noFaceDetail");
    showProbs(null);
  }
  showScore();
  const p50 = percentile(state.latencies, 50), p95 = percentile(state.latencies, 95);
  $("latency").textContent = t("latencyText", latency.toFixed(0), p50.toFixed(0), p95.toFixed(0));
}

function percentile(values, p) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function onStats(msg) {
  state.stats = msg;
  $("analysed").textContent = t("analysedText", msg.results, Number(msg.analysed_fps || 0).toFixed(0), Number(msg.camera_fps || 0).toFixed(0));
  $("dropped").textContent = t("droppedText", msg.frames_dropped);
}

// ---- the interview: one card per question attempt -------------------------------------

const cardKey = (index, attempt) => `${index}-${attempt}`;

function cardOf(index, attempt) {
  const iv = state.interview;
  const key = cardKey(index, attempt);
  if (!iv.cards[key]) {
    iv.cards[key] = {
      index, attempt, question: "", followUp: false, total: null,
      transcripts: {}, answered: null, evaluated: null, reason: null, state: "answering",
    };
    iv.order.push(key);
    const node = el("article", { class: "panel card open", id: `card-${key}`, "data-key": key });
    $("cards").append(node);
  }
  return iv.cards[key];
}

function latestKey() { const order = state.interview.order; return order.length ? order[order.length - 1] : null; }

function renderCard(card) {
  showSpeech();
  const key = cardKey(card.index, card.attempt);
  const node = $(`card-${key}`);
  if (!node) return;
  const iv = state.interview;
  const latest = latestKey() === key;
  node.className = `panel card ${card.evaluated ? "done" : card.state === "answering" ? "open" : ""}`;
  const head = el("div", { class: "muted" },
    t("progress", card.index + 1, card.total || iv.total || iv.questions.length || 3),
    card.attempt > 1 ? ` · ${t("attempt", card.attempt)}` : "",
    card.followUp ? ` · ${t("followUp")}` : "");
  const question = el("div", { class: "question", text: card.question });
  const reading = state.interview.reading === key;
  // no "answer aloud" under a question still being read aloud (the mic waits)
  const caption = el("div", { class: "caption", "data-empty": card.state === "answering" && !reading ? t("captionEmpty") : "" });
  const parts = Object.values(card.transcripts).sort((a, b) => a.order - b.order);
  for (const part of parts) caption.append(el("p", { text: part.text }));
  const children = [head, question, caption];
  const live = card.state === "answering" && !state.ended;
  if (live) {
    const turn = state.turn && state.turn.question === card.index && state.turn.attempt === card.attempt ? state.turn : null;
    const clock = el("div", { class: "clock", id: "turn-clock", text: t("answering") });
    if (reading) {
      clock.textContent = t("reading");
    } else if (turn && turn.silence_hint && turn.silence_left_ms != null) {
      clock.className = "clock hint";
      clock.setAttribute("role", "alert");
      clock.textContent = t("silenceHint", Math.max(1, Math.ceil(turn.silence_left_ms / 1000)));
    } else if (turn && turn.countdown) {
      clock.className = "clock countdown";
      clock.textContent = t("countdown", clockText(turn.cap_left_ms));
    }
    const done = el("button", { id: "done", "aria-keyshortcuts": "Control+Enter" }, t("done"), " ", el("kbd", { text: t("doneHint") }));
    done.addEventListener("click", () => doneAnswering());
    const actions = el("div", { class: "actions" }, done);
    if (reading) {
      const now = el("button", { id: "answer-now", class: "secondary", text: t("answerNow") });
      now.addEventListener("click", () => stopReading(null, "answer-now"));
      actions.append(now);
    }
    children.push(clock, actions);
  } else {
    if (card.reason) children.push(el("div", { class: "muted", text: T().reasons[card.reason] || "" }));
    if (!card.evaluated && !state.ended) {
      const working = workingShown("evaluation", card);
      children.push(working
        ? el("div", { class: "muted status-line working", id: "working-line", role: "status", text: workingText(working) })
        : el("div", { class: "muted status-line", text: card.answered ? t("evaluating") : t("transcribing") }));
    }
  }
  const metrics = card.answered && card.answered.metrics && Object.keys(card.answered.metrics).length ? card.answered.metrics : null;
  if (metrics) children.push(el("div", { class: "muted metrics" }, el("b", { text: `${t("metrics")}: ` }), t("metricsText", metrics)));
  if (card.evaluated) {
    const data = card.evaluated;
    if (data.emotion && data.emotion.score != null) children.push(el("div", { class: "muted emotion" }, t("emotion", Number(data.emotion.score).toFixed(1), bandName(data.emotion.band))));
    if (data.no_answer) children.push(el("p", { text: t("noAnswer") }));
    else children.push(...evaluationNodes(data));
    const canChoose = latest && !iv.report && !state.ended && !card.requested;
    if (canChoose) {
      const last = card.index + 1 >= (iv.questions.length || 3) && !iv.pendingFollowUp;
      const next = el("button", { id: "next", text: last ? t("finish") : t("next") });
      next.addEventListener("click", () => choose("next", card));
      const retry = el("button", { id: "retry", class: "secondary", text: t("retry") });
      retry.addEventListener("click", () => choose("retry", card));
      const actions = el("div", { class: "actions" }, next, retry);
      if (iv.autoNext) actions.append(el("span", { class: "muted", text: t("autoNext", Math.ceil(iv.autoNext / 1000)) }));
      children.push(actions);
    }
  }
  node.replaceChildren(...children);
}

function evaluationNodes(data) {
  const nodes = [];
  const table = el("table", { class: "eval" });
  table.append(el("tr", {}, el("th", { text: t("criterion") }), el("th", { text: t("rating") }), el("th", { text: t("reason") })));
  const ev = data.evaluation || {};
  const byRules = data.engine === "offline" ? [] : ev.rule_based || [];
  (data.rows || []).forEach((row, i) => {
    const rule = byRules.includes(CRITERIA[i]) ? el("span", { class: "badge rule", text: t("rule") }) : null;
    table.append(el("tr", {}, el("td", { text: row[0] }), el("td", {}, row[1], rule ? " " : null, rule), el("td", { text: row[2] })));
  });
  nodes.push(table);
  if (byRules.length) nodes.push(el("p", { class: "muted", text: t("ruleNote") }));
  if (ev.tips && ev.tips.length) {
    nodes.push(el("h3", { text: t("tips") }));
    nodes.push(el("ol", {}, ...ev.tips.map((tip) => el("li", { text: tip }))));
  }
  if (ev.model_answer) {
    nodes.push(el("h3", { text: t("model") }));
    nodes.push(el("p", { text: ev.model_answer }));
  }
  // Why the rules wrote this (or part of it) when a language model was asked: the
  // engine's sentence, in the interview's language; "no language model" only when none was.
  const note = ev.fallback_error || (data.engine === "offline" ? t("engineOffline") : "");
  if (note) nodes.push(el("p", { class: "muted engine-note", text: note }));
  return nodes;
}

// ---- progress while the interviewer works ("working" steps) ----------------------------
// Shown with a running clock once the step has taken WORKING_DELAY_MS, so an instant step
// (the offline engine) never flashes; the step's result (questions / evaluated) ends it.

const WORKING_DELAY_MS = 300;

function workingShown(stage, card) {
  const w = state.interview.working;
  if (!w || !w.shown || w.stage !== stage || state.ended) return null;
  if (card && (w.index !== card.index || w.attempt !== card.attempt)) return null;
  return w;
}

function workingText(w) {
  const seconds = Math.max(0, Math.floor((Date.now() - w.since) / 1000));
  const budget = w.budget_s ? Math.round(w.budget_s) : null;
  return t(w.stage === "questions" ? "preparingQuestions" : "writingFeedback", seconds, budget);
}

function showWorking() {
  const w = state.interview.working;
  const questions = workingShown("questions");
  $("cards").setAttribute("data-waiting", questions ? workingText(questions) : t("waitingQuestions"));
  if (!w || w.stage !== "evaluation") return;
  const line = $("working-line");
  if (line) line.textContent = workingText(w);
  else { const card = state.interview.cards[cardKey(w.index, w.attempt)]; if (card) renderCard(card); }
}

function startWorking(data, msg) {
  // a replayed step began before this page: its clock counts from then (server time)
  const since = msg.replay && msg.at_ms && msg.at_ms <= Date.now() ? msg.at_ms : Date.now();
  state.interview.working = { ...data, since, shown: false };
}

function endWorking(stage, data) {
  const w = state.interview.working;
  if (!w || w.stage !== stage) return;
  if (stage === "evaluation" && (w.index !== data.index || w.attempt !== (data.attempt || 1))) return;
  state.interview.working = null;
  if (stage === "questions") showWorking();
}

setInterval(() => {
  const w = state.interview.working;
  if (!w || state.ended) return;
  if (!w.shown && Date.now() - w.since >= WORKING_DELAY_MS) w.shown = true;
  if (w.shown) showWorking();
}, 250);

function refreshCards() { for (const key of state.interview.order) renderCard(state.interview.cards[key]); }

function doneAnswering() {
  const key = latestKey();
  if (!key) return;
  const card = state.interview.cards[key];
  if (card.state !== "answering") return;
  card.doneAt = Date.now();
  send({ type: "done", question: card.index, attempt: card.attempt });
}

function choose(kind, card) {
  card.requested = kind;
  state.interview.autoNext = null;
  send({ type: kind, question: card.index, attempt: card.attempt });
  renderCard(card);
}

function holdMic(held) {
  // While the question is read aloud the microphone sends silence. The voice comes from
  // the system's speech engine, outside the audio the browser's echo canceller knows, so
  // through loudspeakers it would reach the microphone: its words would become part of
  // the answer, and count as "spoken" for the silence rule.
  if (media) for (const track of media.getAudioTracks()) track.enabled = !held;
}

function stopReading(card, why) {
  // The voice ended (or failed, or the candidate chose to answer now): the mic listens.
  // `why` (end, error, cap, answer-now, turn, next) is kept on the card for tests, with
  // when the hold began (readStartedAt) and ended (readEndedAt).
  const iv = state.interview;
  if (!iv.reading || (card && cardKey(card.index, card.attempt) !== iv.reading)) return;
  const reading = iv.cards[iv.reading];
  iv.reading = null;
  clearTimeout(iv.readingCap);
  if (reading && !reading.readEndedAt) { reading.readEndedAt = Date.now(); reading.readEndedBy = why; }
  if (window.speechSynthesis && window.speechSynthesis.speaking) window.speechSynthesis.cancel();
  holdMic(false);
  if (reading) renderCard(reading);
  else showSpeech();
}

function speak(text, card) {
  // The question is read aloud by the browser's own speech synthesis (no server TTS).
  // When it starts speaking (or why it could not) is kept on the card for benchmarks.
  if (!window.speechSynthesis) { card.speechError = "no speech synthesis"; return; }
  const iv = state.interview;
  stopReading(null, "next");
  try {
    const utterance = new SpeechSynthesisUtterance(text);
    utterance.lang = lang() === "ko" ? "ko-KR" : "en-US";
    card.speechLang = utterance.lang;
    utterance.addEventListener("start", () => { card.spokenAt = Date.now(); });
    utterance.addEventListener("end", () => stopReading(card, "end"));
    utterance.addEventListener("error", (e) => {
      // "interrupted" / "canceled": stopped on purpose (Answer now, the next question)
      if (e.error !== "interrupted" && e.error !== "canceled") card.speechError = e.error || "error";
      stopReading(card, "error");
    });
    if (window.speechSynthesis.speaking || window.speechSynthesis.pending) window.speechSynthesis.cancel();
    iv.reading = cardKey(card.index, card.attempt);
    card.readStartedAt = Date.now();
    holdMic(true);
    renderCard(card);
    // A voice that never reports its end (it happens) must not keep the mic held: at
    // most 5 s plus 200 ms per character (a slow Korean voice reads ~150 ms per syllable;
    // English ~50 ms per letter). Answer now is there all along.
    iv.readingCap = setTimeout(() => stopReading(card, "cap"), 5000 + 200 * text.length);
    window.speechSynthesis.speak(utterance);
  } catch (e) { card.speechError = String(e); stopReading(card, "error"); /* the question is on screen anyway */ }
}

function onInterview(msg) {
  const iv = state.interview;
  const data = msg.data || {};
  $("interview").style.display = "block";
  if (msg.step === "working") {
    startWorking(data, msg);
  } else if (msg.step === "questions") {
    endWorking("questions", data);
    iv.questions = data.questions || [];
    iv.engine = data.engine;
    $("engine").textContent = data.engine === "offline" ? t("offline") : t("llm");
    $("engine").className = `badge ${data.engine === "offline" ? "offline" : ""}`;
  } else if (msg.step === "asked") {
    const card = cardOf(data.index, data.attempt || 1);
    card.question = data.question;
    card.followUp = !!data.follow_up;
    card.total = data.total;
    iv.total = data.total || iv.total;
    iv.current = cardKey(data.index, data.attempt || 1);
    iv.pendingFollowUp = false;
    iv.autoNext = null;
    $("progress").textContent = t("progress", data.index + 1, data.total || iv.questions.length || 3);
    refreshCards(); // earlier cards lose their buttons
    if (!msg.replay) {
      card.askedAt = Date.now();
      speak(data.question, card);
      $(`card-${iv.current}`).scrollIntoView({ behavior: "smooth", block: "start" });
    }
  } else if (msg.step === "answered") {
    const card = cardOf(data.index, data.attempt || 1);
    if (!msg.replay) card.answeredAt = Date.now();
    card.answered = data;
    card.reason = data.reason || card.reason;
    if (card.state === "answering") card.state = "ended";
    renderCard(card);
  } else if (msg.step === "evaluated") {
    endWorking("evaluation", data);
    const card = cardOf(data.index, data.attempt || 1);
    if (!msg.replay) card.evaluatedAt = Date.now();
    card.evaluated = data;
    card.state = "evaluated";
    renderCard(card);
  } else if (msg.step === "report") {
    iv.report = data;
    showReport(data);
    refreshCards();
  } else if (msg.step === "error") {
    iv.errors.push(data);
    if (!msg.replay) showError(data.message);
  }
}

function onTranscript(msg) {
  if (msg.question < 0) return; // speech outside an answer: not part of any card
  const card = cardOf(msg.question, msg.attempt);
  const key = `${msg.utterance_id}#${msg.part}`;
  if (card.transcripts[key]) return;
  card.transcripts[key] = { text: msg.text, order: Object.keys(card.transcripts).length, latency_ms: msg.latency_ms, receivedAt: msg.replay ? null : Date.now() };
  renderCard(card);
}

function onTurn(msg) {
  msg.receivedAt = Date.now();
  state.turn = msg;
  const card = state.interview.cards[cardKey(msg.question, msg.attempt)];
  if (!card) return;
  if (msg.state === "ended") {
    if (!card.endedAt) card.endedAt = msg.receivedAt;
    card.reason = msg.reason;
    if (card.state === "answering") card.state = "ended";
    state.turnEndedAt = Date.now();
    stopReading(card, "turn"); // the answer is over: no voice over the feedback
  }
  renderCard(card);
}

function onSpeech(msg) {
  state.interview.speaking = msg.speaking;
  showSpeech();
}

// The badge says whether the microphone's speech is an answer: outside an open answer turn
// (reading feedback, waiting for a question) "listening" would read as "still recording
// your answer".
function showSpeech() {
  if (state.ended) return;
  const speaking = state.interview.speaking;
  const answering = Object.values(state.interview.cards).some((card) => card.state === "answering");
  const key = state.interview.reading ? "micHeld"
    : answering ? (speaking ? "speaking" : "listening") : speaking ? "speakingAside" : "micAside";
  $("speaking").textContent = t(key);
  $("speaking").className = `badge ${speaking && answering && !state.interview.reading ? "live" : ""}`;
}

function showReport(data) {
  const root = $("report");
  root.style.display = "block";
  const table = el("table", { class: "eval" });
  table.append(el("tr", {}, ...["reportQuestion", "reportAttempts", "reportOverall", "reportEmotion"].map((k) => el("th", { text: t(k) }))));
  for (const item of data.items || []) {
    const attempts = 1 + (item.earlier_attempts || []).length;
    const overall = item.rows && item.rows.length ? item.rows[0][1] : item.answer ? "—" : t("noAnswerShort");
    const emotion = item.emotion && item.emotion.score != null ? `${Number(item.emotion.score).toFixed(1)} (${bandName(item.emotion.band)})` : "—";
    table.append(el("tr", {}, el("td", { text: `${item.index + 1}. ${item.question}` }), el("td", { text: String(attempts) }), el("td", { text: overall }), el("td", { text: emotion })));
  }
  root.replaceChildren(el("h2", { text: t("report") }), el("p", { text: t("reportDone") }), table);
  root.scrollIntoView({ behavior: "smooth", block: "start" });
}

// ---- the session ---------------------------------------------------------------------

function onMessage(event) {
  let msg;
  try { msg = JSON.parse(event.data); } catch (e) { return; }
  if (!msg || typeof msg !== "object") return;
  switch (msg.type) {
    case "hello":
      if (msg.v !== PROTOCOL_VERSION) console.warn(`gateway speaks room protocol v${msg.v}, this page v${PROTOCOL_VERSION}`);
      state.resumed += msg.resumed ? 1 : 0;
      break;
    case "pong": break;
    case "emotion": onEmotion(msg); break;
    case "stats": onStats(msg); break;
    case "speech": onSpeech(msg); break;
    case "transcript": onTranscript(msg); break;
    case "interview": onInterview(msg); break;
    case "turn": onTurn(msg); break;
    case "auto_next": state.interview.autoNext = msg.in_ms; refreshCards(); break;
    case "ended": finish(msg.code); break;
    default: break;
  }
}

function remember(data) {
  try { sessionStorage.setItem(STORE_KEY, JSON.stringify(data)); } catch (e) { /* private mode */ }
}
function remembered() {
  try { return JSON.parse(sessionStorage.getItem(STORE_KEY) || "null"); } catch (e) { return null; }
}
function forget() { try { sessionStorage.removeItem(STORE_KEY); } catch (e) { /* nothing kept */ } }

async function openMedia() {
  setStatus("media");
  media = await navigator.mediaDevices.getUserMedia({
    video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } },
    // Automatic gain control clips speech (bad for Whisper); echo cancellation stays on
    // because the room speaks its questions aloud.
    audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: false },
  });
  $("preview").srcObject = media;
  state.mediaAt = Date.now(); // when the camera and microphone started (for benchmarks)
}

async function connect(offerUrl, iceServers, onOpen) {
  // STUN/TURN servers come from the gateway (INTERVUE_GATEWAY_ICE_SERVERS), TURN
  // credentials minted for this session only; none configured: host candidates only.
  pc = new RTCPeerConnection({ iceServers: iceServers || [] });
  pc.addEventListener("connectionstatechange", () => {
    state.connection = pc.connectionState;
    if (state.ended) return;
    if (pc.connectionState === "connected") setStatus("live");
    else if (pc.connectionState === "failed") { setStatus("failed"); showError(t("connectionFailed")); }
  });
  channel = pc.createDataChannel("results");
  channel.addEventListener("message", onMessage);
  if (onOpen) channel.addEventListener("open", onOpen, { once: true });
  for (const track of media.getTracks()) pc.addTrack(track, media);
  await pc.setLocalDescription(await pc.createOffer());
  await waitForIce(pc);
  setStatus("connecting");
  const answer = await api(offerUrl, { sdp: pc.localDescription.sdp, type: pc.localDescription.type });
  await pc.setRemoteDescription(answer);
  $("stop").disabled = false;
}

async function submitProfile() {
  if (!$("self_intro").value.trim()) { $("error").textContent = t("noIntro"); return; }
  const profile = {
    job_title: $("job_title").value, years: Number($("years").value || 2),
    company: $("company").value, self_intro: $("self_intro").value, language: lang(),
  };
  try {
    await api(`/api/sessions/${state.session}/profile`, profile);
    $("interview").style.display = "block";
    if (!state.interview.working) $("cards").setAttribute("data-waiting", t("waitingQuestions"));
  } catch (err) {
    showError(String(err.message || err));
  }
}

async function start() {
  $("start").disabled = true;
  $("error").textContent = "";
  try {
    await openMedia();
    setStatus("creating");
    // The invitation link carries ?room=…&token=… (signed by `intervue invite`).
    const query = new URLSearchParams(location.search);
    const created = await api("/api/sessions", {
      room: query.get("room") || "", token: query.get("token") || "", meta: { page: "room" },
    });
    state.session = created.session_id;
    remember({ session: state.session, language: lang() });
    $("session").textContent = created.session_id;
    $("profile-panel").style.display = "none";
    // The profile goes in once results can flow back, so no question is missed.
    await connect(created.offer_url, created.ice_servers, submitProfile);
  } catch (err) {
    showError(String(err.message || err));
    setStatus("idle");
    $("start").disabled = false;
    $("profile-panel").style.display = "block";
    forget();
  }
}

async function resume(saved) {
  // The page was reloaded (or reopened in the same tab): back to the same interview; the
  // gateway replays its history over the data channel.
  $("profile-panel").style.display = "none";
  $("start").disabled = true;
  $("language").value = saved.language === "en" ? "en" : "ko";
  applyLanguage();
  setStatus("reconnecting");
  state.session = saved.session;
  $("session").textContent = saved.session;
  try {
    const resumed = await api(`/api/sessions/${saved.session}/resume`);
    await openMedia();
    await connect(resumed.offer_url, resumed.ice_servers);
  } catch (err) {
    forget();
    state.session = null;
    $("profile-panel").style.display = "block";
    $("start").disabled = false;
    setStatus("idle");
    if (!err.status || err.status >= 500) showError(String(err.message || err));
  }
}

function finish(code) {
  // The session is over (here or at the gateway): nothing live stays on the page.
  if (state.ended) return;
  state.ended = code || "other";
  forget();
  if (window.speechSynthesis) window.speechSynthesis.cancel();
  state.interview.reading = null;
  clearTimeout(state.interview.readingCap);
  if (pc) pc.close();
  if (media) media.getTracks().forEach((track) => track.stop());
  $("preview").srcObject = null;
  drawFaces(null);
  showProbs(null);
  $("emotion").textContent = "—";
  $("emotion-detail").textContent = "";
  state.interview.speaking = false;
  $("speaking").textContent = "";
  $("speaking").className = "badge";
  setStatus("ended");
  $("status").textContent = T().endCodes[state.ended] || T().status.ended;
  $("stop").disabled = true;
  refreshCards();
}

function endSession() {
  if (!state.session || state.ended) return;
  if (channel && channel.readyState === "open") send({ type: "bye" });
  else navigator.sendBeacon(`/api/sessions/${state.session}/end`, "{}");
  finish("candidate");
}

function applyLanguage() {
  const l = lang();
  document.documentElement.lang = l;
  document.title = t("title");
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  $("self_intro").placeholder = t("introPlaceholder");
  // the form's defaults follow the language, unless the candidate typed their own
  for (const [field, value] of Object.entries(T().defaults)) {
    const input = $(field);
    const other = TEXT[l === "ko" ? "en" : "ko"].defaults[field];
    if (!input.value || input.value === other) input.value = value;
  }
  if (!state.results) $("emotion-detail").textContent = t("waitingCamera");
  setStatus(statusKey);
  if (state.ended) $("status").textContent = T().endCodes[state.ended] || T().status.ended;
  showScore();
  if (state.stats) onStats(state.stats);
  if (state.last && !state.ended) onEmotion({ ...state.last, capture_ms: Date.now() });
  onSpeech({ speaking: state.interview.speaking });
  if (state.interview.engine) $("engine").textContent = state.interview.engine === "offline" ? t("offline") : t("llm");
  refreshCards();
  if (state.interview.working) showWorking();
  if (state.interview.report) showReport(state.interview.report);
}

// A countdown between the gateway's once-a-second turn updates.
setInterval(() => {
  const turn = state.turn;
  if (!turn || turn.state !== "answering" || state.ended) return;
  const clock = $("turn-clock");
  if (clock && turn.countdown) {
    const since = Date.now() - (turn.receivedAt || Date.now());
    clock.textContent = t("countdown", clockText(turn.cap_left_ms - since));
  }
}, 250);

document.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    doneAnswering();
  }
});
$("language").addEventListener("change", applyLanguage);
$("start").addEventListener("click", start);
// Enter in a field must not submit (reload) the form; no inline handler: the CSP forbids it.
$("profile").addEventListener("submit", (event) => event.preventDefault());
$("stop").addEventListener("click", endSession);
window.addEventListener("pagehide", () => {
  // A reload or a closed tab: the gateway keeps the session a little while for this page
  // to come back (the End session button is what ends it for good).
  if (state.session && !state.ended) {
    navigator.sendBeacon(`/api/sessions/${state.session}/leave`, "{}");
  }
});

// Ask for the voices at once: the first call makes the browser reach its speech engine
// (on Linux, speech-dispatcher: about 2 s to connect and list its voices), which would
// otherwise come between the first question appearing and its being read aloud.
if (window.speechSynthesis) window.speechSynthesis.getVoices();

const saved = remembered();
applyLanguage();
setStatus("idle");
if (saved && saved.session) resume(saved);
else if (new URLSearchParams(location.search).has("autostart")) start();
