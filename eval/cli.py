"""``rag eval``: the arguments and the command (wired into ``rag.cli``).

    rag eval eval/gold.jsonl                                  # gold set, bm25 + dense + hybrid side by side
    rag eval eval/gold.jsonl --retriever hybrid --compare eval/runs/PREVIOUS
    rag eval --check-gold eval/gold.jsonl                     # check a gold file against seeds/
    rag eval --format beir ../shared/benchmarks/scifact --cache .cache/eval
    rag eval --format squad ../shared/benchmarks/squad/dev-v1.1.json --sample 2000
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from rag import Assistant, Config, ConfigError, InputError, load_documents, project_home
from rag.config import parse_overrides

log = logging.getLogger(__name__)

FORMATS = ("gold", "beir", "squad")
RETRIEVER_CHOICES = ("bm25", "dense", "hybrid")
#: Settings that shape the stored index: overriding one rebuilds the gold index in memory.
REBUILD_SETTINGS = frozenset(Config.INDEX_FIELDS) | {"bm25_k1", "bm25_b"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``rag eval`` arguments to its sub-parser."""
    parser.add_argument("path", nargs="?", help="gold JSONL file (default format), a BEIR folder (--format beir) "
                                                "or a SQuAD JSON file (--format squad)")
    parser.add_argument("--format", choices=FORMATS, default="gold", help="what PATH is (default: gold)")
    parser.add_argument("--check-gold", metavar="FILE", help="only check a gold file: every answer and evidence quote "
                        "must be an exact substring of its document and every answer inside an evidence quote")
    parser.add_argument("--retriever", nargs="+", choices=RETRIEVER_CHOICES, metavar="{bm25,dense,hybrid}",
                        help="retrievers to evaluate side by side (default: bm25 dense hybrid)")
    parser.add_argument("--k", type=int, default=10, help="passages retrieved per question (gold, SQuAD; "
                        "at least 10; default 10)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: eval/runs/<timestamp>/)")
    parser.add_argument("--compare", metavar="PREVIOUS_DIR", help="print and write metric deltas against an "
                        "earlier run's output folder")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N questions or queries")
    parser.add_argument("--sample", type=int, metavar="N", help="N questions or queries spread evenly over the "
                        "whole set (deterministic; after --limit)")
    parser.add_argument("--docs", nargs="+", metavar="PATH", help="documents the gold set refers to, indexed in "
                        "memory for this run (default: the --index or embeddings/default; --check-gold: seeds/)")
    parser.add_argument("--cache", metavar="DIR", help="benchmarks: keep the built index in DIR and reuse it while "
                        "the corpus, the index settings and the rag code are unchanged")
    parser.add_argument("--split", default="test", help="BEIR qrels split (default: test)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a rag.Config setting for this run, e.g. --set chunk_tokens=120 (repeatable; "
                             "index settings rebuild the index in memory)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--fit-abstention", action="store_true",
                        help="fit the abstention model on the gold set (and --squad) with cross-validation and print "
                             "coefficients for rag.Config; writes calibration.json to --out")
    parser.add_argument("--squad", metavar="FILE", help="with --fit-abstention: SQuAD JSON whose questions, asked "
                        "with and without their own article, add training rows (use --sample to size it)")
    parser.add_argument("--features", metavar="F1,F2",
                        help="with --fit-abstention: the evidence features the model uses (default: all of "
                             "rag.answer.FEATURES); rows.jsonl in --out keeps every feature for comparisons")
    parser.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2",
                        help="evaluate every combination of these query-time settings over one index and print one "
                             "row per combination (repeatable), e.g. --sweep dense_weight=0.5,0.7")


# ---------------------------------------------------------------------- helpers


