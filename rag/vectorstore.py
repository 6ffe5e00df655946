"""The dense side of the index: FAISS vectors under stable chunk ids, exact or approximate by size.

Two kinds behind one interface (add, remove by id, search top-N, reconstruct, save, load):

``flat``  ``IndexIDMap2(IndexFlatIP)``: exact inner product (cosine: the vectors are normalised).
          Every query scans every vector, which is the right choice while that is fast.
``ivf``   ``IVF{nlist},SQ8`` from ``faiss.index_factory``: vectors kept as 8-bit scalars in ``nlist``
          k-means cells trained on a sample; a query scans the ``nprobe`` nearest cells. A hash-table
          direct map makes ids removable and reconstructable.

The kind is chosen by corpus size (``Config.vector_index``, ``Config.ivf_threshold``) and recorded in
the manifest. Ids are the chunk ids of the chunk store, so removing or updating a document touches only
its own rows.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, InputError

log = logging.getLogger(__name__)

KINDS = ("flat", "ivf")


def choose_kind(requested: str, n_vectors: int, threshold: int) -> str:
    """``requested`` unless it is "auto": then flat below ``threshold`` vectors, ivf from it on."""
    if requested in KINDS:
        return requested
    if requested != "auto":
        raise ConfigError(f"vector_index {requested!r} is unknown; choose auto, {' or '.join(KINDS)}")
    return "ivf" if n_vectors >= threshold else "flat"


def default_nlist(n_vectors: int) -> int:
    """About 4·sqrt(N) cells (the usual rule), a power of two, at least 16: each cell then holds ~sqrt(N)/4
    vectors, and training has the 39 points per cell faiss asks for once N ≥ ~600·nlist/16."""
    return max(16, 2 ** round(math.log2(4 * math.sqrt(max(n_vectors, 1)))))


#: Training points per IVF cell: faiss's own minimum for k-means (it warns below it).
_POINTS_PER_CELL = 39

#: From this many queries in one call faiss searches with all its threads (fewer: one thread, see search).
_PARALLEL_QUERIES = 16


class VectorStore:
    """Normalised vectors under int64 ids; ``search`` returns inner products, best first."""

    def __init__(self, index: Any, kind: str, nprobe: int = 1) -> None:
        if kind not in KINDS:
            raise ConfigError(f"vector store kind {kind!r} is unknown; choose {' or '.join(KINDS)}")
        self.index = index
        self.kind = kind
        self.nprobe = max(1, int(nprobe))

    # ------------------------------------------------------------------ creating
    @classmethod
    def create(cls, dim: int, kind: str, *, training: np.ndarray | None = None, nlist: int = 0,
               nprobe: int = 1, training_sample: int = 0, seed: int = 13) -> "VectorStore":
        """An empty store of ``kind``; ``ivf`` is trained on ``training`` (a sample of the vectors to come)."""
        import faiss

        if kind == "flat":
            return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dim)), kind, nprobe)
        if kind != "ivf":
            raise ConfigError(f"vector store kind {kind!r} is unknown; choose {' or '.join(KINDS)}")
        if training is None or len(training) == 0:
            raise InputError("an ivf vector store needs training vectors; build it from at least one document")
        nlist = nlist or default_nlist(len(training))
        # k-means needs more points than cells; a small corpus forced to ivf gets fewer cells.
        nlist = max(1, min(nlist, len(training) // 4 or 1))
        # Never fewer than the points per cell faiss asks for (it warns below 39): 160k of 1M for 4,096 cells.
        training_sample = max(training_sample, _POINTS_PER_CELL * nlist) if training_sample else 0
        sample = training
        if training_sample and len(training) > training_sample:
            rows = np.random.default_rng(seed).choice(len(training), training_sample, replace=False)
            sample = training[np.sort(rows)]
        index = faiss.index_factory(dim, f"IVF{nlist},SQ8", faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        log.info("trained an IVF%d,SQ8 vector store on %d vectors", nlist, len(sample))
        return cls(index, kind, nprobe)

    # ------------------------------------------------------------------ facts
    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    @property
    def d(self) -> int:
        return int(self.index.d)

    @property
    def nlist(self) -> int:
        return int(self.index.nlist) if self.kind == "ivf" else 0

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the vectors."""
        factory = "IDMap2,Flat" if self.kind == "flat" else f"IVF{self.nlist},SQ8"
        return {"kind": self.kind, "factory": factory, "vectors": self.ntotal,
                **({"nlist": self.nlist} if self.kind == "ivf" else {})}

    # ------------------------------------------------------------------ changing
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids) != len(vectors):
            raise InputError(f"{len(ids)} ids for {len(vectors)} vectors")
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)

    def remove(self, ids: np.ndarray) -> int:
        """Remove these ids (unknown ones are ignored); returns how many went."""
        import faiss

        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return 0
        # IVF's hash-table direct map removes only by an explicit array of ids.
        return int(self.index.remove_ids(faiss.IDSelectorArray(len(ids), faiss.swig_ptr(ids))))

    # ------------------------------------------------------------------ reading
    def search(self, queries: np.ndarray, k: int, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (scores, ids) per query row, best first; -1 ids pad rows with fewer hits.

        ``ids`` restricts the search to those ids (a document filter).
        """
        import faiss

        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(int(k), max(self.ntotal, 1)))
        sel = None if ids is None else faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))
        if self.kind == "ivf":
            params = faiss.SearchParametersIVF(nprobe=min(self.nprobe, self.nlist), sel=sel)
        else:
            params = None if sel is None else faiss.SearchParameters(sel=sel)
        if len(queries) >= _PARALLEL_QUERIES:
            return self.index.search(queries, k, params=params)
        # A few queries: one OpenMP thread. With two, one flat query over 150k vectors took 23 ms instead of
        # 10 (threads spin and split a small job); IVF is no faster either (eval/experiments/ann_choice.py).
        # omp_set_num_threads applies to the calling thread only, so concurrent searches do not interfere.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return self.index.search(queries, k, params=params)
        finally:
            faiss.omp_set_num_threads(threads)

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (approximate for ``ivf``: 8-bit scalars)."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return np.zeros((0, self.d), dtype=np.float32)
        try:
            return self.index.reconstruct_batch(ids).astype(np.float32, copy=False)
        except RuntimeError as exc:  # an id that is not stored
            raise KeyError(f"vector ids not in the store ({exc})") from None

    def all_ids(self) -> np.ndarray:
        """Every stored id, ascending."""
        import faiss

        if self.kind == "flat":
            return np.sort(faiss.vector_to_array(self.index.id_map).astype(np.int64))
        invlists = self.index.invlists
        parts = [faiss.rev_swig_ptr(invlists.get_ids(c), invlists.list_size(c)).copy()
                 for c in range(self.nlist) if invlists.list_size(c)]
        return np.sort(np.concatenate(parts).astype(np.int64)) if parts else np.zeros(0, dtype=np.int64)

    def clone(self) -> "VectorStore":
        """An independent copy (the next version is edited while readers search this one)."""
        import faiss

        # clone_index copies IVF with its hash-table direct map too: 4x faster than a serialise round trip.
        return VectorStore(faiss.clone_index(self.index), self.kind, self.nprobe)

    # ------------------------------------------------------------------ files
    def save(self, path: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, kind: str, nprobe: int = 1) -> "VectorStore":
        import faiss

        index = faiss.read_index(str(path))
        if kind == "ivf":
            if not isinstance(index, faiss.IndexIVF):
                raise ValueError(f"{path} holds {type(index).__name__}, not an IVF index")
            if index.direct_map.type != faiss.DirectMap.Hashtable:
                index.set_direct_map_type(faiss.DirectMap.Hashtable)
        elif not isinstance(index, faiss.IndexIDMap2):
            raise ValueError(f"{path} holds {type(index).__name__}, not an id-mapped flat index")
        return cls(index, kind, nprobe)
