"""Hosts made of Linux network namespaces on one bridge, for multi-host tests (root only).

``Hosts(["pg", "a1", ...])`` creates a bridge with an address for the test
process, and per host a namespace with a veth link onto the bridge and one
address; ``run(host, command)`` starts a process inside a host, ``down(host)``
kills every process of a host, ``cut(host)`` takes its link down. Everything
is removed on ``close()``. Names are random, so runs do not collide.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import uuid


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def netns_unavailable() -> str | None:
    """Why network namespaces cannot be made here (None if they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"mhp{uuid.uuid4().hex[:8]}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


class Hosts:
    def __init__(self, names: list[str]) -> None:
        tag = uuid.uuid4().hex[:6]
        self.subnet = f"10.{random.randint(100, 250)}.{random.randint(0, 250)}"
        self.bridge = f"mhb{tag}"
        self.gateway = f"{self.subnet}.1"  # the test process's address on the bridge
        self.namespaces: dict[str, str] = {}
        self.addresses: dict[str, str] = {}
        self.processes: dict[str, list[subprocess.Popen]] = {}
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for index, name in enumerate(names, 2):
                namespace, veth = f"mh{tag}{name}", f"mv{tag}{index}"
                _ip("netns", "add", namespace)
                self.namespaces[name] = namespace
                _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
                _ip("link", "set", veth, "master", self.bridge, "up")
                address = f"{self.subnet}.{index}"
                _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
                _ip("-n", namespace, "link", "set", "eth0", "up")
                _ip("-n", namespace, "link", "set", "lo", "up")
                self.addresses[name] = address
                self.processes[name] = []
        except BaseException:
            self.close()
            raise

    def command(self, host: str, command: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespaces[host], *command]

    def run(self, host: str, command: list[str], **options) -> subprocess.Popen:
        process = subprocess.Popen(self.command(host, command), start_new_session=True, **options)
        self.processes[host].append(process)
        return process

    def pids(self, host: str) -> list[int]:
        listed = _ip("netns", "pids", self.namespaces[host], check=False).stdout.split()
        return [int(pid) for pid in listed]

    def down(self, host: str) -> None:
        """The host dies: every process in it is killed at once."""
        for pid in self.pids(host):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for process in self.processes[host]:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def cut(self, host: str) -> None:
        """The host's network link goes down (its processes live on, unreachable)."""
        _ip("-n", self.namespaces[host], "link", "set", "eth0", "down")

    def close(self) -> None:
        for host in list(self.namespaces):
            self.down(host)
            _ip("netns", "del", self.namespaces[host], check=False)
        _ip("link", "del", self.bridge, check=False)
        self.namespaces.clear()
