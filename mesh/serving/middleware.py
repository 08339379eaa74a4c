"""ASGI middleware every agent server runs: one log line per request, bearer auth, body limit and content type."""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

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

# Set for a request whose client waits for the answer (a blocking send): the event fires when that
# client goes away, so the agent's work can stop (mesh.serving.executor.TaskAgent watches it). The
# agent runs in tasks a2a-sdk creates from the request's own, which copy this context.
CLIENT_GONE: contextvars.ContextVar[asyncio.Event | None] = contextvars.ContextVar("mesh_client_gone", default=None)
_WAITING_METHODS = frozenset({"message/send", "SendMessage"})

_RPC_METHOD = re.compile(rb'"method"\s*:\s*"([^"\\]{1,80})"')
_JSON_TYPES = ("application/json", "application/a2a+json")


class RequestLog:
    """Logs one line per HTTP request when its response ends: method, path, version, status, RPC method, time, sizes.

    ``observers`` are called with (scope, status, seconds) for each request as it
    ends (the request metrics), so a request is timed once for all of them.
    """

    def __init__(self, app: ASGIApp, observers: Sequence[Callable[[Scope, int, float], None]] = (),
                 ok_level: int = logging.INFO) -> None:
        self.app = app
        self.observers = tuple(observers)
        self.ok_level = ok_level  # the level of a request answered below 400 (others are logged at INFO)

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
            seconds = time.perf_counter() - started
            for observe in self.observers:
                observe(scope, status, seconds)
            level = self.ok_level if 0 < status < 400 else logging.INFO
            if access_log.isEnabledFor(level):
                client = scope.get("client") or ("-", 0)
                rpc = scope.get("mesh.rpc_method")
                access_log.log(
                    level,
                    '%s "%s %s HTTP/%s" %s%s %.1fms in=%dB out=%dB',
                    client[0],
                    scope["method"],
                    scope["path"],
                    scope.get("http_version", "1.1"),
                    status or "-",
                    f" {rpc}" if rpc else "",
                    seconds * 1000,
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


class Admission:
    """At most ``limit`` requests at work at once in this process (503 beyond), and none outlives its client.

    A request whose client goes away (an HTTP/2 stream reset, a closed
    connection) is cancelled rather than left running as if someone waited for
    it: that is what lets an agent shrug off a rapid-reset burst, together with
    the reset budget of ``mesh.serving.h2streams``. Only POSTs are counted; the
    card, health and metrics stay cheap and always answer.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            await _json_error(scope, send, 503, f"Busy: {self.limit} requests are already at work here; retry shortly",
                              [(b"retry-after", b"1")])
            return
        self.active += 1
        try:
            await self._until_done_or_gone(scope, receive, send)
        finally:
            self.active -= 1

    async def _until_done_or_gone(self, scope: Scope, receive: Receive, send: Send) -> None:
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        gone = asyncio.Event()

        answered = False

        async def pump() -> None:  # the only reader of the server's receive: the app reads the inbox
            while True:
                message = await receive()
                inbox.put_nowait(message)
                if message["type"] == "http.disconnect":
                    if not answered:  # a client that leaves after its answer has not gone away early
                        gone.set()
                    return

        async def tracking_send(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
            await send(message)

        pumping = asyncio.create_task(pump())
        waits = scope.get("mesh.rpc_method") in _WAITING_METHODS or scope["path"].endswith("/message:send")
        token = CLIENT_GONE.set(gone if waits else None)
        try:
            working = asyncio.create_task(self.app(scope, inbox.get, tracking_send))
        finally:
            CLIENT_GONE.reset(token)
        waiting = asyncio.create_task(gone.wait())
        try:
            await asyncio.wait({working, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if not working.done():
                # The client went away first. A streaming response sees the disconnect in its inbox and
                # ends by itself; anything else is stopped here.
                await asyncio.sleep(0)
                if not working.done():
                    working.cancel()
                await asyncio.gather(working, return_exceptions=True)
                return
            working.result()  # the app's own errors go on to the server
        finally:
            for task in (pumping, waiting, working):
                if not task.done():
                    task.cancel()


class SizeLimit:
    """Refuses request bodies over ``limit`` bytes with 413, whatever their type.

    The body is buffered and handed on in one piece (``forward``); later
    receives go to the server, so streaming responses still see the client
    disconnect.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        body = await read_within(self.limit, scope, receive, send)
        if body is not None:
            await self.forward(body, scope, receive, send)

    async def forward(self, body: bytes, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, replay_body(body, receive), send)


class BodyLimit(SizeLimit):
    """SizeLimit, and refuses non-JSON bodies with 415 and unparsable JSON-RPC before the app sees them.

    The JSON-RPC endpoint reads the body whole anyway; it is parsed once here.
    """

    async def forward(self, body: bytes, scope: Scope, receive: Receive, send: Send) -> None:
        scope["mesh.body_size"] = len(body)
        if body:
            content_type = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip().decode("latin-1").lower()
            if content_type not in _JSON_TYPES and not content_type.endswith("+json"):
                shown = content_type or "none"
                await _json_error(scope, send, 415, f"Unsupported Content-Type {shown!r}: send application/json")
                return
            match = _RPC_METHOD.search(body, 0, 4096)
            if match:
                scope["mesh.rpc_method"] = match.group(1).decode("utf-8", "replace")
            request, problem = parse_request(body)
            if problem is not None:
                await send_json(send, 200 if scope["path"] == "/" else 400,
                                problem if scope["path"] == "/" else {"error": problem["error"]})
                return
            # Parsed once here: VersionNegotiation reads it instead of parsing the body again.
            scope["mesh.rpc_request"] = request
        await super().forward(body, scope, receive, send)


async def read_within(limit: int, scope: Scope, receive: Receive, send: Send) -> bytes | None:
    """The whole request body, or None once a body over ``limit`` was answered 413 (or the client left)."""
    declared = dict(scope["headers"]).get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        await _too_large(scope, send, limit)
        return None
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            await _too_large(scope, send, limit)
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _too_large(scope: Scope, send: Send, limit: int) -> None:
    await _json_error(scope, send, 413, f"Request body too large: the limit is {limit} bytes", [(b"connection", b"close")])


async def _json_error(scope: Scope, send: Send, status: int, message: str, headers: list | None = None) -> None:
    """An HTTP error whose JSON body a JSON-RPC client can read as well as a REST one."""
    await send_json(send, status, _error_body(scope["path"], status, message), headers)


def _error_body(path: str, status: int, message: str) -> dict:
    """A JSON-RPC error envelope on the JSON-RPC endpoint, a REST error elsewhere."""
    if path == "/":
        # A2A maps an unsupported content type to ContentTypeNotSupportedError (-32005).
        code = -32005 if status == 415 else -32600
        return {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
    return {"error": {"code": status, "message": message}}


class _NotFinite:
    """A number JSON allows to write but no A2A value can hold (NaN, Infinity, 1e400)."""

    def __init__(self, text: str) -> None:
        self.text = text



def parse_request(body: bytes) -> tuple[Any, dict | None]:
    """The parsed JSON body (None if it is not JSON), and the JSON-RPC error to answer instead, if any.

    The error is for what a2a-sdk would answer with -32603: bytes that are not
    UTF-8 and nesting too deep for a parser are parse errors (-32700); a number
    that is not finite is an invalid param (-32602) naming where it is.
    Malformed JSON is left to the SDK, whose -32700 says where.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, _rpc_error(None, -32700, f"Parse error: the body is not UTF-8 (byte {exc.start})")
    seen: list[_NotFinite] = []

    def not_finite(text: str) -> _NotFinite:
        seen.append(_NotFinite(text))
        return seen[-1]

    def checked_float(text: str) -> float | _NotFinite:
        value = float(text)
        return value if math.isfinite(value) else not_finite(text)

    try:
        document = json.loads(text, parse_constant=not_finite, parse_float=checked_float)
    except RecursionError:
        return None, _rpc_error(None, -32700, "Parse error: the JSON is nested too deeply")
    except ValueError:
        return None, None
    if not seen:
        return document, None
    request_id = document.get("id") if isinstance(document, dict) else None
    fields = [{"field": path, "message": f"{value.text} is not a finite number"} for path, value in _paths_of(document)]
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
    return None, _rpc_error(request_id, -32602, f"Invalid params: {summary}", {"errors": fields})


def _paths_of(document: object, path: str = "") -> list[tuple[str, _NotFinite]]:
    found: list[tuple[str, _NotFinite]] = []
    stack: list[tuple[str, object]] = [(path, document)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, _NotFinite):
            found.append((where.removeprefix("params.") or "params", value))
        elif isinstance(value, dict):
            stack.extend((f"{where}.{key}" if where else str(key), item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((f"{where}.{index}", item) for index, item in enumerate(value))
    return sorted(found, key=lambda pair: pair[0])


def _rpc_error(request_id: object, code: int, message: str, data: dict | None = None) -> dict:
    error: dict = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


async def send_json(send: Send, status: int, body: dict, headers: list | None = None) -> None:
    """A whole JSON response."""
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": payload})


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app ``body`` (already read) in one piece, then whatever the server sends next."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
