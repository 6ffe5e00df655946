"""Turn an ``EvalRun`` into files people can read: metrics.json, predictions.jsonl, report.md and PNG plots.

``--compare`` deltas are computed here too: every numeric metric of the
summary present in both runs, current minus previous.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from rag import InputError

from .runner import EvalRun, QuestionResult

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.jsonl"
REPORT_FILE = "report.md"
COMPARE_JSON = "compare.json"
COMPARE_MD = "compare.md"
WORST = 10

#: Report tables per format: (title, summary group, ((metric key, label), ...)). Dotted keys reach into groups.
TABLES: dict[str, tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...]] = {
    "gold": (
        ("Retrieval (answerable questions; a passage is relevant when its span overlaps an evidence quote)",
         "retrieval", (("hit@1", "hit@1"), ("hit@5", "hit@5"), ("hit@10", "hit@10"), ("mrr@10", "MRR@10"),
                       ("ndcg@10", "nDCG@10"), ("evidence_recall@5", "evidence recall@5"))),
        ("Answers (answerable questions; an abstention counts as a miss)", "answers",
         (("answer_hit", "answer hit"), ("f1", "token F1"), ("answered", "answered"),
          ("answer_hit_when_answered", "answer hit when answered"), ("f1_when_answered", "token F1 when answered"),
          ("answer_words_mean", "answer length, words (mean)"),
          ("answer_words_median", "answer length, words (median)"))),
        ("Citations", "citations",
         (("count", "citations"), ("exactness", "exact quotes (must be 1.0)"), ("precision", "precision"),
          ("recall", "recall"))),
        ("Abstention", "abstention",
         (("unanswerable_abstained", "unanswerable: correctly abstained"),
          ("answerable_abstained", "answerable: wrongly abstained"))),
        ("Latency (ms, measured in this run)", "latency_ms",
         (("retrieve.p50", "retrieve p50"), ("retrieve.p95", "retrieve p95"), ("ask.p50", "ask p50"),
          ("ask.p95", "ask p95"))),
    ),
    "beir": (
        ("Retrieval (documents ranked by their best passage; trec definitions)", "retrieval",
         (("ndcg@10", "nDCG@10"), ("recall@10", "recall@10"), ("recall@100", "recall@100"), ("mrr@10", "MRR@10"),
          ("hit@1", "hit@1"), ("hit@10", "hit@10"))),
        ("Latency (ms per query, ranking 100 documents)", "latency_ms",
         (("retrieve.p50", "retrieve p50"), ("retrieve.p95", "retrieve p95"))),
    ),
    "squad": (
        ("Paragraph retrieval (the question's paragraph is the one relevant document)", "retrieval",
         (("hit@1", "hit@1"), ("hit@5", "hit@5"), ("hit@10", "hit@10"), ("mrr@10", "MRR@10"))),
        ("Answers (assistant.ask; default retriever only)", "answers",
         (("answer_hit", "answer hit"), ("f1", "token F1"), ("answerable_abstained", "wrongly abstained"),
          ("answer_hit_when_answered", "answer hit when answered"),
          ("answer_words_mean", "answer length, words (mean)"))),
        ("Latency (ms)", "latency_ms",
         (("retrieve.p50", "retrieve p50"), ("retrieve.p95", "retrieve p95"), ("ask.p50", "ask p50"),
          ("ask.p95", "ask p95"))),
    ),
}

#: The metrics printed on the terminal after a run, per format.
HEADLINE = {
    "gold": ("retrieval.hit@1", "retrieval.hit@5", "retrieval.mrr@10", "retrieval.ndcg@10", "answers.answer_hit",
             "answers.f1", "citations.exactness", "abstention.unanswerable_abstained",
             "abstention.answerable_abstained", "latency_ms.ask.p50"),
    "beir": ("retrieval.ndcg@10", "retrieval.recall@10", "retrieval.recall@100", "retrieval.mrr@10",
             "latency_ms.retrieve.p50"),
    "squad": ("retrieval.hit@1", "retrieval.hit@5", "retrieval.hit@10", "retrieval.mrr@10", "answers.answer_hit",
              "answers.f1", "latency_ms.retrieve.p50", "latency_ms.ask.p50"),
}


@dataclass(frozen=True)
class Delta:
    """One metric in two runs."""

    key: str
    previous: float
    current: float

    @property
    def delta(self) -> float:
        return self.current - self.previous


# ---------------------------------------------------------------------- helpers


def lookup(data: Mapping[str, Any], dotted: str) -> Any:
    """``data["a"]["b"]`` for ``"a.b"``; None when a step is missing (metric names use '@', never dots)."""
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def fmt(value: Any) -> str:
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested mapping as {"a.b.c": value}."""
    flat: dict[str, float] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def column_names(run: EvalRun) -> list[str]:
    return [f"{r} (default)" if r == run.default_retriever else r for r in run.retrievers]


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return "\n".join(lines)


