"""`mesh up`: runs every local agent (and HTTP tool server) of mesh.yaml as its own process until Ctrl-C.

It refuses to start when a port is taken, waits until each server answers,
prints what runs where, streams every process's log with its name in front,
starts a process that dies again (with backoff, said in the log), and on SIGINT/SIGTERM stops them all: SIGTERM first (servers finish their
in-flight requests), SIGKILL for any still alive after the grace period.
Children also get SIGTERM from the kernel if this process dies first
(PR_SET_PDEATHSIG), so no server outlives its supervisor.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from mesh.cli.output import colour_for, paint

_PR_SET_PDEATHSIG = 1


# A process that dies is started again after 0.5 s, then 1, 2, 4 ... up to 30 s while it keeps dying
# within a minute of its start.
RESTART_BACKOFF = 0.5
RESTART_MAX_BACKOFF = 30.0
RESTART_RESET_AFTER = 60.0
CONFIG_POLL = 0.5  # seconds between looks at mesh.yaml's modification time


@dataclass
class Service:
    """One process to supervise and how to tell it is ready."""

    kind: str  # "agent", "tool", ...
    name: str
    command: list[str]
    host: str
    port: int | None
    ready_url: str | None
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    process: asyncio.subprocess.Process | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    started_at: float = 0.0
    restarts: int = 0  # quick deaths in a row (reset once it has run RESTART_RESET_AFTER seconds)
    reload: bool = False  # being stopped to start again with its new entry of mesh.yaml
    state: str = "starting"  # starting, running, restarting, stopped (shown by the console)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


class StartupFailed(Exception):
    pass


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: children are still stopped by the normal path


def port_problem(host: str, port: int) -> str | None:
    """Why ``port`` cannot be bound on ``host`` right now, or None if it can."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "already in use"
            return exc.strerror or str(exc)
    return None


