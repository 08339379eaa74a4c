"""Guard benchmark: quality and latency of the embedded classifier on two held-out sets, and `message/send`
throughput of agents with the guard on and off, side by side in one run.

    .venv/bin/python scripts/bench/guard.py                     # everything
    .venv/bin/python scripts/bench/guard.py --skip-throughput
    .venv/bin/python scripts/bench/guard.py --only-throughput
    .venv/bin/python scripts/bench/guard.py --tune              # 5-fold cross-validation on the exemplars only

Labeled sets (agents/guard/data/): heldout.jsonl was written with the first
classifier and its errors were looked at once; fresh.jsonl was written later,
before the classifier was changed, and its items were never looked at while
developing. Neither is ever used to fit, to choose thresholds or to choose
exemplars (``--tune`` reads the exemplars only). The exemplars are scored too,
as SEEN: the probes were fitted on them, so those figures only show they were
learned. Precision, recall, false-positive rate and F1 are for unsafe vs safe
overall and per category (one-vs-rest on the codes). The machine's load
average is printed with every timing: latency on 2 busy cores is not latency
on 2 quiet ones.
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
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# This script's own directory holds other benchmarks (a2a.py...) that would shadow packages.
sys.path.insert(0, str(ROOT))  # benchmarks import the tests' helpers

import numpy as np  # noqa: E402

from agents.guard import injection  # noqa: E402
from agents.guard.embedded import (  # noqa: E402
    EXEMPLARS,
    LABELS,
    SAFE,
    EmbeddedClassifier,
    Probe,
    ProbeConfig,
    decide,
)
from mesh.guard.verdicts import CATEGORIES, CachedClassifier, Turn  # noqa: E402

HELDOUT = EXEMPLARS.parent / "heldout.jsonl"
FRESH = EXEMPLARS.parent / "fresh.jsonl"


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def labeled(path: Path, exemplars: bool = False) -> list[dict]:
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        if exemplars:
            labels = [] if item["label"] == SAFE else [item["label"]]
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
    """Aggregate figures only: per-item errors of the held-out sets are not printed, so they are not looked at."""
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
    by_kind = {}
    for kind in sorted({item["kind"] for item in items}):
        picked = [i for i, item in enumerate(items) if item["kind"] == kind]
        by_kind[kind] = f"{sum(bool(predictions[i]) for i in picked)}/{len(picked)} flagged"
    print(f"\n== {name}: {len(items)} items ({sum(bool(g) for g in gold)} unsafe, {sum(not g for g in gold)} safe)")
    print(f"{'':8} {'n+':>4} {'precision':>9} {'recall':>7} {'FPR':>6} {'F1':>6}")
    for key, row in report.items():
        print(f"{key:8} {row['positives']:>4} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['fpr']:>6.3f} {row['f1']:>6.3f}")
    print("by kind: " + "; ".join(f"{k} {v}" for k, v in by_kind.items()))
    latencies.sort()
    print(f"latency per verdict (uncached, one at a time): p50 {statistics.median(latencies):.2f} ms, "
          f"p99 {percentile(latencies, 0.99):.2f} ms ({load_average()})")
    return report


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * q + 0.5) - 1))]


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
          f"p99 {percentile(latencies, 0.99) * 1000:.1f} us")


async def batched_rate(classifier: EmbeddedClassifier, items: list[dict], concurrency: int = 32) -> None:
    """Verdicts per second with ``concurrency`` requests in flight (micro-batched) against one at a time."""
    texts = [t["content"] for item in items for t in item["turns"][-1:]]
    fresh = EmbeddedClassifier(classifier.embedder, classifier.exemplars, classifier.config,
                               classifier.features, classifier.probe, memo_size=0)
    started = time.perf_counter()
    for text in texts:
        fresh.classify_now([Turn(role="user", content=text)])
    one_by_one = len(texts) / (time.perf_counter() - started)
    pending = iter(texts)

    async def worker() -> None:
        for text in pending:
            await fresh.classify([Turn(role="user", content=text)])

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    batched = len(texts) / (time.perf_counter() - started)
    print(f"classifier alone, {len(texts)} texts: one at a time {one_by_one:.0f}/s, {concurrency} in flight "
          f"(micro-batched) {batched:.0f}/s, ratio {batched / one_by_one:.2f} ({load_average()})")


# -- cross-validation on the exemplars --------------------------------------------------------------


def cross_validated(classifier: EmbeddedClassifier, config: ProbeConfig, folds: int = 5) -> np.ndarray:
    """Out-of-fold label probabilities of every exemplar (stratified folds, fixed seed)."""
    labels = classifier.labels
    fold = np.zeros(len(labels), int)
    rng = np.random.default_rng(0)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        fold[members] = np.arange(len(members)) % folds
    probabilities = np.zeros((len(labels), len(LABELS)), dtype=np.float32)
    for f in range(folds):
        train = fold != f
        probe = Probe.fit(classifier.features[train], labels[train], config)
        probabilities[~train] = probe.probabilities(classifier.features[~train])
        print(f"  fold {f + 1}/{folds} fitted", flush=True)
    return probabilities


def tune(classifier: EmbeddedClassifier, target_fpr: float) -> None:
    """Recall and false-positive rate of each safe_below on out-of-fold predictions (never the held-out sets)."""
    print(f"5-fold cross-validation on the {len(classifier.exemplars)} exemplars (the held-out sets are not read):")
    probabilities = cross_validated(classifier, classifier.config)
    rules = [injection.scan(e["text"]).injection for e in classifier.exemplars]
    gold = [e["label"] != SAFE for e in classifier.exemplars]
    chosen = None
    print(f"  {'safe_below':>10} {'recall':>7} {'FPR':>6} {'F1':>6}")
    for threshold in (0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9):
        config = replace(classifier.config, safe_below=threshold)
        predicted = [bool(decide(row, config)) or rule for row, rule in zip(probabilities, rules)]
        s = scores(gold, predicted)
        if s["fpr"] <= target_fpr and (chosen is None or s["recall"] > chosen[1]):
            chosen = (threshold, s["recall"], s["fpr"])
        print(f"  {threshold:>10.2f} {s['recall']:>7.3f} {s['fpr']:>6.3f} {s['f1']:>6.3f}")
    safe_column = probabilities[:, LABELS.index(SAFE)]
    per_category = []
    for code in (*CATEGORIES,):
        members = [i for i, e in enumerate(classifier.exemplars) if e["label"] == code]
        if members and chosen:
            caught = sum(safe_column[i] < chosen[0] or rules[i] for i in members)
            per_category.append(f"{code} {caught / len(members):.2f}")
    if chosen:
        print(f"highest recall with a cross-validated FPR <= {target_fpr}: safe_below {chosen[0]} "
              f"(recall {chosen[1]:.3f}, FPR {chosen[2]:.3f}); per category: {', '.join(per_category)}")
        if chosen[0] != classifier.config.safe_below:
            print(f"ProbeConfig.safe_below is {classifier.config.safe_below}: set it to {chosen[0]} in agents/guard/embedded.py")


# -- throughput ------------------------------------------------------------------------------------


async def throughput(requests: int, concurrency: int) -> None:
    import yaml

    from mesh.client import (
        fetch_card,
        http_client,
        open_client,
        send_request,
        user_message,
    )
    from tests.support.util import MeshUp, free_ports  # the same process runner the tests use

    ports = free_ports(5)
    names = ("guard", "echo-off", "echo-on", "reply-off", "reply-on")
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "mesh.yaml"
        reply = {"module": "tests.support.guard_agents", "settings": {"prefix": "Here is what you asked about: "}}
        config.write_text(yaml.safe_dump({
            "name": "bench", "state": {"dir": str(Path(directory) / "state")},
            "agents": {
                "guard": {"module": "agents.guard", "port": ports[0], "settings": {"backend": "embedded"}},
                "echo-off": {"module": "agents.echo", "port": ports[1], "guard": {"enabled": False}},
                "echo-on": {"module": "agents.echo", "port": ports[2]},
                "reply-off": {**reply, "port": ports[3], "guard": {"enabled": False}},
                "reply-on": {**reply, "port": ports[4]},
            },
            "guard": {"agent": "guard", "check": ["input", "output"]},
        }, sort_keys=False))
        with MeshUp(config) as up:
            up.wait_ready(timeout=300)
            results = {}
            for name, port in zip(names[1:], ports[1:]):
                async with http_client() as http:
                    client = await open_client(http, await fetch_card(http, f"http://127.0.0.1:{port}"), streaming=False)
                    counter = iter(range(requests))

                    async def worker() -> None:
                        for i in counter:  # unique texts: no verdict cache can help
                            text = f"Question {i} from {name}: what is a good way to learn {i % 97} new words a day?"
                            async for _ in client.send_message(send_request(user_message(text))):
                                pass

                    for _ in range(min(concurrency, 8)):  # warm up connections and the guard
                        async for _ in client.send_message(send_request(user_message(f"warm up {name}"))):
                            pass
                    started = time.perf_counter()
                    await asyncio.gather(*(worker() for _ in range(concurrency)))
                    results[name] = requests / (time.perf_counter() - started)
                    print(f"  {name}: {results[name]:.0f}/s ({load_average()})", flush=True)
            up.stop()
    print(f"\n== message/send throughput ({requests} unique messages each, {concurrency} concurrent, HTTP/2, "
          "input + output checked by the embedded guard)")
    print(f"echo agent (output = input):        guard off {results['echo-off']:.0f}/s, on {results['echo-on']:.0f}/s, "
          f"ratio on/off {results['echo-on'] / results['echo-off']:.2f}")
    print(f"reply agent (output differs):       guard off {results['reply-off']:.0f}/s, on {results['reply-on']:.0f}/s, "
          f"ratio on/off {results['reply-on'] / results['reply-off']:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune", action="store_true", help="cross-validate safe_below on the exemplars and stop")
    parser.add_argument("--target-fpr", type=float, default=0.04, help="--tune: the cross-validated FPR to stay under")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--only-throughput", action="store_true")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    print(f"machine: {load_average()}")
    if args.only_throughput:
        asyncio.run(throughput(args.requests, args.concurrency))
        return 0
    started = time.perf_counter()
    classifier = EmbeddedClassifier.load()
    print(f"embedded classifier: {classifier.model}; loaded in {time.perf_counter() - started:.1f}s "
          f"(OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset: 1 by mesh/ml/embed.py')})")
    if args.tune:
        tune(classifier, args.target_fpr)
        return 0
    heldout, fresh = labeled(HELDOUT), labeled(FRESH)
    seen = labeled(EXEMPLARS, exemplars=True)
    for item in heldout[:20]:  # warm up
        classifier.classify_now([Turn.model_validate(t) for t in item["turns"]])
    evaluate(classifier, heldout, "HELD-OUT (written with the first classifier; errors looked at once, before this one)")
    evaluate(classifier, fresh, "FRESH (written before this classifier; never looked at item by item)")
    evaluate(classifier, seen, "SEEN (the exemplars the probes were fitted on)")
    asyncio.run(cached_latency(classifier, heldout))
    asyncio.run(batched_rate(classifier, heldout + fresh))
    if not args.skip_throughput:
        asyncio.run(throughput(args.requests, args.concurrency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
