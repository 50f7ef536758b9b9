"""The studio's HTTP API (FastAPI) around one :class:`~fractalmidi.studio.session.Session`.

Errors come back as ``{"error": "one sentence"}``. Request bodies are read with a size cap;
the page's own files are served from a fixed table (no request path touches the disk); the
``Host`` header must name this machine, so another web site cannot reach the API through
DNS rebinding.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from fractalmidi.errors import UserError
from fractalmidi.studio.session import FILE_KINDS, Busy, NotFound, Session, TooLarge

ASSETS = {"index.html": "text/html; charset=utf-8", "studio.js": "text/javascript; charset=utf-8",
          "studio.css": "text/css; charset=utf-8"}
"""The page's files (package data in ``static/``) and their media types."""
MAX_JSON_BYTES = 1024 * 1024
"""A generate request (region rectangles and options) is at most this big."""
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                    "X-Frame-Options": "DENY", "Cache-Control": "no-store"}


def _status(err: UserError) -> int:
    statuses = ((NotFound, 404), (TooLarge, 413), (Busy, 409))
    return next((status for kind, status in statuses if isinstance(err, kind)), 400)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=SECURITY_HEADERS)


def _ok(payload: Any) -> JSONResponse:
    return JSONResponse(payload, headers=SECURITY_HEADERS)


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The request body, refused (``TooLarge``) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the {what} has {int(declared)} bytes; at most {limit} are accepted")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the {what} is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _load_assets() -> dict[str, bytes]:
    folder = resources.files("fractalmidi.studio") / "static"
    return {name: (folder / name).read_bytes() for name in ASSETS}


def create_app(session: Session, allowed_hosts: list[str] | tuple[str, ...] = LOCAL_HOSTS) -> FastAPI:
    """The web app of ``session``; ``allowed_hosts`` are the names the page may be reached by."""
    app = FastAPI(title="FractalMIDI Studio", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    assets = _load_assets()

    @app.exception_handler(UserError)
    async def user_error(_: Request, err: UserError) -> JSONResponse:
        return _error(_status(err), str(err).splitlines()[0] if str(err) else "the request was refused")

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, err: HTTPException) -> JSONResponse:
        return _error(err.status_code, "there is no such page or file" if err.status_code == 404 else str(err.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, err: Exception) -> JSONResponse:  # a bug: say so in one line, log the rest
        import logging

        logging.getLogger(__name__).exception("studio request failed")
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return _error(500, f"the studio failed ({type(err).__name__}{': ' + first if first else ''})")

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, err: RequestValidationError) -> JSONResponse:
        return _error(400, "the request is not in the expected form")

    @app.get("/")
    async def index() -> Response:
        return Response(assets["index.html"], media_type=ASSETS["index.html"], headers=SECURITY_HEADERS)

    @app.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in assets:
            raise NotFound("there is no such page or file")
        return Response(assets[name], media_type=ASSETS[name], headers=SECURITY_HEADERS)

    @app.get("/api/info")
    async def info() -> JSONResponse:
        return _ok(session.info())

    @app.post("/api/open")
    async def open_midi(request: Request) -> JSONResponse:
        data = await read_body(request, session.limits.max_upload_bytes, "file")
        version = await run_in_threadpool(session.open_midi, data, request.headers.get("x-filename", ""))
        return _ok({"version": session.summary(version), "notes": session.notes(version)})

    @app.post("/api/generate")
    async def generate(request: Request) -> JSONResponse:
        body = await read_body(request, MAX_JSON_BYTES, "request")
        try:
            query = json.loads(body)
        except ValueError:
            raise UserError("the request is not valid JSON") from None
        if not isinstance(query, dict):
            raise UserError("the request must be a JSON object")
        base = query.get("version")
        if base is not None and not isinstance(base, str):
            raise UserError("version must be a version id (text) or null for the empty roll")
        result = await run_in_threadpool(session.generate, base, query.get("rects"), query.get("options"),
                                         query.get("seed", 0))
        return _ok(result)

    @app.get("/api/versions")
    async def versions() -> JSONResponse:
        return _ok([session.summary(v) for v in session.versions()])

    @app.get("/api/versions/{version_id}")
    async def version(version_id: str) -> JSONResponse:
        found = session.version(version_id)
        return _ok({"version": session.summary(found), "notes": session.notes(found)})

    @app.get("/api/versions/{version_id}/{kind}")
    async def download(version_id: str, kind: str) -> FileResponse:
        path = await run_in_threadpool(session.file, version_id, kind)
        suffix, media_type = FILE_KINDS[kind]
        return FileResponse(path, media_type=media_type, headers=SECURITY_HEADERS,
                            filename=f"fractalmidi-v{session.version(version_id).id}.{suffix}")

    return app
