"""ASGI middleware every agent server runs: one log line per request, bearer auth, body limit and content type."""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
from collections.abc import Iterable

from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    SimpleUser,
)
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("mesh.access")

_RPC_METHOD = re.compile(rb'"method"\s*:\s*"([^"\\]{1,80})"')
_JSON_TYPES = ("application/json", "application/a2a+json")


class RequestLog:
    """Logs one line per HTTP request when its response ends: method, path, version, status, RPC method, time, sizes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        sent = 0

        async def logging_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, logging_send)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                client = scope.get("client") or ("-", 0)
                rpc = scope.get("mesh.rpc_method")
                access_log.info(
                    '%s "%s %s HTTP/%s" %s%s %.1fms in=%dB out=%dB',
                    client[0],
                    scope["method"],
                    scope["path"],
                    scope.get("http_version", "1.1"),
                    status or "-",
                    f" {rpc}" if rpc else "",
                    (time.perf_counter() - started) * 1000,
                    scope.get("mesh.body_size", 0),
                    sent,
                )


class _BearerRefused(AuthenticationError):
    def __init__(self, reason: str, invalid: bool) -> None:
        super().__init__(reason)
        self.invalid = invalid


class BearerBackend(AuthenticationBackend):
    """Starlette authentication by one bearer token; the public paths (card, health) need none.

    A good token marks the request authenticated, so a2a-sdk scopes tasks to
    that user and serves the extended card; a missing or wrong one is refused
    before the body is read.
    """

    def __init__(self, token: str, public_paths: Iterable[str]) -> None:
        self.token = token.encode()
        self.public_paths = frozenset(public_paths)

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        if conn.url.path in self.public_paths:
            return None
        scheme, _, given = conn.headers.get("authorization", "").partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            raise _BearerRefused("missing bearer token", invalid=False)
        if not hmac.compare_digest(given.encode(), self.token):
            raise _BearerRefused("invalid bearer token", invalid=True)
        return AuthCredentials(["authenticated"]), SimpleUser("mesh-client")


def BearerAuth(app: ASGIApp, token: str, realm: str, public_paths: Iterable[str]) -> ASGIApp:  # noqa: N802 - used as a middleware class
    """``app`` behind Starlette's AuthenticationMiddleware with ``BearerBackend``; refusals get 401 and a challenge."""

    def refuse(conn: HTTPConnection, exc: Exception) -> Response:
        challenge = f'Bearer realm="{realm}"' + (', error="invalid_token"' if getattr(exc, "invalid", False) else "")
        return JSONResponse(_error_body(conn.url.path, 401, f"Unauthorized: {exc}"), status_code=401,
                            headers={"WWW-Authenticate": challenge})

    return AuthenticationMiddleware(app, backend=BearerBackend(token, public_paths), on_error=refuse)


class BodyLimit:
    """Refuses bodies over ``limit`` bytes with 413 before they are parsed, and non-JSON bodies with 415.

    The body is buffered (the JSON-RPC endpoint reads it whole anyway) and
    handed on in one piece; later receives go to the server, so streaming
    responses still see the client disconnect.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(scope, send)
            return
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_large(scope, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        scope["mesh.body_size"] = size
        if body:
            content_type = headers.get(b"content-type", b"").split(b";")[0].strip().decode("latin-1").lower()
            if content_type not in _JSON_TYPES and not content_type.endswith("+json"):
                shown = content_type or "none"
                await _json_error(scope, send, 415, f"Unsupported Content-Type {shown!r}: send application/json")
                return
            match = _RPC_METHOD.search(body, 0, 4096)
            if match:
                scope["mesh.rpc_method"] = match.group(1).decode("utf-8", "replace")

        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        await _json_error(
            scope, send, 413, f"Request body too large: the limit is {self.limit} bytes",
            [(b"connection", b"close")],
        )


async def _json_error(scope: Scope, send: Send, status: int, message: str, headers: list | None = None) -> None:
    """An HTTP error whose JSON body a JSON-RPC client can read as well as a REST one."""
    payload = json.dumps(_error_body(scope["path"], status, message)).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            *(headers or []),
        ],
    })
    await send({"type": "http.response.body", "body": payload})


def _error_body(path: str, status: int, message: str) -> dict:
    """A JSON-RPC error envelope on the JSON-RPC endpoint, a REST error elsewhere."""
    if path == "/":
        # A2A maps an unsupported content type to ContentTypeNotSupportedError (-32005).
        code = -32005 if status == 415 else -32600
        return {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
    return {"error": {"code": status, "message": message}}
