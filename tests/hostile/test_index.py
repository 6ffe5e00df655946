"""Damaged index folders (format 2: manifest.json, store.sqlite3, vectors.faiss, bm25/).

Every damaged case is IndexCorruptError or IndexMismatchError naming the rebuild command (one ``error:``
line from the command, exit code 4), the failed load changes nothing, and the named command run with the
real sources brings the same documents back. Damage that leaves a file's hash consistent ("rehashed": the
manifest records the damaged file's hash, as a careless repair would) must be found by the structural
checks a changed file gets. Manifest oddities that only decide *how much* to check (``file_stats``) or
that the next writer can recover from safely (``next_chunk_id``) are not errors, and are shown to be
harmless. The one damage that is by design not found at load (same size and mtime, other bytes) is shown
not to crash a question.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from rag import Assistant, IndexCorruptError, IndexMismatchError
from rag.errors import IndexError_
from rag.index import BM25_DIR, MANIFEST, STORE, VECTORS, Index, _sha256_file
from rag.lexical import BM25Index

from .conftest import (QUESTION, assert_intact, assert_one_error_line, edit_manifest, rebuild_command, rehash,
                       restamp, sql_edit, tree_snapshot, write_files)

Damage = Callable[[Path], None]
IDS = f"{BM25_DIR}/{BM25Index.IDS}"
PARAMS = f"{BM25_DIR}/{BM25Index.PARAMS}"


# ---------------------------------------------------------------------- damages: whole files
def _delete(name: str) -> Damage:
    def damage(folder: Path) -> None:
        path = folder / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()

    return damage


def _delete_unlisted(name: str) -> Damage:
    """The file goes and so does its manifest entry: nothing records that it was ever there."""
    def damage(folder: Path) -> None:
        (folder / name).unlink()
        edit_manifest(folder, lambda m: (m["files"].pop(name), m["file_stats"].pop(name, None)))

    return damage


def _truncate(name: str, rehashed: bool) -> Damage:
    def damage(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])
        if rehashed:
            rehash(folder, name)

    return damage


def _replace_bytes(name: str, data: bytes, rehashed: bool = True) -> Damage:
    def damage(folder: Path) -> None:
        (folder / name).write_bytes(data)
        if rehashed:
            rehash(folder, name)

    return damage


def _random_bytes(name: str) -> Damage:
    def damage(folder: Path) -> None:
        size = (folder / name).stat().st_size
        _replace_bytes(name, np.random.default_rng(7).bytes(size))(folder)

    return damage


def _first_bm25_file(folder: Path) -> Path:
    return sorted((folder / BM25_DIR).iterdir())[0]


# ---------------------------------------------------------------------- damages: the store
def _sql(*statements: str) -> Damage:
    """Rows edited with sqlite3, the manifest rehashed: the hashes agree, the content is wrong."""
    def damage(folder: Path) -> None:
        sql_edit(folder / STORE, *statements)
        rehash(folder, STORE)

    return damage


def _doc_column(column: str, value: str, doc_id: str = "mekong") -> Damage:
    quoted = value.replace("'", "''")
    return _sql(f"UPDATE documents SET {column} = '{quoted}' WHERE doc_id = '{doc_id}'")


def _chunk_of(doc_id: str) -> str:
    return f"(SELECT id FROM chunks WHERE doc_id = '{doc_id}' LIMIT 1)"


MEKONG_CHUNK = _chunk_of("mekong")


# ---------------------------------------------------------------------- damages: vectors.faiss
def _write_vectors(folder: Path, index, *, kind: str | None = None) -> None:
    import faiss

    faiss.write_index(index, str(folder / VECTORS))
    rehash(folder, VECTORS)
    if kind is not None:
        edit_manifest(folder, lambda m: m["vector_store"].update(kind=kind))


def _stored(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of the intact vector store."""
    import faiss

    index = faiss.read_index(str(folder / VECTORS))
    ids = np.sort(faiss.vector_to_array(index.id_map).astype(np.int64))
    return ids, index.reconstruct_batch(ids)


def _id_mapped(vectors: np.ndarray, ids: np.ndarray):
    import faiss

    index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.ascontiguousarray(ids, dtype=np.int64))
    return index


def _vectors_other_dimension(folder: Path) -> None:
    ids, vectors = _stored(folder)
    _write_vectors(folder, _id_mapped(vectors[:, :16] / np.linalg.norm(vectors[:, :16], axis=1, keepdims=True), ids))


