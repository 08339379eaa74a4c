"""Serving the console inside `mesh up`'s own process: hypercorn on a socket bound before the agents start."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mesh.config import MeshConfig

log = logging.getLogger("mesh.console")


def console_file(config: MeshConfig) -> Path:
    """Where `mesh up` writes the console's URL (read by `mesh ls --json`)."""
    return config.state_dir / "console.json"


def _url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def console_url(config: MeshConfig) -> str | None:
    """The console's URL: from console.port, else from the file a running `mesh up` wrote; None when off or unknown."""
    if not config.console.enabled:
        return None
    if config.console.port is not None:
        return _url(config.console_host(), config.console.port)
    try:
        return json.loads(console_file(config).read_text())["url"]
    except (OSError, ValueError, KeyError):
        return None


class ConsoleServer:
    """The console of one `mesh up`: ``bind`` (before the agents start, so a taken port stops nothing) then ``serve``."""

    def __init__(self, config: MeshConfig, processes: Callable[[], dict[str, dict[str, Any]]] | None = None) -> None:
        self.config = config
        self.processes = processes
        self.sock: socket.socket | None = None
        self.url = ""

    def bind(self) -> str:
        """Bind the console's socket (console.port, or a free port); returns its URL. Raises OSError if it cannot."""
        host = self.config.console_host()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, self.config.console.port or 0))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        sock.set_inheritable(True)
        self.sock = sock
        self.url = _url(host, sock.getsockname()[1])
        try:
            path = console_file(self.config)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"url": self.url, "pid": os.getpid()}))
        except OSError as exc:
            log.warning("console: cannot write %s: %s", console_file(self.config), exc)
        return self.url

    async def serve(self, stop: asyncio.Event) -> None:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        from mesh.console.app import create_app

        assert self.sock is not None, "bind() first"
        hyper = Config()
        hyper.bind = [f"fd://{self.sock.fileno()}"]
        hyper.accesslog = None
        hyper.errorlog = log
        hyper.graceful_timeout = 1.0  # open SSE streams would otherwise hold the shutdown
        try:
            await serve(create_app(self.config, self.processes), hyper, shutdown_trigger=stop.wait)
        finally:
            try:
                self.sock.close()
            except OSError:
                pass  # hypercorn closed the descriptor already
            try:
                if json.loads(console_file(self.config).read_text()).get("pid") == os.getpid():
                    console_file(self.config).unlink()
            except (OSError, ValueError):
                pass
