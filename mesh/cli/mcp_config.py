"""`mesh mcp-config`: the mesh's MCP servers as Claude Desktop, VS Code or Cursor config entries, printed or merged into the host's file.

Printed, the entries are a complete JSON document for the host. With
``--write`` they are merged into the host's file: the other servers and keys
stay, entries of the same name are replaced, the previous file is kept as
``FILE.bak`` and the new one is written atomically.

Where the host's file lives (``--path`` overrides):
  claude  ~/.config/Claude/claude_desktop_config.json (Linux),
          ~/Library/Application Support/Claude/claude_desktop_config.json (macOS),
          %APPDATA%\\Claude\\claude_desktop_config.json (Windows)
  vscode  .vscode/mcp.json next to mesh.yaml
  cursor  .cursor/mcp.json next to mesh.yaml (--global: ~/.cursor/mcp.json)

Secrets: Claude Desktop takes only literal values, so a bearer token goes
into its file only with ``--include-secrets`` (from the current environment);
VS Code entries ask for it once (``${input:...}``, stored by VS Code);
Cursor entries read it from Cursor's environment (``${env:VAR}``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from mesh.config import MeshConfig

CLIENTS = ("claude", "vscode", "cursor")


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the `mcp-config` command to the `mesh` command line."""
    help = "print (or --write) the MCP config entries of the mesh's tools and bridge for Claude Desktop, VS Code or Cursor"
    sub = subparsers.add_parser("mcp-config", parents=[common], help=help, description=help)
    sub.add_argument("--client", required=True, choices=CLIENTS, help="the host to configure")
    sub.add_argument("--write", action="store_true", help="merge the entries into the host's file (keeps a .bak)")
    sub.add_argument("--path", help="the host's config file (default: where the host reads it)")
    sub.add_argument("--global", dest="global_", action="store_true", help="cursor: the user's ~/.cursor/mcp.json")
    sub.add_argument("--stdio-only", action="store_true",
                     help="launch HTTP tools over stdio too, instead of URL entries that need `mesh up`")
    sub.add_argument("--include-secrets", action="store_true",
                     help="claude: copy the bearer tokens the servers need from the environment into the file")
    sub.set_defaults(handler=cmd_mcp_config)
    return sub


def cmd_mcp_config(args: argparse.Namespace) -> int:
    from mesh.cli.common import CliError
    from mesh.tools.modules import load_config_for

    # The entries name the variables that hold secrets; writing them does not need their values.
    config, _ = load_config_for(args.config)
    document, notes = entries(config, args.client, stdio_only=args.stdio_only, include_secrets=args.include_secrets)
    for note in notes:
        print(f"mesh mcp-config: {note}", file=sys.stderr)
    if not args.write:
        print(json.dumps(document, indent=2))
        target = Path(args.path) if args.path else default_path(args.client, config, args.global_)
        print(f"mesh mcp-config: add these to {target} (or run again with --write)", file=sys.stderr)
        return 0
    target = Path(args.path) if args.path else default_path(args.client, config, args.global_)
    try:
        backup = merge_into(target, args.client, document)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    servers = document[_servers_key(args.client)]
    print(f"wrote {len(servers)} servers ({', '.join(servers)}) to {target}"
          + (f" (previous file kept as {backup})" if backup else ""))
    return 0


def default_path(client: str, config: MeshConfig, global_: bool = False) -> Path:
    home = Path.home()
    if client == "claude":
        if sys.platform == "darwin":
            return home / "Library" / "Application Support" / "Claude" / "claude_desktop_config.json"
        if sys.platform == "win32":
            return Path(os.environ.get("APPDATA", home)) / "Claude" / "claude_desktop_config.json"
        return Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "Claude" / "claude_desktop_config.json"
    if client == "vscode":
        return config.base_dir / ".vscode" / "mcp.json"
    return (home if global_ else config.base_dir) / ".cursor" / "mcp.json"


def _servers_key(client: str) -> str:
    return "servers" if client == "vscode" else "mcpServers"


