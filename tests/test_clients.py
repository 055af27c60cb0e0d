"""The generated clients: regeneration gives no diff, `tsc --noEmit` passes (the TypeScript client and the web
demo's JS, checked against the generated types), and the compiled client talks to the real server."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import httpx
import pytest

from emotion_core import clients
from emotion_core.labels import CONFIDENCE_THRESHOLD, EMOTIONS, MUSIC_MOODS
from tests._node import REPO, TS_DIR, run_json, tsc

GENERATED = list(clients.render())


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("generated")
    clients.write(root)
    return root


@pytest.mark.parametrize("rel", GENERATED, ids=str)
def test_regeneration_gives_no_diff(regenerated: Path, rel: Path) -> None:
    committed, fresh = REPO / rel, regenerated / rel
    assert committed.is_file(), f"{rel} is missing: run `make clients` and commit it"
    old, new = committed.read_text(encoding="utf-8"), fresh.read_text(encoding="utf-8")
    if old != new:
        diff = "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"committed/{rel}",
                                            f"regenerated/{rel}", n=2))
        pytest.fail(f"{rel} is out of date with the Python sources: run `make clients`\n{diff[:6000]}")


def test_check_mode_agrees(regenerated: Path) -> None:
    assert clients.stale(regenerated) == []
    assert clients.main(["--check", "--root", str(regenerated)]) == 0
    (regenerated / "clients/typescript/src/constants.ts").write_text("// edited by hand\n")
    assert clients.main(["--check", "--root", str(regenerated)]) == 1


@pytest.mark.parametrize("rel", GENERATED, ids=str)
def test_generated_files_say_do_not_edit(rel: Path) -> None:
    head = (REPO / rel).read_text(encoding="utf-8")[:400]
    assert "DO NOT EDIT" in head and "make clients" in head


def test_constants_come_from_labels() -> None:
    text = (REPO / "clients/typescript/src/constants.ts").read_text()
    listed = text.split("export const EMOTIONS = [", 1)[1].split("] as const", 1)[0]
    assert [line.strip().strip(",").strip('"') for line in listed.strip().splitlines()] == list(EMOTIONS)
    for emotion, mood in MUSIC_MOODS.items():
        assert f'  {emotion}: "{mood}",' in text
    assert f"export const CONFIDENCE_THRESHOLD = {CONFIDENCE_THRESHOLD!r};" in text


def test_every_endpoint_has_a_client_method() -> None:
    doc = json.loads((REPO / "clients/typescript/openapi.json").read_text())
    client = (REPO / "clients/typescript/src/client.ts").read_text()
    web = (REPO / "emotion_core/web/static/api.js").read_text()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if "Infrastructure" in op.get("tags", []):
                continue
            name = clients.camel(op["operationId"])
            assert f"  {name}(" in client, f"no client method for {method.upper()} {path}"
            assert f'{name}: {{ method: "{method.upper()}", path: "{path}"' in web
    for path, entry in doc.get("x-websockets", {}).items():
        assert f"  {clients.camel(entry['operationId'])}(): MessageSocket<" in client, path


def test_tsc_no_emit() -> None:
    done = tsc("--noEmit", "-p", ".")
    assert done.returncode == 0, f"tsc --noEmit failed:\n{done.stdout[-6000:]}{done.stderr[-2000:]}"


# --------------------------------------------------------------------------------------------- against the server


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
