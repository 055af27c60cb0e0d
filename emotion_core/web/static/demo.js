// The web demo (GET /demo). Plain ES module, no libraries, no build: the labels, moods, threshold and
// endpoint paths come from api.js, which `make clients` generates from emotion_core/labels.py and the
// service's OpenAPI document. Type-checked by `tsc` (clients/typescript/tsconfig.json) against the
// generated TypeScript types.
// @ts-check

import { CONFIDENCE_THRESHOLD, EMOTIONS, ENDPOINTS } from "./api.js";

/** @typedef {import("../../../clients/typescript/src/types.js").EmotionPrediction} EmotionPrediction */
/** @typedef {import("../../../clients/typescript/src/client.js").Endpoint} Endpoint */

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
};

/** @param {number} p */
const percent = (p) => `${(p * 100).toFixed(1)}%`;

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
  const response = await fetch(endpoint.path, { method: endpoint.method, body: form, headers: { accept: "application/json" } });
  /** @type {any} */
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON
  }
  if (!response.ok) {
    const detail = body && typeof body.detail === "string" ? body.detail : response.statusText;
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
    const prediction = /** @type {EmotionPrediction} */ (await upload(endpoint, blob, filename));
    showPrediction(prediction, source);
  } catch (error) {
    setState("error", `Could not analyze ${source}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

// ------------------------------------------------------------------------------------------- upload

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const file = ui.file.files?.[0];
  if (file) void analyze(file, file.name, file.name);
  else ui.file.focus();
});
ui.file.addEventListener("change", () => {
  const file = ui.file.files?.[0];
  if (file) void analyze(file, file.name, file.name);
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
if (!("MediaRecorder" in window) || !navigator.mediaDevices?.getUserMedia) {
  ui.record.disabled = true;
  ui.record.title = "This browser cannot record audio here (recording needs https or localhost).";
}

buildChart();
document.documentElement.dataset.ready = "true";