def _vectors_without_ids(folder: Path) -> None:
    """A plain IndexFlatIP (row = id, as format 1 wrote) in place of the id-mapped store."""
    import faiss

    _ids, vectors = _stored(folder)
    plain = faiss.IndexFlatIP(vectors.shape[1])
    plain.add(vectors)
    _write_vectors(folder, plain)


def _vectors_ids_shifted(folder: Path) -> None:
    ids, vectors = _stored(folder)
    _write_vectors(folder, _id_mapped(vectors, ids + 100))


def _vectors_extra_row(folder: Path) -> None:
    ids, vectors = _stored(folder)
    _write_vectors(folder, _id_mapped(np.vstack([vectors, vectors[:1]]), np.append(ids, ids.max() + 1)))


def _vectors_row_removed(folder: Path) -> None:
    ids, vectors = _stored(folder)
    _write_vectors(folder, _id_mapped(vectors[:-1], ids[:-1]))


def _ivf(vectors: np.ndarray, ids: np.ndarray):
    from rag.vectorstore import VectorStore

    store = VectorStore.create(vectors.shape[1], "ivf", training=vectors)
    store.add(ids, vectors)
    return store.index


def _ivf_file_manifest_flat(folder: Path) -> None:
    ids, vectors = _stored(folder)
    _write_vectors(folder, _ivf(vectors, ids))


def _ivf_with_other_ids(folder: Path) -> None:
    ids, vectors = _stored(folder)
    _write_vectors(folder, _ivf(vectors, ids + 100), kind="ivf")


# ---------------------------------------------------------------------- damages: bm25/
def _bm25_ids(values) -> Damage:
    def damage(folder: Path) -> None:
        np.save(folder / IDS, values if isinstance(values, np.ndarray) else values(folder), allow_pickle=True)
        rehash(folder, IDS)

    return damage


def _store_ids(folder: Path) -> np.ndarray:
    db = sqlite3.connect(folder / STORE)
    try:
        return np.asarray([r[0] for r in db.execute("SELECT id FROM chunks ORDER BY id")], dtype=np.int64)
    finally:
        db.close()


def _bm25_array(name: str, change: Callable[[np.ndarray], np.ndarray]) -> Damage:
    """One of bm25/'s arrays changed and rehashed: the hash agrees, the numbers do not."""
    def damage(folder: Path) -> None:
        path = folder / BM25_DIR / name
        np.save(path, change(np.load(path, allow_pickle=False)), allow_pickle=False)
        rehash(folder, f"{BM25_DIR}/{name}")

    return damage


def _bumped(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a[len(a) // 2] += 1
    return a


def _bm25_params(change: Callable[[dict], object]) -> Damage:
    def damage(folder: Path) -> None:
        path = folder / PARAMS
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))
        rehash(folder, PARAMS)

    return damage


def _unlisted_and_altered(name: str) -> Damage:
    """The manifest stops recording a file's hash, and the file is then altered."""
    def damage(folder: Path) -> None:
        edit_manifest(folder, lambda m: m["files"].pop(name, None))
        if name == STORE:
            sql_edit(folder / STORE, f'UPDATE chunks SET "end" = "end" + 10000 WHERE id = {MEKONG_CHUNK}')
        else:
            (folder / name).write_bytes((folder / name).read_bytes()[:-8])

    return damage


# ---------------------------------------------------------------------- damages: the manifest
def _manifest_text(text: str) -> Damage:
    def damage(folder: Path) -> None:
        (folder / MANIFEST).write_text(text, encoding="utf-8")

    return damage


def _manifest(change: Callable[[dict], object]) -> Damage:
    return lambda folder: edit_manifest(folder, change)


def _set(path: str, value) -> Callable[[dict], None]:
    def change(m: dict) -> None:
        *parents, leaf = path.split(".")
        for p in parents:
            m = m[p]
        m[leaf] = value

    return change


def _pop(path: str) -> Callable[[dict], None]:
    def change(m: dict) -> None:
        *parents, leaf = path.split(".")
        for p in parents:
            m = m[p]
        m.pop(leaf)

    return change


def _lists_outside_file(folder: Path) -> None:
    """The manifest lists a file outside the index folder, present and with its right hash."""
    outside = folder.parent / "outside.txt"
    outside.write_text("not part of any index\n")
    edit_manifest(folder, lambda m: m["files"].update({"../outside.txt": _sha256_file(outside)}))


def _lists_absolute_file(folder: Path) -> None:
    outside = folder.parent / "elsewhere.bin"
    outside.write_bytes(b"\0" * 64)
    edit_manifest(folder, lambda m: m["files"].update({str(outside): _sha256_file(outside)}))


