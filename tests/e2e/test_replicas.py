"""`replicas: N` under `mesh up`: N processes of one agent sharing PostgreSQL; any replica answers for any task."""

from __future__ import annotations

import time

import pytest

from tests.support.util import MeshUp, consecutive_ports, curl, curl_json, jsonrpc, sse_events, write_mesh


def message(text: str, blocking: bool) -> str:
    return jsonrpc("message/send", {"message": {"role": "user", "messageId": f"m-{text}-{time.monotonic_ns()}",
                                                "parts": [{"kind": "text", "text": text}]},
                                    "configuration": {"blocking": blocking}})


@pytest.fixture
def replicated(tmp_path, postgres_url):
    port = consecutive_ports(2)
    config = write_mesh(tmp_path, {"worker": {"module": "tests.support.agents.worker", "port": port, "replicas": 2,
                                              "settings": {"delay_s": 3.0}}})
    config.write_text(config.read_text().replace("state:\n", "state:\n  database: ${TEST_DATABASE_URL}\n", 1))
    with MeshUp(config, env={"TEST_DATABASE_URL": postgres_url}) as up:
        up.wait_ready()
        yield up, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"
        assert up.stop() == 0


def test_any_replica_answers_for_a_task_another_runs(replicated):
    up, first, second = replicated
    assert "worker.0" in up.output and "worker.1" in up.output
    started = curl_json(first + "/", message("hello", blocking=False))["result"]
    assert started["status"]["state"] in ("submitted", "working")
    seen = curl_json(second + "/", jsonrpc("tasks/get", {"id": started["id"]}))
    assert seen["result"]["id"] == started["id"], seen
    assert seen["result"]["status"]["state"] in ("submitted", "working")
    # resubscribe through the replica that does not run it: the events arrive until the task ends
    streamed = curl("--http2-prior-knowledge", "-N", "-H", "Content-Type: application/json", "--data-binary",
                    jsonrpc("tasks/resubscribe", {"id": started["id"]}), second + "/", timeout=30)
    events = [e.get("result", e) for e in sse_events(streamed.stdout)]
    assert events, streamed.stdout + streamed.stderr
    final = [e for e in events if e.get("kind") == "status-update" or "status" in e][-1]
    assert final["status"]["state"] == "completed", events
    done = curl_json(second + "/", jsonrpc("tasks/get", {"id": started["id"]}))["result"]
    assert done["status"]["state"] == "completed"
    assert done["artifacts"][0]["parts"][0]["text"] == "worker: hello"


def test_a_replica_cancels_a_task_another_runs(replicated):
    up, first, second = replicated
    started = curl_json(first + "/", message("long", blocking=False))["result"]
    answer = curl_json(second + "/", jsonrpc("tasks/cancel", {"id": started["id"]}))
    assert "result" in answer and answer["result"]["status"]["state"] == "canceled", answer
    time.sleep(3.5)   # past the worker's delay: the owner must not overwrite the cancel with completed
    after = curl_json(first + "/", jsonrpc("tasks/get", {"id": started["id"]}))["result"]
    assert after["status"]["state"] == "canceled", up.output
