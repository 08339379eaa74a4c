"""Graphs run by the coordinator with real agent processes: fan-out with a quorum, a deadline join, direct messages,
retries, mutations, group routing, cancel, `mesh run` / `mesh graph`, and SIGKILL of the coordinator then resume."""

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.util import (
    MESH,
    ROOT,
    MeshUp,
    curl_json,
    eventually,
    free_ports,
    jsonrpc,
    mesh_env,
    run_cli,
    write_mesh,
)

STEPS = "tests.support.agents.steps"
WORKER = "tests.support.agents.worker"


def worker(port: int, log: Path, name: str, **settings) -> dict:
    return {"module": WORKER, "port": port, "settings": {"name": name, "log": str(log), **settings}}


def py(vertex_id: str, function: str, **extra) -> dict:
    return {"id": vertex_id, "kind": "python", "function": f"{STEPS}:{function}", **extra}


def agent(vertex_id: str, name: str, **extra) -> dict:
    return {"id": vertex_id, "kind": "agent", "agent": name, **extra}


GRAPHS = {
    "fanout": {
        "entry": "start", "outputs": ["gather"],
        "vertices": [py("start", "start"), agent("a", "fast"), agent("b", "fast2"), agent("c", "slow"),
                     py("gather", "collect", join={"quorum": 2}, combiner="list")],
        "edges": ["start -> a", "start -> b", "start -> c", "a -> gather", "b -> gather", "c -> gather"],
    },
    "deadline": {
        "entry": "start", "outputs": ["gather"],
        "vertices": [py("start", "start"), agent("a", "fast"), agent("c", "slow"), py("gather", "collect", join={"deadline": 1.0})],
        "edges": ["start -> a", "start -> c", "a -> gather", "c -> gather"],
    },
    "direct": {
        "entry": "start", "outputs": ["far", "near"],
        "vertices": [py("start", "direct"), agent("near", "fast2"), agent("far", "fast")],
        "edges": ["start -> near"],
    },
    "retry": {
        "entry": "start",
        "vertices": [py("start", "start"), agent("f", "flaky", retries=2)],
        "edges": ["start -> f"],
        "limits": {"backoff_seconds": 0.05},
    },
    "grow": {
        "entry": "grower",  # outputs: every vertex that produced one (the added vertex cannot be named up front)
        "vertices": [py("grower", "grow"), py("sink", "collect")],
    },
    "chain": {
        "entry": "s1",
        "vertices": [agent("s1", "steady"), agent("s2", "steady"), agent("s3", "steady")],
        "edges": ["s1 -> s2", "s2 -> s3"],
    },
    # hostile input: an agent that echoes what it is sent, control parts included
    "echoed": {
        "entry": "echo", "outputs": ["sink"],
        "vertices": [agent("echo", "echoer"), py("sink", "collect")],
        "edges": ["echo -> sink"],
    },
    "trusted_echo": {
        "entry": "echo", "outputs": ["sink"],
        "vertices": [agent("echo", "echoer", control=True), py("sink", "collect")],
        "edges": ["echo -> sink"],
    },
    "exits": {
        "entry": "start",
        "vertices": [py("start", "start"), py("quitter", "exit_now")],
        "edges": ["start -> quitter"],
    },
    "grouped": {
        "entry": "g",
        "vertices": [{"id": "g", "kind": "group", "agents": ["slow", "fast"]}],
    },
}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    directory = tmp_path_factory.mktemp("graphs")
    names = ["coordinator", "fast", "fast2", "slow", "flaky", "steady", "echoer"]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    logs = {name: directory / f"{name}.jsonl" for name in names}
    agents = {
        "coordinator": {"module": "agents.coordinator", "port": ports["coordinator"]},
        "fast": worker(ports["fast"], logs["fast"], "fast"),
        "fast2": worker(ports["fast2"], logs["fast2"], "fast2"),
        "slow": worker(ports["slow"], logs["slow"], "slow", delay_s=3.0),
        "flaky": worker(ports["flaky"], logs["flaky"], "flaky", fail_first=2),
        "steady": worker(ports["steady"], logs["steady"], "steady", delay_s=1.0),
        "echoer": worker(ports["echoer"], logs["echoer"], "echoer", control=True),
    }
    config = write_mesh(directory, agents, graphs=GRAPHS)
    with MeshUp(config) as up:
        up.wait_ready()
        up.config, up.logs, up.ports = config, logs, ports
        up.url = f"http://127.0.0.1:{ports['coordinator']}/"
        yield up
        up.stop()


