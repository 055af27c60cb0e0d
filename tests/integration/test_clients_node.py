"""The generated TypeScript client under Node (`make clients-deps` installs it): `tsc --noEmit` passes (the
client and the web demo's JS, checked against the generated types), and the compiled client talks to the real
server. Generation itself (no diff, constants, one method per endpoint): tests/unit/test_clients.py."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from emotion_core.labels import CONFIDENCE_THRESHOLD, EMOTIONS, MUSIC_MOODS
from tests.integration._node import REPO, TS_DIR, run_json, tsc


def test_tsc_no_emit() -> None:
    done = tsc("--noEmit", "-p", ".")
    assert done.returncode == 0, f"tsc --noEmit failed:\n{done.stdout[-6000:]}{done.stderr[-2000:]}"


def test_compiled_client_against_the_server(server: str, angry_clip: Path, tmp_path: Path) -> None:
    """client.ts compiled by tsc, run by node against the real server: every method, and ApiError on a 4xx."""
    out = tmp_path / "js"
    done = tsc("-p", ".", "--noEmit", "false", "--outDir", str(out), "--rootDir", str(REPO))
    assert done.returncode == 0, done.stdout[-4000:]
    (out / "package.json").write_text('{"type": "module"}')
    got = run_json(TS_DIR / "tests" / "client_smoke.mjs", str(out / "clients/typescript/src/index.js"), server,
                   str(angry_clip))

    with httpx.Client(base_url=server, timeout=120) as http:
        assert got["health"]["status"] == "healthy"
        assert got["emotions"] == http.get("/emotions/").json()
        assert got["musicMoods"] == http.get("/music-moods/").json()
        with angry_clip.open("rb") as f:
            expected = http.post("/predict-emotion/", files={"file": (angry_clip.name, f)}).json()
    assert got["constants"] == {"emotions": list(EMOTIONS), "musicMoods": dict(MUSIC_MOODS),
                                "threshold": CONFIDENCE_THRESHOLD}
    assert got["predictEmotion"]["emotion"] == expected["emotion"]
    assert got["predictEmotion"]["all_probabilities"] == pytest.approx(expected["all_probabilities"], abs=1e-6)
    assert got["predictRealtime"]["emotion"] in EMOTIONS
    if "predictTimeline" in got:
        assert got["predictTimeline"]["status"] in ("success", "no_speech")
    assert got["socketUrl"] == server.replace("http://", "ws://") + "/ws/stream"
    error = got["error"]
    assert error["name"] == "ApiError" and 400 <= error["status"] < 500 and error["isErrorResponse"], error
