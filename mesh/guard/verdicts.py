"""Verdicts: Llama Guard 3's hazard categories plus prompt injection, conversations (turns), verdicts and their cache."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from mesh.config.guard import CATEGORIES, HAZARDS, INJECTION, Check  # noqa: F401 - re-exported
from mesh.errors import GuardConfigError, GuardError  # noqa: F401 - re-exported
from mesh.serving.executor import AgentFailure
from mesh.telemetry import metrics

log = logging.getLogger(__name__)



class GuardBlocked(AgentFailure):
    """Content was blocked by the guard; ``str()`` is the reason to show, naming the categories."""

    def __init__(self, reason: str, codes: Sequence[str] = ()) -> None:
        super().__init__(reason)
        self.codes = list(codes)


# -- verdicts --------------------------------------------------------------------------------------


class Turn(BaseModel):
    """One turn of the conversation to classify."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: str


class Category(BaseModel):
    code: str
    name: str

    @classmethod
    def of(cls, code: str) -> Category:
        return cls(code=code, name=CATEGORIES[code])


class Reason(BaseModel):
    """What fired for one category: a probe's score against its threshold, a rule and where it matched, or a model.

    Never the content itself: positions are character offsets into the checked text
    (``in``: the text as sent, or its ``normalised`` or ``decoded`` form), so logs can carry it.
    """

    code: str
    source: Literal["probe", "rule", "model"]
    score: float | None = None
    threshold: float | None = None
    rule: str | None = None
    span: tuple[int, int] | None = None
    within: Literal["text", "normalised", "decoded"] | None = None
    note: str | None = None  # e.g. "P(safe) 0.03 < 0.45"

    def line(self) -> str:
        """'S9 probe 0.91 >= 0.55' / 'INJ rule override at 12-48' / 'S1 model llama-guard3'."""
        where = f" at {self.span[0]}-{self.span[1]}" if self.span else ""
        # Text decoded from base64/hex (or normalised) has positions of its own: say which text they are in.
        within = f" of the {self.within} text" if self.within and self.within != "text" else ""
        if self.source == "probe":
            score = f" {self.score:.2f}" if self.score is not None else ""
            bar = f" (threshold {self.threshold:.2f})" if self.threshold is not None else ""
            return f"{self.code} probe{score}{bar}{where}{within}" + (f", {self.note}" if self.note else "")
        if self.source == "rule":
            return f"{self.code} rule {self.rule}{where}{within}"
        return f"{self.code} {self.rule or 'model'}"


class Verdict(BaseModel):
    """A guard's answer about one conversation: safe or not, and which categories it violates."""

    safe: bool
    categories: list[Category] = []
    check: Check
    backend: Literal["ollama", "embedded"]
    embedded: bool
    model: str
    latency_ms: float
    cached: bool = False
    content_hash: str
    # Why this backend answered (e.g. auto chose the embedded one because no
    # Ollama server answered); present in every verdict it applies to.
    note: str | None = None
    # The embedded backend's per-category evidence (nearest-exemplar similarity).
    scores: dict[str, float] = {}
    # What fired, per category (see Reason); empty for a safe verdict.
    reasons: list[Reason] = []

    @property
    def codes(self) -> list[str]:
        return [c.code for c in self.categories]

    def summary(self) -> str:
        """One readable line: 'unsafe: S1 Violent Crimes, S9 ... (input, embedded all-MiniLM-L6-v2 kNN, 12.1 ms)'."""
        what = "safe" if self.safe else "unsafe: " + ", ".join(f"{c.code} {c.name}" for c in self.categories)
        how = f"{self.check}, {self.backend} {self.model}, {self.latency_ms:.1f} ms{', cached' if self.cached else ''}"
        return f"{what} ({how})" + (f"; {self.note}" if self.note else "")

    def explain(self, codes: Iterable[str] | None = None) -> str:
        """What fired for ``codes`` (default: every category), one clause each: 'S9 probe 0.91 (threshold 0.55); INJ rule override at 0-42'."""
        wanted = set(self.codes if codes is None else codes)
        return "; ".join(r.line() for r in self.reasons if r.code in wanted)


