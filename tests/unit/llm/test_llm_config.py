"""The llm: entries of mesh.yaml: what is accepted, and each mistake named with its line."""

import pytest

from mesh.config import ConfigError, load_config

BASE = """\
name: t
tools:
  calc: {module: mcp_tools.calculator}
agents:
  echo: {module: agents.echo, port: 18101}
"""


def load(tmp_path, text, env=None):
    path = tmp_path / "mesh.yaml"
    path.write_text(BASE + text)
    return load_config(path, env or {})


def test_an_llm_agent_is_local_and_served_by_the_mesh(tmp_path):
    config = load(tmp_path, "  writer:\n    port: 18105\n    llm: {provider: openai, model: m, api_key: '${KEY}'}\n"
                            "    tools: [calc]\n    agents: [echo]\n", {"KEY": "sk-1"})
    writer = config.agent("writer")
    assert writer.is_local and writer.module_path == "mesh.llm.agent" and "writer" in config.local_agents()
    assert writer.llm.base_url == "http://127.0.0.1:8000/v1" and writer.llm.api_key == "sk-1" and writer.max_steps == 8


@pytest.mark.parametrize("entry, expected", [
    ("{port: 18105, module: agents.echo, llm: {provider: openai, model: m}}", "exactly one of 'module'"),
    ("{llm: {provider: openai, model: m}}", "needs a 'port'"),
    ("{port: 18105, llm: {provider: vllm, model: m}}", "provider"),
    ("{port: 18105, llm: {provider: openai, model: m}, tools: [nope]}", "no tool named 'nope'"),
    ("{port: 18105, llm: {provider: openai, model: m}, agents: [writer]}", "no other agent named 'writer'"),
    ("{port: 18105, llm: {provider: openai, model: m, api_key: sk-literal}}", "secrets must come from the environment"),
    ("{port: 18105, module: agents.echo, instructions: hi}", "'instructions' is for LLM agents"),
])
def test_mistakes(tmp_path, entry, expected):
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, f"  writer: {entry}\n")
    assert expected in str(raised.value) and ":6:" in str(raised.value)
