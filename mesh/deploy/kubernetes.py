"""`mesh deploy kubernetes`: mesh.yaml -> Kubernetes manifests (ConfigMap, a Deployment + Service per agent and HTTP tool).

One image (the project's ``Containerfile``) runs every agent and tool; what differs
is the command. mesh.yaml goes into a ConfigMap, rewritten for the cluster: every
agent and tool binds 0.0.0.0 and advertises ``http://SERVICE:PORT`` (its Service's
DNS name) as its public_url unless it already has one, and the state lives in
PostgreSQL by URL (``state.database``, else ``${MESH_DATABASE_URL}``), since pods
share no files. Every ``${VAR}`` of the file becomes an environment variable from
a ``secretKeyRef`` of one Secret the user creates; no value is ever written. A
secret written as a literal is refused, with file:line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mesh.config import MeshConfig, load_config
from mesh.config.models import ResourcesConfig, find_config
from mesh.config.yamlsource import ENV_REFERENCE, SourceProblem
from mesh.deploy.secrets import literal_secrets, referenced_variables
from mesh.errors import ConfigError
from mesh.serving.app import HEALTH_PATH

APP_DIR = "/app"                       # the image's WORKDIR: mesh.yaml is mounted here, docs/ etc. are in the image
CONFIG_FILE = "mesh.yaml"
DATABASE_VARIABLE = "MESH_DATABASE_URL"
DEFAULT_IMAGE = "a2a-mcp-mesh:0.1.0"
PART_OF = "app.kubernetes.io/part-of"
NAME_LABEL = "app.kubernetes.io/name"
COMPONENT = "app.kubernetes.io/component"


@dataclass
class Options:
    image: str = DEFAULT_IMAGE
    secret: str | None = None           # the Secret holding every ${VAR}; default: MESH-secrets
    namespace: str | None = None
    postgres_sample: bool = False       # also write a PostgreSQL StatefulSet (a sample, not for production)


@dataclass
class Manifests:
    """The generated objects, by file name (each file a list of objects)."""

    files: dict[str, list[dict]] = field(default_factory=dict)
    secret: str = ""
    variables: dict[str, bool] = field(default_factory=dict)

    def write(self, directory: Path) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name, objects in self.files.items():
            path = directory / name
            path.write_text("".join("---\n" + dump(o) for o in objects))
            written.append(path)
        return written


class _Dumper(yaml.SafeDumper):
    """YAML for people: no anchors, multi-line strings (the ConfigMap's mesh.yaml) as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value and not any(line != line.rstrip() for line in value.splitlines()) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)


def dns_name(name: str) -> str:
    """A mesh name (``[a-z][a-z0-9_-]*``) as a Kubernetes object and DNS label name."""
    return re.sub(r"-+$", "", name.replace("_", "-"))[:63]


def generate(path: str | Path | None, options: Options | None = None) -> Manifests:
    """The manifests for the mesh file at ``path``; ConfigError when it is invalid or holds a literal secret."""
    options = options or Options()
    config_path = Path(path) if path else None
    config, text = _load(config_path)
    problems = literal_secrets(config._source) if config._source else []
    if config.state.database and config.state.database.startswith("sqlite"):
        problems.append(config.problem(("state", "database"), "pods share no files: on Kubernetes the state must "
                                                              "be PostgreSQL (a postgresql:// URL, or leave it out "
                                                              f"for ${{{DATABASE_VARIABLE}}})"))
    # A coordinator may have replicas: they share runs through leases in PostgreSQL (mesh.pregel.lease).
    coordinator = config.coordinator_name()
    problems += _name_clashes(config)
    if problems:
        raise ConfigError(problems)

    mesh = dns_name(config.name)
    secret = options.secret or f"{mesh}-secrets"
    cluster_yaml = _cluster_config(text, config)
    variables = referenced_variables(yaml.safe_load(cluster_yaml))
    _check_cluster_config(cluster_yaml, config.path, variables)
    manifests = Manifests(secret=secret, variables=variables)
    meta = _Meta(mesh, options.namespace)
    config_map = meta.object("v1", "ConfigMap", f"{mesh}-config", "config")
    config_map["data"] = {CONFIG_FILE: cluster_yaml}
    manifests.files["00-config.yaml"] = [config_map]
    env = _environment(variables, secret)
    for name, agent in config.local_agents().items():
        component = "coordinator" if name == coordinator else "agent"
        command = ["mesh", "serve", name, "-c", f"{APP_DIR}/{CONFIG_FILE}"]
        tls_secret = f"{dns_name(name)}-tls" if agent.tls else None
        manifests.files[f"agent-{dns_name(name)}.yaml"] = _workload(
            meta, name, component, options.image, command, agent.port, agent.replicas, agent.resources,
            env, https=bool(agent.tls), tls_secret=tls_secret)
    for name, tool in config.tools.items():
        if tool.transport != "http":
            continue  # stdio tools run inside the agents that use them (the same image)
        command = ["python", "-m", tool.module, "--config", f"{APP_DIR}/{CONFIG_FILE}", "--name", name, "--http"]
        manifests.files[f"tool-{dns_name(name)}.yaml"] = _workload(
            meta, name, "tool", options.image, command, tool.port, 1, tool.resources, env)
    if options.postgres_sample:
        manifests.files["postgres-sample.yaml"] = _postgres_sample(meta)
    return manifests


def _load(path: Path | None) -> tuple[MeshConfig, str]:
    """The validated config and its raw text; every ${VAR} gets a placeholder so that no value is read."""
    file = find_config(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([SourceProblem(str(file), None, (), f"cannot read: {exc.strerror or exc}")]) from None
    return load_config(file, _placeholders(text)), text


def _placeholders(text: str) -> dict[str, str]:
    """A stand-in for every referenced variable (a PostgreSQL URL for those inside a database URL)."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        data = {}
    database = ((data.get("state") or {}).get("database") or "") if isinstance(data, dict) else ""
    in_database = {m.group(1) for m in ENV_REFERENCE.finditer(str(database))}
    # A variable with a default takes its default (written in the file, not a secret value); the others a
    # stand-in that passes as a URL or a token.
    return {name: ("postgresql://mesh@postgresql/mesh" if name in in_database else "http://placeholder.invalid")
            for name, has_default in referenced_variables(data).items() if not has_default or name in in_database}


def _cluster_config(text: str, config: MeshConfig) -> str:
    """mesh.yaml as the pods read it: bound to 0.0.0.0, public URLs at the Services, state in PostgreSQL."""
    data = yaml.safe_load(text)
    data.setdefault("server", {})["host"] = "0.0.0.0"
    state = data.setdefault("state", {})
    if not state.get("database"):
        state["database"] = f"${{{DATABASE_VARIABLE}}}"
    for name, agent in config.local_agents().items():
        raw = data["agents"][name]
        raw.pop("host", None)
        if not agent.public_url:
            raw["public_url"] = f"{'https' if agent.tls else 'http'}://{dns_name(name)}:{agent.port}"
        if agent.tls:
            raw["tls"] = {"cert": f"tls/{dns_name(name)}/tls.crt", "key": f"tls/{dns_name(name)}/tls.key"}
    for name, tool in config.tools.items():
        if tool.transport == "http":
            raw = data["tools"][name]
            raw.pop("host", None)
            if not tool.public_url:
                raw["public_url"] = f"http://{dns_name(name)}:{tool.port}/mcp"
    header = (f"# Generated by `mesh deploy kubernetes` from {config.path.name}: bound to 0.0.0.0, public URLs at\n"
              "# the Services, state in PostgreSQL. Every variable comes from the Secret, never from this file.\n")
    return header + dump(data)


def _check_cluster_config(text: str, source: Path, variables: dict[str, bool]) -> None:
    """The rewritten file must still be a valid mesh file (the pods would refuse it otherwise)."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        file = Path(scratch) / CONFIG_FILE
        file.write_text(text, encoding="utf-8")
        try:
            config = load_config(file, _placeholders(text))
            problems = literal_secrets(config._source) if config._source else []
        except ConfigError as exc:
            problems = exc.problems
        problems = [p for p in problems if "file not found" not in p.message]  # TLS files come from Secrets
    if problems:
        raise ConfigError([SourceProblem(str(source), None, (), "the file rewritten for the cluster is invalid: "
                                                                + str(p)) for p in problems])


def _name_clashes(config: MeshConfig) -> list[SourceProblem]:
    seen: dict[str, tuple] = {}
    problems = []
    for section, names in (("agents", config.local_agents()), ("tools", config.tools)):
        for name in names:
            if section == "tools" and config.tools[name].transport != "http":
                continue
            key = dns_name(name)
            if key in seen:
                problems.append(config.problem((section, name), f"its Kubernetes name {key!r} is also that of "
                                                                f"{'.'.join(seen[key])}: rename one"))
            seen[key] = (section, name)
    return problems


@dataclass
class _Meta:
    mesh: str
    namespace: str | None

    def labels(self, name: str, component: str) -> dict[str, str]:
        return {NAME_LABEL: name, PART_OF: self.mesh, COMPONENT: component}

    def object(self, api: str, kind: str, name: str, component: str) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": name, "labels": self.labels(name, component)}
        if self.namespace:
            metadata["namespace"] = self.namespace
        return {"apiVersion": api, "kind": kind, "metadata": metadata}


def _environment(variables: dict[str, bool], secret: str) -> list[dict]:
    env: list[dict] = [{"name": "MESH_CONFIG", "value": f"{APP_DIR}/{CONFIG_FILE}"}]
    for name, has_default in variables.items():
        ref: dict[str, Any] = {"name": secret, "key": name}
        if has_default:
            ref["optional"] = True
        env.append({"name": name, "valueFrom": {"secretKeyRef": ref}})
    return env


def _resources(resources: ResourcesConfig) -> dict:
    out = {}
    for kind in ("requests", "limits"):
        amounts = {k: v for k, v in getattr(resources, kind).model_dump().items() if v is not None}
        if amounts:
            out[kind] = amounts
    return out


def _workload(meta: _Meta, name: str, component: str, image: str, command: list[str], port: int, replicas: int,
              resources: ResourcesConfig, env: list[dict], *, https: bool = False,
              tls_secret: str | None = None) -> list[dict]:
    """A Deployment and its Service for one agent or HTTP tool, probed on /health."""
    k8s = dns_name(name)
    selector = {NAME_LABEL: k8s, PART_OF: meta.mesh}
    probe = {"httpGet": {"path": HEALTH_PATH, "port": "http", "scheme": "HTTPS" if https else "HTTP"}}
    volumes: list[dict] = [
        {"name": "config", "configMap": {"name": f"{meta.mesh}-config"}},
        {"name": "state", "emptyDir": {}},
    ]
    mounts: list[dict] = [
        {"name": "config", "mountPath": f"{APP_DIR}/{CONFIG_FILE}", "subPath": CONFIG_FILE, "readOnly": True},
        {"name": "state", "mountPath": f"{APP_DIR}/.mesh"},
    ]
    if tls_secret:
        volumes.append({"name": "tls", "secret": {"secretName": tls_secret}})
        mounts.append({"name": "tls", "mountPath": f"{APP_DIR}/tls/{k8s}", "readOnly": True})
    container = {
        "name": k8s,
        "image": image,
        "command": command,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": env,
        "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 6},
        "startupProbe": {**probe, "periodSeconds": 2, "failureThreshold": 60},
        "resources": _resources(resources),
        "volumeMounts": mounts,
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                            "capabilities": {"drop": ["ALL"]}},
    }
    deployment = meta.object("apps/v1", "Deployment", k8s, component)
    deployment["spec"] = {
        "replicas": replicas,
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {"labels": meta.labels(k8s, component)},
            "spec": {"containers": [container], "volumes": volumes,
                     "terminationGracePeriodSeconds": 30},
        },
    }
    service = meta.object("v1", "Service", k8s, component)
    service["spec"] = {"selector": selector,
                       "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}]}
    return [deployment, service]


def _postgres_sample(meta: _Meta) -> list[dict]:
    """A one-pod PostgreSQL StatefulSet for trying the mesh out; its password comes from the same Secret."""
    name = "postgresql"
    selector = {NAME_LABEL: name, PART_OF: meta.mesh}
    statefulset = meta.object("apps/v1", "StatefulSet", name, "database")
    statefulset["spec"] = {
        "serviceName": name,
        "replicas": 1,
        "selector": {"matchLabels": selector},
        "template": {
            "metadata": {"labels": meta.labels(name, "database")},
            "spec": {"containers": [{
                "name": name,
                "image": "postgres:17",
                "ports": [{"name": "postgresql", "containerPort": 5432, "protocol": "TCP"}],
                "env": [{"name": "POSTGRES_USER", "value": "mesh"}, {"name": "POSTGRES_DB", "value": "mesh"},
                        {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {
                            "name": f"{meta.mesh}-secrets", "key": "POSTGRES_PASSWORD"}}},
                        {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"}],
                "readinessProbe": {"exec": {"command": ["pg_isready", "-U", "mesh"]}, "periodSeconds": 5},
                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
            }]},
        },
        "volumeClaimTemplates": [{
            "metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        }],
    }
    service = meta.object("v1", "Service", name, "database")
    service["spec"] = {"selector": selector, "clusterIP": "None",
                       "ports": [{"name": "postgresql", "port": 5432, "targetPort": "postgresql", "protocol": "TCP"}]}
    return [statefulset, service]

