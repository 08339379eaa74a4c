"""Figures for README "Reliability": one echo agent (`mesh serve`) under HTTP/2 rapid reset and a connect/close flood.

    .venv/bin/python scripts/bench/hostile.py [--resets 20000] [--connections 1100]

Prints resets absorbed, GOAWAYs, the agent's peak memory (VmHWM), how long after the burst a
normal message/send is answered, tasks left working; then descriptors and recovery after a
connect/close flood with RLIMIT_NOFILE 256.
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.attacks import rapid_reset  # noqa: E402
from tests.support.util import MESH, free_ports, mesh_env, wait_for_port, write_mesh  # noqa: E402


def status(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def send(port: int, text: str) -> dict:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": {
        "role": "user", "messageId": f"m{time.monotonic_ns()}", "parts": [{"kind": "text", "text": text}]}}}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


def agent(directory: Path, nofile: int | None = None) -> tuple[subprocess.Popen, int]:
    (port,) = free_ports(1)
    config = write_mesh(directory, {"echo": {"module": "agents.echo", "port": port}})
    limit = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))) if nofile else None
    process = subprocess.Popen([MESH, "serve", "echo", "-c", str(config)], stdout=(directory / "echo.log").open("w"),
                               stderr=subprocess.STDOUT, cwd=ROOT, env=mesh_env(), preexec_fn=limit)
    wait_for_port(port)
    return process, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resets", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=1100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "reset"
        directory.mkdir()
        process, port = agent(directory)
        try:
            send(port, "warm up")
            before = status(process.pid, "VmRSS")
            started = time.monotonic()
            attack = rapid_reset(port, args.resets, time_limit=120)
            burst = time.monotonic() - started
            ended = time.monotonic()
            send(port, "still there?")
            recovery = time.monotonic() - ended
            peak = status(process.pid, "VmHWM")
            time.sleep(2)
            with sqlite3.connect(directory / "state" / "tasks" / "echo.sqlite") as db:
                states = dict(db.execute("SELECT json_extract(status, '$.state'), count(*) FROM a2a_tasks_echo GROUP BY 1"))
        finally:
            process.terminate()
            process.wait(30)
        print(f"rapid reset: {attack['resets']:,} resets in {burst:.1f}s over {attack['connections']} connections, "
              f"{len(attack['goaways'])} GOAWAY; RSS {before:.0f} MB before, peak {peak:.0f} MB; "
              f"message/send answered {recovery:.2f}s after the burst; tasks stored by state: {states}")

        directory = Path(tmp) / "flood"
        directory.mkdir()
        process, port = agent(directory, nofile=256)
        try:
            started = time.monotonic()
            failed = 0
            for i in range(args.connections):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                        if i % 2:
                            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                            sock.recv(4096)
                except OSError:
                    failed += 1
            flood = time.monotonic() - started
            ended = time.monotonic()
            send(port, "still there?")
            recovery = time.monotonic() - ended
            time.sleep(0.5)
            fds = len(list(Path(f"/proc/{process.pid}/fd").iterdir()))
        finally:
            process.terminate()
            process.wait(30)
        log = (directory / "echo.log").stat().st_size
        print(f"connect/close flood: {args.connections:,} connections in {flood:.1f}s with 256 descriptors, {failed} failed; "
              f"message/send answered {recovery:.2f}s after; {fds} descriptors open 0.5s later; log {log / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
