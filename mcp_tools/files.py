"""Files MCP server: list, read and search text files under the root directories configured in mesh.yaml.

Every path is relative to a named root and must stay inside it: ``..``,
absolute paths, NUL bytes and symbolic links that lead outside the root are
refused, as are hidden files (``.env``, ``.git``; unless ``include_hidden``)
whether named directly or reached through a link inside the root
(``notes.txt -> .env``: the rules apply to where a link leads),
anything but regular files (devices, FIFOs), binary files and files over
``max_file_bytes``. With no roots configured every call is refused with a
message saying how to configure one. Files are also resources:
``files://ROOT/PATH``.
"""

import os
import re
import stat
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.shared.path_security import is_absolute_path
from mcp_types import ToolAnnotations
from pydantic import BaseModel, ByteSize, Field, ValidationInfo, field_validator

from mcp_tools._common import ConfigPath, ToolSettings, add_tool, not_found

ROOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class Settings(ToolSettings):
    roots: dict[str, ConfigPath] = Field(
        default_factory=dict, description="name -> directory (relative to mesh.yaml) the tools may read under")
    max_file_bytes: ByteSize = Field(ByteSize(1024 * 1024), ge=1, description="larger files are refused")
    max_list_entries: int = Field(1000, ge=1, description="most entries one list_files returns")
    max_search_results: int = Field(100, ge=1, le=10_000, description="most matching lines one search returns")
    max_search_files: int = Field(5000, ge=1, description="most files one search reads")
    include_hidden: bool = Field(False, description="allow names starting with '.' (.env, .git, ...)")

    @field_validator("roots")
    @classmethod
    def _roots_exist(cls, roots: dict[str, Path], info: ValidationInfo) -> dict[str, Path]:
        for name, path in roots.items():
            if not ROOT_NAME.match(name):
                raise ValueError(f"root name {name!r}: use letters, digits, '.', '-' and '_'")
            if not path.is_dir():
                raise not_found(f"root {name!r}: no such directory", path, info)
        return roots


class Entry(BaseModel):
    name: str
    type: Literal["file", "directory"]
    size: int | None = Field(None, description="bytes, for files")


class Listing(BaseModel):
    root: str
    path: str = Field(description="the directory listed, relative to the root ('.' is the root itself)")
    entries: list[Entry]
    truncated: bool = Field(description="true when there were more than the limit of entries")
    skipped: int = Field(description="entries left out: hidden names, links leading outside the root, special files")


class FileText(BaseModel):
    root: str
    path: str
    size: int = Field(description="the file's size in bytes")
    total_lines: int
    start_line: int
    end_line: int = Field(description="the last line included (inclusive)")
    text: str


class Match(BaseModel):
    path: str
    line: int
    text: str = Field(description="the matching line (cut to 500 characters)")


class SearchResult(BaseModel):
    root: str
    query: str
    matches: list[Match]
    files_searched: int
    truncated: bool = Field(description="true when the search stopped at a limit before reading every file")


class FileAccessError(ToolError):
    """The request would read outside a root, or a file that is refused; the message says why."""


