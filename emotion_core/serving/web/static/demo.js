// The web demo (GET /demo). Plain ES module, no libraries, no build: the labels, moods, threshold and
// endpoint paths come from api.js, which `make clients` generates from emotion_core/labels.py and the
// service's OpenAPI document. Type-checked by `tsc` (clients/typescript/tsconfig.json) against the
// generated TypeScript types.
// @ts-check

import { CONFIDENCE_THRESHOLD, EMOTIONS, ENDPOINTS, WEBSOCKETS } from "./api.js";

/** @typedef {import("../../../../clients/typescript/src/types.js").EmotionPrediction} EmotionPrediction */
/** @typedef {import("../../../../clients/typescript/src/types.js").NoSpeech} NoSpeech */
/** @typedef {import("../../../../clients/typescript/src/types.js").Timeline} Timeline */
/** @typedef {import("../../../../clients/typescript/src/types.js").TimelineSegment} TimelineSegment */
/** @typedef {import("../../../../clients/typescript/src/types.js").StreamMessage} StreamMessage */
/** @typedef {import("../../../../clients/typescript/src/client.js").Endpoint} Endpoint */

/** Files at least this long (seconds) also get a timeline, where the service has `predictTimeline`. */
const TIMELINE_MIN_SECONDS = 6;

const SVG = "http://www.w3.org/2000/svg";

/**
 * @template {HTMLElement} T
 * @param {string} id
 * @param {new () => T} type
 * @returns {T}
 */
function byId(id, type) {
  const element = document.getElementById(id);
  if (!(element instanceof type)) throw new Error(`#${id} is missing`);
  return element;
}

const ui = {
  keyForm: byId("key-form", HTMLFormElement),
  apiKey: byId("api-key", HTMLInputElement),
  keyStatus: byId("key-status", HTMLElement),
  form: byId("upload-form", HTMLFormElement),
  file: byId("file-input", HTMLInputElement),
  analyze: byId("analyze-button", HTMLButtonElement),
  record: byId("record-button", HTMLButtonElement),
  recordTime: byId("record-time", HTMLElement),
  playback: byId("record-playback", HTMLAudioElement),
  result: byId("result", HTMLElement),
  status: byId("result-status", HTMLElement),
  body: byId("result-body", HTMLElement),
  source: byId("result-source", HTMLElement),
  emotion: byId("result-emotion", HTMLElement),
  confidence: byId("result-confidence", HTMLElement),
  mood: byId("result-mood", HTMLElement),
  warning: byId("result-warning", HTMLElement),
  chart: byId("chart", HTMLOListElement),
  thresholdLabel: byId("threshold-label", HTMLElement),
  timeline: byId("timeline", HTMLElement),
  timelineStatus: byId("timeline-status", HTMLElement),
  timelineStrip: /** @type {SVGSVGElement} */ (/** @type {unknown} */ (document.getElementById("timeline-strip"))),
  timelineList: byId("timeline-list", HTMLOListElement),
  live: byId("live", HTMLElement),
  liveButton: byId("live-button", HTMLButtonElement),
  liveStatus: byId("live-status", HTMLElement),
  liveEmotion: byId("live-emotion", HTMLElement),
  liveConfidence: byId("live-confidence", HTMLElement),
  liveSegments: byId("live-segments", HTMLOListElement),
};

/** @param {number} p */
const percent = (p) => `${(p * 100).toFixed(1)}%`;
/** @param {number} s */
const seconds = (s) => `${s.toFixed(1)} s`;
/** One colour per emotion, by its place in EMOTIONS (so no label is retyped here). @param {string} emotion */
const colour = (emotion) => `hsl(${Math.round((EMOTIONS.indexOf(/** @type {any} */ (emotion)) * 360) / EMOTIONS.length)} 65% 45%)`;

// ------------------------------------------------------------------------------------------- API key

// When the service has keys on (EMOTION_API_KEYS), every call carries the one typed here; it is kept in
// sessionStorage (this tab only), never in the page's URL.
const KEY_STORAGE = "emotion-demo-api-key";
const apiKey = () => sessionStorage.getItem(KEY_STORAGE) ?? "";
/** @returns {Record<string, string>} */
const authHeaders = () => (apiKey() ? { authorization: `Bearer ${apiKey()}` } : {});

