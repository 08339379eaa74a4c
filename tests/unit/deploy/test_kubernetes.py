"""`mesh deploy kubernetes`: manifests valid for Kubernetes (kubernetes-validate --strict), secrets only by reference."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate  # dev extra: the schemas of every Kubernetes release, offline
import pytest
import yaml

from mesh.config import load_config
from mesh.deploy.kubernetes import Options, generate
from mesh.cli.main import main
from mesh.errors import EXIT_CONFIG, ConfigError
from tests.support.util import ROOT

KUBERNETES = "1.35.0"   # a current release; the package carries the schemas offline


def validate(directory: Path) -> None:
    """Every generated object passes kubernetes-validate in strict mode (unknown fields refused)."""
    files = sorted(directory.glob("*.yaml"))
    assert files
    failures = []
    for file in files:
        for item in yaml.safe_load_all(file.read_text()):
            try:
                kubernetes_validate.validate(item, KUBERNETES, strict=True)
            except kubernetes_validate.ValidationError as exc:
                failures.append(f"{file.name}: {item['kind']}/{item['metadata']['name']}: {exc.message} "
                                f"at {'.'.join(map(str, exc.path))}")
    assert not failures, "\n".join(failures)


def objects(directory: Path) -> dict[tuple[str, str], dict]:
    found = {}
    for file in directory.glob("*.yaml"):
        for item in yaml.safe_load_all(file.read_text()):
            found[(item["kind"], item["metadata"]["name"])] = item
    return found


def write_mesh(tmp_path: Path, text: str) -> Path:
    file = tmp_path / "mesh.yaml"
    file.write_text(text)
    return file


SAMPLE = """
name: shop
state: {database: "${SHOP_DB}"}
agents:
  front_desk:
    module: agents.echo
    port: 9001
    replicas: 3
    resources: {requests: {cpu: 250m, memory: 128Mi}, limits: {cpu: "1", memory: 512Mi}}
    auth: {bearer_token: "${FRONT_TOKEN}"}
    settings: {api_key: "${UPSTREAM_KEY:-}"}
  coordinator:
    module: agents.coordinator
    port: 9004
  remote:
    url: https://agents.example.com/a2a
tools:
  calculator: {module: mcp_tools.calculator, transport: http, port: 9201}
  files: {module: mcp_tools.files, settings: {roots: {here: .}}}
