"""Guard benchmark: quality and latency of the embedded classifier on a labeled set, and `message/send`
throughput of an agent with the guard on and off, side by side in one run.

    .venv/bin/python scripts/bench/guard.py                 # everything
    .venv/bin/python scripts/bench/guard.py --skip-throughput
    .venv/bin/python scripts/bench/guard.py --tune          # 5-fold cross-validation of the threshold on the exemplars

The labeled set is agents/guard/data/heldout.jsonl (never used as exemplars:
the honest figures) plus the exemplars themselves (seen: the probe was fitted
on them, so those figures only show it learned them). Precision, recall,
false-positive rate and F1 are given for unsafe-vs-safe overall and per
category (one-vs-rest on the codes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


from agents.guard.embedded import EXEMPLARS, EmbeddedClassifier, Thresholds, fit_probe, decide  # noqa: E402
from mesh.guard import CATEGORIES, CachedClassifier, Turn  # noqa: E402

HELDOUT = EXEMPLARS.parent / "heldout.jsonl"


def labeled(path: Path, exemplars: bool = False) -> list[dict]:
    items = []
    for line in path.read_text().splitlines():
        item = json.loads(line)
        if exemplars:
            labels = [] if item["label"] == "safe" else [item["label"]]
            item = {"id": "", "labels": labels, "kind": "exemplar", "turns": [{"role": "user", "content": item["text"]}]}
        items.append(item)
    return items


def scores(gold: list[bool], predicted: list[bool]) -> dict:
    tp = sum(g and p for g, p in zip(gold, predicted))
    fp = sum(p and not g for g, p in zip(gold, predicted))
    fn = sum(g and not p for g, p in zip(gold, predicted))
    tn = sum(not g and not p for g, p in zip(gold, predicted))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return {"n": len(gold), "positives": tp + fn, "precision": precision, "recall": recall,
            "fpr": fp / (fp + tn) if fp + tn else 0.0,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0}


def evaluate(classifier: EmbeddedClassifier, items: list[dict], name: str) -> dict:
    predictions = []
    latencies = []
    for item in items:
        turns = [Turn.model_validate(t) for t in item["turns"]]
        started = time.perf_counter()
        verdict = classifier.classify_now(turns)
        latencies.append((time.perf_counter() - started) * 1000)
        predictions.append(set(verdict.codes))
    gold = [set(item["labels"]) for item in items]
    report = {"overall": scores([bool(g) for g in gold], [bool(p) for p in predictions])}
    for code in CATEGORIES:
        if any(code in g for g in gold):
            report[code] = scores([code in g for g in gold], [code in p for p in predictions])
    kinds = sorted({item["kind"] for item in items})
    by_kind = {}
    for kind in kinds:
        picked = [i for i, item in enumerate(items) if item["kind"] == kind]
        flagged = sum(bool(predictions[i]) for i in picked)
        by_kind[kind] = f"{flagged}/{len(picked)} flagged"
    print(f"\n== {name}: {len(items)} items ({sum(bool(g) for g in gold)} unsafe, {sum(not g for g in gold)} safe)")
    print(f"{'':8} {'n+':>4} {'precision':>9} {'recall':>7} {'FPR':>6} {'F1':>6}")
    for key, row in report.items():
        print(f"{key:8} {row['positives']:>4} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['fpr']:>6.3f} {row['f1']:>6.3f}")
    print("by kind: " + "; ".join(f"{k} {v}" for k, v in by_kind.items()))
    latencies.sort()
    print(f"latency per verdict (uncached): p50 {statistics.median(latencies):.2f} ms, "
          f"p99 {latencies[int(len(latencies) * 0.99) - 1]:.2f} ms")
    return report


async def cached_latency(classifier: EmbeddedClassifier, items: list[dict]) -> None:
    cached = CachedClassifier(classifier, 100_000)
    turns = [[Turn.model_validate(t) for t in item["turns"]] for item in items]
    for t in turns:
        await cached.classify(t)
    latencies = []
    for _ in range(5):
        for t in turns:
            started = time.perf_counter()
            await cached.classify(t)
            latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    print(f"latency per verdict (cached): p50 {statistics.median(latencies) * 1000:.1f} us, "
          f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.1f} us")


def tune(classifier: EmbeddedClassifier) -> None:
    """5-fold cross-validation over the exemplars for the safe_below threshold (never looks at the held-out set)."""
    import numpy as np

    vectors, labels = classifier.vectors, classifier.labels
    order = np.random.default_rng(0).permutation(len(labels))
    folds = np.array_split(order, 5)
    probabilities = np.zeros((len(labels), classifier.weights.shape[1]), dtype=np.float32)
    for fold in folds:
        keep = np.ones(len(labels), bool)
        keep[fold] = False
        weights, bias = fit_probe(vectors[keep], labels[keep], classifier.thresholds)
        z = vectors[fold] @ weights + bias
        z -= z.max(axis=1, keepdims=True)
        probabilities[fold] = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    gold = [e["label"] != "safe" for e in classifier.exemplars]
    print("5-fold cross-validation on the exemplars (the held-out set is not used):")
    for threshold in (0.3, 0.4, 0.5, 0.6, 0.7):
        t = Thresholds(safe_below=threshold)
        predicted = [bool(decide(row, t)) for row in probabilities]
        s = scores(gold, predicted)
        print(f"  safe_below {threshold:.1f}: recall {s['recall']:.3f}  FPR {s['fpr']:.3f}  F1 {s['f1']:.3f}")


# -- throughput ------------------------------------------------------------------------------------


async def throughput(requests: int, concurrency: int) -> None:
    import yaml

    from mesh.client import fetch_card, http_client, open_client, send_request, user_message
    from tests.util import MeshUp, free_ports  # the same process runner the tests use

    ports = free_ports(3)
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "mesh.yaml"
        config.write_text(yaml.safe_dump({
            "name": "bench", "state": {"dir": str(Path(directory) / "state")},
            "agents": {
                "guard": {"module": "agents.guard", "port": ports[0], "settings": {"backend": "embedded"}},
                "guarded": {"module": "agents.echo", "port": ports[1]},
                "unguarded": {"module": "agents.echo", "port": ports[2], "guard": {"enabled": False}},
            },
            "guard": {"agent": "guard", "check": ["input", "output"]},
        }, sort_keys=False))
        with MeshUp(config) as up:
            up.wait_ready(timeout=180)
            results = {}
            for name, port in (("unguarded", ports[2]), ("guarded", ports[1])):
                async with http_client() as http:
                    client = await open_client(http, await fetch_card(http, f"http://127.0.0.1:{port}"), streaming=False)
                    counter = iter(range(requests))

                    async def worker() -> None:
                        for i in counter:  # unique texts: the verdict cache does not help
                            text = f"Question {i} from {name}: what is a good way to learn {i % 97} new words a day?"
                            async for _ in client.send_message(send_request(user_message(text))):
                                pass

                    for _ in range(min(concurrency, 8)):  # warm up connections and the guard
                        async for _ in client.send_message(send_request(user_message(f"warm up {name}"))):
                            pass
                    started = time.perf_counter()
                    await asyncio.gather(*(worker() for _ in range(concurrency)))
                    results[name] = requests / (time.perf_counter() - started)
            up.stop()
    print(f"\n== message/send throughput ({requests} unique messages, {concurrency} concurrent, HTTP/2, echo agent)")
    print(f"guard off: {results['unguarded']:.0f}/s   guard on (input + output checked, embedded): "
          f"{results['guarded']:.0f}/s   ratio on/off: {results['guarded'] / results['unguarded']:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune", action="store_true", help="cross-validate the threshold on the exemplars and stop")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    started = time.perf_counter()
    classifier = EmbeddedClassifier.load()
    print(f"embedded classifier: {classifier.model}; loaded in {time.perf_counter() - started:.1f}s "
          f"(OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset: 1 by mesh/embed.py')})")
    if args.tune:
        tune(classifier)
        return 0
    heldout = labeled(HELDOUT)
    seen = labeled(EXEMPLARS, exemplars=True)
    for item in heldout[:20]:  # warm up
        classifier.classify_now([Turn.model_validate(t) for t in item["turns"]])
    evaluate(classifier, heldout, "HELD-OUT (never used as exemplars)")
    evaluate(classifier, seen, "SEEN (the exemplars the probe was fitted on)")
    asyncio.run(cached_latency(classifier, heldout))
    if not args.skip_throughput:
        asyncio.run(throughput(args.requests, args.concurrency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
