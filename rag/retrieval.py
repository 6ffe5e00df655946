"""Stage 5: retrieve the passages most relevant to a question, best first.

Three modes over the same rows: ``dense`` (FAISS inner product of normalised
MiniLM vectors), ``bm25`` (bm25s) and ``hybrid`` (the two rankings fused by
reciprocal rank, or by a weighted sum of min-max normalised scores).
"""

from __future__ import annotations

import logging
from typing import Collection

import numpy as np

from .config import RETRIEVERS, Config
from .embedding import Embedder
from .errors import InputError
from .index import Index
from .types import Passage

log = logging.getLogger(__name__)


class Retriever:
    """Searches one index. Validates its mode on construction."""

    def __init__(self, index: Index, embedder: Embedder, config: Config) -> None:
        if index.vectors.d != embedder.dimension:
            raise InputError(f"index dimension {index.vectors.d} differs from the model's {embedder.dimension}")
        self.index = index
        self.embedder = embedder
        self.config = config

    # ------------------------------------------------------------------ helpers
    def _allowed_rows(self, doc_ids: Collection[str] | None) -> np.ndarray | None:
        if doc_ids is None:
            return None
        wanted = set(doc_ids)
        unknown = wanted - set(self.index.documents)
        if unknown:
            raise InputError(f"unknown document id(s): {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(sorted(self.index.documents))}")
        return np.asarray([i for i, c in enumerate(self.index.chunks) if c.doc_id in wanted], dtype=np.int64)

    def _dense(self, qvec: np.ndarray, n: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        params = None
        if allowed is not None:
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed))
        scores, rows = self.index.vectors.search(qvec.reshape(1, -1).astype(np.float32), n, params=params)
        keep = rows[0] >= 0
        return rows[0][keep], scores[0][keep]

    def _bm25(self, question: str, n: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        scores = self.index.bm25.scores(question)
        if allowed is not None:
            masked = np.full_like(scores, -np.inf)
            masked[allowed] = scores[allowed]
            scores = masked
        n = min(n, int(np.isfinite(scores).sum()))
        if n <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        return top.astype(np.int64), scores[top]

    def dense_scores(self, qvec: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Cosine of the question to the given rows."""
        if len(rows) == 0:
            return np.zeros(0, dtype=np.float32)
        return self.index.reconstruct(rows) @ qvec.astype(np.float32)

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
        n = min(max(self.config.candidates, k), available)

        bm25_all = self.index.bm25.scores(question)
        if mode == "dense":
            rows, scores = self._dense(qvec, k, allowed)
            fused = dict(zip(rows.tolist(), scores.tolist()))
        elif mode == "bm25":
            rows, scores = self._bm25(question, k, allowed)
            fused = dict(zip(rows.tolist(), scores.tolist()))
        else:
            d_rows, d_scores = self._dense(qvec, n, allowed)
            b_rows, b_scores = self._bm25(question, n, allowed)
            fused = self._fuse(d_rows, d_scores, b_rows, b_scores)
        ranked = sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]
        rows = np.asarray([r for r, _ in ranked], dtype=np.int64)
        dense = self.dense_scores(qvec, rows)
        passages = []
        for rank, ((row, score), cos) in enumerate(zip(ranked, dense), start=1):
            chunk = self.index.chunks[row]
            doc = self.index.documents[chunk.doc_id]
            passages.append(Passage(text=chunk.text, doc_id=chunk.doc_id, title=doc.title, section=chunk.section,
                                    start=chunk.start, end=chunk.end, score=float(score), chunk_id=int(row),
                                    rank=rank, dense_score=float(cos), bm25_score=float(bm25_all[row])))
        return passages

    def _fuse(self, d_rows: np.ndarray, d_scores: np.ndarray, b_rows: np.ndarray, b_scores: np.ndarray
              ) -> dict[int, float]:
        w = self.config.dense_weight
        fused: dict[int, float] = {}
        if self.config.fusion == "rrf":
            c = self.config.rrf_k
            for rank, row in enumerate(d_rows.tolist(), start=1):
                fused[row] = fused.get(row, 0.0) + w / (c + rank)
            for rank, row in enumerate(b_rows.tolist(), start=1):
                fused[row] = fused.get(row, 0.0) + (1 - w) / (c + rank)
            return fused
        # Weighted sum of min-max normalised scores; a row missing from one list gets 0 there.
        for rows, scores, weight in ((d_rows, d_scores, w), (b_rows, b_scores, 1 - w)):
            if len(rows) == 0:
                continue
            lo, hi = float(scores.min()), float(scores.max())
            span = hi - lo or 1.0
            for row, score in zip(rows.tolist(), scores.tolist()):
                fused[row] = fused.get(row, 0.0) + weight * (score - lo) / span
        return fused