def focus_retriever(run: EvalRun) -> str:
    """The retriever the per-kind table and the worst questions are shown for: the default, when it ran."""
    return run.default_retriever if run.default_retriever in run.retrievers else run.retrievers[0]


def worst_questions(run: EvalRun, retriever: str | None = None, n: int = WORST) -> list[QuestionResult]:
    retriever = retriever or focus_retriever(run)
    rows = [r for r in run.results if r.retriever == retriever]
    return sorted(rows, key=lambda r: (r.score, r.id))[:n]


def weakest_kinds(run: EvalRun, n: int = 3) -> list[tuple[str, float]]:
    """Gold question kinds with the lowest mean question score for the focus retriever."""
    by_kind = run.summary.get(focus_retriever(run), {}).get("by_kind", {})
    ranked = sorted(((kind, v["score"]) for kind, v in by_kind.items()), key=lambda kv: (kv[1], kv[0]))
    return ranked[:n]


def headline_table(run: EvalRun) -> str:
    """A plain-text table of the headline metrics, for the terminal."""
    keys = HEADLINE.get(run.format, ())
    names = column_names(run)
    width = max([len(k) for k in keys] + [8])
    lines = [" " * width + "  " + "  ".join(f"{n:>16}" for n in names)]
    for key in keys:
        values = [fmt(lookup(run.summary[r], key)) for r in run.retrievers]
        lines.append(f"{key:<{width}}  " + "  ".join(f"{v:>16}" for v in values))
    return "\n".join(lines)


# ---------------------------------------------------------------------- compare


def load_metrics(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / METRICS_FILE
    if not path.is_file():
        raise InputError(f"{path} not found; --compare needs the --out folder of an earlier rag eval run")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); compare against another run") from exc


def compare(current: Mapping[str, Any], previous: Mapping[str, Any]) -> tuple[list[Delta], list[str]]:
    """Deltas of every numeric summary metric present in both runs, and notes on what differs between them."""
    notes = []
    if current.get("format") != previous.get("format"):
        raise InputError(f"cannot compare a {current.get('format')} run with a {previous.get('format')} run")
    if current.get("dataset_sha256") != previous.get("dataset_sha256"):
        notes.append("the dataset differs between the two runs (different sha256): deltas mix data and system changes")
    for key in ("k", "limit", "sample"):
        if current.get(key) != previous.get(key):
            notes.append(f"{key} differs: {previous.get(key)} before, {current.get(key)} now")
    cur, prev = flatten(current.get("summary", {})), flatten(previous.get("summary", {}))
    deltas = [Delta(k, prev[k], cur[k]) for k in cur if k in prev]
    missing = sorted(set(prev) - set(cur))
    if missing:
        notes.append(f"{len(missing)} metric(s) of the previous run are absent now (e.g. {missing[0]})")
    return deltas, notes