def categories_of(codes: Iterable[str]) -> list[Category]:
    """Categories in taxonomy order, unknown codes refused."""
    wanted = set(codes)
    unknown = wanted - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown category codes: {', '.join(sorted(unknown))}")
    return [Category.of(code) for code in CATEGORIES if code in wanted]


def check_of(turns: Sequence[Turn]) -> Check:
    """Llama Guard checks the last turn: the user's input, or the agent's output after it."""
    if not turns:
        raise ValueError("nothing to classify: no turns")
    return "output" if turns[-1].role == "assistant" else "input"


def content_hash(turns: Sequence[Turn]) -> str:
    """sha256 over the roles and contents: the verdict cache key and what logs show instead of the content."""
    canonical = json.dumps([[t.role, t.content] for t in turns], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def as_turns(user: str, assistant: str | None = None) -> list[Turn]:
    turns = [Turn(role="user", content=user)]
    if assistant is not None:
        turns.append(Turn(role="assistant", content=assistant))
    return turns


# Per-category counts of the verdicts this process has given or received ("safe" counts safe ones).
VERDICT_COUNTS: Counter[str] = Counter()


def record_verdict(verdict: Verdict, length: int, where: str = "") -> None:
    """Count a verdict per category and log it without its content (hash and length only; safe ones at debug level)."""
    VERDICT_COUNTS["total"] += 1
    metrics.record_verdict(verdict.check, verdict.backend, verdict.safe, verdict.codes)
    if verdict.safe:
        VERDICT_COUNTS["safe"] += 1
    for code in verdict.codes:
        VERDICT_COUNTS[code] += 1
    # A safe verdict is the common case: counted above, logged only at debug level (a line per check cost the
    # guard agent ~8% of its CPU under load); an unsafe one is always logged.
    if verdict.safe and not log.isEnabledFor(logging.DEBUG):
        return
    log.log(
        logging.DEBUG if verdict.safe else logging.INFO,
        "verdict%s check=%s safe=%s categories=%s backend=%s hash=%s len=%d latency_ms=%.2f cached=%s%s",
        f" {where}" if where else "", verdict.check, str(verdict.safe).lower(), ",".join(verdict.codes) or "-",
        verdict.backend, verdict.content_hash[:16], length, verdict.latency_ms, str(verdict.cached).lower(),
        f" fired=[{verdict.explain()}]" if verdict.reasons else "",
    )


class Classifier(Protocol):
    """Anything that turns a conversation into a verdict (the guard agent's backends, the guard client)."""

    async def classify(self, turns: Sequence[Turn]) -> Verdict: ...


class VerdictCache:
    """An LRU of verdicts keyed by content hash."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[str, Verdict] = OrderedDict()

    def get(self, key: str) -> Verdict | None:
        verdict = self._entries.get(key)
        if verdict is not None:
            self._entries.move_to_end(key)
        return verdict

    def put(self, key: str, verdict: Verdict) -> None:
        if self.size <= 0:
            return
        self._entries[key] = verdict
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    async def verdict(self, turns: Sequence[Turn], classify: Callable[[Sequence[Turn]], Awaitable[Verdict]]) -> Verdict:
        """The cached verdict for ``turns`` (marked cached), or ``classify(turns)``'s, remembered."""
        started = time.perf_counter()
        key = content_hash(turns)
        hit = self.get(key)
        if hit is not None:
            return hit.model_copy(update={"cached": True, "latency_ms": (time.perf_counter() - started) * 1000})
        verdict = await classify(turns)
        self.put(key, verdict)
        return verdict


class CachedClassifier:
    """Wraps a classifier with a VerdictCache: the same content is classified once."""

    def __init__(self, inner: Classifier, size: int) -> None:
        self.inner = inner
        self.cache = VerdictCache(size)

    async def classify(self, turns: Sequence[Turn]) -> Verdict:
        return await self.cache.verdict(turns, self.inner.classify)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
