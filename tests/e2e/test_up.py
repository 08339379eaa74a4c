"""`mesh up`: the table, log prefixes, Ctrl-C/SIGTERM stopping everything, and clear start-up failures."""

import os
import signal
import socket
import subprocess
import threading

import pytest

from tests.support.util import (
    MeshUp,
    curl_json,
    eventually,
    free_ports,
    jsonrpc,
    wait_for_port,
    write_mesh,
)


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still "exists" until reaped; count it as gone
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_until_gone(pids: list[int], timeout: float = 15) -> list[int]:
    try:
        eventually(lambda: not any(alive(p) for p in pids), timeout)
    except AssertionError:
        pass
    return [p for p in pids if alive(p)]


@pytest.fixture
def two_agents(tmp_path):
    ports = free_ports(2)
    config = write_mesh(tmp_path, {
        "echo": {"module": "agents.echo", "port": ports[0]},
        "primes": {"module": "agents.primes", "port": ports[1]},
    })
    return config, ports


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_up_prints_the_table_and_stops_everything(two_agents, sig):
    config, ports = two_agents
    with MeshUp(config) as up:
        up.wait_ready()
        table = "\n".join(line for line in up.lines if line.startswith("mesh"))
        assert "AGENT" in table and "PROTOCOLS" in table and "SKILLS" in table and "AUTH" in table
        assert f"echo    http://127.0.0.1:{ports[0]}" in table
        assert "count-primes" in table and "h2c" in table
        assert any(line.startswith("echo   |") and "ready at" in line for line in up.lines)
        children = children_of(up.process.pid)
        assert len(children) == 2
        assert up.stop(sig) == 0
        assert "stopped" in up.lines[-1]
    assert wait_until_gone(children) == []
    assert all(port_is_free(p) for p in ports)


def test_killing_the_supervisor_takes_the_agents_down(two_agents):
    config, ports = two_agents
    with MeshUp(config) as up:
        up.wait_ready()
        children = children_of(up.process.pid)
        assert up.stop(signal.SIGKILL) == -signal.SIGKILL
    assert wait_until_gone(children) == [], "an agent outlived its supervisor"
    assert all(port_is_free(p) for p in ports)


def test_a_port_in_use_is_named_and_nothing_starts(two_agents):
    config, ports = two_agents
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports[1]))
        squatter.listen()
        with MeshUp(config) as up:
            code = up.process.wait(30)
            up._reader.join(5)
    assert code == 1
    assert f"cannot start agent primes: port {ports[1]} on 127.0.0.1 is already in use" in up.output
    assert "echo   |" not in up.output  # nothing was started


def test_an_agent_that_fails_to_start_stops_the_others(tmp_path):
    ports = free_ports(2)
    config = write_mesh(tmp_path, {
        "echo": {"module": "agents.echo", "port": ports[0]},
        "broken": {"module": "tests.support.agents.broken", "port": ports[1]},
    })
    with MeshUp(config) as up:
        code = up.process.wait(60)
        up._reader.join(5)
    assert code == 1
    assert "agent broken failed to start (exit code 3)" in up.output
    assert "no model configured: set settings.model" in up.output
    assert port_is_free(ports[0]) and port_is_free(ports[1])


def test_only_starts_the_named_agents(two_agents):
    config, ports = two_agents
    with MeshUp(config, "--only", "primes") as up:
        up.wait_ready()
        assert "1 processes running" in up.output
        wait_for_port(ports[1])
        assert port_is_free(ports[0])
        assert up.stop() == 0


def test_only_with_an_unknown_name(two_agents):
    config, _ = two_agents
    with MeshUp(config, "--only", "nope") as up:
        assert up.process.wait(30) == 1
        up._reader.join(5)
    assert "--only names no local agent or HTTP tool: nope" in up.output


def test_broken_config_is_refused_before_anything_starts(tmp_path):
    (port,) = free_ports(1)
    config = write_mesh(tmp_path, {"echo": {"module": "agents.echo", "port": port, "colour": "red"}})
    with MeshUp(config) as up:
        assert up.process.wait(30) == 2
        up._reader.join(5)
    assert "agents.echo.colour: unknown key 'colour'" in up.output


