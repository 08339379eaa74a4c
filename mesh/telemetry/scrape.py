"""Where Prometheus finds a mesh's metrics: each process's /metrics URL, and a scrape config for all of them."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import yaml

METRICS_PATH = "/metrics"


def metrics_url(base_url: str) -> str:
    """The /metrics URL of a server reached at ``base_url`` (an agent's URL, an HTTP tool's URL without /mcp)."""
    return base_url.rstrip("/") + METRICS_PATH


def scrape_config(config: Any) -> str:
    """A Prometheus ``scrape_configs`` YAML with one job per local agent and HTTP tool server of ``config``.

    Agents with a bearer token get an ``authorization`` block whose
    ``credentials_file`` the operator fills with that token.
    """
    from mesh.tools.modules import MCP_PATH, tool_config, tool_url

    jobs: list[dict[str, Any]] = []

    def job(kind: str, name: str, base_url: str, token: bool) -> None:
        parts = urlsplit(base_url)
        entry: dict[str, Any] = {
            "job_name": f"{config.name}-{name}",
            "scheme": parts.scheme or "http",
            "metrics_path": (parts.path.rstrip("/") or "") + METRICS_PATH,
            "static_configs": [{"targets": [parts.netloc], "labels": {"mesh": config.name, "process": name, "kind": kind}}],
        }
        if token:
            entry["authorization"] = {"type": "Bearer", "credentials_file": f"/etc/prometheus/{config.name}-{name}.token"}
        jobs.append(entry)

    for name, agent in config.agents.items():
        if agent.is_local:
            job("agent", name, config.url_of(name), bool(agent.auth))
    for name in config.tools:
        if tool_config(config, name).transport == "http":
            job("tool", name, tool_url(config, name).removesuffix(MCP_PATH), bool(tool_config(config, name).auth))
    header = (f"# Prometheus scrape config for mesh {config.name} ({config.path}): one job per process of `mesh up`.\n"
              "# Put it under scrape_configs: in prometheus.yml (token files: one line, the agent's bearer token).\n")
    return header + yaml.safe_dump({"scrape_configs": jobs}, sort_keys=False)
