"""Model providers: one chat round trip (streamed) to an OpenAI-compatible server or to Ollama, errors made actionable.

``Provider.chat(messages, tools, on_text)`` sends the conversation (OpenAI's
message format: ``role``, ``content``, ``tool_calls``, ``tool_call_id``) and
the tools (OpenAI function schemas), calls ``on_text`` with each streamed
piece of text, and returns a ``Reply``: the text, the tool calls (their
arguments as the model wrote them, parsed later) and the token usage and cost.

Every failure is a ``ModelError`` whose message names the provider, the
server, the model and what to do. 429 and 5xx answers are retried a bounded
number of times (waiting what ``Retry-After`` asks, up to ``max_retry_wait``);
every round trip has a deadline.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

TextSink = Callable[[str], Awaitable[None]]


class ModelError(Exception):
    """A model round trip failed; the message says what happened and what to do."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None,
                 retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.retryable = retryable


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: Any  # a JSON string (OpenAI) or a mapping (Ollama), as the model wrote it


@dataclass
class Reply:
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None


@dataclass
class ModelSettings:
    """What a provider needs (from an agent's ``llm:`` entry)."""

    provider: str
    model: str
    base_url: str
    api_key: str | None = None
    timeout_s: float = 120.0
    retries: int = 2
    max_retry_wait: float = 10.0
    temperature: float | None = None
    price_in: float | None = None   # per million prompt tokens, when the server reports no cost
    price_out: float | None = None  # per million completion tokens


_TOOLS_UNSUPPORTED = ("does not support tools", "tool choice requires", "tools are not supported",
                      "tool_choice", "tool calling is not supported", "--enable-auto-tool-choice")
_TOO_LONG = ("context length", "context_length", "maximum context", "too many tokens", "prompt is too long",
             "context window", "exceeds the context")


