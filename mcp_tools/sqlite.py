"""SQLite MCP server: read-only SQL queries against the database files configured in mesh.yaml, with row and time limits.

Read-only three times over: each database is opened with ``mode=ro`` (SQLite
itself refuses any write), ``PRAGMA query_only`` is on, and an authorizer
lets through only reads: one statement per call, SELECT (and WITH, VALUES,
EXPLAIN) reading tables, and read-only PRAGMAs without a value. ATTACH,
DETACH, writes, schema changes, transactions, PRAGMA assignments and
``load_extension`` are refused with an error naming what was refused. A query
stops after ``timeout_s`` and returns at most ``max_rows`` rows.

Memory is bounded inside SQLite, before values are built: no text or blob may
be longer than ``max_value_bytes`` (SQLite's SQLITE_LIMIT_LENGTH, so
``zeroblob(200000000)`` fails at once instead of allocating 200 MB), SQLite's
heap in this process is capped at ``max_memory`` (``hard_heap_limit``), and
a result stops at ``max_result_bytes``.
"""

import base64
import re
import sqlite3
import time
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, ByteSize, Field, ValidationInfo, field_validator

from mcp_tools._common import ConfigPath, ToolSettings, add_tool, not_found

DATABASE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

# PRAGMAs that only report. Those of the first set take a table or index name;
# the others are refused with any value, which would be an assignment.
READ_ONLY_PRAGMAS_WITH_ARGUMENT = frozenset({
    "table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list",
})
READ_ONLY_PRAGMAS = frozenset({
    "table_list", "collation_list", "function_list", "module_list", "pragma_list", "database_list", "compile_options",
    "page_count", "page_size", "freelist_count", "encoding", "user_version", "application_id", "schema_version",
    "data_version", "foreign_keys", "integrity_check", "quick_check",
})
_ACTION_NAMES = {
    value: name.removeprefix("SQLITE_") for name, value in vars(sqlite3).items()
    if name.startswith("SQLITE_") and isinstance(value, int) and name not in ("SQLITE_OK", "SQLITE_DENY", "SQLITE_IGNORE")
    and not name.startswith(("SQLITE_LIMIT", "SQLITE_DBCONFIG"))
}
_ALLOWED_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
_SCHEMA_TABLES = frozenset({"sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"})
_REFUSED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})


class Settings(ToolSettings):
    databases: dict[str, ConfigPath] = Field(
        default_factory=dict, description="name -> SQLite file (relative to mesh.yaml), opened read-only")
    max_rows: int = Field(500, ge=1, le=100_000, description="most rows one query returns")
    timeout_s: float = Field(5.0, gt=0, le=300, description="a query running longer is stopped")
    max_cell_chars: int = Field(10_000, ge=10, description="longer text or blob values are cut")
    max_value_bytes: ByteSize = Field(ByteSize(1024 * 1024), ge=1024, le=1024**3,
                                      description="the longest text or blob a query may build (SQLite refuses more)")
    max_result_bytes: ByteSize = Field(ByteSize(8 * 1024 * 1024), ge=1024,
                                       description="a result stops (truncated) once its values hold this much")
    max_memory: ByteSize = Field(ByteSize(256 * 1024 * 1024), ge=8 * 1024 * 1024,
                                 description="SQLite's heap limit in this server (hard_heap_limit)")

    @field_validator("databases")
    @classmethod
    def _databases_exist(cls, databases: dict[str, Path], info: ValidationInfo) -> dict[str, Path]:
        for name, path in databases.items():
            if not DATABASE_NAME.match(name):
                raise ValueError(f"database name {name!r}: use letters, digits, '.', '-' and '_'")
            if not path.is_file():
                raise not_found(f"database {name!r}: no such file", path, info)
        return databases


class QueryResult(BaseModel):
    database: str
    columns: list[str]
    rows: list[list[Any]] = Field(description="values as JSON: blobs as {'base64': ...}")
    row_count: int = Field(description="rows returned")
    truncated: bool = Field(description="true when the query had more rows than max_rows or more bytes than max_result_bytes")
    elapsed_ms: float


class Column(BaseModel):
    name: str
    type: str
    not_null: bool
    primary_key: bool


class Table(BaseModel):
    name: str
    type: Literal["table", "view"]
    columns: list[Column]
    sql: str | None = Field(description="the CREATE statement")


class Schema(BaseModel):
    database: str
    tables: list[Table]


class QueryRefused(ToolError):
    """The statement is not a read, or breaks a limit; the message says what was refused."""


