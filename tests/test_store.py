"""The SQLite chunk and document store: read by id, immutable once written, checked when it changed."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from rag.documents import document_from_text
from rag.store import ChunkStore, ChunkView, DocumentMap, StoreError
from rag.types import Chunk


def _filled(path):
    store = ChunkStore.create(path)
    a = document_from_text("a", "Alpha report.\n\nIt has two paragraphs.", title="Alpha")
    b = document_from_text("b", "Beta note.", title="Beta")
    store.begin()
    store.put_documents([(a, 0), (b, 1)])
    store.put_chunks([(10, Chunk("a", "", 0, 13, a.text[0:13]), "alpha report"),
                      (11, Chunk("a", "", 15, len(a.text), a.text[15:], "footnote"), "two paragraph"),
                      (20, Chunk("b", "", 0, 10, b.text[:10]), "beta note")])
    store.commit()
    return store, a, b


def test_documents_and_chunks_are_read_by_id(tmp_path):
    store, a, _b = _filled(tmp_path / "s.sqlite3")
    store.close()
    ro = ChunkStore(tmp_path / "s.sqlite3")
    assert ro.doc_ids() == ["a", "b"]
    docs = DocumentMap(ro)
    assert docs["a"].text == a.text and docs["a"].title == "Alpha" and "b" in docs and "c" not in docs
    with pytest.raises(KeyError):
        docs["c"]
    assert ro.chunks([11, 20])[11].kind == "footnote"
    assert ro.footnote_ids().tolist() == [11]
    assert ro.chunk_ids_of(["a"]).tolist() == [10, 11]
    view = ChunkView(ro)
    assert len(view) == 3 and [c.doc_id for c in view] == ["a", "a", "b"] and view[20].text == "Beta note."
    assert list(ro.iter_terms())[0] == (10, "alpha report")
    assert ro.descriptions()["a"].chunks == 2
    ro.check()


def test_a_read_only_store_writes_nothing_beside_itself(tmp_path):
    folder = tmp_path / "version"
    folder.mkdir()
    store, _a, _b = _filled(folder / "s.sqlite3")
    store.close()
    (folder / "s.sqlite3").chmod(0o444)
    ro = ChunkStore(folder / "s.sqlite3")
    assert ro.count() == 3
    assert sorted(p.name for p in folder.iterdir()) == ["s.sqlite3"]  # no -wal, -shm or journal
    with pytest.raises(StoreError):
        ro.write("DELETE FROM chunks", [()])


def test_a_copy_is_consistent_and_independent(tmp_path):
    store, _a, _b = _filled(tmp_path / "s.sqlite3")
    store.copy_to(tmp_path / "copy.sqlite3")
    copy = ChunkStore(tmp_path / "copy.sqlite3", writable=True)
    copy.begin()
    removed = copy.delete_documents(["a"])
    copy.commit()
    assert removed.tolist() == [10, 11] and copy.count() == 1 and store.count() == 3


def test_a_read_only_store_is_copied_from_the_file_it_opened(tmp_path):
    """The file copy is used only while the path still names the opened file; after another version took
    its place, the copy is of the opened one (through SQLite), never of the newcomer."""
    store, _a, _b = _filled(tmp_path / "s.sqlite3")
    store.close()
    ro = ChunkStore(tmp_path / "s.sqlite3")
    ro.copy_to(tmp_path / "copy.sqlite3")
    assert (tmp_path / "copy.sqlite3").read_bytes() == (tmp_path / "s.sqlite3").read_bytes()
    assert ChunkStore(tmp_path / "copy.sqlite3").count() == 3

    other, _a, _b = _filled(tmp_path / "other.sqlite3")
    other.begin()
    other.delete_documents(["b"])
    other.commit()
    other.close()
    (tmp_path / "other.sqlite3").replace(tmp_path / "s.sqlite3")  # a new version swapped in under the path
    ro.copy_to(tmp_path / "copy2.sqlite3")
    copy = ChunkStore(tmp_path / "copy2.sqlite3")
    assert copy.count() == 3 and copy.doc_ids() == ["a", "b"]
    copy.check()


def test_check_finds_what_a_hash_cannot(tmp_path):
    store, _a, _b = _filled(tmp_path / "s.sqlite3")
    store.close()
    with sqlite3.connect(tmp_path / "s.sqlite3") as db:
        db.execute("UPDATE chunks SET doc_id = 'gone' WHERE id = 20")
    db.close()
    with pytest.raises(StoreError, match="chunk 20 belongs to no document"):
        ChunkStore(tmp_path / "s.sqlite3").check()


def test_a_file_that_is_not_a_store_is_refused(tmp_path):
    (tmp_path / "s.sqlite3").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="not a readable store"):
        ChunkStore(tmp_path / "s.sqlite3")
    with pytest.raises(StoreError):
        ChunkStore(tmp_path / "missing.sqlite3")


def test_strict_tables_refuse_a_wrong_type(tmp_path):
    store = ChunkStore.create(tmp_path / "s.sqlite3")
    with pytest.raises(StoreError, match="cannot store TEXT value in INTEGER column"):
        store.write("INSERT INTO chunks VALUES (?,?,?,?,?,?,?,?,?)", [(1, "a", "", "zero", 5, "body", 0, "t", "")])
    assert np.asarray(store.chunk_ids()).tolist() == []
