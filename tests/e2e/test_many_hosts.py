"""Many hosts on one machine: network namespaces on a bridge, PostgreSQL on one, an agent's replicas on two, coordinators on two.

Hosts ``pg`` (PostgreSQL listening on its own address), ``a1`` and ``a2``
(replica 0 and 1 of the ``worker`` agent, on one port each, listed in
``replica_urls``), ``c1`` and ``c2`` (the two replicas of the coordinator).
The test process sits on the bridge and talks to them as a client would.
Runs of the fan-out graph ``fan`` (``a -> w1..w4, slow -> sink``, every vertex
the ``worker`` agent) go on while

- an agent host dies (every process killed) with a call in flight on it:
  the run ends with every result, no call that finished is repeated, and the
  tasks are read (``tasks/get``, resubscribe) through the surviving replica;
- the coordinator's host dies mid-run: the other coordinator takes the run
  over when its lease expires and finishes it, calling no finished vertex again;
- PostgreSQL stops under load and starts again: requests meanwhile get a
  JSON-RPC error saying why, then requests complete again; no task is lost
  or worked on twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml

from mesh.pregel import open_store
from tests.conftest import _pg_bin
from tests.support.netns import Hosts, netns_unavailable
from tests.support.util import ROOT, mesh_env

WHY = netns_unavailable()
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"multi-host test: {WHY}")

AGENT_PORT, COORDINATOR_PORT, PG_PORT = 8101, 8100, 5432  # each host is its own network: no clash possible
FAN = ("w1", "w2", "w3", "w4", "slow")
LEASE = 1.5


def jsonrpc(method: str, params: dict) -> dict:
    return {"jsonrpc": "2.0", "id": uuid.uuid4().hex, "method": method, "params": params}


class World:
    def __init__(self, hosts: Hosts, directory: Path, log: Path, database: str) -> None:
        self.hosts, self.directory, self.log, self.database = hosts, directory, log, database
        self.url = {host: f"http://{address}" for host, address in hosts.addresses.items()}
        self.pg_options = pg_options(hosts, directory / "pg")

    def agent(self, host: str) -> str:
        return f"{self.url[host]}:{AGENT_PORT}"

    def coordinator(self, host: str) -> str:
        return f"{self.url[host]}:{COORDINATOR_PORT}"

    def entries(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def calls(self, run: str, outcome: str) -> Counter[str]:
        entries = self.entries()
        return Counter(e["vertex"] for e in entries if e["run"] == run and e["outcome"] == outcome)

    def in_flight(self, run: str, vertex: str) -> int | None:
        """The pid of the worker replica running ``vertex`` of ``run`` now (started, not ended)."""
        entries = [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []
        started = [e["pid"] for e in entries if e["run"] == run and e["vertex"] == vertex and e["outcome"] == "started"]
        ended = [e["pid"] for e in entries if e["run"] == run and e["vertex"] == vertex and e["outcome"] != "started"]
        return started[-1] if len(started) > len(ended) else None


def pg_options(hosts: Hosts, data: Path) -> str:
    return f"-p {PG_PORT} -k {data} -c listen_addresses={hosts.addresses['pg']} -c fsync=off"


def start_postgres(hosts: Hosts, directory: Path) -> str:
    data = directory / "pg"
    data.mkdir()
    shutil.chown(data, "postgres", "postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_postgres, _pg_bin("initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "mesh", "--no-sync"],
                   check=True, capture_output=True)
    with open(data / "db" / "pg_hba.conf", "a") as hba:  # the hosts of the test's subnet, and nothing else
        hba.write(f"host all all {hosts.subnet}.0/24 trust\n")
    options = pg_options(hosts, data)
    subprocess.run(hosts.command("pg", [*as_postgres, _pg_bin("pg_ctl"), "-D", str(data / "db"), "-o", options,
                                        "-l", str(data / "log"), "-w", "start"]), check=True, capture_output=True)
    return f"postgresql://mesh@{hosts.addresses['pg']}:{PG_PORT}/postgres"


def write_config(hosts: Hosts, directory: Path, database: str, log: Path) -> Path:
    replicas = lambda port, names: [f"http://{hosts.addresses[n]}:{port}" for n in names]  # noqa: E731
    doc = {
        "name": "hosts",
        "state": {"dir": str(directory / "state"), "database": database, "lease_seconds": LEASE},
        "server": {"host": "0.0.0.0"},
        "agents": {
            "worker": {"module": "tests.support.agents.worker", "port": AGENT_PORT, "replicas": 2,
                       "replica_urls": replicas(AGENT_PORT, ["a1", "a2"]),
                       "settings": {"log": str(log), "delay_s": 0.05, "hold": ["slow"], "release_dir": str(directory)}},
            "coordinator": {"module": "agents.coordinator", "port": COORDINATOR_PORT, "replicas": 2,
                            "replica_urls": replicas(COORDINATOR_PORT, ["c1", "c2"])},
        },
        "graphs": {"fan": {
            "entry": ["a"],
            "vertices": [{"id": v, "kind": "agent", "agent": "worker"} for v in ("a", *FAN, "sink")],
            "edges": [*[f"a -> {v}" for v in FAN], *[f"{v} -> sink" for v in FAN]],
        }},
    }
    path = directory / "mesh.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def serve(hosts: Hosts, host: str, config: Path, agent: str, replica: int, directory: Path) -> None:
    output = open(directory / f"{host}.log", "w")
    hosts.run(host, [sys.executable, "-m", "mesh", "serve", agent, "-c", str(config), "--replica", str(replica)],
              cwd=ROOT, env=mesh_env(), stdout=output, stderr=subprocess.STDOUT)


def wait_healthy(urls: list[str], directory: Path, hosts: Hosts, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    pending = list(urls)
    while pending:
        exited = [h for h, processes in hosts.processes.items() if processes and processes[-1].poll() is not None
                  and h != "pg"]
        if exited:
            deadline = 0  # a server died: say why now
        try:
            if httpx.get(pending[0] + "/health", timeout=1).status_code == 200:
                pending.pop(0)
                continue
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in directory.glob("*.log"))
            raise AssertionError(f"{pending[0]} not healthy within {timeout}s\n{logs}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def world():
    directory = Path(tempfile.mkdtemp(prefix="mesh-hosts-"))
    directory.chmod(0o755)
    hosts = Hosts(["pg", "a1", "a2", "c1", "c2"])
    try:
        database = start_postgres(hosts, directory)
        log = directory / "calls.log"
        config = write_config(hosts, directory, database, log)
        for host, agent, replica in (("a1", "worker", 0), ("a2", "worker", 1), ("c1", "coordinator", 0), ("c2", "coordinator", 1)):
            serve(hosts, host, config, agent, replica, directory)
        world = World(hosts, directory, log, database)
        wait_healthy([world.agent("a1"), world.agent("a2"), world.coordinator("c1"), world.coordinator("c2")], directory, hosts)
        yield world
    finally:
        hosts.close()
        if not os.environ.get("KEEP_HOSTS"):
            shutil.rmtree(directory, ignore_errors=True)


def send(url: str, method: str, params: dict, timeout: float = 30) -> dict:
    answer = httpx.post(url + "/", json=jsonrpc(method, params), timeout=timeout).json()
    assert "result" in answer, answer
    return answer["result"]


def run_graph(url: str, text: str) -> str:
    message = {"role": "user", "messageId": uuid.uuid4().hex, "parts": [{"kind": "data", "data": {"graph": "fan", "input": text}}]}
    return send(url, "message/send", {"message": message, "configuration": {"blocking": False}})["id"]


def settled(url: str, task_id: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        task = send(url, "tasks/get", {"id": task_id})
        if task["status"]["state"] in ("completed", "failed", "canceled", "rejected"):
            return task
        assert time.monotonic() < deadline, f"task {task_id} still {task['status']['state']}"
        time.sleep(0.1)


def result_of(task: dict) -> dict:
    [result] = [a for a in task["artifacts"] if a.get("name") == "result"]
    return next(p["data"] for p in result["parts"] if p.get("kind") == "data")


def wait_for(condition, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


async def recorded(world: World, run: str) -> set[str]:
    """The vertices whose calls the coordinator got an answer from (recorded in its checkpoint store)."""
    async with open_store(world.database) as store:
        return {r.vertex_id for r in await store.calls(run) if r.status == "ok"}


def test_an_agent_host_dies_mid_run_and_the_run_completes_on_the_other_replica(world):
    run = run_graph(world.coordinator("c1"), "one")
    # w1..w4 came back (recorded by the coordinator), the slow call is in flight on one worker host: that host dies
    wait_for(lambda: {"a", "w1", "w2", "w3", "w4"} <= asyncio.run(recorded(world, run)), what="w1..w4 recorded")
    pid = world.in_flight(run, "slow")  # held until the test releases it
    assert pid is not None
    victim = next(host for host in ("a1", "a2") if pid in world.hosts.pids(host))
    survivor = "a2" if victim == "a1" else "a1"
    world.hosts.down(victim)
    (world.directory / run).touch()  # the call sent again to the survivor goes through
    task = settled(world.coordinator("c1"), run)
    assert task["status"]["state"] == "completed", task["status"]
    result = result_of(task)
    assert result["status"] == "done" and set(result["outputs"]) == {"a", *FAN, "sink"}, result
    assert result["outputs"]["slow"] == "worker: worker: one"
    # every call finished once; only the one cut off by the dead host was sent again (to the survivor).
    # (A call whose answer had not reached the coordinator when its host died is sent again too: at least once.)
    assert all(count == 1 for count in world.calls(run, "ok").values()), world.calls(run, "ok")
    assert set(world.calls(run, "ok")) == {"a", *FAN, "sink"}
    assert world.calls(run, "started")["slow"] == 2

    # the worker's tasks live in PostgreSQL: any of them is read through the surviving replica
    survivor_url = world.agent(survivor)
    message = {"role": "user", "messageId": uuid.uuid4().hex, "parts": [{"kind": "text", "text": "after"}],
               "metadata": {"pregel": {"vertex": "slow", "run": "later"}}}  # held until released
    started = send(survivor_url, "message/send", {"message": message, "configuration": {"blocking": False}})
    assert started["status"]["state"] in ("submitted", "working")
    threading.Timer(0.5, (world.directory / "later").touch).start()
    streamed = httpx.post(survivor_url + "/", json=jsonrpc("tasks/resubscribe", {"id": started["id"]}), timeout=30,
                          headers={"Accept": "text/event-stream"})
    events = [json.loads(line[5:]) for line in streamed.text.splitlines() if line.startswith("data:")]
    states = [e["result"].get("status", {}).get("state") for e in events if "result" in e]
    assert "completed" in states, streamed.text
    done = send(survivor_url, "tasks/get", {"id": started["id"]})
    assert done["status"]["state"] == "completed" and done["artifacts"][0]["parts"][0]["text"] == "worker: after"

    # the worker task that died with its host does not stay "working": the survivor fails it, saying why
    [lost] = [e["task"] for e in world.entries() if e["run"] == run and e["vertex"] == "slow" and e["pid"] == pid]
    failed = wait_for(lambda: (t := send(survivor_url, "tasks/get", {"id": lost}))["status"]["state"] != "working" and t,
                      timeout=15, what="the dead replica's task to end")
    assert failed["status"]["state"] == "failed", failed["status"]
    assert "stopped answering" in failed["status"]["message"]["parts"][0]["text"]


def test_the_coordinator_host_dies_mid_run_and_another_coordinator_finishes_the_run(world):
    run = run_graph(world.coordinator("c1"), "two")

    # w1..w4 are recorded, slow still runs: the coordinator's host dies
    wait_for(lambda: {"a", "w1", "w2", "w3", "w4"} <= asyncio.run(recorded(world, run)), what="w1..w4 recorded")
    assert world.calls(run, "ok")["sink"] == 0 and world.in_flight(run, "slow")
    world.hosts.down("c1")
    (world.directory / run).touch()
    task = settled(world.coordinator("c2"), run, timeout=30)
    assert task["status"]["state"] == "completed", task["status"]
    result = result_of(task)
    assert result["status"] == "done" and result["outputs"]["sink"].startswith("worker: "), result
    assert set(result["outputs"]) == {"a", *FAN, "sink"}
    ok = world.calls(run, "ok")
    # no finished call was made again: a, w1..w4 once; slow was in flight (it may have finished twice), sink once
    assert all(ok[v] == 1 for v in ("a", "w1", "w2", "w3", "w4", "sink")), ok


def test_postgres_restarted_under_load_fails_requests_clearly_and_recovers(world):
    """Requests during a restart of PostgreSQL get a JSON-RPC error (or complete); none is lost or done twice."""
    alive = [host for host in ("a1", "a2") if world.hosts.pids(host)]
    url = world.agent(alive[0])
    tag = uuid.uuid4().hex[:6]

    def one(index: int) -> tuple[str, dict]:
        message = {"role": "user", "messageId": f"{tag}-{index}", "parts": [{"kind": "text", "text": f"{tag}-{index}"}]}
        try:
            answer = httpx.post(url + "/", json=jsonrpc("message/send", {"message": message}), timeout=20).json()
        except httpx.HTTPError as exc:  # e.g. the server cut the connection: also an answer, not a hang
            answer = {"error": {"message": f"{type(exc).__name__}: {exc}"}}
        return f"{tag}-{index}", answer

    data = Path(next(world.directory.glob("pg")) / "db")

    def pg_ctl(*args: str) -> None:  # no pipes: a new postmaster would hold them open
        command = world.hosts.command("pg", ["runuser", "-u", "postgres", "--", _pg_bin("pg_ctl"), "-D", str(data),
                                             "-l", str(data.parent / "log"), *args])
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)

    from concurrent.futures import ThreadPoolExecutor

    retries = iter(range(1000, 2000))
    with ThreadPoolExecutor(8) as pool:
        before = [pool.submit(one, index) for index in range(0, 24)]
        pg_ctl("-m", "fast", "-w", "stop")  # under load: some of those requests are in flight
        during = list(pool.map(one, range(24, 32)))  # while it is down
        pg_ctl("-o", world.pg_options, "-w", "start")
        before = [future.result() for future in before]
        # recovered: once PostgreSQL is back, requests complete again
        after = wait_for(lambda: (a := one(next(retries)))[1].get("result", {}).get("status", {}).get("state") == "completed" and a,
                         timeout=20, what="requests to work again")
        later = list(pool.map(one, range(48, 56)))
    outcomes = before + during + [after] + later
    completed = {text: answer["result"]["id"] for text, answer in outcomes
                 if answer.get("result", {}).get("status", {}).get("state") == "completed"}
    failed = [answer for _, answer in outcomes if "error" in answer]
    for answer in failed:  # a clear error: a JSON-RPC error object with a message
        assert isinstance(answer["error"].get("message"), str) and answer["error"]["message"], answer
    assert len(completed) + len(failed) + sum(1 for _, a in outcomes if a.get("result", {}).get("status", {}).get("state") == "failed") == len(outcomes)
    assert all(a[1].get("result", {}).get("status", {}).get("state") == "completed" for a in later), later
    assert all("error" in answer for _, answer in during), during  # PostgreSQL was down: no task could be stored
    # not lost: every completed task is there after the restart; not duplicated: no message was worked on twice
    for text, task_id in completed.items():
        task = send(url, "tasks/get", {"id": task_id})
        assert task["status"]["state"] == "completed" and task["artifacts"][0]["parts"][0]["text"] == f"worker: {text}"
    worked = Counter(e["text"] for e in world.entries() if e["outcome"] == "ok" and e["text"].startswith(tag))
    assert worked and max(worked.values()) == 1, worked
    assert set(completed) <= set(worked)
