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
between the three so drift hits all alike.

    .venv/bin/python scripts/bench/llm.py             # about 30 s
    .venv/bin/python scripts/bench/llm.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # benchmarks import the tests' helpers


async def measure(model_url: str, ports: list[int], rounds: int, per_round: int) -> dict[str, list[float]]:
    import httpx
    from openai import AsyncOpenAI

    timings: dict[str, list[float]] = {"direct": [], "echo": [], "llm": []}
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
                for _ in range(per_round):
                    started = time.perf_counter()
                    await call()
                    timings[name].append((time.perf_counter() - started) * 1000)
    await direct.close()
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
    medians = {name: statistics.median(values) for name, values in timings.items()}
    p90 = {name: statistics.quantiles(values, n=10)[-1] for name, values in timings.items()}
    print(f"{'path':<48} {'median ms':>10} {'p90 ms':>8}")
    for name, label in (("direct", "model server directly (openai client, 20 tokens)"),
                        ("echo", "A2A message/send to the echo agent"),
                        ("llm", "A2A message/send to the LLM agent (1 round trip)")):
        print(f"{label:<48} {medians[name]:>10.2f} {p90[name]:>8.2f}")
    added = medians["llm"] - medians["echo"] - medians["direct"]
    print(f"added by the LLM agent per model round trip (llm - echo - direct): {added:.2f} ms (goal <= 3 ms)")


if __name__ == "__main__":
    main()
