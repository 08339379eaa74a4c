"""The benchmark's reference A2A agent, built the way a2a-samples' helloworld is: bare a2a-sdk app, in-memory store, uvicorn.

It runs the same executor as the mesh's echo agent, so the comparison is between serving stacks.
Usage: python scripts/bench/reference_agent.py PORT
"""

import sys

import uvicorn
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
from starlette.applications import Starlette

from agents.echo import Echo

if __name__ == "__main__":
    port = int(sys.argv[1])
    card = AgentCard(
        name="Reference echo", description="helloworld-shaped reference", version="0.0.1",
        default_input_modes=["text/plain"], default_output_modes=["text/plain"],
        capabilities=AgentCapabilities(streaming=True),
        supported_interfaces=[AgentInterface(protocol_binding="JSONRPC", url=f"http://127.0.0.1:{port}", protocol_version="1.0")],
        skills=[AgentSkill(id="echo", name="Echo", description="echo", tags=["echo"])],
    )
    handler = DefaultRequestHandler(agent_executor=Echo(), task_store=InMemoryTaskStore(), agent_card=card)
    routes = [*create_agent_card_routes(card), *create_jsonrpc_routes(handler, "/", enable_v0_3_compat=True)]
    uvicorn.run(Starlette(routes=routes), host="127.0.0.1", port=port, log_level="warning")
