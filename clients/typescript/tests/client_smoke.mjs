// Calls every HTTP endpoint of a running service through the generated client (compiled by tsc into a
// temporary folder) and prints the answers as one JSON object; tests/test_clients.py compares them with
// the service's own answers.
//
//   node tests/client_smoke.mjs <compiled index.js> <baseUrl> <audio file>

import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { pathToFileURL } from "node:url";

const [modulePath, baseUrl, audioPath] = process.argv.slice(2);
const api = await import(pathToFileURL(modulePath).href);

const client = api.createClient({ baseUrl });
const audio = new Blob([readFileSync(audioPath)], { type: "audio/flac" });
const out = {
  endpoints: Object.keys(api.ENDPOINTS),
  websockets: Object.keys(api.WEBSOCKETS),
  constants: { emotions: api.EMOTIONS, musicMoods: api.MUSIC_MOODS, threshold: api.CONFIDENCE_THRESHOLD },
  socketUrl: client.socketUrl("/ws/stream"),
  health: await client.health(),
  emotions: await client.emotions(),
  musicMoods: await client.musicMoods(),
  predictEmotion: await client.predictEmotion(audio, { filename: basename(audioPath) }),
  predictRealtime: await client.predictRealtime(audio, { filename: basename(audioPath) }),
};
if (typeof client.predictTimeline === "function") {
  out.predictTimeline = await client.predictTimeline(audio, { filename: basename(audioPath) });
}
try {
  await client.predictEmotion(new Blob([new TextEncoder().encode("not audio at all\n".repeat(20))]), { filename: "notes.wav" });
  out.error = null;
} catch (error) {
  out.error = { name: error.name, status: error.status, body: error.body, isErrorResponse: api.isErrorResponse(error.body) };
}
process.stdout.write(JSON.stringify(out) + "\n");
