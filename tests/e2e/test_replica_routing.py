"""Remote vertices over an agent's replicas (``replica_urls``): a replica that fails is skipped, a wrong card is refused.

Real agents under `mesh up` on loopback; the coordinator side is a GraphRuntime
in the test process whose mesh.yaml gives the agent three replica URLs: one
where nothing listens, one where another agent answers, one that is right.
"""

from __future__ import annotations

import json

import pytest

from mesh.config import load_config
from mesh.graphs.runtime import GraphRuntime
from tests.support.util import MeshUp, free_ports, write_mesh

WORKER = "tests.support.agents.worker"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    directory = tmp_path_factory.mktemp("served")
    right, other, dead = free_ports(3)
    log = directory / "calls.log"
    config = write_mesh(directory, {
        "worker": {"module": WORKER, "port": right, "settings": {"log": str(log)}},
        "other": {"module": WORKER, "port": other, "card": {"name": "Other"}, "settings": {"name": "other", "log": str(log)}},
    })
    with MeshUp(config) as up:
        up.wait_ready()
        yield {"right": right, "other": other, "dead": dead, "log": log}


def client_mesh(tmp_path, served, order: list[str]):
    urls = [f"http://127.0.0.1:{served[key]}" for key in order]
    path = write_mesh(tmp_path, {"worker": {"module": WORKER, "port": served["right"], "replicas": len(urls), "replica_urls": urls}},
                      graphs={"one": {"entry": ["v"], "vertices": [{"id": "v", "kind": "agent", "agent": "worker"}]}})
    return GraphRuntime(load_config(path))


def calls_by(log, agent: str) -> int:
    return sum(1 for line in log.read_text().splitlines() if json.loads(line)["agent"] == agent)


async def test_a_dead_replica_and_a_wrong_card_are_skipped_and_then_avoided(tmp_path, served):
    runtime = client_mesh(tmp_path, served, ["dead", "other", "right"])
    try:
        first = await (await runtime.start("one", "hello")).result()
        assert first.status == "done" and first.outputs == {"v": "worker: hello"}, first.errors
        # neither the dead replica nor the impostor got the call; both are now routed around
        assert calls_by(served["log"], "other") == 0
        assert runtime.routes.is_down("worker[0]") and runtime.routes.is_down("worker[1]")
        assert runtime.routes.order(["worker[0]", "worker[1]", "worker[2]"], "fastest")[0] == "worker[2]"
        again = await (await runtime.start("one", "again")).result()
        assert again.status == "done" and again.outputs == {"v": "worker: again"}
    finally:
        await runtime.aclose()


async def test_when_no_replica_is_right_the_call_fails_with_the_reason(tmp_path, served):
    runtime = client_mesh(tmp_path, served, ["dead", "other"])
    try:
        result = await (await runtime.start("one", "x")).result()
        assert result.status == "done" and not result.outputs  # the vertex failed; the run went on without it
        [error] = result.errors
        assert "answers with the card of 'Other', not of agent 'worker' ('Worker')" in error["error"], error
        assert calls_by(served["log"], "other") == 0
    finally:
        await runtime.aclose()
