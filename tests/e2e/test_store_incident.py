"""A task store that grew during an incident still starts at once (the sweep of unfinished tasks runs
beside serving), and a corrupt store file is refused in one line naming it (issue 11, item 2)."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

from tests.support.util import MESH, ROOT, curl_json, eventually, free_ports, jsonrpc, mesh_env, wait_for_port, write_mesh

STALE = 40_000


def send(url: str, text: str) -> dict:
    params = {"message": {"role": "user", "messageId": f"m-{time.monotonic_ns()}", "kind": "message",
                          "parts": [{"kind": "text", "text": text}]}}
    return curl_json(url + "/", jsonrpc("message/send", params))


def serve(config: Path, name: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([MESH, "serve", name, "-c", str(config)], stdout=log.open("w"), stderr=subprocess.STDOUT,
                            cwd=ROOT, env=mesh_env())


def states(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT json_extract(status, '$.state'), count(*) FROM a2a_tasks_echo GROUP BY 1").fetchall())


def stop(process: subprocess.Popen) -> int:
    process.terminate()
    return process.wait(30)


def test_a_store_full_of_unfinished_tasks_starts_at_once_and_is_swept(tmp_path):
    (port,) = free_ports(1)
    config = write_mesh(tmp_path, {"echo": {"module": "agents.echo", "port": port}})
    url = f"http://127.0.0.1:{port}"
    db = tmp_path / "state" / "tasks" / "echo.sqlite"
    first = serve(config, "echo", tmp_path / "first.log")
    try:
        wait_for_port(port)
        template = send(url, "template")["result"]["id"]
    finally:
        assert stop(first) == 0
    # An incident's worth of tasks left working, written straight into the agent's table.
    with sqlite3.connect(db) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(a2a_tasks_echo)")]
        chosen = ", ".join(
            "'stale-' || n.i" if c == "id" else
            "json_set(t.status, '$.state', 'TASK_STATE_WORKING')" if c == "status" else f't."{c}"'
            for c in columns)
        conn.execute(
            f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {STALE}) "
            f"INSERT INTO a2a_tasks_echo ({', '.join(columns)}) "
            f"SELECT {chosen} FROM n, (SELECT * FROM a2a_tasks_echo WHERE id = ?) AS t", (template,))
    assert states(db)["TASK_STATE_WORKING"] == STALE

    started = time.monotonic()
    second = serve(config, "echo", tmp_path / "second.log")
    try:
        wait_for_port(port)
        answer = send(url, "served at once")
        ready = time.monotonic() - started
        assert answer["result"]["status"]["state"] == "completed"
        assert ready < 15, ready  # was: the sweep held start-up past hypercorn's timeout
        eventually(lambda: states(db).get("TASK_STATE_FAILED") == STALE, 60, what="the stale tasks marked failed")
        assert not states(db).get("TASK_STATE_WORKING")
        stale = curl_json(url + "/", jsonrpc("tasks/get", {"id": "stale-17"}))["result"]
        assert stale["status"]["state"] == "failed"
        assert "restarted" in stale["status"]["message"]["parts"][0]["text"]
    finally:
        assert stop(second) == 0
    assert f"marked {STALE} unfinished tasks" in (tmp_path / "second.log").read_text()


def test_a_corrupt_store_is_refused_in_one_line_an_empty_one_starts_empty(tmp_path):
    (port,) = free_ports(1)
    config = write_mesh(tmp_path, {"echo": {"module": "agents.echo", "port": port}})
    db = tmp_path / "state" / "tasks" / "echo.sqlite"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is no database, it was overwritten by something else" * 100)
    done = subprocess.run([MESH, "serve", "echo", "-c", str(config)], capture_output=True, text=True,
                          cwd=ROOT, env=mesh_env(), timeout=60)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    (line,) = [line for line in output.splitlines() if str(db) in line]
    assert "not a readable SQLite database" in line and "move it aside" in line, line

    db.write_bytes(b"")
    process = serve(config, "echo", tmp_path / "empty.log")
    try:
        wait_for_port(port)
        assert send(f"http://127.0.0.1:{port}", "hello")["result"]["status"]["state"] == "completed"
    finally:
        assert stop(process) == 0
    assert "is empty (0 bytes)" in (tmp_path / "empty.log").read_text()
