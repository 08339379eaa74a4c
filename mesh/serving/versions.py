"""A2A version negotiation in front of a2a-sdk: the version a request asks for, and clear errors when it cannot be served.

- ``?A2A-Version=X`` (the spec allows the query parameter) counts as the
  ``A2A-Version`` header when the header is absent;
- a version other than 0.3 or 1.0 (any patch) is refused: JSON-RPC -32009
  VersionNotSupportedError, REST 400 ``VERSION_NOT_SUPPORTED``
  (a2a-sdk would accept ``1.1`` as 1.0);
- a 1.0 request naming a 0.3 JSON-RPC method (``message/send``) is -32601
  naming the 1.0 method to use (a2a-sdk answered -32603);
- a JSON-RPC notification (a request with no ``id``) is run but gets no reply
  body: HTTP 204 (JSON-RPC 2.0 section 4.1);
- ``GET /tasks`` (ListTasks, which 0.3 does not have) with no version is 1.0.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import parse_qsl

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
        if "id" not in request and request.get("jsonrpc") == "2.0":
            # A notification: no reply, whatever happens (errors included).
            if error is None:  # a2a-sdk's 0.3 models require an id: run it under one, and drop the answer
                body = json.dumps({**request, "id": f"notification-{uuid.uuid4()}"}).encode()
                await receive()  # the original body, replaced by the one with an id
                await self.app(scope, replay_body(body, receive), _discard)
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        if error is not None:
            await send_json(send, 200, {"jsonrpc": "2.0", "id": request_id if isinstance(request_id, str | int) else None,
                                    "error": {"code": error[0], "message": error[1]}})
            return
        await self.app(scope, receive, send)


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


async def _discard(message: Message) -> None:
    return None


async def _rest_refusal(send: Send, version: str) -> None:
    await send_json(send, 400, {"error": {
        "code": 400, "status": "FAILED_PRECONDITION",
        "message": f"A2A version {version!r} is not supported; this agent speaks {' and '.join(SUPPORTED)}",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "VERSION_NOT_SUPPORTED",
                     "domain": "a2a-protocol.org", "metadata": {}}],
    }})
