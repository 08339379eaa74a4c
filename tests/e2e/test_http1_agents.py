"""The mesh's client reaches HTTP/1.1-only agents: an a2a-sdk agent on uvicorn and an @a2a-js/sdk agent on express.

`mesh send URL`, a graph vertex of kind ``a2a`` and the MCP bridge each reach both (the client speaks h2c
only to agents known to speak it); a graph run whose vertex failed ends `mesh run` non-zero with the error shown.
"""

import json
import shutil
import subprocess
import sys

import pytest

from tests.support.mcp_helpers import python_env, stdio_client
from tests.support.util import ROOT, MeshUp, free_ports, run_cli, wait_for_port, write_mesh


def _start(command: list[str], port: int, cwd=None) -> subprocess.Popen:
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, timeout=30)
    except AssertionError:
        process.kill()
        raise AssertionError(f"{command} did not listen: {process.stderr.read().decode()[-2000:]}") from None
    return process


@pytest.fixture(scope="module")
def http1_agents(tmp_path_factory):
    """The two foreign agents, each on HTTP/1.1 only; {name: url}."""
    installed = subprocess.run([str(ROOT / "scripts" / "a2a-js")], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr  # npm must be reachable: the test needs the JS SDK
    cache = installed.stdout.strip().splitlines()[-1]
    shutil.copy(ROOT / "tests" / "support" / "agents" / "js_echo.mjs", cache)  # ESM resolves packages beside the file
    uvicorn_port, js_port = free_ports(2)
    processes = [
        _start([sys.executable, "-m", "tests.support.agents.uvicorn_hello", str(uvicorn_port)], uvicorn_port, cwd=ROOT),
        _start(["node", "js_echo.mjs", str(js_port)], js_port, cwd=cache),
    ]
    yield {"uvicorn": f"http://127.0.0.1:{uvicorn_port}", "js": f"http://127.0.0.1:{js_port}"}
    for process in processes:
        process.terminate()
        process.wait(10)


EXPECTED = {"uvicorn": "hello world: {}", "js": "js echo: {}"}


@pytest.mark.parametrize("which", ["uvicorn", "js"])
def test_mesh_send_reaches_an_http1_agent(http1_agents, which):
    result = run_cli("send", http1_agents[which], "over http/1.1", "--json", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert EXPECTED[which].format("over http/1.1") in result.stdout


@pytest.fixture(scope="module")
def mesh(tmp_path_factory, http1_agents):
    directory = tmp_path_factory.mktemp("http1")
    (port,) = free_ports(1)
    closed = free_ports(1)[0]
    a2a = lambda vid, url, **extra: {"id": vid, "kind": "a2a", "url": url, **extra}  # noqa: E731
    graphs = {
        "interop": {"entry": "start", "outputs": ["uvicorn", "js"],
                    "vertices": [{"id": "start", "kind": "python", "function": "tests.support.agents.steps:start"},
                                 a2a("uvicorn", http1_agents["uvicorn"]), a2a("js", http1_agents["js"])],
                    "edges": ["start -> uvicorn", "start -> js"]},
        # h2c forced on an HTTP/1.1-only agent, and an agent that is not there: both calls fail
        "broken": {"entry": "start", "outputs": ["forced", "gone"],
                   "vertices": [{"id": "start", "kind": "python", "function": "tests.support.agents.steps:start"},
                                a2a("forced", http1_agents["uvicorn"], h2c=True), a2a("gone", f"http://127.0.0.1:{closed}")],
                   "edges": ["start -> forced", "start -> gone"]},
    }
    agents = {"coordinator": {"module": "agents.coordinator", "port": port},
              "hello": {"url": http1_agents["uvicorn"]}, "jsecho": {"url": http1_agents["js"]}}
    config = write_mesh(directory, agents, graphs=graphs)
    with MeshUp(config) as up:
        up.wait_ready()
        up.config = config
        yield up
        up.stop()


def _result(stdout: str) -> dict:
    for line in stdout.splitlines():
        update = json.loads(line).get("artifactUpdate")
        if update and update["artifact"]["name"] == "result":
            return next(p["data"] for p in update["artifact"]["parts"] if "data" in p)
    raise AssertionError(stdout)


def test_a2a_vertices_reach_http1_agents(mesh):
    result = run_cli("run", "interop", "go", "--json", "-c", str(mesh.config), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    data = _result(result.stdout)
    assert data["errors"] == []
    assert data["outputs"]["uvicorn"] == EXPECTED["uvicorn"].format("go")
    assert data["outputs"]["js"] == EXPECTED["js"].format("go")


def test_a_run_whose_vertices_failed_is_not_a_success(mesh):
    result = run_cli("run", "broken", "go", "-c", str(mesh.config), timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 errors" in result.stdout
    assert "error: forced:" in result.stderr and "error: gone:" in result.stderr
    assert "graph broken ended with 2 errors and no outputs; exit status 1" in result.stderr
    data = _result(run_cli("run", "broken", "go", "--json", "-c", str(mesh.config), timeout=120).stdout)
    assert {e["vertex"] for e in data["errors"]} == {"forced", "gone"} and data["outputs"] == {}


async def test_the_bridge_reaches_http1_agents(mesh):
    async with stdio_client(sys.executable, ["-m", "mesh.tools.bridge", "-c", str(mesh.config)], env=python_env()) as client:
        for tool, expected in (("hello_send", EXPECTED["uvicorn"]), ("jsecho_send", EXPECTED["js"])):
            sent = (await client.call_tool(tool, {"text": "via bridge"})).structured_content
            assert sent["state"] == "completed", sent
            assert sent["artifacts"][0]["text"] == expected.format("via bridge"), sent
