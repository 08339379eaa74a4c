"""Test helpers: free ports, the mesh CLI and `mesh up` run as a user would, curl, SSE parsing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The venv whose `mesh` the tests run: .venv, or the one scripts/test-versions made (MESH_VENV).
VENV_BIN = Path(os.environ.get("MESH_VENV") or ROOT / ".venv") / "bin"


def _port_slice() -> range:
    """The ports this test process hands out: below the kernel's ephemeral range, one share per pytest-xdist worker.

    A port the kernel picks (bind to port 0) comes from the range it also gives outgoing connections their source
    ports from, so with two workers making connections, a port picked here could be another process's source port
    by the time a server binds it ("port ... is already in use"); and two workers picking alike could collide.
    """
    try:
        ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    low, high = 20_000, max(ephemeral, 20_000 + 2_000)  # from 20000: clear of well-known ports (Ollama's 11434...)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    workers = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), 1)
    share = (high - low) // workers
    start = low + share * (int(worker) % workers if worker.isdigit() else 0)
    return range(start, start + share)


_PORTS = _port_slice()
_next_port = [int.from_bytes(os.urandom(2), "big") % len(_PORTS)]  # a random start: runs in a row do not reuse ports at once


def free_port() -> int:
    """A port nothing listens on, from this process's share (each port handed out once per pass over the share)."""
    for _ in range(len(_PORTS)):
        port = _PORTS[_next_port[0] % len(_PORTS)]
        _next_port[0] += 1
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_PORTS}")


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")

MESH = str(VENV_BIN / "mesh")


def eventually(condition, timeout: float = 30.0, interval: float = 0.05, what: str = "the condition"):
    """Poll ``condition()`` until it returns something truthy (returned), at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not hold within {timeout:g}s")
        time.sleep(interval)


async def eventually_async(condition, timeout: float = 30.0, interval: float = 0.05, what: str = "the condition"):
    """``eventually`` for async tests: never blocks the event loop."""
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not hold within {timeout:g}s")
        await asyncio.sleep(interval)


def write_mesh(directory: Path, agents: dict | None = None, extra: str = "", name: str = "test", *,
               tools: dict | None = None, graphs: dict | None = None, **top_level) -> Path:
    """A mesh.yaml in ``directory`` (state under it) with the given agents, tools and graphs; ``extra`` is raw YAML."""
    import yaml

    doc: dict = {"name": name, "state": {"dir": str(directory / "state")}, **top_level}
    for key, value in (("agents", agents), ("tools", tools), ("graphs", graphs)):
        if value:
            doc[key] = value
    path = directory / "mesh.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False) + extra)
    return path


def run_cli(*args: str, env: dict | None = None, timeout: float = 60, input: str | None = None) -> subprocess.CompletedProcess:
    """Run the `mesh` command as a user would; returns the completed process (text mode)."""
    return subprocess.run(
        [MESH, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
        env=mesh_env(env), input=input,
    )


def mesh_env(extra: dict | None = None) -> dict:
    """The environment for mesh processes in tests: tests/sample_agents importable, no colour."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", **(extra or {})}


class MeshUp:
    """`mesh up -c FILE` in the background, its output collected line by line."""

    def __init__(self, config: Path, *extra: str, env: dict | None = None) -> None:
        self.config = config
        self.process = subprocess.Popen(
            [MESH, "up", "-c", str(config), *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, cwd=ROOT, env=mesh_env(env),
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        """Block until a line containing ``text`` appears; return it (fail if the process ends first)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                if self.process.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(f"mesh up exited ({self.process.returncode}) before {text!r}:\n{self.output}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {text!r} within {timeout}s:\n{self.output}")
                self._changed.wait(remaining)

    def wait_ready(self, timeout: float = 60.0) -> None:
        self.wait_for("processes running", timeout)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def __enter__(self) -> MeshUp:
        return self

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:
            self.stop()


def jsonrpc(method: str, params: dict | None = None, id: int | str = 1) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": id, "method": method, "params": params or {}})


def curl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", str(int(timeout)), *args], capture_output=True, text=True, timeout=timeout + 5)


def curl_json(url: str, body: str | None = None, http: str = "--http2-prior-knowledge", headers: Iterable[str] = (),
              version: str | None = None) -> dict:
    """POST (or GET without body) with curl and parse the JSON answer; asserts the HTTP version used."""
    args = [http, "-w", "\n%{http_version} %{http_code}", url]
    for header in headers:
        args += ["-H", header]
    if version:
        args += ["-H", f"A2A-Version: {version}"]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data-binary", body]
    result = curl(*args)
    assert result.returncode == 0, result.stderr
    payload, _, status_line = result.stdout.rpartition("\n")
    http_version, code = status_line.split()
    expected = "2" if "http2" in http else "1.1"
    assert http_version == expected, f"curl used HTTP/{http_version}, wanted HTTP/{expected}"
    answer = json.loads(payload)
    answer["_status"] = int(code)
    return answer


def sse_events(text: str) -> list[dict]:
    """The JSON payloads of an SSE body (`data:` lines)."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(line[5:].lstrip() for line in block.splitlines() if line.startswith("data:"))
        if data:
            events.append(json.loads(data))
    return events


def free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


def consecutive_ports(count: int) -> int:
    """A port P with P .. P+count-1 all free (replica i listens on port + i)."""
    for _ in range(50):
        base = free_port()
        if base + count > _PORTS.stop:
            continue
        _next_port[0] += count - 1  # the ports after it are this call's
        try:
            held = []
            for port in range(base, base + count):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no consecutive free ports")
