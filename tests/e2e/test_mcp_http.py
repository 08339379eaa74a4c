"""HTTP tool servers spoken to with curl over HTTP/1.1 and h2c (prior knowledge): initialize, the session header,
tools/list, tools/call, sessions ending; the bearer token; DNS-rebinding protection on loopback and wildcard binds."""

import json
import socket
import subprocess

import pytest

from mesh.config import load_config
from mesh.tools.http import transport_security
from mesh.tools.modules import tool_url
from tests.support.mcp_helpers import http_client, sse_messages, text_of
from tests.support.util import MeshUp, free_ports, write_mesh

H1, H2 = "--http1.1", "--http2-prior-knowledge"
BOTH = pytest.mark.parametrize("http", [H1, H2], ids=["http1.1", "h2c"])
TOKEN = "test-token-0123456789"
ACCEPT = "Accept: application/json, text/event-stream"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    directory = tmp_path_factory.mktemp("http")
    open_port, secured_port, wildcard_port = free_ports(3)
    config = write_mesh(directory, tools={
        "calc": {"module": "mcp_tools.calculator", "transport": "http", "port": open_port},
        "secured": {"module": "mcp_tools.calculator", "transport": "http", "port": secured_port,
                    "auth": {"bearer_token": "${MCP_TEST_TOKEN}"}},
        "everywhere": {"module": "mcp_tools.calculator", "transport": "http", "port": wildcard_port, "host": "0.0.0.0"},
    })
    with MeshUp(config, env={"MCP_TEST_TOKEN": TOKEN}) as run:
        run.wait_ready()
        run.loaded = load_config(config, environ={"MCP_TEST_TOKEN": TOKEN})
        run.ports = {"calc": open_port, "secured": secured_port, "everywhere": wildcard_port}
        yield run
        assert run.stop() == 0
        assert "killing it" not in run.output


def post(url: str, body: dict | str, http: str, *headers: str) -> tuple[int, dict[str, str], str, str]:
    """(status, headers, body, HTTP version) of a curl POST."""
    data = body if isinstance(body, str) else json.dumps(body)
    args = ["curl", "-sS", "--max-time", "20", http, "-D", "-", "-w", "\n%{http_version}", "-X", "POST", url,
            "-H", "Content-Type: application/json", "-H", ACCEPT, "--data-binary", data]
    for header in headers:
        args += ["-H", header]
    return _curl(args)


