"""`mesh ls` and `mesh card`: what the mesh has and whether it answers."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import httpx

from mesh.cli.common import call_agent, config_of, target_of
from mesh.client.errors import transport_error, transport_reason
from mesh.config import MeshConfig
from mesh.errors import CliError
from mesh.telemetry.scrape import metrics_url
from mesh.tools.http import MCP_PATH

# -- ls / card ----------------------------------------------------------------------------------


def cmd_ls(args: argparse.Namespace) -> int:
    from mesh.guard.status import guard_column, guard_status
    from mesh.tools.connections import probe_tools

    config = config_of(args)

    async def probe():
        return await asyncio.gather(_probe_agents(config), guard_status(config), probe_tools(config))

    if getattr(args, "prometheus", False):
        from mesh.telemetry.scrape import scrape_config

        print(scrape_config(config), end="")
        return 0
    rows, status, tools = asyncio.run(probe())
    guard = guard_column(config, [r["name"] for r in rows], status)
    for row in rows:
        row["guard"] = guard[row["name"]]
        row["metrics"] = metrics_url(row["url"]) if row["kind"] == "local" else None
    for tool in tools:
        tool["metrics"] = metrics_url(tool["url"].removesuffix(MCP_PATH)) if tool["url"] else None
    listing = {"mesh": config.name, "config": str(config.path), "agents": rows, "guard": status, "tools": tools,
               "graphs": [{"name": n, "description": g.description, "vertices": [v.id for v in g.vertices],
                           "coordinator": config.coordinator_name()} for n, g in config.graphs.items()],
               "console": _console(config)}
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    from mesh.cli.output import table

    print(table(["AGENT", "KIND", "URL", "ANSWERS", "SKILLS", "AUTH", "GUARD"], [
        [r["name"], r["kind"], r["url"], ("yes" if r["answers"] else f"no ({r['error']})") + _model_note(r), ", ".join(r["skills"]),
         r["auth"], r["guard"]] for r in rows
    ]))
    if config.graphs:
        print()
        print(table(["GRAPH", "VERTICES", "RUN BY", "DESCRIPTION"], [
            [g["name"], len(g["vertices"]), g["coordinator"] or "(no coordinator)", g["description"]]
            for g in listing["graphs"]
        ]))
    if listing["console"]["url"]:
        print(f"\nconsole: {listing['console']['url']}" + ("" if listing["console"]["answers"] else " (not answering)"))
    if tools:
        print()
        print(table(["TOOL", "TRANSPORT", "URL", "ANSWERS", "AUTH"], [
            [t["name"], t["transport"], t["url"] or "(stdio)",
             "yes" if t["answers"] else (f"no ({t['error']})" if t["answers"] is False else "-"), t["auth"]]
            for t in tools
        ]))
    return 0


def _console(config: MeshConfig) -> dict[str, Any]:
    """The console's URL and port (from console.port, or from the file a running `mesh up` wrote) and whether it answers."""
    from mesh.console.server import console_url

    url = console_url(config)
    answers = False
    if url:
        try:
            answers = httpx.get(url + "/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            pass
    return {"enabled": config.console.enabled, "url": url, "port": int(url.rsplit(":", 1)[1]) if url else None,
            "answers": answers}


def _model_note(row: dict[str, Any]) -> str:
    """"; model not reachable" for an LLM agent whose model server does not answer (or lacks its model)."""
    problem = (row.get("model") or {}).get("problem")
    return f"; {problem}" if problem else ""


async def _probe_agents(config: MeshConfig, names: list[str] | None = None) -> list[dict[str, Any]]:
    from mesh.client import fetch_card

    async def probe(name: str) -> dict[str, Any]:
        agent = config.agent(name)
        row = {"name": name, "kind": "llm" if agent.llm else "local" if agent.is_local else "external",
               "url": config.url_of(name), "auth": "bearer" if agent.auth else "none", "answers": False, "error": None,
               "skills": []}
        if agent.llm is not None:
            from mesh.llm.providers import probe_model

            row["model"] = {"provider": agent.llm.provider, "url": agent.llm.base_url, "name": agent.llm.model,
                            "problem": await probe_model(agent.llm)}
        try:
            async with httpx.AsyncClient(timeout=2.0, verify=False) as http:
                card = await fetch_card(http, row["url"])
            row["answers"] = True
            row["skills"] = [s.id for s in card.skills]
        except Exception as exc:
            row["error"] = transport_reason(transport_error(exc) or exc)
        return row

    return list(await asyncio.gather(*(probe(n) for n in (config.agents if names is None else names))))


def cmd_card(args: argparse.Namespace) -> int:
    from mesh.cli.output import to_json

    card = asyncio.run(_card(args))
    if args.json:
        print(json.dumps(to_json(card), indent=2))
        return 0
    print(_describe_card(card))
    return 0


async def _card(args: argparse.Namespace):
    from a2a.types import GetExtendedAgentCardRequest

    from mesh.client import fetch_card, http_client, open_client

    target = target_of(args)
    async with http_client(target.token, h2c=target.h2c) as http:
        card = await call_agent(target, fetch_card(http, target.url))
        if not args.extended:
            return card
        if not card.capabilities.extended_agent_card:
            raise CliError(f"{target.name} has no extended card (its card does not offer one)")
        client = await open_client(http, card, streaming=False)
        return await call_agent(target, client.get_extended_agent_card(GetExtendedAgentCardRequest()))


def _describe_card(card) -> str:
    lines = [f"{card.name} {card.version}", f"  {card.description}"]
    for interface in card.supported_interfaces:
        lines.append(f"  {interface.protocol_binding:<9} {interface.protocol_version:<4} {interface.url}")
    caps = [name for name in ("streaming", "push_notifications", "extended_agent_card") if getattr(card.capabilities, name)]
    lines.append(f"  capabilities: {', '.join(caps) or 'none'}")
    if card.security_schemes:
        lines.append(f"  security: {', '.join(card.security_schemes)}")
    lines.append(f"  input: {', '.join(card.default_input_modes)}; output: {', '.join(card.default_output_modes)}")
    for skill in card.skills:
        lines.append(f"  skill {skill.id}: {skill.name}: {skill.description}")
        for example in skill.examples:
            lines.append(f"    e.g. {example}")
    return "\n".join(lines)
