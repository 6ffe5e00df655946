"""Run a gold question set through the public ``rag`` API and score every question.

For each retriever and question the runner calls ``assistant.retrieve`` (timed)
and ``assistant.ask`` (timed), then scores the retrieved spans against the
evidence spans located by ``eval.gold`` and the answer against the accepted
answers. Results are plain frozen dataclasses that ``eval.report`` turns into
files; nothing here prints.
"""

from __future__ import annotations

import datetime as _dt
import logging
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from rag import Answer, Assistant, Passage

from .gold import KINDS, GoldItem, GoldSet
from .metrics import (best_f1, contains_answer, hit_at_k, latency_summary, mean, ndcg_at_k, reciprocal_rank,
                      strip_citation_marks, word_count)

log = logging.getLogger(__name__)

RETRIEVERS = ("bm25", "dense", "hybrid")
#: Cut-offs reported in the tables (the hit@k curve covers every k up to --k).
CUTOFFS = (1, 5, 10)
#: How much of a passage's text predictions.jsonl keeps.
PREVIEW_CHARS = 200
#: Larger than any index's chunk count: retrieve() clamps k to what is there.
ALL_PASSAGES = 10 ** 9


@dataclass(frozen=True)
class RetrievedSpan:
    """One retrieved passage as the report shows it."""

    rank: int
    doc_id: str
    start: int
    end: int
    section: str
    score: float
    relevant: float
    preview: str = ""


@dataclass(frozen=True)
class QuestionResult:
    """Everything measured for one question with one retriever."""

    id: str
    retriever: str
    question: str
    kind: str
    answerable: bool
    expected: tuple[str, ...]
    evidence: tuple[dict[str, Any], ...]
    retrieved: tuple[RetrievedSpan, ...]
    metrics: dict[str, float | None]
    #: 1-based ranks of the relevant items among those retrieved, and how many relevant items exist.
    relevant_ranks: tuple[int, ...] = ()
    n_relevant: int = 0
    answer: dict[str, Any] | None = None
    latency: dict[str, float] = field(default_factory=dict)
    #: 0..1, higher is better; the report lists the questions with the lowest.
    score: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["latency_ms"] = {k: round(v * 1000, 2) for k, v in data.pop("latency").items()}
        data["metrics"] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.metrics.items()}
        data["score"] = round(self.score, 4)
        return data


@dataclass(frozen=True)
class EvalRun:
    """A finished evaluation: per-retriever summaries, curves, per-question results and run facts."""

    format: str
    dataset: str
    dataset_sha256: str
    retrievers: tuple[str, ...]
    default_retriever: str
    summary: dict[str, dict[str, Any]]
    curves: dict[str, dict[str, list[float]]]
    results: tuple[QuestionResult, ...]
    meta: dict[str, Any]

    def metrics_dict(self) -> dict[str, Any]:
        """What metrics.json holds."""
        return {"format": self.format, "dataset": self.dataset, "dataset_sha256": self.dataset_sha256,
                "retrievers": list(self.retrievers), "default_retriever": self.default_retriever,
                **self.meta, "summary": self.summary,
                "curves": {name: {r: [round(v, 4) for v in values] for r, values in per.items()}
                           for name, per in self.curves.items()}}


