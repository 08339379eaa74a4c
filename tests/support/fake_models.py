"""Stand-in model servers on loopback for the LLM agent's tests: OpenAI chat completions and Ollama /api/chat, scripted per test.

No model can run here, so these speak the two protocols the way the real
servers do for the calls the agent makes, and record what they were sent:

- ``FakeOpenAI``: ``POST /v1/chat/completions`` (``stream: true`` as SSE
  ``chat.completion.chunk`` events with ``delta.content`` / ``delta.tool_calls``
  pieces, a usage chunk when ``stream_options.include_usage``, then
  ``data: [DONE]``; or one ``chat.completion``), ``GET /v1/models``; errors
  as OpenAI's ``{"error": {"message", "type", "code"}}`` bodies;
- ``FakeOllama``: ``POST /api/chat`` (streamed NDJSON, tool calls with
  arguments as objects, ``prompt_eval_count``/``eval_count`` on the last
  line), ``POST /api/show``; errors as ``{"error": "..."}``.

Each chat request takes the next scripted step (``say``, ``call``, ``fail``,
``HANG``); with none left the model says ``default`` (``ok``). A model that is not in
``models`` is answered as the real server answers an unknown model, and with
``tools_supported=False`` a request that offers tools is refused as vLLM and
Ollama refuse it. Both run in a thread of their own (``with``) for tests
whose client is another process, or in the test's loop (``async with``).
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.loopback_server import LoopbackServer

HANG = {"hang": True}


def say(text: str, chunks: int = 3, prompt_tokens: int = 11, completion_tokens: int | None = None,
        cost: float | None = None, delay: float = 0.0) -> dict:
    """The model answers ``text``, streamed in about ``chunks`` pieces, ``delay`` seconds apart."""
    return {"text": text, "chunks": chunks, "delay": delay, "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens if completion_tokens is not None else max(len(text.split()), 1),
            "cost": cost, "tool_calls": []}


def call(name: str, arguments: Any, *more: tuple[str, Any], prompt_tokens: int = 20, cost: float | None = None) -> dict:
    """The model asks for tool ``name`` (arguments: a dict, or a raw string sent as written); ``more`` calls alongside."""
    calls = [(name, arguments), *more]
    return {"text": "", "chunks": 1, "prompt_tokens": prompt_tokens, "completion_tokens": 7, "cost": cost,
            "tool_calls": [{"name": n, "arguments": a} for n, a in calls]}


def break_off(text: str, message: str) -> dict:
    """The model starts answering ``text``, then the server reports an error inside the stream (as vLLM and Ollama do)."""
    return {**say(text), "error_mid_stream": message}


def garbled(body: str) -> dict:
    """The server answers 200 with ``body`` as its event stream (a proxy's page, a server of another protocol)."""
    return {"garbled": body}


def fail(status: int, message: str, retry_after: float | None = None, code: str | None = None) -> dict:
    return {"fail": status, "message": message, "retry_after": retry_after, "code": code}


class _FakeServer(LoopbackServer):
    def __init__(self, models: tuple[str, ...] | None = ("fake-model",), tools_supported: bool = True) -> None:
        super().__init__()
        self.models = None if models is None else set(models)
        self.tools_supported = tools_supported
        self.script: list[dict] = []
        self.default = say("ok")  # the reply when the script is empty
        self.requests: list[dict] = []
        self.headers: list[dict] = []

    def next_step(self, body: dict) -> dict:
        self.requests.append(body)
        return self.script.pop(0) if self.script else self.default


def _pieces(text: str, chunks: int) -> list[str]:
    if not text:
        return []
    size = max(1, -(-len(text) // max(chunks, 1)))
    return [text[i:i + size] for i in range(0, len(text), size)]


class FakeOpenAI(_FakeServer):
    """An OpenAI-compatible chat-completions server (``url`` ends in /v1, as base_url does)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def routes(self) -> list[Route]:
        return [Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/models", self.list_models, methods=["GET"])]

    async def list_models(self, request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "test"} for m in sorted(self.models or ["any"])]})

    @staticmethod
    def _error(status: int, message: str, kind: str, code: str | None, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}},
                            status_code=status, headers=headers)

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.headers.append(dict(request.headers))
        step = self.next_step(body)
        if self.models is not None and body.get("model") not in self.models:
            return self._error(404, f"The model `{body.get('model')}` does not exist or you do not have access to it.",
                               "invalid_request_error", "model_not_found")
        if body.get("tools") and not self.tools_supported:
            return self._error(400, '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set',
                               "BadRequestError", None)
        if step is HANG:
            await self._release.wait()
            return self._error(500, "released", "server_error", None)
        if "garbled" in step:
            return Response(step["garbled"], media_type="text/event-stream")
        if "fail" in step:
            headers = {"retry-after": f"{step['retry_after']:g}"} if step["retry_after"] is not None else None
            kind = "invalid_request_error" if step["fail"] < 500 else "server_error"
            return self._error(step["fail"], step["message"], kind, step["code"], headers)
        created, ident, model = int(time.time()), f"chatcmpl-{len(self.requests)}", body["model"]
        calls = [{"index": i, "id": f"call_{len(self.requests)}_{i}", "type": "function",
                  "function": {"name": c["name"], "arguments": c["arguments"] if isinstance(c["arguments"], str)
                               else json.dumps(c["arguments"])}} for i, c in enumerate(step["tool_calls"])]
        usage = {"prompt_tokens": step["prompt_tokens"], "completion_tokens": step["completion_tokens"],
                 "total_tokens": step["prompt_tokens"] + step["completion_tokens"]}
        if step["cost"] is not None:
            usage["cost"] = step["cost"]  # as OpenRouter and LiteLLM report it
        finish = "tool_calls" if calls else "stop"
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": step["text"] or None}
            if calls:
                message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in calls]
            return JSONResponse({"id": ident, "object": "chat.completion", "created": created, "model": model,
                                 "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage})

        def chunk(delta: dict, finish_reason: str | None = None, choices: bool = True, **extra) -> str:
            payload = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}] if choices else [], **extra}
            return f"data: {json.dumps(payload)}\n\n"

        async def events():
            yield chunk({"role": "assistant", "content": ""})
            for piece in _pieces(step["text"], step["chunks"]):
                if step.get("delay"):
                    await asyncio.sleep(step["delay"])
                yield chunk({"content": piece})
            if step.get("error_mid_stream"):  # an error event, then the stream ends (OpenAI's and vLLM's shape)
                error = {"message": step["error_mid_stream"], "type": "server_error", "param": None, "code": None}
                yield f"data: {json.dumps({'error': error})}\n\n"
                return
            for c in calls:  # the name first, then the arguments in two pieces, as servers stream them
                arguments = c["function"]["arguments"]
                half = len(arguments) // 2
                yield chunk({"tool_calls": [{"index": c["index"], "id": c["id"], "type": "function",
                                             "function": {"name": c["function"]["name"], "arguments": ""}}]})
                yield chunk({"tool_calls": [{"index": c["index"], "function": {"arguments": arguments[:half]}}]})
                yield chunk({"tool_calls": [{"index": c["index"], "function": {"arguments": arguments[half:]}}]})
            yield chunk({}, finish)
            if (body.get("stream_options") or {}).get("include_usage"):
                yield chunk({}, choices=False, usage=usage)
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


class FakeOllama(_FakeServer):
    """Ollama's chat API with tools and streaming (``url`` is the host, as Ollama's clients take it)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self) -> list[Route]:
        return [Route("/api/chat", self.chat, methods=["POST"]), Route("/api/show", self.show, methods=["POST"])]

    async def show(self, request: Request) -> JSONResponse:
        body = await request.json()
        model = body.get("model") or body.get("name", "")
        if self.models is not None and model not in self.models:
            return JSONResponse({"error": f"model '{model}' not found"}, status_code=404)
        return JSONResponse({"modelfile": f"FROM {model}", "parameters": "", "template": "",
                             "details": {"format": "gguf", "family": "qwen3"}, "model_info": {},
                             "capabilities": ["completion", "tools"] if self.tools_supported else ["completion"]})

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.headers.append(dict(request.headers))
        step = self.next_step(body)
        model = body.get("model", "")
        if self.models is not None and model not in self.models:
            return JSONResponse({"error": f'model "{model}" not found, try pulling it first'}, status_code=404)
        if body.get("tools") and not self.tools_supported:
            return JSONResponse({"error": f"registry.ollama.ai/library/{model} does not support tools"}, status_code=400)
        if step is HANG:
            await self._release.wait()
            return JSONResponse({"error": "released"}, status_code=500)
        if "fail" in step:
            headers = {"retry-after": f"{step['retry_after']:g}"} if step["retry_after"] is not None else None
            return JSONResponse({"error": step["message"]}, status_code=step["fail"], headers=headers)
        now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        calls = [{"function": {"name": c["name"], "arguments": c["arguments"]}} for c in step["tool_calls"]]
        final = {"model": model, "created_at": now, "message": {"role": "assistant", "content": ""}, "done": True,
                 "done_reason": "stop", "total_duration": 1_000_000, "load_duration": 1000,
                 "prompt_eval_count": step["prompt_tokens"], "prompt_eval_duration": 1000,
                 "eval_count": step["completion_tokens"], "eval_duration": 1000}
        if body.get("stream") is False:
            final["message"] = {"role": "assistant", "content": step["text"], **({"tool_calls": calls} if calls else {})}
            return JSONResponse(final)

        async def lines():
            for piece in _pieces(step["text"], step["chunks"]):
                if step.get("delay"):
                    await asyncio.sleep(step["delay"])
                yield json.dumps({"model": model, "created_at": now, "message": {"role": "assistant", "content": piece},
                                  "done": False}) + "\n"
            if step.get("error_mid_stream"):  # Ollama reports a failure mid-stream as one {"error": ...} line
                yield json.dumps({"error": step["error_mid_stream"]}) + "\n"
                return
            if calls:
                yield json.dumps({"model": model, "created_at": now, "message": {
                    "role": "assistant", "content": "", "tool_calls": calls}, "done": False}) + "\n"
            yield json.dumps(final) + "\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")


if __name__ == "__main__":  # a server of its own, for benchmarks: python -m tests.support.fake_models openai|ollama WORDS
    import sys

    server = FakeOpenAI() if sys.argv[1] == "openai" else FakeOllama()
    words = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    server.default = say(" ".join(f"w{i}" for i in range(words)), chunks=words, prompt_tokens=50, completion_tokens=words)
    with server:
        print(server.url, flush=True)
        sys.stdin.read()  # until the parent closes stdin
