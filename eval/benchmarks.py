"""Public benchmarks through the project's own pipeline: BEIR (e.g. SciFact) and SQuAD v1.1.

The corpus is turned into documents with ``rag.document_from_text`` and indexed
with ``rag.Assistant.from_documents`` (the same chunker, embedder and BM25 as
everywhere else), in memory or in an on-disk cache keyed by the corpus, the
index settings and the ``rag`` source code. Queries then go through
``assistant.retrieve`` / ``assistant.ask``.

* BEIR: a document's rank is the rank of its first passage (later passages of
  the same document are dropped); enough passages are retrieved to fill the
  top 100 distinct documents. As in BEIR, a retrieved document whose id equals
  the query id is ignored (ArguAna's queries are also corpus documents).
* SQuAD: every paragraph is a document; the paragraph a question was written
  on is its one relevant document. Answers come from ``assistant.ask`` with the
  default retriever.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Iterable, Mapping, Sequence

import rag
from rag import Assistant, Config, Document, DocumentError, InputError, RagError, document_from_text

from .metrics import auc, best_f1, contains_answer, mean, strip_citation_marks, trec_scores, word_count
from .runner import (EvalRun, QuestionResult, RetrievedSpan, curve, now_utc, preview, progress_bar, select,
                     summarise_latency, timed)

log = logging.getLogger(__name__)

#: Documents ranked per BEIR query (recall@100 needs 100).
BEIR_DEPTH = 100
#: Passages retrieved per ranked document at first; doubled while fewer than BEIR_DEPTH distinct documents come back.
PASSAGES_PER_DOC = 3
#: Distinct documents kept per query in predictions.jsonl.
PREDICTION_DOCS = 10


class BenchmarkError(InputError):
    """A benchmark file is missing or malformed."""


@dataclass(frozen=True)
class Corpus:
    """Documents of a benchmark and how they were made."""

    documents: tuple[Document, ...]
    skipped: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class BeirSet:
    name: str
    folder: str
    split: str
    sha256: str
    corpus: Corpus
    queries: tuple[tuple[str, str], ...]  # (query id, text), only those with qrels
    qrels: dict[str, dict[str, int]]


@dataclass(frozen=True)
class SquadQuestion:
    id: str
    question: str
    answers: tuple[str, ...]
    doc_id: str


@dataclass(frozen=True)
class SquadSet:
    path: str
    sha256: str
    version: str
    corpus: Corpus
    questions: tuple[SquadQuestion, ...]
    #: SQuAD 2.0's unanswerable questions (no answers; ``doc_id`` is the paragraph they were written on).
    unanswerable: tuple[SquadQuestion, ...] = ()
    #: Articles whose questions were left out (the reader trained on them).
    excluded_articles: tuple[str, ...] = ()


# ---------------------------------------------------------------------- loading


def _sha256_files(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError as exc:
                raise BenchmarkError(f"{path} line {number}: not valid JSON ({exc})") from exc
            if not isinstance(data, dict) or "_id" not in data:
                raise BenchmarkError(f"{path} line {number}: expected an object with an \"_id\" field")
            yield number, data


def make_document(doc_id: str, title: str, text: str) -> Document:
    """A benchmark document: the title goes in front of every chunk (embed_headers), the text is the body.

    An untitled document gets a blank title, so that no id is indexed as if it were words.
    """
    title, text = (title or "").strip(), (text or "").strip()
    return document_from_text(doc_id, text or title, title=title or " ")


def _documents(rows: Iterable[tuple[str, str, str]]) -> Corpus:
    docs: list[Document] = []
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for doc_id, title, text in rows:
        if doc_id in seen:
            skipped.append((doc_id, "duplicate id"))
            continue
        try:
            docs.append(make_document(doc_id, title, text))
            seen.add(doc_id)
        except DocumentError as exc:
            skipped.append((doc_id, str(exc)))
    for doc_id, reason in skipped[:5]:
        log.warning("skipped document %s: %s", doc_id, reason)
    if not docs:
        raise BenchmarkError("the corpus holds no usable document")
    return Corpus(tuple(docs), tuple(skipped))


def load_beir(folder: str | Path, split: str = "test", limit: int | None = None,
              sample: int | None = None) -> BeirSet:
    """A BEIR dataset folder: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``."""
    folder = Path(folder)
    corpus_path, queries_path, qrels_path = folder / "corpus.jsonl", folder / "queries.jsonl", \
        folder / "qrels" / f"{split}.tsv"
    for path in (corpus_path, queries_path, qrels_path):
        if not path.is_file():
            raise BenchmarkError(f"{path} not found; a BEIR folder holds corpus.jsonl, queries.jsonl and "
                                 f"qrels/{split}.tsv")
    qrels: dict[str, dict[str, int]] = {}
    with qrels_path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            parts = line.rstrip("\n").split("\t")
            if not line.strip():
                continue
            if len(parts) != 3:
                raise BenchmarkError(f"{qrels_path} line {number}: expected query-id<TAB>corpus-id<TAB>score")
            try:
                grade = int(float(parts[2]))
            except ValueError:
                if number == 1:
                    continue  # the header row
                raise BenchmarkError(f"{qrels_path} line {number}: score {parts[2]!r} is not a number") from None
            qrels.setdefault(parts[0], {})[parts[1]] = grade
    queries_text = {str(d["_id"]): str(d.get("text", "")) for _n, d in _jsonl(queries_path)}
    queries = tuple((qid, queries_text[qid]) for qid in queries_text if qid in qrels
                    and any(g > 0 for g in qrels[qid].values()) and queries_text[qid].strip())
    missing = [q for q in qrels if q not in queries_text]
    if missing:
        log.warning("%d queries of %s have no text in %s (e.g. %s); skipped", len(missing), qrels_path.name,
                    queries_path.name, missing[0])
    if not queries:
        raise BenchmarkError(f"no query of {queries_path} has relevance judgements in {qrels_path}")
    queries = tuple(select(queries, limit, sample))
    corpus = _documents((str(d["_id"]), str(d.get("title") or ""), str(d.get("text") or ""))
                        for _n, d in _jsonl(corpus_path))
    return BeirSet(folder.name, str(folder), split, _sha256_files((corpus_path, queries_path, qrels_path)), corpus,
                   queries, {q: qrels[q] for q, _t in queries})


def load_squad(path: str | Path, limit: int | None = None, sample: int | None = None,
               exclude_titles: Collection[str] = ()) -> SquadSet:
    """SQuAD v1.1 or v2.0 JSON: each paragraph becomes a document ``<article>-<paragraph>`` titled by its article.

    Questions of articles in ``exclude_titles`` (those the reader trained on) are left out; their paragraphs
    stay in the corpus. ``limit``/``sample`` apply to answerable and unanswerable questions separately.
    """
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(f"{path} not found; give the SQuAD JSON file (e.g. dev-v1.1.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        articles = data["data"]
        if not isinstance(articles, list):
            raise TypeError("data is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise BenchmarkError(f"{path} is not a SQuAD file (expected {{\"data\": [articles]}}): {exc}") from exc
    excluded = set(exclude_titles)
    rows: list[tuple[str, str, str]] = []
    questions: list[SquadQuestion] = []
    impossible: list[SquadQuestion] = []
    left_out: set[str] = set()
    try:
        for a, article in enumerate(articles):
            title = str(article.get("title", "")).replace("_", " ")
            for p, paragraph in enumerate(article["paragraphs"]):
                doc_id = f"{a:03d}-{p:03d}"
                rows.append((doc_id, title, paragraph["context"]))
                if title in excluded:
                    left_out.add(title)
                    continue
                for qa in paragraph.get("qas", []):
                    answers = tuple(dict.fromkeys(ans["text"] for ans in qa.get("answers", []) if ans["text"]))
                    if qa.get("is_impossible", False):
                        impossible.append(SquadQuestion(str(qa["id"]), qa["question"], (), doc_id))
                    elif answers:
                        questions.append(SquadQuestion(str(qa["id"]), qa["question"], answers, doc_id))
    except (KeyError, TypeError, AttributeError) as exc:
        raise BenchmarkError(f"{path}: article {a} is malformed ({type(exc).__name__}: {exc})") from exc
    if not questions:
        raise BenchmarkError(f"{path} holds no answerable question"
                             + (f" outside the {len(left_out)} articles the reader trained on" if left_out else ""))
    if left_out:
        log.info("%s: left out the questions of %d articles the reader trained on", path, len(left_out))
    return SquadSet(str(path), _sha256_files([path]), str(data.get("version", "")), _documents(rows),
                    tuple(select(questions, limit, sample)), tuple(select(impossible, limit, sample)),
                    tuple(sorted(left_out)))


def reader_trained_articles(config: Config) -> frozenset[str]:
    """Titles of the SQuAD articles the configured reader trained on (from its reader.json; none if unknown)."""
    from rag.reader import MANIFEST, default_reader_dir

    folder = Path(config.reader_path) if config.reader_path else default_reader_dir()
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        return frozenset(manifest["training"]["trained_articles"]["squad2_dev"])
    except (OSError, ValueError, KeyError, TypeError):
        return frozenset()


# ---------------------------------------------------------------------- index


#: The rag modules whose code shapes a stored index; retrieval and answering code do not invalidate the cache.
INDEX_MODULES = ("documents.py", "chunking.py", "tokens.py", "embedding.py", "lexical.py", "index.py", "types.py")


def corpus_key(documents: Sequence[Document], config: Config) -> str:
    """Identifies an index: the documents, the index-time settings and the ``rag`` code that builds it."""
    digest = hashlib.sha256()
    settings = {**config.index_settings(), "bm25_k1": config.bm25_k1, "bm25_b": config.bm25_b,
                "rag": rag.__version__}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    package = Path(rag.__file__).resolve().parent
    for name in INDEX_MODULES:
        digest.update(name.encode() + b"\0" + (package / name).read_bytes())
    for doc in documents:
        digest.update(b"\0".join((doc.doc_id.encode(), doc.title.encode(), doc.sha256.encode())) + b"\n")
    return digest.hexdigest()


def build_assistant(documents: Sequence[Document], config: Config, *, cache: str | Path | None = None,
                    name: str = "corpus", progress: bool = False) -> tuple[Assistant, dict[str, Any]]:
    """Index ``documents`` with the project pipeline; with ``cache``, save it there and reuse it next time."""
    started = time.perf_counter()
    folder = None
    if cache is not None:
        folder = Path(cache) / f"{name}-{corpus_key(documents, config)[:16]}"
        if (folder / "manifest.json").is_file():
            try:
                assistant = Assistant.load(folder, config, build_if_missing=False)
                if len(assistant.documents) == len(documents):
                    seconds = round(time.perf_counter() - started, 1)
                    log.info("reused cached index %s (%.1fs)", folder, seconds)
                    return assistant, {"path": str(folder), "cached": True, "seconds": seconds}
                log.warning("cached index %s holds other documents; rebuilding it", folder)
            except RagError as exc:
                log.warning("cached index %s is unusable (%s); rebuilding it", folder, exc)
            shutil.rmtree(folder, ignore_errors=True)
    assistant = Assistant.from_documents(list(documents), config, folder, progress=progress)
    seconds = round(time.perf_counter() - started, 1)
    log.info("indexed %d documents in %.1fs", len(documents), seconds)
    return assistant, {"path": str(folder) if folder else "(in memory)", "cached": False, "seconds": seconds}


def _index_meta(assistant: Assistant, build: Mapping[str, Any], corpus: Corpus) -> dict[str, Any]:
    info = assistant.info()
    return {**build, "documents": len(info["documents"]), "chunks": info["chunks"],
            "skipped_documents": len(corpus.skipped), "model": info["model"].get("name"),
            "settings": info["settings"]}


# ---------------------------------------------------------------------- BEIR


def rank_documents(assistant: Assistant, query: str, retriever: str, depth: int = BEIR_DEPTH,
                   exclude: str | None = None) -> list[tuple[str, Any]]:
    """Up to ``depth`` distinct documents, each with its first (best) passage, best first."""
    k = depth * PASSAGES_PER_DOC
    while True:
        passages = assistant.retrieve(query, k=k, retriever=retriever)
        first: dict[str, Any] = {}
        for p in passages:
            if p.doc_id != exclude and p.doc_id not in first:
                first[p.doc_id] = p
        if len(first) >= depth or len(passages) < k:
            return list(first.items())[:depth]
        k *= 2


def run_beir(assistant: Assistant, data: BeirSet, retrievers: Sequence[str], *, progress: bool = False,
             build: Mapping[str, Any] | None = None, depth: int = BEIR_DEPTH) -> EvalRun:
    """Rank documents for every test query; nDCG@10, recall@10/100, MRR@10 with trec definitions."""
    started_at, started = now_utc(), time.perf_counter()
    if data.queries:
        assistant.retrieve(data.queries[0][1], k=10)  # warm-up
    results: list[QuestionResult] = []
    with progress_bar(len(data.queries) * len(retrievers), progress, f"beir {data.name}") as bar:
        for retriever in retrievers:
            bar.set_description(f"beir {data.name} ({retriever})")
            for qid, text in data.queries:
                ranked, seconds = timed(lambda: rank_documents(assistant, text, retriever, depth, exclude=qid))
                qrels = data.qrels[qid]
                ids = [doc_id for doc_id, _p in ranked]
                m: dict[str, float | None] = dict(trec_scores(ids, qrels, cutoffs=(1, 5, 10, 100)))
                ranks = tuple(i for i, d in enumerate(ids, start=1) if qrels.get(d, 0) > 0)
                spans = tuple(RetrievedSpan(i, d, p.start, p.end, p.section, round(float(p.score), 6),
                                            float(qrels.get(d, 0)), preview(p.text, 120))
                              for i, (d, p) in enumerate(ranked[:PREDICTION_DOCS], start=1))
                relevant = {d: g for d, g in qrels.items() if g > 0}
                results.append(QuestionResult(qid, retriever, text, "query", True, (),
                                              tuple({"doc_id": d, "grade": g} for d, g in sorted(relevant.items())),
                                              spans, m, ranks, len(relevant), None, {"retrieve": seconds},
                                              float(m["ndcg@10"] or 0.0)))
                bar.update()
    summary = {}
    for r in retrievers:
        rows = [x for x in results if x.retriever == r]
        summary[r] = {"retrieval": {"queries": len(rows), **{key: round(mean(x.metrics[key] for x in rows) or 0.0, 4)
                                                             for key in ("ndcg@10", "recall@10", "recall@100",
                                                                         "mrr@10", "hit@1", "hit@10")}},
                      "latency_ms": summarise_latency(rows)}
    curves = {"recall@k": {r: curve([x for x in results if x.retriever == r], depth, recall=True)
                           for r in retrievers},
              "hit@k": {r: curve([x for x in results if x.retriever == r], depth) for r in retrievers}}
    meta = {"date": started_at, "seconds": round(time.perf_counter() - started, 1), "split": data.split,
            "counts": {"queries": len(data.queries), "documents": len(data.corpus.documents),
                       "qrels": sum(len(q) for q in data.qrels.values())},
            "depth": depth, "index": _index_meta(assistant, build or {}, data.corpus),
            "config": assistant.config.to_dict(),
            "reader": assistant.info().get("reader")}
    return EvalRun("beir", data.folder, data.sha256, tuple(retrievers), assistant.config.retriever, summary, curves,
                   tuple(results), meta)


# ---------------------------------------------------------------------- SQuAD


def _precision(declined_unanswerable: Sequence[float], declined_answerable: Sequence[float]) -> float | None:
    """Of the questions declined, the share that were unanswerable."""
    right, wrong = sum(declined_unanswerable), sum(declined_answerable)
    return round(right / (right + wrong), 4) if right + wrong else None


def run_squad(assistant: Assistant, data: SquadSet, retrievers: Sequence[str], *, k: int = 10,
              progress: bool = False, build: Mapping[str, Any] | None = None, answers: bool = True) -> EvalRun:
    """Paragraph hit@1/5/10 and MRR per retriever; answer hit and F1 of ``ask`` with the default retriever.

    Paragraphs are ranked like BEIR documents (first passage counts, enough
    passages to fill ``k`` distinct paragraphs).
    """
    started_at, started = now_utc(), time.perf_counter()
    default = assistant.config.retriever
    answering = answers and default in retrievers
    if data.questions:
        assistant.ask(data.questions[0].question, k=k)  # warm-up
    total = len(data.questions) * (len(retrievers) + (1 if answering else 0))
    results: list[QuestionResult] = []
    with progress_bar(total, progress, "squad") as bar:
        for retriever in retrievers:
            bar.set_description(f"squad ({retriever})")
            for q in data.questions:
                ranked, t_retrieve = timed(lambda: rank_documents(assistant, q.question, retriever, k))
                latency = {"retrieve": t_retrieve}
                ids = [doc_id for doc_id, _p in ranked]
                relevance = [1.0 if d == q.doc_id else 0.0 for d in ids]
                qrels = {q.doc_id: 1}
                m: dict[str, float | None] = dict(trec_scores(ids, qrels, cutoffs=(1, 5, 10)))
                record = None
                if answering and retriever == default:
                    answer, t_ask = timed(lambda: assistant.ask(q.question, k=k, retriever=retriever))
                    bar.update()
                    latency["ask"] = t_ask
                    text = strip_citation_marks(answer.text) if not answer.abstained else ""
                    m.update({"answer_hit": contains_answer(text, q.answers) if text else 0.0,
                              "f1": best_f1(text, q.answers) if text else 0.0,
                              "abstained": float(answer.abstained),
                              "answer_words": float(word_count(text)) if text else None})
                    record = {"text": answer.text, "abstained": answer.abstained,
                              "confidence": round(answer.confidence, 4),
                              "citations": [c.to_dict() for c in answer.citations]}
                ranks = tuple(i for i, rel in enumerate(relevance, start=1) if rel)
                spans = tuple(RetrievedSpan(i, d, p.start, p.end, p.section, round(float(p.score), 6), rel,
                                            preview(p.text, 120))
                              for i, ((d, p), rel) in enumerate(zip(ranked, relevance), start=1))
                score = mean([m["mrr@10"], m.get("answer_hit")]) or 0.0
                results.append(QuestionResult(q.id, retriever, q.question, "squad", True, q.answers,
                                              ({"doc_id": q.doc_id},), spans, m, ranks, 1, record, latency, score))
                bar.update()
    summary = {}
    for r in retrievers:
        rows = [x for x in results if x.retriever == r and x.answerable]
        summary[r] = {"retrieval": {"questions": len(rows),
                                    **{key: round(mean(x.metrics[key] for x in rows) or 0.0, 4)
                                       for key in ("hit@1", "hit@5", "hit@10", "mrr@10")}},
                      "latency_ms": summarise_latency(rows)}
        if answering and r == default:
            answered = [x for x in rows if not x.metrics.get("abstained")]
            summary[r]["answers"] = {"questions": len(rows),
                                     "answer_hit": round(mean(x.metrics["answer_hit"] for x in rows) or 0.0, 4),
                                     "f1": round(mean(x.metrics["f1"] for x in rows) or 0.0, 4),
                                     "answered": len(answered),
                                     "answer_hit_when_answered": (round(mean(x.metrics["answer_hit"]
                                                                             for x in answered), 4)
                                                                  if answered else None),
                                     "answerable_abstained": round(mean(x.metrics["abstained"] for x in rows)
                                                                   or 0.0, 4),
                                     "answer_words_mean": (round(mean(x.metrics["answer_words"] for x in answered), 2)
                                                           if answered else None)}
    if answering and data.unanswerable:
        # SQuAD 2.0: questions written on a paragraph that does not answer them; the assistant should decline.
        declined, confidences = [], []
        with progress_bar(len(data.unanswerable), progress, "squad (unanswerable)") as bar:
            for q in data.unanswerable:
                answer = assistant.ask(q.question, k=k)
                declined.append(float(answer.abstained))
                confidences.append(answer.confidence)
                results.append(QuestionResult(q.id, default, q.question, "squad_unanswerable", False, (),
                                              ({"doc_id": q.doc_id},), (), {"abstained": float(answer.abstained)},
                                              (), 0, {"text": answer.text, "abstained": answer.abstained,
                                                      "confidence": round(answer.confidence, 4)}, {},
                                              float(answer.abstained)))
                bar.update()
        answerable_conf = [x.answer["confidence"] for x in results if x.retriever == default and x.answerable]
        abstained_ok = [x.metrics["abstained"] for x in results if x.retriever == default and x.answerable]
        summary[default]["abstention"] = {
            "unanswerable": len(declined), "unanswerable_abstained": round(mean(declined) or 0.0, 4),
            "answerable": len(abstained_ok), "answerable_abstained": round(mean(abstained_ok) or 0.0, 4),
            "no_answer_precision": _precision(declined, abstained_ok),
            "confidence_auc": auc(answerable_conf, confidences)}
    curves = {"hit@k": {r: curve([x for x in results if x.retriever == r and x.answerable], k) for r in retrievers}}
    meta = {"date": started_at, "seconds": round(time.perf_counter() - started, 1), "k": k,
            "version": data.version, "excluded_articles": list(data.excluded_articles),
            "counts": {"questions": len(data.questions), "unanswerable": len(data.unanswerable),
                       "paragraphs": len(data.corpus.documents)},
            "answers_by": default if answering else None,
            "index": _index_meta(assistant, build or {}, data.corpus), "config": assistant.config.to_dict(),
            "reader": assistant.info().get("reader")}
    return EvalRun("squad", data.path, data.sha256, tuple(retrievers), default, summary, curves, tuple(results), meta)