def _bm25_file_not_listed(folder: Path) -> None:
    """A file in bm25/ the manifest does not record (a hash check cannot vouch for it)."""
    name = f"{BM25_DIR}/{_first_bm25_file(folder).name}"
    edit_manifest(folder, lambda m: m["files"].pop(name))


DAMAGES: dict[str, Damage] = {
    # ------------------------------------------------ store.sqlite3
    "store-missing": _delete(STORE),
    "store-empty": _replace_bytes(STORE, b"", rehashed=False),
    "store-empty-rehashed": _replace_bytes(STORE, b""),
    "store-truncated": _truncate(STORE, rehashed=False),
    "store-truncated-rehashed": _truncate(STORE, rehashed=True),
    "store-random-bytes-rehashed": _random_bytes(STORE),
    "store-header-only-rehashed": lambda f: _replace_bytes(STORE, (f / STORE).read_bytes()[:100])(f),
    "store-chunk-unknown-doc-id": _sql(f"UPDATE chunks SET doc_id = 'no-such-document' WHERE id = {MEKONG_CHUNK}"),
    "store-chunk-span-beyond-document": _sql(f'UPDATE chunks SET "end" = "end" + 10000 WHERE id = {MEKONG_CHUNK}'),
    "store-chunk-span-negative": _sql(f"UPDATE chunks SET start = -5 WHERE id = {MEKONG_CHUNK}"),
    "store-chunk-span-reversed": _sql(f'UPDATE chunks SET start = "end", "end" = start WHERE id = {MEKONG_CHUNK}'),
    "store-chunk-span-empty": _sql(f'UPDATE chunks SET "end" = start WHERE id = {MEKONG_CHUNK}'),
    "store-chunk-text-not-its-slice": _sql(f"UPDATE chunks SET text = 'Fishermen on the Danube.' "
                                           f"WHERE id = {MEKONG_CHUNK}"),
    "store-document-length-wrong": _sql("UPDATE documents SET length = length + 1 WHERE doc_id = 'mekong'"),
    "store-document-text-changed": _sql("UPDATE documents SET text = upper(text) WHERE doc_id = 'mekong'"),
    "store-document-row-deleted": _sql("DELETE FROM documents WHERE doc_id = 'mekong'"),
    "store-chunk-row-deleted": _sql(f"DELETE FROM chunks WHERE id = {MEKONG_CHUNK}"),
    "store-chunk-row-added": _sql("INSERT INTO chunks SELECT id + 1000, doc_id, section, start, \"end\", kind, "
                                  f"tokens, text, terms FROM chunks WHERE id = {MEKONG_CHUNK}"),
    "store-chunk-id-changed": _sql(f"UPDATE chunks SET id = 1000 WHERE id = {MEKONG_CHUNK}"),
    "store-documents-table-dropped": _sql("DROP TABLE documents"),
    "store-chunks-table-dropped": _sql("DROP TABLE chunks"),
    "store-chunks-column-dropped": _sql("ALTER TABLE chunks DROP COLUMN tokens"),
    "store-documents-not-strict": _sql("ALTER TABLE documents RENAME TO old",
                                       "CREATE TABLE documents AS SELECT * FROM old", "DROP TABLE old"),
    "store-sections-malformed-json": _doc_column("sections", '[["Mekong", 0,'),
    "store-blocks-malformed-json": _doc_column("blocks", "[[0, 173, "),
    "store-pages-malformed-json": _doc_column("pages", "[[0"),
    "store-meta-malformed-json": _doc_column("meta", '{"file": '),
    "store-sections-wrong-shape": _doc_column("sections", '[["x"]]'),
    "store-sections-offset-is-text": _doc_column("sections", '[["Mekong", "0", 174]]'),
    "store-sections-outside-text": _doc_column("sections", '[["Mekong", 0, 100000]]'),
    "store-blocks-not-a-list": _doc_column("blocks", '{"start": 0}'),
    "store-blocks-kind-is-a-number": _doc_column("blocks", '[[0, 173, 5, "Mekong"]]'),
    "store-pages-outside-text": _doc_column("pages", "[[0, 99999, 1]]"),
    "store-pages-number-is-null": _doc_column("pages", "[[0, 10, null]]"),
    "store-meta-is-a-list": _doc_column("meta", "[[1, 2]]"),
    "store-meta-is-null": _doc_column("meta", "null"),
    # ------------------------------------------------ vectors.faiss
    "vectors-missing": _delete(VECTORS),
    "vectors-truncated": _truncate(VECTORS, rehashed=False),
    "vectors-truncated-rehashed": _truncate(VECTORS, rehashed=True),
    "vectors-empty-rehashed": _replace_bytes(VECTORS, b""),
    "vectors-random-bytes-rehashed": _random_bytes(VECTORS),
    "vectors-other-dimension": _vectors_other_dimension,
    "vectors-flat-without-ids": _vectors_without_ids,
    "vectors-ids-not-the-stores": _vectors_ids_shifted,
    "vectors-extra-row": _vectors_extra_row,
    "vectors-row-removed": _vectors_row_removed,
    "vectors-manifest-says-ivf-over-flat": _manifest(lambda m: m["vector_store"].update(kind="ivf")),
    "vectors-ivf-file-manifest-says-flat": _ivf_file_manifest_flat,
    "vectors-ivf-ids-not-the-stores": _ivf_with_other_ids,
    # ------------------------------------------------ bm25/
    "bm25-folder-missing": _delete(BM25_DIR),
    "bm25-a-file-missing": lambda f: _first_bm25_file(f).unlink(),
    "bm25-ids-missing": _delete(IDS),
    "bm25-ids-missing-and-unlisted": _delete_unlisted(IDS),
    "bm25-params-missing-and-unlisted": _delete_unlisted(PARAMS),
    "bm25-ids-int32": _bm25_ids(lambda f: _store_ids(f).astype(np.int32)),
    "bm25-ids-float": _bm25_ids(lambda f: _store_ids(f).astype(np.float64)),
    "bm25-ids-not-ascending": _bm25_ids(lambda f: _store_ids(f)[::-1].copy()),
    "bm25-ids-one-short": _bm25_ids(lambda f: _store_ids(f)[:-1].copy()),
    "bm25-ids-one-too-many": _bm25_ids(lambda f: np.append(_store_ids(f), 10_000)),
    "bm25-ids-not-the-stores": _bm25_ids(lambda f: _store_ids(f) + 100),
    "bm25-ids-two-dimensional": _bm25_ids(lambda f: _store_ids(f)[None, :].copy()),
    "bm25-ids-pickled-objects": _bm25_ids(lambda f: np.asarray(list(_store_ids(f)), dtype=object)),
    "bm25-ids-truncated-rehashed": _truncate(IDS, rehashed=True),
    "bm25-params-n-docs-wrong": _bm25_params(lambda p: p.update(n_docs=p["n_docs"] + 1)),
    "bm25-params-malformed-rehashed": _replace_bytes(PARAMS, b'{"k1": '),
    "bm25-vocab-malformed-rehashed": _replace_bytes(f"{BM25_DIR}/vocab.index.json", b"[1, 2"),
    "bm25-data-truncated-rehashed": _truncate(f"{BM25_DIR}/data.csc.index.npy", rehashed=True),
    "bm25-file-not-listed": _bm25_file_not_listed,
    "bm25-tf-missing": _delete(f"{BM25_DIR}/{BM25Index.TF}"),
    "bm25-tf-missing-and-unlisted": _delete_unlisted(f"{BM25_DIR}/{BM25Index.TF}"),
    "bm25-tf-altered-rehashed": _bm25_array(BM25Index.TF, _bumped),
    "bm25-tf-one-short-rehashed": _bm25_array(BM25Index.TF, lambda a: a[:-1].copy()),
    "bm25-lengths-altered-rehashed": _bm25_array(BM25Index.LENGTHS, _bumped),
    "bm25-lengths-int64-rehashed": _bm25_array(BM25Index.LENGTHS, lambda a: a.astype(np.int64)),
    "bm25-scores-altered-rehashed": _bm25_array("data.csc.index.npy", lambda a: a * np.float32(1.5)),
    "bm25-rows-swapped-rehashed": _bm25_array("indices.csc.index.npy", lambda a: a[::-1].copy()),
    # ------------------------------------------------ manifest.json
    "manifest-model-name": _manifest(_set("model.name", "sentence-transformers/all-mpnet-base-v2")),
    "manifest-dimension-768": _manifest(_set("model.dimension", 768)),
    "manifest-dimension-text": _manifest(_set("model.dimension", "384")),
    "manifest-dimension-zero": _manifest(_set("model.dimension", 0)),
    "manifest-format": _manifest(_set("format", "something-else")),
    "manifest-format-version-1": _manifest(_set("format_version", 1)),
    "manifest-format-version-3": _manifest(_set("format_version", 3)),
    "manifest-format-version-text": _manifest(_set("format_version", "2")),
    "manifest-format-version-missing": _manifest(_pop("format_version")),
    "manifest-metric": _manifest(_set("metric", "l2")),
    "manifest-list": _manifest_text("[]"),
    "manifest-null": _manifest_text("null"),
    "manifest-number": _manifest_text("5"),
    "manifest-string": _manifest_text('"an index"'),
    "manifest-invalid-json": _manifest_text('{"format": "rag-index", '),
    "manifest-binary": lambda f: (f / MANIFEST).write_bytes(b"\xff\xfe\x00\x01garbage"),
    "manifest-missing-model": _manifest(_pop("model")),
    "manifest-missing-files": _manifest(_pop("files")),
    "manifest-missing-counts": _manifest(_pop("counts")),
    "manifest-model-is-a-list": _manifest(_set("model", ["sentence-transformers/all-MiniLM-L6-v2", 384])),
    "manifest-files-as-list": _manifest(lambda m: m.update(files=list(m["files"]))),
    "manifest-files-hash-is-a-number": _manifest(lambda m: m["files"].update({VECTORS: 5})),
    "manifest-files-empty": _manifest(_set("files", {})),
    "manifest-files-unlisted-store": _unlisted_and_altered(STORE),
    "manifest-files-unlisted-vectors": _unlisted_and_altered(VECTORS),
    "manifest-files-unknown-file-missing": _manifest(lambda m: m["files"].update({f"{BM25_DIR}/extra.npy": "0" * 64})),
    "manifest-files-outside-the-folder": _lists_outside_file,
    "manifest-files-absolute-path": _lists_absolute_file,
    "manifest-sources-5": _manifest(_set("sources", 5)),
    "manifest-counts-as-list": _manifest(_set("counts", [])),
    "manifest-counts-chunks-text": _manifest(_set("counts.chunks", "3")),
    "manifest-counts-chunks-wrong": _manifest(lambda m: m["counts"].update(chunks=m["counts"]["chunks"] + 1)),
    "manifest-documents-as-dict": _manifest(_set("documents", {})),
    "manifest-vector-store-missing": _manifest(_pop("vector_store")),
    "manifest-vector-store-unknown-kind": _manifest(lambda m: m["vector_store"].update(kind="hnsw")),
    "manifest-vector-store-a-string": _manifest(_set("vector_store", "flat")),
    "manifest-vector-store-null": _manifest(_set("vector_store", None)),
}


