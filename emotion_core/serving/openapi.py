"""The OpenAPI document of the service, built without a server: what `GET /docs.json` serves and what the
generated clients (`tools.clients`) are made from.

BentoML's own spec (`EmotionService.openapi_spec`) is the base: every BentoML API and every route of the
mounted FastAPI app, found by BentoML itself. This module adds what it lacks:

* each response schema is the Pydantic model's own (serialization-mode) JSON Schema under
  `components/schemas/<Model>`, referenced by `$ref` (BentoML inlines a flattened copy that loses
  `null` in `warning: str | None`), with the model's example as the response example;
* each operation gets a `summary` (the first line of its docstring) and `operationId` = the Python name
  (`predict_emotion`, `music_moods`, ...) that the generated clients turn into method names;
* the 4xx answers of the upload APIs are `ErrorResponse` (`UploadGuard` and `_predict` send them);
* a BentoML API that may also answer another model (`@also_returns(NoSpeech)`) gets a `oneOf` 200;
* WebSocket routes of the mounted app, which OpenAPI cannot describe, are listed under `x-websockets`
  (path → operationId, summary, description, and `messages`: the schema of what the server sends, the
  union `<Name>Message` of `emotion_core.serving.schemas` for a route function named `<name>`);
* `info` describes this API instead of BentoML's default badges (which load images from the internet).
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Iterable

from fastapi.routing import APIWebSocketRoute
from pydantic import BaseModel, TypeAdapter
from starlette.responses import JSONResponse
from starlette.routing import Mount, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from emotion_core.serving import schemas
from emotion_core.serving.schemas import ErrorResponse

REF = "#/components/schemas/{model}"
INFRA_TAG = "Infrastructure"
DOCS_PATH = "/docs.json"
METHODS = ("get", "put", "post", "delete", "patch")

TITLE = "Voice emotion detection"
DESCRIPTION = (
    "Detects the emotion in a voice recording (neutral, calm, happy, sad, angry, fearful, disgust, surprised) "
    "and suggests a music mood for it. Upload audio as a multipart file; predictions below the confidence "
    "threshold carry a `warning`. Typed TypeScript client: `clients/typescript/` (generated from this document). "
    "Web demo: [/demo](/demo)."
)


def _package_version() -> str:
    try:
        return version("emotion-core")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


def also_returns(*models: type[BaseModel]):
    """Mark a BentoML API function that may answer these models too (as a JSONResponse, 200): BentoML 1.4
    cannot build its spec for a Union return type, so the document adds them. Put it under `@bentoml.api`."""

    def mark(func):
        func.__openapi_also_returns__ = models
        return func

    return mark


def reads_headers(*parameters: dict[str, Any]):
    """Mark a BentoML API function that reads these optional request headers (OpenAPI parameter objects, `in:
    header`): BentoML documents only the body. Put it under `@bentoml.api`."""

    def mark(func):
        func.__openapi_headers__ = parameters
        return func

    return mark


def split_doc(doc: str | None) -> tuple[str | None, str | None]:
    """A docstring → (summary = its first line without the trailing dot, description = all of it)."""
    doc = inspect.cleandoc(doc or "")
    if not doc:
        return None, None
    return doc.splitlines()[0].strip().rstrip("."), doc


def response_model(output_spec: type) -> type[BaseModel] | None:
    """The Pydantic model a BentoML API returns (BentoML wraps it as `<Model>IODescriptor`)."""
    for cls in output_spec.__mro__:
        module = getattr(cls, "__module__", "")
        if (isinstance(cls, type) and issubclass(cls, BaseModel) and cls is not BaseModel
                and not module.startswith(("_bentoml", "bentoml", "pydantic"))):
            return cls
    return None


def add_schema(components: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s serialization JSON Schema (and its `$defs`) into `components`; returns the `$ref` to it."""
    schema = model.model_json_schema(ref_template=REF, mode="serialization")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": REF.format(model=model.__name__)}


def _example_of(model: type[BaseModel]) -> Any:
    return model.model_json_schema(mode="serialization").get("example")


def _pascal(name: str) -> str:
    return "".join(word[:1].upper() + word[1:] for word in name.split("_"))


def add_union(components: dict[str, Any], name: str, union: Any) -> dict[str, Any]:
    """A (discriminated) union of models into `components` under `name`; returns the `$ref` to it."""
    schema = TypeAdapter(union).json_schema(ref_template=REF, mode="serialization")
    components.update(schema.pop("$defs", {}))
    components[name] = schema
    return {"$ref": REF.format(model=name)}


