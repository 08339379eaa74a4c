"""Benchmark: message/send throughput of one agent with 1, 2 and 4 replicas, and graph runs with state in PostgreSQL vs SQLite.

    .venv/bin/python scripts/bench/replicas.py [--seconds 5] [--concurrency 16] [--database postgresql://...]

Without ``--database`` a throw-away PostgreSQL cluster is started on loopback
(Debian's postgresql package, as ./scripts/test installs it; as root it runs
as the ``postgres`` user).

1. Replicas: `mesh up` runs the echo agent (agents/echo.py) with ``replicas:
   N`` on PostgreSQL (N = 1 uses the plain database task store, N > 1 a2a-sdk's
   cluster store and event stream, as the mesh does); a client in this process
   spreads blocking ``message/send`` requests round-robin over the replicas'
   URLs (HTTP/2 h2c, ``--concurrency`` in flight) for ``--seconds``. Reported:
   requests/s, p50 latency, and CPU seconds per request of the agent processes
   (from /proc, summed over the replicas) and of the client.
2. Graph runs: the Pregel engine runs a fan-out graph (a source, 8 trivial
   Python vertices, a sink: 3 supersteps, 10 calls) back to back for
   ``--seconds`` with its checkpoints in SQLite (a file, WAL) and in
   PostgreSQL with leases (as coordinators on several hosts run), 4 runs at
   a time. Reported: runs/s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from mesh.pregel import Engine, GraphSpec, open_store  # noqa: E402
from tests.support.util import consecutive_ports  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def start_postgres(directory: Path) -> tuple[str, list[str]]:
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    initdb, pg_ctl = (str(bins[0] / n) if bins else shutil.which(n) for n in ("initdb", "pg_ctl"))
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if run_as:
        shutil.chown(directory, "postgres", "postgres")
    port = consecutive_ports(1)
    subprocess.run([*run_as, initdb, "-D", str(directory / "db"), "-A", "trust", "-U", "mesh", "--no-sync"],
                   check=True, capture_output=True)
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c max_connections=300"
    subprocess.run([*run_as, pg_ctl, "-D", str(directory / "db"), "-o", options, "-l", str(directory / "log"), "-w", "start"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return f"postgresql://mesh@127.0.0.1:{port}/postgres", [*run_as, pg_ctl, "-D", str(directory / "db"), "-m", "fast", "stop"]


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its descendants (from /proc)."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICKS
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += cpu_seconds(int(child))
    except (FileNotFoundError, ProcessLookupError):
        pass
    return total


def agent_pids(up: subprocess.Popen) -> list[int]:
    children = []
    for task in Path(f"/proc/{up.pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return children


async def drive(urls: list[str], seconds: float, concurrency: int) -> tuple[int, list[float], float]:
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    counter = iter(range(10**9))

    async def worker(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            n = next(counter)
            body = {"jsonrpc": "2.0", "id": n, "method": "message/send", "params": {"message": {
                "role": "user", "messageId": uuid.uuid4().hex, "parts": [{"kind": "text", "text": f"hello {n}"}]}}}
            started = time.perf_counter()
            answer = (await client.post(urls[n % len(urls)] + "/", json=body)).json()
            assert answer["result"]["status"]["state"] == "completed", answer
            latencies.append(time.perf_counter() - started)

    cpu = time.process_time()
    async with httpx.AsyncClient(http1=False, http2=True, timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return len(latencies), latencies, time.process_time() - cpu


def bench_replicas(database: str, count: int, seconds: float, concurrency: int, directory: Path) -> dict:
    port = consecutive_ports(count)
    config = directory / f"mesh-{count}.yaml"
    config.write_text(yaml.safe_dump({
        "name": f"bench{count}", "state": {"dir": str(directory / f"state{count}"), "database": database},
        "agents": {"echo": {"module": "agents.echo", "port": port, "replicas": count}},
    }))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "MESH_LOG_LEVEL": "warning"}
    up = subprocess.Popen([sys.executable, "-m", "mesh", "up", "-c", str(config)], cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    urls = [f"http://127.0.0.1:{port + i}" for i in range(count)]
    try:
        deadline = time.monotonic() + 90
        for url in urls:
            while True:
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} did not start")
                time.sleep(0.2)
        asyncio.run(drive(urls, 1.0, concurrency))  # warm up
        pids = agent_pids(up)
        before = sum(cpu_seconds(pid) for pid in pids)
        started = time.monotonic()
        done, latencies, client_cpu = asyncio.run(drive(urls, seconds, concurrency))
        elapsed = time.monotonic() - started
        agents_cpu = sum(cpu_seconds(pid) for pid in pids) - before
    finally:
        up.send_signal(2)
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            up.kill()
    return {"replicas": count, "requests_per_s": done / elapsed, "p50_ms": statistics.median(latencies) * 1000,
            "agent_cpu_ms_per_request": agents_cpu / done * 1000, "client_cpu_ms_per_request": client_cpu / done * 1000}


async def one(call):
    return 1


def fan_graph() -> GraphSpec:
    workers = [f"w{i}" for i in range(8)]
    vertex = lambda v: {"id": v, "kind": "python", "function": "scripts.bench.replicas:one"}  # noqa: E731
    return GraphSpec.model_validate({"entry": ["src"], "vertices": [vertex(v) for v in ("src", *workers, "sink")],
                                     "edges": [*[f"src -> {w}" for w in workers], *[f"{w} -> sink" for w in workers]]})


async def bench_graphs(location: str, seconds: float, lease: float | None) -> float:
    async with open_store(location, **({"max_size": 8} if location.startswith("postgresql") else {})) as store:
        engine = Engine(store, lease_seconds=lease)
        graph = engine.compile(fan_graph())
        await engine.run(graph, 0)  # warm up
        deadline = time.monotonic() + seconds
        runs = 0

        async def loop() -> None:
            nonlocal runs
            while time.monotonic() < deadline:
                result = await engine.run(graph, 0)
                assert result.status == "done" and result.outputs["sink"] == 1, result
                runs += 1

        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(4)))
        return runs / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--database")
    parser.add_argument("--replicas", default="1,2,4")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="mesh-bench-replicas-"))
    directory.chmod(0o755)
    stop = None
    database = args.database
    if database is None:
        (directory / "pg").mkdir()
        database, stop = start_postgres(directory / "pg")
    try:
        print(f"cores: {os.cpu_count()}, {args.seconds:g} s per figure, {args.concurrency} requests in flight")
        print("replicas  requests/s  p50 ms  agent CPU ms/request  client CPU ms/request")
        for count in map(int, args.replicas.split(",")):
            row = bench_replicas(database, count, args.seconds, args.concurrency, directory)
            print(f"{row['replicas']:>8}  {row['requests_per_s']:>10.0f}  {row['p50_ms']:>6.1f}  "
                  f"{row['agent_cpu_ms_per_request']:>20.2f}  {row['client_cpu_ms_per_request']:>21.2f}", flush=True)
        sqlite = asyncio.run(bench_graphs(str(directory / "graphs.sqlite"), args.seconds, None))
        postgres = asyncio.run(bench_graphs(database, args.seconds, 10.0))
        print(f"graph runs/s (fan-out of 8, 3 supersteps, 4 at a time): SQLite {sqlite:.0f}, PostgreSQL with leases {postgres:.0f}")
    finally:
        if stop is not None:
            subprocess.run(stop, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
