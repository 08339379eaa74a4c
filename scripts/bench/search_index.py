"""Benchmark: how soon the search tool answers its first call over a large document set, and how long indexing takes.

    .venv/bin/python scripts/bench/search_index.py [--kb 1024] [--wait-s 10] [--full]

Writes ``--kb`` KB of distinct prose paragraphs into a temporary folder, starts
``python -m mcp_tools.search`` over stdio (the `mcp` Client) with those documents,
and calls ``search`` at once: it prints the time to that first answer, its
method and note, and the progress notifications it got. With ``--full`` it then
waits for the whole semantic index (polling ``index_status``), prints the time
and chunks per second, and starts a second process on the same state directory
to time a first answer from the stored index.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # benchmarks import the tests' helpers

WORDS = ("agent mesh task stream artifact token card skill graph vertex message queue replica lease index chunk "
         "vector model guard policy verdict server client tool query document answer search field record").split()


def write_documents(folder: Path, kb: int) -> int:
    rng = random.Random(7)
    folder.mkdir(parents=True, exist_ok=True)
    written, number = 0, 0
    while written < kb * 1024:
        paragraphs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(60, 110))).capitalize() + "."
                      for _ in range(20)]
        text = f"# Document {number}\n\n" + "\n\n".join(paragraphs) + "\n"
        (folder / f"doc{number:04d}.md").write_text(text)
        written += len(text)
        number += 1
    return number


async def first_call(config: Path, query: str) -> tuple[float, dict, list]:
    from mesh.config import load_config
    from mesh.tools.connections import stdio_parameters
    from tests.support.mcp_helpers import python_env, stdio_client

    params = stdio_parameters(load_config(config), "search")
    notes: list = []

    async def progress(progress, total, message):
        notes.append(message)

    async with stdio_client(params.command, params.args, env=python_env()) as client:
        started = time.perf_counter()
        result = (await client.call_tool("search", {"query": query, "top_k": 3}, progress_callback=progress)).structured_content
        return time.perf_counter() - started, result, notes


async def until_indexed(config: Path) -> tuple[float, dict]:
    from mesh.config import load_config
    from mesh.tools.connections import stdio_parameters
    from tests.support.mcp_helpers import python_env, stdio_client

    params = stdio_parameters(load_config(config), "search")
    async with stdio_client(params.command, params.args, env=python_env()) as client:
        started = time.perf_counter()
        status = {"state": "building"}
        while status["state"] != "ready":
            status = (await client.call_tool("index_status", {})).structured_content
        return time.perf_counter() - started, status


def main() -> None:
    from tests.support.util import write_mesh

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=int, default=1024)
    parser.add_argument("--wait-s", type=float, default=10.0)
    parser.add_argument("--full", action="store_true", help="also time the whole index, and a first call that reuses it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        folder = Path(tmp) / "docs"
        files = write_documents(folder, args.kb)
        config = write_mesh(Path(tmp), tools={"search": {"module": "mcp_tools.search", "settings": {
            "documents": [str(folder)], "wait_s": args.wait_s}}})
        print(f"{args.kb} KB in {files} files, wait_s {args.wait_s:g}")
        seconds, result, notes = asyncio.run(first_call(config, "replica lease guard verdict"))
        print(f"first call: {seconds:.1f} s, method {result['method']}, {len(result['results'])} results, "
              f"{len(notes)} progress notifications (last: {notes[-1] if notes else None!r})")
        print(f"  note: {result.get('note')}")
        if args.full:
            seconds, status = asyncio.run(until_indexed(config))
            print(f"whole index (a fresh process, resuming what the first one saved): {seconds:.1f} s, "
                  f"{status['chunks']} chunks, {status['embedded_now']} embedded by it "
                  f"({status['embedded_now'] / max(seconds, 1e-9):.1f} chunks/s)")
            seconds, result, notes = asyncio.run(first_call(config, "replica lease guard verdict"))
            print(f"first call with the stored index: {seconds:.1f} s, method {result['method']}")


if __name__ == "__main__":
    main()
