"""Tracing across the mesh: one `mesh run` gives one trace, exported over OTLP/HTTP, spanning the coordinator and its agents."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse

import pytest

from tests.support.util import MeshUp, eventually, free_ports, run_cli, write_mesh

WORKER = "tests.support.agents.worker"


class OtlpReceiver:
    """An OTLP/HTTP trace receiver (protobuf at /v1/traces) that keeps every span it is sent."""

    def __init__(self, port: int) -> None:
        self.spans: list[dict] = []
        spans = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                assert self.path == "/v1/traces" and self.headers["Content-Type"] == "application/x-protobuf"
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    service = next(a.value.string_value for a in resource_spans.resource.attributes
                                   if a.key == "service.name")
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            spans.append({"service": service, "name": span.name, "trace": span.trace_id.hex(),
                                          "id": span.span_id.hex(), "parent": span.parent_span_id.hex(),
                                          "attributes": {a.key: a.value for a in span.attributes}})
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def traced_mesh(tmp_path_factory):
    """coordinator + a worker + the tool-using assistant with an HTTP calculator and a stdio calculator; spans to a receiver."""
    tmp_path = tmp_path_factory.mktemp("tracing")
    ports = free_ports(5)
    receiver = OtlpReceiver(ports[2])
    config = write_mesh(tmp_path, {
        "coordinator": {"module": "agents.coordinator", "port": ports[0]},
        "fast": {"module": WORKER, "port": ports[1], "settings": {"name": "fast", "log": str(tmp_path / "fast.jsonl")}},
        "assistant": {"module": "agents.tool_user", "port": ports[3], "settings": {"tools": ["calculator"]}},
        "local": {"module": "agents.tool_user", "port": ports[4], "settings": {"tools": ["calc_stdio"]}},
    }, tools={"calculator": {"module": "mcp_tools.calculator", "transport": "http", "port": free_ports(1)[0]},
              "calc_stdio": {"module": "mcp_tools.calculator"}},
       graphs={"pair": {"entry": "a", "vertices": [{"id": "a", "kind": "agent", "agent": "fast"},
                                                    {"id": "b", "kind": "agent", "agent": "fast"}],
                        "edges": ["a -> b"]},
               "calc": {"entry": ["http", "stdio"], "vertices": [{"id": "http", "kind": "agent", "agent": "assistant"},
                                                                 {"id": "stdio", "kind": "agent", "agent": "local"}]}},
       # the telemetry: section names the receiver (no OTEL_EXPORTER_OTLP_ENDPOINT) and keeps spans locally too
       telemetry={"otlp_endpoint": f"http://127.0.0.1:{ports[2]}", "keep_local": True})
    try:
        with MeshUp(config, env={"OTEL_BSP_SCHEDULE_DELAY": "100"}) as up:
            up.wait_ready()
            yield config, receiver
    finally:
        receiver.close()


def one_trace(receiver, root_name, services, least):
    graph = eventually(lambda: next((s for s in receiver.spans if s["name"] == root_name), None),
                       timeout=20, what=f"the span {root_name}")
    trace = graph["trace"]

    def whole_trace():
        spans = [s for s in receiver.spans if s["trace"] == trace]
        have = {s["service"] for s in spans}
        roots = [s for s in spans if not s["parent"]]
        return spans if services <= have and roots and len(spans) >= least else None

    return eventually(whole_trace, timeout=20, what=f"the spans of {sorted(services)} in the trace")


def test_one_run_is_one_trace_with_parent_links_intact(traced_mesh):
    config, receiver = traced_mesh
    result = run_cli("run", "pair", "hello", "--json", "-c", str(config), timeout=60)
    assert result.returncode == 0, result.stderr
    spans = one_trace(receiver, "graph pair", {"coordinator", "fast"}, 7)
    ids = {s["id"] for s in spans}
    by_id = {s["id"]: s for s in spans}
    roots = [s for s in spans if not s["parent"]]
    assert len(roots) == 1 and roots[0]["service"] == "coordinator"  # the `mesh run` request on the coordinator
    assert all(s["parent"] in ids for s in spans if s["parent"]), "a span's parent is missing from the trace"
    names = [s["name"] for s in spans]
    assert "vertex a" in names and "vertex b" in names
    # each vertex call: vertex span (coordinator) -> HTTP client span -> the worker's server span
    worker_servers = [s for s in spans if s["service"] == "fast" and s["name"] in ("fast SendMessage", "fast SendStreamingMessage")]
    assert len(worker_servers) == 2
    for server in worker_servers:
        client = by_id[server["parent"]]
        assert client["service"] == "coordinator"
        vertex = by_id[client["parent"]]
        assert vertex["name"] in ("vertex a", "vertex b")
        assert by_id[vertex["parent"]]["name"] == "graph pair"
    # no other run leaked into this trace
    assert len({s["trace"] for s in receiver.spans if s["name"] == "graph pair"}) == 1


def test_a_run_trace_covers_the_mcp_tools_over_http_and_stdio(traced_mesh):
    config, receiver = traced_mesh
    result = run_cli("run", "calc", "what is 6*7?", "--json", "-c", str(config), timeout=60)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "42" in result.stdout
    spans = one_trace(receiver, "graph calc", {"coordinator", "assistant", "local", "tool calculator", "tool calc_stdio"}, 12)
    by_id = {s["id"]: s for s in spans}
    roots = [s for s in spans if not s["parent"]]
    assert len(roots) == 1 and roots[0]["service"] == "coordinator"
    assert all(s["parent"] in by_id for s in spans if s["parent"]), "a span's parent is missing from the trace"

    def ancestors(span):
        names = []
        while span["parent"]:
            span = by_id[span["parent"]]
            names.append((span["service"], span["name"]))
        return names

    for tool, agent in (("tool calculator", "assistant"), ("tool calc_stdio", "local")):
        # the tool server's span of the call: child of the agent's MCP client span, under its `tool ...` span,
        # under the agent's server span, under the coordinator's vertex and graph spans
        served = [s for s in spans if s["service"] == tool and s["name"].startswith("tools/call")]
        assert len(served) == 1, [(s["service"], s["name"]) for s in spans]
        chain = ancestors(served[0])
        assert chain[0][0] == agent and chain[0][1].startswith("MCP send tools/call"), chain
        assert any(service == agent and name.startswith("tool ") for service, name in chain), chain
        assert any(service == agent and "SendMessage" in name or "SendStreamingMessage" in name for service, name in chain), chain
        assert chain[-1][0] == "coordinator" and ("coordinator", "graph calc") in chain, chain
    # the tool server starts no trace of its own for the HTTP requests that carry those MCP messages
    # (its HTTP spans are named "tool calculator ..."; the MCP SDK's spans of messages sent outside any trace,
    # initialize and notifications, are roots named by their method: not ours to change)
    assert not [s for s in receiver.spans if s["service"] == "tool calculator" and not s["parent"]
                and s["name"].startswith("tool calculator ")]
    # every span also kept locally (telemetry.keep_local), where the console reads them
    local = config.parent / "state" / "traces"
    kept = {json.loads(line)["span_id"] for f in local.glob("*.jsonl") for line in f.read_text().splitlines()}
    assert {s["id"] for s in spans if s["service"] != "tool calc_stdio"} <= kept or eventually(
        lambda: {s["id"] for s in spans} <= {json.loads(line)["span_id"] for f in local.glob("*.jsonl")
                                            for line in f.read_text().splitlines()}, timeout=10)