# ---------------------------------------------------------------------- helpers


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def select(items: Sequence[Any], limit: int | None = None, sample: int | None = None) -> list[Any]:
    """The first ``limit`` items, or ``sample`` items spread evenly over the whole list (deterministic)."""
    items = list(items)
    if limit:
        items = items[:limit]
    if sample and sample < len(items):
        items = [items[i * len(items) // sample] for i in range(sample)]
    return items


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " \u2026"


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = call()
    return value, time.perf_counter() - started


def curve(results: Iterable[QuestionResult], depth: int, *, recall: bool = False) -> list[float]:
    """hit@k (or recall@k) for k = 1..depth, averaged over the questions that have relevant items."""
    rows = [r for r in results if r.n_relevant > 0 or (r.answerable and not recall)]
    if not rows:
        return []
    values = []
    for k in range(1, depth + 1):
        if recall:
            values.append(sum(sum(1 for x in r.relevant_ranks if x <= k) / r.n_relevant for r in rows) / len(rows))
        else:
            values.append(sum(1.0 for r in rows if r.relevant_ranks and r.relevant_ranks[0] <= k) / len(rows))
    return values


def summarise_latency(results: Sequence[QuestionResult]) -> dict[str, dict[str, float | None]]:
    names = sorted({name for r in results for name in r.latency})
    return {name: latency_summary([r.latency[name] for r in results if name in r.latency]) for name in names}


def progress_bar(total: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="q", leave=False, dynamic_ncols=True)


# ---------------------------------------------------------------------- gold


def score_answer(answer: Answer, item: GoldItem, documents: Mapping[str, Any]) -> tuple[dict[str, float | None],
                                                                                        dict[str, Any]]:
    """Answer, citation and abstention metrics of one answer, and its record for predictions.jsonl."""
    answered = not answer.abstained
    text = strip_citation_marks(answer.text) if answered else ""
    citations = []
    cited_quotes: set[int] = set()
    exact = relevant = 0
    for c in answer.citations:
        doc = documents.get(c.doc_id)
        is_exact = doc is not None and doc.text[c.start:c.end] == c.quote and c.quote in doc.text
        quotes = item.quotes_overlapping(c.doc_id, c.start, c.end)
        cited_quotes |= quotes
        exact += is_exact
        relevant += bool(quotes)
        citations.append({"number": c.number, "doc_id": c.doc_id, "section": c.section, "start": c.start,
                          "end": c.end, "quote": c.quote, "exact": is_exact, "relevant": bool(quotes)})
    n = len(answer.citations)
    m: dict[str, float | None] = {
        "abstained": float(answer.abstained),
        "answer_words": float(word_count(text)) if answered else None,
        "citations": float(n),
        "citations_exact": float(exact),
    }
    if item.answerable:
        m.update({
            "answer_hit": contains_answer(text, item.answers) if answered else 0.0,
            "f1": best_f1(text, item.answers) if answered else 0.0,
            "citations_relevant": float(relevant),
            "citation_precision": relevant / n if answered and n else None,
            "citation_recall": len(cited_quotes) / len(item.evidence) if answered else None,
        })
    record = {"text": answer.text, "abstained": answer.abstained, "confidence": round(answer.confidence, 4),
              "citations": citations}
    return m, record


def score_retrieval(passages: Sequence[Passage], item: GoldItem, pool: int
                    ) -> tuple[dict[str, float | None], list[RetrievedSpan], tuple[int, ...]]:
    """Span-overlap retrieval metrics of one ranked list against a question's evidence."""
    relevance = [item.relevant(p.doc_id, p.start, p.end) for p in passages]
    spans = [RetrievedSpan(i, p.doc_id, p.start, p.end, p.section, round(float(p.score), 6), float(rel),
                           preview(p.text)) for i, (p, rel) in enumerate(zip(passages, relevance), start=1)]
    ranks = tuple(i for i, rel in enumerate(relevance, start=1) if rel)
    if not item.answerable:
        return {}, spans, ranks
    covered: set[int] = set()
    for p in passages[:5]:
        covered |= item.quotes_overlapping(p.doc_id, p.start, p.end)
    pool = max(pool, len(ranks))
    m: dict[str, float | None] = {f"hit@{k}": hit_at_k(relevance, k) for k in CUTOFFS}
    m["mrr@10"] = reciprocal_rank(relevance, 10)
    m["ndcg@10"] = ndcg_at_k([float(r) for r in relevance], [1.0] * pool, 10)
    m["evidence_recall@5"] = len(covered) / len(item.evidence)
    m["first_relevant_rank"] = float(ranks[0]) if ranks else None
    return m, spans, ranks


def question_score(m: Mapping[str, float | None], answerable: bool) -> float:
    """One number per question for finding the worst: retrieval and answer quality, or correct abstention."""
    if not answerable:
        return float(m.get("abstained") or 0.0)
    parts = [m.get("mrr@10"), m.get("evidence_recall@5"), m.get("answer_hit"), m.get("f1")]
    return float(mean(parts) or 0.0)


def relevant_pool(assistant: Assistant, item: GoldItem) -> int:
    """How many indexed passages overlap the item's evidence (the ideal list for nDCG).

    Found through the public API: every passage of the item's documents is
    retrieved (``doc_ids`` filter, BM25 so no ranking work is wasted) and
    checked for overlap.
    """
    if not item.answerable:
        return 0
    passages = assistant.retrieve(item.question, k=ALL_PASSAGES, doc_ids=list(item.doc_ids), retriever="bm25")
    return sum(1 for p in passages if item.relevant(p.doc_id, p.start, p.end))


def summarise_gold(results: Sequence[QuestionResult]) -> dict[str, Any]:
    """Aggregate one retriever's question results."""
    ans = [r for r in results if r.answerable]
    una = [r for r in results if not r.answerable]
    answered = [r for r in ans if not r.metrics.get("abstained")]

    def avg(rows: Sequence[QuestionResult], key: str) -> float | None:
        value = mean(r.metrics.get(key) for r in rows)
        return None if value is None else round(value, 4)

    total_citations = sum(r.metrics.get("citations") or 0 for r in results)
    exact = sum(r.metrics.get("citations_exact") or 0 for r in results)
    cited = sum(r.metrics.get("citations") or 0 for r in answered)
    cited_relevant = sum(r.metrics.get("citations_relevant") or 0 for r in answered)
    words = [r.metrics["answer_words"] for r in results if r.metrics.get("answer_words") is not None]
    summary: dict[str, Any] = {
        "retrieval": {"questions": len(ans), **{key: avg(ans, key) for key in
                      ("hit@1", "hit@5", "hit@10", "mrr@10", "ndcg@10", "evidence_recall@5")}},
        "answers": {"questions": len(ans), "answer_hit": avg(ans, "answer_hit"), "f1": avg(ans, "f1"),
                    "answered": len(answered), "answer_hit_when_answered": avg(answered, "answer_hit"),
                    "f1_when_answered": avg(answered, "f1"),
                    "answer_words_mean": round(statistics.fmean(words), 2) if words else None,
                    "answer_words_median": statistics.median(words) if words else None},
        "citations": {"count": int(total_citations),
                      "exactness": round(exact / total_citations, 4) if total_citations else None,
                      "precision": round(cited_relevant / cited, 4) if cited else None,
                      "recall": avg(answered, "citation_recall")},
        "abstention": {"unanswerable": len(una), "unanswerable_abstained": avg(una, "abstained"),
                       "answerable": len(ans), "answerable_abstained": avg(ans, "abstained")},
        "latency_ms": summarise_latency(results),
        "score": round(mean(r.score for r in results) or 0.0, 4),
    }
    by_kind: dict[str, Any] = {}
    for kind in KINDS:
        rows = [r for r in results if r.kind == kind]
        if not rows:
            continue
        by_kind[kind] = {"questions": len(rows), "hit@5": avg(rows, "hit@5"), "mrr@10": avg(rows, "mrr@10"),
                         "evidence_recall@5": avg(rows, "evidence_recall@5"), "answer_hit": avg(rows, "answer_hit"),
                         "f1": avg(rows, "f1"), "abstained": avg(rows, "abstained"),
                         "score": round(mean(r.score for r in rows) or 0.0, 4)}
    summary["by_kind"] = by_kind
    return summary


def run_gold(assistant: Assistant, gold: GoldSet, retrievers: Sequence[str] = RETRIEVERS, *, k: int = 10,
             limit: int | None = None, sample: int | None = None, progress: bool = False) -> EvalRun:
    """Ask every gold question with every retriever and score it."""
    started_at, started = now_utc(), time.perf_counter()
    items = select(gold.items, limit, sample)
    documents = assistant.documents
    pools = {item.id: relevant_pool(assistant, item) for item in items}
    unreachable = [item.id for item in items if item.answerable and pools[item.id] == 0]
    for item_id in unreachable:
        log.warning("%s: no indexed passage overlaps its evidence (it lies outside every chunk)", item_id)
    if items:  # warm-up, not timed: first calls pay for lazy loading
        for retriever in retrievers:
            assistant.ask(items[0].question, k=k, retriever=retriever)
    results: list[QuestionResult] = []
    with progress_bar(len(items) * len(retrievers), progress, "rag eval") as bar:
        for retriever in retrievers:
            bar.set_description(f"rag eval ({retriever})")
            for item in items:
                passages, t_retrieve = timed(lambda: assistant.retrieve(item.question, k=k, retriever=retriever))
                answer, t_ask = timed(lambda: assistant.ask(item.question, k=k, retriever=retriever))
                m, spans, ranks = score_retrieval(passages, item, pools[item.id])
                am, record = score_answer(answer, item, documents)
                m.update(am)
                evidence = tuple({"quote": q, "spans": [[s.doc_id, s.start, s.end] for s in item.spans
                                                        if s.quote_index == i]} for i, q in enumerate(item.evidence))
                results.append(QuestionResult(
                    item.id, retriever, item.question, item.kind, item.answerable, item.answers, evidence,
                    tuple(spans), m, ranks, pools[item.id], record, {"retrieve": t_retrieve, "ask": t_ask},
                    question_score(m, item.answerable)))
                bar.update()
    summary = {r: summarise_gold([x for x in results if x.retriever == r]) for r in retrievers}
    curves = {"hit@k": {r: curve([x for x in results if x.retriever == r], k) for r in retrievers}}
    info = assistant.info()
    meta = {
        "date": started_at,
        "seconds": round(time.perf_counter() - started, 1),
        "k": k,
        "limit": limit,
        "sample": sample,
        "counts": {"questions": len(items), "answerable": sum(i.answerable for i in items),
                   "unanswerable": sum(not i.answerable for i in items),
                   **{kind: sum(1 for i in items if i.kind == kind) for kind in KINDS}},
        "unreachable_evidence": unreachable,
        "index": {"path": info["index"], "documents": len(info["documents"]), "chunks": info["chunks"],
                  "model": info["model"].get("name"), "settings": info["settings"]},
        "config": assistant.config.to_dict(),
        "reader": info.get("reader"),
    }
    return EvalRun("gold", gold.path, gold.sha256, tuple(retrievers), assistant.config.retriever, summary, curves,
                   tuple(results), meta)
