"""Stage 5: retrieve the passages most relevant to a question, best first.

Three first-stage modes over the same rows: ``dense`` (FAISS inner product of
normalised MiniLM vectors), ``bm25`` (bm25s) and ``hybrid`` (the two rankings
fused by reciprocal rank, or by a weighted sum of min-max normalised scores).
A ``Reranker`` then reorders the passages the reader has read (``Config.reranker``).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Collection, Protocol, Sequence

import numpy as np

from .config import RERANKERS, RETRIEVERS, Config
from .embedding import Embedder
from .errors import ConfigError, InputError
from .index import Index
from .types import Passage, Reading

log = logging.getLogger(__name__)


class Retriever:
    """Searches one index. Validates its mode on construction.

    Each first stage returns a candidate list, not a score for every row: dense top-N from the vector
    store, BM25 top-N from bm25s (N = ``Config.candidates``). Fusion scores the union of the two lists, with
    the missing score of each candidate filled in exactly (its BM25 score, or the cosine of its stored
    vector), so a passage found by one side only is not penalised for not being in the other's top N. An
    index of at most N chunks is therefore fused over every row.
    """

    def __init__(self, index: Index, embedder: Embedder, config: Config) -> None:
        if index.vectors.d != embedder.dimension:
            raise InputError(f"index dimension {index.vectors.d} differs from the model's {embedder.dimension}")
        self.index = index
        self.embedder = embedder
        self.config = config

    # ------------------------------------------------------------------ helpers
    def _allowed_ids(self, doc_ids: Collection[str] | None) -> np.ndarray | None:
        if doc_ids is None:
            return None
        wanted = doc_id_set(doc_ids)
        unknown = wanted - self.index.store.doc_id_set()
        if unknown:
            known = self.index.store.doc_ids()
            shown = ", ".join(sorted(known)[:20]) + (f" and {len(known) - 20} more" if len(known) > 20 else "")
            raise InputError(f"unknown document id(s): {', '.join(sorted(unknown))}; known: {shown}")
        return self.index.store.chunk_ids_of(sorted(wanted))

    def _dense(self, qvec: np.ndarray, n: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, cosines) of the dense top ``n`` (among ``allowed``)."""
        vectors = self.index.vectors
        q = qvec.reshape(1, -1).astype(np.float32)
        if allowed is not None and (len(allowed) <= n or (vectors.kind != "flat"
                                                           and len(allowed) <= EXACT_FILTER_ROWS)):
            # Every filtered row is a candidate, or the store is approximate (a filtered search would see only
            # the cells it probes): score the filtered rows exactly (filters name a few documents).
            scores = self.index.reconstruct(allowed) @ q[0] if len(allowed) else np.zeros(0, np.float32)
            top = np.argsort(-scores, kind="stable")[:n]
            return allowed[top], scores[top].astype(np.float32)
        scores, found = vectors.search(q, n, allowed)
        keep = found[0] >= 0
        return found[0][keep].astype(np.int64), scores[0][keep].astype(np.float32)

    def _bm25(self, question: str, n: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(full score array over BM25 rows, rows of the top ``n`` with a positive score)."""
        bm25 = self.index.bm25
        scores = bm25.scores(question)
        if allowed is not None:
            masked = np.zeros_like(scores)
            rows = bm25.rows_of(allowed)
            masked[rows] = scores[rows]
            scores = masked
        n = min(n, len(scores))
        if n == 0:
            return scores, np.zeros(0, dtype=np.int64)
        top = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
        return scores, top[scores[top] > 0]

    # ------------------------------------------------------------------ search
    def search(self, question: str, qvec: np.ndarray, k: int, *, mode: str | None = None,
               doc_ids: Collection[str] | None = None) -> list[Passage]:
        """Top ``k`` passages for ``question`` (``qvec`` is its embedding)."""
        mode = mode or self.config.retriever
        if mode not in RETRIEVERS:
            raise InputError(f"retriever {mode!r} is unknown; choose one of {', '.join(RETRIEVERS)}")
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        allowed = self._allowed_ids(doc_ids)
        available = len(self.index.chunks) if allowed is None else len(allowed)
        if available == 0:
            return []
        k = min(k, available)
        n = max(self.config.candidates, k)

        dense_ids, dense_scores = self._dense(qvec, n, allowed)
        bm25_all, bm25_rows = self._bm25(question, n, allowed)
        bm25_ids = self.index.bm25.ids[bm25_rows]
        if mode == "bm25":
            # BM25 ranks the passages sharing a term with the question; dense order fills the rest up to k.
            by_score = np.lexsort((bm25_ids, -bm25_all[bm25_rows]))
            bm25_ids = bm25_ids[by_score]
            ids = np.concatenate([bm25_ids, dense_ids[~np.isin(dense_ids, bm25_ids)]])
        elif mode == "dense":
            ids = dense_ids
        else:
            ids = np.union1d(dense_ids, bm25_ids)
        if not len(ids):
            return []
        # Both scores for every candidate: dense from its list or its stored vector, BM25 from the full array.
        cos = np.full(len(ids), np.nan, dtype=np.float32)
        where = {int(i): j for j, i in enumerate(ids)}
        for i, score in zip(dense_ids, dense_scores):
            cos[where[int(i)]] = score
        missing = np.isnan(cos)
        if missing.any():
            cos[missing] = self.index.reconstruct(ids[missing]) @ qvec.astype(np.float32)
        lexical = bm25_all[self.index.bm25.rows_of(ids)].astype(np.float32)
        if mode == "bm25":
            fused = lexical.copy()
            order = np.arange(min(k, len(ids)))
        else:
            if mode == "dense":
                fused = cos.copy()
            else:
                fused = self._fuse(cos, lexical)
                # Footnotes are bibliographic references: they seldom answer a question themselves.
                footnotes = np.isin(ids, self.index.footnote_ids)
                if footnotes.any():
                    fused[footnotes] *= self.config.footnote_weight
            # Ties break by chunk id: the order a ranking of every row gave.
            order = np.lexsort((ids, -fused))[:k]
        chosen = [int(ids[j]) for j in order]
        chunks = self.index.store.chunks(chosen)
        titles = self.index.store.titles([c.doc_id for c in chunks.values()])
        passages = []
        for rank, j in enumerate(order, start=1):
            chunk = chunks[int(ids[j])]
            passages.append(Passage(text=chunk.text, doc_id=chunk.doc_id, title=titles.get(chunk.doc_id, ""),
                                    section=chunk.section, start=chunk.start, end=chunk.end, score=float(fused[j]),
                                    chunk_id=int(ids[j]), rank=rank, dense_score=float(cos[j]),
                                    bm25_score=float(lexical[j])))
        return passages

    def _fuse(self, dense: np.ndarray, bm25: np.ndarray) -> np.ndarray:
        """Combine the dense and BM25 scores of the candidates."""
        w = self.config.dense_weight
        if not len(dense):
            return dense.copy()
        if self.config.fusion == "rrf":
            c = self.config.rrf_k
            return (w / (c + _ranks(dense)) + (1 - w) / (c + _ranks(bm25))).astype(np.float32)
        # Convex combination: dense min-max normalised, BM25 divided by its maximum (0 stays 0).
        span = float(dense.max() - dense.min()) or 1.0
        top = float(bm25.max()) or 1.0
        return (w * (dense - dense.min()) / span + (1 - w) * bm25 / top).astype(np.float32)


#: A document filter over at most this many chunks is scored exactly, whatever the vector store.
EXACT_FILTER_ROWS = 20_000


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each score, best first (ties broken by position)."""
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.arange(1, len(scores) + 1)
    return ranks


# ---------------------------------------------------------------------- reranking
def doc_id_set(doc_ids: Any) -> set[str]:
    """Document ids as a set: one id given as a string is that id (not its characters)."""
    if isinstance(doc_ids, str):
        return {doc_ids}
    try:
        ids = set(doc_ids)
    except TypeError:
        raise InputError(f"doc_ids must be a document id or a list of them, got {type(doc_ids).__name__}") from None
    if not all(isinstance(i, str) for i in ids):
        raise InputError(f"doc_ids must be strings, got {sorted(map(repr, ids))}")
    return ids


class Reranker(Protocol):
    """Reorders first-stage passages, best first (it may use what the reader made of them)."""

    def rerank(self, question: str, passages: Sequence[Passage], readings: Sequence[Reading]) -> list[Passage]:
        ...


class ReadingReranker:
    """Passages the reader read come first, by ``(1 - w) * reader score + w * first-stage score / best
    first-stage score``; the others follow in retrieval order.

    The reader judges one passage at a time; the first stage knows how the passage compares with the
    whole corpus. Together they rank the relevant passage first more often than either alone (see
    ``Config.rerank_retrieval_weight``).
    """

    def __init__(self, retrieval_weight: float = 0.0) -> None:
        if not 0.0 <= retrieval_weight <= 1.0:
            raise ConfigError(f"rerank_retrieval_weight must be between 0 and 1, got {retrieval_weight!r}")
        self.retrieval_weight = retrieval_weight

    def rerank(self, question: str, passages: Sequence[Passage], readings: Sequence[Reading]) -> list[Passage]:
        score = {(r.passage.doc_id, r.passage.start, r.passage.end): r.score for r in readings}
        top = max((p.score for p in passages), default=0.0)
        top = top if top > 0 else 1.0
        w = self.retrieval_weight
        keyed = []
        for i, p in enumerate(passages):
            s = score.get((p.doc_id, p.start, p.end))
            combined = None if s is None else (1 - w) * s + w * p.score / top
            keyed.append((combined, i, p, s))
        keyed.sort(key=lambda t: (t[0] is None, -(t[0] or 0.0), t[1]))
        return [replace(p, rank=rank, reader_score=s) for rank, (_c, _i, p, s) in enumerate(keyed, start=1)]


class RetrievalOrder:
    """No reranking: the first-stage order, with the reader's scores attached."""

    def rerank(self, question: str, passages: Sequence[Passage], readings: Sequence[Reading]) -> list[Passage]:
        score = {(r.passage.doc_id, r.passage.start, r.passage.end): r.score for r in readings}
        return [replace(p, reader_score=score.get((p.doc_id, p.start, p.end))) for p in passages]


def make_reranker(name: str, retrieval_weight: float = 0.0) -> Reranker:
    if name == "reader":
        return ReadingReranker(retrieval_weight)
    if name == "none":
        return RetrievalOrder()
    raise ConfigError(f"reranker {name!r} is unknown; choose one of {', '.join(RERANKERS)}")
