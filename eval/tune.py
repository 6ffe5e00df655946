"""``rag eval … --sweep KEY=V1,V2``: measure query-time settings over one built index.

Every combination of the swept values is evaluated with the same index and
model (only settings that act at question time can be swept, so nothing is
re-embedded), and one table row per combination shows the headline metrics of
the default retriever. This is how the defaults in ``rag.Config`` were chosen;
the tables land in ``sweep.md`` / ``sweep.json`` next to the usual outputs.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from rag import Assistant, Config, ConfigError

from .report import fmt, lookup, table

#: Headline columns per format (dotted paths into a run's summary for the default retriever).
COLUMNS = {
    "gold": ("retrieval.hit@1", "retrieval.hit@5", "retrieval.mrr@10", "answers.answer_hit", "citations.precision",
             "abstention.unanswerable_abstained", "abstention.answerable_abstained", "latency_ms.ask.p50"),
    "beir": ("retrieval.ndcg@10", "retrieval.recall@10", "retrieval.recall@100", "retrieval.mrr@10"),
    "squad": ("retrieval.hit@1", "retrieval.hit@5", "retrieval.mrr@10", "answers.answer_hit"),
}


def grid(values: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the swept values, in a stable order."""
    keys = list(values)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(values[k] for k in keys))]


def check_query_time(keys: Sequence[str]) -> None:
    index_time = set(keys) & set(Config.INDEX_FIELDS) | set(keys) & {"bm25_k1", "bm25_b", "embed_dtype"}
    if index_time:
        raise ConfigError(f"--sweep {', '.join(sorted(index_time))}: index-time settings cannot be swept over one "
                          "index; run rag eval once per value with --set instead")


def sweep(assistant: Assistant, values: Mapping[str, Sequence[Any]], run: Callable[[Assistant], Any],
          fmt_name: str) -> list[dict[str, Any]]:
    """Run ``run`` once per combination; return rows of {changes, metrics}."""
    check_query_time(list(values))
    rows = []
    for changes in grid(values):
        variant = Assistant(assistant.index, assistant.config.replace(**changes), assistant.embedder)
        result = run(variant)
        summary = result.summary[variant.config.retriever] if variant.config.retriever in result.summary \
            else next(iter(result.summary.values()))
        rows.append({"changes": changes,
                     "metrics": {c: lookup(summary, c) for c in COLUMNS[fmt_name]}})
    return rows


def render(rows: Sequence[Mapping[str, Any]], fmt_name: str, command: str) -> str:
    keys = list(rows[0]["changes"]) if rows else []
    header = [*keys, *COLUMNS[fmt_name]]
    body = [[fmt(r["changes"][k]) for k in keys] + [fmt(r["metrics"][c]) for c in COLUMNS[fmt_name]] for r in rows]
    return f"`{command}`\n\n" + table(header, body) + "\n"


def write(rows: Sequence[Mapping[str, Any]], fmt_name: str, command: str, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps({"command": command, "rows": list(rows)}, indent=2))
    path = out / "sweep.md"
    path.write_text(render(rows, fmt_name, command))
    return path
