"""Hostile traffic against a real agent process: HTTP/2 rapid reset, clients that go away, a flood of work."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.support.attacks import rapid_reset
from tests.support.util import MeshUp, curl_json, eventually, free_ports, jsonrpc, write_mesh


def rss_kb(pid: int, field: str = "VmHWM") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def agent_pid(mesh: MeshUp, name: str) -> int:
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(mesh.process.pid)], capture_output=True, text=True).stdout
    return next(int(line.split()[0]) for line in out.splitlines() if f"serve {name}" in line)


def states(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as db:
        table = db.execute("select name from sqlite_master where type='table' and name like 'a2a_tasks_%'").fetchone()[0]
        return dict(db.execute(f"select json_extract(status, '$.state'), count(*) from {table} group by 1").fetchall())


def message(text: str) -> dict:
    return {"message": {"role": "user", "messageId": f"m-{text[:8]}", "kind": "message", "parts": [{"kind": "text", "text": text}]}}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hostile")
    echo, primes = free_ports(2)
    config = write_mesh(directory, {"echo": {"module": "agents.echo", "port": echo},
                                    "primes": {"module": "agents.primes", "port": primes}},
                        # Shutdown waits for no leftover of the flood: the module's teardown takes seconds, not the default 10.
                        server={"max_concurrent_requests": 64, "graceful_timeout": 3})
    with MeshUp(config) as up:
        up.wait_ready()
        up.urls = {"echo": f"http://127.0.0.1:{echo}", "primes": f"http://127.0.0.1:{primes}"}
        up.ports = {"echo": echo, "primes": primes}
        up.state = directory / "state" / "tasks"
        yield up
        up.stop()


def test_rapid_reset_neither_takes_the_agent_down_nor_leaves_work_behind(mesh):
    pid = agent_pid(mesh, "echo")
    before = rss_kb(pid, "VmRSS")
    attack = rapid_reset(mesh.ports["echo"], resets=10_000, time_limit=60)
    assert attack["resets"] == 10_000
    # The agent answers a normal request within seconds of the burst.
    answer = eventually(lambda: (lambda a: a if "result" in a else None)(
        curl_json(mesh.urls["echo"] + "/", jsonrpc("message/send", message("after the burst")))), timeout=10,
        interval=0.2, what="an answer after the burst")
    assert answer["result"]["status"]["state"] == "completed"
    # Its memory stayed bounded, and no request it started is left working.
    assert rss_kb(pid) - before < 150_000, f"peak RSS grew by {rss_kb(pid) - before} kB"
    eventually(lambda: set(states(mesh.state / "echo.sqlite")) <= {"TASK_STATE_COMPLETED", "TASK_STATE_CANCELED",
                                                                    "TASK_STATE_FAILED"}, timeout=20,
               what="every task of the burst settled")
    started = sum(states(mesh.state / "echo.sqlite").values())
    assert started < attack["resets"] / 10, f"{started} of {attack['resets']} reset requests were run"
    mesh.wait_for("ENHANCE_YOUR_CALM")  # the connection that kept resetting was told so


def test_a_request_whose_client_goes_away_stops_its_work(mesh):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": message("primes below 10^11")})
    client = subprocess.Popen(["curl", "-s", "--http2-prior-knowledge", mesh.urls["primes"] + "/", "-H",
                               "Content-Type: application/json", "-d", body], stdout=subprocess.DEVNULL)

    def working() -> list[dict]:
        listed = curl_json(mesh.urls["primes"] + "/", jsonrpc("ListTasks", {}), version="1.0")["result"]["tasks"]
        return [t for t in listed if t["status"]["state"] == "TASK_STATE_WORKING"]

    eventually(working, timeout=20, what="the primes task working")
    client.kill()
    client.wait()
    eventually(lambda: not working(), timeout=20, what="the abandoned task stopped")


def test_more_requests_than_the_limit_get_a_busy_answer_not_a_queue(mesh):
    # 64 requests at work at once is this agent's limit: 80 concurrent long ones, 16+ are told to come back.
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": message("primes below 10^11")})
    clients = [subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "8", mesh.urls["primes"] + "/",
                                 "-H", "Content-Type: application/json", "-d", body], stdout=subprocess.PIPE, text=True)
               for _ in range(80)]
    codes = [c.communicate()[0] for c in clients]
    assert codes.count("503") >= 16, codes
    answer = eventually(lambda: (lambda a: a if "result" in a else None)(
        curl_json(mesh.urls["primes"] + "/", jsonrpc("message/send", message("primes below 100")))), timeout=20,
        what="the agent answering again")
    assert answer["result"]["status"]["state"] == "completed"
