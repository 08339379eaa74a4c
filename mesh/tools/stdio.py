"""stdio for the mesh's MCP servers: the SDK's transport, plus an answer for every line it cannot read.

mcp's ``stdio_server`` hands a line it cannot parse (not JSON, JSON nested
deeper than pydantic's limit, not a JSON-RPC message) to the session as an
exception, and the session drops it: the client waits for an answer that never
comes. JSON-RPC 2.0 answers such a request: -32700 (parse error) or -32600
(invalid request), with the request's id when it can be read, else ``null``.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

if TYPE_CHECKING:
    from mcp.server import MCPServer

__all__ = ["error_reply", "run_stdio"]

# The id near the start of a line that json cannot read (too deep for it as well).
_LEADING_ID = re.compile(r'^\s*\{[^\[{]*?"id"\s*:\s*("(?:[^"\\]|\\.)*"|-?\d+)')


async def run_stdio(server: MCPServer) -> None:
    """Serve ``server`` over stdin/stdout until stdin closes, answering every line."""
    async with stdio_server() as (read_stream, write_stream):
        to_server, from_stdin = anyio.create_memory_object_stream[SessionMessage | Exception](0)

        async def answer_unreadable_lines() -> None:
            async with to_server:
                async for item in read_stream:
                    if isinstance(item, Exception):
                        await write_stream.send(SessionMessage(error_reply(item)))
                    else:
                        await to_server.send(item)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(answer_unreadable_lines)
            # MCPServer serves only stdio_server()'s own streams (run_stdio_async); its
            # low-level server serves any pair, which is what putting this filter between takes.
            lowlevel = server._lowlevel_server
            await lowlevel.run(from_stdin, write_stream, lowlevel.create_initialization_options())
            tasks.cancel_scope.cancel()


def error_reply(exc: Exception) -> mcp_types.JSONRPCError:
    """The JSON-RPC error for a line the transport could not read (``exc``: what it raised)."""
    given = _input_of(exc)
    if isinstance(given, str):  # the line itself: it is not JSON, or too deep to read
        code, request_id, what = mcp_types.PARSE_ERROR, _id_in_text(given), "Parse error"
    else:  # JSON, but not a JSON-RPC message
        code, request_id, what = mcp_types.INVALID_REQUEST, _id_in(given), "Invalid request"
    return mcp_types.JSONRPCError(jsonrpc="2.0", id=request_id,
                                  error=mcp_types.ErrorData(code=code, message=f"{what}: {_reason(exc)}"))


def _input_of(exc: Exception) -> Any:
    """What the transport tried to read: the raw line (str) when it was no JSON, else the parsed value."""
    if isinstance(exc, ValidationError):
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            raw = errors[0].get("input")
            return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        # the message as a whole is the input of some error (a missing field); a field's own error has its value
        return next((e["input"] for e in errors if isinstance(e.get("input"), dict)), errors[0].get("input"))
    return None


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "message"
        return f"{where}: {first.get('msg', 'invalid')}"
    return str(exc) or type(exc).__name__


def _id_in_text(line: str) -> int | str | None:
    try:
        return _id_in(json.loads(line))
    except (ValueError, RecursionError):
        match = _LEADING_ID.match(line)
        return _id_in({"id": json.loads(match.group(1))}) if match else None


def _id_in(document: Any) -> int | str | None:
    request_id = document.get("id") if isinstance(document, dict) else None
    return request_id if isinstance(request_id, str | int) and not isinstance(request_id, bool) else None
