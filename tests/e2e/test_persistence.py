"""Durable tasks: after an agent restarts, tasks/get still returns its earlier tasks (SQLite and PostgreSQL),
and tasks cut off by a shutdown or a crash end failed with a reason instead of 'working' forever."""

import json
import signal

import pytest

from tests.support.util import (
    MeshUp,
    curl_json,
    eventually,
    free_ports,
    jsonrpc,
    write_mesh,
)


def send(url: str, text: str, **configuration) -> dict:
    params = {"message": {"role": "user", "messageId": f"m-{text[:12]}", "kind": "message",
                          "parts": [{"kind": "text", "text": text}]}}
    if configuration:
        params["configuration"] = configuration
    return curl_json(url + "/", jsonrpc("message/send", params))["result"]


def get(url: str, task_id: str) -> dict:
    return curl_json(url + "/", jsonrpc("tasks/get", {"id": task_id}))["result"]


def wait_for_progress(url: str, task_id: str, timeout: float = 30) -> None:
    """Poll until the task has stored a progress report."""
    eventually(lambda: "sieved" in json.dumps(get(url, task_id)["status"]), timeout, what=f"progress stored for {task_id}")


@pytest.fixture(params=["sqlite", "postgresql"])
def mesh_file(request, tmp_path):
    echo, primes = free_ports(2)
    agents = {"echo": {"module": "agents.echo", "port": echo}, "primes": {"module": "agents.primes", "port": primes}}
    config = write_mesh(tmp_path, agents)
    env = {}
    if request.param == "postgresql":
        env["TEST_DATABASE_URL"] = request.getfixturevalue("postgres_url")
        config.write_text(config.read_text() + "")
        text = config.read_text().replace("state:\n", "state:\n  database: ${TEST_DATABASE_URL}\n", 1)
        config.write_text(text)
    return config, env, f"http://127.0.0.1:{echo}", f"http://127.0.0.1:{primes}"


def test_tasks_survive_a_restart(mesh_file):
    config, env, echo, primes = mesh_file
    with MeshUp(config, env=env) as up:
        up.wait_ready()
        first = send(echo, "remember me")
        counted = send(primes, "primes below 10000")
        assert up.stop() == 0
    with MeshUp(config, env=env) as up:
        up.wait_ready()
        again = get(echo, first["id"])
        assert again["status"]["state"] == "completed"
        assert again["artifacts"][0]["parts"] == [{"kind": "text", "text": "remember me"}]
        assert again["history"][0]["parts"][0]["text"] == "remember me"
        summary = next(a for a in get(primes, counted["id"])["artifacts"] if a["name"] == "summary")
        assert "1,229 primes below 10,000" in summary["parts"][0]["text"]
        assert up.stop() == 0


def test_agents_do_not_see_each_others_tasks(mesh_file):
    config, env, echo, primes = mesh_file
    with MeshUp(config, env=env) as up:
        up.wait_ready()
        task = send(echo, "only echo has this")
        error = curl_json(primes + "/", jsonrpc("tasks/get", {"id": task["id"]}))["error"]
        assert error["code"] == -32001
        assert up.stop() == 0


def test_a_task_cut_off_by_shutdown_ends_failed(mesh_file):
    config, env, echo, primes = mesh_file
    with MeshUp(config, env=env) as up:
        up.wait_ready()
        running = send(primes, "primes below 10^11", blocking=False)
        assert running["status"]["state"] in ("submitted", "working")
        assert up.stop() == 0
        assert "tasks were still running at shutdown and are marked failed" in up.output
    with MeshUp(config, env=env) as up:
        up.wait_ready()
        task = get(primes, running["id"])
        assert task["status"]["state"] == "failed"
        assert "shut down before this task finished" in task["status"]["message"]["parts"][0]["text"]
        assert up.stop() == 0


def test_a_task_cut_off_by_a_crash_ends_failed_at_the_next_start(tmp_path):
    # SQLite only: the file belongs to this one agent, so at start-up anything
    # unfinished in it was left by a process that died.
    (port,) = free_ports(1)
    config = write_mesh(tmp_path, {"primes": {"module": "agents.primes", "port": port}})
    url = f"http://127.0.0.1:{port}"
    with MeshUp(config) as up:
        up.wait_ready()
        running = send(url, "primes below 10^11", blocking=False)
        wait_for_progress(url, running["id"])
        assert up.stop(signal.SIGKILL) == -signal.SIGKILL  # the supervisor dies; the kernel SIGTERMs the agent
    with MeshUp(config) as up:
        up.wait_ready()
        task = get(url, running["id"])
        assert task["status"]["state"] == "failed"
        assert "before this task finished" in task["status"]["message"]["parts"][0]["text"]
        assert up.stop() == 0