def test_shutdown_finishes_in_flight_requests(two_agents):
    config, ports = two_agents
    url = f"http://127.0.0.1:{ports[1]}/"
    with MeshUp(config) as up:
        up.wait_ready()
        answers = []
        body = jsonrpc("message/send", {"message": {"role": "user", "messageId": "inflight", "kind": "message",
                                                    "parts": [{"kind": "text", "text": "primes below 3*10^8"}]}})
        sender = threading.Thread(target=lambda: answers.append(curl_json(url, body)))
        sender.start()
        wait_until_working(url)
        assert up.stop(signal.SIGTERM) == 0
        sender.join(60)
    assert answers, "the in-flight request got no answer"
    task = answers[0]["result"]
    assert task["status"]["state"] == "completed"
    summary = next(a for a in task["artifacts"] if a["name"] == "summary")
    assert "16,252,325 primes below 300,000,000" in summary["parts"][0]["text"]


def wait_until_working(url: str, timeout: float = 30) -> None:
    """Poll ListTasks until some task is working: the request is in flight."""
    eventually(lambda: any(t["status"]["state"] == "TASK_STATE_WORKING"
                           for t in curl_json(url, jsonrpc("ListTasks", {}), version="1.0")["result"]["tasks"]),
               timeout, interval=0.02, what="a task working")


def test_a_killed_agent_is_started_again_within_seconds(two_agents):
    config, ports = two_agents
    with MeshUp(config) as up:
        up.wait_ready()
        echo = next(p for p in children_of(up.process.pid) if "serve echo" in open(f"/proc/{p}/cmdline").read().replace("\0", " "))
        os.kill(echo, signal.SIGKILL)
        assert "restarting in 0.5s (restart 1)" in up.wait_for("agent echo exited unexpectedly (exit code -9)")
        up.wait_for("agent echo restarted", timeout=10)
        answer = eventually(lambda: _answers(ports[0]), timeout=20, what="echo answering again")
        assert answer["result"]["artifacts"][0]["parts"][0]["text"] == "back"
        again = [p for p in children_of(up.process.pid) if "serve echo" in open(f"/proc/{p}/cmdline").read().replace("\0", " ")]
        assert len(again) == 1 and again[0] != echo
        assert not any("primes exited" in line for line in up.lines)  # the other agent was left alone
        assert up.stop() == 0


def _answers(port: int):
    try:
        return curl_json(f"http://127.0.0.1:{port}/", jsonrpc("message/send", {"message": {
            "role": "user", "messageId": "m-back", "kind": "message", "parts": [{"kind": "text", "text": "back"}]}}))
    except AssertionError:
        return None


def test_an_edit_of_mesh_yaml_restarts_only_the_agent_it_changed(two_agents):
    config, ports = two_agents

    def pids() -> dict[str, int]:
        found = {}
        for pid in children_of(up.process.pid):
            with open(f"/proc/{pid}/cmdline") as cmdline:
                args = cmdline.read().split("\0")
            found[args[args.index("serve") + 1]] = pid
        return found

    with MeshUp(config) as up:
        up.wait_ready()
        before = pids()
        text = config.read_text()
        # an invalid edit: reported with its line, nothing restarts
        config.write_text(text.replace(f"port: {ports[1]}", "port: not-a-port"))
        problem = up.wait_for("is not valid; nothing was restarted", timeout=15)
        assert str(config) in problem
        eventually(lambda: any("primes" in line and "port" in line and f"{config.name}:" in line for line in up.lines),
                   timeout=5, what="the problem with its file:line")
        assert pids() == before
        # a valid edit of primes' entry: primes restarts, echo does not
        config.write_text(text.replace(f"port: {ports[1]}", f"port: {ports[1]}\n    max_body_bytes: 100000"))
        up.wait_for("changed: restarting agent primes", timeout=15)
        up.wait_for("agent primes restarted", timeout=15)
        after = eventually(lambda: (p := pids()) and len(p) == 2 and p, timeout=10, what="both agents running")
        assert after["echo"] == before["echo"] and after["primes"] != before["primes"]
        assert not any("exited unexpectedly" in line for line in up.lines)
        assert up.stop() == 0
