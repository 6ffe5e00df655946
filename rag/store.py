"""The index's chunk and document store: one SQLite file (stdlib), read by id when needed.

A store file belongs to one version of an index folder, which is written once and then only read
(a change writes a new version beside it and swaps the folder, see ``rag.index``). So readers open it
read-only with ``immutable=1``: no journal, no lock files, nothing written beside it, and a version
that is swapped out stays readable by whoever still holds it open. The writer fills a private copy
with the journal off (a crash leaves only a temporary folder, which the next writer removes) and the
file is fsynced before it is swapped in.

Tables (STRICT, so a wrong type is refused on write):
``documents``  one row per document: metadata, sections, blocks, pages (JSON) and the full text
``chunks``     one row per chunk under its stable id (= its FAISS id): span, section, kind, tokens,
               its text (an exact slice of its document) and its analysed BM25 terms
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .errors import IndexCorruptError
from .types import Block, Chunk, Document, Page, Section

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE documents (
    doc_id TEXT PRIMARY KEY, position INTEGER NOT NULL, title TEXT NOT NULL, path TEXT NOT NULL,
    sha256 TEXT NOT NULL, meta TEXT NOT NULL, sections TEXT NOT NULL, blocks TEXT NOT NULL, pages TEXT NOT NULL,
    length INTEGER NOT NULL, text TEXT NOT NULL, source_stamp TEXT NOT NULL DEFAULT '') STRICT;
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY, doc_id TEXT NOT NULL, section TEXT NOT NULL, start INTEGER NOT NULL,
    "end" INTEGER NOT NULL, kind TEXT NOT NULL, tokens INTEGER NOT NULL, text TEXT NOT NULL,
    terms TEXT NOT NULL) STRICT;
CREATE INDEX chunks_by_doc ON chunks(doc_id);
-- Fusion weighs footnotes down: their ids are found without scanning every chunk.
CREATE INDEX chunks_footnotes ON chunks(id) WHERE kind = 'footnote';
"""

#: Documents kept decoded per store (a question's passages come from a few documents).
DOCUMENT_CACHE = 64
#: SQLite limits bound parameters per statement; id lists are sent in batches of this many.
_BATCH = 900
#: Documents whose texts ``ChunkStore.check`` holds at once (a document may be tens of megabytes).
_CHECK_BATCH = 16


@dataclass(frozen=True)
class DocumentInfo:
    """What is known of a stored document without reading its text."""

    doc_id: str
    title: str
    path: str
    sha256: str
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    chunks: int = 0
    #: ``rag.documents.source_stamp`` of its file when it was last read ("" unknown).
    source_stamp: str = ""


class StoreError(IndexCorruptError, ValueError):
    """The store file is unreadable or inconsistent.

    An ``IndexCorruptError``: a store trusted by its recorded size and mtime is not checked at load, so
    damage may first be met when a row is read during a question; it is then this one clear error (naming
    the rebuild, for a store read from an index folder), never a traceback."""


def _doc_row(doc: Document, position: int, stamp: str = "") -> tuple:
    return (doc.doc_id, position, doc.title, doc.path, doc.sha256, json.dumps(doc.meta, ensure_ascii=False),
            json.dumps([[s.title, s.start, s.end] for s in doc.sections], ensure_ascii=False),
            json.dumps([[b.start, b.end, b.kind, b.section] for b in doc.blocks], ensure_ascii=False),
            json.dumps([[p.start, p.end, p.number] for p in doc.pages]), len(doc.text), doc.text, stamp)


@lru_cache(maxsize=1)
def _expected_columns() -> dict[str, list[tuple]]:
    """``PRAGMA table_info`` of each table as ``SCHEMA`` creates it."""
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(SCHEMA)
        return {t: db.execute(f"PRAGMA table_info({t})").fetchall() for t in ("documents", "chunks")}
    finally:
        db.close()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: The JSON columns of a document row holding spans: the type of each field of an entry, the position of