def compare_markdown(deltas: Sequence[Delta], notes: Sequence[str], previous_dir: str, headline_only: bool = False,
                     fmt_name: str = "gold") -> str:
    keys = set(HEADLINE.get(fmt_name, ()))
    rows = [d for d in deltas if not headline_only or d.key.split(".", 1)[1] in keys]
    lines = [f"Compared with {previous_dir} (current \u2212 previous):", ""]
    lines += [f"- note: {n}" for n in notes]
    if notes:
        lines.append("")
    lines.append(table(("metric", "previous", "current", "delta"),
                       [(d.key, d.previous, d.current, f"{d.delta:+.4f}") for d in rows]))
    return "\n".join(lines) + "\n"


def compare_text(deltas: Sequence[Delta], notes: Sequence[str], previous_dir: str, fmt_name: str) -> str:
    """Headline deltas for the terminal."""
    keys = HEADLINE.get(fmt_name, ())
    lines = [f"compared with {previous_dir} (current - previous):"] + [f"  note: {n}" for n in notes]
    by_key = {d.key: d for d in deltas}
    for d_key in sorted(by_key, key=lambda k: (k.split(".")[0], keys.index(k.split(".", 1)[1])
                                                if k.split(".", 1)[1] in keys else len(keys))):
        metric = d_key.split(".", 1)[1]
        if metric in keys:
            d = by_key[d_key]
            lines.append(f"  {d_key:<48} {d.previous:>10.4f} -> {d.current:>10.4f}  {d.delta:+.4f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(run: EvalRun, out: Path) -> list[Path]:
    plt = _pyplot()
    written = []
    for name, per in run.curves.items():
        if not any(per.values()):
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for retriever, values in per.items():
            ks = list(range(1, len(values) + 1))
            ax.plot(ks, values, marker="o" if len(values) <= 20 else None, markersize=3,
                    label=f"{retriever} (default)" if retriever == run.default_retriever else retriever)
        ax.set_xlabel("k")
        ax.set_ylabel(name)
        ax.set_ylim(0, 1.02)
        if len(next(iter(per.values()))) > 20:
            ax.set_xscale("log")
        ax.set_title(f"{name} per retriever \u2014 {Path(run.dataset).name}")
        ax.grid(alpha=0.3)
        ax.legend()
        path = out / f"{name.replace('@', '_at_')}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110, metadata={"Software": None})
        plt.close(fig)
        written.append(path)
    return written


def plot_latency(run: EvalRun, out: Path) -> Path | None:
    plt = _pyplot()
    kinds = sorted({name for r in run.results for name in r.latency})
    if not kinds:
        return None
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.2 * len(kinds), 3.8), squeeze=False)
    import numpy as np

    for ax, kind in zip(axes[0], kinds):
        every = [r.latency[kind] * 1000 for r in run.results if kind in r.latency]
        bins = np.histogram_bin_edges(every, bins=30)  # the same bins for every retriever
        for retriever in run.retrievers:
            values = [r.latency[kind] * 1000 for r in run.results if r.retriever == retriever and kind in r.latency]
            if values:
                ax.hist(values, bins=bins, alpha=0.5, label=retriever)
        ax.set_xlabel(f"{kind} latency (ms)")
        ax.set_ylabel("questions")
        ax.set_title(kind)
        ax.legend()
    fig.tight_layout()
    path = out / "latency.png"
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def plot_kinds(run: EvalRun, out: Path) -> Path | None:
    kinds = [k for k in run.summary[run.retrievers[0]].get("by_kind", {})]
    if not kinds:
        return None
    plt = _pyplot()
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / len(run.retrievers)
    x = np.arange(len(kinds))
    panels = (("hit@5", "retrieval hit@5"),
              ("answer", "answer hit (unanswerable: correctly abstained)"))
    for ax, (metric, title) in zip(axes, panels):
        for i, retriever in enumerate(run.retrievers):
            by_kind = run.summary[retriever]["by_kind"]
            values = []
            for kind in kinds:
                if metric == "answer":
                    v = by_kind[kind]["abstained"] if kind == "unanswerable" else by_kind[kind]["answer_hit"]
                else:
                    v = by_kind[kind][metric]
                values.append(v)
            ax.bar(x + (i - (len(run.retrievers) - 1) / 2) * width, [v or 0.0 for v in values], width,
                   label=retriever)
            if i == 0:
                for j, v in enumerate(values):
                    if v is None:
                        ax.text(x[j], 0.03, "n/a", ha="center", fontsize=9, color="0.4")
        ax.set_xticks(x, kinds, rotation=20)
        ax.set_ylim(0, 1.05)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    path = out / "by_kind.png"
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def summary_tables(metrics: Mapping[str, Any], level: str = "##") -> list[str]:
    """Markdown tables (metrics x retrievers, and per kind for gold) from a metrics.json mapping."""
    fmt_name = metrics["format"]
    retrievers = list(metrics["retrievers"])
    default = metrics.get("default_retriever")
    summary = metrics["summary"]
    names = [f"{r} (default)" if r == default else r for r in retrievers]
    lines: list[str] = []
    for heading, group, keys in TABLES[fmt_name]:
        rows = [[label] + [lookup(summary[r].get(group, {}), key) for r in retrievers] for key, label in keys]
        if all(v is None for row in rows for v in row[1:]):
            continue
        lines += [f"{level} {heading}", "", table(["metric"] + names, rows), ""]
    if fmt_name == "gold":
        focus = default if default in retrievers else retrievers[0]
        by_kind = summary[focus]["by_kind"]
        cols = ("questions", "hit@5", "mrr@10", "evidence_recall@5", "answer_hit", "f1", "abstained", "score")
        lines += [f"{level} Per kind ({focus})", "",
                  "For `unanswerable`, *abstained* is the share correctly abstained; for the other kinds it is the "
                  "share wrongly abstained. *score* is the mean question score (see the worst questions).", "",
                  table(["kind"] + list(cols), [[k] + [v[c] for c in cols] for k, v in by_kind.items()]), ""]
        lines += [f"{level}# hit@5 and answer hit by kind and retriever", "",
                  table(["kind"] + [f"{r} hit@5" for r in retrievers] + [f"{r} answer hit" for r in retrievers],
                        [[k] + [summary[r]["by_kind"][k]["hit@5"] for r in retrievers]
                         + [summary[r]["by_kind"][k]["answer_hit"] for r in retrievers] for k in by_kind]), ""]
    return lines


