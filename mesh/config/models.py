"""mesh.yaml -> a typed, validated MeshConfig; every error names the file, line and key path."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

import mesh.graphs.vertices  # noqa: F401 - registers the agent, a2a and group vertex kinds before graphs validate
from mesh.config.guard import GuardOverride, GuardPolicy
from mesh.config.llm import LLMConfig
from mesh.config.problems import KeyError_, in_file_order, validation_problems
from mesh.config.yamlsource import (
    ENV_REFERENCE,
    WHOLE_ENV_REFERENCE,
    SourceProblem,
    YamlSource,
    YamlSourceError,
    load_yaml,
)
from mesh.errors import ConfigError  # noqa: F401 - re-exported
from mesh.pregel.spec import GraphSpec

DEFAULT_CONFIG = "mesh.yaml"
NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class SkillConfig(Strict):
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    description: str = ""
    tags: list[str] = []
    examples: list[str] = []
    input_modes: list[str] = []
    output_modes: list[str] = []


class ProviderConfig(Strict):
    organization: str
    url: str


class CardConfig(Strict):
    """Card fields that override what the agent module declares."""

    name: str | None = None
    description: str | None = None
    version: str | None = None
    provider: ProviderConfig | None = None
    documentation_url: str | None = None
    icon_url: str | None = None
    skills: list[SkillConfig] | None = None
    extended_skills: list[SkillConfig] = []


class AuthConfig(Strict):
    """Bearer-token auth; the token must come from the environment as ``${VAR}``."""

    bearer_token: str = Field(min_length=1)


class TlsConfig(Strict):
    cert: Path
    key: Path


class CorsConfig(Strict):
    """CORS for browser clients (Starlette's CORSMiddleware); off unless ``server.cors`` is given."""

    allow_origins: list[str] = Field(min_length=1)
    allow_methods: list[str] = ["GET", "POST", "OPTIONS"]
    allow_headers: list[str] = ["Authorization", "Content-Type", "A2A-Version", "A2A-Extensions"]
    allow_credentials: bool = False
    expose_headers: list[str] = []
    max_age: int = Field(600, ge=0)


class PushConfig(Strict):
    """Push notifications (webhooks) of every agent: on by default; where webhooks may point and how delivery retries."""

    enabled: bool = True
    # private/loopback networks webhooks may point at anyway (by default only public addresses)
    allowed_networks: list[IPvAnyNetwork] = []
    retries: int = Field(3, ge=0, le=10)
    backoff_seconds: float = Field(0.5, gt=0, le=60)
    timeout_seconds: float = Field(10.0, gt=0, le=120)


class ServerConfig(Strict):
    """Serving defaults shared by every agent (each agent may override host and body limit)."""

    host: str = "127.0.0.1"
    max_body_bytes: ByteSize = ByteSize(4 * 1024 * 1024)
    graceful_timeout: float = Field(10.0, gt=0, le=600)
    # hypercorn closes a connection after this many requests; long HTTP/2
    # sessions (the coordinator's pool) must not be cut, so it is high.
    keep_alive_max_requests: int = Field(1_000_000_000, ge=1)
    startup_timeout: float = Field(30.0, gt=0, le=600)
    # Cards change only when mesh.yaml does; clients revalidate with the ETag.
    card_max_age: int = Field(300, ge=0)
    # The A2A versions the card declares interfaces for. Both are always
    # answered on the endpoint; listing "0.3" adds the 0.3 card fields (url,
    # protocolVersion...) that 0.3 clients need, which a strict 1.0 schema refuses.
    card_versions: list[Literal["1.0", "0.3"]] = Field(["1.0", "0.3"], min_length=1)
    # The card a request that names no A2A version gets (one with A2A-Version gets its own):
    # "0.3" (default) the card with the 0.3 fields that headerless 0.3 clients need, "1.0" the strict 1.0 card.
    card_default: Literal["1.0", "0.3"] = "0.3"
    cors: CorsConfig | None = None
    push: PushConfig = PushConfig()
    # Hostile traffic (README: Reliability): requests at work at once per agent process (503 beyond),
    # HTTP/2 streams open at once per connection, and stream resets a client may make per
    # connection within reset_window_s before it is sent GOAWAY ENHANCE_YOUR_CALM.
    max_concurrent_requests: int = Field(256, ge=1, le=100_000)
    max_streams_per_connection: int = Field(100, ge=1, le=10_000)
    max_resets_per_connection: int = Field(200, ge=1, le=1_000_000)
    reset_window_s: float = Field(10.0, gt=0, le=3600)


LLM_AGENT_MODULE = "mesh.llm.agent"


Quantity = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")]


class ResourceAmounts(Strict):
    cpu: Quantity | None = None
    memory: Quantity | None = None


class ResourcesConfig(Strict):
    """Kubernetes requests and limits of one agent's or tool's pods (``mesh deploy kubernetes``)."""

    requests: ResourceAmounts = ResourceAmounts(cpu="100m", memory="256Mi")
    limits: ResourceAmounts = ResourceAmounts(memory="1Gi")


class AgentConfig(Strict):
    """One agent: a local module, a declarative LLM agent (``llm:``) served by the mesh, or an external A2A agent by URL."""

    module: str | None = None
    llm: LLMConfig | None = None
    description: str | None = None
    instructions: str | None = None
    tools: list[str] = []
    agents: list[str] = []
    max_steps: int = Field(8, ge=1, le=100)
    url: str | None = None
    host: str | None = None
    port: Port | None = None
    # the A2A gRPC binding on a port of its own (hypercorn cannot serve gRPC beside the app); off if unset
    grpc_port: Port | None = None
    public_url: str | None = None
    card: CardConfig = CardConfig()
    auth: AuthConfig | None = None
    tls: TlsConfig | None = None
    max_body_bytes: ByteSize | None = None
    settings: dict[str, Any] = {}
    guard: GuardOverride | None = None
    # Whether clients may open h2c (HTTP/2 over plain TCP, "prior knowledge") to this agent. None:
    # yes for local agents (hypercorn speaks it), no for external ones (HTTP/1.1, or ALPN over TLS).
    h2c: bool | None = None
    # Processes of this agent behind one Service (`mesh deploy kubernetes`); they share state.database.
    replicas: int = Field(1, ge=1, le=64)
    # Where each replica is reachable when they run on several hosts with nothing spreading requests
    # in front: replica i (`mesh serve AGENT --replica i` on its host) listens on the port of the i-th
    # URL and advertises it; the mesh's clients spread calls over them and skip one that fails.
    replica_urls: list[str] = []
    resources: ResourcesConfig = ResourcesConfig()

    @model_validator(mode="after")
    def _local_or_external(self) -> AgentConfig:
        if sum(x is not None for x in (self.module, self.llm, self.url)) != 1:
            raise ValueError("give exactly one of 'module' (a local agent), 'llm' (a declarative LLM agent) "
                             "or 'url' (an external A2A agent)")
        if self.llm is None:
            for key in ("instructions", "description"):
                if getattr(self, key) is not None:
                    raise KeyError_(key, f"'{key}' is for LLM agents (with 'llm:'); a module agent takes settings:")
            for key in ("tools", "agents"):
                if getattr(self, key):
                    raise KeyError_(key, f"'{key}' is for LLM agents (with 'llm:'); a module agent takes settings:")
        if self.is_local and self.port is None:
            raise ValueError("a local agent needs a 'port'")
        if self.url is not None:
            for key in ("host", "port", "grpc_port", "public_url", "tls", "max_body_bytes"):
                if getattr(self, key) is not None:
                    raise KeyError_(key, f"'{key}' is for local agents; an external agent has 'url' instead")
            if self.replicas != 1 or self.replica_urls:
                raise KeyError_("replicas", "'replicas' is for local agents; an external agent is one URL")
            if not self.url.startswith(("http://", "https://")):
                raise KeyError_("url", "must start with http:// or https://")
        if self.replica_urls:
            if len(self.replica_urls) != self.replicas:
                raise KeyError_("replica_urls", f"one URL per replica: {self.replicas} replica(s), {len(self.replica_urls)} URL(s)")
            if not all(u.startswith(("http://", "https://")) and urlsplit(u).port for u in self.replica_urls):
                raise KeyError_("replica_urls", "each must be http(s)://HOST:PORT")
            self.replica_urls = [u.rstrip("/") for u in self.replica_urls]
        return self

    @property
    def is_local(self) -> bool:
        return self.module is not None or self.llm is not None

    @property
    def module_path(self) -> str:
        """The module that serves this local agent (the mesh's own for an LLM agent)."""
        return self.module or LLM_AGENT_MODULE


class ToolConfig(Strict):
    """One MCP tool server: a module of mcp_tools/, over stdio or streamable HTTP."""

    module: str
    transport: Literal["stdio", "http"] = "stdio"
    host: str | None = None
    port: Port | None = None
    public_url: str | None = None
    auth: AuthConfig | None = None
    settings: dict[str, Any] = {}
    resources: ResourcesConfig = ResourcesConfig()

    @model_validator(mode="after")
    def _port_for_http(self) -> ToolConfig:
        if self.transport == "http" and self.port is None:
            raise ValueError("an HTTP tool server needs a 'port'")
        for key in ("port", "host", "auth", "public_url"):
            if self.transport == "stdio" and getattr(self, key) is not None:
                raise KeyError_(key, f"'{key}' is for transport: http")
        return self


class StateConfig(Strict):
    dir: Path = Path(".mesh")
    database: str | None = None
    # With a PostgreSQL database, each graph run is leased by one coordinator for this long (renewed
    # every third of it); a coordinator that dies or stalls longer loses its runs to another, and a
    # replica of an agent silent this long is given up: a survivor fails its unfinished tasks.
    lease_seconds: float = Field(10.0, gt=0, le=3600)

    @field_validator("database")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value and not value.startswith(("postgresql://", "postgres://", "postgresql+asyncpg://", "sqlite:///")):
            raise ValueError("must be a postgresql:// URL (or sqlite:///PATH); leave it out for SQLite under state.dir")
        return value or None


class TelemetryConfig(Strict):
    """Where every process of the mesh sends its spans (OTEL_EXPORTER_OTLP_ENDPOINT, when set, wins over otlp_endpoint)."""

    otlp_endpoint: str | None = Field(None, pattern=r"^https?://")  # OTLP/HTTP base URL, e.g. http://127.0.0.1:4318
    sampling: float = Field(1.0, ge=0.0, le=1.0)  # share of new traces kept; a traced caller's choice is followed
    # Spans also as JSON lines under STATE_DIR/traces (what the console reads); default: only with no OTLP endpoint.
    keep_local: bool | None = None


class ConsoleConfig(Strict):
    """The web console `mesh up` serves (mesh/console): where, and whether."""

    enabled: bool = True
    port: Port | None = None  # none: a free port, written to STATE_DIR/console.json (`mesh ls --json` reads it)
    host: str | None = None  # default: server.host, but never the wildcard (0.0.0.0/:: become loopback)


class MeshConfig(Strict):
    name: Name = "mesh"
    state: StateConfig = StateConfig()
    server: ServerConfig = ServerConfig()
    agents: dict[Name, AgentConfig] = {}
    tools: dict[Name, ToolConfig] = {}
    guard: GuardPolicy | None = None
    graphs: dict[Name, GraphSpec] = {}
    console: ConsoleConfig = ConsoleConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    # The agent that runs graphs (`mesh run` talks to it); default: the agent named "coordinator".
    coordinator: Name | None = None

    _path: Path = PrivateAttr(default=Path(DEFAULT_CONFIG))
    _source: YamlSource | None = PrivateAttr(default=None)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def base_dir(self) -> Path:
        return self._path.parent

    @property
    def state_dir(self) -> Path:
        return (self.base_dir / self.state.dir).resolve()

    def coordinator_name(self) -> str | None:
        """The agent that runs this mesh's graphs: ``coordinator:``, else an agent named "coordinator"."""
        if self.coordinator:
            return self.coordinator
        return "coordinator" if "coordinator" in self.agents else None

    def local_agents(self) -> dict[str, AgentConfig]:
        return {name: agent for name, agent in self.agents.items() if agent.is_local}

    def agent(self, name: str) -> AgentConfig:
        try:
            return self.agents[name]
        except KeyError:
            known = ", ".join(sorted(self.agents)) or "none"
            raise KeyError(f"no agent named {name!r} in {self.path} (agents: {known})") from None

    def host_of(self, agent: AgentConfig) -> str:
        return agent.host or self.server.host

    def body_limit_of(self, agent: AgentConfig) -> int:
        return int(agent.max_body_bytes if agent.max_body_bytes is not None else self.server.max_body_bytes)

    def port_of(self, agent: AgentConfig, replica: int = 0) -> int:
        """The port replica ``replica`` listens on: its replica URL's, else ``port + replica``."""
        if agent.replica_urls:
            return int(urlsplit(agent.replica_urls[replica]).port)  # type: ignore[arg-type]
        return int(agent.port) + replica  # type: ignore[arg-type]

    def replica_urls_of(self, name: str) -> list[str]:
        """Where the mesh's clients reach each replica of an agent (one URL unless ``replica_urls``)."""
        agent = self.agent(name)
        return list(agent.replica_urls) if agent.replica_urls and not agent.public_url else [self.url_of(name)]

    def url_of(self, name: str, replica: int = 0) -> str:
        """Where clients reach the agent: its public_url, external url, replica URL, or scheme://host:port."""
        agent = self.agent(name)
        if agent.url:
            return agent.url.rstrip("/")
        if agent.public_url:
            return agent.public_url.rstrip("/")
        if agent.replica_urls:
            return agent.replica_urls[replica]
        host = self.host_of(agent)
        if host in ("0.0.0.0", "::", ""):
            host = socket.getfqdn()
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if agent.tls else "http"
        return f"{scheme}://{host}:{agent.port}"

    def h2c_of(self, name: str) -> bool:
        """Whether the mesh's clients speak h2c with prior knowledge to this agent (see AgentConfig.h2c)."""
        agent = self.agent(name)
        return agent.is_local if agent.h2c is None else agent.h2c

    def token_of(self, agent: AgentConfig) -> str | None:
        return agent.auth.bearer_token if agent.auth else None

    def console_host(self) -> str:
        """Where the console listens: console.host, else server.host with a wildcard turned into loopback."""
        host = self.console.host or self.server.host
        if self.console.host is None and host in ("", "0.0.0.0"):
            return "127.0.0.1"
        if self.console.host is None and host == "::":
            return "::1"
        return host

    def problem(self, path: tuple, message: str) -> SourceProblem:
        if self._source is None:
            return SourceProblem(str(self._path), None, path, message)
        return self._source.problem(path, message)


def find_config(explicit: str | os.PathLike | None = None) -> Path:
    """The config file to use: the one given, else $MESH_CONFIG, else ./mesh.yaml."""
    return Path(explicit or os.environ.get("MESH_CONFIG") or DEFAULT_CONFIG)


def load_config(path: str | os.PathLike | None = None, environ: dict[str, str] | None = None) -> MeshConfig:
    """Load and validate mesh.yaml; raise ConfigError listing every problem with file:line."""
    file = find_config(path)
    try:
        source = load_yaml(file, environ)
    except YamlSourceError as exc:
        raise ConfigError(exc.problems) from None
    if not isinstance(source.data, dict):
        raise ConfigError([source.problem((), "the top level must be a mapping (name:, agents:, ...)")])
    problems = list(source.problems)
    try:
        config = MeshConfig.model_validate(source.data)
    except ValidationError as exc:
        already = {p.path for p in problems}  # e.g. an unset ${VAR} also fails min_length
        problems += [problem for problem in validation_problems(exc, (), source.problem, MeshConfig)
                     if problem.path not in already]
        error = ConfigError(in_file_order(problems))
        error.source = source  # so that `mesh check` can go on checking what it can (the modules named)
        raise error from None
    config._path = file.resolve()
    config._source = source
    problems += _cross_checks(config, source)
    if problems:
        raise ConfigError(in_file_order(problems))
    return config


def _bind_address(host: str) -> str:
    """The address a host name binds (``localhost`` and ``127.0.0.1`` are one socket), or the name itself."""
    if host in ("", "0.0.0.0", "::"):
        return host or "0.0.0.0"
    try:
        return socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0]
    except (OSError, UnicodeError):
        return host