def websocket_routes(service: Any) -> list[tuple[str, Any]]:
    """(path, route) of every WebSocket route of the service's mounted FastAPI apps (included routers too)."""
    found = []

    def walk(routes: Iterable[Any], prefix: str) -> None:
        for route in routes:
            router = getattr(route, "original_router", None)  # FastAPI's include_router (BentoML class views)
            if router is not None:
                context = getattr(route, "include_context", None)
                walk(router.routes, prefix + (getattr(context, "prefix", "") or ""))
            elif isinstance(route, (APIWebSocketRoute, WebSocketRoute)):
                found.append((prefix + route.path, route))
            elif hasattr(route, "routes") and not isinstance(route, Mount):
                walk(route.routes, prefix)

    for app, mount_path, _ in service.mount_apps:
        walk(getattr(app, "routes", []), mount_path.rstrip("/"))
    return found


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow a local `$ref` (`#/components/schemas/X`) to the schema it names."""
    while "$ref" in schema:
        node: Any = spec
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def operations(spec: dict[str, Any]):
    """(path, method, operation) of every API operation (not BentoML's infrastructure routes)."""
    for path, item in spec["paths"].items():
        for method in METHODS:
            op = item.get(method)
            if isinstance(op, dict) and INFRA_TAG not in op.get("tags", []):
                yield path, method, op


def openapi_document(service: Any) -> dict[str, Any]:
    """The documented OpenAPI document of a BentoML service class (`serving.service.EmotionService`)."""
    return copy.deepcopy(_document(service))


@functools.lru_cache(maxsize=4)
def _document(service: Any) -> dict[str, Any]:
    spec = json.loads(json.dumps(service.openapi_spec.asdict(), default=str))  # plain JSON types only
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    apis = {api.route: api for api in service.apis.values()}
    for path, method, op in operations(spec):
        responses = op.setdefault("responses", {})
        if method == "post" and path in apis:  # a BentoML API: its docstring, its return model
            api = apis[path]
            op["operationId"] = api.name
            summary, description = split_doc(api.doc)
            model = response_model(api.output_spec)
            also = getattr(getattr(api, "func", None), "__openapi_also_returns__", ())
            if headers := getattr(getattr(api, "func", None), "__openapi_headers__", ()):
                op.setdefault("parameters", []).extend(copy.deepcopy(list(headers)))
            if model is not None and also:
                models = (model, *also)
                responses["200"] = {"description": "Successful Response: " + " or ".join(m.__name__ for m in models),
                                    "content": {"application/json": {
                                        "schema": {"oneOf": [add_schema(components, m) for m in models]},
                                        "examples": {m.__name__: {"summary": split_doc(m.__doc__)[0],
                                                                  "value": _example_of(m)} for m in models}}}}
            elif model is not None:
                responses["200"] = {"description": "Successful Response",
                                    "content": {"application/json": {"schema": add_schema(components, model)}}}
            for code in ("400", "404"):  # BentoML's generic errors; ours are ErrorResponse
                responses.pop(code, None)
            responses["4XX"] = {
                "description": "Rejected upload, `detail` says why: not multipart, wrong or extra field, empty, "
                               "not audio, too short, …",
                "content": {"application/json": {"schema": add_schema(components, ErrorResponse)}},
            }
        else:  # a route of the mounted FastAPI app: operationId = its name (service.py), docstring = description
            summary, description = split_doc(op.get("description"))
        if summary:
            op["summary"] = summary
        if description:
            op["description"] = description
        for response in responses.values():  # the schema's example, where Swagger UI shows it
            for media in response.get("content", {}).values():
                example = _resolve(spec, media.get("schema", {})).get("example")
                if example is not None and "examples" not in media:
                    media.setdefault("example", example)

    sockets = {}
    for path, route in websocket_routes(service):
        summary, description = split_doc(inspect.getdoc(route.endpoint))
        entry: dict[str, Any] = {"operationId": route.name, "summary": summary, "description": description}
        messages = getattr(schemas, _pascal(route.name) + "Message", None)
        if messages is not None:
            entry["messages"] = add_union(components, _pascal(route.name) + "Message", messages)
        sockets[path] = entry
    if sockets:
        spec["x-websockets"] = sockets

    _prune(spec)
    spec["info"].update(title=TITLE, description=DESCRIPTION, version=_package_version())
    spec["info"].pop("contact", None)
    return spec


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[-1]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def _prune(spec: dict[str, Any]) -> None:
    """Drop component schemas no path reaches (BentoML's `*IODescriptor` copies, unused error types)."""
    schemas = spec["components"]["schemas"]
    reached, todo = set(), _refs(spec["paths"]) | _refs(spec.get("x-websockets", {}))
    while todo:
        name = todo.pop()
        if name not in reached and name in schemas:
            reached.add(name)
            todo |= _refs(schemas[name])
    for name in set(schemas) - reached:
        del schemas[name]


class OpenAPIDocs:
    """ASGI middleware: answers `GET /docs.json` with `openapi_document(service)` instead of BentoML's raw spec."""

    def __init__(self, app: ASGIApp, service: Any, path: str = DOCS_PATH) -> None:
        self.app, self.service, self.path = app, service, path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") == self.path and scope.get("method") in ("GET", "HEAD"):
            return await JSONResponse(openapi_document(self.service))(scope, receive, send)
        await self.app(scope, receive, send)
