"""A stand-in Ollama server on loopback, scripted per test: the one fake the guard tests allow.

No Ollama server can run here (no package ships it, no weights can be
downloaded), so this speaks Ollama's HTTP API the way the real server does for
the two calls the guard makes: ``POST /api/chat`` (non-streaming) and
``POST /api/show``, including the 404 body for a model that is not pulled.
Each chat request takes the next scripted reply: a text (the model's answer),
``NOT_FOUND``, ``HANG`` (never answers, to test timeouts) or ``GARBAGE``
(a body that is not Ollama's JSON); with none left, ``respond(request)``
gives the assistant message (default: ``safe``). It runs in the test's event
loop (``async with``) or in a thread of its own (``with``), for tests whose
client is another process.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from tests.support.loopback_server import LoopbackServer

NOT_FOUND = object()
HANG = object()
GARBAGE = object()


class FakeOllama(LoopbackServer):
    def __init__(self, models: tuple[str, ...] | None = ("llama-guard3:1b",),
                 respond: Callable[[dict], dict] | None = None) -> None:
        self.models = None if models is None else set(models)  # None: every model is pulled
        self.respond = respond or (lambda request: {"role": "assistant", "content": "safe"})
        self.replies: list = []
        self.requests: list[dict] = []
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"

    def _not_found(self, model: str) -> JSONResponse:
        return JSONResponse({"error": f'model "{model}" not found, try pulling it first'}, status_code=404)

    async def chat(self, request: Request):
        body = await request.json()
        self.requests.append(body)
        reply = self.replies.pop(0) if self.replies else None
        if reply is NOT_FOUND or not self._pulled(body.get("model")):
            return self._not_found(body.get("model", ""))
        if reply is HANG:
            await self._release.wait()
            return JSONResponse({"error": "released"}, status_code=500)
        if reply is GARBAGE:
            return PlainTextResponse("<html>502 Bad Gateway</html>", status_code=200)
        return JSONResponse({
            "model": body["model"],
            "created_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "message": self.respond(body) if reply is None else {"role": "assistant", "content": reply},
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
        if not self._pulled(model):
            return JSONResponse({"error": f"model '{model}' not found"}, status_code=404)
        return JSONResponse({
            "modelfile": f"FROM {model}", "parameters": "", "template": "{{ .Prompt }}",
            "details": {"format": "gguf", "family": "llama", "parameter_size": "1.5B", "quantization_level": "Q8_0"},
            "model_info": {}, "modified_at": "2026-01-01T00:00:00Z",
        })

    def _pulled(self, model: str | None) -> bool:
        return self.models is None or model in self.models

    def routes(self) -> list[Route]:
        return [Route("/api/chat", self.chat, methods=["POST"]), Route("/api/show", self.show, methods=["POST"])]
