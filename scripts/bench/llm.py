"""Benchmark: what the declarative LLM agent adds per model round trip, against calling the model server directly.

A fake OpenAI-compatible server (tests/support/fake_models.py, in a process
of its own) streams a 20-token answer. Side by side, sequentially, from this
process:

- direct: the `openai` client streams one chat completion from it;
- echo: an A2A message/send to the mesh's echo agent (the A2A path alone);
- llm: the same message/send to an LLM agent (llm: provider openai) that
  makes one streamed model round trip and answers.

What the LLM agent adds per model round trip = llm - echo - direct
(medians); the guard is off, as the goal excludes it. Rounds alternate
between the three so drift hits all alike. On a loaded machine wall time
mostly measures the scheduler (three processes share the cores), so CPU time
per request is reported too, read from /proc for the agent processes and from
this process for the direct client: CPU added = llm agent - echo agent -
direct client.

    .venv/bin/python scripts/bench/llm.py             # about 30 s
    .venv/bin/python scripts/bench/llm.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # benchmarks import the tests' helpers


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serving_pid(port: int) -> int:
    """The pid of the `mesh serve` process listening on ``port`` (found by its listening socket's inode)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    inodes.add(fields[9])
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}").removeprefix("socket:[").rstrip("]") in inodes:
                    return int(pid)
        except OSError:
            continue
    raise RuntimeError(f"no process listens on port {port}")


async def measure(model_url: str, ports: list[int], rounds: int, per_round: int) -> dict[str, list[float]]:
    import httpx
    from openai import AsyncOpenAI

    timings: dict[str, list[float]] = {"direct": [], "echo": [], "llm": []}
    cpu = {"direct": 0.0, "echo": 0.0, "llm": 0.0}
    pids = {"echo": serving_pid(ports[0]), "llm": serving_pid(ports[1])}
    direct = AsyncOpenAI(base_url=model_url, api_key="none", max_retries=0)

    async def call_direct() -> None:
        stream = await direct.chat.completions.create(model="fake-model", stream=True, stream_options={"include_usage": True},
                                                      messages=[{"role": "user", "content": "hello"}])
        async for _ in stream:
            pass

    async with httpx.AsyncClient(http1=False, http2=True, timeout=30) as http:
        counter = 0

        async def call_agent(port: int) -> None:
            nonlocal counter
            counter += 1
            body = {"jsonrpc": "2.0", "id": counter, "method": "message/send", "params": {"message": {
                "role": "user", "kind": "message", "messageId": f"m{counter}", "parts": [{"kind": "text", "text": "hello"}]}}}
            answer = (await http.post(f"http://127.0.0.1:{port}/", json=body)).json()
            state = answer["result"]["status"]["state"]
            assert state == "completed", answer

        calls = {"direct": call_direct, "echo": lambda: call_agent(ports[0]), "llm": lambda: call_agent(ports[1])}
        for call in calls.values():  # warm up connections, the agent's model client, the stores
            for _ in range(5):
                await call()
        for _ in range(rounds):
            for name, call in calls.items():
                used = time.process_time() if name == "direct" else cpu_seconds(pids[name])
                for _ in range(per_round):
                    started = time.perf_counter()
                    await call()
                    timings[name].append((time.perf_counter() - started) * 1000)
                cpu[name] += (time.process_time() if name == "direct" else cpu_seconds(pids[name])) - used
    await direct.close()
    timings["cpu"] = [cpu[name] * 1000 / (rounds * per_round) for name in ("direct", "echo", "llm")]
    return timings


def main() -> None:
    import yaml

    from tests.support.util import MeshUp, free_ports

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, per_round = (2, 20) if args.quick else (5, 60)
    model = subprocess.Popen([sys.executable, "-m", "tests.support.fake_models", "openai", "20"], cwd=ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        model_url = model.stdout.readline().strip()
        ports = free_ports(2)
        with tempfile.TemporaryDirectory() as directory:
            config = Path(directory) / "mesh.yaml"
            config.write_text(yaml.safe_dump({"name": "bench", "state": {"dir": str(Path(directory) / "state")}, "agents": {
                "echo": {"module": "agents.echo", "port": ports[0]},
                "writer": {"port": ports[1], "llm": {"provider": "openai", "base_url": model_url, "model": "fake-model"},
                           "instructions": "Answer briefly."},
            }}, sort_keys=False))
            with MeshUp(config) as up:
                up.wait_ready(timeout=120)
                timings = asyncio.run(measure(model_url, ports, rounds, per_round))
                up.stop()
    finally:
        model.stdin.close()
        model.wait(10)
    cpu = dict(zip(("direct", "echo", "llm"), timings.pop("cpu"), strict=True))
    medians = {name: statistics.median(values) for name, values in timings.items()}
    p90 = {name: statistics.quantiles(values, n=10)[-1] for name, values in timings.items()}
    print(f"{'path':<48} {'median ms':>10} {'p90 ms':>8} {'CPU ms/req':>11}")
    for name, label in (("direct", "model server directly (openai client, 20 tokens)"),
                        ("echo", "A2A message/send to the echo agent"),
                        ("llm", "A2A message/send to the LLM agent (1 round trip)")):
        print(f"{label:<48} {medians[name]:>10.2f} {p90[name]:>8.2f} {cpu[name]:>11.2f}")
    added = medians["llm"] - medians["echo"] - medians["direct"]
    print(f"added by the LLM agent per model round trip, wall (llm - echo - direct): {added:.2f} ms (goal <= 3 ms)")
    print(f"added by the LLM agent per model round trip, CPU (llm agent - echo agent - direct client): "
          f"{cpu['llm'] - cpu['echo'] - cpu['direct']:.2f} ms; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
