"""The client commands as a user types them: ls, card, send (plain, --stream, --json, --data), get, cancel."""

import json
import subprocess

import pytest

from tests.support.util import (
    MESH,
    ROOT,
    MeshUp,
    free_ports,
    mesh_env,
    run_cli,
    write_mesh,
)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cli")
    echo, primes, down = free_ports(3)
    config = write_mesh(directory, {
        "echo": {"module": "agents.echo", "port": echo},
        "primes": {"module": "agents.primes", "port": primes},
        "remote": {"url": f"http://127.0.0.1:{down}"},  # an external agent that does not answer
    })
    with MeshUp(config, "--only", "echo,primes") as up:
        up.wait_ready()
        up.config = str(config)
        yield up
        assert up.stop() == 0


def cli(mesh, *args, **kwargs):
    return run_cli(*args, "-c", mesh.config, **kwargs)


def test_ls(mesh):
    result = cli(mesh, "ls", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    agents = {a["name"]: a for a in listing["agents"]}
    assert agents["echo"]["answers"] and agents["echo"]["skills"] == ["echo"]
    assert agents["primes"]["answers"] and agents["primes"]["kind"] == "local"
    assert not agents["remote"]["answers"] and agents["remote"]["kind"] == "external"
    assert "connection refused" in agents["remote"]["error"]
    plain = cli(mesh, "ls").stdout
    assert "echo" in plain and "yes" in plain and "no (connection refused" in plain


def test_card(mesh):
    plain = cli(mesh, "card", "primes")
    assert plain.returncode == 0
    assert plain.stdout.startswith("Primes 1.0.0")
    assert "skill count-primes: Count primes" in plain.stdout and "JSONRPC   0.3" in plain.stdout
    as_json = json.loads(cli(mesh, "card", "echo", "--json").stdout)
    assert as_json["name"] == "Echo" and as_json["skills"][0]["id"] == "echo"


def test_send(mesh):
    result = cli(mesh, "send", "echo", "hello", "there")
    assert result.returncode == 0, result.stderr
    assert "[completed]" in result.stdout and "artifact echo: hello there" in result.stdout


def test_send_data(mesh):
    result = cli(mesh, "send", "primes", "--data", '{"limit": 1000}')
    assert "There are 168 primes below 1,000" in result.stdout


def test_send_from_stdin(mesh):
    result = cli(mesh, "send", "echo", "-", input="piped text\n")
    assert "artifact echo: piped text" in result.stdout


def test_send_stream_shows_progress(mesh):
    result = cli(mesh, "send", "primes", "primes below 5*10^6", "--stream")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("task ") and "[submitted]" in lines[0]
    assert any(line.startswith("[working] sieved") for line in lines)
    assert any("artifact summary: There are 348,513 primes below 5,000,000" in line for line in lines)
    assert lines[-1] == "[completed]"


def test_send_json_lines(mesh):
    result = cli(mesh, "send", "echo", "as json", "--stream", "--json")
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert "task" in events[0]
    assert events[-1]["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED"


def test_get_and_cancel(mesh):
    process = subprocess.Popen([MESH, "send", "primes", "primes below 10^11", "--stream", "--json", "-c", mesh.config],
                               stdout=subprocess.PIPE, text=True, cwd=ROOT, env=mesh_env())
    first = json.loads(process.stdout.readline())
    task_id = first["task"]["id"]
    canceled = cli(mesh, "cancel", "primes", task_id)
    assert canceled.returncode == 0, canceled.stderr
    assert f"task {task_id} [canceled]" in canceled.stdout
    assert process.wait(30) == 1  # the sender sees its task end canceled
    shown = cli(mesh, "get", "primes", task_id, "--json")
    assert json.loads(shown.stdout)["status"]["state"] == "TASK_STATE_CANCELED"


@pytest.mark.parametrize("args, message", [
    (("send", "nosuch", "x"), "no agent named 'nosuch'"),
    (("send", "remote", "x"), "cannot reach remote at http://127.0.0.1:"),
    (("send", "echo"), "nothing to send"),
    (("send", "echo", "--data", "{bad"), "--data is not JSON"),
    (("get", "echo", "no-such-task"), "TaskNotFoundError: Task not found"),
    (("card", "echo", "--extended"), "echo has no extended card"),
])
def test_errors_are_one_clear_line(mesh, args, message):
    result = cli(mesh, *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