class Provider:
    name = "provider"

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings

    def where(self) -> str:
        return f"{self.name} at {self.settings.base_url}, model {self.settings.model}"

    async def chat(self, messages: list[dict], tools: list[dict], on_text: TextSink | None = None) -> Reply:
        """One round trip, retried on 429/5xx within bounds, never longer than the timeout per attempt."""
        attempt = 0
        while True:
            try:
                async with asyncio.timeout(self.settings.timeout_s):
                    reply = await self._chat(messages, tools, on_text)
                self._price(reply)
                return reply
            except TimeoutError:
                raise ModelError(f"{self.where()} did not answer within {self.settings.timeout_s:g}s: check that the "
                                 "server is up and not overloaded, or raise llm.timeout_s in mesh.yaml") from None
            except ModelError as exc:
                if not exc.retryable or attempt >= self.settings.retries:
                    raise
                wait = exc.retry_after if exc.retry_after is not None else min(0.5 * 2 ** attempt, 4.0) * (0.5 + random.random())
                if wait > self.settings.max_retry_wait:
                    raise ModelError(f"{exc} The server asks to retry after {wait:g}s, longer than this agent waits "
                                     f"({self.settings.max_retry_wait:g}s, llm.max_retry_wait).", status=exc.status) from None
                attempt += 1
                await asyncio.sleep(wait)

    def _price(self, reply: Reply) -> None:
        s = self.settings
        if reply.cost is None and (s.price_in is not None or s.price_out is not None):
            reply.cost = (reply.prompt_tokens * (s.price_in or 0.0) + reply.completion_tokens * (s.price_out or 0.0)) / 1e6

    async def _chat(self, messages: list[dict], tools: list[dict], on_text: TextSink | None) -> Reply:
        raise NotImplementedError

    async def probe(self, timeout: float = 2.0) -> str | None:
        """None when the server answers and has the model, else why not (for `mesh ls` and `mesh up`)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        return None

    def _status_error(self, status: int, detail: str, retry_after: float | None = None) -> ModelError:
        lowered = detail.lower()
        if status == 429:
            return ModelError(f"{self.where()} is rate limiting (429: {detail}); wait, or lower the load on it.",
                              status=status, retry_after=retry_after, retryable=True)
        if status >= 500:
            return ModelError(f"{self.where()} failed ({status}: {detail}); check the model server's log.",
                              status=status, retry_after=retry_after, retryable=True)
        if any(marker in lowered for marker in _TOOLS_UNSUPPORTED):
            return ModelError(f"{self.where()} does not support tool calling ({detail}); use a model with tool "
                              "support, enable tool calling on the server, or remove tools/agents from this agent.", status=status)
        if any(marker in lowered for marker in _TOO_LONG):
            return ModelError(f"{self.where()}: the conversation is longer than the model's context ({detail}); "
                              "start a new conversation (a new context), or use a model with a longer context.", status=status)
        if status == 404 or "not found" in lowered or "does not exist" in lowered:
            return ModelError(f"{self.where()}: model not found ({detail}); pull it (ollama pull "
                              f"{self.settings.model}) or name a model the server has in llm.model.", status=status)
        if status in (401, 403):
            return ModelError(f"{self.where()} refused the API key ({status}: {detail}); set llm.api_key to "
                              "${VAR} with a valid key.", status=status)
        return ModelError(f"{self.where()} refused the request ({status}: {detail}).", status=status)

    def _unreachable(self, exc: BaseException) -> ModelError:
        return ModelError(f"model not reachable: {self.where()} ({type(exc).__name__}); start the model server or "
                          "point llm.base_url at one (see README, 'LLM agents').")


def _retry_after(headers: Any) -> float | None:
    if not headers:
        return None
    value = headers.get("retry-after")
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


class OpenAIProvider(Provider):
    """Any OpenAI-compatible chat-completions server (vLLM, llama.cpp, LM Studio, TGI, hosted APIs), through ``openai``."""

    name = "openai"

    def __init__(self, settings: ModelSettings) -> None:
        super().__init__(settings)
        import httpx
        from openai import AsyncOpenAI

        self.client = AsyncOpenAI(base_url=settings.base_url, api_key=settings.api_key or "none",
                                  max_retries=0, timeout=httpx.Timeout(settings.timeout_s, connect=min(settings.timeout_s, 10.0)))

    async def _chat(self, messages: list[dict], tools: list[dict], on_text: TextSink | None) -> Reply:
        import openai
        try:  # the HTTP library under openai (3.x: httpx2, earlier: httpx); errors mid-stream are its own
            import httpx2
        except ImportError:
            import httpx as httpx2

        options: dict[str, Any] = {"model": self.settings.model, "messages": messages, "stream": True,
                                   "stream_options": {"include_usage": True}}
        if tools:
            options["tools"] = tools
        if self.settings.temperature is not None:
            options["temperature"] = self.settings.temperature
        reply = Reply()
        calls: dict[int, dict[str, Any]] = {}
        texts: list[str] = []
        try:
            # The client builds, sends and checks the request (status errors, auth); the stream's events are
            # read here as plain JSON: the client's typed chunk objects cost more CPU than the rest of a
            # round trip in the agent (scripts/bench/llm.py, README performance section).
            async with self.client.chat.completions.with_streaming_response.create(**options) as response:
                lines = response.iter_lines()
                async for data in _sse_data(lines):
                    chunk = json.loads(data)
                    if not isinstance(chunk, dict):
                        continue
                    if chunk.get("error"):
                        error = chunk["error"]
                        message = error.get("message") if isinstance(error, dict) else str(error)
                        raise ModelError(f"{self.where()} reported an error mid-answer: {message}; check the model "
                                         "server's log, or retry.")
                    usage = chunk.get("usage")
                    if isinstance(usage, dict):
                        reply.prompt_tokens = usage.get("prompt_tokens") or 0
                        reply.completion_tokens = usage.get("completion_tokens") or 0
                        cost = usage.get("cost")
                        if isinstance(cost, int | float) and not isinstance(cost, bool):
                            reply.cost = float(cost)
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("delta") or {}
                        content = delta.get("content")
                        if content:
                            texts.append(content)
                            if on_text is not None:
                                await on_text(content)
                        for call in delta.get("tool_calls") or ():
                            slot = calls.setdefault(call.get("index", 0), {"id": "", "name": "", "arguments": ""})
                            slot["id"] = call.get("id") or slot["id"]
                            function = call.get("function") or {}
                            slot["name"] += function.get("name") or ""
                            arguments = function.get("arguments") or ""
                            slot["arguments"] += arguments if isinstance(arguments, str) else json.dumps(arguments)
                await _drain(lines)
        except openai.APIStatusError as exc:
            raise self._status_error(exc.status_code, _openai_detail(exc), _retry_after(exc.response.headers)) from None
        except openai.APITimeoutError:
            raise TimeoutError from None
        except openai.APIConnectionError as exc:
            raise self._unreachable(exc.__cause__ or exc) from None
        except openai.APIError as exc:
            raise ModelError(f"{self.where()} reported an error mid-answer: {exc.message}; check the model server's log, "
                             "or retry.") from None
        except (json.JSONDecodeError, AttributeError, TypeError) as exc:
            raise ModelError(f"{self.where()} streamed something that is not an OpenAI chat completion chunk "
                             f"({type(exc).__name__}); is llm.base_url an OpenAI-compatible /v1 endpoint?") from None
        except httpx2.TimeoutException:
            raise TimeoutError from None
        except httpx2.HTTPError as exc:  # the connection broke mid-stream
            raise self._unreachable(exc) from None
        reply.text = "".join(texts)
        reply.tool_calls = [ToolCall(c["id"] or f"call_{i}", c["name"], c["arguments"]) for i, c in sorted(calls.items())]
        return reply

    async def probe(self, timeout: float = 2.0) -> str | None:
        import openai

        try:
            models = await self.client.with_options(timeout=timeout).models.list()
            names = [m.id async for m in models]
        except openai.APIStatusError as exc:
            if exc.status_code == 404:
                return None  # a server without /models: it answers, so let the first request tell
            return f"model server answered {exc.status_code}"
        except (openai.APIConnectionError, openai.APITimeoutError):
            return "model not reachable"
        if names and self.settings.model not in names:
            return f"model {self.settings.model} not on the server"
        return None

    async def aclose(self) -> None:
        await self.client.close()


async def _sse_data(lines: Any):
    """The data of each server-sent event (its ``data:`` lines joined), from a stream of lines, up to ``[DONE]``."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                if data == ["[DONE]"]:
                    return
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            data.append(line[6:] if line.startswith("data: ") else line[5:])
    if data and data != ["[DONE]"]:
        yield "\n".join(data)


