"""The console's server side (its auth, where it binds, the /metrics summary) and the telemetry: section it sits next to."""

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.testclient import TestClient

from mesh.config import load_config
from mesh.console.app import COOKIE, create_app
from mesh.console.sources import metrics_summary
from tests.support.util import write_mesh


def config_with(tmp_path, monkeypatch, **top):
    monkeypatch.setenv("ECHO_TOKEN", "s3cret-token")
    path = write_mesh(tmp_path, {"echo": {"module": "agents.echo", "port": 1, "auth": {"bearer_token": "${ECHO_TOKEN}"}}}, **top)
    return load_config(path)


def test_a_mesh_with_tokens_asks_for_one_of_them(tmp_path, monkeypatch):
    with TestClient(create_app(config_with(tmp_path, monkeypatch)), base_url="http://127.0.0.1:8090") as client:
        assert client.get("/health").status_code == 200
        page = client.get("/")
        assert page.status_code == 401 and 'name="token"' in page.text
        assert client.get("/api/mesh").status_code == 401
        assert client.get("/api/mesh", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/api/mesh", headers={"Authorization": "Bearer s3cret-token"}).json()["agents"][0]["name"] == "echo"
        assert client.post("/login", data={"token": "wrong"}).status_code == 401
        signed_in = client.post("/login", data={"token": "s3cret-token"}, follow_redirects=False)
        assert signed_in.status_code == 303 and COOKIE in signed_in.cookies
        assert "httponly" in signed_in.headers["set-cookie"].lower() and "samesite=strict" in signed_in.headers["set-cookie"].lower()
        assert client.get("/api/mesh").status_code == 200  # the cookie now
        assert client.get("/").headers["content-type"].startswith("text/html")
        refused = client.post("/api/a2a/echo", json={"method": "DeleteEverything", "params": {}})
        assert refused.status_code == 400 and "not one the console sends" in refused.json()["error"]
        # what a cross-site page could send without a CORS preflight is refused
        simple = client.post("/api/a2a/echo", content='{"method": "SendMessage"}', headers={"Content-Type": "text/plain"})
        assert simple.status_code == 415


def test_oversized_and_malformed_posts_are_refused(tmp_path, monkeypatch):
    config = config_with(tmp_path, monkeypatch, server={"max_body_bytes": "64KiB"})
    with TestClient(create_app(config), base_url="http://127.0.0.1:8090") as client:
        token = {"Authorization": "Bearer s3cret-token"}
        huge = "x" * (65 * 1024)
        assert client.post("/login", data={"token": huge}).status_code == 413  # read before the token is known
        big = client.post("/api/a2a/echo", content='{"method": "SendMessage", "params": {"t": "' + huge + '"}}',
                          headers={**token, "Content-Type": "application/json"})
        assert big.status_code == 413 and "the limit is 65536 bytes" in big.text
        bad = client.post("/api/a2a/echo", content='{"method": ', headers={**token, "Content-Type": "application/json"})
        assert bad.status_code == 400
        unknown = client.post("/api/a2a/nobody", json={"method": "SendMessage"}, headers=token)
        assert unknown.status_code == 404


def test_a_host_name_other_than_the_consoles_is_refused(tmp_path, monkeypatch):
    with TestClient(create_app(config_with(tmp_path, monkeypatch)), base_url="http://127.0.0.1:8090") as client:
        assert client.get("/health").status_code == 200
        assert client.get("/health", headers={"Host": "localhost:8090"}).status_code == 200
        assert client.get("/health", headers={"Host": "evil.example:8090"}).status_code == 400  # DNS rebinding


def test_the_console_never_binds_the_wildcard_by_default(tmp_path, monkeypatch):
    config = config_with(tmp_path, monkeypatch, server={"host": "0.0.0.0"})
    assert config.console_host() == "127.0.0.1"
    config = config_with(tmp_path, monkeypatch, server={"host": "0.0.0.0"}, console={"host": "0.0.0.0", "port": 9999})
    assert config.console_host() == "0.0.0.0"  # said in so many words


def test_a_console_port_taken_by_an_agent_is_a_config_error(tmp_path, monkeypatch):
    import pytest

    from mesh.errors import ConfigError

    with pytest.raises(ConfigError, match="console.port.*already used by agents.echo|port 1 is already used"):
        config_with(tmp_path, monkeypatch, console={"port": 1})


def test_metrics_summary_counts_traffic_errors_and_percentiles():
    registry = CollectorRegistry()
    requests = Counter("mesh_http_requests", "", ["server", "method", "binding", "status"], registry=registry)
    seconds = Histogram("mesh_http_request_duration_seconds", "", ["server", "method", "binding"],
                        buckets=(0.001, 0.01, 0.1, 1.0), registry=registry)
    blocks = Counter("mesh_guard_blocks", "", ["agent", "category"], registry=registry)
    for _ in range(98):
        requests.labels("echo", "SendMessage", "jsonrpc", "200").inc()
        seconds.labels("echo", "SendMessage", "jsonrpc").observe(0.005)
    for _ in range(2):
        requests.labels("echo", "SendMessage", "jsonrpc", "503").inc()
        seconds.labels("echo", "SendMessage", "jsonrpc").observe(0.5)
    requests.labels("echo", "GET", "health", "200").inc(50)  # probes are not traffic
    blocks.labels("echo", "S1").inc(3)
    summary = metrics_summary(generate_latest(registry).decode())
    assert summary["requests"] == 100 and summary["errors"] == 2
    assert summary["p50_ms"] == 10.0 and summary["p99_ms"] == 1000.0
    assert summary["guard_blocks"] == {"S1": 3}


def test_the_telemetry_section_is_checked(tmp_path, monkeypatch):
    import pytest

    from mesh.errors import ConfigError

    config = config_with(tmp_path, monkeypatch, telemetry={"otlp_endpoint": "http://127.0.0.1:4318", "sampling": 0.5})
    assert config.telemetry.otlp_endpoint == "http://127.0.0.1:4318" and config.telemetry.sampling == 0.5
    with pytest.raises(ConfigError, match="telemetry.sampling"):
        config_with(tmp_path, monkeypatch, telemetry={"sampling": 2})
    with pytest.raises(ConfigError, match="telemetry.otlp_endpoint"):
        config_with(tmp_path, monkeypatch, telemetry={"otlp_endpoint": "127.0.0.1:4318"})
