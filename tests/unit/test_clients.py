"""The generated clients, without Node or a server: regeneration gives no diff, `--check` agrees, every endpoint
has a client method and the constants come from labels. `tsc --noEmit` and the compiled client against the real
server: tests/integration/test_clients_node.py."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import pytest

from emotion_core.labels import CONFIDENCE_THRESHOLD, EMOTIONS, MUSIC_MOODS
from tools.clients import generate as clients

REPO = Path(__file__).resolve().parents[2]

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
    web = (REPO / "emotion_core/serving/web/static/api.js").read_text()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if "Infrastructure" in op.get("tags", []):
                continue
            name = clients.camel(op["operationId"])
            assert f"  {name}(" in client, f"no client method for {method.upper()} {path}"
            assert f'{name}: {{ method: "{method.upper()}", path: "{path}"' in web
    for path, entry in doc.get("x-websockets", {}).items():
        assert f"  {clients.camel(entry['operationId'])}(): MessageSocket<" in client, path
