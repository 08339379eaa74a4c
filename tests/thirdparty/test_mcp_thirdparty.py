"""Third-party checks (slow, about a minute): the MCP Inspector CLI with --strict and the official MCP conformance
suite against every tool server and the bridge, through scripts/mcp-checks. Nothing is skipped: without the npm
registry the install step fails and so does this test, with the script's message."""

import json
import subprocess

from tests.support.mcp_checks import NOT_APPLICABLE
from tests.support.util import ROOT

SERVERS = {"calculator", "files", "sqlite", "http_fetch", "search", "bridge"}


def test_inspector_and_conformance_pass_on_every_server(tmp_path):
    summary = tmp_path / "summary.json"
    result = subprocess.run([str(ROOT / "scripts" / "mcp-checks"), "--summary", str(summary)],
                            capture_output=True, text=True, timeout=1200, cwd=ROOT)
    assert result.returncode == 0, f"scripts/mcp-checks failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    results = json.loads(summary.read_text())["results"]
    assert all(r["ok"] for r in results)
    by_server: dict[str, list[dict]] = {}
    for r in results:
        by_server.setdefault(r["server"], []).append(r)
    assert set(by_server) == SERVERS
    for server, checks in by_server.items():
        kinds = [c["check"] for c in checks]
        assert "inspector tools/list --strict" in kinds and "conformance server" in kinds, server
        assert any(k.startswith("inspector tools/call ") for k in kinds), server
        (conformance,) = [c for c in checks if c["check"] == "conformance server"]
        assert {"server-initialize", "ping", "tools-list", "dns-rebinding-protection",
                "server-sse-multiple-streams"} <= set(conformance["passed_scenarios"]), server
        assert set(conformance["not_applicable"]) == set(NOT_APPLICABLE), server