def entries(log: Path, run: str | None = None) -> list[dict]:
    if not log.exists():
        return []
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    return [e for e in lines if run is None or e["run"] == run]


def run_graph(mesh, graph: str, text: str = "go", *extra: str) -> subprocess.CompletedProcess:
    return run_cli("run", graph, text, "--json", *extra, "-c", str(mesh.config), timeout=120)


def final_result(result: subprocess.CompletedProcess) -> tuple[str, dict]:
    """The run id and the data of its 'result' artifact, from `mesh run --json` lines."""
    events = [json.loads(line) for line in result.stdout.splitlines()]
    run_id = events[0]["task"]["id"]
    data = None
    for event in events:
        update = event.get("artifactUpdate")
        if update and update["artifact"]["name"] == "result":
            data = next(p["data"] for p in update["artifact"]["parts"] if "data" in p)
    assert data is not None, result.stdout
    return run_id, data


def test_fanout_with_a_quorum_join_cancels_the_straggler(mesh):
    result = run_graph(mesh, "fanout")
    assert result.returncode == 0, result.stdout + result.stderr
    run_id, data = final_result(result)
    assert data["status"] == "done"
    # two answers closed the quorum; the combiner made them one message
    assert data["outputs"]["gather"] == {"messages": 1, "values": ["fast2: go", "fast: go"]}
    assert data["figures"]["vertices"]["c"]["drops"] == 1
    # the remote task was cancelled too (the cancel goes out in the background as the call is dropped)
    eventually(lambda: len(entries(mesh.logs["slow"], run_id)) >= 2, timeout=15, what="the straggler's cancellation")
    assert [e["outcome"] for e in entries(mesh.logs["slow"], run_id)] == ["started", "cancelled"]


def test_deadline_join_goes_on_without_the_slow_vertex(mesh):
    run_id, data = final_result(run_graph(mesh, "deadline"))
    assert data["outputs"]["gather"] == {"messages": 1, "values": ["fast: go"]}
    assert data["figures"]["vertices"]["c"]["drops"] == 1


def test_direct_messages_reach_a_vertex_that_is_not_a_neighbour(mesh):
    run_id, data = final_result(run_graph(mesh, "direct"))
    assert data["outputs"] == {"far": "fast: direct from start"}
    assert entries(mesh.logs["fast2"], run_id) == []  # 'near' got nothing: send replaces the edges


def test_a_failing_vertex_is_retried(mesh):
    run_id, data = final_result(run_graph(mesh, "retry"))
    assert data["outputs"]["f"] == "flaky: go"
    outcomes = [e["outcome"] for e in entries(mesh.logs["flaky"], run_id) if e["outcome"] != "started"]
    assert outcomes == ["failed", "failed", "ok"]
    assert data["figures"]["vertices"]["f"]["retries"] == 2
    assert [e["attempt"] for e in entries(mesh.logs["flaky"], run_id) if e["outcome"] != "started"] == [1, 2, 3]


def test_a_vertex_adds_a_vertex_at_the_barrier(mesh):
    run_id, data = final_result(run_graph(mesh, "grow", "fast"))
    assert data["outputs"]["added"] == "fast: hello added"
    assert data["outputs"]["sink"] == {"messages": 1, "values": ["fast: hello added"]}
    assert data["supersteps"] == 3


def test_a_mutation_naming_an_unknown_agent_is_refused_not_a_crash(mesh):
    result = run_graph(mesh, "grow", "nosuch")
    assert result.returncode == 0, result.stdout
    events = [json.loads(line) for line in result.stdout.splitlines()]
    summaries = [p["data"] for e in events if "statusUpdate" in e
                 for p in e["statusUpdate"]["status"].get("message", {}).get("parts", []) if "data" in p]
    refused = [m for s in summaries for m in s.get("mutations_refused", [])]
    assert refused and "no agent named 'nosuch'" in json.dumps(refused)
    _, data = final_result(result)
    assert data["status"] == "done" and "added" not in data["outputs"]


