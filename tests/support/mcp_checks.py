"""Third-party checks of the mesh's MCP servers: the MCP Inspector CLI (--strict) and the official conformance suite.

``scripts/mcp-checks`` installs Node 22 and the two npm packages, then runs
``python -m tests.support.mcp_checks --node NODE --inspector JS --conformance JS``.
This starts a fixture mesh (every tool module over streamable HTTP, and the
bridge over HTTP with an echo agent behind it) and, for each server:

- ``inspector --cli URL --method tools/list --strict``: lists the tools and
  fails (exit 6) on any error-severity tool-schema portability problem;
- ``inspector --cli URL --method tools/call ...`` for each tool, with good
  arguments, checking the result is not an error and holds the expected text;
- ``conformance server --url URL --expected-failures FILE`` where FILE lists
  the scenarios that do not apply to our servers (``NOT_APPLICABLE`` below);
  the suite fails on any other failing scenario, and on any listed scenario
  that passes (a stale entry).

It prints one line per check, writes a JSON summary (``--summary``) and exits
0 only when every check passed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.mcp_helpers import (
    PYTHON,
    TargetServer,
    make_database,
    make_documents,
)
from tests.support.util import ROOT, MeshUp, free_ports, write_mesh

# Scenarios of @modelcontextprotocol/conformance 0.1.16 that cannot apply to our servers, and why.
NOT_APPLICABLE = {
    "logging-set-level": "the servers do not declare the logging capability (they log to stderr, not to clients)",
    "tools-call-with-logging": "needs the suite's fixture tool test_tool_with_logging and the logging capability",
    "completion-complete": "the servers do not declare the completions capability",
    "tools-call-image": "needs the suite's fixture tool test_image_content; no tool of ours returns images",
    "tools-call-audio": "needs the suite's fixture tool test_audio_content; no tool of ours returns audio",
    "tools-call-embedded-resource": "needs the suite's fixture tool test_embedded_resource",
    "tools-call-mixed-content": "needs the suite's fixture tool test_multiple_content_types",
    "tools-call-with-progress": "needs the suite's fixture tool test_tool_with_progress",
    "tools-call-sampling": "needs the suite's fixture tool test_sampling; our tools never ask the client to sample",
    "tools-call-elicitation": "needs the suite's fixture tool test_elicitation; our tools never elicit",
    "elicitation-sep1034-defaults": "needs the suite's fixture tool test_client_elicitation_defaults; no elicitation",
    "elicitation-sep1330-enums": "needs the suite's fixture elicitation tool; no elicitation",
    "resources-read-text": "reads the suite's fixture resource test://static-text",
    "resources-read-binary": "reads the suite's fixture resource test://static-binary",
    "resources-templates-read": "reads the suite's fixture template test://template/{id}/data",
    "resources-subscribe": "the servers declare resources.subscribe = false",
    "resources-unsubscribe": "the servers declare resources.subscribe = false",
    "prompts-get-simple": "gets the suite's fixture prompt test_simple_prompt",
    "prompts-get-with-args": "gets the suite's fixture prompt test_prompt_with_arguments",
    "prompts-get-embedded-resource": "gets the suite's fixture prompt test_prompt_with_embedded_resource",
    "prompts-get-with-image": "gets the suite's fixture prompt test_prompt_with_image",
}


def tool_calls(target: TargetServer) -> dict[str, list[tuple[str, dict, str]]]:
    """Per server: (tool, arguments, text the result must contain)."""
    return {
        "calculator": [("calculate", {"expression": "(1/3 + 0.25) * 12"}, '"result": "7"')],
        "files": [("list_files", {}, "README.md"), ("read_file", {"path": "guide/deploy.md"}, "Deploying"),
                  ("search_files", {"query": "firewall"}, "deploy.md")],
        "sqlite": [("query", {"sql": "SELECT name FROM people ORDER BY born"}, "Ada Lovelace"),
                   ("describe_database", {}, "people")],
        "http_fetch": [("fetch", {"url": target.url("/hello")}, "hello from the target")],
        "search": [("search", {"query": "which pet hunts mice"}, "cats.txt"), ("index_status", {}, "all-MiniLM-L6-v2")],
        "bridge": [("echo_send", {"text": "hello from the inspector"}, "hello from the inspector")],
    }


class Checks:
    def __init__(self, node: str, inspector: str, conformance: str, workdir: Path) -> None:
        self.node, self.inspector, self.conformance = node, inspector, conformance
        self.workdir = workdir
        self.results: list[dict] = []
        # The Inspector keeps a catalog and client state under HOME: keep them in the work directory.
        self.env = {**os.environ, "HOME": str(workdir / "home"), "NO_COLOR": "1", "CI": "1"}
        (workdir / "home").mkdir(exist_ok=True)

    def record(self, server: str, check: str, ok: bool, detail: str) -> None:
        self.results.append({"server": server, "check": check, "ok": ok, "detail": detail})
        print(f"{'PASS' if ok else 'FAIL'}  {server:<11} {check:<34} {detail}", flush=True)

    def run(self, args: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([self.node, *args], capture_output=True, text=True, timeout=timeout,
                              cwd=self.workdir, env=self.env)

    def inspector_list(self, server: str, url: str) -> None:
        result = self.run([self.inspector, "--cli", url, "--method", "tools/list", "--strict"])
        try:
            names = [tool["name"] for tool in json.loads(result.stdout)["tools"]]
        except (ValueError, KeyError):
            names = []
        problems = result.stderr.strip().splitlines()
        ok = result.returncode == 0 and bool(names)
        detail = f"exit {result.returncode}, tools: {', '.join(names) or 'none'}"
        if problems and not ok:
            detail += " | " + " / ".join(problems[-5:])
        self.record(server, "inspector tools/list --strict", ok, detail)

    def inspector_call(self, server: str, url: str, tool: str, arguments: dict, expected: str) -> None:
        result = self.run([self.inspector, "--cli", url, "--method", "tools/call", "--tool-name", tool,
                           "--tool-args-json", json.dumps(arguments)])
        try:
            answer = json.loads(result.stdout)
            ok = result.returncode == 0 and answer.get("isError") is False and expected in json.dumps(answer)
            detail = f"isError={answer.get('isError')}"
        except ValueError:
            ok, detail = False, f"exit {result.returncode}: {(result.stderr or result.stdout).strip()[-300:]}"
        self.record(server, f"inspector tools/call {tool}", ok, detail)

    def conformance_suite(self, server: str, url: str, baseline: Path) -> None:
        output = self.workdir / "conformance" / server
        result = self.run([self.conformance, "server", "--url", url, "--expected-failures", str(baseline),
                           "-o", str(output)], timeout=600)
        passed, failed = [], []
        for checks_file in sorted(output.glob("*/checks.json")):
            scenario = re.sub(r"^server-(.+)-\d{4}-\d\d-\d\dT.*$", r"\1", checks_file.parent.name)
            statuses = {c["status"] for c in json.loads(checks_file.read_text())}
            (failed if statuses & {"FAILURE", "WARNING"} else passed).append(scenario)
        unexpected = sorted(set(failed) - set(NOT_APPLICABLE))
        stale = sorted(set(passed) & set(NOT_APPLICABLE))
        ok = result.returncode == 0 and not unexpected and not stale and bool(passed)
        detail = f"{len(passed)} passed ({', '.join(sorted(passed))}); {len(failed)} not applicable"
        if unexpected:
            detail += f"; UNEXPECTED FAILURES: {', '.join(unexpected)}"
        if stale:
            detail += f"; passing although listed as not applicable: {', '.join(stale)}"
        self.record(server, "conformance server", ok, detail)
        self.results[-1]["passed_scenarios"] = sorted(passed)
        self.results[-1]["not_applicable"] = sorted(failed)


def fixture_mesh(directory: Path, target: TargetServer) -> tuple[Path, dict[str, int]]:
    make_documents(directory)
    make_database(directory / "people.db")
    names = ["calculator", "files", "sqlite", "http_fetch", "search", "echo", "bridge"]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    settings = {
        "calculator": {},
        "files": {"roots": {"docs": "docs"}},
        "sqlite": {"databases": {"main": "people.db"}},
        "http_fetch": {"allowed_hosts": [f"127.0.0.1:{target.port}"], "allowed_networks": ["127.0.0.0/8"]},
        "search": {"documents": ["docs"]},
    }
    config = write_mesh(
        directory,
        tools={name: {"module": f"mcp_tools.{name}", "transport": "http", "port": ports[name], "settings": value}
               for name, value in settings.items()},
        agents={"echo": {"module": "agents.echo", "port": ports["echo"]}},
    )
    return config, ports


def wait_for_health(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the bridge exited with code {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered at {url} within {timeout:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mcp-checks", description=__doc__.splitlines()[0])
    parser.add_argument("--node", required=True)
    parser.add_argument("--inspector", required=True, help="the Inspector's launcher script (clients/launcher/build/index.js)")
    parser.add_argument("--conformance", required=True, help="the conformance suite's dist/index.js")
    parser.add_argument("--summary", help="write the results as JSON to this file")
    parser.add_argument("--only", help="comma-separated servers to check (default: all)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="mcp-checks-"))
    baseline = workdir / "not-applicable.yaml"
    baseline.write_text("server:\n" + "".join(f"  - {name}  # {reason}\n" for name, reason in NOT_APPLICABLE.items()))
    checks = Checks(args.node, args.inspector, args.conformance, workdir)
    with TargetServer() as target:
        config, ports = fixture_mesh(workdir, target)
        calls = tool_calls(target)
        wanted = set(args.only.split(",")) if args.only else set(calls)
        with MeshUp(config) as mesh:
            mesh.wait_ready()
            bridge = subprocess.Popen(
                [PYTHON, "-m", "mesh.tools.bridge", "-c", str(config), "--http", "--port", str(ports["bridge"])],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
            try:
                wait_for_health(f"http://127.0.0.1:{ports['bridge']}/health", bridge)
                for server in [s for s in calls if s in wanted]:
                    url = f"http://127.0.0.1:{ports[server]}/mcp"
                    checks.inspector_list(server, url)
                    for tool, arguments, expected in calls[server]:
                        checks.inspector_call(server, url, tool, arguments, expected)
                    checks.conformance_suite(server, url, baseline)
            finally:
                bridge.terminate()
                bridge.wait(30)
    failed = [r for r in checks.results if not r["ok"]]
    print(f"{len(checks.results) - len(failed)} passed, {len(failed)} failed")
    if args.summary:
        Path(args.summary).write_text(json.dumps({"results": checks.results, "not_applicable": NOT_APPLICABLE}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
