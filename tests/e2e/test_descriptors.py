"""File descriptors (issue 11, item 4): a connect/close flood against an agent with a low descriptor
limit causes no outage, closed connections give their descriptor back at once, accept errors are
logged once, and the soft limit is raised where the hard one allows."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import time
import urllib.request

from tests.support.util import MESH, ROOT, eventually, free_ports, mesh_env, wait_for_port, write_mesh


def serve(tmp_path, soft: int, hard: int):
    (port,) = free_ports(1)
    config = write_mesh(tmp_path, {"echo": {"module": "agents.echo", "port": port}})
    log = tmp_path / "echo.log"
    process = subprocess.Popen(
        [MESH, "serve", "echo", "-c", str(config)], stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT,
        env=mesh_env(), preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
    )
    wait_for_port(port)
    return process, port, log


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def health(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
        return answer.read()


def test_a_connect_close_flood_under_a_low_descriptor_limit_is_no_outage(tmp_path):
    process, port, log = serve(tmp_path, 256, 256)
    try:
        baseline = descriptors(process.pid)
        for i in range(1100):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                if i % 2:  # half send a request and read the answer, half just connect and close
                    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                    sock.recv(4096)
        ended = time.monotonic()
        assert b'"status":"ok"' in health(port)
        assert time.monotonic() - ended < 5
        eventually(lambda: descriptors(process.pid) <= baseline + 10, 5, what="descriptors given back")
    finally:
        process.terminate()
        process.wait(30)
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert text.count("cannot accept connections") <= 2


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one(tmp_path):
    process, port, _ = serve(tmp_path, 256, 4096)
    try:
        limits = open(f"/proc/{process.pid}/limits").read()
        line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
        assert line.split()[3:5] == ["4096", "4096"], line
    finally:
        process.terminate()
        process.wait(30)