async def _drain(lines: Any, within: float = 0.1) -> None:
    """Read what follows ``[DONE]`` (normally nothing), briefly: a response read to its end leaves its connection for
    the next round trip, where one closed early costs a new connection."""
    try:
        async with asyncio.timeout(within):
            async for _ in lines:
                pass
    except TimeoutError:
        pass


def _openai_detail(exc: Any) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if body.get("message"):
            return str(body["message"])
    return exc.message


class OllamaProvider(Provider):
    """Ollama's /api/chat through the ``ollama`` client (tools, streaming)."""

    name = "ollama"

    def __init__(self, settings: ModelSettings) -> None:
        super().__init__(settings)
        from ollama import AsyncClient

        self.client = AsyncClient(host=settings.base_url, timeout=settings.timeout_s)

    async def _chat(self, messages: list[dict], tools: list[dict], on_text: TextSink | None) -> Reply:
        from ollama import ResponseError

        options = {"temperature": self.settings.temperature} if self.settings.temperature is not None else None
        reply = Reply()
        texts: list[str] = []
        try:
            stream = await self.client.chat(self.settings.model, messages=[_to_ollama(m) for m in messages],
                                            tools=tools or None, stream=True, options=options)
            async for part in stream:
                message = part.message
                if message.content:
                    texts.append(message.content)
                    if on_text is not None:
                        await on_text(message.content)
                for call in message.tool_calls or ():
                    reply.tool_calls.append(ToolCall(f"call_{len(reply.tool_calls)}", call.function.name,
                                                     call.function.arguments))
                if part.done:
                    reply.prompt_tokens = part.prompt_eval_count or 0
                    reply.completion_tokens = part.eval_count or 0
        except ResponseError as exc:
            if exc.status_code < 0:  # an {"error": ...} line inside the stream: the model failed mid-answer
                raise ModelError(f"{self.where()} reported an error mid-answer: {exc.error}; check the model "
                                 "server's log, or retry.") from None
            raise self._status_error(exc.status_code, str(exc.error)) from None
        except ConnectionError as exc:
            raise self._unreachable(exc) from None
        except Exception as exc:
            import httpx

            if isinstance(exc, httpx.TimeoutException):
                raise TimeoutError from None
            if isinstance(exc, httpx.HTTPError):
                raise self._unreachable(exc) from None
            if isinstance(exc, json.JSONDecodeError | ValueError):
                raise ModelError(f"{self.where()} answered with something that is not Ollama's JSON; is "
                                 "llm.base_url an Ollama server?") from None
            raise
        reply.text = "".join(texts)
        return reply

    async def probe(self, timeout: float = 2.0) -> str | None:
        import httpx

        try:
            async with httpx.AsyncClient(timeout=timeout) as http:
                response = await http.post(self.settings.base_url.rstrip("/") + "/api/show",
                                           json={"model": self.settings.model})
        except httpx.HTTPError:
            return "model not reachable"
        if response.status_code == 404:
            return f"model {self.settings.model} not pulled"
        return None if response.status_code == 200 else f"model server answered {response.status_code}"


def _to_ollama(message: dict) -> dict:
    """An OpenAI-format message as Ollama takes it (tool call arguments as objects, tool results by tool name)."""
    if message.get("role") == "assistant" and message.get("tool_calls"):
        calls = []
        for call in message["tool_calls"]:
            arguments = call["function"]["arguments"]
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments or "{}")
                except json.JSONDecodeError:
                    arguments = {}
            calls.append({"function": {"name": call["function"]["name"], "arguments": arguments}})
        return {"role": "assistant", "content": message.get("content") or "", "tool_calls": calls}
    if message.get("role") == "tool":
        return {"role": "tool", "content": message.get("content", ""), "tool_name": message.get("name", "")}
    return {"role": message["role"], "content": message.get("content") or ""}


PROVIDERS: dict[str, type[Provider]] = {"openai": OpenAIProvider, "ollama": OllamaProvider}


def make_provider(settings: ModelSettings) -> Provider:
    return PROVIDERS[settings.provider](settings)


def settings_of(llm: Any) -> ModelSettings:
    """ModelSettings from an agent's ``llm:`` entry (mesh.config.llm.LLMConfig)."""
    return ModelSettings(provider=llm.provider, model=llm.model, base_url=llm.base_url, api_key=llm.api_key,
                         timeout_s=llm.timeout_s, retries=llm.retries, max_retry_wait=llm.max_retry_wait,
                         temperature=llm.temperature, price_in=llm.price_in, price_out=llm.price_out)


async def probe_model(llm: Any, timeout: float = 2.0) -> str | None:
    """None when the agent's model server answers and has its model, else a short reason ("model not reachable")."""
    provider = make_provider(settings_of(llm))
    try:
        return await provider.probe(timeout)
    finally:
        await provider.aclose()
