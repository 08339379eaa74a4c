"""Benchmark: message/send throughput and latency of a mesh agent (h2 and HTTP/1.1) against the helloworld reference.

The servers run the same echo executor in their own processes; the load comes
from this process over loopback, with the same raw JSON-RPC client for all.
The mesh agent runs as `mesh serve` does: hypercorn, SQLite task store, push
notifications, request log, body limit, and the mesh's OpenTelemetry tracing
(a span per request and per guard check, exported as JSON lines under the
state directory); a second mesh agent runs with OTEL_SDK_DISABLED=true. The
reference is a2a-samples' helloworld shape: bare a2a-sdk app, in-memory
store, uvicorn (HTTP/1.1 only), as installed (a2a-sdk's tracing API on, with
no exporter); a second reference has it off too, for a comparison of the rest
on equal terms. Rounds alternate between the servers and the best
round of each is kept, so drift hits all alike. Besides requests per second
(on 2 cores the client competes with the server for CPU) each server's CPU
time per request is read from /proc, which the client does not disturb.

    .venv/bin/python scripts/bench/bench_a2a.py            # about two minutes
    .venv/bin/python scripts/bench/bench_a2a.py --quick    # a smoke run
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))  # benchmarks import the tests' helpers (tests/support/util.py)

from tests.support.util import free_ports, wait_for_port  # noqa: E402


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


def start(command: list[str], port: int, log: Path, **env: str) -> subprocess.Popen:
    process = subprocess.Popen(command, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    wait_for_port(port)
    return process


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    requests = {1: 300, 8: 1200} if not args.quick else {1: 60, 8: 200}
    rounds = 1 if args.quick else args.rounds

    work = Path(tempfile.mkdtemp(prefix="mesh-bench-"))
    mesh_port, quiet_port, ref_port, bare_port = free_ports(4)
    for name, port in (("mesh", mesh_port), ("quiet", quiet_port)):
        (work / f"{name}.yaml").write_text(f"name: bench\nstate:\n  dir: {work / name}-state\nagents:\n"
                                           f"  echo:\n    module: agents.echo\n    port: {port}\n")
    mesh = start([str(ROOT / ".venv/bin/mesh"), "serve", "echo", "-c", str(work / "mesh.yaml")], mesh_port, work / "mesh.log")
    quiet = start([str(ROOT / ".venv/bin/mesh"), "serve", "echo", "-c", str(work / "quiet.yaml")], quiet_port,
                  work / "quiet.log", OTEL_SDK_DISABLED="true")
    reference = start([sys.executable, "-P", str(HERE / "reference_agent.py"), str(ref_port)], ref_port, work / "ref.log")
    untraced = start([sys.executable, "-P", str(HERE / "reference_agent.py"), str(bare_port)], bare_port, work / "bare.log",
                     OTEL_INSTRUMENTATION_A2A_SDK_ENABLED="false")
    targets = {
        "mesh h2c": (f"http://127.0.0.1:{mesh_port}/", True, mesh),
        "mesh http/1.1": (f"http://127.0.0.1:{mesh_port}/", False, mesh),
        "mesh h2c, no tracing": (f"http://127.0.0.1:{quiet_port}/", True, quiet),
        "mesh 1.1, no tracing": (f"http://127.0.0.1:{quiet_port}/", False, quiet),
        "reference": (f"http://127.0.0.1:{ref_port}/", False, reference),
        "reference, no tracing": (f"http://127.0.0.1:{bare_port}/", False, untraced),
    }
    try:
        results: dict[tuple[str, int], dict] = {}
        for concurrency, count in requests.items():
            for _ in range(rounds):
                for name, (url, http2, process) in targets.items():
                    before = cpu_seconds(process.pid)
                    figures = asyncio.run(load(url, http2, concurrency, count))
                    figures["cpu_ms"] = (cpu_seconds(process.pid) - before) / (count + 20) * 1000
                    best = results.setdefault((name, concurrency), figures)
                    best["rps"] = max(best["rps"], figures["rps"])
                    best["cpu_ms"] = min(best["cpu_ms"], figures["cpu_ms"])
                    if figures["rps"] >= best["rps"]:
                        best["p50_ms"], best["p99_ms"] = figures["p50_ms"], figures["p99_ms"]
    finally:
        for process in (mesh, quiet, reference, untraced):
            process.terminate()
            process.wait(15)
    logged = sum(1 for line in (work / "mesh.log").read_text().splitlines() if "mesh.access" in line)
    print(f"message/send, echo executor, best of {rounds} rounds; mesh request log lines written: {logged}")
    print(f"{'server':<22} {'conc':>4} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms/req':>10} "
          f"{'vs reference':>13} {'vs no tracing':>14}")
    for concurrency in requests:
        reference_rps = results[("reference", concurrency)]["rps"]
        bare_cpu = results[("reference, no tracing", concurrency)]["cpu_ms"]
        reference_cpu = results[("reference", concurrency)]["cpu_ms"]
        for name in targets:
            r = results[(name, concurrency)]
            print(f"{name:<22} {concurrency:>4} {r['rps']:>7.0f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} {r['cpu_ms']:>10.2f} "
                  f"{r['rps'] / reference_rps:>6.2f}x/{reference_cpu / r['cpu_ms']:.2f}x {bare_cpu / r['cpu_ms']:>13.2f}x")
    print("vs reference: requests/s ratio / CPU-per-request ratio (higher is better); "
          "vs no tracing: CPU-per-request ratio against the reference with tracing off")


if __name__ == "__main__":
    main()
