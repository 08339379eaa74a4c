"""Push notifications against a real agent process and a real webhook receiver on loopback (allowed by this
mesh.yaml): config CRUD (0.3 and 1.0 names), delivery with the token and authentication, retries, refused private
addresses, configs kept across a restart, and pushNotifications in the card. Loopback refused by default:
tests/unit/serving/test_push_urls.py."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.support.util import MeshUp, eventually, free_ports, write_mesh

V10 = {"A2A-Version": "1.0"}


class Receiver:
    """A webhook on 127.0.0.1 recording every POST; the first ``fail_first`` answers are 503."""

    def __init__(self, fail_first: int = 0) -> None:
        self.calls: list[dict] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.calls.append({"path": self.path, "token": self.headers.get("X-A2A-Notification-Token"),
                                       "auth": self.headers.get("Authorization"), "body": json.loads(body)})
                failing = len(receiver.calls) <= receiver.fail_first
                self.send_response(503 if failing else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def rpc(url: str, method: str, params: dict, headers: dict | None = None) -> dict:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    return httpx.post(url + "/", json=body, headers=headers or {}, timeout=30).json()


def send(url: str, text: str, push: dict | None = None) -> dict:
    params = {"message": {"role": "ROLE_USER", "messageId": f"m-{text}", "parts": [{"text": text}]}}
    if push:
        params["configuration"] = {"taskPushNotificationConfig": push}
    answer = rpc(url, "SendMessage", params, V10)
    assert "result" in answer, answer
    return answer["result"]["task"]


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    directory = tmp_path_factory.mktemp("push")
    port, primes = free_ports(2)
    push = {"allowed_networks": ["127.0.0.0/8"], "retries": 2, "backoff_seconds": 0.1}
    config = write_mesh(directory, {"echo": {"module": "agents.echo", "port": port},
                                    "primes": {"module": "agents.primes", "port": primes}}, server={"push": push})
    state = {"url": f"http://127.0.0.1:{port}", "primes": f"http://127.0.0.1:{primes}", "config": config,
             "up": MeshUp(config)}
    state["up"].__enter__()
    state["up"].wait_ready()
    yield state
    state["up"].__exit__(None, None, None)


def test_the_card_declares_push(mesh):
    card = httpx.get(mesh["url"] + "/.well-known/agent-card.json", headers=V10).json()
    assert card["capabilities"]["pushNotifications"] is True


def test_events_are_delivered_with_token_and_authentication(mesh):
    receiver = Receiver()
    try:
        task = send(mesh["url"], "pushed", {"url": receiver.url + "/hook", "token": "tok-1",
                                            "authentication": {"scheme": "Bearer", "credentials": "s3cret"}})
        eventually(lambda: any(c["body"].get("statusUpdate", {}).get("status", {}).get("state") == "TASK_STATE_COMPLETED"
                               for c in receiver.calls), timeout=15, what="the completed event at the webhook")
        assert {c["token"] for c in receiver.calls} == {"tok-1"}
        assert {c["auth"] for c in receiver.calls} == {"Bearer s3cret"}
        assert {c["path"] for c in receiver.calls} == {"/hook"}
        ids = {json.dumps(c["body"]).count(task["id"]) > 0 for c in receiver.calls}
        assert ids == {True}
    finally:
        receiver.close()


def test_config_crud_with_10_and_03_names(mesh):
    task = send(mesh["url"], "crud")
    receiver = Receiver()
    try:
        made = rpc(mesh["url"], "CreateTaskPushNotificationConfig",
                   {"taskId": task["id"], "id": "c1", "url": receiver.url + "/a", "token": "t1"}, V10)
        assert made["result"]["id"] == "c1", made
        legacy = rpc(mesh["url"], "tasks/pushNotificationConfig/set",
                     {"taskId": task["id"], "pushNotificationConfig": {"id": "c2", "url": receiver.url + "/b"}})
        assert legacy["result"]["pushNotificationConfig"]["id"] == "c2", legacy
        listed = rpc(mesh["url"], "ListTaskPushNotificationConfigs", {"taskId": task["id"]}, V10)["result"]["configs"]
        assert sorted(c["id"] for c in listed) == ["c1", "c2"]
        got = rpc(mesh["url"], "tasks/pushNotificationConfig/get", {"id": task["id"], "pushNotificationConfigId": "c1"})
        assert got["result"]["pushNotificationConfig"]["url"] == receiver.url + "/a", got
        deleted = rpc(mesh["url"], "DeleteTaskPushNotificationConfig", {"taskId": task["id"], "id": "c1"}, V10)
        assert "error" not in deleted, deleted
        legacy_list = rpc(mesh["url"], "tasks/pushNotificationConfig/list", {"id": task["id"]})["result"]
        assert [c["pushNotificationConfig"]["id"] for c in legacy_list] == ["c2"]
    finally:
        receiver.close()


def states(receiver: Receiver) -> list[str]:
    return [c["body"]["statusUpdate"]["status"]["state"] for c in receiver.calls if "statusUpdate" in c["body"]]


def test_configs_set_and_deleted_while_a_task_runs(mesh):
    """A config added to a running task gets its next events; one deleted gets none after the delete returned.

    (The agent keeps in memory which tasks have configs, so events of the others cost no lookup.)
    """
    kept, deleted = Receiver(), Receiver()
    url = mesh["primes"]
    try:
        started = rpc(url, "SendMessage", {"message": {"role": "ROLE_USER", "messageId": "m-long", "parts": [
            {"text": "primes below 10^11"}]}, "configuration": {"returnImmediately": True}}, V10)["result"]["task"]
        for receiver, config_id in ((kept, "kept"), (deleted, "deleted")):
            made = rpc(url, "CreateTaskPushNotificationConfig",
                       {"taskId": started["id"], "id": config_id, "url": receiver.url + "/" + config_id}, V10)
            assert made["result"]["id"] == config_id, made
        eventually(lambda: kept.calls and deleted.calls, timeout=15, what="progress at both webhooks")
        assert "error" not in rpc(url, "DeleteTaskPushNotificationConfig", {"taskId": started["id"], "id": "deleted"}, V10)
        delivered = len(deleted.calls)
        canceled = rpc(url, "CancelTask", {"id": started["id"]}, V10)
        assert canceled["result"]["status"]["state"] == "TASK_STATE_CANCELED", canceled
        eventually(lambda: "TASK_STATE_CANCELED" in states(kept), timeout=15, what="the canceled state at the kept webhook")
        assert "TASK_STATE_CANCELED" not in states(deleted)
        assert len(deleted.calls) <= delivered + 2  # at most the events already on their way when it was deleted
        assert {c["path"] for c in kept.calls} == {"/kept"} and {c["path"] for c in deleted.calls} == {"/deleted"}
    finally:
        kept.close()
        deleted.close()


def test_a_failed_delivery_is_retried(mesh):
    receiver = Receiver(fail_first=2)  # 503 twice, then 200: two retries deliver the first event
    try:
        send(mesh["url"], "retried", {"url": receiver.url + "/r"})
        eventually(lambda: len(receiver.calls) >= 3, timeout=15, what="three attempts")
        first = receiver.calls[0]["body"]
        assert receiver.calls[1]["body"] == first and receiver.calls[2]["body"] == first
    finally:
        receiver.close()


@pytest.mark.parametrize("where", ["http://10.20.30.40/hook", "http://192.168.1.1/hook", "http://169.254.169.254/x"])
def test_private_addresses_are_refused(mesh, where):
    answer = rpc(mesh["url"], "SendMessage", {"message": {"role": "ROLE_USER", "messageId": "m-private", "parts": [{"text": "x"}]},
                                              "configuration": {"taskPushNotificationConfig": {"url": where}}}, V10)
    assert answer["error"]["code"] == -32602, answer


def test_configs_outlive_a_restart(mesh):  # last: it restarts the module's agent
    url = mesh["url"]
    task = send(url, "durable")
    rpc(url, "CreateTaskPushNotificationConfig", {"taskId": task["id"], "id": "keep", "url": "http://127.0.0.1:9/k"}, V10)
    mesh["up"].stop()
    mesh["up"].__exit__(None, None, None)
    mesh["up"] = MeshUp(mesh["config"])
    mesh["up"].__enter__()
    mesh["up"].wait_ready()
    listed = rpc(url, "ListTaskPushNotificationConfigs", {"taskId": task["id"]}, V10)["result"]["configs"]
    assert [c["id"] for c in listed] == ["keep"]
