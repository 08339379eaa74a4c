"""Benchmark: tools/call per second and p50/p99 latency of our calculator beside a minimal MCPServer with one add tool,
over stdio and streamable HTTP, measured side by side in one run.

    .venv/bin/python scripts/bench/bench_mcp.py [--calls 3000] [--block 100] [--concurrency 1,8] [--transport stdio|http]

Servers (each its own process, started by this script):
  calculator  stdio   python -m mcp_tools.calculator
  reference   stdio   a minimal MCPServer with one `add` tool (this file, --serve-reference stdio)
  calculator  http    python -m mcp_tools.calculator --http: the mesh's stack (hypercorn, request log, body limit)
  reference   http    the same add server as the SDK serves it by default (MCPServer.run("streamable-http"), uvicorn)
  reference   http*   the add server on the mesh's stack (mesh.tools.http.serve_http), to separate stack from tool costs
The client is the `mcp` Client (initialize handshake), over HTTP/1.1 for HTTP. Every server's client stays open
and blocks of calls alternate between the servers, so load from other processes falls on all of them alike;
calls/s is the median over blocks, p50/p99 are over every call. The ratio compares each calculator row with the
reference row of the same transport (goal: >= 0.9).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # benchmarks import the tests' helpers (tests/support/util.py)


def reference_server():
    from mcp.server import MCPServer

    server = MCPServer("reference")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    return server


def serve_reference(transport: str, port: int | None) -> None:
    server = reference_server()
    if transport == "stdio":
        server.run()
    elif transport == "http":
        server.run("streamable-http", port=port)
    else:  # the mesh's own HTTP stack
        from mesh.logs import setup_logging
        from mesh.tools.http import serve_http

        setup_logging()
        asyncio.run(serve_http(server, what="reference", host="127.0.0.1", port=port))


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Target:
    def __init__(self, label: str, transport: str, command: list[str], tool: str, arguments: dict,
                 port: int | None = None) -> None:
        self.label, self.transport, self.command = label, transport, command
        self.tool, self.arguments, self.port = tool, arguments, port
        self.process: subprocess.Popen | None = None
        self.rates: dict[int, list[float]] = {}
        self.latencies: dict[int, list[float]] = {}

    def start(self) -> None:
        if self.port is None:
            return  # stdio servers are spawned by the client
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                                        env={**os.environ, "PYTHONPATH": str(ROOT), "MESH_LOG_LEVEL": "info"})
        import httpx

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/mcp", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.label} did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)

    def client(self):
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters

        if self.port is None:
            params = StdioServerParameters(command=self.command[0], args=self.command[1:],
                                           env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}, cwd=str(ROOT))
            return Client(params, mode="legacy")
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        http = httpx2.AsyncClient(http1=True, http2=False, timeout=httpx2.Timeout(30.0),
                                  limits=httpx2.Limits(max_connections=64, max_keepalive_connections=64))
        return _HttpClient(http, Client(streamable_http_client(f"http://127.0.0.1:{self.port}/mcp", http_client=http),
                                        mode="legacy"))


class _HttpClient:
    """A Client with the httpx2 client it uses, closed together."""

    def __init__(self, http, client) -> None:
        self.http, self.client = http, client

    async def __aenter__(self):
        await self.http.__aenter__()
        return await self.client.__aenter__()

    async def __aexit__(self, *exc):
        await self.client.__aexit__(*exc)
        await self.http.__aexit__(*exc)


async def measure(targets: list[Target], calls: int, block: int, concurrency: int) -> None:
    """All servers' clients open at once; blocks of ``block`` calls alternate between servers, so that a change in
    the machine's load (other processes on the same cores) falls on every server alike."""
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(t.client()) for t in targets]
        for target, client in zip(targets, clients, strict=True):
            for _ in range(50):  # warm up the connection, caches and the client's output-schema validator
                await client.call_tool(target.tool, target.arguments)
        for _ in range(max(calls // block, 1)):
            for target, client in zip(targets, clients, strict=True):
                latencies: list[float] = []

                async def worker(count: int, target=target, client=client, latencies=latencies) -> None:
                    for _ in range(count):
                        started = time.perf_counter()
                        result = await client.call_tool(target.tool, target.arguments)
                        latencies.append(time.perf_counter() - started)
                        if result.is_error:
                            raise RuntimeError(f"{target.label}: {result.content}")

                share = max(block // concurrency, 1)
                started = time.perf_counter()
                await asyncio.gather(*(worker(share) for _ in range(concurrency)))
                target.rates.setdefault(concurrency, []).append(share * concurrency / (time.perf_counter() - started))
                target.latencies.setdefault(concurrency, []).extend(latencies)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="tools/call per server and concurrency (default 3000)")
    parser.add_argument("--block", type=int, default=100, help="calls per block; blocks alternate between servers")
    parser.add_argument("--concurrency", default="1,8", help="calls in flight, comma-separated (default 1,8)")
    parser.add_argument("--transport", choices=["stdio", "http"], help="measure only this transport")
    parser.add_argument("--serve-reference", choices=["stdio", "http", "mesh-http"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_reference:
        serve_reference(args.serve_reference, args.port)
        return 0

    python = str(ROOT / ".venv" / "bin" / "python")
    me = str(Path(__file__).resolve())
    calc_args = {"expression": "12345 + 67890"}
    add_args = {"a": 12345, "b": 67890}
    ports = [free_port() for _ in range(3)]
    targets = [
        Target("calculator", "stdio", [python, "-m", "mcp_tools.calculator"], "calculate", calc_args),
        Target("reference", "stdio", [python, me, "--serve-reference", "stdio"], "add", add_args),
        Target("calculator", "http", [python, "-m", "mcp_tools.calculator", "--http", "--port", str(ports[0])],
               "calculate", calc_args, ports[0]),
        Target("reference", "http", [python, me, "--serve-reference", "http", "--port", str(ports[1])], "add", add_args, ports[1]),
        Target("reference", "http*", [python, me, "--serve-reference", "mesh-http", "--port", str(ports[2])],
               "add", add_args, ports[2]),
    ]
    if args.transport:
        targets = [t for t in targets if t.transport.rstrip("*") == args.transport]
    levels = [int(c) for c in args.concurrency.split(",")]
    print(f"tools/call, {args.calls} calls per server and concurrency in alternating blocks of {args.block}, "
          f"{os.cpu_count()} cores, Python {sys.version.split()[0]}", file=sys.stderr)
    for target in targets:
        target.start()
    try:
        for concurrency in levels:
            asyncio.run(measure(targets, args.calls, args.block, concurrency))
            print(f"{concurrency} in flight: done", file=sys.stderr)
    finally:
        for target in targets:
            target.stop()

    print(f"{'server':<11} {'transport':<9} {'in flight':>9} {'calls/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'ratio':>6}")
    for concurrency in levels:
        for target in targets:
            rate = statistics.median(target.rates[concurrency])
            ratio = ""
            if target.label == "calculator":
                reference = next(t for t in targets if t.label == "reference" and t.transport == target.transport)
                ratio = f"{rate / statistics.median(reference.rates[concurrency]):.2f}"
            lat = target.latencies[concurrency]
            print(f"{target.label:<11} {target.transport:<9} {concurrency:>9} {rate:>8.0f} "
                  f"{percentile(lat, 0.5) * 1000:>7.2f} {percentile(lat, 0.99) * 1000:>7.2f} {ratio:>6}")
    print("http* = the reference add server on the mesh's HTTP stack; ratio = calculator / reference, same transport")
    return 0


if __name__ == "__main__":
    sys.exit(main())
