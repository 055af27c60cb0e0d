"""The web demo (`GET /demo`) in real headless Chromium (Debian's, driven by playwright-core from Node):
uploads of real RAVDESS clips show what the API answers for the same files (emotion, confidence, music mood,
the low-confidence warning, all 8 bars), a long file gets the timeline the API gives, the microphone
(Chromium's fake capture device playing a RAVDESS clip) is recorded and analyzed, the live WebSocket stream
runs, and no request leaves the service. Screenshots go to test-output/web_demo/."""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from emotion_core.config import data_dir
from emotion_core.labels import CONFIDENCE_THRESHOLD, EMOTIONS
from tests.integration._node import OUTPUT_DIR, TS_DIR, chromium, node, package, run_json

RAVDESS = data_dir() / "ravdess"
MAX_PROBES = 24  # clips asked before giving up on finding a low-confidence one
SCRIPT = TS_DIR / "tests" / "web_demo.mjs"


def percent(p: float) -> str:
    return f"{p * 100:.1f}%"  # what the page shows (demo.js `percent`)


def predict(http: httpx.Client, route: str, path: Path) -> dict:
    with path.open("rb") as f:
        r = http.post(route, files={"file": (path.name, f)})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def browser_ready() -> None:
    node(), chromium()  # skip (clear message) without them
    package("playwright-core")  # fail (run make clients-deps) without it


