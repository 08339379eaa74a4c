"""Real agent processes under `mesh up`, spoken to with curl over HTTP/1.1 and h2c: cards, both method
name sets, SSE streams, tasks, the REST binding, and every kind of bad input."""

import asyncio
import json

import httpx
import pytest

from tests.support.util import (
    MeshUp,
    curl,
    curl_json,
    free_ports,
    jsonrpc,
    sse_events,
    write_mesh,
)

H1, H2 = "--http1.1", "--http2-prior-knowledge"
BOTH = pytest.mark.parametrize("http", [H1, H2], ids=["http1.1", "h2c"])


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mesh")
    echo_port, primes_port = free_ports(2)
    config = write_mesh(directory, {
        "echo": {"module": "agents.echo", "port": echo_port},
        "primes": {"module": "agents.primes", "port": primes_port, "max_body_bytes": "64KiB"},
    })
    with MeshUp(config) as up:
        up.wait_ready()
        up.echo = f"http://127.0.0.1:{echo_port}"
        up.primes = f"http://127.0.0.1:{primes_port}"
        yield up
        assert up.stop() == 0


def message(text: str, v1: bool = False, **extra) -> dict:
    if v1:
        return {"message": {"role": "ROLE_USER", "messageId": "m-" + text[:8], "parts": [{"text": text}]}, **extra}
    return {"message": {"role": "user", "messageId": "m-" + text[:8], "kind": "message",
                        "parts": [{"kind": "text", "text": text}]}, **extra}


# -- cards and health ----------------------------------------------------------------------------


@BOTH
def test_card_names_the_urls_it_is_served_at(mesh, http):
    card = curl_json(mesh.echo + "/.well-known/agent-card.json", http=http)
    assert card["_status"] == 200
    assert card["name"] == "Echo"
    interfaces = {(i["protocolBinding"], i["protocolVersion"]): i["url"] for i in card["supportedInterfaces"]}
    assert interfaces == {(b, v): mesh.echo for b in ("JSONRPC", "HTTP+JSON") for v in ("1.0", "0.3")}
    # 0.3 clients read these top-level fields
    assert card["url"] == mesh.echo and card["protocolVersion"] == "0.3" and card["preferredTransport"] == "JSONRPC"
    assert card["capabilities"]["streaming"] is True
    assert [s["id"] for s in card["skills"]] == ["echo"]
    assert "securitySchemes" not in card


def test_card_caching_headers(mesh):
    head = curl("-sI", "--http2-prior-knowledge", mesh.echo + "/.well-known/agent-card.json").stdout
    headers = dict(line.split(": ", 1) for line in head.splitlines()[1:] if ": " in line)
    assert headers["cache-control"] == "public, max-age=300"
    assert headers["last-modified"].endswith(" GMT")
    etag = headers["etag"]
    assert etag.startswith('W/"')
    again = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "--http2-prior-knowledge", "-H", f"If-None-Match: {etag}",
                 mesh.echo + "/.well-known/agent-card.json")
    assert again.stdout == "304"


def test_legacy_card_path_and_health(mesh):
    legacy = curl_json(mesh.primes + "/.well-known/agent.json", http=H1)
    assert legacy["name"] == "Primes" and legacy["url"] == mesh.primes
    health = curl_json(mesh.primes + "/health", http=H2)
    assert health["status"] == "ok" and health["agent"] == "primes"


# -- message/send, SendMessage, tasks/get --------------------------------------------------------


@BOTH
def test_message_send_v03(mesh, http):
    answer = curl_json(mesh.echo + "/", jsonrpc("message/send", message("hello 0.3")), http=http)
    task = answer["result"]
    assert task["kind"] == "task" and task["status"]["state"] == "completed"
    assert task["artifacts"][0]["name"] == "echo"
    assert task["artifacts"][0]["parts"] == [{"kind": "text", "text": "hello 0.3"}]
    got = curl_json(mesh.echo + "/", jsonrpc("tasks/get", {"id": task["id"]}), http=http)["result"]
    assert got["id"] == task["id"] and got["artifacts"][0]["parts"][0]["text"] == "hello 0.3"


@BOTH
def test_send_message_v10(mesh, http):
    answer = curl_json(mesh.echo + "/", jsonrpc("SendMessage", message("hello 1.0", v1=True)), http=http, version="1.0")
    task = answer["result"]["task"]
    assert task["status"]["state"] == "TASK_STATE_COMPLETED"
    assert task["artifacts"][0]["parts"] == [{"text": "hello 1.0"}]
    got = curl_json(mesh.echo + "/", jsonrpc("GetTask", {"id": task["id"]}), http=http, version="1.0")["result"]
    assert got["artifacts"][0]["parts"] == [{"text": "hello 1.0"}]