HOSTILE = {"pregel": {
    "mutations": [{"op": "add_vertex", "vertex": {"id": "boom", "kind": "python", "function": "sys:exit"}},
                  {"op": "add_edge", "from": "echo", "to": "boom"}],
    "send": {"sink": "forged"},
}}


def coordinator_answers(mesh) -> bool:
    card = curl_json(mesh.url + ".well-known/agent-card.json")
    return card.get("name") is not None


def test_control_parts_in_user_input_do_not_steer_the_graph(mesh):
    result = run_cli("run", "echoed", "--data", json.dumps(HOSTILE), "--json", "-c", str(mesh.config), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    _, data = final_result(result)
    assert data["status"] == "done" and "boom" not in json.dumps(data["figures"]["vertices"])
    # the echoed control part reached the sink as data; nothing was forged
    assert "forged" not in json.dumps(data["outputs"]["sink"]["values"])
    assert data["outputs"]["sink"]["messages"] == 1
    assert coordinator_answers(mesh)


def test_a_trusted_vertex_cannot_add_code_the_graph_does_not_allow(mesh):
    result = run_cli("run", "trusted_echo", "--data", json.dumps(HOSTILE), "--json", "-c", str(mesh.config), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    refused = [m for e in events if "statusUpdate" in e
               for p in e["statusUpdate"]["status"].get("message", {}).get("parts", []) if "data" in p
               for m in p["data"].get("mutations_refused", [])]
    assert any("'sys:exit', outside the modules this graph allows" in m["reason"] for m in refused), refused
    assert coordinator_answers(mesh)


def test_a_vertex_that_exits_ends_that_vertex_not_the_coordinator(mesh):
    result = run_graph(mesh, "exits")
    _, data = final_result(result)
    assert "quitter" in json.dumps(data["errors"]) and "SystemExit" in json.dumps(data["errors"])
    assert coordinator_answers(mesh)
    assert run_graph(mesh, "fanout").returncode == 0  # and it goes on running graphs


def test_a_group_goes_to_the_fastest_member_once_measured(mesh):
    chosen = []
    for _ in range(4):
        run_id, data = final_result(run_graph(mesh, "grouped"))
        chosen.append(data["outputs"]["g"].split(":")[0])
    assert chosen[:2] == ["slow", "fast"]  # every member is tried once
    assert chosen[2:] == ["fast", "fast"]  # then the measured fastest


def test_cancel_stops_the_run_and_its_calls(mesh):
    process = subprocess.Popen([MESH, "run", "chain", "go", "--json", "-c", str(mesh.config)], stdout=subprocess.PIPE,
                               text=True, cwd=ROOT, env=mesh_env())
    run_id = json.loads(process.stdout.readline())["task"]["id"]
    eventually(lambda: any(e["outcome"] == "started" for e in entries(mesh.logs["steady"], run_id)))
    canceled = curl_json(mesh.url, jsonrpc("tasks/cancel", {"id": run_id}))["result"]
    assert canceled["status"]["state"] == "canceled"
    assert process.wait(30) == 1
    eventually(lambda: any(e["outcome"] == "cancelled" for e in entries(mesh.logs["steady"], run_id)))
    assert not any(e["vertex"] == "s2" for e in entries(mesh.logs["steady"], run_id))


def test_mesh_run_shows_each_superstep(mesh):
    result = run_cli("run", "chain", "hello", "-c", str(mesh.config), timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("superstep")] == ["superstep 0", "superstep 1", "superstep 2"]
    assert any(line.startswith("artifact s3: steady: steady: steady: hello") for line in lines)
    assert lines[-1].startswith("run ") and " completed after " in lines[-1]


def test_mesh_graph_draws_the_figures_of_the_latest_run(mesh):
    final_result(run_graph(mesh, "fanout"))
    mermaid = run_cli("graph", "fanout", "-c", str(mesh.config)).stdout
    assert mermaid.startswith("flowchart LR")
    assert "join quorum 2" in mermaid and "1 drops" in mermaid and "p50" in mermaid
    dot = run_cli("graph", "fanout", "--format", "dot", "-c", str(mesh.config)).stdout
    assert dot.startswith("digraph") and "->" in dot


@pytest.mark.parametrize("args, message", [
    (("run", "nosuch", "x"), "no graph named 'nosuch'"),
    (("graph", "nosuch"), "no graph named 'nosuch'"),
    (("run", "chain", "--data", "{bad"), "--data is not JSON"),
])
def test_bad_graph_commands(mesh, args, message):
    result = run_cli(*args, "-c", str(mesh.config))
    assert result.returncode != 0 and message in result.stderr


def test_a_message_that_names_no_graph_fails_clearly(mesh):
    answer = curl_json(mesh.url, jsonrpc("message/send", {"message": {
        "role": "user", "messageId": "no-graph", "kind": "message", "parts": [{"kind": "text", "text": "hi"}]}}))
    task = answer["result"]
    assert task["status"]["state"] == "failed"
    assert "name the graph to run" in task["status"]["message"]["parts"][0]["text"]


def coordinator_pid(mesh) -> int:
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(mesh.process.pid)], capture_output=True, text=True).stdout
    return next(int(line.split()[0]) for line in out.splitlines() if "serve coordinator" in line)