def results_section(metrics: Mapping[str, Any], title: str, level: str = "##") -> str:
    """A section of eval/RESULTS.md from a run's metrics.json: command, date, run time and the tables."""
    index = metrics.get("index", {})
    build = ""
    if index.get("seconds") is not None:
        build = (f"; index {'reused from cache' if index.get('cached') else 'built'} in {index['seconds']} s "
                 f"({index.get('documents')} documents, {index.get('chunks')} chunks)")
    lines = [f"{level} {title}", "",
             f"- command: `{metrics.get('command', '?')}`",
             f"- date (UTC): {metrics.get('date')}; code: {_code(metrics.get('code'))}",
             f"- run time: {metrics.get('seconds')} s evaluating, {metrics.get('total_seconds')} s in all{build}",
             f"- reader: {_reader(metrics.get('reader'))}",
             f"- data: `{metrics.get('dataset')}` (sha256 {str(metrics.get('dataset_sha256'))[:12]}\u2026); "
             + ", ".join(f"{k} {v}" for k, v in metrics.get("counts", {}).items() if v), ""]
    lines += summary_tables(metrics, level=level + "#")
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------- markdown


def _worst_markdown(run: EvalRun) -> list[str]:
    retriever = focus_retriever(run)
    lines = [f"## The {WORST} worst questions ({retriever})", ""]
    if run.format == "gold":
        lines.append("Ranked by question score: the mean of MRR@10, evidence recall@5, answer hit and token F1 for "
                     "answerable questions; 1 if correctly abstained, else 0, for unanswerable ones.")
    elif run.format == "beir":
        lines.append("Ranked by nDCG@10.")
    else:
        lines.append("Ranked by the mean of MRR@10 and answer hit.")
    lines.append("")
    for n, r in enumerate(worst_questions(run, retriever), start=1):
        lines.append(f"### {n}. {r.id} ({r.kind}) \u2014 score {r.score:.3f}")
        lines.append("")
        lines.append(f"- **Question:** {r.question}")
        if r.expected:
            lines.append("- **Expected:** " + " | ".join(f"\u201c{a}\u201d" for a in r.expected))
        elif run.format == "gold" and not r.answerable:
            lines.append("- **Expected:** an abstention (the documents do not answer this)")
        for ev in r.evidence[:3]:
            if "quote" in ev:
                where = ", ".join(f"{d} {s}\u2013{e}" for d, s, e in ev["spans"])
                lines.append(f"- **Evidence** ({where}): \u201c{_short(ev['quote'], 220)}\u201d")
            elif "doc_id" in ev:
                lines.append(f"- **Relevant document:** {ev['doc_id']}" + (f" (grade {ev['grade']})"
                                                                           if "grade" in ev else ""))
        if r.answer is not None:
            shown = "(abstained) " if r.answer["abstained"] else ""
            lines.append(f"- **Answer:** {shown}{_short(r.answer['text'], 400)}")
        m = r.metrics
        facts = ", ".join(f"{k} {fmt(m[k])}" for k in ("hit@10", "mrr@10", "ndcg@10", "evidence_recall@5",
                                                          "answer_hit", "f1") if k in m and m[k] is not None)
        if facts:
            lines.append(f"- **Metrics:** {facts}")
        lines.append("- **Retrieved:**")
        for s in r.retrieved[:3]:
            mark = "\u2713 relevant" if s.relevant else "\u2717"
            section = s.section.strip() or "\u2014"
            lines.append(f"  {s.rank}. {s.doc_id} \u00a7 {section} [{s.start}\u2013{s.end}] "
                         f"score {s.score:.3f} {mark}: \u201c{_short(s.preview, 180)}\u201d")
        lines.append("")
    return lines


