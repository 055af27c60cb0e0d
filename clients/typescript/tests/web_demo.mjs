// Drives the web demo (GET /demo) in real headless Chromium via playwright-core, and prints what the page
// showed as one JSON object on stdout; tests/test_web_demo.py makes the assertions.
//
//   node tests/web_demo.mjs plan.json
//
// plan.json: {"baseUrl": "http://127.0.0.1:PORT", "chromium": "/usr/bin/chromium",
//             "uploads": [{"path": "/abs/clip.flac", "screenshot": "/abs/out.png"}, ...],
//             "microphoneWav": "/abs/clip.wav" | null, "timelinePath": "/abs/long.wav" | null,
//             "streamWav": "/abs/clip.wav" | null, "screenshotDir": "/abs/dir",
//             "apiKey": "key typed into the page's key field" | null}
//
// Every request the page makes is recorded; any to a host other than the service's is aborted and listed.

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { chromium } from "playwright-core";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));
const service = new URL(plan.baseUrl);
const LOCAL_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]"]);
const TIMEOUT_MS = 120_000;

const args = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
];
if (plan.microphoneWav) args.push(`--use-file-for-fake-audio-capture=${plan.microphoneWav}`);

const userDataDir = mkdtempSync(join(tmpdir(), "web-demo-chromium-"));
const out = { requests: [], blocked: [], consoleErrors: [], uploads: [], microphone: null, timeline: null, stream: null, keyboard: null, key: null };

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: plan.chromium, headless: true, args, ignoreDefaultArgs: ["--mute-audio"],
  viewport: { width: 1100, height: 1000 }, permissions: ["microphone"],
});
try {
  context.on("request", (request) => out.requests.push({ method: request.method(), url: request.url() }));
  await context.route("**/*", (route) => {
    const url = new URL(route.request().url());
    const local = (url.protocol === "http:" || url.protocol === "https:" || url.protocol === "ws:")
      && LOCAL_HOSTS.has(url.hostname) && url.port === service.port;
    if (local || url.protocol === "data:" || url.protocol === "blob:") return route.continue();
    out.blocked.push(url.href);
    return route.abort("blockedbyclient");
  });
  context.on("weberror", (error) => out.consoleErrors.push(`pageerror: ${error.error().message}`));

  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(TIMEOUT_MS);
  page.on("console", (message) => {
    if (message.type() === "error") out.consoleErrors.push(message.text());
  });
  page.on("websocket", (socket) => out.requests.push({ method: "WEBSOCKET", url: socket.url() }));

  await page.goto(new URL("/demo", service).href);
  await page.waitForSelector("html[data-ready='true']");

  const keyFormShown = await page.$eval("#key-form", (el) => !el.hidden);
  if (plan.apiKey) {
    const asked = await page.$eval("#key-status", (el) => el.textContent.trim());
    await page.fill("#api-key", plan.apiKey);
    await page.click("#key-button");
    await page.waitForFunction((before) => document.getElementById("key-status").textContent.trim() !== before, asked);
  }
  out.key = { formShown: keyFormShown, status: await page.$eval("#key-status", (el) => el.textContent.trim()) };

  const count = () => page.$eval("#result", (el) => Number(el.dataset.count));
  const readResult = () => page.$eval("#result", (el) => {
    const text = (id) => el.querySelector(`#${id}`)?.textContent?.trim() ?? null;
    const warning = el.querySelector("#result-warning");
    return {
      state: el.dataset.state,
      status: text("result-status"),
      emotion: text("result-emotion"),
      confidence: text("result-confidence"),
      mood: text("result-mood"),
      warning: warning && !warning.hidden ? warning.textContent.trim() : null,
      warningVisible: Boolean(warning && !warning.hidden && warning.getBoundingClientRect().height > 0),
      bars: [...el.querySelectorAll("#chart li")].map((li) => ({
        emotion: li.dataset.emotion, value: li.querySelector(".value")?.textContent?.trim(),
        width: Number(li.querySelector(".fill")?.getAttribute("width")), top: li.classList.contains("top"),
      })),
      ariaLive: el.getAttribute("aria-live"),
    };
  });
  const waitForResult = async (before) => {
    await page.waitForFunction((n) => {
      const el = document.getElementById("result");
      return Number(el.dataset.count) > n || el.dataset.state === "error";
    }, before);
    return readResult();
  };

  // Keyboard: Tab reaches the file input, the Analyze button and the Record button, in that order.
  const focused = [];
  for (let i = 0; i < 6; i++) {
    await page.keyboard.press("Tab");
    focused.push(await page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName));
  }
  out.keyboard = focused;

  for (const upload of plan.uploads) {
    const before = await count();
    const timelineBefore = await page.$eval("#timeline", (el) => Number(el.dataset.count ?? 0)).catch(() => null);
    await page.setInputFiles("#file-input", []); // so that choosing the same file again is a change too
    await page.setInputFiles("#file-input", upload.path);
    const result = await waitForResult(before);
    if (upload.expectTimeline && timelineBefore !== null) {
      await page.waitForFunction((n) => {
        const el = document.getElementById("timeline");
        return Number(el.dataset.count) > n || el.dataset.state === "error";
      }, timelineBefore);
      result.timeline = await page.$eval("#timeline", (el) => ({
        state: el.dataset.state, hidden: el.hidden,
        segments: [...el.querySelectorAll("#timeline-list li")].map((li) => ({
          start: Number(li.dataset.start), end: Number(li.dataset.end), emotion: li.dataset.emotion,
          text: li.textContent.trim(),
        })),
        blocks: el.querySelectorAll("#timeline-strip rect.segment").length,
      }));
    }
    if (upload.screenshot) {
      await page.screenshot({ path: upload.screenshot, fullPage: true });
      result.screenshot = upload.screenshot;
    }
    out.uploads.push({ path: upload.path, ...result });
  }

  if (plan.microphoneWav) {
    const before = await count();
    await page.click("#record-button");
    await page.waitForFunction(() => document.getElementById("record-button").getAttribute("aria-pressed") === "true");
    await page.waitForTimeout(plan.recordMs ?? 3000);
    await page.click("#record-button");
    out.microphone = await waitForResult(before);
    out.microphone.playback = await page.$eval("#record-playback", (el) => ({ hidden: el.hidden, src: el.src.slice(0, 5) }));
  }

  if (plan.streamWav) {
    const live = await page.$("#live-button");
    if (live) {
      await live.click();
      await page.waitForFunction(() => Number(document.getElementById("live").dataset.predictions) >= 2
        || document.getElementById("live").dataset.state === "error", null, { timeout: TIMEOUT_MS });
      await live.click();
      await page.waitForFunction(() => ["ended", "error"].includes(document.getElementById("live").dataset.state));
      out.stream = await page.$eval("#live", (el) => ({
        state: el.dataset.state, predictions: Number(el.dataset.predictions),
        status: el.querySelector("#live-status")?.textContent?.trim(),
        emotion: el.querySelector("#live-emotion")?.textContent?.trim(),
      }));
      if (plan.screenshotDir) await page.screenshot({ path: join(plan.screenshotDir, "web_demo_live.png"), fullPage: true });
    }
  }
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}

process.stdout.write(JSON.stringify(out) + "\n");