/** @param {string} message */
function askForKey(message) {
  ui.keyForm.hidden = false;
  ui.keyStatus.textContent = message;
  ui.keyStatus.className = "error";
  ui.apiKey.focus();
}

/** `GET /` answers a bare liveness answer without a valid key when keys are on, the model details with one. */
async function checkKey() {
  try {
    const response = await fetch("/", { headers: { accept: "application/json", ...authHeaders() } });
    const body = await response.json();
    if (body && typeof body === "object" && !("model_uri" in body)) {
      askForKey(apiKey() ? "That key was not accepted." : "This server needs an API key.");
    } else if (apiKey()) {
      ui.keyStatus.textContent = "Key accepted.";
      ui.keyStatus.className = "muted";
    }
  } catch {
    // the service is unreachable: every call will say so
  }
}

ui.keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY_STORAGE, ui.apiKey.value.trim());
  ui.apiKey.value = "";
  void checkKey();
});

// ------------------------------------------------------------------------------------------- API

/**
 * POST one audio Blob to an upload endpoint; resolves to the JSON answer, rejects with the service's `detail`.
 * @param {Endpoint} endpoint
 * @param {Blob} blob
 * @param {string} filename
 * @returns {Promise<unknown>}
 */
async function upload(endpoint, blob, filename) {
  const form = new FormData();
  form.append(endpoint.uploads?.[0] ?? "file", blob, filename);
  const response = await fetch(endpoint.path, { method: endpoint.method, body: form,
    headers: { accept: "application/json", ...authHeaders() } });
  /** @type {any} */
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON
  }
  if (!response.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail : response.statusText;
    if (response.status === 401) askForKey("This server needs a valid API key.");
    throw new Error(`${detail} (HTTP ${response.status})`);
  }
  return body;
}

// ------------------------------------------------------------------------------------------- result

/** The bar chart's rows: one per emotion, in the model's order, with the threshold line. */
function buildChart() {
  ui.thresholdLabel.textContent = percent(CONFIDENCE_THRESHOLD);
  ui.chart.replaceChildren(
    ...EMOTIONS.map((emotion) => {
      const row = document.createElement("li");
      row.dataset.emotion = emotion;
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = emotion;
      const svg = document.createElementNS(SVG, "svg");
      svg.setAttribute("viewBox", "0 0 100 10");
      svg.setAttribute("preserveAspectRatio", "none");
      svg.setAttribute("aria-hidden", "true");
      svg.setAttribute("focusable", "false");
      const track = document.createElementNS(SVG, "rect");
      track.setAttribute("class", "track");
      track.setAttribute("width", "100");
      track.setAttribute("height", "10");
      const fill = document.createElementNS(SVG, "rect");
      fill.setAttribute("class", "fill");
      fill.setAttribute("height", "10");
      fill.setAttribute("width", "0");
      const line = document.createElementNS(SVG, "line");
      line.setAttribute("class", "threshold");
      const x = String(CONFIDENCE_THRESHOLD * 100);
      line.setAttribute("x1", x);
      line.setAttribute("x2", x);
      line.setAttribute("y1", "0");
      line.setAttribute("y2", "10");
      line.setAttribute("vector-effect", "non-scaling-stroke");
      svg.append(track, fill, line);
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = "–";
      row.append(name, svg, value);
      return row;
    }),
  );
}

/** @param {"busy" | "done" | "error"} state @param {string} message */
function setState(state, message) {
  ui.result.dataset.state = state;
  ui.result.setAttribute("aria-busy", String(state === "busy"));
  ui.status.textContent = message;
  ui.status.className = state === "error" ? "error" : "muted";
  const busy = state === "busy";
  ui.analyze.disabled = busy;
  if (!recorder) ui.record.disabled = busy;
}

/** @param {NoSpeech} answer @param {string} source */
function showNoSpeech(answer, source) {
  ui.body.hidden = true;
  ui.result.dataset.count = String(Number(ui.result.dataset.count ?? "0") + 1);
  setState("done", `No speech heard in ${source} (${seconds(answer.duration)}): ${answer.detail}`);
}