#: its start (its end follows), and what an entry is called in messages.
_SPAN_LISTS = {"sections": ((str, int, int), 1, "section"), "blocks": ((int, int, str, str), 0, "block"),
               "pages": ((int, int, int), 0, "page")}


def _structure(doc_id: str, length: int, meta: Any, **spans: Any) -> tuple[dict[str, Any], dict[str, list]]:
    """The metadata and span lists (``sections``, ``blocks``, ``pages``) of a document row, parsed and checked:
    well-formed JSON, entries of the right types, spans inside its ``length`` characters. What a document
    read from the store may be trusted with (``section_at`` compares offsets; the reader slices by them)."""
    try:
        parsed_meta = json.loads(meta)
        parsed = {name: json.loads(value) for name, value in spans.items()}
    except (ValueError, TypeError) as exc:
        raise StoreError(f"document {doc_id!r} is malformed in the store ({exc})") from None
    if not isinstance(parsed_meta, dict):
        raise StoreError(f"document {doc_id!r} has metadata that is not a mapping ({type(parsed_meta).__name__})")
    for name, entries in parsed.items():
        types, at, what = _SPAN_LISTS[name]
        if not isinstance(entries, list) or not all(
                isinstance(e, list) and len(e) == len(types)
                and all(_is_int(v) if t is int else isinstance(v, t) for v, t in zip(e, types)) for e in entries):
            raise StoreError(f"document {doc_id!r} has malformed {name} in the store")
        if any(not 0 <= e[at] <= e[at + 1] <= length for e in entries):
            raise StoreError(f"document {doc_id!r} has {what} spans outside its text")
    return parsed_meta, parsed


def _document(row: Sequence[Any]) -> Document:
    doc_id, title, path, sha256, meta, sections, blocks, pages, length, text = row
    if len(text) != length:
        raise StoreError(f"document {doc_id!r} does not have its recorded length")
    parsed_meta, parsed = _structure(doc_id, length, meta, sections=sections, blocks=blocks, pages=pages)
    return Document(doc_id=doc_id, title=title, path=path, text=text, sha256=sha256,
                    sections=tuple(Section(*s) for s in parsed["sections"]),
                    blocks=tuple(Block(*b) for b in parsed["blocks"]), meta=parsed_meta,
                    pages=tuple(Page(*p) for p in parsed["pages"]))


def _chunk(row: Sequence[Any]) -> Chunk:
    """A chunk row (with its document's length, None when there is no such document), checked: readers
    slice its document by its span, so a span outside it must never reach them."""
    chunk_id, doc_id, section, start, end, kind, tokens, text, length = row
    if length is None:
        raise StoreError(f"chunk {chunk_id} belongs to no document")
    if not (_is_int(start) and _is_int(end) and 0 <= start < end <= length and len(text) == end - start):
        raise StoreError(f"chunk {chunk_id} spans {start}-{end}, outside its document ({length} characters) "
                         f"or not its text")
    return Chunk(doc_id, section, start, end, text, kind, tokens)


#: A chunk row joined with its document's length (``_chunk`` checks the span against it).
_CHUNK_COLUMNS = 'c.id, c.doc_id, c.section, c.start, c."end", c.kind, c.tokens, c.text, d.length'
_CHUNKS_FROM = "chunks c LEFT JOIN documents d ON d.doc_id = c.doc_id"


