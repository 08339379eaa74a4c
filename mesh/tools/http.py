"""MCP over streamable HTTP: the ASGI app (DNS-rebinding protection, bearer auth, /health) and hypercorn serving."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mesh.tools.modules import _WILDCARD_HOSTS, HEALTH_PATH, MCP_PATH, bracketed

if TYPE_CHECKING:
    from mcp.server import MCPServer
    from mcp.server.transport_security import TransportSecuritySettings

log = logging.getLogger(__name__)

# How soon a client whose SSE stream closed should reconnect (the `retry:` of the stream's first event).
RETRY_INTERVAL_MS = 1000




# -- HTTP serving -------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_names(host: str) -> set[str]:
    """The names a client may put in the Host header to reach a server bound to ``host``."""
    loopback = {"127.0.0.1", "localhost", "[::1]"}
    if is_loopback(host):
        return loopback | {bracketed(host)}
    if host in _WILDCARD_HOSTS:
        names = loopback | {socket.gethostname(), socket.getfqdn()}
        with contextlib.suppress(OSError):
            names |= {bracketed(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None)}
        return names
    return {bracketed(host)}


def transport_security(host: str, public_hosts: Iterable[str] = ()) -> TransportSecuritySettings:
    """DNS-rebinding protection for a server bound to ``host``: only its own names pass the Host/Origin checks.

    A browser page from another site that resolves its name to this
    machine sends that name as Host (and its own Origin), which is refused
    with 421/403. A loopback bind accepts the loopback names; a specific
    address or name accepts that; a wildcard bind (0.0.0.0, ::) accepts the
    machine's host names and addresses. ``public_hosts`` adds the names a
    proxy or DNS gives the server ("mcp.example.com" or "mcp.example.com:443").
    """
    from mcp.server.transport_security import TransportSecuritySettings

    names = _host_names(host) | {h.strip() for h in public_hosts if h.strip()}
    hosts, origins = set(), set()
    for name in names:
        bare = name if name.endswith("]") or ":" not in name else name.rsplit(":", 1)[0]
        has_port = bare != name
        hosts.add(name)
        if not has_port:
            hosts.add(f"{name}:*")
        for scheme in ("http", "https"):
            origins.add(f"{scheme}://{name}")
            if not has_port:
                origins.add(f"{scheme}://{name}:*")
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=sorted(hosts), allowed_origins=sorted(origins),
    )


def http_app(server: MCPServer, *, host: str, token: str | None = None, realm: str = "mcp",
             public_hosts: Iterable[str] = (), max_body_bytes: int = 4 * 1024 * 1024, json_response: bool = True,
             resumable: bool = False) -> Any:
    """The ASGI app of ``server`` over streamable HTTP at /mcp (stateful), with /health, request log, bearer auth and body limit.

    With ``json_response`` a request's answer is one JSON body instead of an
    SSE stream: about 1.5 times the calls per second (scripts/bench/mcp.py),
    but nothing can be sent to the client in the middle of a call (progress,
    log messages), so a server that does that passes False. ``resumable``
    keeps its SSE events (``mesh/tools/events.py``): every event gets an id and
    a client cut off mid-call resumes with ``GET`` and ``Last-Event-ID``.
    """
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    from mesh.serving.middleware import BearerAuth, BodyLimit, RequestLog
    from mesh.tools.events import MemoryEventStore
    from mesh.telemetry.metrics import METRICS_PATH, metrics_endpoint, request_counter
    from mesh.telemetry.tracing import TraceRequests

    @server.custom_route(HEALTH_PATH, methods=["GET"])
    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "server": server.name})

    server.custom_route(METRICS_PATH, methods=["GET"])(metrics_endpoint)

    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        transport_security=transport_security(host, public_hosts),
        max_request_body_size=max_body_bytes,
        host=host,
        json_response=json_response,
        event_store=MemoryEventStore() if resumable else None,
        retry_interval=RETRY_INTERVAL_MS if resumable else None,
    )
    app = BodyLimit(app, limit=max_body_bytes)
    if token:
        app = BearerAuth(app, token=token, realm=realm, public_paths=(HEALTH_PATH,))
    return RequestLog(TraceRequests(app, server=realm, parented_only=MCP_PATH), observers=[request_counter(realm)])


async def serve_http(server: MCPServer, *, what: str, host: str, port: int, token: str | None = None,
                     public_hosts: Iterable[str] = (), max_body_bytes: int = 4 * 1024 * 1024,
                     graceful_timeout: float = 10.0, json_response: bool = True, resumable: bool = False,
                     state_dir: Any = None, telemetry: Any = None) -> None:
    """Serve ``server`` over streamable HTTP with hypercorn (HTTP/1.1 + h2c) until SIGINT/SIGTERM.

    ``state_dir`` and ``telemetry`` (mesh.yaml's) say where its spans go.
    """
    from mesh.serving.server import serve_asgi
    from mesh.telemetry.tracing import setup_tracing

    setup_tracing(what, state_dir, telemetry)
    app = http_app(server, host=host, token=token, realm=what, public_hosts=public_hosts,
                   max_body_bytes=max_body_bytes, json_response=json_response, resumable=resumable)
    shown = bracketed(host if host not in _WILDCARD_HOSTS else socket.getfqdn())
    log.info("%s: streamable HTTP at http://%s:%d%s (http/1.1 + h2c%s)", what, shown, port, MCP_PATH,
             ", bearer token required" if token else "")
    await serve_asgi(app, what=what, host=host, port=port, graceful_timeout=graceful_timeout)
