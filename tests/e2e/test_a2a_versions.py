"""A2A version negotiation and the protocol's small print, against a real agent process (echo) over HTTP/1.1 and h2c:
the card each version reads, ?A2A-Version=, unsupported versions, 0.3 names under 1.0, notifications, integers,
CORS (off by default) and GET /v1/tasks."""

import json
import re

import httpx
import pytest

from tests.support.util import MeshUp, free_ports, sse_events, write_mesh

V03_SEND = {"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": {
    "kind": "message", "role": "user", "messageId": "m-03", "parts": [{"kind": "text", "text": "hi"}]}}}


def send_10(data: dict, message_id: str = "m-10", method: str = "SendMessage") -> dict:
    return {"jsonrpc": "2.0", "id": 7, "method": method, "params": {"message": {
        "role": "ROLE_USER", "messageId": message_id, "parts": [{"data": data}]}}}


@pytest.fixture(scope="module")
def agents(tmp_path_factory):
    directory = tmp_path_factory.mktemp("versions")
    plain, cors, tck = free_ports(3)
    config = write_mesh(directory, {"echo": {"module": "agents.echo", "port": plain},
                                    "tck": {"module": "tests.support.agents.tck", "port": tck}})
    cors_dir = directory / "cors"
    cors_dir.mkdir()
    cors_config = write_mesh(cors_dir, {"echo": {"module": "agents.echo", "port": cors}},
                             server={"cors": {"allow_origins": ["https://console.example"]}, "card_default": "1.0"})
    with MeshUp(config) as up, MeshUp(cors_config) as up_cors:
        up.wait_ready()
        up_cors.wait_ready()
        yield {"plain": f"http://127.0.0.1:{plain}", "cors": f"http://127.0.0.1:{cors}", "tck": f"http://127.0.0.1:{tck}"}


@pytest.fixture
def http():
    with httpx.Client(timeout=30) as client:
        yield client


def test_each_version_reads_its_card(agents, http):
    url = agents["plain"] + "/.well-known/agent-card.json"
    for asked in ({"headers": {"A2A-Version": "1.0"}}, {"params": {"A2A-Version": "1.0"}}):
        card = http.get(url, **asked).json()
        assert "url" not in card and "protocolVersion" not in card and "additionalInterfaces" not in card
        assert {i["protocolVersion"] for i in card["supportedInterfaces"]} == {"1.0"}
    for asked in ({"headers": {"A2A-Version": "0.3"}}, {}):  # no version is 0.3 (as on the JSON-RPC endpoint)
        response = http.get(url, **asked)
        card = response.json()
        assert card["url"] == agents["plain"] and card["protocolVersion"].startswith("0.3")
        assert response.headers["vary"] == "A2A-Version"
    strict = http.get(agents["cors"] + "/.well-known/agent-card.json").json()  # server.card_default: "1.0"
    assert "url" not in strict and {i["protocolVersion"] for i in strict["supportedInterfaces"]} == {"1.0"}
    assert http.get(agents["cors"] + "/.well-known/agent-card.json", headers={"A2A-Version": "0.3"}).json()["url"]