def _cross_checks(config: MeshConfig, source: YamlSource) -> list[SourceProblem]:
    problems: list[SourceProblem] = []
    ports: dict[tuple[str, int], str] = {}

    def claim(host: str, port: int, owner: str, path: tuple) -> None:
        host = _bind_address(host)
        for (other_host, other_port), other in ports.items():
            if other_port == port and (other_host == host or {"0.0.0.0", "::"} & {host, other_host}):
                problems.append(source.problem(path, f"port {port} is already used by {other}"))
                return
        ports[(host, port)] = owner

    for name, agent in config.agents.items():
        if agent.is_local:
            for replica in range(agent.replicas):  # replica i of `replicas: N` listens on port + i
                owner = f"agents.{name}" + (f" (replica {replica})" if replica else "")
                # with replica_urls, each replica is where its URL says (often a host of its own)
                host = urlsplit(agent.replica_urls[replica]).hostname or "" if agent.replica_urls else config.host_of(agent)
                claim(host, config.port_of(agent, replica), owner, ("agents", name, "port"))
        if agent.auth:
            problems += _secret_checks(source, ("agents", name, "auth", "bearer_token"), agent.auth.bearer_token)
        if agent.tls:
            for key in ("cert", "key"):
                file = config.base_dir / getattr(agent.tls, key)
                if not file.is_file():
                    problems.append(source.problem(("agents", name, "tls", key), f"file not found: {file}"))
    for name, tool in config.tools.items():
        if tool.transport == "http":
            claim(tool.host or config.server.host, tool.port, f"tools.{name}", ("tools", name, "port"))
        if tool.auth:
            problems += _secret_checks(source, ("tools", name, "auth", "bearer_token"), tool.auth.bearer_token)
    if config.console.enabled and config.console.port is not None:
        claim(config.console_host(), config.console.port, "console", ("console", "port"))
    from mesh.graphs.vertices import agents_named

    for graph_name, graph in config.graphs.items():
        for index, vertex in enumerate(graph.vertices):
            for agent in agents_named(vertex):
                if agent not in config.agents:
                    key = "agent" if hasattr(vertex, "agent") else "agents"
                    known = ", ".join(sorted(config.agents)) or "none"
                    problems.append(source.problem(("graphs", graph_name, "vertices", index, key),
                                                   f"no agent named {agent!r} in this mesh (agents: {known})"))
    for name, agent in config.agents.items():
        for index, tool in enumerate(agent.tools):
            if tool not in config.tools:
                known = ", ".join(sorted(config.tools)) or "none"
                problems.append(source.problem(("agents", name, "tools", index), f"no tool named {tool!r} in this mesh (tools: {known})"))
        for index, other in enumerate(agent.agents):
            if other not in config.agents or other == name:
                known = ", ".join(sorted(set(config.agents) - {name})) or "none"
                problems.append(source.problem(("agents", name, "agents", index), f"no other agent named {other!r} in this mesh (agents: {known})"))
        if agent.llm and agent.llm.api_key is not None:
            raw = source.raw.get(("agents", name, "llm", "api_key"))
            if raw is None or not ENV_REFERENCE.fullmatch(raw):
                problems.append(source.problem(("agents", name, "llm", "api_key"), "secrets must come from the environment: write ${VAR_NAME}, not the key itself"))
    if config.coordinator and config.coordinator not in config.agents:
        problems.append(source.problem(("coordinator",), f"no agent named {config.coordinator!r}"))
    if config.state.database and urlsplit(config.state.database).password and ("state", "database") not in source.raw:
        problems.append(source.problem(("state", "database"), "a database URL with a password must come from the environment: write ${VAR}"))
    return problems


def _secret_checks(source: YamlSource, path: tuple, value: str) -> list[SourceProblem]:
    raw = source.raw.get(path)
    if raw is None or not WHOLE_ENV_REFERENCE.match(raw):
        return [source.problem(path, "secrets must come from the environment: write ${VAR_NAME}, not the secret itself")]
    if not value and not any(p.path == path for p in source.problems):
        return [source.problem(path, f"environment variable {raw[2:-1]} is empty")]
    return []
