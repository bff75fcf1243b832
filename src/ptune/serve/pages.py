"""The server's browser pages, from files in the package (no CDN, no build step): the playground at
``/`` (``serve/playground/``: HTML, CSS and JS) and the API docs at ``/docs`` and ``/redoc``, whose
Swagger UI and ReDoc bundles ``fastapi-offline`` ships and the server serves itself.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from ptune.errors import PtuneError

PLAYGROUND = Path(__file__).parent / "playground"
DOCS_ASSETS = "/static-offline-docs"  # where fastapi-offline serves its Swagger UI and ReDoc files
# ReDoc's bundle draws its maker's logo from their CDN; an empty data URL makes it fail to load and hide itself.
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


def offline_app(**options: Any) -> FastAPI:
    """A FastAPI app whose ``/docs`` and ``/redoc`` load every asset from this server: Swagger UI without its
    online validator (a request to swagger.io), ReDoc from a copy of its bundle without the CDN logo."""
    app = FastAPIOffline(redoc_url=None, static_url=DOCS_ASSETS, swagger_ui_parameters={"validatorUrl": None},
                         **options)

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{root}/redoc-assets/redoc.standalone.js", with_google_fonts=False,
                              redoc_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png")

    @app.get("/redoc-assets/redoc.standalone.js", include_in_schema=False)
    async def redoc_bundle() -> Response:
        return Response(_redoc_bundle(), media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    return app


@functools.cache
def _redoc_bundle() -> bytes:
    bundle = Path(fastapi_offline.__file__).parent / "static" / "redoc.standalone.js"
    return bundle.read_bytes().replace(REDOC_LOGO, b"data:,")


def add_pages(app: FastAPI) -> None:
    """Serve the playground: ``GET /`` is its page, ``/playground/*`` its script and style sheet."""
    if not (PLAYGROUND / "index.html").is_file():  # an install that lost its package data
        raise PtuneError(f"{PLAYGROUND}/index.html is missing: reinstall ptune (the playground ships as package "
                         "data)")
    app.mount("/playground", StaticFiles(directory=PLAYGROUND), name="playground")

    @app.get("/", include_in_schema=False)
    async def playground() -> FileResponse:
        return FileResponse(PLAYGROUND / "index.html", media_type="text/html")