@pytest.mark.parametrize("damage", list(DAMAGES.values()), ids=list(DAMAGES))
def test_damaged_index_is_a_clear_error_and_can_be_rebuilt(damage, idx, base_corpus, base_state, config, embedder,
                                                           reader, cli):
    damage(idx)
    before = tree_snapshot(idx)

    # The Python API: a clear error naming the command that fixes it.
    with pytest.raises((IndexCorruptError, IndexMismatchError)) as info:
        Index.load(idx, config)
    message = str(info.value)
    assert "rag ingest" in message, message
    with pytest.raises(IndexError_):
        Assistant.load(idx, config)

    # The command: one line, exit code 4, for reading and for an ingest that does not ask to rebuild.
    run = cli("-q", "--index", idx, "ask", QUESTION)
    assert_one_error_line(run.code, run.err, contains="rag ingest")
    assert run.code == 4
    assert tree_snapshot(idx) == before, "a failed load changed the index folder"

    # The named command, with the real sources for PATHS, brings the same documents back.
    command = rebuild_command(message)
    assert command is not None, message
    if "--rebuild" in command:
        command = [str(base_corpus) if part == "PATHS" else part for part in command]
        run = cli("-q", *command)
        assert run.code == 0, f"the named command {command} failed: {run.err}"
        assert_intact(idx, base_state, config, embedder, reader)


