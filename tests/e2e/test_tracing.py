"""Tracing across the mesh: one `mesh run` gives one trace, exported over OTLP/HTTP, spanning the coordinator and its agents."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse

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


def test_one_run_is_one_trace_with_parent_links_intact(tmp_path):
    ports = free_ports(3)
    receiver = OtlpReceiver(ports[2])
    config = write_mesh(tmp_path, {
        "coordinator": {"module": "agents.coordinator", "port": ports[0]},
        "fast": {"module": WORKER, "port": ports[1], "settings": {"name": "fast", "log": str(tmp_path / "fast.jsonl")}},
    }, graphs={"pair": {"entry": "a", "vertices": [{"id": "a", "kind": "agent", "agent": "fast"},
                                                    {"id": "b", "kind": "agent", "agent": "fast"}],
                        "edges": ["a -> b"]}})
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{ports[2]}", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    try:
        with MeshUp(config, env=env) as up:
            up.wait_ready()
            result = run_cli("run", "pair", "hello", "--json", "-c", str(config), timeout=60)
            assert result.returncode == 0, result.stderr
            graph = eventually(lambda: next((s for s in receiver.spans if s["name"] == "graph pair"), None),
                               timeout=20, what="the graph's span")
            trace = graph["trace"]

            def whole_trace():
                spans = [s for s in receiver.spans if s["trace"] == trace]
                services = {s["service"] for s in spans}
                roots = [s for s in spans if not s["parent"]]
                return spans if services == {"coordinator", "fast"} and roots and len(spans) >= 7 else None

            spans = eventually(whole_trace, timeout=20, what="the coordinator's and the worker's spans of the run")
    finally:
        receiver.close()
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
