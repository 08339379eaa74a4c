"""The two providers against the fake model servers: streaming, tool calls, usage, and each failure made actionable."""

import time

import pytest

from mesh.llm.providers import ModelError, ModelSettings, make_provider
from tests.support.fake_models import HANG, FakeOllama, FakeOpenAI, break_off, call, fail, garbled, say
from tests.support.util import free_port

TOOLS = [{"type": "function", "function": {"name": "calc__calculate", "description": "arithmetic",
                                           "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}}}}]


def provider(kind: str, url: str, **extra):
    return make_provider(ModelSettings(provider=kind, model=extra.pop("model", "fake-model"), base_url=url, **extra))


@pytest.fixture(params=["openai", "ollama"])
async def server(request):
    fake = FakeOpenAI() if request.param == "openai" else FakeOllama()
    async with fake:
        fake.kind = request.param
        yield fake


async def test_text_streams_in_pieces_with_usage(server):
    server.script = [say("The answer is 42.", chunks=4, prompt_tokens=30, completion_tokens=5)]
    model = provider(server.kind, server.url, api_key="k-123")
    pieces = []

    async def sink(piece):
        pieces.append(piece)

    reply = await model.chat([{"role": "user", "content": "what?"}], [], sink)
    assert reply.text == "The answer is 42." and "".join(pieces) == reply.text and len(pieces) >= 3
    assert (reply.prompt_tokens, reply.completion_tokens) == (30, 5)
    sent = server.requests[0]
    assert sent["model"] == "fake-model" and sent["messages"] == [{"role": "user", "content": "what?"}]
    assert sent["stream"] is True
    if server.kind == "openai":
        assert server.headers[0]["authorization"] == "Bearer k-123"
        assert sent["stream_options"] == {"include_usage": True}
    await model.aclose()


async def test_tool_calls_and_their_results_go_back_in_each_protocol(server):
    server.script = [call("calc__calculate", {"expression": "6*7"})]
    model = provider(server.kind, server.url)
    reply = await model.chat([{"role": "user", "content": "6*7?"}], TOOLS)
    assert [c.name for c in reply.tool_calls] == ["calc__calculate"]
    arguments = reply.tool_calls[0].arguments
    assert (arguments if isinstance(arguments, dict) else __import__("json").loads(arguments)) == {"expression": "6*7"}
    assert server.requests[0]["tools"][0]["function"]["name"] == "calc__calculate"
    history = [{"role": "user", "content": "6*7?"},
               {"role": "assistant", "content": None, "tool_calls": [{"id": reply.tool_calls[0].id, "type": "function",
                "function": {"name": "calc__calculate", "arguments": '{"expression": "6*7"}'}}]},
               {"role": "tool", "tool_call_id": reply.tool_calls[0].id, "name": "calc__calculate", "content": "42"}]
    await model.chat(history, TOOLS)
    fed_back = server.requests[1]["messages"]
    if server.kind == "openai":
        assert fed_back[2] == {"role": "tool", "tool_call_id": reply.tool_calls[0].id, "name": "calc__calculate", "content": "42"}
    else:  # Ollama takes arguments as objects and results by tool name
        assert fed_back[1]["tool_calls"][0]["function"] == {"name": "calc__calculate", "arguments": {"expression": "6*7"}}
        assert fed_back[2]["role"] == "tool" and fed_back[2]["tool_name"] == "calc__calculate" and fed_back[2]["content"] == "42"


async def test_model_not_found_says_which_and_what_to_do(server):
    model = provider(server.kind, server.url, model="no-such-model")
    with pytest.raises(ModelError) as raised:
        await model.chat([{"role": "user", "content": "hi"}], [])
    text = str(raised.value)
    assert "model not found" in text and "no-such-model" in text and server.kind in text and server.url in text
    assert await model.probe() is not None


async def test_no_tool_support(server):
    server.tools_supported = False
    model = provider(server.kind, server.url)
    with pytest.raises(ModelError, match="does not support tool calling.*use a model with tool support"):
        await model.chat([{"role": "user", "content": "hi"}], TOOLS)


async def test_context_too_long(server):
    server.script = [fail(400, "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens.",
                          code="context_length_exceeded")]
    with pytest.raises(ModelError, match="longer than the model's context.*start a new conversation"):
        await provider(server.kind, server.url).chat([{"role": "user", "content": "x"}], [])


async def test_429_is_retried_after_what_the_server_asks_then_answers(server):
    server.script = [fail(429, "Rate limit reached", retry_after=0.2), fail(503, "overloaded", retry_after=0), say("fine")]
    started = time.perf_counter()
    reply = await provider(server.kind, server.url, retries=2).chat([{"role": "user", "content": "x"}], [])
    assert reply.text == "fine" and len(server.requests) == 3
    if server.kind == "openai":  # Ollama's client does not expose the header; it backs off on its own
        assert time.perf_counter() - started >= 0.2


async def test_retries_are_bounded(server):
    server.script = [fail(503, "overloaded", retry_after=0)] * 5
    with pytest.raises(ModelError, match="failed \\(503"):
        await provider(server.kind, server.url, retries=1).chat([{"role": "user", "content": "x"}], [])
    assert len(server.requests) == 2


async def test_a_retry_after_longer_than_allowed_fails_at_once():
    async with FakeOpenAI() as server:
        server.script = [fail(429, "Rate limit reached", retry_after=120)]
        with pytest.raises(ModelError, match="retry after 120s"):
            await provider("openai", server.url, max_retry_wait=5).chat([{"role": "user", "content": "x"}], [])
        assert len(server.requests) == 1


async def test_a_hanging_model_times_out(server):
    server.script = [HANG]
    with pytest.raises(ModelError, match="did not answer within 0.5s"):
        await provider(server.kind, server.url, timeout_s=0.5, retries=0).chat([{"role": "user", "content": "x"}], [])


@pytest.mark.parametrize("kind", ["openai", "ollama"])
async def test_unreachable(kind):
    url = f"http://127.0.0.1:{free_port()}" + ("/v1" if kind == "openai" else "")
    model = provider(kind, url, retries=0)
    with pytest.raises(ModelError, match="model not reachable.*start the model server"):
        await model.chat([{"role": "user", "content": "x"}], [])
    assert await model.probe() == "model not reachable"


async def test_reported_cost_and_configured_prices():
    async with FakeOpenAI() as server:
        server.script = [say("a", cost=0.0012), say("b", prompt_tokens=1000, completion_tokens=500)]
        assert (await provider("openai", server.url).chat([{"role": "user", "content": "x"}], [])).cost == pytest.approx(0.0012)
        priced = provider("openai", server.url, price_in=2.0, price_out=10.0)
        assert (await priced.chat([{"role": "user", "content": "x"}], [])).cost == pytest.approx((1000 * 2 + 500 * 10) / 1e6)


async def test_an_error_inside_the_stream_fails_the_round_trip_naming_the_model(server):
    server.script = [break_off("The answer is", "CUDA out of memory")]
    pieces = []

    async def sink(piece):
        pieces.append(piece)

    with pytest.raises(ModelError) as raised:
        await provider(server.kind, server.url).chat([{"role": "user", "content": "x"}], [], sink)
    text = str(raised.value)
    assert "reported an error mid-answer: CUDA out of memory" in text and server.kind in text and "fake-model" in text
    assert "".join(pieces) == "The answer is"  # what streamed before the error did reach the sink
    assert len(server.requests) == 1  # not retried: part of the answer already went out


async def test_a_stream_that_is_not_chat_completion_chunks_fails_saying_so():
    async with FakeOpenAI() as server:
        server.script = [garbled("data: <html>Bad gateway</html>\n\n")]
        with pytest.raises(ModelError, match="not an OpenAI chat completion chunk.*OpenAI-compatible /v1 endpoint"):
            await provider("openai", server.url, retries=0).chat([{"role": "user", "content": "x"}], [])
