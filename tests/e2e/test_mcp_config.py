"""`mesh mcp-config`: entries for Claude Desktop, VS Code and Cursor, each launched exactly as the host would
(command, args, env; URL and headers) through initialize and tools/list, and --write merging into existing files."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from mesh.config import load_config
from tests.support.mcp_helpers import (
    http_client,
    stdio_client,
)
from tests.support.util import MESH, MeshUp, free_ports, mesh_env, write_mesh

TOKENS = {"CALC_TOKEN": "calc-secret-123", "ECHO_TOKEN": "echo-secret-456"}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hosts")
    (directory / "docs").mkdir()
    (directory / "docs" / "notes.md").write_text("notes\n")
    calc_port, echo_port = free_ports(2)
    config = write_mesh(directory, name="mcptest", tools={
        "calc": {"module": "mcp_tools.calculator", "transport": "http", "port": calc_port,
                 "auth": {"bearer_token": "${CALC_TOKEN}"}},
        "files": {"module": "mcp_tools.files", "settings": {"roots": {"docs": "docs"}}},
    }, agents={"echo": {"module": "agents.echo", "port": echo_port, "auth": {"bearer_token": "${ECHO_TOKEN}"}}})
    with MeshUp(config, env=TOKENS) as run:
        run.wait_ready()
        run.path = config
        run.loaded = load_config(config, environ=TOKENS)
        yield run
        assert run.stop() == 0


def mcp_config(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`mesh mcp-config ARGS`, run from another directory than the project's."""
    return subprocess.run([MESH, "mcp-config", *args], capture_output=True, text=True, timeout=60,
                          cwd="/", env=mesh_env(env))