def test_the_query_parameter_sets_the_version(agents, http):
    answer = http.post(agents["plain"] + "/?A2A-Version=1.0", json=send_10({"x": "y"})).json()
    assert answer["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED", answer
    without = http.post(agents["plain"] + "/", json=send_10({"x": "y"})).json()
    assert without["error"]["code"] == -32009  # no version: 0.3, which has no SendMessage


def test_unsupported_versions_are_refused(agents, http):
    answer = http.post(agents["plain"] + "/", json=send_10({}), headers={"A2A-Version": "1.1"}).json()
    assert answer["id"] == 7 and answer["error"]["code"] == -32009 and "'1.1'" in answer["error"]["message"]
    rest = http.get(agents["plain"] + "/v1/tasks", headers={"A2A-Version": "2.0"})
    assert rest.status_code == 400 and rest.json()["error"]["details"][0]["reason"] == "VERSION_NOT_SUPPORTED"
    assert http.post(agents["plain"] + "/", json=send_10({}), headers={"A2A-Version": "1.0.2"}).json()["result"]


def test_a_03_method_under_a_10_header_says_which_name_to_use(agents, http):
    answer = http.post(agents["plain"] + "/", json=V03_SEND, headers={"A2A-Version": "1.0"}).json()
    assert answer["id"] == 1 and answer["error"]["code"] == -32601
    assert "'SendMessage'" in answer["error"]["message"]


def test_a_notification_gets_no_reply(agents, http):
    notification = {k: v for k, v in V03_SEND.items() if k != "id"}
    notification["params"]["message"]["messageId"] = "notified-1"
    response = http.post(agents["plain"] + "/", json=notification)
    assert response.status_code == 204 and response.content == b""
    # it was still carried out: the task is there
    tasks = http.get(agents["plain"] + "/v1/tasks", params={"historyLength": "5"}).json()["tasks"]
    assert any(h.get("messageId") == "notified-1" for t in tasks for h in t.get("history", []))


def test_a_notification_that_fails_gets_its_error(agents, http):
    # JSON-RPC 2.0 would stay silent; the A2A TCK 0.3 (mandatory) and a2a-sdk 0.3 servers answer
    for request, code in [({"jsonrpc": "2.0", "method": "message/ssend", "params": {}}, -32601),
                          ({"jsonrpc": "2.0", "method": "message/send", "params": {"": "not_a_dict"}}, -32602)]:
        response = http.post(agents["plain"] + "/", json=request)
        assert response.status_code == 200, response.text
        assert response.json()["id"] is None and response.json()["error"]["code"] == code, response.text


def test_a_03_rest_history_length_by_its_proto_field_name(agents, http):
    # the TCK 0.3 continues a task over REST, then reads it with ?history_length= (HTTP transcoding's field name)
    send = {"message": {"messageId": "h-1", "role": "ROLE_USER", "content": [{"text": "first"}]}}
    task_id = http.post(agents["tck"] + "/v1/message:send", json=send).json()["task"]["id"]
    follow = {"message": {"messageId": "h-2", "taskId": task_id, "role": "ROLE_USER", "content": [{"text": "second"}]}}
    assert http.post(agents["tck"] + "/v1/message:send", json=follow).json()["task"]["status"]["state"] == "TASK_STATE_INPUT_REQUIRED"
    full = http.get(f"{agents['tck']}/v1/tasks/{task_id}").json()["history"]
    assert [m["content"][0]["text"] for m in full if m["role"] == "ROLE_USER"] == ["first", "second"]
    for name in ("history_length", "historyLength"):
        assert len(http.get(f"{agents['tck']}/v1/tasks/{task_id}", params={name: "1"}).json()["history"]) == 1
    # and the conversation can be ended by the client
    cancel = {"jsonrpc": "2.0", "id": 3, "method": "tasks/cancel", "params": {"id": task_id}}
    assert http.post(agents["tck"] + "/", json=cancel).json()["result"]["status"]["state"] == "canceled"


def test_integers_stay_integers(agents, http):
    data = {"n": 42, "neg": -7, "half": 1.5, "nested": [1, {"k": 2}], "big": 2**53 + 1}
    answer = http.post(agents["plain"] + "/", json=send_10(data), headers={"A2A-Version": "1.0"})
    echoed = answer.json()["result"]["task"]["artifacts"][0]["parts"][0]["data"]
    assert re.search(r'"n":42[,}]', answer.text.replace(" ", "")), answer.text
    assert echoed["n"] == 42 and isinstance(echoed["n"], int) and echoed["nested"] == [1, {"k": 2}]
    assert echoed["half"] == 1.5
    assert echoed["big"] == float(2**53)  # past 2^53 a double cannot hold it: the nearest double, as a float
    # 0.3 and streaming (each SSE event) too
    stream = dict(V03_SEND, method="message/stream")
    stream["params"] = {"message": {"kind": "message", "role": "user", "messageId": "m-s",
                                    "parts": [{"kind": "data", "data": {"n": 42}}]}}
    text = http.post(agents["plain"] + "/", json=stream).text
    parts = [p for e in sse_events(text) for a in [e["result"].get("artifact")] if a for p in a["parts"]]
    assert parts and parts[0]["data"] == {"n": 42} and '"n":42.0' not in text.replace(" ", "")


def test_get_v1_tasks_without_a_version_lists_tasks(agents, http):
    http.post(agents["plain"] + "/", json=V03_SEND)
    response = http.get(agents["plain"] + "/v1/tasks")
    assert response.status_code == 200 and response.json()["tasks"]


def test_cors_is_off_by_default_and_configurable(agents, http):
    origin = {"Origin": "https://console.example", "Access-Control-Request-Method": "POST",
              "Access-Control-Request-Headers": "content-type,a2a-version"}
    plain = http.options(agents["plain"] + "/", headers=origin)
    assert "access-control-allow-origin" not in plain.headers
    preflight = http.options(agents["cors"] + "/", headers=origin)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://console.example"
    assert "a2a-version" in preflight.headers["access-control-allow-headers"].lower()
    other = http.options(agents["cors"] + "/", headers={**origin, "Origin": "https://evil.example"})
    assert other.headers.get("access-control-allow-origin") != "https://evil.example"
    card = http.get(agents["cors"] + "/.well-known/agent-card.json", headers={"Origin": "https://console.example"})
    assert card.headers["access-control-allow-origin"] == "https://console.example"
    assert json.loads(card.text)["name"]
