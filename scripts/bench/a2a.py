"""Benchmark: message/send throughput and latency of a mesh agent (h2 and HTTP/1.1) against the helloworld reference.

Both servers run the same echo executor in their own process; the load comes
from this process over loopback, with the same raw JSON-RPC client for both.
The mesh agent runs as `mesh serve` does: hypercorn, SQLite task store, request
log, body limit. The reference is a2a-samples' helloworld shape: bare a2a-sdk
app, in-memory store, uvicorn (HTTP/1.1 only). Rounds alternate between the
servers and the best round of each is kept, so drift hits both alike.

    .venv/bin/python scripts/bench/a2a.py            # about a minute
    .venv/bin/python scripts/bench/a2a.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from _paths import HERE, ROOT  # noqa: E402, I001 - first: keeps this folder (a2a.py!) off sys.path

from tests.util import free_ports, wait_for_port  # noqa: E402


def body(i: int) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": i, "method": "message/send", "params": {"message": {
        "role": "user", "messageId": f"bench-{i}", "kind": "message", "parts": [{"kind": "text", "text": f"hello {i}"}]}}}).encode()


async def load(url: str, http2: bool, concurrency: int, requests: int) -> dict:
    """Send ``requests`` message/send calls, ``concurrency`` at a time; check every answer."""
    latencies: list[float] = []
    counter = iter(range(requests))
    async with httpx.AsyncClient(http1=not http2, http2=http2, timeout=30,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        for i in range(20):  # warm the connection(s) and the server
            (await client.post(url, content=body(i), headers={"content-type": "application/json"})).raise_for_status()

        async def worker() -> None:
            for i in counter:
                started = time.perf_counter()
                response = await client.post(url, content=body(i), headers={"content-type": "application/json"})
                latencies.append(time.perf_counter() - started)
                answer = response.json()
                assert answer["result"]["artifacts"][0]["parts"][0]["text"] == f"hello {i}", answer

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    latencies.sort()
    return {"rps": requests / wall, "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))]}


def start(command: list[str], port: int, log: Path) -> subprocess.Popen:
    process = subprocess.Popen(command, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    wait_for_port(port)
    return process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    requests = {1: 300, 8: 1200} if not args.quick else {1: 60, 8: 200}
    rounds = 1 if args.quick else args.rounds

    work = Path(tempfile.mkdtemp(prefix="mesh-bench-"))
    mesh_port, ref_port = free_ports(2)
    (work / "mesh.yaml").write_text(
        f"name: bench\nstate:\n  dir: {work / 'state'}\nagents:\n  echo:\n    module: agents.echo\n    port: {mesh_port}\n")
    mesh = start([str(ROOT / ".venv/bin/mesh"), "serve", "echo", "-c", str(work / "mesh.yaml")], mesh_port, work / "mesh.log")
    reference = start([sys.executable, "-P", str(HERE / "reference_agent.py"), str(ref_port)], ref_port, work / "ref.log")
    targets = {
        "mesh h2c": (f"http://127.0.0.1:{mesh_port}/", True),
        "mesh http/1.1": (f"http://127.0.0.1:{mesh_port}/", False),
        "reference http/1.1": (f"http://127.0.0.1:{ref_port}/", False),
    }
    try:
        results: dict[tuple[str, int], dict] = {}
        for concurrency, count in requests.items():
            for _ in range(rounds):
                for name, (url, http2) in targets.items():
                    figures = asyncio.run(load(url, http2, concurrency, count))
                    best = results.get((name, concurrency))
                    if best is None or figures["rps"] > best["rps"]:
                        results[(name, concurrency)] = figures
    finally:
        for process in (mesh, reference):
            process.terminate()
            process.wait(15)
    logged = sum(1 for line in (work / "mesh.log").read_text().splitlines() if "mesh.access" in line)
    print(f"message/send, echo executor, best of {rounds} rounds; mesh request log lines written: {logged}")
    print(f"{'server':<20} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'vs reference':>13}")
    for concurrency in requests:
        reference_rps = results[("reference http/1.1", concurrency)]["rps"]
        for name in targets:
            r = results[(name, concurrency)]
            print(f"{name:<20} {concurrency:>4} {r['rps']:>8.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
                  f"{r['rps'] / reference_rps:>12.2f}x")


if __name__ == "__main__":
    main()