def _curl(args: list[str]) -> tuple[int, dict[str, str], str, str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    head, _, rest = result.stdout.replace("\r\n", "\n").partition("\n\n")
    body, _, version = rest.rpartition("\n")
    status_line, *header_lines = head.splitlines()
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body, version


def rpc(method: str, params: dict | None = None, id: int | None = 1) -> dict:
    message = {"jsonrpc": "2.0", "method": method, "params": params or {}}
    if id is not None:
        message["id"] = id
    return message


INITIALIZE = rpc("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                "clientInfo": {"name": "curl", "version": "1.0"}})


@BOTH
def test_a_whole_session_with_curl(mesh, http):
    url = tool_url(mesh.loaded, "calc")
    status, headers, body, version = post(url, INITIALIZE, http)
    assert version == ("2" if http == H2 else "1.1")
    assert status == 200 and headers["content-type"] == "application/json"  # one JSON body per answer
    session = headers["mcp-session-id"]
    assert len(session) >= 16
    (answer,) = sse_messages(body)
    assert answer["result"]["serverInfo"]["name"] == "calculator"
    assert answer["result"]["protocolVersion"] == "2025-11-25"
    assert "tools" in answer["result"]["capabilities"]

    in_session = (f"Mcp-Session-Id: {session}", "MCP-Protocol-Version: 2025-11-25")
    status, _, body, _ = post(url, rpc("notifications/initialized", id=None), http, *in_session)
    assert status == 202 and body == ""
    status, _, body, _ = post(url, rpc("tools/list", id=2), http, *in_session)
    (listing,) = sse_messages(body)
    assert status == 200 and [t["name"] for t in listing["result"]["tools"]] == ["calculate"]
    status, _, body, _ = post(url, rpc("tools/call", {"name": "calculate", "arguments": {"expression": "2^64"}}, id=3),
                              http, *in_session)
    (called,) = sse_messages(body)
    assert called["result"]["structuredContent"]["result"] == "18446744073709551616"
    assert called["result"]["isError"] is False
    status, _, body, _ = post(url, rpc("tools/call", {"name": "calculate", "arguments": {"expression": "1/0"}}, id=4),
                              http, *in_session)
    (failed,) = sse_messages(body)
    assert failed["result"]["isError"] is True and "division by zero" in failed["result"]["content"][0]["text"]

    ended = _curl(["curl", "-sS", http, "-D", "-", "-w", "\n%{http_version}", "-X", "DELETE", url, "-H", in_session[0]])
    assert ended[0] == 200
    status, _, body, _ = post(url, rpc("tools/list", id=5), http, *in_session)
    assert status == 404 and "Session not found" in body


@BOTH
def test_requests_outside_a_session_are_refused(mesh, http):
    url = tool_url(mesh.loaded, "calc")
    status, _, body, _ = post(url, rpc("tools/list"), http)
    assert status == 400
    status, _, body, _ = post(url, rpc("tools/list"), http, "Mcp-Session-Id: no-such-session")
    assert status == 404
    status, _, body, _ = post(url, "{not json", http)
    assert status == 400 and "Parse error" in body
    result = subprocess.run(["curl", "-sS", http, "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", url,
                             "-H", "Content-Type: text/plain", "-H", ACCEPT, "--data-binary", "x"],
                            capture_output=True, text=True, timeout=30)
    assert result.stdout == "415"


def test_each_request_is_logged_on_one_line(mesh):
    post(tool_url(mesh.loaded, "calc"), INITIALIZE, H2)
    line = mesh.wait_for('"POST /mcp HTTP/2" 200 initialize')
    assert line.split("|", 1)[0].strip() == "calc" and "ms in=" in line


@BOTH
def test_bearer_token_is_required_when_configured(mesh, http):
    url = tool_url(mesh.loaded, "secured")
    status, headers, body, _ = post(url, INITIALIZE, http)
    assert status == 401 and headers["www-authenticate"] == 'Bearer realm="tool secured"'
    assert "missing bearer token" in body
    status, headers, body, _ = post(url, INITIALIZE, http, "Authorization: Bearer wrong-token")
    assert status == 401 and 'error="invalid_token"' in headers["www-authenticate"]
    status, headers, body, _ = post(url, INITIALIZE, http, f"Authorization: Bearer {TOKEN}")
    assert status == 200 and headers["mcp-session-id"]
    health = subprocess.run(["curl", "-sS", http, url.replace("/mcp", "/health")], capture_output=True, text=True, timeout=30)
    assert json.loads(health.stdout) == {"status": "ok", "server": "calculator"}


async def test_python_client_with_token_over_http1_and_http2(mesh):
    url = tool_url(mesh.loaded, "secured")
    for http2 in (False, True):
        async with http_client(url, token=TOKEN, http2=http2) as client:
            result = await client.call_tool("calculate", {"expression": "3 * 14"})
            assert result.structured_content["result"] == "42"
    with pytest.raises(Exception):
        async with http_client(url, token="wrong") as client:
            await client.list_tools()


@BOTH
def test_dns_rebinding_is_refused_on_loopback(mesh, http):
    port = mesh.ports["calc"]
    url = tool_url(mesh.loaded, "calc")
    status, _, body, _ = post(url, INITIALIZE, http, f"Host: attacker.example:{port}")
    assert status == 421 and "Invalid Host header" in body
    status, _, body, _ = post(url, INITIALIZE, http, f"Origin: http://attacker.example:{port}")
    assert status == 403 and "Invalid Origin header" in body
    for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
        status, _, _, _ = post(url, INITIALIZE, http, f"Host: {host}", f"Origin: http://{host}")
        assert status == 200, host


def test_dns_rebinding_on_a_wildcard_bind_accepts_only_this_machines_names(mesh):
    port = mesh.ports["everywhere"]
    url = f"http://127.0.0.1:{port}/mcp"
    for name in (socket.gethostname(), "localhost", "127.0.0.1"):
        status, _, _, _ = post(url, INITIALIZE, H1, f"Host: {name}:{port}")
        assert status == 200, name
    status, _, body, _ = post(url, INITIALIZE, H1, f"Host: attacker.example:{port}")
    assert status == 421
    status, _, _, _ = post(url, INITIALIZE, H1, "Origin: https://attacker.example")
    assert status == 403


def test_transport_security_for_each_kind_of_bind():
    loopback = transport_security("127.0.0.1")
    assert loopback.enable_dns_rebinding_protection
    assert {"127.0.0.1:*", "localhost:*", "[::1]:*"} <= set(loopback.allowed_hosts)
    assert "http://localhost:*" in loopback.allowed_origins and not any("attacker" in h for h in loopback.allowed_hosts)
    specific = transport_security("10.1.2.3", public_hosts=["mcp.example.com"])
    assert set(specific.allowed_hosts) == {"10.1.2.3", "10.1.2.3:*", "mcp.example.com", "mcp.example.com:*"}
    assert "https://mcp.example.com" in specific.allowed_origins and "localhost:*" not in specific.allowed_hosts
    pinned = transport_security("10.1.2.3", public_hosts=["mcp.example.com:443"])
    assert "mcp.example.com:443" in pinned.allowed_hosts and "mcp.example.com:*" not in pinned.allowed_hosts
    ipv6 = transport_security("fd00::5")
    assert "[fd00::5]:*" in ipv6.allowed_hosts
    wildcard = transport_security("0.0.0.0")
    assert f"{socket.gethostname()}:*" in wildcard.allowed_hosts and "localhost:*" in wildcard.allowed_hosts


async def test_python_client_reads_tool_errors(mesh):
    async with http_client(tool_url(mesh.loaded, "calc")) as client:
        result = await client.call_tool("calculate", {"expression": "2^^2"})
        assert result.is_error and "unexpected '^'" in text_of(result)