def _code(code: Mapping[str, Any] | None) -> str | None:
    if not code:
        return None
    text = f"rag {code.get('rag')}"
    if code.get("git_commit"):
        text += f", commit {code['git_commit']}"
        if code.get("rag_uncommitted"):
            text += " with uncommitted changes to " + ", ".join(code["rag_uncommitted"])
    return text


def _reader(reader: Mapping[str, Any] | None) -> str | None:
    """"name (precision), sha256 …" of the reader a run used."""
    if not reader:
        return None
    return f"{reader.get('name')} ({reader.get('precision', '?')}), sha256 {reader.get('sha256')}"


def _short(text: str, limit: int) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " \u2026"


def render_markdown(run: EvalRun, plots: Sequence[Path] = (), comparison: str | None = None,
                    command: str | None = None) -> str:
    meta = run.meta
    names = column_names(run)
    title = {"gold": "Gold question set", "beir": "BEIR benchmark", "squad": "SQuAD benchmark"}[run.format]
    lines = [f"# Evaluation report \u2014 {title}: {Path(run.dataset).name}", ""]
    facts = [("dataset", f"`{run.dataset}` (sha256 {run.dataset_sha256[:12]}\u2026)"),
             ("command", f"`{command}`" if command else None),
             ("date (UTC)", meta.get("date")), ("run time", f"{meta.get('seconds')} s"),
             ("questions", ", ".join(f"{k} {v}" for k, v in meta.get("counts", {}).items() if v)),
             ("retrievers", ", ".join(names)),
             ("index", ", ".join(f"{k} {v}" for k, v in meta.get("index", {}).items() if k != "settings")),
             ("index settings", ", ".join(f"{k}={v}" for k, v in meta.get("index", {}).get("settings", {}).items())),
             ("reader", _reader(meta.get("reader"))),
             ("limit", meta.get("limit")), ("sample", meta.get("sample")),
             ("code", _code(meta.get("code")))]
    lines += [f"- **{k}:** {v}" for k, v in facts if v not in (None, "")]
    if meta.get("unreachable_evidence"):
        lines.append(f"- **warning:** no indexed passage overlaps the evidence of "
                     f"{', '.join(meta['unreachable_evidence'])}; they count as retrieval misses")
    lines.append("")
    lines += summary_tables(run.metrics_dict(), level="##")
    if run.format == "gold":
        lines += ["**Weakest kinds** (lowest mean question score): "
                  + ", ".join(f"{k} ({s:.3f})" for k, s in weakest_kinds(run)), ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    if comparison:
        lines += ["## Comparison with an earlier run", "", comparison, ""]
    lines += _worst_markdown(run)
    lines += ["## Definitions", ""]
    if run.format == "gold":
        lines += [
            "- Relevance is anchored to character spans: each evidence quote is located in its document once, and a "
            "retrieved passage is relevant when its span overlaps a quote's span in the same document. Chunk ids are "
            "never used, so re-chunking cannot invalidate the gold set.",
            "- hit@k: a relevant passage in the top k. MRR@10: 1/rank of the first relevant passage. nDCG@10: binary "
            "gains, ideal list = every indexed passage overlapping the evidence (found through `retrieve` restricted to "
            "the gold documents). Evidence recall@5: share of the question's evidence quotes overlapped by the top 5.",
            "- Answer hit: the answer (citation markers removed) contains an accepted answer after SQuAD normalisation. "
            "Token F1: SQuAD F1 against the best accepted answer. Both count an abstention as 0.",
            "- Citation exactness: share of citations whose quote equals the document text at its span. Precision: "
            "share of citations (of answered, answerable questions) overlapping an evidence quote. Recall: share of "
            "evidence quotes overlapped by a citation, averaged over answered answerable questions.",
            "- Latency: wall time of `retrieve` and of `ask` per question in this run (after one warm-up call)."]
    elif run.format == "beir":
        lines += ["- A document's rank is the rank of its first passage; passages are retrieved until 100 distinct "
                  "documents are ranked. nDCG@10 uses linear gains (the qrel grade) as trec_eval's ndcg_cut; "
                  "recall@k and MRR@10 count documents with grade > 0. A document with the query's own id is "
                  "ignored (BEIR's ignore_identical_ids)."]
    else:
        lines += ["- Every paragraph is a document (titled by its article). Paragraph hit@k and MRR@10 use the "
                  "document ranking (first passage counts). Answer hit: the assistant's answer contains a gold answer "
                  "after SQuAD normalisation; F1 is SQuAD token F1 against the best gold answer."]
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------- writing


def write_outputs(run: EvalRun, out: str | Path, *, previous: str | Path | None = None, plots: bool = True,
                  command: str | None = None) -> dict[str, Any]:
    """Write every output of ``run`` into ``out``; returns the written paths and the comparison, if any."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = run.metrics_dict()
    if command:
        metrics["command"] = command
    comparison_md = comparison_txt = None
    if previous is not None:
        earlier = load_metrics(previous)
        deltas, notes = compare(metrics, earlier)
        comparison_md = compare_markdown(deltas, notes, str(previous), fmt_name=run.format)
        comparison_txt = compare_text(deltas, notes, str(previous), run.format)
        (out / COMPARE_JSON).write_text(json.dumps(
            {"previous": str(previous), "notes": notes,
             "deltas": [{"metric": d.key, "previous": d.previous, "current": d.current,
                         "delta": round(d.delta, 6)} for d in deltas]}, indent=2) + "\n", encoding="utf-8")
        (out / COMPARE_MD).write_text(comparison_md, encoding="utf-8")
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with (out / PREDICTIONS_FILE).open("w", encoding="utf-8") as fh:
        for r in run.results:
            fh.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
    written: list[Path] = []
    if plots:
        written += plot_curves(run, out)
        latency = plot_latency(run, out)
        if latency:
            written.append(latency)
        if run.format == "gold":
            kinds = plot_kinds(run, out)
            if kinds:
                written.append(kinds)
    (out / REPORT_FILE).write_text(render_markdown(run, written, comparison_md, command), encoding="utf-8")
    return {"out": out, "plots": written, "comparison": comparison_txt}