def test_missing_manifest_in_an_index_folder(idx, base_corpus, base_state, config, embedder, reader, cli):
    """The manifest is lost but the rest of the index is there: the message must lead back to the same
    documents, not to a different corpus (``rag ingest seeds`` would index other documents)."""
    (idx / MANIFEST).unlink()
    before = tree_snapshot(idx)
    with pytest.raises(IndexError_) as info:
        Index.load(idx, config)
    message = str(info.value)
    run = cli("-q", "--index", idx, "ask", QUESTION)
    assert_one_error_line(run.code, run.err, contains="rag ingest")
    assert tree_snapshot(idx) == before
    command = rebuild_command(message)
    assert command is not None and "--rebuild" in command, f"no rebuild command named: {message}"
    command = [str(base_corpus) if part == "PATHS" else part for part in command]
    run = cli("-q", *command)
    assert run.code == 0, run.err
    assert_intact(idx, base_state, config, embedder, reader)


# ---------------------------------------------------------------------- what STRICT tables refuse
@pytest.mark.parametrize("statement", [
    f"UPDATE chunks SET start = 'zero' WHERE id = {MEKONG_CHUNK}",
    f"UPDATE chunks SET start = 0.5 WHERE id = {MEKONG_CHUNK}",
    f"UPDATE chunks SET \"end\" = x'00ff' WHERE id = {MEKONG_CHUNK}",
    f"UPDATE chunks SET tokens = NULL WHERE id = {MEKONG_CHUNK}",
    "UPDATE documents SET length = '174 characters' WHERE doc_id = 'mekong'",
    "UPDATE documents SET text = NULL WHERE doc_id = 'mekong'",
    "UPDATE documents SET sections = x'5b5d' WHERE doc_id = 'mekong'",  # a blob, even one holding "[]"
    "INSERT INTO chunks (id, doc_id, section, start, \"end\", kind, tokens, text, terms) "
    "VALUES ('seven', 'mekong', '', 0, 5, 'body', 1, 'The M', 'mekong')",
], ids=["start-text", "start-real", "end-blob", "tokens-null", "length-text", "text-null", "sections-blob",
        "id-text"])
