"""The A2A gRPC binding (grpc_port) with a2a-sdk's gRPC client against a real agent process: card, send, stream,
get, cancel of an unknown task, and the bearer token required when the agent has auth."""

import grpc
import grpc.aio
import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.types import AgentCard, GetTaskRequest, SendMessageRequest, TaskState
from a2a.utils import TransportProtocol
from google.protobuf.json_format import ParseDict

from mesh.client import user_message
from tests.support.util import MeshUp, free_ports, write_mesh


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    directory = tmp_path_factory.mktemp("grpc")
    port, grpc_port, auth_port, auth_grpc = free_ports(4)
    config = write_mesh(directory, {
        "echo": {"module": "agents.echo", "port": port, "grpc_port": grpc_port},
        "locked": {"module": "agents.echo", "port": auth_port, "grpc_port": auth_grpc, "auth": {"bearer_token": "${LOCKED_TOKEN}"}},
    })
    with MeshUp(config, env={"LOCKED_TOKEN": "grpc-secret"}) as up:
        up.wait_ready()
        yield {"url": f"http://127.0.0.1:{port}", "grpc": f"127.0.0.1:{grpc_port}", "locked": f"http://127.0.0.1:{auth_port}"}


def card_of(url: str) -> AgentCard:
    return ParseDict(httpx.get(url + "/.well-known/agent-card.json", headers={"A2A-Version": "1.0"}).json(), AgentCard(),
                     ignore_unknown_fields=True)


async def grpc_client(card: AgentCard, streaming: bool, metadata=None):
    config = ClientConfig(streaming=streaming, supported_protocol_bindings=[TransportProtocol.GRPC],
                          grpc_channel_factory=lambda url: grpc.aio.insecure_channel(url))
    return await create_client(card, config)


async def test_the_card_declares_grpc_and_the_sdk_client_talks_over_it(agent):
    card = card_of(agent["url"])
    interfaces = {i.protocol_binding: i.url for i in card.supported_interfaces}
    assert interfaces["GRPC"] == agent["grpc"]
    client = await grpc_client(card, streaming=False)
    events = [e async for e in client.send_message(SendMessageRequest(message=user_message("over grpc")))]
    task = events[-1].task
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert task.artifacts[0].parts[0].text == "over grpc"
    got = await client.get_task(GetTaskRequest(id=task.id))
    assert got.id == task.id and got.artifacts[0].parts[0].text == "over grpc"
    # the same task is visible over JSON-RPC: one handler, one store
    answer = httpx.post(agent["url"] + "/", headers={"A2A-Version": "1.0"},
                        json={"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": task.id}}).json()
    assert answer["result"]["id"] == task.id
    await client.close()


async def test_streaming_over_grpc(agent):
    client = await grpc_client(card_of(agent["url"]), streaming=True)
    events = [e async for e in client.send_message(SendMessageRequest(message=user_message("streamed")))]
    kinds = [e.WhichOneof("payload") for e in events]
    assert "artifact_update" in kinds or "task" in kinds
    assert any(e.WhichOneof("payload") == "status_update" and e.status_update.status.state == TaskState.TASK_STATE_COMPLETED
               for e in events) or events[-1].task.status.state == TaskState.TASK_STATE_COMPLETED
    await client.close()


async def test_grpc_requires_the_bearer_token_when_the_agent_has_auth(agent):
    card = card_of(agent["locked"])
    target = next(i.url for i in card.supported_interfaces if i.protocol_binding == "GRPC")
    from a2a.types import a2a_pb2, a2a_pb2_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        stub = a2a_pb2_grpc.A2AServiceStub(channel)
        request = a2a_pb2.GetTaskRequest(id="nope")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetTask(request)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetTask(request, metadata=(("authorization", "Bearer grpc-secret"),))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND  # past auth: the task does not exist


async def test_a_03_grpc_client_on_the_same_port(agent):
    # the 0.3 card names the port with transport GRPC; a 0.3 stub (service a2a.v1.A2AService) talks to it
    from a2a.compat.v0_3 import a2a_v0_3_pb2 as v03
    from a2a.compat.v0_3 import a2a_v0_3_pb2_grpc as v03_grpc

    card = httpx.get(agent["url"] + "/.well-known/agent-card.json", headers={"A2A-Version": "0.3"}).json()
    assert {"transport": "GRPC", "url": "http://" + agent["grpc"]} in card["additionalInterfaces"]
    async with grpc.aio.insecure_channel(agent["grpc"]) as channel:
        stub = v03_grpc.A2AServiceStub(channel)
        message = v03.Message(message_id="m-03", role=v03.ROLE_USER, content=[v03.Part(text="over grpc 0.3")])
        answer = await stub.SendMessage(v03.SendMessageRequest(request=message))
        assert answer.task.status.state == v03.TASK_STATE_COMPLETED
        assert answer.task.artifacts[0].parts[0].text == "over grpc 0.3"
        got = await stub.GetTask(v03.GetTaskRequest(name=f"tasks/{answer.task.id}"))
        assert got.id == answer.task.id
