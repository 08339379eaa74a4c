"""The guard's first stage: a linear softmax over hashed character and word n-grams (numpy only, ~0.1 ms a window).

Features: character 3- to 5-grams of the normalised text and word 1- and
2-grams, hashed into ``BUCKETS`` buckets, log-scaled counts, L2-normalised.
Weights ship in ``data/ngram.npz`` (fitted by ``python -m agents.guard.fit``
from public data sets; nothing is fitted at set-up or at start).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import numpy as np

from agents.guard.injection import _CONFUSABLES

BUCKETS = 1 << 16
_WORD = re.compile(r"\w+")
_ZERO_WIDTH = re.compile("[\u200b-\u200f\u2060-\u2064\ufeff\u00ad\u034f\u180e]")
# "b u i l d  a  b o m b": runs of single letters, one space apart within a word and more between words.
_SPACED = re.compile(r"(?<!\w)\w(?:(?: {1,3}|[.\-_*])\w(?!\w))+")
# "h.o.w d.o i m.a.k.e": single letters joined by a dot, dash, underscore or star form one word (letters only, so
# "3.14" and "v1.2" stay as they are).
_DOTTED = re.compile(r"(?<![^\W\d_])(?:[^\W\d_][.\-_*]){1,}[^\W\d_](?![^\W\d_])")
_WORDS = re.compile(r"\w{2,}")
_MASK = np.uint64(BUCKETS - 1)
_PRIME = np.uint64(1099511628211)
_MIX = np.uint64(0x9E3779B97F4A7C15)


def normalise(text: str) -> str:
    """NFKC, lower case, zero-width characters removed, look-alike letters in mixed-script words mapped to Latin,
    dotted and spaced-out letters joined, whitespace collapsed."""
    text = _ZERO_WIDTH.sub("", unicodedata.normalize("NFKC", text)).lower()
    if not text.isascii():
        text = _WORDS.sub(_unmix, text)
    text = _DOTTED.sub(lambda m: re.sub(r"[.\-_*]", "", m.group(0)), text)
    text = _SPACED.sub(_join_letters, text)
    return " ".join(text.split())


def _join_letters(match: re.Match) -> str:
    run = match.group(0)
    if "  " in run:  # wider gaps separate the words
        return " ".join(re.sub(r"[ .\-_*]", "", word) for word in re.split(r" {2,}", run))
    letters = re.sub(r"[ .\-_*]", "", run)
    return letters if len(letters) >= 4 else run  # "a b c" and "I a m" are left alone


def _unmix(match: re.Match) -> str:
    """A word mixing Latin with Cyrillic/Greek look-alikes ("bоmb" with a Cyrillic о) in Latin; a Russian word stays."""
    word = match.group(0)
    if word.isascii() or not any("a" <= c <= "z" for c in word):
        return word
    return word.translate(_CONFUSABLES)


def _bucket(h: np.ndarray) -> np.ndarray:
    return ((h * _MIX) >> np.uint64(40)) & _MASK


def features(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(bucket indices, values) of one normalised text's hashed n-grams (L2-normalised log counts)."""
    padded = f" {text} "
    codes = np.frombuffer(padded.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    parts = []
    with np.errstate(over="ignore"):
        for n in (3, 4, 5):
            if len(codes) < n:
                continue
            h = np.full(len(codes) - n + 1, np.uint64(n), dtype=np.uint64)
            for k in range(n):
                h = h * _PRIME + codes[k:len(codes) - n + 1 + k]
            parts.append(_bucket(h))
        words = _WORD.findall(text)
        if words:
            w = np.array([hash_word(x) for x in words], dtype=np.uint64)
            parts.append(_bucket(w * np.uint64(31) + np.uint64(7)))
            if len(w) > 1:
                parts.append(_bucket(w[:-1] * _PRIME + w[1:] * np.uint64(17)))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    index, counts = np.unique(np.concatenate(parts).astype(np.int64), return_counts=True)
    values = np.log1p(counts).astype(np.float32)
    values /= np.sqrt((values * values).sum())
    return index, values


def hash_word(word: str) -> int:
    """A stable 64-bit FNV-1a hash (Python's hash() changes between runs)."""
    h = 1469598103934665603
    for byte in word.encode():
        h = ((h ^ byte) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


class NgramModel:
    """Softmax over LABELS from hashed n-grams: ``weights`` (BUCKETS, labels), ``bias`` (labels)."""

    def __init__(self, weights: np.ndarray, bias: np.ndarray) -> None:
        self.weights = weights.astype(np.float32)
        self.bias = bias.astype(np.float32)

    def logits(self, rows: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        out = np.tile(self.bias, (len(rows), 1))
        for i, (index, values) in enumerate(rows):
            if len(index):
                out[i] += values @ self.weights[index]
        return out

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """(n, labels) probabilities of already normalised texts."""
        z = self.logits([features(t) for t in texts])
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def save(self, file: Path) -> None:
        np.savez_compressed(file, weights=self.weights.astype(np.float16), bias=self.bias)

    @classmethod
    def load(cls, file: Path) -> NgramModel:
        with np.load(file) as saved:
            return cls(saved["weights"], saved["bias"])

    @classmethod
    def fit(cls, rows: list[tuple[np.ndarray, np.ndarray]], labels: np.ndarray, classes: int,
            epochs: int = 12, l2: float = 1e-6, rate: float = 0.05, seed: int = 0,
            sample_weight: np.ndarray | None = None) -> NgramModel:
        """Cross-entropy by Adam over mini-batches of sparse rows (deterministic for a seed)."""
        rng = np.random.default_rng(seed)
        w = np.zeros((BUCKETS, classes), np.float32)
        b = np.zeros(classes, np.float32)
        mw, vw = np.zeros_like(w), np.zeros_like(w)
        mb, vb = np.zeros_like(b), np.zeros_like(b)
        targets = np.eye(classes, dtype=np.float32)[labels]
        weight = np.ones(len(rows), np.float32) if sample_weight is None else sample_weight.astype(np.float32)
        step = 0
        for _ in range(epochs):
            order = rng.permutation(len(rows))
            for start in range(0, len(rows), 128):
                batch = order[start:start + 128]
                step += 1
                z = np.tile(b, (len(batch), 1))
                for j, r in enumerate(batch):
                    index, values = rows[r]
                    z[j] += values @ w[index]
                z -= z.max(axis=1, keepdims=True)
                p = np.exp(z)
                p /= p.sum(axis=1, keepdims=True)
                err = (p - targets[batch]) * (weight[batch, None] / weight[batch].sum())
                gw = np.zeros_like(w)
                for j, r in enumerate(batch):
                    index, values = rows[r]
                    gw[index] += values[:, None] * err[j]
                touched = np.unique(np.concatenate([rows[r][0] for r in batch]))
                gw[touched] += l2 * w[touched]
                gb = err.sum(axis=0)
                for p_, g, m, v in ((w, gw, mw, vw), (b, gb, mb, vb)):
                    m *= 0.9
                    m += 0.1 * g
                    v *= 0.999
                    v += 0.001 * g * g
                    p_ -= rate * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
        return cls(w, b)
