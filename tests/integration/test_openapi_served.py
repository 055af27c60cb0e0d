"""The real server's `/docs.json` is exactly `emotion_core.serving.openapi.openapi_document(EmotionService)`,
with a summary and a 200 example for every operation (the document itself: tests/unit/test_openapi.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from emotion_core.serving.openapi import openapi_document, operations
from emotion_core.serving.service import EmotionService


def response_examples(media: dict[str, Any]) -> list[Any]:
    if "example" in media:
        return [media["example"]]
    return [e["value"] for e in media.get("examples", {}).values()]


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return openapi_document(EmotionService)


def test_served_docs_json_is_the_document(server: str, doc: dict[str, Any]) -> None:
    r = httpx.get(f"{server}/docs.json", timeout=60)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    served = r.json()
    assert served == doc
    for path, method, op in operations(served):
        assert op["summary"], (method, path)
        ok = op["responses"]["200"]["content"]["application/json"]
        assert response_examples(ok), (method, path)
