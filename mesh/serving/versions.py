"""A2A version negotiation in front of a2a-sdk: the version a request asks for, and clear errors when it cannot be served.

- ``?A2A-Version=X`` (the spec allows the query parameter) counts as the
  ``A2A-Version`` header when the header is absent;
- a version other than 0.3 or 1.0 (any patch) is refused: JSON-RPC -32009
  VersionNotSupportedError, REST 400 ``VERSION_NOT_SUPPORTED``
  (a2a-sdk would accept ``1.1`` as 1.0);
- a 1.0 request naming a 0.3 JSON-RPC method (``message/send``) is -32601
  naming the 1.0 method to use (a2a-sdk answered -32603);
- a JSON-RPC notification (a request with no ``id``) is run and, when it
  succeeds, gets no reply body: HTTP 204 (JSON-RPC 2.0 section 4.1). One that
  fails (unknown method, bad params, unsupported version) is answered with its
  error and ``"id": null``: the A2A TCK 0.3 requires it (mandatory JSON-RPC
  tests) and a2a-sdk 0.3 servers do it, where JSON-RPC 2.0 would stay silent;
- ``GET /tasks`` (ListTasks, which 0.3 does not have) with no version is 1.0;
- a 0.3 REST ``GET /v1/tasks/{id}?history_length=N`` is read as ``historyLength``
  (HTTP transcoding names a query parameter by the proto field or its JSON
  name; a2a-sdk's 0.3 REST handler reads only the JSON name).
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mesh.serving.middleware import replay_body, send_json

HEADER = b"a2a-version"
SUPPORTED = ("0.3", "1.0")
VERSION_NOT_SUPPORTED = -32009
METHOD_NOT_FOUND = -32601
# 0.3 name -> 1.0 name
V03_TO_V10 = {
    "message/send": "SendMessage", "message/stream": "SendStreamingMessage", "tasks/get": "GetTask",
    "tasks/list": "ListTasks", "tasks/cancel": "CancelTask", "tasks/resubscribe": "SubscribeToTask",
    "tasks/pushNotificationConfig/set": "CreateTaskPushNotificationConfig",
    "tasks/pushNotificationConfig/get": "GetTaskPushNotificationConfig",
    "tasks/pushNotificationConfig/list": "ListTaskPushNotificationConfigs",
    "tasks/pushNotificationConfig/delete": "DeleteTaskPushNotificationConfig",
    "agent/getAuthenticatedExtendedCard": "GetExtendedAgentCard",
}
LIST_TASKS_PATHS = ("/tasks", "/v1/tasks")


def major_minor(version: str) -> str:
    parts = version.strip().split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else version.strip()


class VersionNegotiation:
    """ASGI middleware: see the module docstring. ``rpc_path`` is the JSON-RPC endpoint."""

    def __init__(self, app: ASGIApp, rpc_path: str = "/") -> None:
        self.app = app
        self.rpc_path = rpc_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = list(scope["headers"])
        version = next((v.decode("latin-1") for k, v in headers if k == HEADER), None)
        if version is None:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            version = next((v for k, v in query.items() if k.lower() == "a2a-version"), None)
            if version is None and scope["method"] == "GET" and scope["path"].rstrip("/") in LIST_TASKS_PATHS:
                version = "1.0"
            if version is not None:
                headers.append((HEADER, version.encode("latin-1")))
                scope = {**scope, "headers": headers}
        is_rpc = scope["method"] == "POST" and scope["path"] == self.rpc_path
        if scope["method"] == "GET" and scope["path"].startswith("/v1/tasks/"):
            scope = _history_length_alias(scope)
        if not is_rpc:
            if version is not None and major_minor(version) not in SUPPORTED:
                await _rest_refusal(send, version)
                return
            await self.app(scope, receive, send)
            return
        if "mesh.rpc_request" in scope:  # parsed by BodyLimit, in front of this middleware
            request = scope["mesh.rpc_request"]
        else:
            body, more = await _read_body(receive)
            receive = replay_body(body, receive)
            if more:  # too large to look at here (the body limit answers it): pass it on untouched
                await self.app(scope, receive, send)
                return
            try:
                request = json.loads(body)
            except ValueError:
                request = None
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            await self.app(scope, receive, send)
            return
        method = request["method"]
        request_id = request.get("id")
        error = None
        if version is not None and major_minor(version) not in SUPPORTED:
            error = (VERSION_NOT_SUPPORTED, f"A2A version {version!r} is not supported; this agent speaks "
                     f"{' and '.join(SUPPORTED)} (send A2A-Version: 1.0, or no header for 0.3)")
        elif version is not None and major_minor(version) == "1.0" and method in V03_TO_V10:
            error = (METHOD_NOT_FOUND, f"{method!r} is an A2A 0.3 method; with A2A-Version: 1.0 call "
                     f"{V03_TO_V10[method]!r} (or send A2A-Version: 0.3 / no header to use 0.3 names)")
        if "id" not in request and request.get("jsonrpc") == "2.0" and error is None:
            await _run_notification(self.app, scope, receive, send, request)
            return
        if error is not None:  # a notification's error is answered too (see the module docstring)
            await send_json(send, 200, {"jsonrpc": "2.0", "id": request_id if isinstance(request_id, str | int) else None,
                                    "error": {"code": error[0], "message": error[1]}})
            return
        await self.app(scope, receive, send)


def _history_length_alias(scope: Scope) -> Scope:
    query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    names = {k for k, _ in query}
    if "history_length" not in names or "historyLength" in names:
        return scope
    query = [("historyLength" if k == "history_length" else k, v) for k, v in query]
    return {**scope, "query_string": urlencode(query).encode("latin-1")}


async def _read_body(receive: Receive, limit: int = 64 * 1024 * 1024) -> tuple[bytes, bool]:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body"):
            return b"".join(chunks), False
        if size > limit:
            return b"".join(chunks), True


async def _run_notification(app: ASGIApp, scope: Scope, receive: Receive, send: Send, request: dict) -> None:
    """Run a notification under an id of our own (a2a-sdk's 0.3 models require one); 204 unless it failed."""
    request_id = f"notification-{uuid.uuid4()}"
    body = json.dumps({**request, "id": request_id}).encode()
    await receive()  # the original body, replaced by the one with an id
    answer = _Answer()
    await app(scope, replay_body(body, receive), answer)
    error = answer.error()
    if error is not None:
        await send_json(send, 200, {"jsonrpc": "2.0", "id": None, "error": error})
        return
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


class _Answer:
    """An ASGI send that keeps (up to 1 MiB of) a JSON answer, to find a JSON-RPC error in it."""

    LIMIT = 1024 * 1024

    def __init__(self) -> None:
        self.json = False
        self.body = bytearray()

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.json = any(k.lower() == b"content-type" and b"json" in v for k, v in message.get("headers", []))
        elif message["type"] == "http.response.body" and self.json and len(self.body) < self.LIMIT:
            self.body += message.get("body", b"")

    def error(self) -> dict | None:
        if not self.json:
            return None  # a stream (SSE) that started: the notification was accepted
        try:
            document = json.loads(self.body)
        except ValueError:
            return None
        error = document.get("error") if isinstance(document, dict) else None
        return error if isinstance(error, dict) else None


async def _rest_refusal(send: Send, version: str) -> None:
    await send_json(send, 400, {"error": {
        "code": 400, "status": "FAILED_PRECONDITION",
        "message": f"A2A version {version!r} is not supported; this agent speaks {' and '.join(SUPPORTED)}",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "VERSION_NOT_SUPPORTED",
                     "domain": "a2a-protocol.org", "metadata": {}}],
    }})