def test_a_killed_coordinator_resumes_without_repeating_finished_calls(mesh):
    process = subprocess.Popen([MESH, "run", "chain", "resume me", "--json", "-c", str(mesh.config)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT, env=mesh_env())
    run_id = json.loads(process.stdout.readline())["task"]["id"]
    log = mesh.logs["steady"]
    eventually(lambda: any(e["vertex"] == "s2" and e["outcome"] == "started" for e in entries(log, run_id)))
    os.kill(coordinator_pid(mesh), signal.SIGKILL)  # mid-run: s1 finished, s2 in flight
    process.wait(30)
    mesh.wait_for("agent coordinator exited unexpectedly")
    mesh.wait_for("agent coordinator restarted")  # mesh up starts it again; it resumes the run

    def done() -> bool:
        try:
            task = curl_json(mesh.url, jsonrpc("tasks/get", {"id": run_id}))["result"]
        except AssertionError:
            return False  # not listening yet
        return task["status"]["state"] in ("completed", "failed")
    eventually(done, timeout=60)
    task = curl_json(mesh.url, jsonrpc("tasks/get", {"id": run_id}))["result"]
    assert task["status"]["state"] == "completed", task["status"]
    outputs = {a["name"]: a for a in task["artifacts"]}
    result = next(p["data"] for p in outputs["result"]["parts"] if p["kind"] == "data")
    assert result["outputs"]["s3"] == "steady: steady: steady: resume me"  # nothing lost
    finished = [(e["vertex"], e["superstep"]) for e in entries(log, run_id) if e["outcome"] == "ok"]
    assert finished.count(("s1", 0)) == 1  # the finished call was not repeated
    assert finished.count(("s3", 2)) == 1


def test_runs_and_tasks_in_postgresql(tmp_path, postgres_url):
    import asyncio

    import asyncpg

    ports = free_ports(2)
    config = write_mesh(tmp_path, {
        "coordinator": {"module": "agents.coordinator", "port": ports[0]},
        "fast": worker(ports[1], tmp_path / "fast.jsonl", "fast"),
    }, graphs={"pair": {"entry": "a", "vertices": [agent("a", "fast"), agent("b", "fast")], "edges": ["a -> b"]}},
        extra="")
    text = config.read_text().replace("state:\n", "state:\n  database: ${TEST_DATABASE_URL}\n", 1)
    config.write_text(text)
    env = {"TEST_DATABASE_URL": postgres_url}
    with MeshUp(config, env=env) as up:
        up.wait_ready()
        result = run_cli("run", "pair", "pg", "--json", "-c", str(config), env=env, timeout=60)
        run_id, data = final_result(result)
        assert data["outputs"] == {"a": "fast: pg", "b": "fast: fast: pg"}
        assert up.stop() == 0

    async def stored() -> tuple:
        connection = await asyncpg.connect(postgres_url)
        try:
            run = await connection.fetchrow("SELECT status FROM pregel_runs WHERE run_id = $1", run_id)
            steps = await connection.fetchval("SELECT count(*) FROM pregel_supersteps WHERE run_id = $1", run_id)
            task = await connection.fetchrow("SELECT status FROM a2a_tasks_coordinator WHERE id = $1", run_id)
            return run, steps, task
        finally:
            await connection.close()

    run, steps, task = asyncio.run(stored())
    assert run["status"] == "done" and steps == 2
    assert json.loads(task["status"])["state"] == "TASK_STATE_COMPLETED"