def test_strict_tables_refuse_a_wrong_type(statement, idx, base_state, config, embedder, reader):
    """A wrong type cannot even be written: the store's tables are STRICT (a lossless conversion, such as
    the text '5' into an INTEGER column, is stored as the integer). The store is left as it was."""
    before = (idx / STORE).read_bytes()
    with pytest.raises(sqlite3.IntegrityError, match="cannot store|NOT NULL constraint|datatype mismatch"):
        sql_edit(idx / STORE, statement)
    assert (idx / STORE).read_bytes() == before
    assert_intact(idx, base_state, config, embedder, reader)


def test_strict_tables_store_a_lossless_conversion_as_its_type(idx, base_state, config, embedder, reader):
    sql_edit(idx / STORE, f"UPDATE chunks SET tokens = '7' WHERE id = {MEKONG_CHUNK}")
    rehash(idx, STORE)
    db = sqlite3.connect(idx / STORE)
    try:
        assert db.execute(f"SELECT typeof(tokens), tokens FROM chunks WHERE id = {MEKONG_CHUNK}").fetchone() == \
            ("integer", 7)
    finally:
        db.close()
    assert_intact(idx, base_state, config, embedder, reader)  # checked as changed (rehashed), and consistent


# ---------------------------------------------------------------------- manifest entries that are not errors
@pytest.mark.parametrize("stats", [
    [], "size and mtime", {STORE: ["20480", "1"]}, {STORE: "x", VECTORS: None}, {STORE: [1, 2, 3]},
    {STORE: {"size": 1}}, None, 5,
], ids=["a-list", "a-string", "numbers-as-strings", "values-not-pairs", "three-numbers", "a-mapping", "null",
        "a-number"])
