"""Benchmark: message/send on one mesh agent with tracing and metrics on against both off, side by side.

Two `mesh serve echo` processes of the same mesh.yaml: "on" as `mesh up`
runs them (a server span per request, kept as JSON lines under the state dir
since no OTLP endpoint is set; Prometheus counters and histograms), "off" with
OTEL_SDK_DISABLED=true and MESH_METRICS=off. The load (bench_a2a's raw
JSON-RPC client, HTTP/1.1 and h2c) alternates between them round by round and
the best round of each is kept; each server's CPU time per request comes from
/proc. Goal: "on" serves at least 0.9x the requests per second of "off".

    .venv/bin/python scripts/bench/telemetry.py            # about a minute
    .venv/bin/python scripts/bench/telemetry.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_a2a import ROOT, cpu_seconds, free_ports, load, start  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    requests = {1: 300, 8: 1200} if not args.quick else {1: 60, 8: 200}
    rounds = 1 if args.quick else args.rounds

    work = Path(tempfile.mkdtemp(prefix="mesh-bench-telemetry-"))
    on_port, off_port = free_ports(2)
    processes = {}
    for label, port, env in (("on", on_port, {}), ("off", off_port, {"OTEL_SDK_DISABLED": "true", "MESH_METRICS": "off"})):
        config = work / f"{label}.yaml"
        config.write_text(f"name: bench\nstate:\n  dir: {work / label}\nagents:\n  echo:\n    module: agents.echo\n"
                          f"    port: {port}\n")
        processes[label] = (port, start([str(ROOT / ".venv/bin/mesh"), "serve", "echo", "-c", str(config)], port,
                                        work / f"{label}.log", **env))
    results: dict[tuple[str, str, int], dict] = {}
    try:
        for concurrency, count in requests.items():
            for _ in range(rounds):
                for transport, http2 in (("http/1.1", False), ("h2c", True)):
                    for label, (port, process) in processes.items():
                        before = cpu_seconds(process.pid)
                        figures = asyncio.run(load(f"http://127.0.0.1:{port}/", http2, concurrency, count))
                        figures["cpu_ms"] = (cpu_seconds(process.pid) - before) / (count + 20) * 1000
                        best = results.setdefault((label, transport, concurrency), figures)
                        if figures["rps"] >= best["rps"]:
                            best.update(rps=figures["rps"], p50_ms=figures["p50_ms"], p99_ms=figures["p99_ms"])
                        best["cpu_ms"] = min(best["cpu_ms"], figures["cpu_ms"])
    finally:
        for _, process in processes.values():
            process.terminate()
            process.wait(15)
    spans = sum(len(p.read_text().splitlines()) for p in (work / "on").glob("traces/*.jsonl"))
    print(f"message/send, echo executor, best of {rounds} rounds; spans written by 'on': {spans}")
    print(f"{'telemetry':<10} {'transport':<9} {'conc':>4} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms/req':>10} "
          f"{'on/off req/s':>12}")
    for concurrency in requests:
        for transport in ("http/1.1", "h2c"):
            off = results[("off", transport, concurrency)]
            for label in ("off", "on"):
                r = results[(label, transport, concurrency)]
                ratio = f"{r['rps'] / off['rps']:.2f}x" if label == "on" else ""
                print(f"{label:<10} {transport:<9} {concurrency:>4} {r['rps']:>7.0f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f} "
                      f"{r['cpu_ms']:>10.2f} {ratio:>12}")


if __name__ == "__main__":
    main()
