"""The console's Starlette app: the pages, and a JSON/SSE API over the agents' cards, /metrics and A2A API, spans and checkpoints.

Everything the page shows comes from the running mesh: the agents' cards,
/health and /metrics (summarised server-side, streamed to the page over SSE
every ``STATUS_PERIOD`` seconds), the agents' own A2A JSON-RPC API (the page
sends ``ListTasks``, ``GetTask``, ``SendMessage``, ``SendStreamingMessage``
through ``/api/a2a/AGENT``, which passes the caller's bearer token on), the
spans the processes keep under ``STATE_DIR/traces`` and the coordinator's
checkpoints. When any agent has a bearer token the console asks for one of
them (``Authorization: Bearer`` or the login form, which sets a cookie).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mesh.config import MeshConfig
from mesh.console import sources

STATIC = Path(__file__).parent / "static"
STATUS_PERIOD = 2.0
COOKIE = "mesh_console"
# JSON-RPC methods whose answer is an SSE stream, passed through as it comes.
STREAMING = {"SendStreamingMessage", "SubscribeToTask"}
ALLOWED = STREAMING | {"SendMessage", "GetTask", "ListTasks", "CancelTask"}

_LOGIN = """<!doctype html><meta charset="utf-8"><title>mesh console: sign in</title>
<link rel="stylesheet" href="/static/style.css"><main class="login"><h1>mesh console</h1>
<p>The agents of this mesh need a bearer token; give one of them.</p>
<form method="post" action="/login"><input type="password" name="token" placeholder="bearer token" autofocus>
<button>Sign in</button></form>{error}</main>"""


class Console:
    """State shared by the routes: the mesh's config, an HTTP client, the last metrics sample (for rates)."""

    def __init__(self, config: MeshConfig, processes: Callable[[], dict[str, dict[str, Any]]] | None = None) -> None:
        self.config = config
        self.processes = processes or (lambda: {})
        self.tokens = sorted({config.token_of(a) for a in config.local_agents().values() if a.auth})
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=None))
        self.cards: dict[str, Any] = {}
        self.previous: dict[str, tuple[float, float]] = {}  # process -> (time, requests) of the last sample
        self._runtime: Any = None

    # -- auth ---------------------------------------------------------------------------------------

    def token_of(self, request: Request) -> str | None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and given:
            return given
        return request.cookies.get(COOKIE)

    def allowed(self, token: str | None) -> bool:
        if not self.tokens:
            return True
        return token is not None and any(hmac.compare_digest(token.encode(), t.encode()) for t in self.tokens)

    # -- the mesh -----------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        from mesh.tools.modules import http_tool_names, tool_url

        config = self.config
        agents = [{"name": n, "url": config.url_of(n), "local": a.is_local, "auth": bool(a.auth),
                   "kind": "llm" if a.llm else "local" if a.is_local else "external", "module": a.module}
                  for n, a in config.agents.items()]
        http_tools = set(http_tool_names(config))
        tools = [{"name": n, "transport": "http" if n in http_tools else "stdio",
                  "url": tool_url(config, n) if n in http_tools else None, "module": t.module}
                 for n, t in config.tools.items()]
        graphs = [{"name": n, "spec": g.model_dump(mode="json", by_alias=True)} for n, g in config.graphs.items()]
        guard = config.guard.agent if config.guard else None
        return {"mesh": config.name, "config": str(config.path), "agents": agents, "tools": tools, "graphs": graphs,
                "guard": guard, "coordinator": config.coordinator_name()}

    async def status(self, token: str | None) -> dict[str, Any]:
        """Health, card and metrics of every local agent and HTTP tool server, with request rates since the last sample."""
        from mesh.tools.modules import MCP_PATH, http_tool_names, tool_url

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        targets = [("agent", n, self.config.url_of(n)) for n in self.config.local_agents()]
        targets += [("tool", n, tool_url(self.config, n).removesuffix(MCP_PATH)) for n in http_tool_names(self.config)]
        processes = self.processes()

        async def one(kind: str, name: str, base: str) -> dict[str, Any]:
            row: dict[str, Any] = {"kind": kind, "name": name, "url": base, "healthy": False, "error": None,
                                   "process": processes.get(name)}
            try:
                health = await self.http.get(base + "/health", timeout=2.0)
                row["healthy"] = health.status_code == 200
                metrics = await self.http.get(base + "/metrics", headers=headers, timeout=2.0)
                if metrics.status_code == 200:
                    row["metrics"] = sources.metrics_summary(metrics.text)
                else:
                    row["error"] = f"/metrics answered {metrics.status_code}"
                if kind == "agent" and (name not in self.cards or not row["healthy"]):
                    card = await self.http.get(base + "/.well-known/agent-card.json", headers={"A2A-Version": "1.0"},
                                               timeout=2.0)
                    if card.status_code == 200:
                        self.cards[name] = card.json()
            except httpx.HTTPError as exc:
                row["error"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                self.cards.pop(name, None)
            if kind == "agent" and name in self.cards:
                card = self.cards[name]
                row["card"] = {"name": card.get("name"), "description": card.get("description"),
                               "version": card.get("version"),
                               "skills": [{"id": s.get("id"), "name": s.get("name")} for s in card.get("skills", [])],
                               "protocols": sorted({f"{i.get('protocolBinding')} {i.get('protocolVersion')}"
                                                    for i in card.get("supportedInterfaces", [])}),
                               "streaming": bool(card.get("capabilities", {}).get("streaming"))}
            now = time.monotonic()
            total = row.get("metrics", {}).get("requests")
            if total is not None:
                last = self.previous.get(name)
                row["rate"] = round(max(total - last[1], 0) / (now - last[0]), 2) if last and now > last[0] else None
                self.previous[name] = (now, total)
            return row

        rows = await asyncio.gather(*(one(*t) for t in targets))
        return {"at": time.time(), "processes": list(rows)}

    def runtime(self) -> Any:
        if self._runtime is None:
            from mesh.graphs.runtime import GraphRuntime, checkpoint_store

            self._runtime = GraphRuntime(self.config, checkpoint_store(self.config))
        return self._runtime

    async def aclose(self) -> None:
        await self.http.aclose()
        if self._runtime is not None:
            await self._runtime.store.close()
            await self._runtime.aclose()


def create_app(config: MeshConfig, processes: Callable[[], dict[str, dict[str, Any]]] | None = None) -> Starlette:
    console = Console(config, processes)
    traces_dir = config.state_dir / "traces"
    store_open = asyncio.Lock()
    store_ready: list[bool] = []

    async def runtime() -> Any:
        async with store_open:
            if not store_ready:
                await console.runtime().store.open()
                store_ready.append(True)
        return console.runtime()

    async def index(request: Request) -> Response:
        if not console.allowed(console.token_of(request)):
            return HTMLResponse(_LOGIN.format(error=""), status_code=401)
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def login(request: Request) -> Response:
        from urllib.parse import parse_qs  # the form is one field: no multipart parser needed

        token = (parse_qs((await request.body()).decode("utf-8", "replace")).get("token") or [""])[0]
        if not console.allowed(token):
            return HTMLResponse(_LOGIN.format(error='<p class="error">That token is not one of the mesh\'s.</p>'),
                                status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def mesh(request: Request) -> Response:
        return JSONResponse(console.describe())

    async def status(request: Request) -> Response:
        return JSONResponse(await console.status(console.token_of(request)))

    async def status_stream(request: Request) -> Response:
        token = console.token_of(request)

        async def events():
            while True:
                yield f"event: status\ndata: {json.dumps(await console.status(token))}\n\n"
                await asyncio.sleep(STATUS_PERIOD)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    async def a2a(request: Request) -> Response:
        """One A2A 1.0 JSON-RPC call to an agent, with the caller's token; streaming methods answer SSE as it comes."""
        name = request.path_params["agent"]
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            # a cross-site form or text/plain fetch cannot set this type without a CORS preflight, which fails here
            return JSONResponse({"error": "send Content-Type: application/json"}, status_code=415)
        if name not in config.agents:
            return JSONResponse({"error": f"no agent named {name!r}"}, status_code=404)
        try:
            body = await request.json()
            method, params = body["method"], body.get("params") or {}
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'send {"method": NAME, "params": {...}}'}, status_code=400)
        if method not in ALLOWED:
            return JSONResponse({"error": f"method {method!r} is not one the console sends ({', '.join(sorted(ALLOWED))})"},
                                status_code=400)
        token = console.token_of(request)
        headers = {"A2A-Version": "1.0", "Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        payload = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        url = config.url_of(name) + "/"
        try:
            if method not in STREAMING:
                answer = await console.http.post(url, content=payload, headers=headers)
                return Response(answer.content, status_code=answer.status_code, media_type="application/json")
            upstream = await console.http.send(console.http.build_request("POST", url, content=payload, headers=headers),
                                               stream=True)
        except httpx.HTTPError as exc:
            return JSONResponse({"error": f"{name} did not answer: {type(exc).__name__} {exc}"}, status_code=502)

        async def relay():
            try:
                async for chunk in upstream.aiter_raw():
                    yield chunk
            finally:
                await upstream.aclose()

        return StreamingResponse(relay(), status_code=upstream.status_code,
                                 media_type=upstream.headers.get("content-type", "text/event-stream"),
                                 headers={"Cache-Control": "no-cache"})

    async def traces(request: Request) -> Response:
        return JSONResponse(await asyncio.to_thread(sources.list_traces, traces_dir))

    async def trace(request: Request) -> Response:
        spans = await asyncio.to_thread(sources.trace_spans, traces_dir, request.path_params["trace_id"])
        return JSONResponse(spans) if spans else JSONResponse({"error": "no such trace in the local spans"}, status_code=404)

    async def runs(request: Request) -> Response:
        return JSONResponse(await sources.list_runs(await runtime()))

    async def run(request: Request) -> Response:
        replay = await sources.run_replay(await runtime(), request.path_params["run_id"])
        if replay is None:
            return JSONResponse({"error": "no such run in the checkpoint store"}, status_code=404)
        return JSONResponse(replay)

    def guarded(endpoint):
        async def check(request: Request) -> Response:
            if not console.allowed(console.token_of(request)):
                return JSONResponse({"error": "Unauthorized: give a bearer token of the mesh's agents"}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
            return await endpoint(request)

        return check

    routes = [
        Route("/", index),
        Route("/login", login, methods=["POST"]),
        Route("/health", health),
        Route("/api/mesh", guarded(mesh)),
        Route("/api/status", guarded(status)),
        Route("/api/status/stream", guarded(status_stream)),
        Route("/api/a2a/{agent}", guarded(a2a), methods=["POST"]),
        Route("/api/traces", guarded(traces)),
        Route("/api/traces/{trace_id}", guarded(trace)),
        Route("/api/runs", guarded(runs)),
        Route("/api/runs/{run_id}", guarded(run)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            await console.aclose()

    from starlette.middleware import Middleware

    from mesh.serving.middleware import SizeLimit

    # the login form and the A2A pass-through are read whole: no larger than an agent would take
    middleware = [Middleware(SizeLimit, limit=int(config.server.max_body_bytes))]
    host = config.console_host()
    if host not in ("0.0.0.0", "::", "") and ":" not in host:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        # DNS rebinding: a page of another site whose name resolves to loopback must not reach the console
        allowed = sorted({host, "localhost", "127.0.0.1"} if host in ("127.0.0.1", "localhost") else {host})
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed))
    return Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