class ReadOnlyDatabase:
    """One database file opened read-only, with an authorizer that refuses everything but reading."""

    def __init__(self, name: str, path: Path, settings: Settings) -> None:
        self.name = name
        self.path = path
        self.settings = settings

    def connect(self) -> tuple[sqlite3.Connection, list[str]]:
        """A read-only connection, and the list its authorizer appends each refused action to."""
        uri = f"file:{quote(str(self.path))}?mode=ro"
        try:
            connection = sqlite3.connect(uri, uri=True, timeout=self.settings.timeout_s, check_same_thread=False)
            connection.execute("PRAGMA query_only = ON")
            connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, int(self.settings.max_value_bytes))
        except sqlite3.Error as exc:
            raise QueryRefused(f"cannot open database {self.name!r}: {exc}") from None
        refused: list[str] = []
        connection.set_authorizer(lambda *args: self._authorize(refused, *args))
        return connection, refused

    def _authorize(self, refused: list[str], action: int, arg1: str | None, arg2: str | None,
                   database: str | None, trigger: str | None) -> int:
        if action in _ALLOWED_ACTIONS:
            if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _REFUSED_FUNCTIONS:
                refused.append(f"the function {arg2}()")
                return sqlite3.SQLITE_DENY
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA:
            pragma = (arg1 or "").lower()
            if pragma in READ_ONLY_PRAGMAS_WITH_ARGUMENT or (pragma in READ_ONLY_PRAGMAS and arg2 is None):
                return sqlite3.SQLITE_OK
        if arg1 in _SCHEMA_TABLES and action == sqlite3.SQLITE_UPDATE:
            # SQLite asks this while preparing table-valued PRAGMAs (pragma_table_info); the
            # connection is read-only, so no statement can really change the schema table.
            return sqlite3.SQLITE_OK
        if arg1 in _SCHEMA_TABLES and action in (sqlite3.SQLITE_INSERT, sqlite3.SQLITE_DELETE):
            refused.append("changing the schema (CREATE, DROP, ALTER)")  # SQLite's bookkeeping of such a statement
            return sqlite3.SQLITE_DENY
        what = _ACTION_NAMES.get(action, f"action {action}").replace("_", " ")
        if action == sqlite3.SQLITE_PRAGMA:
            what = f"PRAGMA {arg1}" + (f" = {arg2}" if arg2 is not None else "")
        refused.append(what)
        return sqlite3.SQLITE_DENY

    def query(self, sql: str, parameters: list[Any]) -> QueryResult:
        started = time.monotonic()
        deadline = started + self.settings.timeout_s
        connection, refused = self.connect()
        # Called every N virtual-machine steps; a non-zero return interrupts the query.
        connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        try:
            try:
                cursor = connection.execute(sql, parameters)
                rows, over_bytes = self._fetch(cursor)
            except sqlite3.ProgrammingError as exc:
                raise QueryRefused(f"{exc} (send one statement per call)") from None
            except sqlite3.DatabaseError as exc:
                raise self._explain(refused, exc, deadline) from None
            columns = [d[0] for d in cursor.description or []]
        finally:
            connection.close()
        truncated = over_bytes or len(rows) > self.settings.max_rows
        rows = rows[: self.settings.max_rows]
        return QueryResult(
            database=self.name, columns=columns, rows=[[self._json(v) for v in row] for row in rows],
            row_count=len(rows), truncated=truncated, elapsed_ms=round((time.monotonic() - started) * 1000, 2),
        )

    def _fetch(self, cursor: sqlite3.Cursor) -> tuple[list[tuple], bool]:
        """Up to max_rows + 1 rows, stopping early (True) once they hold max_result_bytes."""
        rows: list[tuple] = []
        size = 0
        limit = int(self.settings.max_result_bytes)
        while len(rows) <= self.settings.max_rows:
            row = cursor.fetchone()
            if row is None:
                return rows, False
            rows.append(row)
            size += sum(len(v) if isinstance(v, str | bytes) else 8 for v in row)
            if size > limit:
                return rows, True
        return rows, False

    def _explain(self, refused: list[str], exc: sqlite3.DatabaseError, deadline: float) -> QueryRefused:
        if refused:
            return QueryRefused(f"refused: {refused[0]} is not allowed; this database is read-only (SELECT queries only)")
        if "not authorized" in str(exc):
            return QueryRefused("refused: this statement changes the database; it is read-only (SELECT queries only)")
        if "interrupted" in str(exc) and time.monotonic() > deadline:
            return QueryRefused(f"the query was stopped after the time limit of {self.settings.timeout_s:g}s")
        if "too big" in str(exc):
            return QueryRefused(f"a value of this query would be over {int(self.settings.max_value_bytes):,} bytes, "
                                "the limit of this server (max_value_bytes); SQLite refused to build it")
        if isinstance(exc, sqlite3.OperationalError) and "out of memory" in str(exc).lower():
            return QueryRefused(f"the query needs more than the {int(self.settings.max_memory):,} bytes of memory "
                                "this server gives SQLite (max_memory)")
        if "readonly" in str(exc).lower() or "read-only" in str(exc).lower():
            return QueryRefused(f"refused: this database is read-only ({exc})")
        return QueryRefused(f"SQL error: {exc}")

    def _json(self, value: Any) -> Any:
        limit = self.settings.max_cell_chars
        if isinstance(value, bytes):
            return {"base64": base64.b64encode(value[:limit]).decode(), "bytes": len(value)}
        if isinstance(value, str) and len(value) > limit:
            return value[:limit] + f"... [{len(value) - limit} more characters]"
        return value

    def schema(self) -> Schema:
        connection, _ = self.connect()
        try:
            objects = connection.execute(
                "SELECT name, type, sql FROM sqlite_schema WHERE type IN ('table', 'view') "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name").fetchall()
            tables = []
            for name, kind, sql in objects:
                columns = [
                    Column(name=c[1], type=c[2] or "", not_null=bool(c[3]), primary_key=bool(c[5]))
                    for c in connection.execute("SELECT * FROM pragma_table_info(?)", (name,)).fetchall()
                ]
                tables.append(Table(name=name, type=kind, columns=columns, sql=sql))
        except sqlite3.DatabaseError as exc:
            raise QueryRefused(f"cannot read the schema of {self.name!r}: {exc}") from None
        finally:
            connection.close()
        return Schema(database=self.name, tables=tables)


def create_server(settings: Settings) -> MCPServer:
    # SQLite's heap limit is per process: set once, before any query (no database needed).
    with sqlite3.connect(":memory:") as setup:
        setup.execute(f"PRAGMA hard_heap_limit = {int(settings.max_memory)}")
    databases = {name: ReadOnlyDatabase(name, path, settings) for name, path in settings.databases.items()}
    names = list(databases)
    names_text = ", ".join(names) if names else "none configured"
    server = MCPServer(
        "sqlite",
        title="SQLite (read-only)",
        instructions=f"Read-only SQL over SQLite databases ({names_text}). Call describe_database before querying.",
        version="1.0.0",
    )
    DatabaseName: Any = Literal[tuple(names)] if names else str
    database_field = Field(description=f"Which database ({names_text}); default: the first one.")

    def pick(name: str | None) -> ReadOnlyDatabase:
        if not databases:
            raise QueryRefused("no databases are configured: add `databases: {NAME: FILE}` under this tool's settings in mesh.yaml")
        name = name or names[0]
        if name not in databases:
            raise QueryRefused(f"unknown database {name!r} (databases: {names_text})")
        return databases[name]

    def query(
        sql: Annotated[str, Field(min_length=1, max_length=100_000, description=(
            "One SQLite SELECT statement (WITH, VALUES, EXPLAIN and read-only PRAGMAs also work); "
            "use ? placeholders for values."))],
        parameters: Annotated[list[str | int | float | None], Field(
            max_length=1000, description="Values for the ? placeholders, in order.")] = [],  # noqa: B006 (pydantic copies defaults)
        database: Annotated[DatabaseName | None, database_field] = None,
    ) -> QueryResult:
        """Run a read-only SQL query and return its columns and rows (up to the row limit; `truncated` says if there were more).

        Writes, ATTACH/DETACH, schema changes and PRAGMA assignments are refused.
        """
        return pick(database).query(sql, parameters)

    def describe_database(database: Annotated[DatabaseName | None, database_field] = None) -> Schema:
        """List the tables and views of a database with their columns, types and CREATE statements."""
        return pick(database).schema()

    read_only = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
    add_tool(server, query, annotations=read_only)
    add_tool(server, describe_database, annotations=read_only)

    @server.resource("sqlite://{database}/schema", name="schema", title="Database schema",
                     mime_type="application/json", description=f"Tables and columns of a database ({names_text}).")
    def schema_resource(database: str) -> str:
        try:
            return pick(database).schema().model_dump_json(indent=2)
        except QueryRefused as exc:
            raise ResourceError(str(exc)) from None

    @server.prompt(title="Ask a database")
    def ask_database(question: str, database: str | None = None) -> str:
        """Answer a question from a database's data with read-only SQL."""
        target = database or (names[0] if names else "(none configured)")
        return (f"Answer this question using the SQLite database {target!r}: {question}\n"
                "First call describe_database to see its tables, then use the query tool with one SELECT "
                "at a time. Show the SQL you ran and base the answer only on its results.")

    return server


if __name__ == "__main__":
    from mesh.tools.runner import run_module

    run_module(__spec__.name)
