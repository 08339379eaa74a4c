"""Integers stay integers: JSON answers have integral floats written back as integers (42.0 -> 42).

a2a-sdk carries data parts as protobuf ``Struct``/``Value``, where every
number is a double, so ``42`` sent comes back ``42.0``. JSON has one number
type, so an integral double is written as an integer on the way out, in JSON
bodies and in each server-sent event. Integers past 2^53 cannot be held
exactly by a double: they come back as the nearest double, written as a
float (9007199254740993 -> 9007199254740992.0); send such values as strings.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mesh.client.parts import plain_numbers

_JSON = (b"application/json", b"application/a2a+json")


def _rewrite(text: bytes) -> bytes:
    if b".0" not in text and b"e" not in text and b"E" not in text:
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return json.dumps(plain_numbers(value), ensure_ascii=False, separators=(",", ":")).encode()


def _rewrite_events(block: bytes) -> bytes:
    lines = block.split(b"\n")
    return b"\n".join(_data_line(line) if line.startswith(b"data: ") else line for line in lines)


def _data_line(line: bytes) -> bytes:
    end = b"\r" if line.endswith(b"\r") else b""
    return b"data: " + _rewrite(line[6:len(line) - len(end)]) + end


class IntegralNumbers:
    """ASGI middleware: rewrites JSON and SSE responses (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        mode = None
        start: Message | None = None
        buffered: list[bytes] = []

        async def rewriting_send(message: Message) -> None:
            nonlocal mode, start
            if message["type"] == "http.response.start":
                content_type = dict(message.get("headers", [])).get(b"content-type", b"").split(b";")[0].strip()
                if content_type in _JSON:
                    mode, start = "json", message
                    return
                if content_type == b"text/event-stream":
                    mode = "sse"
                await send(message)
                return
            if message["type"] != "http.response.body" or mode is None:
                await send(message)
                return
            buffered.append(message.get("body", b""))
            more = message.get("more_body", False)
            if mode == "json":
                if more:
                    return
                body = _rewrite(b"".join(buffered))
                headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
                headers.append((b"content-length", str(len(body)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            data = b"".join(buffered)
            cut = max(data.rfind(b"\n\n") + 2, data.rfind(b"\r\n\r\n") + 4, 0) if more else len(data)  # whole events
            buffered[:] = [data[cut:]] if cut < len(data) else []
            ready = data[:cut] if cut > 0 else b""
            if ready or not more:
                await send({"type": "http.response.body", "body": _rewrite_events(ready), "more_body": more})

        await self.app(scope, receive, rewriting_send)
