"""Guard throughput: `message/send` with the guard checking input and output against guard off, side by side in one run.

    .venv/bin/python scripts/bench/guard_throughput.py             # about two minutes
    .venv/bin/python scripts/bench/guard_throughput.py --rounds 1 --requests 100   # a smoke run
    .venv/bin/python scripts/bench/guard_throughput.py --strictness strict          # another operating point

One `mesh up` runs a real embedded guard agent and, each behind the guard or
not, the echo agent (output = input) and a reply agent (output = a prefix +
input, so the output check sees new text). The load comes from this process:
8 messages in flight over HTTP/2 (one client connection), every text new (no
verdict cache can help). Rounds alternate between guard off and on and the best
round of each is kept, so the drift of a shared machine hits both alike.
Besides requests per second, the CPU time per request of the agent and of the
guard agent is read from /proc (the client does not disturb it): on a machine
whose cores are all busy the throughput ratio tends to the CPU ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # benchmarks import the tests' helpers


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (its threads included)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pid_listening_on(port: int) -> int:
    """The process that listens on TCP ``port`` (found through /proc/net/tcp's socket inode)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(fields[9])
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(entry.name)
        except OSError:
            continue
    raise LookupError(f"no process listens on port {port}")


async def load(url: str, name: str, start: int, requests: int, concurrency: int) -> float:
    """``requests`` message/send calls with new texts, ``concurrency`` in flight; requests per second. Checks each answer."""
    from a2a.types import TaskState

    from mesh.client import fetch_card, http_client, open_client, send_request, user_message

    # h2c with prior knowledge, as the goal says (http_client() alone speaks HTTP/1.1 to an http:// URL)
    async with http_client(h2c=True) as http:
        client = await open_client(http, await fetch_card(http, url), streaming=False)
        counter = iter(range(start, start + requests))

        async def worker() -> None:
            for i in counter:  # unique texts: no verdict cache can help
                text = f"Question {i} from {name}: what is a good way to learn {i % 97} new words a day?"
                async for event in client.send_message(send_request(user_message(text))):
                    task = event.task
                    assert task.status.state == TaskState.TASK_STATE_COMPLETED, task.status
                    assert text in task.artifacts[0].parts[0].text

        for i in range(concurrency):  # warm up the connection and the guard
            async for _ in client.send_message(send_request(user_message(f"warm up {name} {start} {i}"))):
                pass
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return requests / (time.perf_counter() - started)


def measure(requests: int, concurrency: int, rounds: int, strictness: str = "balanced") -> dict[str, dict]:
    import yaml

    from tests.support.util import MeshUp, free_ports  # the same process runner the tests use

    ports = free_ports(5)
    names = ("guard", "echo-off", "echo-on", "reply-off", "reply-on")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "mesh.yaml"
        reply = {"module": "tests.support.guard_agents", "settings": {"prefix": "Here is what you asked about: "}}
        config.write_text(yaml.safe_dump({
            "name": "bench", "state": {"dir": str(Path(directory) / "state")},
            "agents": {
                "guard": {"module": "agents.guard", "port": ports[0],
                          "settings": {"backend": "embedded", "strictness": strictness}},
                "echo-off": {"module": "agents.echo", "port": ports[1], "guard": {"enabled": False}},
                "echo-on": {"module": "agents.echo", "port": ports[2]},
                "reply-off": {**reply, "port": ports[3], "guard": {"enabled": False}},
                "reply-on": {**reply, "port": ports[4]},
            },
            "guard": {"agent": "guard", "check": ["input", "output"]},
        }, sort_keys=False))
        with MeshUp(config) as up:
            up.wait_ready(timeout=300)
            pids = {name: pid_listening_on(port) for name, port in zip(names, ports)}
            for round_number in range(rounds):
                for name, port in zip(names[1:], ports[1:]):
                    before = {n: cpu_seconds(p) for n, p in pids.items()}
                    rps = asyncio.run(load(f"http://127.0.0.1:{port}", name, round_number * requests * 2, requests, concurrency))
                    spent = {n: (cpu_seconds(p) - before[n]) / (requests + concurrency) * 1000 for n, p in pids.items()}
                    figures = {"rps": rps, "agent_cpu_ms": spent[name], "guard_cpu_ms": spent["guard"] if name.endswith("-on") else 0.0}
                    best = results.setdefault(name, figures)
                    if rps >= best["rps"]:
                        best["rps"] = rps
                    best["agent_cpu_ms"] = min(best["agent_cpu_ms"], figures["agent_cpu_ms"])
                    best["guard_cpu_ms"] = min(best["guard_cpu_ms"], figures["guard_cpu_ms"])
                    print(f"  round {round_number + 1} {name}: {rps:.0f}/s, agent {spent[name]:.2f} ms CPU/request, "
                          f"guard {spent['guard']:.2f} ms ({load_average()})", flush=True)
            up.stop()
    return results


def report(results: dict[str, dict], requests: int, concurrency: int, rounds: int) -> None:
    print(f"\n== message/send throughput, best of {rounds} rounds ({requests} new texts a round, {concurrency} in flight, "
          "HTTP/2; guard on = input and output checked by the embedded guard agent)")
    print(f"{'agent':<28} {'off req/s':>9} {'on req/s':>9} {'ratio':>6}   {'CPU ms/req off':>14} {'on (agent+guard)':>18} {'ratio':>6}")
    for agent, label in (("echo", "echo (output = input)"), ("reply", "reply (output differs)")):
        off, on = results[f"{agent}-off"], results[f"{agent}-on"]
        on_cpu = on["agent_cpu_ms"] + on["guard_cpu_ms"]
        print(f"{label:<28} {off['rps']:>9.0f} {on['rps']:>9.0f} {on['rps'] / off['rps']:>6.2f}   {off['agent_cpu_ms']:>14.2f} "
              f"{on_cpu:>9.2f} ({on['agent_cpu_ms']:.2f}+{on['guard_cpu_ms']:.2f}) {off['agent_cpu_ms'] / on_cpu:>6.2f}")


def main() -> int:
    from agents.guard.fit import OPERATING_POINTS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--strictness", choices=tuple(OPERATING_POINTS), default="balanced",
                        help="the guard's operating point (its strictness setting)")
    args = parser.parse_args()
    print(f"machine: {load_average()}")
    report(measure(args.requests, args.concurrency, args.rounds, args.strictness), args.requests, args.concurrency, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