@pytest.fixture(scope="module")
def demo_run(browser_ready, server: str, ravdess_manifest, angry_clip: Path,
             tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Ask the API first (to pick a low-confidence clip), then drive the page once with every scenario."""
    work = tmp_path_factory.mktemp("web-demo")
    shots = OUTPUT_DIR / "web_demo"
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob("*.png"):
        old.unlink()

    with httpx.Client(base_url=server, timeout=120) as http:
        # A low-confidence clip (the warning) and another one (confident if any): actor 1 is unseen by the model.
        answers: dict[Path, dict] = {}
        candidates = [angry_clip] + [RAVDESS / rel for rel in
                                     ravdess_manifest[ravdess_manifest["actor"] == 1].sort_values("path")["path"]]
        low = sure = None
        for clip in list(dict.fromkeys(candidates))[:MAX_PROBES]:
            answers[clip] = answer = predict(http, "/predict-emotion/", clip)
            if answer.get("status") != "success":
                continue
            if answer["confidence"] < CONFIDENCE_THRESHOLD:
                low = low or clip
            else:
                sure = sure or clip
            if low and sure:
                break
        assert low is not None, f"no clip below {CONFIDENCE_THRESHOLD} among {MAX_PROBES} (the smoke model is that good?)"
        second = sure or next(c for c, a in answers.items() if c != low and a.get("status") == "success")

        # A long recording for the timeline: three actor-1 clips with a second of silence after each.
        rate = sf.info(angry_clip).samplerate
        parts = []
        for clip in (angry_clip, low, second):
            audio, r = sf.read(clip, dtype="float32")
            assert r == rate
            parts += [audio, np.zeros(rate, np.float32)]
        long_wav = work / "three_utterances.wav"
        sf.write(long_wav, np.concatenate(parts), rate, subtype="PCM_16")
        has_timeline = "/predict-timeline/" in http.get("/docs.json").json()["paths"]
        timeline = predict(http, "/predict-timeline/", long_wav) if has_timeline else None
        answers[long_wav] = predict(http, "/predict-emotion/", long_wav)

    mic_wav = work / "microphone.wav"  # Chromium's fake microphone plays this (WAV only)
    audio, rate = sf.read(angry_clip, dtype="float32")
    sf.write(mic_wav, audio, rate, subtype="PCM_16")

    uploads = [
        {"path": str(low), "screenshot": str(shots / "web_demo_low_confidence.png")},
        {"path": str(second), "screenshot": str(shots / "web_demo_second_clip.png")},
        {"path": str(long_wav), "screenshot": str(shots / "web_demo_timeline.png"), "expectTimeline": has_timeline},
    ]
    plan = {"baseUrl": server, "chromium": str(chromium()), "uploads": uploads, "microphoneWav": str(mic_wav),
            "streamWav": str(mic_wav), "screenshotDir": str(shots), "recordMs": 3000}
    plan_path = work / "plan.json"
    plan_path.write_text(json.dumps(plan))
    out = run_json(SCRIPT, str(plan_path), timeout=300)
    (work / "page.json").write_text(json.dumps(out, indent=1))
    print(f"\nweb demo screenshots: {shots}  (page observations: {work / 'page.json'})")
    return {"server": server, "out": out, "answers": answers, "low": low, "second": second, "long": long_wav,
            "timeline": timeline, "shots": shots}


def shown_for(run: dict, clip: Path) -> dict:
    [shown] = [u for u in run["out"]["uploads"] if u["path"] == str(clip)]
    return shown


def assert_shows(shown: dict, answer: dict) -> None:
    assert shown["state"] == "done", shown["status"]
    if answer.get("status") == "no_speech":
        assert "No speech" in shown["status"]
        return
    assert shown["emotion"] == answer["emotion"]
    assert shown["confidence"] == percent(answer["confidence"])
    assert shown["mood"] == answer["music_mood"]
    assert shown["warning"] == answer["warning"]  # same text, or both absent
    assert shown["warningVisible"] == (answer["warning"] is not None)
    assert [b["emotion"] for b in shown["bars"]] == list(EMOTIONS)
    assert [b["value"] for b in shown["bars"]] == [percent(answer["all_probabilities"][e]) for e in EMOTIONS]
    for bar in shown["bars"]:
        assert math.isclose(bar["width"], 100 * answer["all_probabilities"][bar["emotion"]], abs_tol=1e-3)
        assert bar["top"] == (bar["emotion"] == answer["emotion"])
    assert shown["ariaLive"] == "polite"


def test_low_confidence_clip_shows_the_api_answer_and_the_warning(demo_run: dict) -> None:
    answer = demo_run["answers"][demo_run["low"]]
    assert answer["confidence"] < CONFIDENCE_THRESHOLD and answer["warning"]
    shown = shown_for(demo_run, demo_run["low"])
    assert_shows(shown, answer)
    assert shown["warningVisible"] and "Low confidence" in shown["warning"]


def test_second_clip_shows_the_api_answer(demo_run: dict) -> None:
    assert_shows(shown_for(demo_run, demo_run["second"]), demo_run["answers"][demo_run["second"]])


def test_long_file_shows_the_api_timeline(demo_run: dict) -> None:
    shown = shown_for(demo_run, demo_run["long"])
    assert_shows(shown, demo_run["answers"][demo_run["long"]])
    timeline = demo_run["timeline"]
    if timeline is None:
        pytest.skip("the service has no /predict-timeline/")
    page = shown["timeline"]
    assert page["state"] == "done" and not page["hidden"]
    assert [(s["emotion"], s["start"], s["end"]) for s in page["segments"]] == \
        [(s["emotion"], s["start"], s["end"]) for s in timeline["segments"]]
    assert page["blocks"] == len(timeline["segments"]) >= 1


def test_microphone_recording_is_analyzed(demo_run: dict) -> None:
    mic = demo_run["out"]["microphone"]
    assert mic["state"] == "done", mic["status"]  # MediaRecorder's webm/opus decoded by the service
    assert mic["emotion"] in EMOTIONS or "No speech" in mic["status"]
    assert mic["playback"] == {"hidden": False, "src": "blob:"}


def test_live_stream(demo_run: dict) -> None:
    stream = demo_run["out"]["stream"]
    if stream is None:
        pytest.skip("the service has no WebSocket stream")
    assert stream["state"] == "ended", stream["status"]
    assert stream["predictions"] >= 1 and stream["emotion"] in EMOTIONS


def test_no_request_leaves_the_service(demo_run: dict) -> None:
    out, server = demo_run["out"], demo_run["server"]
    assert out["blocked"] == []
    ws = server.replace("http://", "ws://")
    outside = [r["url"] for r in out["requests"]
               if not r["url"].startswith((server + "/", ws + "/", "blob:" + server + "/", "data:"))]
    assert outside == []
    urls = {r["url"] for r in out["requests"]}
    assert {f"{server}/demo", f"{server}/demo/static/demo.js", f"{server}/demo/static/api.js"} <= urls
    assert f"{server}/predict-emotion/" in urls


def test_no_console_errors_and_keyboard_order(demo_run: dict) -> None:
    out = demo_run["out"]
    assert out["consoleErrors"] == []
    focus = out["keyboard"]
    assert focus.index("file-input") < focus.index("analyze-button") < focus.index("record-button")


def test_screenshots_written(demo_run: dict) -> None:
    shots = sorted(demo_run["shots"].glob("*.png"))
    assert {p.name for p in shots} >= {"web_demo_low_confidence.png", "web_demo_timeline.png"}
    for shot in shots:
        assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        print(f"screenshot: {shot}")


def test_demo_page_headers(server: str) -> None:
    r = httpx.get(f"{server}/demo", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp
    assert "http" not in r.text.replace('href="/docs.json"', "")  # no absolute URL: nothing from elsewhere
    for asset in ("demo.js", "api.js", "demo.css", "pcm-worklet.js"):
        assert httpx.get(f"{server}/demo/static/{asset}", timeout=30).status_code == 200, asset