def printed(mesh, client: str, *extra: str, env: dict | None = None) -> tuple[dict, str]:
    result = mcp_config("--client", client, "-c", str(mesh.path), *extra, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


async def launch(entry: dict, substitute=lambda value: value):
    """Open an MCP client the way a host does with ``entry``: spawn command/args/env, or connect to url with headers."""
    if "url" in entry:
        headers = {k: substitute(v) for k, v in entry.get("headers", {}).items()}
        return http_client(entry["url"], headers=headers)
    env = {k: substitute(v) for k, v in entry.get("env", {}).items()}
    return stdio_client(entry["command"], entry["args"], env=env, cwd="/")


async def initialize_and_list(entry: dict, substitute=lambda value: value) -> list[str]:
    async with await launch(entry, substitute) as client:
        return [tool.name for tool in (await client.list_tools()).tools]


async def test_claude_entries_launch_as_claude_desktop_launches_them(mesh):
    document, notes = printed(mesh, "claude")
    servers = document["mcpServers"]
    assert set(servers) == {"mcptest-calc", "mcptest-files", "mcptest-bridge"}
    for entry in servers.values():
        assert Path(entry["command"]).is_absolute() and entry["command"].endswith("/bin/python")
        assert entry["args"][entry["args"].index("--config") + 1] == str(mesh.path)
    # Claude Desktop has no HTTP entries: the HTTP tool is launched over stdio with its settings.
    assert servers["mcptest-calc"]["args"] == ["-m", "mcp_tools.calculator", "--config", str(mesh.path), "--name", "calc"]
    assert servers["mcptest-bridge"]["env"] == {}
    assert "mcptest-bridge needs ECHO_TOKEN (not written without --include-secrets)" in notes
    expected = {"mcptest-calc": ["calculate"], "mcptest-files": ["list_files", "read_file", "search_files"],
                "mcptest-bridge": ["echo_send", "echo_get_task", "echo_cancel_task"]}
    for name, entry in servers.items():
        assert await initialize_and_list(entry) == expected[name], name


async def test_claude_entries_with_secrets_reach_authenticated_agents(mesh):
    document, notes = printed(mesh, "claude", "--include-secrets", env=TOKENS)
    bridge = document["mcpServers"]["mcptest-bridge"]
    assert bridge["env"] == {"ECHO_TOKEN": TOKENS["ECHO_TOKEN"]} and not notes.strip().startswith("mesh mcp-config: mcptest")
    async with await launch(bridge) as client:
        reply = (await client.call_tool("echo_send", {"text": "via claude"})).structured_content
    assert reply["state"] == "completed" and reply["artifacts"][0]["text"] == "via claude"


async def test_vscode_entries_use_urls_and_prompted_inputs(mesh):
    document, _ = printed(mesh, "vscode")
    servers = document["servers"]
    calc = servers["mcptest-calc"]
    assert calc == {"type": "http", "url": f"http://127.0.0.1:{mesh.loaded.tools['calc'].port}/mcp",
                    "headers": {"Authorization": "Bearer ${input:mesh-calc_token}"}}
    assert servers["mcptest-files"]["type"] == "stdio"
    assert {i["id"] for i in document["inputs"]} == {"mesh-calc_token", "mesh-echo_token"}
    assert all(i["password"] for i in document["inputs"])
    answers = {"mesh-calc_token": TOKENS["CALC_TOKEN"], "mesh-echo_token": TOKENS["ECHO_TOKEN"]}
    fill = lambda value: re.sub(r"\$\{input:([^}]+)\}", lambda m: answers[m.group(1)], value)  # noqa: E731
    assert await initialize_and_list(calc, fill) == ["calculate"]
    assert await initialize_and_list(servers["mcptest-files"], fill) == ["list_files", "read_file", "search_files"]
    async with await launch(servers["mcptest-bridge"], fill) as client:
        reply = (await client.call_tool("echo_send", {"text": "via vscode"})).structured_content
    assert reply["artifacts"][0]["text"] == "via vscode"


async def test_cursor_entries_read_secrets_from_the_environment(mesh):
    document, _ = printed(mesh, "cursor")
    calc = document["mcpServers"]["mcptest-calc"]
    assert calc == {"url": f"http://127.0.0.1:{mesh.loaded.tools['calc'].port}/mcp",
                    "headers": {"Authorization": "Bearer ${env:CALC_TOKEN}"}}
    assert document["mcpServers"]["mcptest-bridge"]["env"] == {"ECHO_TOKEN": "${env:ECHO_TOKEN}"}
    fill = lambda value: re.sub(r"\$\{env:([^}]+)\}", lambda m: TOKENS[m.group(1)], value)  # noqa: E731
    for entry in document["mcpServers"].values():
        assert await initialize_and_list(entry, fill)
    stdio_only, _ = printed(mesh, "cursor", "--stdio-only")
    assert stdio_only["mcpServers"]["mcptest-calc"]["command"].endswith("python")
    assert await initialize_and_list(stdio_only["mcpServers"]["mcptest-calc"]) == ["calculate"]


def test_write_merges_into_existing_files_and_keeps_a_backup(mesh, tmp_path):
    claude = tmp_path / "claude.json"
    original = {"globalShortcut": "Ctrl+Space", "mcpServers": {"other": {"command": "other-server"},
                                                               "mcptest-calc": {"command": "stale"}}}
    claude.write_text(json.dumps(original))
    result = mcp_config("--client", "claude", "-c", str(mesh.path), "--write", "--path", str(claude))
    assert result.returncode == 0, result.stderr
    assert "wrote 3 servers (mcptest-calc, mcptest-files, mcptest-bridge)" in result.stdout
    merged = json.loads(claude.read_text())
    assert merged["globalShortcut"] == "Ctrl+Space" and merged["mcpServers"]["other"] == {"command": "other-server"}
    assert merged["mcpServers"]["mcptest-calc"]["args"][1] == "mcp_tools.calculator"
    assert json.loads((tmp_path / "claude.json.bak").read_text()) == original

    vscode = tmp_path / "mcp.json"
    vscode.write_text('{\n  // my servers\n  "servers": {"mine": {"type": "stdio", "command": "x",},},\n'
                      '  "inputs": [{"type": "promptString", "id": "keep-me"}],\n}\n')
    assert mcp_config("--client", "vscode", "-c", str(mesh.path), "--write", "--path", str(vscode)).returncode == 0
    merged = json.loads(vscode.read_text())
    assert set(merged["servers"]) == {"mine", "mcptest-calc", "mcptest-files", "mcptest-bridge"}
    assert {i["id"] for i in merged["inputs"]} == {"keep-me", "mesh-calc_token", "mesh-echo_token"}
    assert "// my servers" in (tmp_path / "mcp.json.bak").read_text()


def test_write_refuses_a_file_it_cannot_parse_and_leaves_it_alone(mesh, tmp_path):
    broken = tmp_path / "claude.json"
    broken.write_text('{"mcpServers": {"other": ')
    result = mcp_config("--client", "claude", "-c", str(mesh.path), "--write", "--path", str(broken))
    assert result.returncode == 1 and "is not valid JSON" in result.stderr and "nothing was written" in result.stderr
    assert broken.read_text() == '{"mcpServers": {"other": ' and not (tmp_path / "claude.json.bak").exists()


def test_write_goes_to_each_hosts_own_file(mesh, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CONFIG_HOME": ""}
    assert mcp_config("--client", "claude", "-c", str(mesh.path), "--write", env=env).returncode == 0
    assert "mcptest-files" in json.loads((home / ".config/Claude/claude_desktop_config.json").read_text())["mcpServers"]
    assert mcp_config("--client", "cursor", "-c", str(mesh.path), "--write", "--global", env=env).returncode == 0
    assert "mcptest-bridge" in json.loads((home / ".cursor/mcp.json").read_text())["mcpServers"]
    project = mesh.path.parent
    assert mcp_config("--client", "vscode", "-c", str(mesh.path), "--write", env=env).returncode == 0
    assert "mcptest-calc" in json.loads((project / ".vscode/mcp.json").read_text())["servers"]
    assert not os.path.exists(project / ".vscode/mcp.json.bak")
