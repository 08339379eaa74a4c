"""The a2a-sdk client over HTTP/2 only (h2c prior knowledge) against real agents: send, stream, get, cancel."""

import asyncio

import httpx
import pytest
from a2a.client import A2ACardResolver, ClientConfig, create_client
from a2a.types import CancelTaskRequest, GetTaskRequest, SendMessageRequest, TaskState

from mesh.client import user_message
from tests.support.util import MeshUp, free_ports, write_mesh


@pytest.fixture(scope="module")
def agents(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mesh")
    echo_port, primes_port = free_ports(2)
    config = write_mesh(directory, {
        "echo": {"module": "agents.echo", "port": echo_port},
        "primes": {"module": "agents.primes", "port": primes_port},
    })
    with MeshUp(config) as up:
        up.wait_ready()
        yield {"echo": f"http://127.0.0.1:{echo_port}", "primes": f"http://127.0.0.1:{primes_port}"}
        assert up.stop() == 0


class H2Only:
    """An httpx client that speaks only HTTP/2 and records the version of every response."""

    def __init__(self) -> None:
        self.versions: list[str] = []

        async def record(response: httpx.Response) -> None:
            self.versions.append(response.http_version)

        self.http = httpx.AsyncClient(http1=False, http2=True, timeout=60, event_hooks={"response": [record]})


async def client_for(url: str, http: httpx.AsyncClient, streaming: bool):
    card = await A2ACardResolver(http, url).get_agent_card()
    return await create_client(card, ClientConfig(streaming=streaming, httpx_client=http))


async def test_send_and_get_over_h2(agents):
    h2 = H2Only()
    async with h2.http:
        client = await client_for(agents["echo"], h2.http, streaming=False)
        events = [e async for e in client.send_message(SendMessageRequest(message=user_message("over h2")))]
        task = events[-1].task
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert task.artifacts[0].parts[0].text == "over h2"
        got = await client.get_task(GetTaskRequest(id=task.id))
        assert got.artifacts[0].parts[0].text == "over h2"
    assert h2.versions and set(h2.versions) == {"HTTP/2"}


async def test_stream_over_h2(agents):
    h2 = H2Only()
    async with h2.http:
        client = await client_for(agents["primes"], h2.http, streaming=True)
        kinds, states, summary = [], [], None
        async for event in client.send_message(SendMessageRequest(message=user_message("primes below 2*10^6"))):
            kind = event.WhichOneof("payload")
            kinds.append(kind)
            if kind == "status_update":
                states.append(event.status_update.status.state)
            if kind == "artifact_update" and event.artifact_update.artifact.name == "summary":
                summary = event.artifact_update.artifact
    assert kinds[0] == "task"
    assert states[0] == TaskState.TASK_STATE_WORKING and states[-1] == TaskState.TASK_STATE_COMPLETED
    assert "There are 148,933 primes below 2,000,000" in summary.parts[0].text
    assert set(h2.versions) == {"HTTP/2"}


async def test_cancel_mid_stream(agents):
    async with httpx.AsyncClient(http1=False, http2=True, timeout=60) as http:
        client = await client_for(agents["primes"], http, streaming=True)
        stream = client.send_message(SendMessageRequest(message=user_message("primes below 10^11")))
        task_id = None
        async for event in stream:
            if event.WhichOneof("payload") == "status_update" and event.status_update.status.message.parts:
                task_id = event.status_update.task_id
                break  # the first progress report: it is working
        await stream.aclose()
        canceled = await client.cancel_task(CancelTaskRequest(id=task_id))
        assert canceled.status.state == TaskState.TASK_STATE_CANCELED
        got = await client.get_task(GetTaskRequest(id=task_id))
        assert got.status.state == TaskState.TASK_STATE_CANCELED
        progress = [a for a in got.artifacts if a.name == "segments"]
        assert progress and progress[0].parts, "the work done before the cancel is kept"


async def test_many_concurrent_calls_on_one_connection(agents):
    async with httpx.AsyncClient(http1=False, http2=True, timeout=60) as http:
        client = await client_for(agents["echo"], http, streaming=False)

        async def one(i: int) -> str:
            events = [e async for e in client.send_message(SendMessageRequest(message=user_message(f"call {i}")))]
            return events[-1].task.artifacts[0].parts[0].text

        answers = await asyncio.gather(*(one(i) for i in range(150)))
    assert answers == [f"call {i}" for i in range(150)]