"""


def test_default_mesh_manifests_pass_strict_validation(tmp_path: Path) -> None:
    manifests = generate(ROOT / "mesh.yaml", Options(postgres_sample=True))
    out = tmp_path / "k8s"
    manifests.write(out)
    validate(out)
    found = objects(out)
    config = load_config(ROOT / "mesh.yaml")
    for name, agent in config.local_agents().items():
        deployment, service = found[("Deployment", name)], found[("Service", name)]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["command"][:3] == ["mesh", "serve", name]
        assert container["readinessProbe"]["httpGet"]["path"] == "/health"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert service["spec"]["ports"][0]["port"] == agent.port
        assert deployment["spec"]["selector"]["matchLabels"].items() <= \
            deployment["spec"]["template"]["metadata"]["labels"].items()
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert found[("Deployment", "coordinator")]["metadata"]["labels"]["app.kubernetes.io/component"] == "coordinator"
    # HTTP tool servers get their own workload; stdio ones run inside the agents
    assert ("Deployment", "calculator") in found and ("Deployment", "files") not in found
    assert found[("StatefulSet", "postgresql")]["spec"]["replicas"] == 1
    # the ConfigMap's mesh.yaml is a valid mesh file for the cluster
    cluster = yaml.safe_load(found[("ConfigMap", "demo-config")]["data"]["mesh.yaml"])
    assert cluster["server"]["host"] == "0.0.0.0"
    assert cluster["state"]["database"] == "${MESH_DATABASE_URL}"
    assert cluster["agents"]["guard"]["public_url"] == "http://guard:8100"
    assert cluster["tools"]["calculator"]["public_url"] == "http://calculator:8201/mcp"


def test_every_variable_is_a_secret_key_ref_and_no_value_is_written(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FRONT_TOKEN", "tok-7f3a-very-secret")
    monkeypatch.setenv("SHOP_DB", "postgresql://shop:pw-91c2@db/shop")
    out = tmp_path / "k8s"
    generate(write_mesh(tmp_path, SAMPLE), Options(secret="shop-env")).write(out)
    validate(out)
    text = "".join(f.read_text() for f in out.glob("*.yaml"))
    assert "tok-7f3a-very-secret" not in text and "pw-91c2" not in text
    found = objects(out)
    front = found[("Deployment", "front-desk")]           # underscores become DNS names
    assert front["spec"]["replicas"] == 3
    container = front["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "250m", "memory": "128Mi"},
                                      "limits": {"cpu": "1", "memory": "512Mi"}}
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert set(refs) == {"SHOP_DB", "FRONT_TOKEN", "UPSTREAM_KEY"}
    assert all(ref["name"] == "shop-env" and ref["key"] == name for name, ref in refs.items())
    assert refs["UPSTREAM_KEY"].get("optional") is True and "optional" not in refs["FRONT_TOKEN"]
    assert ("Deployment", "remote") not in found     # an external agent is only a URL
    cluster = yaml.safe_load(found[("ConfigMap", "shop-config")]["data"]["mesh.yaml"])
    assert cluster["agents"]["front_desk"]["auth"]["bearer_token"] == "${FRONT_TOKEN}"
    assert cluster["agents"]["front_desk"]["public_url"] == "http://front-desk:9001"


@pytest.mark.parametrize("literal, where", [
    ("    settings: {api_key: sk-live-123}\n", "agents.echo.settings.api_key"),
    ("    settings: {upstream: 'postgresql://u:hunter2@db/x'}\n", "agents.echo.settings.upstream"),
    ("    auth: {bearer_token: abc123}\n", "agents.echo.auth.bearer_token"),
])
def test_a_secret_written_as_a_literal_is_refused(tmp_path: Path, literal: str, where: str) -> None:
    text = "name: lit\nagents:\n  echo:\n    module: agents.echo\n    port: 9101\n" + literal
    with pytest.raises(ConfigError) as caught:
        generate(write_mesh(tmp_path, text))
    message = str(caught.value)
    assert where in message and "mesh.yaml:6" in message, message
    assert not (tmp_path / "k8s").exists()


def test_sqlite_state_is_refused_and_a_replicated_coordinator_is_not(tmp_path: Path) -> None:
    text = ("name: x\nstate: {database: 'sqlite:///x.db'}\nagents:\n"
            "  coordinator: {module: agents.coordinator, port: 9104, replicas: 2}\n")
    with pytest.raises(ConfigError) as caught:
        generate(write_mesh(tmp_path, text))
    assert "PostgreSQL" in str(caught.value) and "replicas" not in str(caught.value)
    # on PostgreSQL, coordinators share runs through leases: two replicas are fine
    out = tmp_path / "k8s"
    generate(write_mesh(tmp_path, text.replace("state: {database: 'sqlite:///x.db'}\n", ""))).write(out)
    assert "replicas: 2" in (out / "agent-coordinator.yaml").read_text()


def test_strict_validation_can_fail(tmp_path: Path) -> None:
    """The check itself refuses an unknown field (so the passes above mean something)."""
    out = tmp_path / "k8s"
    generate(ROOT / "mesh.yaml").write(out)
    file = out / "agent-echo.yaml"
    docs = list(yaml.safe_load_all(file.read_text()))
    docs[0]["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = docs[0]["spec"]["template"]["spec"][
        "containers"][0].pop("readinessProbe")
    file.write_text(yaml.safe_dump_all(docs))
    with pytest.raises(AssertionError, match="readinesProbe|Additional properties"):
        validate(out)


def test_the_command_line_writes_the_directory(tmp_path: Path, capsys) -> None:
    out = tmp_path / "manifests"
    assert main(["deploy", "kubernetes", "-c", str(ROOT / "mesh.yaml"), "-o", str(out)]) == 0
    printed = capsys.readouterr()
    assert "kubectl create secret generic demo-secrets --from-literal=MESH_DATABASE_URL=..." in printed.err
    assert str(out / "agent-coordinator.yaml") in printed.out
    assert (out / "00-config.yaml").is_file() and (out / "agent-coordinator.yaml").is_file()
    bad = write_mesh(tmp_path, "name: b\nagents:\n  e: {module: agents.echo, port: 9, settings: {password: x}}\n")
    assert main(["deploy", "kubernetes", "-c", str(bad), "-o", str(tmp_path / "no")]) == EXIT_CONFIG
    assert "mesh.yaml:3: agents.e.settings.password: a secret written as a literal" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def test_replicas_take_consecutive_ports_and_a_clash_is_reported(tmp_path: Path) -> None:
    text = ("name: r\nagents:\n  primes: {module: agents.primes, port: 9302, replicas: 3}\n"
            "  echo: {module: agents.echo, port: 9304}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(write_mesh(tmp_path, text))
    assert "mesh.yaml:4: agents.echo.port: port 9304 is already used by agents.primes (replica 2)" in str(caught.value)
    load_config(write_mesh(tmp_path, text.replace("9304", "9305")))
    with pytest.raises(ConfigError, match="replicas.*external"):
        load_config(write_mesh(tmp_path, "name: r\nagents:\n  far: {url: 'http://x.example', replicas: 2}\n"))
