"""hypercorn serving: one ASGI app on one port (HTTP/1.1, h2c, h2 over TLS by ALPN) until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
from typing import Any

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig
from sse_starlette.sse import AppStatus

from mesh.config import MeshConfig
from mesh.errors import PortInUse, ServeError  # noqa: F401 - re-exported
from mesh.serving import descriptors, h2streams
from mesh.serving.app import build_app
from mesh.telemetry.tracing import setup_tracing

log = logging.getLogger(__name__)

async def serve_asgi(
    app: Any,
    *,
    what: str,
    host: str,
    port: int,
    certfile: str | None = None,
    keyfile: str | None = None,
    graceful_timeout: float = 10.0,
    keep_alive_max_requests: int = 1_000_000_000,
    max_streams_per_connection: int = 100,
    max_resets_per_connection: int = 200,
    reset_window_s: float = 10.0,
) -> None:
    """Serve ``app`` with hypercorn on host:port until SIGINT/SIGTERM, then finish in-flight requests.

    HTTP/1.1 and h2c (prior knowledge and upgrade) share the port; with a
    certificate and key it is TLS with ALPN offering h2 and http/1.1.
    ``what`` names the server in errors ("agent echo").
    """
    h2streams.install()
    descriptors.install()
    soft, hard = descriptors.raise_fd_limit()
    log.debug("%s: descriptor limit %s (hard %s)", what, soft, hard)
    config = HypercornConfig()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    if certfile and keyfile:
        config.certfile, config.keyfile = certfile, keyfile
    config.graceful_timeout = graceful_timeout
    config.keep_alive_max_requests = keep_alive_max_requests
    config.keep_alive_timeout = 75.0
    config.h2_max_concurrent_streams = max_streams_per_connection
    # Read by mesh.serving.h2streams' protocol (hypercorn's Config has no such setting).
    config.mesh_max_resets = max_resets_per_connection
    config.mesh_reset_window = reset_window_s
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(descriptors.AcceptErrors(what))
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def shutdown_trigger() -> None:
        await stop.wait()
        log.info("%s: shutting down (in-flight requests get up to %.0fs)", what, graceful_timeout)
        AppStatus.should_exit = True  # lets open SSE streams finish within their grace period

    try:
        # hypercorn binds inside serve(); a taken port surfaces here as OSError.
        await hypercorn_serve(app, config, shutdown_trigger=shutdown_trigger)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(f"{what}: port {port} on {host} is already in use") from None
        if exc.errno in (errno.EADDRNOTAVAIL, errno.EACCES):
            raise ServeError(f"{what}: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        raise
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def serve_agent(config: MeshConfig, name: str, replica: int = 0) -> None:
    """Serve one local agent of ``config`` until a signal stops it; replica ``i`` of ``replicas: N`` on port + i."""
    agent = config.agent(name)
    if not 0 <= replica < agent.replicas:
        raise ServeError(f"agent {name} has {agent.replicas} replica(s): --replica is 0..{agent.replicas - 1}")
    traces = setup_tracing(name, config.state_dir, config.telemetry)
    log.info("agent %s: traces to %s", name, traces)
    app = build_app(config, name, replica)  # errors in mesh.yaml or the module surface before the port is bound
    tls = agent.tls
    await serve_asgi(
        app,
        what=f"agent {name}",
        host=config.host_of(agent),
        port=config.port_of(agent, replica),
        certfile=str(config.base_dir / tls.cert) if tls else None,
        keyfile=str(config.base_dir / tls.key) if tls else None,
        graceful_timeout=config.server.graceful_timeout,
        keep_alive_max_requests=config.server.keep_alive_max_requests,
        max_streams_per_connection=config.server.max_streams_per_connection,
        max_resets_per_connection=config.server.max_resets_per_connection,
        reset_window_s=config.server.reset_window_s,
    )