def test_data_parts_round_trip(mesh):
    body = {"message": {"role": "user", "messageId": "m-data", "kind": "message",
                        "parts": [{"kind": "data", "data": {"n": 3, "tags": ["a", "b"]}}]}}
    task = curl_json(mesh.echo + "/", jsonrpc("message/send", body))["result"]
    assert task["artifacts"][0]["parts"] == [{"kind": "data", "data": {"n": 3, "tags": ["a", "b"]}}]


# -- streaming -----------------------------------------------------------------------------------


@BOTH
def test_message_stream_v03(mesh, http):
    result = curl(http, "-N", mesh.primes + "/", "-H", "Content-Type: application/json",
                  "--data-binary", jsonrpc("message/stream", message("primes below 1000")))
    events = [e["result"] for e in sse_events(result.stdout)]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "task" and events[0]["status"]["state"] == "submitted"
    assert "status-update" in kinds and "artifact-update" in kinds
    assert events[-1]["kind"] == "status-update" and events[-1]["final"] is True
    assert events[-1]["status"]["state"] == "completed"
    summary = next(e for e in events if e["kind"] == "artifact-update" and e["artifact"]["name"] == "summary")
    data = next(p["data"] for p in summary["artifact"]["parts"] if p["kind"] == "data")
    assert data["primes"] == 168 and data["largest"] == 997 and data["twin_pairs"] == 35


def test_send_streaming_message_v10(mesh):
    result = curl(H2, "-N", mesh.primes + "/", "-H", "Content-Type: application/json", "-H", "A2A-Version: 1.0",
                  "--data-binary", jsonrpc("SendStreamingMessage", message("primes below 100", v1=True)))
    events = [e["result"] for e in sse_events(result.stdout)]
    assert "task" in events[0]
    assert events[-1]["statusUpdate"]["status"]["state"] == "TASK_STATE_COMPLETED"
    artifacts = {e["artifactUpdate"]["artifact"]["name"] for e in events if "artifactUpdate" in e}
    assert artifacts == {"segments", "summary", "extremes"}


# -- cancel ----------------------------------------------------------------------------------------


def test_cancel_a_running_task(mesh):
    # return_immediately hands back the task while it works; then cancel it.
    started = curl_json(mesh.primes + "/", jsonrpc("SendMessage", message(
        "primes below 10^11", v1=True, configuration={"returnImmediately": True})), version="1.0")["result"]["task"]
    task_id = started["id"]
    canceled = curl_json(mesh.primes + "/", jsonrpc("tasks/cancel", {"id": task_id}))["result"]
    assert canceled["status"]["state"] == "canceled"
    got = curl_json(mesh.primes + "/", jsonrpc("GetTask", {"id": task_id}), version="1.0")["result"]
    assert got["status"]["state"] == "TASK_STATE_CANCELED"
    assert got["status"]["message"]["parts"][0]["text"] == "Canceled at the client's request."
    again = curl_json(mesh.primes + "/", jsonrpc("CancelTask", {"id": task_id}), version="1.0")
    assert again["error"]["code"] == -32002  # TaskNotCancelable: it is already terminal


# -- REST binding ----------------------------------------------------------------------------------


def test_rest_binding(mesh):
    sent = curl_json(mesh.echo + "/message:send", json.dumps(message("over rest", v1=True)), version="1.0")
    task = sent["task"]
    assert task["artifacts"][0]["parts"] == [{"text": "over rest"}]
    got = curl_json(mesh.echo + f"/tasks/{task['id']}", http=H1, version="1.0")
    assert got["id"] == task["id"]
    missing = curl_json(mesh.echo + "/tasks/no-such-task", http=H1, version="1.0")
    assert missing["_status"] == 404 and missing["error"]["status"] == "NOT_FOUND"


# -- bad input -------------------------------------------------------------------------------------


def rpc_error(url: str, body: str, http: str = H2, **kwargs) -> dict:
    answer = curl_json(url + "/", body, http=http, **kwargs)
    assert "result" not in answer, answer
    return answer["error"]


@BOTH
def test_malformed_json(mesh, http):
    error = rpc_error(mesh.echo, '{"jsonrpc": "2.0", "method": ', http=http)
    assert error["code"] == -32700



