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
    """Searches one index. Validates its mode on construction."""

    def __init__(self, index: Index, embedder: Embedder, config: Config) -> None:
        if index.vectors.d != embedder.dimension:
            raise InputError(f"index dimension {index.vectors.d} differs from the model's {embedder.dimension}")
        self.index = index
        self.embedder = embedder
        self.config = config
        self._footnote_rows = np.asarray([i for i, c in enumerate(index.chunks) if c.kind == "footnote"],
                                         dtype=np.int64)

    # ------------------------------------------------------------------ helpers
    def _allowed_rows(self, doc_ids: Collection[str] | None) -> np.ndarray | None:
        if doc_ids is None:
            return None
        wanted = doc_id_set(doc_ids)
        unknown = wanted - set(self.index.documents)
        if unknown:
            raise InputError(f"unknown document id(s): {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(sorted(self.index.documents))}")
        return np.asarray([i for i, c in enumerate(self.index.chunks) if c.doc_id in wanted], dtype=np.int64)

    def _dense_all(self, qvec: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
        """Cosine of the question to every row (-inf for rows filtered out)."""
        import faiss

        n = len(self.index.chunks)
        available = n if allowed is None else len(allowed)
        params = None if allowed is None else faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
        scores, rows = self.index.vectors.search(qvec.reshape(1, -1).astype(np.float32), available, params=params)
        out = np.full(n, -np.inf, dtype=np.float32)
        keep = rows[0] >= 0
        out[rows[0][keep]] = scores[0][keep]
        return out

    def _bm25_all(self, question: str, allowed: np.ndarray | None) -> np.ndarray:
        scores = self.index.bm25.scores(question)
        if allowed is None:
            return scores
        out = np.full_like(scores, -np.inf)
        out[allowed] = scores[allowed]
        return out

    # ------------------------------------------------------------------ search
    def search(self, question: str, qvec: np.ndarray, k: int, *, mode: str | None = None,
               doc_ids: Collection[str] | None = None) -> list[Passage]:
        """Top ``k`` passages for ``question`` (``qvec`` is its embedding)."""
        mode = mode or self.config.retriever
        if mode not in RETRIEVERS:
            raise InputError(f"retriever {mode!r} is unknown; choose one of {', '.join(RETRIEVERS)}")
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        allowed = self._allowed_rows(doc_ids)
        available = len(self.index.chunks) if allowed is None else len(allowed)
        if available == 0:
            return []
        k = min(k, available)

        dense_all = self._dense_all(qvec, allowed)
        bm25_all = self._bm25_all(question, allowed)
        if mode == "dense":
            fused = dense_all
        elif mode == "bm25":
            fused = bm25_all
        else:
            fused = self._fuse(dense_all, bm25_all)
            # Footnotes are bibliographic references: they seldom answer a question themselves.
            footnotes = self._footnote_rows
            if len(footnotes):
                fused[footnotes] *= self.config.footnote_weight
        order = np.argsort(-fused, kind="stable")[:k]
        passages = []
        for rank, row in enumerate((int(r) for r in order if np.isfinite(fused[r])), start=1):
            score = float(fused[row])
            cos = float(dense_all[row])
            chunk = self.index.chunks[row]
            doc = self.index.documents[chunk.doc_id]
            passages.append(Passage(text=chunk.text, doc_id=chunk.doc_id, title=doc.title, section=chunk.section,
                                    start=chunk.start, end=chunk.end, score=float(score), chunk_id=int(row),
                                    rank=rank, dense_score=float(cos), bm25_score=float(bm25_all[row])))
        return passages

    def _fuse(self, dense: np.ndarray, bm25: np.ndarray) -> np.ndarray:
        """Combine full dense and BM25 score arrays (rows filtered out are -inf in both)."""
        w = self.config.dense_weight
        valid = np.isfinite(dense)
        fused = np.full_like(dense, -np.inf)
        if not valid.any():
            return fused
        if self.config.fusion == "rrf":
            c = self.config.rrf_k
            fused[valid] = w / (c + _ranks(dense[valid])) + (1 - w) / (c + _ranks(bm25[valid]))
            return fused
        # Convex combination: dense min-max normalised, BM25 divided by its maximum (0 stays 0).
        d = dense[valid]
        span = float(d.max() - d.min()) or 1.0
        top = float(bm25[valid].max()) or 1.0
        fused[valid] = w * (d - d.min()) / span + (1 - w) * bm25[valid] / top
        return fused


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