def test_malformed_file_stats_only_mean_hashing(stats, idx, base_state, config, embedder, reader, monkeypatch):
    """``file_stats`` only decides which files are hashed again: malformed, it is ignored (every file is
    hashed and, matching, checked) and the index loads as it is."""
    import rag.index as index_module

    edit_manifest(idx, lambda m: m.update(file_stats=stats))
    hashed: list[str] = []
    real = index_module._sha256_file
    monkeypatch.setattr(index_module, "_sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    assert_intact(idx, base_state, config, embedder, reader)
    assert STORE in hashed  # the store's stats were unusable, so it was hashed


def test_missing_file_stats_mean_hashing(idx, base_state, config, embedder, reader):
    edit_manifest(idx, lambda m: m.pop("file_stats"))
    assert_intact(idx, base_state, config, embedder, reader)


@pytest.mark.parametrize("value", ["abc", None, -5, 0, 1.5, True, [7], "missing"],
                         ids=["text", "null", "negative", "zero", "float", "bool", "list", "missing"])
def test_malformed_next_chunk_id_never_reuses_an_id(value, idx, tmp_path, base_corpus, base_state, config, embedder,
                                                    reader, cli):
    """``next_chunk_id`` is not covered by a hash. Malformed or too small, the next ingest still gives new
    chunks ids above every id in use (never one of the store's, the vectors' or BM25's again)."""
    edit_manifest(idx, (lambda m: m.pop("next_chunk_id")) if value == "missing" else _set("next_chunk_id", value))
    before = Index.load(idx, config)
    used = set(before.store.chunk_ids().tolist())
    assert_intact(idx, base_state, config, embedder, reader)
    new = write_files(tmp_path / "new", {"heron.txt": "A grey heron nests by the mill pond every spring.\n"})
    run = cli("-q", "--index", idx, "ingest", base_corpus, new)
    assert run.code == 0, run.err
    after = Index.load(idx, config)
    ids = after.store.chunk_ids()
    added = set(ids.tolist()) - used
    assert added and min(added) > max(used), (sorted(used), sorted(added))
    assert np.array_equal(ids, after.vectors.all_ids()) and np.array_equal(ids, after.bm25.ids)
    assert isinstance(after.manifest["next_chunk_id"], int) and after.manifest["next_chunk_id"] > int(ids.max())
    assert_intact(idx, {**base_state, "heron": after.documents["heron"].sha256}, config, embedder, reader,
                  question="Where does the grey heron nest?")


# ---------------------------------------------------------------------- format 1
def _write_format_1(folder: Path, base: Path) -> None:
    """The layout format 1 wrote (chunks.jsonl and documents.jsonl, row = FAISS id, a plain flat index),
    from the documents of the format-2 index at ``base``."""
    import faiss

    index = Index.load(base)
    manifest = dict(index.manifest)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    with (folder / "documents.jsonl").open("w", encoding="utf-8") as fh:
        for doc in index.documents.values():
            fh.write(json.dumps({"doc_id": doc.doc_id, "title": doc.title, "path": doc.path, "sha256": doc.sha256,
                                 "meta": doc.meta, "sections": [[s.title, s.start, s.end] for s in doc.sections],
                                 "blocks": [[b.start, b.end, b.kind, b.section] for b in doc.blocks],
                                 "text": doc.text}) + "\n")
    ids = index.store.chunk_ids()
    with (folder / "chunks.jsonl").open("w", encoding="utf-8") as fh:
        for row, chunk_id in enumerate(ids):
            c = index.chunks[int(chunk_id)]
            fh.write(json.dumps({"id": row, "doc_id": c.doc_id, "section": c.section, "start": c.start,
                                 "end": c.end, "kind": c.kind, "tokens": c.tokens}) + "\n")
    plain = faiss.IndexFlatIP(index.vectors.d)
    plain.add(index.reconstruct(ids))
    faiss.write_index(plain, str(folder / VECTORS))
    shutil.copytree(base / BM25_DIR, folder / BM25_DIR)
    (folder / BM25_DIR / BM25Index.IDS).unlink()  # format 1 had no row -> id map
    for key in ("vector_store", "next_chunk_id", "file_stats"):
        manifest.pop(key, None)
    manifest["format_version"] = 1
    names = [VECTORS, "chunks.jsonl", "documents.jsonl"] + [f"{BM25_DIR}/{p.name}"
                                                           for p in sorted((folder / BM25_DIR).iterdir())]
    manifest["files"] = {name: _sha256_file(folder / name) for name in names}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")


def test_a_format_1_index_names_the_rebuild_and_upgrade_rebuilds_it(idx, base_index, base_corpus, base_state, config,
                                                                   embedder, reader, cli):
    """An index written before format 2 is refused with the command that rebuilds it; ``rag ingest
    --upgrade`` (what ``make run`` does) rebuilds it into format 2 from its recorded sources."""
    _write_format_1(idx, base_index)
    before = tree_snapshot(idx)
    with pytest.raises(IndexMismatchError, match="format version 1") as info:
        Index.load(idx, config)
    command = rebuild_command(str(info.value))
    assert command is not None and "--rebuild" in command, str(info.value)
    run = cli("-q", "--index", idx, "ask", QUESTION)
    assert_one_error_line(run.code, run.err, contains="--rebuild")
    run = cli("-q", "--index", idx, "ingest", base_corpus)  # an ingest that does not ask to rebuild: refused
    assert_one_error_line(run.code, run.err, contains="--rebuild")
    assert tree_snapshot(idx) == before

    run = cli("-q", "--index", idx, "ingest", "--upgrade")
    assert run.code == 0, run.err
    names = {p.name for p in idx.iterdir()}
    assert names == {MANIFEST, STORE, VECTORS, BM25_DIR}, names  # the format-1 files are gone
    assert json.loads((idx / MANIFEST).read_text())["format_version"] == 2
    assert_intact(idx, base_state, config, embedder, reader)
    run = cli("-q", "--index", idx, "ingest", "--upgrade")  # now compatible: nothing to rebuild
    assert run.code == 0, run.err
    assert_intact(idx, base_state, config, embedder, reader)


# ---------------------------------------------------------------------- the stats trade-off
STATS_TRICKS = {
    "chunk-span-beyond-document": f'UPDATE chunks SET "end" = "end" + 10000 WHERE id = {MEKONG_CHUNK}',
    "chunk-span-negative": f"UPDATE chunks SET start = -5 WHERE id = {MEKONG_CHUNK}",
    "chunk-span-reversed": f'UPDATE chunks SET start = "end", "end" = start WHERE id = {MEKONG_CHUNK}',
    "chunk-unknown-doc-id": f"UPDATE chunks SET doc_id = 'mekonG' WHERE id = {MEKONG_CHUNK}",
    "document-length-wrong": "UPDATE documents SET length = length + 1 WHERE doc_id = 'mekong'",
    "sections-malformed-json": "UPDATE documents SET sections = '[[\"Mekong\", 0, 174]' WHERE doc_id = 'mekong'",
    "sections-offset-is-text": "UPDATE documents SET sections = '[[\"Mekong\", \"0\", 17]]' WHERE doc_id = 'mekong'",
    "pages-outside-text": "UPDATE documents SET pages = '[[0, 99999, 1]]' WHERE doc_id = 'mekong'",
    "meta-malformed-json": "UPDATE documents SET meta = '{\"file\": \"mekong.txt\"' WHERE doc_id = 'mekong'",
}


@pytest.mark.parametrize("statement", list(STATS_TRICKS.values()), ids=list(STATS_TRICKS))
def test_damage_under_the_recorded_size_and_mtime_cannot_crash_a_question(statement, idx, base_index, base_corpus,
                                                                          base_state, config, embedder, reader, cli):
    """By design (README: "File hashes are checked cheaply (size + mtime, then the hash only for files that
    changed)") a file edited in place, keeping its size, and given back its recorded mtime is trusted without
    hashing, so this damage is NOT found at load. It must still never crash a question: reading the damaged
    row is a clear IndexCorruptError naming the rebuild (or the passage is not used), and the named command
    repairs the index."""
    recorded = json.loads((idx / MANIFEST).read_text())["file_stats"][STORE]
    sql_edit(idx / STORE, statement)
    restamp(idx, STORE)
    assert list((os.stat(idx / STORE).st_size, os.stat(idx / STORE).st_mtime_ns)) == recorded
    assert (idx / STORE).read_bytes() != (base_index / STORE).read_bytes()

    index = Index.load(idx, config)  # trusted: the documented trade-off
    assistant = Assistant(index, config, embedder, reader)
    try:
        answer = assistant.ask(QUESTION)
    except IndexCorruptError as exc:
        assert "rag ingest --rebuild" in str(exc), str(exc)
        message = str(exc)
    else:
        # The damaged row was not needed: the answer quotes only what the documents hold.
        for c in answer.citations:
            assert index.documents[c.doc_id].text[c.start:c.end] == c.quote
        message = None
    run = cli("-q", "--index", idx, "ask", QUESTION)
    if run.code != 0:
        assert_one_error_line(run.code, run.err, contains="rag ingest")
        assert run.code == 4
    if message is not None:
        command = rebuild_command(message)
        assert command is not None and "--rebuild" in command, message
        run = cli("-q", *[str(base_corpus) if part == "PATHS" else part for part in command])
        assert run.code == 0, run.err
        assert_intact(idx, base_state, config, embedder, reader)


# ---------------------------------------------------------------------- damage after loading, ingest into damage
def test_damage_found_after_loading_is_not_a_traceback(idx, config, embedder, reader, cli):
    """The index is replaced by a damaged one while an assistant holds the old one: questions still work."""
    assistant = Assistant(Index.load(idx, config), config, embedder, reader)
    _truncate(VECTORS, rehashed=True)(idx)
    assert assistant.ask(QUESTION).text
    run = cli("-q", "--index", idx, "ask", QUESTION)
    assert_one_error_line(run.code, run.err, contains="rag ingest")


def test_ingest_into_a_damaged_index_refuses_then_rebuild_repairs(idx, tmp_path, base_corpus, base_state, config,
                                                                   embedder, reader, cli):
    """Adding a document to a corrupt index is refused (nothing written); ``--rebuild`` with the sources and
    the new document repairs it with nothing lost."""
    DAMAGES["store-chunk-span-beyond-document"](idx)
    before = tree_snapshot(idx)
    new = write_files(tmp_path / "new", {"heron.txt": "A grey heron nests by the mill pond every spring.\n"})
    run = cli("-q", "--index", idx, "ingest", new)
    assert_one_error_line(run.code, run.err, contains="--rebuild")
    assert tree_snapshot(idx) == before
    run = cli("-q", "--index", idx, "ingest", "--rebuild", base_corpus, new)
    assert run.code == 0, run.err
    assert_intact(idx, set(base_state) | {"heron"}, config, embedder, reader)
