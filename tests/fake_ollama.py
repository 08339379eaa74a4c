"""A stand-in Ollama server on loopback, scripted per test: the one fake the guard tests allow.

No Ollama server can run here (no package ships it, no weights can be
downloaded), so this speaks Ollama's HTTP API the way the real server does for
the two calls the guard makes: ``POST /api/chat`` (non-streaming) and
``POST /api/show``, including the 404 body for a model that is not pulled.
Each chat request takes the next scripted reply: a text (the model's answer),
``NOT_FOUND``, ``HANG`` (never answers, to test timeouts) or ``GARBAGE``
(a body that is not Ollama's JSON).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timezone

from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from tests.util import free_port

NOT_FOUND = object()
HANG = object()
GARBAGE = object()


class FakeOllama:
    def __init__(self, models: tuple[str, ...] = ("llama-guard3:1b",)) -> None:
        self.models = set(models)
        self.replies: list = []
        self.requests: list[dict] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._release = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    def _not_found(self, model: str) -> JSONResponse:
        return JSONResponse({"error": f'model "{model}" not found, try pulling it first'}, status_code=404)

    async def chat(self, request: Request):
        body = await request.json()
        self.requests.append(body)
        reply = self.replies.pop(0) if self.replies else "safe"
        if reply is NOT_FOUND or body.get("model") not in self.models:
            return self._not_found(body.get("model", ""))
        if reply is HANG:
            await self._release.wait()
            return JSONResponse({"error": "released"}, status_code=500)
        if reply is GARBAGE:
            return PlainTextResponse("<html>502 Bad Gateway</html>", status_code=200)
        return JSONResponse({
            "model": body["model"],
            "created_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "message": {"role": "assistant", "content": reply},
            "done_reason": "stop",
            "done": True,
            "total_duration": 123_000_000,
            "load_duration": 1_000_000,
            "prompt_eval_count": 180,
            "prompt_eval_duration": 90_000_000,
            "eval_count": 3,
            "eval_duration": 30_000_000,
        })

    async def show(self, request: Request):
        body = await request.json()
        model = body.get("model") or body.get("name", "")
        if model not in self.models:
            return JSONResponse({"error": f"model '{model}' not found"}, status_code=404)
        return JSONResponse({
            "modelfile": f"FROM {model}", "parameters": "", "template": "{{ .Prompt }}",
            "details": {"format": "gguf", "family": "llama", "parameter_size": "1.5B", "quantization_level": "Q8_0"},
            "model_info": {}, "modified_at": "2026-01-01T00:00:00Z",
        })

    async def __aenter__(self) -> FakeOllama:
        app = Starlette(routes=[Route("/api/chat", self.chat, methods=["POST"]),
                                Route("/api/show", self.show, methods=["POST"])])
        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.accesslog = None
        config.graceful_timeout = 1

        async def run() -> None:
            await serve(app, config, shutdown_trigger=self._stop.wait)

        self._task = asyncio.create_task(run())
        while True:  # ready when it accepts a connection
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                break
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc) -> None:
        self._release.set()
        self._stop.set()
        if self._task is not None:
            await self._task