class Supervisor:
    def __init__(self, services: list[Service], startup_timeout: float, grace: float,
                 out=None, on_ready: Callable[[], Awaitable[str]] | None = None,
                 watch: tuple[Path, Callable[[], dict[str, str]]] | None = None,
                 background: list[Callable[[asyncio.Event], Awaitable[None]]] | None = None) -> None:
        self.services = services
        # Servers run in this process (the console) until the event given them is set, at the end of run().
        self.background = background or []
        # (mesh.yaml, a function reading it again: service name -> a fingerprint of its entry; raises on a bad file)
        self.watch = watch
        self._fingerprints = watch[1]() if watch else {}
        self.startup_timeout = startup_timeout
        self.grace = grace
        self.out = out or sys.stdout
        self.on_ready = on_ready
        self.stop = asyncio.Event()
        self._pumps: list[asyncio.Task] = []
        width = max([len(s.name) for s in services] + [4])
        self._prefix = {
            s.name: paint(s.name.ljust(width) + " |", colour_for(i), self.out) for i, s in enumerate(services)
        }
        self._own_prefix = paint("mesh".ljust(width) + " |", 1, self.out)

    def say(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            self.out.write(f"{self._own_prefix} {line}\n")
        self.out.flush()

    async def run(self) -> int:
        for service in self.services:
            if service.port is not None:
                problem = port_problem(service.host, service.port)
                if problem:
                    self.say(f"cannot start {service.label}: port {service.port} on {service.host} is {problem}")
                    return 1
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)
        closing = asyncio.Event()
        extra = [asyncio.create_task(serve(closing)) for serve in self.background]
        try:
            try:
                await self._start_all()
            except StartupFailed as exc:
                self.say(str(exc))
                return 1
            if self.stop.is_set():
                return 0
            if self.on_ready:
                try:
                    self.say(await self.on_ready())
                except Exception as exc:  # the table is a courtesy: never a reason to stop the mesh
                    self.say(f"(could not build the table: {type(exc).__name__}: {exc})")
            self.say(f"{len(self.services)} processes running; Ctrl-C stops them all")
            return await self._watch()
        finally:
            closing.set()
            await self._stop_all()
            for task, result in zip(extra, await asyncio.gather(*extra, return_exceptions=True)):
                if isinstance(result, Exception):
                    self.say(f"(a server of mesh up itself stopped: {type(result).__name__}: {result})")
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def process_states(self) -> dict[str, dict[str, object]]:
        """Each process's name -> state, pid and quick restarts in a row (for the console)."""
        return {s.name: {"kind": s.kind, "state": s.state, "pid": s.process.pid if s.process else None,
                         "restarts": s.restarts} for s in self.services}

    def _on_signal(self) -> None:
        if self.stop.is_set():  # a second Ctrl-C: no more waiting
            for service in self.services:
                if service.process and service.process.returncode is None:
                    service.process.kill()
        self.stop.set()

    async def _start_all(self) -> None:
        started = time.monotonic()
        for service in self.services:
            await self._spawn(service)
        async with httpx.AsyncClient(timeout=2.0, verify=False) as http:
            waits = [asyncio.create_task(self._wait_ready(s, http, started)) for s in self.services]
            stop_wait = asyncio.create_task(self.stop.wait())
            try:
                pending = set(waits)
                while pending:
                    done, _ = await asyncio.wait(pending | {stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                    if stop_wait in done:
                        return
                    for task in done:
                        pending.discard(task)
                        task.result()  # raises StartupFailed
            finally:
                for task in (*waits, stop_wait):
                    task.cancel()

    async def _spawn(self, service: Service) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **service.env}
        service.process = await asyncio.create_subprocess_exec(
            *service.command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=env, cwd=service.cwd, start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        service.started_at = time.monotonic()
        self._pumps.append(asyncio.create_task(self._pump(service)))

    async def _wait_ready(self, service: Service, http: httpx.AsyncClient, started: float) -> None:
        while True:
            if service.process.returncode is not None:
                await asyncio.sleep(0.1)  # let the pump print the last lines
                reason = _last_error(service.tail) or "no output"
                raise StartupFailed(
                    f"{service.label} failed to start (exit code {service.process.returncode}): {reason}"
                )
            if service.ready_url is None:
                service.state = "running"
                return
            try:
                response = await http.get(service.ready_url)
                if response.status_code < 500:
                    service.state = "running"
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > self.startup_timeout:
                raise StartupFailed(f"{service.label} did not answer at {service.ready_url} within {self.startup_timeout:.0f}s")
            await asyncio.sleep(0.1)

    async def _pump(self, service: Service) -> None:
        prefix = self._prefix[service.name]
        stream = service.process.stdout
        while True:
            line = await stream.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\n")
            service.tail.append(text)
            self.out.write(f"{prefix} {text}\n")
            self.out.flush()

    async def _watch(self) -> int:
        """Until a stop signal: restart processes that die, with backoff (RESTART_BACKOFF), and say so."""
        running = {s.name: asyncio.create_task(s.process.wait()) for s in self.services}
        stop_wait = asyncio.create_task(self.stop.wait())
        watcher = asyncio.create_task(self._watch_config()) if self.watch else None
        try:
            while running:
                done, _ = await asyncio.wait({*running.values(), stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if stop_wait in done:
                    return 0
                for name, task in list(running.items()):
                    if task not in done:
                        continue
                    service = next(s for s in self.services if s.name == name)
                    running[name] = asyncio.create_task(self._restart(service, task.result()))
            return 1
        finally:
            stop_wait.cancel()
            if watcher is not None:
                watcher.cancel()
            for task in running.values():
                task.cancel()

    async def _watch_config(self) -> None:
        """Apply edits of mesh.yaml: restart the processes whose entries changed; report an invalid file, change nothing."""
        path, read = self.watch
        seen = path.stat().st_mtime_ns
        while True:
            await asyncio.sleep(CONFIG_POLL)
            try:
                mtime = path.stat().st_mtime_ns
            except OSError:
                continue
            if mtime == seen:
                continue
            seen = mtime
            try:
                fingerprints = await asyncio.to_thread(read)
            except Exception as exc:  # a ConfigError names file:line
                self.say(f"{path} changed but is not valid; nothing was restarted:\n{exc}")
                continue
            changed = [s for s in self.services
                       if s.name in fingerprints and fingerprints[s.name] != self._fingerprints.get(s.name)]
            added = sorted(set(fingerprints) - set(self._fingerprints))
            self._fingerprints = fingerprints
            if added:
                self.say(f"{path}: new entries ({', '.join(added)}) start with the next `mesh up`")
            if not changed:
                continue
            self.say(f"{path} changed: restarting {', '.join(s.label for s in changed)}")
            for service in changed:
                service.reload = True
                if service.process and service.process.returncode is None:
                    service.process.send_signal(signal.SIGTERM)

    async def _restart(self, service: Service, code: int | None) -> int:
        """Start a dead process again after a backoff that doubles with each quick death; then wait for it."""
        service.state = "restarting"
        if service.reload:  # stopped because its entry in mesh.yaml changed
            service.reload = False
            service.restarts = 0
        else:
            if time.monotonic() - service.started_at > RESTART_RESET_AFTER:
                service.restarts = 0
            delay = min(RESTART_BACKOFF * 2 ** service.restarts, RESTART_MAX_BACKOFF)
            service.restarts += 1
            self.say(f"{service.label} exited unexpectedly (exit code {code}); restarting in {delay:g}s "
                     f"(restart {service.restarts})")
            await asyncio.sleep(delay)
        if self.stop.is_set():
            return 0
        await self._spawn(service)
        service.state = "running"
        self.say(f"{service.label} restarted (pid {service.process.pid})")
        return await service.process.wait()

    async def _stop_all(self) -> None:
        alive = [s for s in self.services if s.process and s.process.returncode is None]
        for service in self.services:
            service.state = "stopped"
        if alive:
            self.say(f"stopping {len(alive)} processes")
        for service in alive:
            try:
                service.process.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.grace
        for service in alive:
            try:
                await asyncio.wait_for(service.process.wait(), max(deadline - time.monotonic(), 0.1))
            except asyncio.TimeoutError:
                self.say(f"{service.label} did not stop within {self.grace:.0f}s: killing it")
                service.process.kill()
                await service.process.wait()
        if self._pumps:
            await asyncio.gather(*self._pumps, return_exceptions=True)
        if alive:
            self.say("stopped")


def _last_error(lines: deque[str]) -> str | None:
    """The most telling line of a dead process's output: its last error, else its last line."""
    for line in reversed(lines):
        if "Error" in line or "error" in line or "cannot" in line:
            return line.strip()
    return lines[-1].strip() if lines else None
