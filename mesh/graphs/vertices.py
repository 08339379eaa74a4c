"""The mesh's vertex kinds for graphs in mesh.yaml: an agent of the mesh, any A2A agent by URL, a group of equivalent agents.

These are the specs only (pydantic, registered with the engine so that
``graphs:`` validates them); mesh/graphs.py turns them into calls.

    - {id: count, kind: agent, agent: primes}                        # an agent of mesh.yaml
    - {id: ext, kind: a2a, url: https://agents.example.com/a2a, token_env: EXT_TOKEN}
    - {id: any-echo, kind: group, agents: [echo, echo2], route: fastest}

Every kind takes ``instruction``: a text sent before the inbox (e.g. "Summarise:").
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from mesh.pregel.spec import VertexSpec, register_vertex_kind

AgentName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]


class RemoteVertex(VertexSpec):
    """What every A2A vertex has."""

    instruction: str | None = None
    # Whether this agent may steer the run with a {"pregel": {...}} control part (send, halt,
    # state, mutations). Off by default: an agent's answer is content, and content an agent
    # merely passed along (the user's input, a document) must not steer the graph.
    control: bool = False


@register_vertex_kind
class AgentVertex(RemoteVertex):
    """An agent of this mesh, by its name in mesh.yaml."""

    kind: Literal["agent"] = "agent"
    agent: AgentName


@register_vertex_kind
class A2AVertex(RemoteVertex):
    """Any A2A agent, by the base URL its card is served under."""

    kind: Literal["a2a"] = "a2a"
    url: str
    token_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # h2c (HTTP/2 over plain TCP, prior knowledge) only for an agent known to speak it (e.g. another
    # mesh's agent); by default http:// is HTTP/1.1 and https:// negotiates h2 or HTTP/1.1 by ALPN.
    h2c: bool = False

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return value.rstrip("/")


@register_vertex_kind
class GroupVertex(RemoteVertex):
    """Equivalent agents of the mesh; each call goes to the one measured fastest (or cheapest), untried ones first."""

    kind: Literal["group"] = "group"
    agents: list[AgentName] = Field(min_length=2)
    route: Literal["fastest", "cheapest"] = "fastest"


def agents_named(vertex: VertexSpec) -> list[str]:
    """The mesh agents a vertex spec calls."""
    if isinstance(vertex, AgentVertex):
        return [vertex.agent]
    if isinstance(vertex, GroupVertex):
        return list(vertex.agents)
    return []
