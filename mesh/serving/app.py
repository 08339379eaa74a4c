"""One agent of mesh.yaml -> an A2A Starlette app: card, JSON-RPC (1.0 and 0.3), REST, /health, middleware, guard, task store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from email.utils import formatdate
from urllib.parse import urlsplit

from a2a.server.routes import create_agent_card_routes, create_rest_routes
from a2a.types import (
    AgentCard,
    AgentInterface,
    AgentProvider,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mesh.config import MeshConfig, SkillConfig
from mesh.config.plugins import describe_exception
from mesh.errors import GuardConfigError, PortInUse, ServeError  # noqa: F401 - re-exported
from mesh.guard.enforcement import guard_for_agent
from mesh.guard.policy import guard_agent_of
from mesh.serving.agents import AgentModuleError, AgentRuntime, load_agent_module
from mesh.serving.executor import RunningTasks
from mesh.serving.handler import MeshRequestHandler
from mesh.serving.jsonrpc import create_jsonrpc_route
from mesh.serving.middleware import Admission, BearerAuth, BodyLimit, RequestLog
from mesh.serving.numbers import IntegralNumbers
from mesh.serving.push import open_push
from mesh.serving.store import (
    SQLiteTaskStore,
    fail_unfinished_tasks,
    initialize_cluster,
    open_cluster_store,
    open_task_store,
    table_name,
)
from mesh.serving.versions import VersionNegotiation
from mesh.telemetry.metrics import METRICS_PATH, metrics_enabled, metrics_endpoint, request_counter
from mesh.telemetry.tracing import TraceRequests, tracing_enabled

log = logging.getLogger(__name__)

CARD_PATH = "/.well-known/agent-card.json"
LEGACY_CARD_PATH = "/.well-known/agent.json"
HEALTH_PATH = "/health"
BINDINGS = ("JSONRPC", "HTTP+JSON")
INTERRUPTED_BY_SHUTDOWN = "The agent shut down before this task finished; send the message again."
INTERRUPTED_BY_RESTART = "The agent restarted before this task finished; send the message again."


def build_cards(config: MeshConfig, name: str, card: AgentCard, replica: int = 0) -> tuple[AgentCard, AgentCard | None]:
    """The public card (and the extended one when auth is on), with the URLs the agent is served at."""
    agent = config.agent(name)
    overrides = agent.card
    for field in ("name", "description", "version", "documentation_url", "icon_url"):
        value = getattr(overrides, field)
        if value is not None:
            setattr(card, field, value)
    if overrides.provider:
        card.provider.CopyFrom(AgentProvider(organization=overrides.provider.organization, url=overrides.provider.url))
    if overrides.skills is not None:
        del card.skills[:]
        card.skills.extend(_skill(s) for s in overrides.skills)
    card.name = card.name or name
    card.description = card.description or f"The {name} agent"
    card.version = card.version or "1.0.0"
    if not card.default_input_modes:
        card.default_input_modes.append("text/plain")
    if not card.default_output_modes:
        card.default_output_modes.append("text/plain")
    url = config.url_of(name, replica)
    del card.supported_interfaces[:]
    for version in config.server.card_versions:
        for binding in BINDINGS:
            card.supported_interfaces.append(AgentInterface(url=url, protocol_binding=binding, protocol_version=version))
    if agent.grpc_port:
        host = urlsplit(url).hostname or "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        for version in config.server.card_versions:  # the port serves both (mesh/serving/grpc.py)
            # 1.0 names a gRPC target (host:port); 0.3 wants an absolute URL in every interface
            target = f"{host}:{agent.grpc_port}" if version == "1.0" else f"{urlsplit(url).scheme}://{host}:{agent.grpc_port}"
            card.supported_interfaces.append(AgentInterface(url=target, protocol_binding="GRPC", protocol_version=version))
    if not agent.auth:
        card.capabilities.extended_agent_card = False
        return card, None
    card.security_schemes["bearer"].CopyFrom(
        SecurityScheme(http_auth_security_scheme=HTTPAuthSecurityScheme(
            scheme="Bearer", description="A token given by the mesh's operator",
        ))
    )
    del card.security_requirements[:]
    card.security_requirements.append(SecurityRequirement(schemes={"bearer": StringList()}))
    card.capabilities.extended_agent_card = True
    extended = AgentCard()
    extended.CopyFrom(card)
    extended.skills.extend(_skill(s) for s in overrides.extended_skills)
    return card, extended


def card_routes(card: AgentCard, max_age: int, built_at: float, default: str = "0.3") -> list[Route]:
    """The card at the well-known path and the legacy one, with Cache-Control, ETag and Last-Modified.

    The card each client can read: a request saying ``A2A-Version: 1.x`` (header, or the
    ``?A2A-Version=`` query parameter) gets the 1.0 card (1.0 interfaces only, valid against the
    1.0 schema); 0.3 gets the card with the 0.3 fields (``url``, ``protocolVersion``, ...) that 0.3
    clients require; no version gets the ``default`` one (``server.card_default``).
    """
    last_modified = formatdate(built_at, usegmt=True)
    v10 = AgentCard()
    v10.CopyFrom(card)
    interfaces = [i for i in card.supported_interfaces if i.protocol_version.startswith("1.")]
    if interfaces:
        del v10.supported_interfaces[:]
        v10.supported_interfaces.extend(interfaces)
    routes = []
    for path in (CARD_PATH, LEGACY_CARD_PATH):
        (route,) = create_agent_card_routes(card, card_url=path, cache_control=f"public, max-age={max_age}")
        (route10,) = create_agent_card_routes(v10, card_url=path, cache_control=f"public, max-age={max_age}")

        async def endpoint(request: Request, sdk_endpoint=route.endpoint, sdk_endpoint10=route10.endpoint):
            version = request.headers.get("a2a-version", "").strip() or default  # ?A2A-Version= is copied here (versions.py)
            response = await (sdk_endpoint10 if version.strip().startswith("1.") else sdk_endpoint)(request)
            response.headers["Last-Modified"] = last_modified
            response.headers["Vary"] = "A2A-Version"
            return response

        routes.append(Route(path, endpoint, methods=["GET"]))
    return routes


def protocols_of(config: MeshConfig, name: str) -> list[str]:
    """How clients can talk to the agent, for logs and tables."""
    agent = config.agent(name)
    if not agent.is_local:
        return ["see its card"]
    transports = ["h2+TLS", "http/1.1+TLS"] if agent.tls else ["http/1.1", "h2c"]
    grpc = [f"gRPC :{agent.grpc_port}"] if agent.grpc_port else []
    return [*transports, "JSON-RPC 1.0+0.3", "REST", *grpc]


def _skill(skill: SkillConfig) -> AgentSkill:
    return AgentSkill(
        id=skill.id, name=skill.name, description=skill.description or skill.name,
        tags=skill.tags or [skill.id], examples=skill.examples,
        input_modes=skill.input_modes, output_modes=skill.output_modes,
    )


async def _sweep(store: SQLiteTaskStore, name: str) -> None:
    try:
        stale = await store.sweep_unfinished(INTERRUPTED_BY_RESTART)
    except Exception:  # serving goes on; the next start sweeps again
        log.exception("agent %s: could not mark the unfinished tasks of a previous run as failed", name)
        return
    if stale:
        log.warning("agent %s: marked %d unfinished tasks of a previous run as failed", name, stale)


def build_app(config: MeshConfig, name: str, replica: int = 0) -> Starlette:
    """The Starlette app of agent ``name``: card, health, JSON-RPC (1.0 + 0.3) and REST, with the mesh's middleware."""
    agent = config.agent(name)
    if not agent.is_local:
        raise ServeError(f"agent {name} is external ({agent.url}); only local agents are served")
    versioned = event_stream = None
    if agent.replicas > 1:
        try:
            versioned, event_stream, close_store = open_cluster_store(config, name)
        except ValueError as exc:
            raise ServeError(f"agent {name}: {exc}") from None
        store = versioned.as_task_store
    else:
        store, close_store = open_task_store(config, name)
    runtime = AgentRuntime(config, name, store)
    try:
        module = load_agent_module(agent.module_path, config.base_dir)
        settings = module.settings(agent.settings)
        public_card, extended_card = build_cards(config, name, module.card(settings, runtime), replica)
        agent_executor = module.create_executor(settings, runtime)
        # Guard hook: every agent but the guard itself runs behind mesh.yaml's guard policy (mesh/guard.py).
        guarded, guard_client = guard_for_agent(config, name, agent_executor)
        executor = RunningTasks(guarded, name)
    except AgentModuleError as exc:
        raise ServeError(f"agent {name}: {exc}") from None
    except ValidationError as exc:
        raise ServeError(f"agent {name}: settings: {exc}") from None
    except GuardConfigError as exc:  # an invalid guard: section (mesh check reports it with file:line)
        raise ServeError(f"agent {name}: {exc}") from None
    except Exception as exc:  # the agent's own card() or create_executor() failed
        raise ServeError(f"agent {name}: {agent.module_path} could not start: {describe_exception(exc)}") from None

    push = config.server.push
    push_store = push_sender = push_validator = close_push = None
    if push.enabled:
        push_store, push_sender, push_validator, close_push = open_push(
            store.engine, table_name(name), push.allowed_networks, push.retries, push.backoff_seconds, push.timeout_seconds)
        public_card.capabilities.push_notifications = True
        if extended_card is not None:
            extended_card.capabilities.push_notifications = True
    handler = MeshRequestHandler(
        agent_executor=executor,
        task_store=versioned or store,
        event_stream=event_stream,
        agent_card=public_card,
        extended_agent_card=extended_card,
        push_config_store=push_store,
        push_sender=push_sender,
        push_url_validator=push_validator,
        # Direct answers skip execute(), so never for an agent behind the guard (its answers must pass it).
        direct=executor.direct_answers() if guarded is agent_executor else None,
    )
    started = time.time()

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "agent": name, "uptime_s": round(time.time() - started, 1)})

    grace = max(config.server.graceful_timeout - 1.0, 0.5)
    routes = [
        Route(HEALTH_PATH, health, methods=["GET"]),
        Route(METRICS_PATH, metrics_endpoint, methods=["GET"]),
        *card_routes(public_card, config.server.card_max_age, started, config.server.card_default),
        create_jsonrpc_route(handler, shutdown_grace_period=grace),
        *create_rest_routes(handler, enable_v0_3_compat=True, shutdown_grace_period=grace),
    ]
    # The guard agent answers a request per batch of the agents' checks, each made for a request already in that
    # agent's own access log: its answered ones go at debug level (a line each was ~10% of its CPU), refused ones at info.
    quiet = logging.DEBUG if name == guard_agent_of(config) else logging.INFO
    middleware = [Middleware(RequestLog, observers=[request_counter(name)] if metrics_enabled() else [], ok_level=quiet)]
    if tracing_enabled():
        middleware.append(Middleware(TraceRequests, server=name))
    if config.server.cors is not None:  # off by default; before auth so that preflights are answered
        from starlette.middleware.cors import CORSMiddleware

        cors = config.server.cors
        middleware.append(Middleware(CORSMiddleware, allow_origins=cors.allow_origins, allow_methods=cors.allow_methods,
                                     allow_headers=cors.allow_headers, allow_credentials=cors.allow_credentials,
                                     expose_headers=cors.expose_headers, max_age=cors.max_age))
    if agent.auth:
        middleware.append(Middleware(
            BearerAuth, token=config.token_of(agent), realm=name,
            public_paths=(CARD_PATH, LEGACY_CARD_PATH, HEALTH_PATH),
        ))
    middleware.append(Middleware(BodyLimit, limit=config.body_limit_of(agent)))
    middleware.append(Middleware(Admission, limit=config.server.max_concurrent_requests))
    middleware.append(Middleware(VersionNegotiation))
    middleware.append(Middleware(IntegralNumbers))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        if versioned is not None:
            await initialize_cluster(versioned, event_stream)
        else:
            await store.initialize()
        sweep = None
        if isinstance(store, SQLiteTaskStore) and not getattr(agent_executor, "resumes_tasks", False):
            # The SQLite file is this agent's alone: anything left unfinished
            # belongs to a previous process of it that died. Swept in the
            # background: a store that grew during an incident must not hold up serving.
            sweep = asyncio.ensure_future(_sweep(store, name))
        watch = None
        if versioned is not None and not getattr(agent_executor, "resumes_tasks", False):
            from mesh.serving.replicas import ReplicaWatch, replica_owner

            ttl = config.state.lease_seconds  # how long a replica may be silent before the others give up on it
            watch = ReplicaWatch(versioned.as_task_store.engine, name, replica_owner(), store, executor.task_ids,
                                 beat=ttl / 3, ttl=ttl)
            await watch.start()
            executor.watch = watch
        if hasattr(agent_executor, "start"):
            await agent_executor.start()
        grpc_server = None
        if agent.grpc_port:
            from mesh.serving.grpc import start_grpc

            tls = ((config.base_dir / agent.tls.cert).read_bytes(), (config.base_dir / agent.tls.key).read_bytes()) \
                if agent.tls else None
            grpc_server = await start_grpc(handler, config.host_of(agent), agent.grpc_port, config.token_of(agent), tls)
            log.info("agent %s: A2A gRPC on port %d", name, agent.grpc_port)
        log.info("agent %s ready at %s (%s)", name, config.url_of(name), ", ".join(protocols_of(config, name)))
        try:
            yield
        finally:
            if sweep is not None and not sweep.done():
                sweep.cancel()
                await asyncio.gather(sweep, return_exceptions=True)
            if grpc_server is not None:
                await grpc_server.stop(grace)
            if hasattr(agent_executor, "stop"):
                await agent_executor.stop()
            running = set() if getattr(agent_executor, "resumes_tasks", False) else set(executor.task_ids)
            await handler.aclose()
            if close_push is not None:
                await close_push()
            stopped = await fail_unfinished_tasks(store, INTERRUPTED_BY_SHUTDOWN, only=running)
            if stopped:
                log.warning("agent %s: %d tasks were still running at shutdown and are marked failed", name, len(stopped))
            if watch is not None:
                await watch.stop()
            await close_store()
            if guard_client is not None:
                await guard_client.aclose()

    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
