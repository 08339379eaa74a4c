"""A2A clients for the CLI and the coordinator: resolve an agent by name or URL, then call it.

HTTP versions: over TLS, ALPN picks h2 or HTTP/1.1; over plain TCP the client
speaks h2c with prior knowledge only to agents known to speak it (the mesh's
own agents, or ``h2c: true`` on an agent or ``a2a`` vertex), else HTTP/1.1,
which every A2A server speaks (uvicorn, express, ...).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.client.client import Client
from a2a.helpers import new_data_part, new_text_part
from a2a.types import AgentCard, Message, Part, Role, SendMessageRequest

from mesh.config import MeshConfig
from mesh.telemetry.tracing import HTTPX_HOOKS


@dataclass
class Target:
    """An agent to talk to: where it is and the token it wants (if any)."""

    name: str
    url: str
    token: str | None = None
    h2c: bool = False  # the agent speaks HTTP/2 over plain TCP with prior knowledge


def known_h2c(config: MeshConfig | None, url: str) -> bool:
    """A URL of one of the mesh's own agents (which speak h2c) is called with h2c too."""
    if config is None:
        return False
    for name in config.agents:
        try:
            if config.url_of(name) == url and config.h2c_of(name):
                return True
        except Exception:
            continue
    return False


def resolve_target(config: MeshConfig | None, name_or_url: str) -> Target:
    """An agent of mesh.yaml by name (its token from mesh.yaml), or any A2A agent by URL (token from $MESH_TOKEN)."""
    if name_or_url.startswith(("http://", "https://")):
        url = name_or_url.rstrip("/")
        return Target(name_or_url, url, os.environ.get("MESH_TOKEN") or None, known_h2c(config, url))
    if config is None:
        raise KeyError(f"{name_or_url!r} is not a URL and no mesh.yaml was loaded")
    agent = config.agent(name_or_url)
    return Target(name_or_url, config.url_of(name_or_url), config.token_of(agent), config.h2c_of(name_or_url))


def http_client(token: str | None = None, timeout: float | None = 60.0, verify: Any = True,
                h2c: bool = False) -> httpx.AsyncClient:
    """An httpx client: ALPN (h2 or HTTP/1.1) on https://; on http://, h2c with prior knowledge if ``h2c``, else HTTP/1.1."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        http1=not h2c, http2=True, headers=headers, verify=verify,
        event_hooks={kind: list(hooks) for kind, hooks in HTTPX_HOOKS.items()},
        timeout=httpx.Timeout(timeout, connect=10.0),
        limits=httpx.Limits(max_connections=20, max_keepalive_connections=20),
    )


async def fetch_card(http: httpx.AsyncClient, url: str) -> AgentCard:
    return await A2ACardResolver(http, url).get_agent_card()


async def open_client(http: httpx.AsyncClient, card: AgentCard, streaming: bool) -> Client:
    return await create_client(card, ClientConfig(streaming=streaming, httpx_client=http))


def user_message(text: str | None = None, data: Any = None, task_id: str | None = None,
                 context_id: str | None = None, metadata: dict | None = None) -> Message:
    parts: list[Part] = []
    if text:
        parts.append(new_text_part(text))
    if data is not None:
        parts.append(new_data_part(data))
    message = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=parts)
    if task_id:
        message.task_id = task_id
    if context_id:
        message.context_id = context_id
    if metadata:
        message.metadata.update(metadata)
    return message


def send_request(message: Message) -> SendMessageRequest:
    return SendMessageRequest(message=message)