class Files:
    """The checks and file operations, independent of MCP (the tools below are thin wrappers)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.roots = dict(settings.roots)

    def root(self, name: str | None) -> tuple[str, Path]:
        if not self.roots:
            raise FileAccessError(
                "no root directories are configured: add `roots: {NAME: DIRECTORY}` under this tool's settings in mesh.yaml")
        if name is None:
            name = next(iter(self.roots))
        if name not in self.roots:
            raise FileAccessError(f"unknown root {name!r} (roots: {', '.join(self.roots)})")
        return name, self.roots[name]

    def resolve(self, root: str | None, path: str) -> tuple[str, Path, Path]:
        """(root name, root directory, the resolved target) after every check on ``path``."""
        name, base = self.root(root)
        if "\0" in path:
            raise FileAccessError("the path contains a NUL byte")
        if is_absolute_path(path) or path.startswith("~"):
            raise FileAccessError(f"absolute paths are refused: give a path relative to the root {name!r}")
        parts = PurePosixPath(path.replace("\\", "/")).parts
        if ".." in parts:
            raise FileAccessError("'..' is refused: paths stay inside their root")
        if not self.settings.include_hidden and any(part.startswith(".") for part in parts):
            raise FileAccessError("hidden files and directories (names starting with '.') are refused")
        target = base.joinpath(*parts).resolve()
        if not target.is_relative_to(base):
            raise FileAccessError(f"{path!r} leads outside the root {name!r} through a symbolic link")
        if self._hidden(base, target):
            raise FileAccessError(f"{path!r} leads to a hidden file or directory through a symbolic link: refused")
        return name, base, target

    def _hidden(self, base: Path, real: Path) -> bool:
        """Whether the resolved ``real`` (inside ``base``) is, or is inside, a hidden name that is refused."""
        return not self.settings.include_hidden and any(p.startswith(".") for p in real.relative_to(base).parts)

    def relative(self, base: Path, target: Path) -> str:
        return target.relative_to(base).as_posix() or "."

    def list(self, root: str | None, path: str) -> Listing:
        name, base, target = self.resolve(root, path)
        if not target.is_dir():
            raise FileAccessError(f"{path!r} is not a directory in the root {name!r}")
        entries: list[Entry] = []
        skipped = 0
        truncated = False
        for child in sorted(target.iterdir(), key=lambda p: p.name):
            entry = self._entry(base, child)
            if entry is None:
                skipped += 1
                continue
            if len(entries) >= self.settings.max_list_entries:
                truncated = True
                break
            entries.append(entry)
        return Listing(root=name, path=self.relative(base, target), entries=entries, truncated=truncated, skipped=skipped)

    def _entry(self, base: Path, child: Path) -> Entry | None:
        if child.name.startswith(".") and not self.settings.include_hidden:
            return None
        try:
            real = child.resolve()
            info = real.stat()
        except OSError:
            return None
        if not real.is_relative_to(base) or self._hidden(base, real):
            return None
        if stat.S_ISDIR(info.st_mode):
            return Entry(name=child.name, type="directory")
        if stat.S_ISREG(info.st_mode):
            return Entry(name=child.name, type="file", size=info.st_size)
        return None

    def read_bytes(self, target: Path, shown: str) -> bytes:
        """The content of a regular, small enough file, opened without following a link swapped in since the check."""
        try:
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            raise FileAccessError(f"no such file: {shown!r}") from None
        except OSError as exc:
            raise FileAccessError(f"cannot open {shown!r}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(file.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise FileAccessError(f"{shown!r} is a directory: use list_files")
            if not stat.S_ISREG(info.st_mode):
                raise FileAccessError(f"{shown!r} is not a regular file")
            limit = int(self.settings.max_file_bytes)
            if info.st_size > limit:
                raise FileAccessError(f"{shown!r} is {info.st_size:,} bytes: files over {limit:,} bytes are refused")
            data = file.read(limit + 1)
        if len(data) > limit:
            raise FileAccessError(f"{shown!r} is over {limit:,} bytes: files that size are refused")
        return data

    def read_text(self, root: str | None, path: str) -> tuple[str, str, str, int]:
        name, base, target = self.resolve(root, path)
        data = self.read_bytes(target, path)
        text = _text_of(data)
        if text is None:
            raise FileAccessError(f"{path!r} is a binary file: only text files can be read")
        return name, self.relative(base, target), text, len(data)

    def read(self, root: str | None, path: str, start_line: int, line_count: int | None) -> FileText:
        name, relative, text, size = self.read_text(root, path)
        lines = text.splitlines(keepends=True)
        if start_line > max(len(lines), 1):
            raise FileAccessError(f"{path!r} has {len(lines)} lines; start_line {start_line} is past its end")
        end = len(lines) if line_count is None else min(len(lines), start_line - 1 + line_count)
        return FileText(root=name, path=relative, size=size, total_lines=len(lines), start_line=start_line,
                        end_line=end, text="".join(lines[start_line - 1 : end]))

    def search(self, root: str | None, query: str, path: str, case_sensitive: bool) -> SearchResult:
        name, base, start = self.resolve(root, path)
        if not start.is_dir():
            raise FileAccessError(f"{path!r} is not a directory in the root {name!r}")
        needle = query if case_sensitive else query.casefold()
        matches: list[Match] = []
        searched = 0
        truncated = False
        for directory, subdirs, files in os.walk(start, followlinks=False):
            subdirs[:] = sorted(d for d in subdirs if self.settings.include_hidden or not d.startswith("."))
            for file_name in sorted(files):
                if file_name.startswith(".") and not self.settings.include_hidden:
                    continue
                if searched >= self.settings.max_search_files or len(matches) >= self.settings.max_search_results:
                    truncated = True
                    break
                text = self._searchable_text(base, Path(directory, file_name))
                if text is None:
                    continue
                searched += 1
                for number, line in enumerate(text.splitlines(), 1):
                    if needle in (line if case_sensitive else line.casefold()):
                        relative = Path(directory, file_name).relative_to(base).as_posix()
                        matches.append(Match(path=relative, line=number, text=line.strip()[:500]))
                        if len(matches) >= self.settings.max_search_results:
                            break
            if truncated:
                break
        return SearchResult(root=name, query=query, matches=matches, files_searched=searched, truncated=truncated)

    def _searchable_text(self, base: Path, file: Path) -> str | None:
        """The text of a file a search may read, or None for links leaving the root, binary and oversized files."""
        try:
            real = file.resolve()
            if not real.is_relative_to(base) or self._hidden(base, real):
                return None
            return _text_of(self.read_bytes(real, file.name))
        except (FileAccessError, OSError):
            return None


def _text_of(data: bytes) -> str | None:
    """The text of ``data`` (UTF-8), or None when it is binary."""
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def create_server(settings: Settings) -> MCPServer:
    files = Files(settings)
    names = list(settings.roots)
    roots_text = ", ".join(names) if names else "none configured"
    read_only = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
    server = MCPServer(
        "files",
        title="Files",
        instructions=f"Read-only access to text files under named root directories ({roots_text}).",
        version="1.0.0",
    )
    # The roots are part of the input schema: the model sees exactly which names are valid.
    RootName: Any = Literal[tuple(names)] if names else str
    root_field = Field(description=f"Which root directory ({roots_text}); default: the first one.")

    def list_files(
        path: Annotated[str, Field(max_length=4096, description="Directory relative to the root; '.' is the root.")] = ".",
        root: Annotated[RootName | None, root_field] = None,
    ) -> Listing:
        """List a directory under a root: names, types (file or directory) and file sizes, sorted by name."""
        return files.list(root, path)

    def read_file(
        path: Annotated[str, Field(min_length=1, max_length=4096, description="File path relative to the root, e.g. 'docs/guide.md'.")],
        root: Annotated[RootName | None, root_field] = None,
        start_line: Annotated[int, Field(ge=1, description="First line to return (1-based).")] = 1,
        line_count: Annotated[int | None, Field(ge=1, description="How many lines to return; default: to the end.")] = None,
    ) -> FileText:
        """Read a UTF-8 text file under a root (optionally a range of lines). Binary and oversized files are refused."""
        return files.read(root, path, start_line, line_count)

    def search_files(
        query: Annotated[str, Field(min_length=1, max_length=500, description="Text to look for (plain text, not a pattern).")],
        root: Annotated[RootName | None, root_field] = None,
        path: Annotated[str, Field(max_length=4096, description="Directory to search in, relative to the root.")] = ".",
        case_sensitive: Annotated[bool, Field(description="Match case exactly.")] = False,
    ) -> SearchResult:
        """Find lines containing a text in the text files under a directory of a root (recursively); returns path, line number and line."""
        return files.search(root, query, path, case_sensitive)

    for tool in (list_files, read_file, search_files):
        add_tool(server, tool, annotations=read_only)

    @server.resource("files://{root}/{+path}", name="file", title="File under a root",
                     description=f"A text file under a root directory ({roots_text}): files://ROOT/PATH.")
    def file_resource(root: str, path: str) -> str:
        try:
            return files.read_text(root, path)[2]
        except FileAccessError as exc:
            raise ResourceError(str(exc)) from None

    return server


if __name__ == "__main__":
    from mesh.tools.runner import run_module

    run_module(__spec__.name)