@pytest.mark.parametrize("body, code, fragment", [
    (b'{"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": {"messageId": "\xff\xfe"}}}',
     -32700, "the body is not UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, -32700, "nested too deeply"),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": {"role": "user", "messageId": "m",'
     b' "parts": [{"kind": "data", "data": {"x": ' + b"[" * 5000 + b"]" * 5000 + b"}}]}}}", -32700, "nested too deeply"),
])
def test_bodies_no_parser_should_take_are_parse_errors(mesh, tmp_path, body, code, fragment):
    (tmp_path / "body").write_bytes(body)
    error = rpc_error(mesh.echo, f"@{tmp_path / 'body'}")
    assert error["code"] == code and fragment in error["message"]


def test_numbers_that_are_not_finite_are_invalid_params_naming_the_field(mesh):
    body = ('{"jsonrpc": "2.0", "id": 7, "method": "message/send", "params": {"message": {"role": "user", "messageId": "nf",'
            ' "parts": [{"kind": "data", "data": {"x": NaN, "y": [1e400]}}]}}}')
    answer = curl_json(mesh.echo + "/", body)
    assert answer["id"] == 7 and answer["error"]["code"] == -32602
    fields = {e["field"] for e in answer["error"]["data"]["errors"]}
    assert fields == {"message.parts.0.data.x", "message.parts.0.data.y.0"}
    # and the agent goes on serving
    assert "result" in curl_json(mesh.echo + "/", jsonrpc("message/send", message("still here")))

@pytest.mark.parametrize("body, fragment", [
    ('{"jsonrpc": "1.0", "id": 1, "method": "message/send", "params": {}}', "'jsonrpc' must be exactly '2.0'"),
    ('{"jsonrpc": "2.0", "id": 1}', ""),
    ('[]', ""),
    ('"just a string"', ""),
    ('{"jsonrpc": "2.0", "id": true, "method": "tasks/get", "params": {"id": "x"}}', "id must be a string"),
])
def test_invalid_request(mesh, body, fragment):
    error = rpc_error(mesh.echo, body)
    assert error["code"] == -32600
    assert fragment in json.dumps(error)


def test_unknown_method(mesh):
    error = rpc_error(mesh.echo, jsonrpc("message/explode", {}))
    assert error["code"] == -32601


def test_wrong_params_v03_names_the_field(mesh):
    body = jsonrpc("message/send", {"message": {"role": "user", "messageId": 5, "kind": "message", "parts": "x"}})
    error = rpc_error(mesh.echo, body)
    assert error["code"] == -32602
    fields = {e["field"] for e in error["data"]["errors"]}
    assert {"message.messageId", "message.parts"} <= fields
    assert "message.messageId" in error["message"]


def test_missing_params_v03(mesh):
    error = rpc_error(mesh.echo, '{"jsonrpc": "2.0", "id": 3, "method": "tasks/get"}')
    assert error["code"] == -32602 and error["data"]["errors"][0]["field"] == "params"


def test_wrong_params_v10_names_the_field(mesh):
    error = rpc_error(mesh.echo, jsonrpc("SendMessage", {"message": {"role": "ROLE_USER", "parts": [{"text": "x"}]}}),
                      version="1.0")
    assert error["code"] == -32602
    assert "message.message_id" in json.dumps(error)
    error = rpc_error(mesh.echo, jsonrpc("GetTask", {"id": 5}), version="1.0")
    assert error["code"] == -32602 and "id field" in json.dumps(error)


def test_a_part_with_no_content_is_refused_on_every_binding(mesh):
    empty = {"message": {"role": "ROLE_USER", "messageId": "m-empty", "parts": [{"text": "ok"}, {}]}}
    for method in ("SendMessage", "SendStreamingMessage"):
        error = rpc_error(mesh.echo, jsonrpc(method, empty), version="1.0")
        assert error["code"] == -32602 and "message.parts[1] has no content" in error["message"], error
    rest = curl_json(mesh.echo + "/message:send", json.dumps(empty), version="1.0")
    assert rest["_status"] == 400 and "message.parts[1] has no content" in rest["error"]["message"], rest
    # the agent never saw it: no task was made
    tasks = curl_json(mesh.echo + "/tasks?pageSize=100&historyLength=1", http=H1, version="1.0")["tasks"]
    assert not any(h.get("messageId") == "m-empty" for t in tasks for h in t.get("history", []))


def test_unknown_task(mesh):
    assert rpc_error(mesh.echo, jsonrpc("tasks/get", {"id": "nope"}))["code"] == -32001
    error = rpc_error(mesh.echo, jsonrpc("GetTask", {"id": "nope"}), version="1.0")
    assert error["code"] == -32001 and "not found" in error["message"].lower()
    assert rpc_error(mesh.echo, jsonrpc("tasks/cancel", {"id": "nope"}))["code"] == -32001


def test_v10_method_without_version_header(mesh):
    error = rpc_error(mesh.echo, jsonrpc("SendMessage", message("x", v1=True)))
    assert error["code"] == -32009
    assert "A2A version '0.3' is not supported" in error["message"]


@BOTH
def test_wrong_content_type(mesh, http):
    result = curl(http, "-w", "\n%{http_code}", mesh.echo + "/", "-H", "Content-Type: text/plain",
                  "--data-binary", jsonrpc("tasks/get", {"id": "x"}))
    body, _, status = result.stdout.rpartition("\n")
    assert status == "415"
    error = json.loads(body)["error"]
    assert error["code"] == -32005  # ContentTypeNotSupportedError
    assert "Unsupported Content-Type 'text/plain'" in error["message"]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_over_the_limit_is_refused_and_the_agent_keeps_serving(mesh, tmp_path, chunked):
    big = tmp_path / "big.json"
    big.write_text(jsonrpc("message/send", message("x" * 100_000)))  # primes allows 64 KiB
    headers = ["-H", "Transfer-Encoding: chunked"] if chunked else []
    result = curl(H1, "-w", "\n%{http_code}", mesh.primes + "/", "-H", "Content-Type: application/json",
                  *headers, "--data-binary", f"@{big}")
    body, _, status = result.stdout.rpartition("\n")
    assert status == "413", result.stdout[-300:]
    assert "the limit is 65536 bytes" in json.loads(body)["error"]["message"]
    health = curl_json(mesh.primes + "/health", http=H2)
    assert health["status"] == "ok"
    answer = curl_json(mesh.primes + "/", jsonrpc("message/send", message("primes below 50")))
    assert answer["result"]["status"]["state"] == "completed"


def test_oversized_h2_body_without_length(mesh, tmp_path):
    big = tmp_path / "big.json"
    big.write_text(jsonrpc("message/send", message("y" * 200_000)))
    result = curl(H2, "-w", "\n%{http_code}", mesh.primes + "/", "-H", "Content-Type: application/json",
                  "-H", "Content-Length:", "--data-binary", f"@{big}")
    assert result.stdout.rpartition("\n")[2] == "413", (result.returncode, result.stderr, result.stdout[-300:])


async def test_an_early_answer_over_h2_leaves_the_connection_and_its_other_streams_alone(mesh):
    # The 413 goes out while the client is still sending the body: the rest of the body must be
    # dropped, not end the connection with every other request on it (pgjones/hypercorn#329).
    async def slow_body():
        yield jsonrpc("message/send", message("z" * 70_000)).encode()
        for _ in range(10):
            await asyncio.sleep(0.05)
            yield b" " * 16_384

    async with httpx.AsyncClient(http1=False, http2=True, timeout=30) as client:
        beside = asyncio.create_task(client.post(mesh.primes + "/", content=jsonrpc("message/send", message(
            "primes below 3000000")), headers={"Content-Type": "application/json"}))
        refused = await client.post(mesh.primes + "/", content=slow_body(), headers={"Content-Type": "application/json"})
        assert refused.status_code == 413 and refused.http_version == "HTTP/2"
        assert "Request body too large" in refused.json()["error"]["message"]
        assert (await beside).json()["result"]["status"]["state"] == "completed"
        after = await client.post(mesh.primes + "/", content=jsonrpc("tasks/get", {"id": "none"}),
                                  headers={"Content-Type": "application/json"})
        assert after.status_code == 200 and after.json()["error"]["code"] == -32001
    assert "KeyError" not in mesh.output


def test_one_log_line_per_request(mesh):
    curl_json(mesh.echo + "/", jsonrpc("tasks/get", {"id": "log-probe"}, id="probe"))
    line = mesh.wait_for('"POST / HTTP/2" 200 tasks/get')
    assert line.startswith("echo")


def test_h2c_upgrade_from_http1(mesh):
    # `curl --http2` on http:// starts in HTTP/1.1 with `Upgrade: h2c`; a GET is upgraded.
    card = curl_json(mesh.echo + "/.well-known/agent-card.json", http="--http2")
    assert card["name"] == "Echo"


def test_a_strict_10_card(tmp_path):
    (port,) = free_ports(1)
    config = write_mesh(tmp_path, {"echo": {"module": "agents.echo", "port": port}},
                        extra="server:\n  card_versions: ['1.0']\n")
    with MeshUp(config) as up:
        up.wait_ready()
        url = f"http://127.0.0.1:{port}"
        card = curl_json(url + "/.well-known/agent-card.json")
        assert {i["protocolVersion"] for i in card["supportedInterfaces"]} == {"1.0"}
        assert not {"url", "protocolVersion", "preferredTransport", "additionalInterfaces"} & set(card)
        # 0.3 method names are still answered
        answer = curl_json(url + "/", jsonrpc("message/send", message("still 0.3")))
        assert answer["result"]["artifacts"][0]["parts"][0]["text"] == "still 0.3"
        assert up.stop() == 0
