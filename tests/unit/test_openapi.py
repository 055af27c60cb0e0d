"""The OpenAPI document, built without a server: every route of the service is in it with a summary and an
example that is a valid response. The real server's `/docs.json` is exactly this document:
tests/integration/test_openapi_served.py."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter

from emotion_core.serving import schemas
from emotion_core.serving.openapi import openapi_document, operations, websocket_routes
from emotion_core.serving.service import EmotionService, app


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def response_examples(media: dict[str, Any]) -> list[Any]:
    if "example" in media:
        return [media["example"]]
    return [e["value"] for e in media.get("examples", {}).values()]


def service_routes() -> set[tuple[str, str]]:
    """(path, method) of every route the service answers: BentoML APIs and the documented FastAPI routes."""
    routes = {(api.route, "post") for api in EmotionService.apis.values()}
    for path, item in app.openapi()["paths"].items():  # FastAPI's own view of the mounted app
        routes |= {(path, method) for method in item}
    return routes


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    from emotion_core.serving.service import EmotionService

    return openapi_document(EmotionService)


def test_every_route_is_documented(doc: dict[str, Any]) -> None:
    documented = {(path, method) for path, method, _ in operations(doc)}
    assert documented == service_routes()
    assert {"/predict-emotion/", "/predict-realtime/", "/", "/emotions/", "/music-moods/"} <= {p for p, _ in documented}
    assert "/demo" not in doc["paths"]  # the demo page is for people, not for clients
    assert set(doc.get("x-websockets", {})) == {path for path, _ in websocket_routes(EmotionService)}


def test_every_operation_has_summary_description_and_unique_id(doc: dict[str, Any]) -> None:
    ids = []
    for path, method, op in operations(doc):
        where = f"{method.upper()} {path}"
        assert op.get("summary") and op["summary"] != op.get("operationId"), where
        assert op.get("description"), where
        ids.append(op["operationId"])
    for entry in doc.get("x-websockets", {}).values():
        assert entry.get("summary") and entry.get("description") and entry.get("messages"), path
        ids.append(entry["operationId"])
    assert len(ids) == len(set(ids)), ids
    for path, item in doc["paths"].items():  # BentoML's health probes too
        for op in item.values():
            assert op.get("summary") or op.get("description"), path


def test_every_response_has_a_valid_example(doc: dict[str, Any]) -> None:
    """Each 200 (and 4XX) JSON response shows an example, which validates against its schema's model and
    names every field the schema requires (responses always carry every field)."""
    for path, method, op in operations(doc):
        for code, response in op["responses"].items():
            media = response.get("content", {}).get("application/json")
            if media is None or code.startswith("5"):
                continue
            examples = response_examples(media)
            assert examples, f"{method.upper()} {path} {code}: no example"
            alternatives = media["schema"].get("oneOf", [media["schema"]])
            for example in examples:
                names = [resolve(doc, s)["title"] for s in alternatives]
                fits = [n for n in names if _validates(n, example)]
                assert fits, f"{method.upper()} {path} {code}: example fits none of {names}: {example}"
                required = set(resolve(doc, {"$ref": f"#/components/schemas/{fits[0]}"}).get("required", []))
                assert required <= set(example), (path, code, required - set(example))


def _validates(model_name: str, example: Any) -> bool:
    try:
        TypeAdapter(getattr(schemas, model_name)).validate_python(example)
    except Exception:  # noqa: BLE001 - pydantic's ValidationError
        return False
    return True


def test_stream_messages_are_a_discriminated_union(doc: dict[str, Any]) -> None:
    for entry in doc.get("x-websockets", {}).values():
        union = resolve(doc, entry["messages"])
        assert union["discriminator"]["propertyName"] == "type"
        for ref in union["oneOf"]:
            model = resolve(doc, ref)
            assert "example" in model and model["example"]["type"] in union["discriminator"]["mapping"], model["title"]


def test_nullable_warning_survives(doc: dict[str, Any]) -> None:
    """BentoML's own spec flattens `warning: str | None` to a plain string; ours keeps the null."""
    warning = doc["components"]["schemas"]["EmotionPrediction"]["properties"]["warning"]
    assert {"type": "null"} in warning["anyOf"]