def parse_sweep(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["dense_weight=0.5,0.7"]`` -> {"dense_weight": [0.5, 0.7]} (typed like --set)."""
    values: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not raw.strip():
            raise InputError(f"--sweep {item!r}: expected KEY=V1,V2, e.g. --sweep dense_weight=0.5,0.7")
        values[key.strip()] = [parse_overrides([f"{key.strip()}={v}"])[key.strip()] for v in raw.split(",")
                               if v.strip()]
    return values


def fit_abstention(args: argparse.Namespace, assistant: Assistant, gold: Any, config: Config, out: Path,
                   progress: bool) -> int:
    """``--fit-abstention``: collect evidence features, fit, print and write the result."""
    import json

    from rag.answer import FEATURES

    from . import benchmarks, calibrate
    from .runner import progress_bar

    if gold is None:
        raise InputError("--fit-abstention needs a gold file (the default format)")
    features = [f.strip() for f in args.features.split(",") if f.strip()] if args.features else list(FEATURES)
    calibrate.select([], features)  # an unknown feature fails now, not after asking every question
    rows = []
    with progress_bar(len(gold.items), progress, "gold features") as bar:
        rows += calibrate.gold_rows(assistant, gold, bar)
    if args.squad:
        data = benchmarks.load_squad(args.squad, args.limit, args.sample, benchmarks.reader_trained_articles(config))
        squad, _build = benchmarks.build_assistant(data.corpus.documents, config, cache=args.cache, name="squad",
                                                   progress=progress)
        with progress_bar(len(data.questions) + len(data.unanswerable), progress, "squad features") as bar:
            rows += calibrate.squad_rows(squad, data.questions, bar, data.unanswerable)
    result = calibrate.calibrate(rows, features=features)
    result["command"] = canonical_command(args)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(result, indent=2))
    # The features of every row, so other feature subsets can be compared without asking again.
    with open(out / "rows.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"source": r.source, "group": r.group, "label": r.label,
                                "features": dict(zip(FEATURES, r.features))}) + "\n")
    print(calibrate.render(result))
    print(f"wrote {out / 'calibration.json'}")
    return 0


def default_out(fmt: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = project_home() / "eval" / "runs"
    out = base / (stamp if fmt == "gold" else f"{stamp}-{fmt}")
    n = 2
    while out.exists():
        out = base / f"{stamp}-{n}" if fmt == "gold" else base / f"{stamp}-{fmt}-{n}"
        n += 1
    return out


def canonical_command(args: argparse.Namespace, retrievers: Sequence[str] | None = None) -> str:
    """The command that reproduces this run (as given, options in a fixed order); ``retrievers`` as
    resolved, by default as given."""
    retrievers = list(args.retriever or []) if retrievers is None else retrievers
    parts = ["rag"]
    if args.index:
        parts += ["--index", args.index]
    parts += ["eval"]
    if args.format != "gold":
        parts += ["--format", args.format]
    parts.append(args.path)
    if args.retriever:
        parts += ["--retriever", *retrievers]
    if args.k != 10:
        parts += ["--k", str(args.k)]
    for flag in ("limit", "sample", "docs", "split", "cache"):
        value = getattr(args, flag)
        if flag == "split" and (value == "test" or args.format != "beir"):
            continue
        if value:
            parts += [f"--{flag}", *(value if isinstance(value, list) else [str(value)])]
    for item in args.set:
        parts += ["--set", item]
    if getattr(args, "fit_abstention", False):
        parts.append("--fit-abstention")
        for flag in ("squad", "features"):
            if getattr(args, flag, None):
                parts += [f"--{flag}", getattr(args, flag)]
    return " ".join(shlex.quote(p) for p in parts)


def code_version() -> dict[str, Any]:
    """Which code produced a run: the rag version, and the git commit with any uncommitted change to rag/."""
    import subprocess

    import rag

    info: dict[str, Any] = {"rag": rag.__version__}
    root = Path(rag.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10)
        status = subprocess.run(["git", "status", "--porcelain", "--", "rag"], cwd=root, capture_output=True,
                                text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return info
    if commit.returncode == 0:
        info["git_commit"] = commit.stdout.strip()
        info["rag_uncommitted"] = sorted(line[3:] for line in status.stdout.splitlines() if line.strip())
    return info


def gold_assistant(args: argparse.Namespace, config: Config, overrides: dict[str, Any], progress: bool) -> Assistant:
    """The assistant the gold set is asked through: --docs in memory, else --index / embeddings/default."""
    if args.docs:
        return Assistant.build(args.docs, None, config, progress=progress)
    assistant = Assistant.load(args.index, config, progress=progress)
    stale = assistant.info().get("settings") != config.index_settings() or REBUILD_SETTINGS & set(overrides)
    if stale:
        log.warning("index settings differ from this run's: re-indexing its %d documents in memory",
                    len(assistant.documents))
        assistant = Assistant.from_documents(list(assistant.documents.values()), config, None, progress=progress)
    return assistant


def check_gold(args: argparse.Namespace) -> int:
    from .gold import read_gold

    if args.docs:
        documents, _skipped = load_documents(args.docs)
        by_id = {d.doc_id: d for d in documents}
        source = ", ".join(args.docs)
    elif args.index:
        by_id = dict(Assistant.load(args.index, build_if_missing=False).documents)
        source = args.index
    else:
        seeds = project_home() / "seeds"
        documents, _skipped = load_documents([seeds])
        by_id = {d.doc_id: d for d in documents}
        source = str(seeds)
    gold = read_gold(args.check_gold, by_id)
    for problem in gold.problems:
        print(problem, file=sys.stderr if problem.severity == "error" else sys.stdout)
    counts = gold.counts()
    kinds = ", ".join(f"{k} {counts[k]}" for k in ("factoid", "number", "list", "why", "multi_doc", "unanswerable")
                      if counts.get(k))
    errors, warnings = len(gold.errors), len(gold.warnings)
    verdict = "OK" if not errors else "FAILED"
    print(f"{args.check_gold}: {verdict}: {counts['questions']} valid questions ({counts['answerable']} answerable, "
          f"{counts['unanswerable']} unanswerable; {kinds}) against {len(by_id)} documents in {source}; "
          f"{errors} error(s), {warnings} warning(s)")
    return 1 if errors else 0


# ---------------------------------------------------------------------- command


def run(args: argparse.Namespace) -> int:
    """Run ``rag eval``; returns the exit code."""
    from . import benchmarks, report
    from .gold import load_gold
    from .runner import RETRIEVERS, run_gold

    if args.check_gold:
        return check_gold(args)
    if not args.path:
        raise InputError("give a gold file, e.g. rag eval eval/gold.jsonl (or --format beir DIR, "
                         "--format squad FILE, or --check-gold FILE)")
    progress = not getattr(args, "quiet", False)
    overrides = parse_overrides(args.set)
    config = Config().replace(**overrides) if overrides else Config()
    # Every question is measured cold: a warm-up or a repeated question must not be answered from the cache.
    config = config.replace(answer_cache_size=0)
    retrievers = tuple(dict.fromkeys(args.retriever)) if args.retriever else RETRIEVERS
    if args.k < 10:
        raise InputError(f"--k {args.k} is too small: hit@10, MRR@10 and nDCG@10 need --k 10 or more")
    for flag in ("limit", "sample"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise InputError(f"--{flag} {value}: give 1 or more questions")
    sweep_values = parse_sweep(args.sweep)
    if args.compare:
        report.load_metrics(args.compare)  # fail before the run, not after it
    path = Path(args.path)
    if args.format == "gold" and path.is_dir():
        raise InputError(f"{path} is a folder; for a BEIR folder add --format beir")
    out = Path(args.out) if args.out else default_out(args.format)
    command = canonical_command(args, retrievers)
    code = code_version()  # now: the code this process loaded, not whatever is checked out when it ends
    started = time.perf_counter()

    if args.format == "gold":
        if args.cache and not (args.fit_abstention and args.squad):
            log.warning("--cache only applies to --format beir and squad (and --fit-abstention --squad); ignored")
        assistant = gold_assistant(args, config, overrides, progress)
        gold = load_gold(path, assistant.documents)

        def evaluate(a: Assistant):
            return run_gold(a, gold, retrievers, k=args.k, limit=args.limit, sample=args.sample,
                            progress=progress)
    elif args.format == "beir":
        data = benchmarks.load_beir(path, args.split, args.limit, args.sample)
        assistant, build = benchmarks.build_assistant(data.corpus.documents, config, cache=args.cache,
                                                      name=f"beir-{data.name}", progress=progress)

        def evaluate(a: Assistant):
            return benchmarks.run_beir(a, data, retrievers, progress=progress, build=build)
    else:
        data = benchmarks.load_squad(path, args.limit, args.sample, benchmarks.reader_trained_articles(config))
        if data.excluded_articles:
            print(f"left out the questions of {len(data.excluded_articles)} articles the reader trained on",
                  file=sys.stderr)
        assistant, build = benchmarks.build_assistant(data.corpus.documents, config, cache=args.cache,
                                                      name="squad", progress=progress)

        def evaluate(a: Assistant):
            return benchmarks.run_squad(a, data, retrievers, k=args.k, progress=progress, build=build)

    if args.fit_abstention:
        return fit_abstention(args, assistant, gold if args.format == "gold" else None, config, out, progress)
    if sweep_values:
        from . import tune

        rows = tune.sweep(assistant, sweep_values, evaluate, args.format)
        written = tune.write(rows, args.format, command, out)
        print(tune.render(rows, args.format, command))
        print(f"wrote {written}")
        return 0
    result = evaluate(assistant)
    result.meta["total_seconds"] = round(time.perf_counter() - started, 1)
    result.meta["limit"], result.meta["sample"] = args.limit, args.sample
    result.meta["code"] = code
    written = report.write_outputs(result, out, previous=args.compare, plots=not args.no_plots, command=command)

    counts = ", ".join(f"{k} {v}" for k, v in result.meta.get("counts", {}).items() if v)
    print(f"rag eval ({args.format}) {args.path}: {counts}; retrievers {', '.join(retrievers)}; "
          f"{result.meta['seconds']}s evaluating, {result.meta['total_seconds']}s in all")
    print(report.headline_table(result))
    if args.format == "gold":
        weakest = report.weakest_kinds(result)
        print("weakest kinds (" + report.focus_retriever(result) + "): "
              + ", ".join(f"{k} {s:.3f}" for k, s in weakest))
    if written["comparison"]:
        print(written["comparison"])
    print(f"wrote {out}/{report.REPORT_FILE}, {report.METRICS_FILE}, {report.PREDICTIONS_FILE}"
          + (f" and {len(written['plots'])} plots" if written["plots"] else ""))
    return 0
