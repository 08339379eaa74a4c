"""Helpers for the MCP tests: test meshes with tool servers, fixture documents and databases, a local HTTP target, MCP clients."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from tests.support.fake_ollama import FakeOllama
from tests.support.util import VENV_BIN

PYTHON = str(VENV_BIN / "python")


def make_documents(directory: Path) -> Path:
    """A docs root with text files, and the hostile things a files tool must refuse."""
    docs = directory / "docs"
    (docs / "guide").mkdir(parents=True)
    (docs / "README.md").write_text("# Demo docs\n\nThe mesh runs agents and tools.\nDeployment steps are in guide/deploy.md.\n")
    (docs / "guide" / "deploy.md").write_text(
        "# Deploying\n\nTo deploy the mesh, run mesh up on each host and open the firewall for the agent ports.\n\n"
        "Rollbacks restore the previous release from the artifact store.\n")
    (docs / "guide" / "cats.txt").write_text(
        "Cats are small carnivorous mammals kept as pets. They sleep most of the day and hunt mice at night.\n")
    (docs / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (docs / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (docs / "big.txt").write_text("x" * 70_000)
    (docs / ".env").write_text("SECRET_TOKEN=do-not-read\n")
    secret = directory / "outside-secret.txt"
    secret.write_text("the secret outside the root\n")
    os.symlink(secret, docs / "leak.txt")
    os.symlink(directory, docs / "up")
    os.symlink(docs / "README.md", docs / "readme-link.md")  # a link that stays inside: allowed
    os.symlink(docs / ".env", docs / "innocuous.txt")  # a link inside the root to a hidden file: refused
    (docs / ".private").mkdir()
    (docs / ".private" / "notes.txt").write_text("private notes: SECRET_TOKEN=do-not-read\n")
    os.symlink(docs / ".private", docs / "shared")  # a link to a hidden directory: refused
    os.mkfifo(docs / "pipe")
    return docs


def make_database(path: Path) -> Path:
    connection = sqlite3.connect(path)
    connection.executescript("""
        CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL, born INTEGER);
        INSERT INTO people (name, born) VALUES ('Ada Lovelace', 1815), ('Alan Turing', 1912), ('Grace Hopper', 1906);
        CREATE TABLE numbers (n INTEGER);
        WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000) INSERT INTO numbers SELECT x FROM c;
        CREATE VIEW elders AS SELECT name FROM people WHERE born < 1900;
    """)
    connection.commit()
    connection.close()
    return path


class TargetServer:
    """A local HTTP server for the fetch tool: pages, redirects, a big and a slow body; it records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8",
                      headers: dict | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                target.requests.append(("GET", self.path))
                routes = {
                    "/hello": lambda: self._send(200, "hello from the target\n".encode()),
                    "/json": lambda: self._send(200, b'{"answer": 42}', "application/json"),
                    "/image": lambda: self._send(200, b"\x89PNG\r\n\x1a\n" + bytes(200), "image/png"),
                    "/big": lambda: self._send(200, b"y" * 300_000),
                    "/redirect": lambda: self._send(302, b"", headers={"Location": "/hello"}),
                    "/redirect-loop": lambda: self._send(302, b"", headers={"Location": "/redirect-loop"}),
                    "/redirect-metadata": lambda: self._send(
                        302, b"", headers={"Location": "http://169.254.169.254/latest/meta-data/"}),
                    "/redirect-elsewhere": lambda: self._send(
                        302, b"", headers={"Location": f"http://127.0.0.1:{target.other_port}/hello"}),
                    "/redirect-file": lambda: self._send(302, b"", headers={"Location": "file:///etc/passwd"}),
                }
                if self.path == "/slow":
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    # The body never completes: the tool's time limit must end the fetch.
                    target.release.wait(30)
                    return
                routes.get(self.path, lambda: self._send(404, b"not found"))()

            def do_POST(self) -> None:  # noqa: N802
                target.requests.append(("POST", self.path))
                self._send(405, b"no")

        self.release = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.other_port = probe.getsockname()[1]  # nothing listens there
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> TargetServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@contextlib.asynccontextmanager
async def http_client(url: str, token: str | None = None, http2: bool = False,
                      headers: dict | None = None) -> AsyncIterator[Client]:
    """An initialized MCP client over streamable HTTP (HTTP/1.1 unless ``http2``)."""
    all_headers = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
    async with httpx2.AsyncClient(http1=not http2, http2=http2, headers=all_headers,
                                  timeout=httpx2.Timeout(30.0, read=60.0)) as http:
        async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
            yield client


@contextlib.asynccontextmanager
async def stdio_client(command: str, args: list[str], env: dict | None = None, cwd: str | None = None) -> AsyncIterator[Client]:
    """An initialized MCP client of a stdio server launched with exactly this command, arguments and environment."""
    params = StdioServerParameters(command=command, args=args, env=env, cwd=cwd)
    async with Client(params, mode="legacy") as client:
        yield client


def text_of(result: Any) -> str:
    return "\n".join(block.text for block in result.content if getattr(block, "type", None) == "text")


def sse_messages(body: str) -> list[dict]:
    """The JSON-RPC messages of an MCP SSE response body (or a plain JSON body)."""
    body = body.strip()
    if body.startswith("{"):
        return [json.loads(body)]
    messages = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(line[5:].lstrip() for line in block.splitlines() if line.startswith("data:"))
        if data.strip():
            messages.append(json.loads(data))
    return messages


def python_env() -> dict[str, str]:
    """The little environment an MCP host gives the servers it launches."""
    return {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}


def tool_calling_ollama(tool: str, arguments: dict) -> FakeOllama:
    """A stand-in for Ollama's /api/chat (no Ollama can run here): asks for one tool call, then answers with its result.

    It records every request, so a test can check the tools the agent offered
    and the tool result it sent back.
    """

    def respond(request: dict) -> dict:
        tool_results = [m for m in request["messages"] if m.get("role") == "tool"]
        if not tool_results:
            return {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": tool, "arguments": arguments}}]}
        return {"role": "assistant", "content": f"The tool said: {tool_results[-1]['content']}"}

    return FakeOllama(models=None, respond=respond)


def a2a_stream(url: str, text: str | None = None, data: Any = None, timeout: float = 60) -> list[dict]:
    """The events of an A2A 0.3 `message/stream` to ``url`` (curl over h2c), in order."""
    parts = []
    if text is not None:
        parts.append({"kind": "text", "text": text})
    if data is not None:
        parts.append({"kind": "data", "data": data})
    body = {"jsonrpc": "2.0", "id": 1, "method": "message/stream", "params": {"message": {
        "role": "user", "kind": "message", "messageId": f"m-{time.monotonic_ns()}", "parts": parts}}}
    result = subprocess.run(
        ["curl", "-sS", "--max-time", str(int(timeout)), "--http2-prior-knowledge", url + "/",
         "-H", "Content-Type: application/json", "--data-binary", json.dumps(body)],
        capture_output=True, text=True, timeout=timeout + 5)
    assert result.returncode == 0, result.stderr
    return [message["result"] for message in sse_messages(result.stdout)]
