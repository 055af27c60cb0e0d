"""The web demo: `GET /demo` (static/index.html) and its assets under `/demo/static/`, mounted on the
service's FastAPI app. Plain HTML/JS/CSS, no build step, nothing loaded from outside the service (the page's
Content-Security-Policy says so to the browser). `static/api.js` is generated (`make clients`)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.responses import FileResponse
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEMO_PATH = "/demo"

#: Only the service itself: scripts, styles, fetches; recorded audio plays from blob: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


class _DemoStatic(StaticFiles):
    async def get_response(self, path, scope):  # type: ignore[no-untyped-def]
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def mount_demo(app: FastAPI, path: str = DEMO_PATH) -> None:
    """Add the demo page to `app`: `GET {path}` and `{path}/static/*` (both kept out of the OpenAPI document)."""
    app.mount(f"{path}/static", _DemoStatic(directory=STATIC_DIR), name="demo-static")

    @app.get(path, include_in_schema=False)
    def demo() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8", headers=HEADERS)