/** @param {EmotionPrediction} prediction @param {string} source */
function showPrediction(prediction, source) {
  ui.source.textContent = source;
  ui.emotion.textContent = prediction.emotion;
  ui.confidence.textContent = percent(prediction.confidence);
  ui.mood.textContent = prediction.music_mood;
  ui.warning.textContent = prediction.warning ?? "";
  ui.warning.hidden = prediction.warning === null;
  for (const row of ui.chart.querySelectorAll("li")) {
    const emotion = /** @type {keyof EmotionPrediction["all_probabilities"]} */ (row.dataset.emotion);
    const p = prediction.all_probabilities[emotion];
    row.querySelector(".fill")?.setAttribute("width", String(p * 100));
    const value = row.querySelector(".value");
    if (value) value.textContent = percent(p);
    row.classList.toggle("top", emotion === prediction.emotion);
    row.setAttribute("aria-label", `${emotion}: ${percent(p)}`);
  }
  ui.body.hidden = false;
  ui.result.dataset.count = String(Number(ui.result.dataset.count ?? "0") + 1);
  setState("done", `${prediction.emotion}, ${percent(prediction.confidence)} confident` +
    (prediction.warning ? " — low confidence" : ""));
}

/** @param {Blob} blob @param {string} filename @param {string} source */
async function analyze(blob, filename, source) {
  const endpoint = ENDPOINTS.predictEmotion;
  if (!endpoint) throw new Error("the service has no predictEmotion endpoint");
  setState("busy", `Analyzing ${source}…`);
  try {
    const answer = /** @type {EmotionPrediction | NoSpeech} */ (await upload(endpoint, blob, filename));
    if (answer.status === "no_speech") showNoSpeech(answer, source);
    else showPrediction(answer, source);
  } catch (error) {
    setState("error", `Could not analyze ${source}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

// ------------------------------------------------------------------------------------------- timeline

/** Duration of an audio Blob from the browser's own decoder (null when it can't tell). @param {Blob} blob */
function audioDuration(blob) {
  return new Promise((resolve) => {
    const audio = new Audio();
    const url = URL.createObjectURL(blob);
    /** @param {number | null} value */
    const done = (value) => {
      URL.revokeObjectURL(url);
      resolve(value);
    };
    audio.preload = "metadata";
    audio.addEventListener("loadedmetadata", () => done(Number.isFinite(audio.duration) ? audio.duration : null), { once: true });
    audio.addEventListener("error", () => done(null), { once: true });
    audio.src = url;
  });
}

/** @param {HTMLOListElement} list @param {TimelineSegment} segment */
function addSegment(list, segment) {
  const item = document.createElement("li");
  item.dataset.start = String(segment.start);
  item.dataset.end = String(segment.end);
  item.dataset.emotion = segment.emotion;
  const swatch = document.createElement("span");
  swatch.className = "swatch";
  swatch.style.background = colour(segment.emotion);
  swatch.setAttribute("aria-hidden", "true");
  item.append(swatch, `${seconds(segment.start)}–${seconds(segment.end)}: ${segment.emotion}, ${percent(segment.confidence)}` +
    (segment.warning ? " (low confidence)" : "") + ` — ${segment.music_mood}`);
  list.append(item);
}

/** @param {Timeline} timeline @param {string} source */
function showTimeline(timeline, source) {
  ui.timelineList.replaceChildren();
  ui.timelineStrip.replaceChildren();
  const scale = 1000 / Math.max(timeline.duration, 1e-6);
  for (const segment of timeline.segments) {
    addSegment(ui.timelineList, segment);
    const rect = document.createElementNS(SVG, "rect");
    rect.setAttribute("class", "segment");
    rect.setAttribute("x", String(segment.start * scale));
    rect.setAttribute("width", String(Math.max(2, (segment.end - segment.start) * scale)));
    rect.setAttribute("y", "0");
    rect.setAttribute("height", "40");
    rect.setAttribute("fill", colour(segment.emotion));
    ui.timelineStrip.append(rect);
  }
  const speech = timeline.segments.length
    ? `${timeline.segments.length} utterance${timeline.segments.length === 1 ? "" : "s"}, ${seconds(timeline.speech_seconds)} of speech`
    : "no speech";
  ui.timelineStatus.textContent = `${source}: ${seconds(timeline.duration)}, ${speech}` +
    (timeline.overall ? `; overall ${timeline.overall.emotion} (${percent(timeline.overall.confidence)})` : "");
  ui.timeline.dataset.state = "done";
  ui.timeline.setAttribute("aria-busy", "false");
  ui.timeline.dataset.count = String(Number(ui.timeline.dataset.count ?? "0") + 1);
}

/** The timeline of a long file, where the service has one. @param {Blob} blob @param {string} filename */
async function timelineFor(blob, filename) {
  const endpoint = ENDPOINTS.predictTimeline;
  if (!endpoint) return;
  const duration = await audioDuration(blob);
  if (duration === null || duration < TIMELINE_MIN_SECONDS) {
    ui.timeline.hidden = true;
    return;
  }
  ui.timeline.hidden = false;
  ui.timeline.dataset.state = "busy";
  ui.timeline.setAttribute("aria-busy", "true");
  ui.timelineStatus.textContent = `Splitting ${filename} (${seconds(duration)}) into utterances…`;
  try {
    showTimeline(/** @type {Timeline} */ (await upload(endpoint, blob, filename)), filename);
  } catch (error) {
    ui.timeline.dataset.state = "error";
    ui.timeline.setAttribute("aria-busy", "false");
    ui.timelineStatus.textContent = `No timeline: ${error instanceof Error ? error.message : String(error)}`;
  }
}

// ------------------------------------------------------------------------------------------- upload

/** @param {File} file */
async function analyzeFile(file) {
  await analyze(file, file.name, file.name);
  await timelineFor(file, file.name);
}

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const file = ui.file.files?.[0];
  if (file) void analyzeFile(file);
  else ui.file.focus();
});
ui.file.addEventListener("change", () => {
  const file = ui.file.files?.[0];
  if (file) void analyzeFile(file);
});

// ------------------------------------------------------------------------------------------- microphone

/** @type {MediaRecorder | null} */
let recorder = null;
let timer = 0;

function recordingType() {
  for (const type of ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/mp4"]) {
    if (MediaRecorder.isTypeSupported(type)) return type;
  }
  return "";
}

async function startRecording() {
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (error) {
    setState("error", `No microphone: ${error instanceof Error ? error.message : String(error)}`);
    return;
  }
  const mimeType = recordingType();
  const active = new MediaRecorder(stream, mimeType ? { mimeType } : {});
  /** @type {Blob[]} */
  const chunks = [];
  const started = performance.now();
  active.addEventListener("dataavailable", (event) => {
    if (event.data.size) chunks.push(event.data);
  });
  active.addEventListener("stop", () => {
    for (const track of stream.getTracks()) track.stop();
    window.clearInterval(timer);
    const blob = new Blob(chunks, { type: active.mimeType || mimeType || "audio/webm" });
    const extension = blob.type.includes("ogg") ? "ogg" : blob.type.includes("mp4") ? "m4a" : "webm";
    ui.playback.src = URL.createObjectURL(blob);
    ui.playback.hidden = false;
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    void analyze(blob, `recording.${extension}`, `your ${seconds} s recording`);
  });
  active.start();
  recorder = active;
  ui.record.textContent = "Stop";
  ui.record.setAttribute("aria-pressed", "true");
  timer = window.setInterval(() => {
    ui.recordTime.textContent = `${((performance.now() - started) / 1000).toFixed(1)} s`;
  }, 100);
}

function stopRecording() {
  const active = recorder;
  recorder = null;
  ui.record.textContent = "Record";
  ui.record.setAttribute("aria-pressed", "false");
  active?.stop();
}

ui.record.addEventListener("click", () => {
  if (recorder) stopRecording();
  else void startRecording();
});
if (!("MediaRecorder" in window) || typeof navigator.mediaDevices?.getUserMedia !== "function") {
  ui.record.disabled = true;
  ui.record.title = "This browser cannot record audio here (recording needs https or localhost).";
}

// ------------------------------------------------------------------------------------------- live (WebSocket)

/** @type {{ socket: WebSocket, context: AudioContext | null, stream: MediaStream | null } | null} */
let live = null;

/** @param {string} state @param {string} message */
function setLive(state, message) {
  ui.live.dataset.state = state;
  ui.liveStatus.textContent = message;
}

/** @param {StreamMessage} message */
function onLiveMessage(message) {
  switch (message.type) {
    case "ready":
      setLive("streaming", `Listening (${message.sample_rate} Hz, a prediction every ${message.hop} s of audio)…`);
      void startCapture(message.sample_rate);
      break;
    case "prediction":
      ui.live.dataset.predictions = String(Number(ui.live.dataset.predictions ?? "0") + 1);
      ui.liveEmotion.textContent = message.emotion;
      ui.liveConfidence.textContent = `${percent(message.confidence)} — ${message.music_mood}` +
        (message.warning ? " (low confidence)" : "");
      break;
    case "no_speech":
      ui.liveConfidence.textContent = "(no speech in the last seconds)";
      break;
    case "segment":
      addSegment(ui.liveSegments, message);
      break;
    case "end":
      setLive("ended", `Stream ended after ${seconds(message.duration)} of audio.`);
      break;
    case "error":
      setLive("error", `Stream error: ${message.detail}`);
      break;
  }
}

/** Microphone → AudioWorklet (pcm-worklet.js: PCM16 at the service's rate) → binary WebSocket messages. @param {number} rate */
async function startCapture(rate) {
  const session = live;
  if (!session) return;
  try {
    session.stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1 } });
    session.context = new AudioContext({ sampleRate: rate });
    await session.context.audioWorklet.addModule("/demo/static/pcm-worklet.js");
    const source = session.context.createMediaStreamSource(session.stream);
    const node = new AudioWorkletNode(session.context, "pcm16-capture", { processorOptions: { chunk: Math.round(rate / 10) } });
    node.port.onmessage = (event) => {
      if (session.socket.readyState === WebSocket.OPEN) session.socket.send(event.data);
    };
    const mute = session.context.createGain();
    mute.gain.value = 0;
    source.connect(node).connect(mute).connect(session.context.destination);
  } catch (error) {
    setLive("error", `No microphone: ${error instanceof Error ? error.message : String(error)}`);
    stopLive();
  }
}

function startLive() {
  const route = WEBSOCKETS.stream;
  if (!route) return;
  const url = new URL(route.path, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (apiKey()) url.searchParams.set("token", apiKey()); // a browser's WebSocket cannot send a header
  const socket = new WebSocket(url);
  live = { socket, context: null, stream: null };
  ui.live.dataset.predictions = "0";
  ui.liveSegments.replaceChildren();
  ui.liveEmotion.textContent = "";
  ui.liveConfidence.textContent = "";
  setLive("connecting", "Connecting…");
  ui.liveButton.textContent = "Stop live";
  ui.liveButton.setAttribute("aria-pressed", "true");
  socket.addEventListener("message", (event) => {
    if (typeof event.data === "string") onLiveMessage(/** @type {StreamMessage} */ (JSON.parse(event.data)));
  });
  socket.addEventListener("close", () => {
    if (ui.live.dataset.state !== "ended" && ui.live.dataset.state !== "error") setLive("ended", "Stream closed.");
    stopLive();
  });
}

function stopLive() {
  const session = live;
  live = null;
  ui.liveButton.textContent = "Start live";
  ui.liveButton.setAttribute("aria-pressed", "false");
  if (!session) return;
  for (const track of session.stream?.getTracks() ?? []) track.stop();
  void session.context?.close();
  if (session.socket.readyState === WebSocket.OPEN) {
    setLive("stopping", "Finishing…");
    session.socket.send(JSON.stringify({ type: "end" })); // the server answers the last segment, then `end`
  }
}

if (WEBSOCKETS.stream && "AudioWorkletNode" in window && typeof navigator.mediaDevices?.getUserMedia === "function") {
  ui.live.hidden = false;
  ui.liveButton.addEventListener("click", () => (live ? stopLive() : startLive()));
}

buildChart();
void checkKey().then(() => {
  document.documentElement.dataset.ready = "true";
});
