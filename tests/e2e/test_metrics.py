"""/metrics of a running mesh: Prometheus text from every agent, and counters that move with traffic and graph runs."""

import json
import urllib.request

import yaml

from prometheus_client.parser import text_string_to_metric_families

from tests.support.util import MeshUp, free_ports, run_cli, write_mesh

WORKER = "tests.support.agents.worker"


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def test_counters_move_with_a_graph_run(tmp_path):
    ports = free_ports(2)
    config = write_mesh(tmp_path, {
        "coordinator": {"module": "agents.coordinator", "port": ports[0]},
        "fast": {"module": WORKER, "port": ports[1], "settings": {"name": "fast", "log": str(tmp_path / "fast.jsonl")}},
    }, graphs={"pair": {"entry": "a", "vertices": [{"id": "a", "kind": "agent", "agent": "fast"},
                                                    {"id": "b", "kind": "agent", "agent": "fast"}],
                        "edges": ["a -> b"]}})
    with MeshUp(config, env={"OTEL_BSP_SCHEDULE_DELAY": "100"}) as up:
        up.wait_ready()
        before = {name: scrape(port) for name, port in zip(("coordinator", "fast"), ports)}
        result = run_cli("run", "pair", "hello", "--json", "-c", str(config), timeout=60)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout.splitlines()[-1])
        after = {name: scrape(port) for name, port in zip(("coordinator", "fast"), ports)}

    def moved(process: str, name: str, **labels) -> float:
        return value(after[process], name, **labels) - value(before[process], name, **labels)

    # the worker answered the two vertex calls over JSON-RPC, and ended two tasks completed
    assert moved("fast", "mesh_http_requests_total", server="fast", binding="jsonrpc", status="200") == 2
    assert moved("fast", "mesh_http_request_duration_seconds_count", server="fast", binding="jsonrpc") == 2
    assert moved("fast", "mesh_tasks_total", agent="fast", state="completed") == 2
    assert value(after["fast"], "mesh_tasks_running", agent="fast") == 0
    # the scrapes themselves are counted too (one before the run on each side)
    assert value(after["fast"], "mesh_http_requests_total", binding="metrics") >= 1
    # the coordinator: one run done, two supersteps, a and b called once, one call behind edge a -> b
    assert moved("coordinator", "mesh_graph_runs_total", graph="pair", status="done") == 1
    assert moved("coordinator", "mesh_graph_supersteps_total", graph="pair") == 2
    assert moved("coordinator", "mesh_graph_vertex_calls_total", graph="pair", vertex="a") == 1
    assert moved("coordinator", "mesh_graph_vertex_calls_total", graph="pair", vertex="b") == 1
    assert moved("coordinator", "mesh_graph_edge_latency_seconds_count", graph="pair", edge="a -> b") == 1
    assert moved("coordinator", "mesh_graph_edge_latency_seconds_sum", graph="pair", edge="a -> b") > 0
    assert moved("coordinator", "mesh_tasks_total", agent="coordinator", state="completed") == 1
    # nothing counted for a vertex that was not called
    assert moved("coordinator", "mesh_graph_vertex_calls_total", graph="pair", vertex="c") == 0
    # `mesh ls` gives each process's /metrics, and a scrape config naming both
    listing = json.loads(run_cli("ls", "--json", "-c", str(config)).stdout)
    assert {a["name"]: a["metrics"] for a in listing["agents"]} == {
        "coordinator": f"http://127.0.0.1:{ports[0]}/metrics", "fast": f"http://127.0.0.1:{ports[1]}/metrics"}
    scrape_config = yaml.safe_load(run_cli("ls", "--prometheus", "-c", str(config)).stdout)
    targets = {job["static_configs"][0]["targets"][0] for job in scrape_config["scrape_configs"]}
    assert targets == {f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]}"}
    # with no OTLP endpoint, the spans are kept locally, one JSON line each, under the state dir
    (spans_file,) = tmp_path.glob("**/traces/coordinator.jsonl")
    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    assert any(s["name"] == "graph pair" and s["attributes"]["mesh.status"] == "done" for s in spans)