#: OS errors that say a file cannot be written at all (full disk, quota, read-only or forbidden folder).
_CANNOT_WRITE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def _identity(st: os.stat_result) -> tuple[int, ...]:
    """Which file, and which state of it: device, inode, size, modification time."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _copy_file(source: BinaryIO, path: Path) -> None:
    """Copy the open file ``source`` to a new file at ``path``: in the kernel (copy_file_range) where the
    file system allows, else by reading and writing."""
    size = os.fstat(source.fileno()).st_size
    with path.open("wb") as target:
        done = 0
        try:
            while done < size:
                copied = os.copy_file_range(source.fileno(), target.fileno(), size - done, done, done)
                if copied == 0:
                    break
                done += copied
        except OSError:
            source.seek(done)
            target.seek(done)
            shutil.copyfileobj(source, target, 1 << 24)
            done = target.tell()
        if done != size:
            raise OSError(f"copied {done} of {size} bytes of {source.name}")


class ChunkStore:
    """One store file. Read-only unless opened with ``writable=True`` (the writer's private copy)."""

    FILE = "store.sqlite3"

    def __init__(self, path: Path, *, writable: bool = False) -> None:
        self.path = Path(path)
        self.writable = writable
        self._lock = threading.Lock()  # one connection shared by the server's threads, one statement at a time
        self._docs: OrderedDict[str, Document] = OrderedDict()
        self._doc_ids: list[str] | None = None
        self._doc_id_set: frozenset[str] | None = None
        self._identity: tuple[int, ...] | None = None
        self._conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.writable:
                conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
                conn.execute("PRAGMA journal_mode=OFF")  # the private copy is thrown away on any failure
                conn.execute("PRAGMA synchronous=OFF")  # fsynced as a whole before the swap
            else:
                uri = f"{self.path.resolve().as_uri()}?mode=ro&immutable=1"
                conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # fails now on a non-database
                # Which file was opened (a swap cannot happen meanwhile: loads hold the swap lock).
                self._identity = _identity(self.path.stat())
        except sqlite3.Error as exc:
            raise self._corrupt(f"{self.path} is not a readable store ({exc})") from exc
        return conn

    def _corrupt(self, message: str) -> StoreError:
        """``message`` as this store's error: a store read from an index folder names the command that
        rebuilds it (the writer's private copy has no such folder yet)."""
        if self.writable:
            return StoreError(message)
        return StoreError(f"{message}; rebuild the index with: rag ingest --rebuild --index {self.path.parent}")

    # ------------------------------------------------------------------ life cycle
    @classmethod
    def create(cls, path: Path) -> "ChunkStore":
        """A new empty writable store at ``path``."""
        store = cls(path, writable=True)
        store._conn.executescript(SCHEMA)
        return store

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def reopen(self, path: Path) -> None:
        """Read the same file, now at ``path`` (after the swap), read-only."""
        with self._lock:
            self._conn.close()
            self.path, self.writable = Path(path), False
            self._conn = self._connect()

    def copy_to(self, path: Path) -> None:
        """A consistent copy of this store at ``path``.

        A store read from an index is never written (a new version is a new file), so its file is copied by
        the kernel (a 1.9 GB store in about 1 s, against 5-7 s for SQLite's page-by-page backup), provided it
        is still the file this connection opened; otherwise, and for a writable store, SQLite's backup."""
        if not self.writable and self._identity is not None:
            try:
                with self.path.open("rb") as source:
                    if _identity(os.fstat(source.fileno())) == self._identity:
                        _copy_file(source, path)
                        return
            except OSError as exc:
                path.unlink(missing_ok=True)
                if exc.errno in _CANNOT_WRITE:
                    raise  # the target cannot be written: SQLite could not write it either
                log.debug("cannot copy %s as a file (%s); using SQLite's backup", self.path, exc)
        target = sqlite3.connect(str(path))
        try:
            with self._lock:
                self._conn.backup(target)
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                raise OSError(errno.ENOSPC, f"no space left for {path} ({exc})") from exc
            raise StoreError(f"cannot copy {self.path} to {path} ({exc})") from exc
        finally:
            target.close()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self._corrupt(f"{self.path}: {exc}") from exc

    def _by_ids(self, sql: str, ids: Sequence[Any]) -> list[tuple]:
        """``sql`` has one ``{marks}`` for an IN list; run it over ``ids`` in batches."""
        rows: list[tuple] = []
        for i in range(0, len(ids), _BATCH):
            part = list(ids[i:i + _BATCH])
            rows.extend(self._query(sql.format(marks=",".join("?" * len(part))), part))
        return rows

    # ------------------------------------------------------------------ writing (private copy only)
    def write(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self._lock:
            try:
                self._conn.executemany(sql, rows)
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: {exc}") from exc

    def begin(self) -> None:
        with self._lock:
            self._conn.execute("BEGIN")

    def commit(self) -> None:
        with self._lock:
            self._conn.execute("COMMIT")
        self._docs.clear()
        self._doc_ids = self._doc_id_set = None

    def put_documents(self, docs: Iterable[tuple[Document, int]], stamps: Mapping[str, str] | None = None) -> None:
        stamps = stamps or {}
        self.write("INSERT OR REPLACE INTO documents VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                   (_doc_row(d, pos, stamps.get(d.doc_id, "")) for d, pos in docs))

    def set_source_stamps(self, stamps: Mapping[str, str]) -> None:
        self.write("UPDATE documents SET source_stamp=? WHERE doc_id=?", ((s, d) for d, s in stamps.items()))

    def put_chunks(self, rows: Iterable[tuple[int, Chunk, str]]) -> None:
        self.write("INSERT INTO chunks VALUES (?,?,?,?,?,?,?,?,?)",
                   ((i, c.doc_id, c.section, c.start, c.end, c.kind, c.tokens, c.text, terms)
                    for i, c, terms in rows))

    def delete_documents(self, doc_ids: Sequence[str]) -> np.ndarray:
        """Delete documents and their chunks; returns the chunk ids deleted."""
        ids = self.chunk_ids_of(doc_ids)
        for i in range(0, len(doc_ids), _BATCH):
            part = list(doc_ids[i:i + _BATCH])
            marks = ",".join("?" * len(part))
            with self._lock:
                self._conn.execute(f"DELETE FROM chunks WHERE doc_id IN ({marks})", part)
                self._conn.execute(f"DELETE FROM documents WHERE doc_id IN ({marks})", part)
        return ids

    def set_positions(self, positions: Mapping[str, int]) -> None:
        self.write("UPDATE documents SET position=? WHERE doc_id=?", ((p, d) for d, p in positions.items()))

    def set_descriptions(self, docs: Iterable[Document]) -> None:
        """Update title, path and metadata of documents whose text is unchanged."""
        self.write("UPDATE documents SET title=?, path=?, meta=? WHERE doc_id=?",
                   ((d.title, d.path, json.dumps(d.meta, ensure_ascii=False), d.doc_id) for d in docs))

    # ------------------------------------------------------------------ reading
    def count(self) -> int:
        return int(self._query("SELECT count(*) FROM chunks")[0][0])

    def doc_ids(self) -> list[str]:
        """Document ids in their recorded order."""
        if self._doc_ids is None:
            self._doc_ids = [r[0] for r in self._query("SELECT doc_id FROM documents ORDER BY position, doc_id")]
        return self._doc_ids

    def doc_id_set(self) -> frozenset[str]:
        if self._doc_id_set is None:
            self._doc_id_set = frozenset(self.doc_ids())
        return self._doc_id_set

    def descriptions(self) -> dict[str, DocumentInfo]:
        """Per document id, in order: title, path, sha256, meta and chunk count, without the text."""
        counts = dict(self._query("SELECT doc_id, count(*) FROM chunks GROUP BY doc_id"))
        out: dict[str, DocumentInfo] = {}
        for doc_id, title, path, sha256, meta, stamp in self._query(
                "SELECT doc_id, title, path, sha256, meta, source_stamp FROM documents ORDER BY position, doc_id"):
            try:
                parsed, _spans = _structure(doc_id, 0, meta)
            except StoreError as exc:
                # Not fatal here: this listing is what an ingest plans from, so raising would stop the very
                # rebuild that repairs the store (its file is read again). Reading the document still fails.
                log.warning("%s: %s; its metadata is ignored until the index is rebuilt (rag ingest --rebuild "
                            "--index %s)", self.path, exc, self.path.parent)
                parsed = {}
            out[doc_id] = DocumentInfo(doc_id, title, path, sha256, parsed, int(counts.get(doc_id, 0)), stamp)
        return out

    def document(self, doc_id: str) -> Document | None:
        doc = self._docs.get(doc_id)
        if doc is not None:
            self._docs.move_to_end(doc_id)
            return doc
        rows = self._query("SELECT doc_id, title, path, sha256, meta, sections, blocks, pages, length, text "
                           "FROM documents WHERE doc_id=?", (doc_id,))
        if not rows:
            return None
        try:
            doc = _document(rows[0])
        except StoreError as exc:
            raise self._corrupt(f"{self.path}: {exc}") from None
        self._docs[doc_id] = doc
        while len(self._docs) > DOCUMENT_CACHE:
            self._docs.popitem(last=False)
        return doc

    def titles(self, doc_ids: Sequence[str]) -> dict[str, str]:
        return dict(self._by_ids("SELECT doc_id, title FROM documents WHERE doc_id IN ({marks})", list(set(doc_ids))))

    def _chunks_of(self, rows: Sequence[tuple]) -> list[tuple[int, Chunk]]:
        try:
            return [(int(r[0]), _chunk(r)) for r in rows]
        except StoreError as exc:
            raise self._corrupt(f"{self.path}: {exc}") from None

    def chunk(self, chunk_id: int) -> Chunk | None:
        rows = self._query(f"SELECT {_CHUNK_COLUMNS} FROM {_CHUNKS_FROM} WHERE c.id=?", (int(chunk_id),))
        return self._chunks_of(rows)[0][1] if rows else None

    def chunks(self, ids: Sequence[int]) -> dict[int, Chunk]:
        """The chunks of ``ids``; every id must be stored (they come from the vectors or BM25, which hold the
        same ids: one missing means the files disagree)."""
        wanted = [int(i) for i in ids]
        found = dict(self._chunks_of(self._by_ids(f"SELECT {_CHUNK_COLUMNS} FROM {_CHUNKS_FROM} "
                                                  f"WHERE c.id IN ({{marks}})", wanted)))
        missing = sorted(set(wanted) - set(found))
        if missing:
            raise self._corrupt(f"{self.path} holds no chunk {', '.join(map(str, missing[:5]))} "
                                f"(the vectors or BM25 rows have ids the store lacks)")
        return found

    def iter_chunks(self) -> Iterator[tuple[int, Chunk]]:
        """Every chunk in id order (streamed in pages: a large store is never read whole)."""
        last = -1
        while True:
            rows = self._query(f"SELECT {_CHUNK_COLUMNS} FROM {_CHUNKS_FROM} WHERE c.id > ? ORDER BY c.id LIMIT 2000",
                               (last,))
            if not rows:
                return
            yield from self._chunks_of(rows)
            last = int(rows[-1][0])

    def iter_terms(self) -> Iterator[tuple[int, str]]:
        """(id, analysed terms) of every chunk in id order, for rebuilding BM25."""
        last = -1
        while True:
            rows = self._query("SELECT id, terms FROM chunks WHERE id > ? ORDER BY id LIMIT 20000", (last,))
            if not rows:
                return
            yield from rows
            last = int(rows[-1][0])

    def chunk_ids(self) -> np.ndarray:
        return np.asarray([r[0] for r in self._query("SELECT id FROM chunks ORDER BY id")], dtype=np.int64)

    def chunk_ids_of(self, doc_ids: Sequence[str]) -> np.ndarray:
        rows = self._by_ids("SELECT id FROM chunks WHERE doc_id IN ({marks})", list(doc_ids))
        return np.sort(np.asarray([r[0] for r in rows], dtype=np.int64))

    def footnote_ids(self) -> np.ndarray:
        """Ids of footnote chunks, ascending (the literal 'footnote' lets SQLite use its partial index)."""
        rows = self._query("SELECT id FROM chunks WHERE kind = 'footnote' ORDER BY id")
        return np.asarray([r[0] for r in rows], dtype=np.int64)

    def max_id(self) -> int:
        value = self._query("SELECT max(id) FROM chunks")[0][0]
        return -1 if value is None else int(value)

    def check(self) -> None:
        """Structural checks a hash cannot make, run on a file that changed since it was written (so reading
        the whole store once is acceptable): the schema (STRICT tables, so every value has its column's
        type), every chunk's document and span, every document's length, metadata and span lists, and every
        chunk's text against its document's."""
        tables = dict(self._query("SELECT name, strict FROM pragma_table_list WHERE schema = 'main'"))
        for table, columns in _expected_columns().items():
            if table not in tables:
                raise self._corrupt(f"{self.path} lacks the {table} table")
            if not tables[table] or self._query(f"PRAGMA table_info({table})") != columns:
                raise self._corrupt(f"{self.path}: the {table} table does not have the columns (or the STRICT "
                                    f"types) this version writes")
        orphan = self._query("SELECT c.id FROM chunks c LEFT JOIN documents d USING (doc_id) "
                             "WHERE d.doc_id IS NULL LIMIT 1")
        if orphan:
            raise self._corrupt(f"{self.path}: chunk {orphan[0][0]} belongs to no document")
        bad = self._query('SELECT c.id, c.start, c."end", d.length FROM chunks c JOIN documents d USING (doc_id) '
                          'WHERE c.start < 0 OR c."end" <= c.start OR c."end" > d.length LIMIT 1')
        if bad:
            i, start, end, length = bad[0]
            raise self._corrupt(f"{self.path}: chunk {i} spans {start}-{end}, outside its document "
                                f"({length} characters)")
        wrong = self._query("SELECT doc_id FROM documents WHERE length != length(text) LIMIT 1")
        if wrong:
            raise self._corrupt(f"{self.path}: document {wrong[0][0]!r} does not have its recorded length")
        doc_ids = [r[0] for r in self._query("SELECT doc_id FROM documents ORDER BY doc_id")]
        for i in range(0, len(doc_ids), _CHECK_BATCH):  # a few documents' texts in memory at a time
            part = doc_ids[i:i + _CHECK_BATCH]
            texts = {}
            for doc_id, length, meta, sections, blocks, pages, text in self._by_ids(
                    "SELECT doc_id, length, meta, sections, blocks, pages, text FROM documents "
                    "WHERE doc_id IN ({marks})", part):
                try:
                    _structure(doc_id, length, meta, sections=sections, blocks=blocks, pages=pages)
                except StoreError as exc:
                    raise self._corrupt(f"{self.path}: {exc}") from None
                texts[doc_id] = text
            for chunk_id, doc_id, start, end, text in self._by_ids(
                    'SELECT id, doc_id, start, "end", text FROM chunks WHERE doc_id IN ({marks})', part):
                if texts[doc_id][start:end] != text:
                    raise self._corrupt(f"{self.path}: chunk {chunk_id} is not the text of its span of "
                                        f"{doc_id!r}")


class DocumentMap(Mapping[str, Document]):
    """The documents of a store as a read-only mapping, each read when first asked for."""

    def __init__(self, store: ChunkStore) -> None:
        self._store = store

    def __getitem__(self, doc_id: str) -> Document:
        doc = self._store.document(doc_id) if isinstance(doc_id, str) else None
        if doc is None:
            raise KeyError(doc_id)
        return doc

    def __iter__(self) -> Iterator[str]:
        return iter(self._store.doc_ids())

    def __len__(self) -> int:
        return len(self._store.doc_ids())

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, str) and doc_id in self._store.doc_id_set()


class ChunkView(Sequence[Chunk]):
    """The chunks of a store: ``len``, iteration in id order, ``view[chunk_id]``."""

    def __init__(self, store: ChunkStore) -> None:
        self._store = store
        self._len: int | None = None

    def __len__(self) -> int:
        if self._len is None:
            self._len = self._store.count()
        return self._len

    def __iter__(self) -> Iterator[Chunk]:
        return (c for _i, c in self._store.iter_chunks())

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            return list(self)[key]
        chunk = self._store.chunk(int(key))
        if chunk is None:
            raise IndexError(f"no chunk with id {key}")
        return chunk
