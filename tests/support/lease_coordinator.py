"""A coordinator process for the lease tests: starts or adopts a run of a fan-out graph on PostgreSQL, prints its result.

    python -m tests.support.lease_coordinator start URL RUN_ID LOG LEASE_SECONDS
    python -m tests.support.lease_coordinator adopt URL RUN_ID LOG LEASE_SECONDS

Each vertex call appends ``start|done SUPERSTEP VERTEX PID`` to LOG; a vertex named in
$LEASE_TEST_SLEEP (``slow=30``) sleeps that long first. Prints ``started`` once the run
exists, then the run's result as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from mesh.pregel import Engine, GraphSpec, open_store

FAN = ("f1", "f2", "f3", "f4", "slow")


def _log(path: str, text: str) -> None:
    with open(path, "a") as log:
        log.write(text + "\n")


async def step(call: Any) -> str:
    log = call.spec.params["log"]
    _log(log, f"start {call.superstep} {call.vertex_id} {os.getpid()}")
    sleeps = dict(item.split("=") for item in os.environ.get("LEASE_TEST_SLEEP", "").split(",") if item)
    if call.vertex_id in sleeps:
        await asyncio.sleep(float(sleeps[call.vertex_id]))
    _log(log, f"done {call.superstep} {call.vertex_id} {os.getpid()}")
    return f"{call.vertex_id}<" + "+".join(sorted(str(v).partition("<")[0] for v in call.inbox)) + ">"


def graph(log: str) -> GraphSpec:
    names = ["start", *FAN, "sink"]
    return GraphSpec.model_validate({
        "entry": ["start"],
        "vertices": [{"id": n, "kind": "python", "function": "tests.support.lease_coordinator:step", "params": {"log": log}}
                     for n in names],
        "edges": [*[f"start -> {n}" for n in FAN], *[f"{n} -> sink" for n in FAN]],
    })


async def main(mode: str, url: str, run_id: str, log: str, lease: float) -> None:
    async with open_store(url) as store:
        engine = Engine(store, lease_seconds=lease)
        if mode == "start":
            run = await engine.start(graph(log), "go", run_id=run_id)
        else:
            while True:
                runs = [run for run in await engine.adopt() if run.run_id == run_id]
                if runs:
                    run = runs[0]
                    break
                await asyncio.sleep(0.1)
        print("started", flush=True)
        result = await run.result()
        print(json.dumps({"status": result.status, "stop_reason": result.stop_reason, "outputs": result.outputs,
                          "owner": engine.owner}), flush=True)


if __name__ == "__main__":
    mode, url, run_id, log, lease = sys.argv[1:6]
    asyncio.run(main(mode, url, run_id, log, float(lease)))