def entries(config: MeshConfig, client: str, stdio_only: bool = False,
            include_secrets: bool = False) -> tuple[dict[str, Any], list[str]]:
    """The host's JSON document with the mesh's servers, and notes for the user (secrets to provide)."""
    from mesh.tools.hosts import host_servers

    servers: dict[str, Any] = {}
    inputs: list[dict[str, Any]] = []
    notes: list[str] = []
    # Claude Desktop launches stdio servers only.
    http_as_url = client != "claude" and not stdio_only
    for server in host_servers(config, http_as_url=http_as_url):
        secrets = server.secrets or {}
        env: dict[str, str] = {}
        headers: dict[str, str] = {}
        for variable, where in secrets.items():
            value = _secret_value(client, variable, include_secrets, inputs, notes, server.name)
            if value is None:
                continue
            if where == "header":
                headers["Authorization"] = f"Bearer {value}"
            else:
                env[variable] = value
        if server.url is not None:
            entry: dict[str, Any] = {"type": "http", "url": server.url} if client == "vscode" else {"url": server.url}
            if headers:
                entry["headers"] = headers
        else:
            entry = {"type": "stdio"} if client == "vscode" else {}
            entry.update({"command": server.command[0], "args": server.command[1:], "env": env})
        servers[server.name] = entry
    document: dict[str, Any] = {_servers_key(client): servers}
    if inputs:
        document["inputs"] = inputs
    return document, notes


def _secret_value(client: str, variable: str, include: bool, inputs: list, notes: list, server: str) -> str | None:
    if client == "vscode":
        input_id = f"mesh-{variable.lower()}"
        if not any(i["id"] == input_id for i in inputs):
            inputs.append({"type": "promptString", "id": input_id, "password": True,
                           "description": f"{variable} (a bearer token of the mesh)"})
        return f"${{input:{input_id}}}"
    if client == "cursor":
        return f"${{env:{variable}}}"
    value = os.environ.get(variable)
    if include and value:
        return value
    reason = "not set here" if include else "not written without --include-secrets"
    notes.append(f"{server} needs {variable} ({reason}): add it to the entry's \"env\" in Claude Desktop's file")
    return None


_COMMENT = re.compile(r'"(?:\\.|[^"\\])*"|//[^\n]*|/\*.*?\*/', re.DOTALL)
_TRAILING_COMMA = re.compile(r'"(?:\\.|[^"\\])*"|,(\s*[}\]])', re.DOTALL)


def parse_jsonc(text: str) -> Any:
    """JSON with // and /* */ comments and trailing commas (VS Code's and Cursor's files may have them)."""
    without_comments = _COMMENT.sub(lambda m: m.group(0) if m.group(0).startswith('"') else "", text)
    cleaned = _TRAILING_COMMA.sub(lambda m: m.group(1) if m.group(1) is not None else m.group(0), without_comments)
    return json.loads(cleaned)


def merge_into(path: Path, client: str, document: dict[str, Any]) -> Path | None:
    """Merge ``document``'s servers (and inputs) into the file at ``path``; return the backup's path, if any."""
    key = _servers_key(client)
    current: dict[str, Any] = {}
    backup = None
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if text.strip():
            try:
                current = parse_jsonc(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} is not valid JSON ({exc}); fix it or pass another --path: nothing was written") from None
            if not isinstance(current, dict) or not isinstance(current.get(key, {}), dict):
                raise ValueError(f"{path}: expected an object with a {key!r} object; nothing was written")
        backup = path.with_name(path.name + ".bak")
        shutil.copy2(path, backup)
    merged = dict(current)
    merged[key] = {**current.get(key, {}), **document[key]}
    if document.get("inputs"):
        ids = {i["id"] for i in document["inputs"]}
        merged["inputs"] = [i for i in current.get("inputs", []) if i.get("id") not in ids] + document["inputs"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False, encoding="utf-8") as tmp:
        json.dump(merged, tmp, indent=2)
        tmp.write("\n")
    if path.exists():
        shutil.copymode(path, tmp.name)
    os.replace(tmp.name, path)
    return backup
