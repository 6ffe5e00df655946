"""Stage 4: index directory, manifest checks, atomic writes, incremental re-ingest."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from rag import (Config, IndexCorruptError, IndexMismatchError, IndexNotFoundError, ingest)
from rag.index import FORMAT_VERSION, MANIFEST, STORE, VECTORS, Index
from rag.documents import document_from_text
from rag.lexical import BM25Index

from .conftest import SEEDS


def test_index_directory_layout_and_manifest(seed_index_dir):
    names = {p.name for p in seed_index_dir.iterdir()}
    assert {MANIFEST, VECTORS, STORE, "bm25"} == names
    manifest = json.loads((seed_index_dir / MANIFEST).read_text())
    assert manifest["format_version"] == FORMAT_VERSION == 2
    assert manifest["vector_store"]["kind"] == "flat"  # four documents: far below the ivf threshold
    assert set(manifest["file_stats"]) == set(manifest["files"])
    assert manifest["model"]["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert manifest["model"]["dimension"] == 384
    assert manifest["metric"] == "inner_product"
    assert manifest["chunker"]["chunk_tokens"] == Config().chunk_tokens
    assert {d["doc_id"] for d in manifest["documents"]} == {p.stem for p in SEEDS.glob("*.txt")}
    assert all(len(d["sha256"]) == 64 for d in manifest["documents"])
    assert manifest["versions"]["faiss-cpu"] != "not installed"
    assert manifest["created_at"]


def test_chunk_ids_are_the_faiss_and_bm25_ids(seed_index_dir, embedder):
    import numpy as np

    index = Index.load(seed_index_dir)
    ids = index.store.chunk_ids()
    assert np.array_equal(ids, index.vectors.all_ids()) and np.array_equal(ids, index.bm25.ids)
    assert len(ids) == index.vectors.ntotal == len(index.chunks)
    # The stored vector of chunk 5 is the embedding of chunk 5 (with its header).
    from rag.index import embedded_text

    chunk = index.chunks[5]
    expected = embedder.encode([embedded_text(chunk, index.documents[chunk.doc_id].title, True)])[0]
    assert float(index.reconstruct([5])[0] @ expected) > 0.999


def _edit_manifest(folder, **changes):
    path = folder / MANIFEST
    data = json.loads(path.read_text())
    for key, value in changes.items():
        target = data
        *parents, leaf = key.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = value
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("key, value, message", [
    ("model.name", "sentence-transformers/all-mpnet-base-v2", "built with model"),
    ("format_version", 99, "format version 99"),
    ("format", "something-else", "not an index of this assistant"),
    ("metric", "l2", "uses metric"),
])
def test_manifest_mismatch_is_refused_with_the_fix(writable_index, key, value, message):
    _edit_manifest(writable_index, **{key: value})
    with pytest.raises(IndexMismatchError, match=message) as info:
        Index.load(writable_index)
    assert "rag ingest" in str(info.value)


def test_dimension_mismatch_is_refused(writable_index):
    _edit_manifest(writable_index, **{"model.dimension": 768})
    with pytest.raises(IndexCorruptError, match="dimension"):
        Index.load(writable_index)


@pytest.mark.parametrize("name", [STORE, VECTORS, "bm25/rag_ids.npy"])
def test_altered_file_is_detected(writable_index, name):
    with (writable_index / name).open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(IndexCorruptError, match="altered"):
        Index.load(writable_index)


def test_load_hashes_only_files_changed_since_they_were_written(writable_index, monkeypatch):
    """Size and mtime as recorded: the file that was hashed when written, so it is not read again at load (a
    large index would be read whole on every start). A touched file is hashed, and one whose bytes match is
    checked for consistency before it is trusted."""
    import os

    import rag.index as index_module

    hashed: list[str] = []
    real = index_module._sha256_file
    monkeypatch.setattr(index_module, "_sha256_file", lambda path: hashed.append(path.name) or real(path))
    Index.load(writable_index)
    assert hashed == []
    os.utime(writable_index / STORE)  # same bytes, new mtime: hashed, then accepted
    index = Index.load(writable_index)
    assert hashed == [STORE] and len(index.documents) == 4


def test_missing_index_says_how_to_build(tmp_path):
    with pytest.raises(IndexNotFoundError, match="rag ingest"):
        Index.load(tmp_path / "nothing")


def test_interrupted_build_leaves_previous_index_intact(writable_index, tmp_path, embedder, monkeypatch):
    before = (writable_index / MANIFEST).read_text()
    docs = tmp_path / "docs"
    shutil.copytree(SEEDS, docs)
    (docs / "new.txt").write_text("A new report about forced labour on fishing boats in the Andaman Sea.")

    import rag.index as index_module

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("power cut while writing")

    monkeypatch.setattr(index_module.BM25Index, "save", crash)  # dies half-way through writing files
    with pytest.raises(KeyboardInterrupt):
        ingest([docs], writable_index, embedder=embedder)
    assert (writable_index / MANIFEST).read_text() == before
    assert not list(writable_index.parent.glob(".tmp-*")), "temporary folder left behind"
    index = Index.load(writable_index)
    assert "new" not in index.documents and len(index.documents) == 4


def test_a_new_version_keeps_the_store_file_it_built(writable_index, tmp_path, embedder):
    """Saving links the store file the build wrote instead of copying it again (gigabytes at scale); the
    build's temporary folder goes, so the index holds the only name of that file."""
    previous = Index.load(writable_index)
    note = document_from_text("note", "A shelter for rescued fishermen opened in Ranong.", title="Note")
    index, _ = Index.build([*previous.documents, note], Config(), embedder, previous=previous,
                           target=writable_index)
    built = index.store.path
    inode = built.stat().st_ino
    index.save(writable_index)
    saved = (writable_index / STORE).stat()
    assert saved.st_ino == inode and saved.st_nlink == 1 and not built.exists()
    assert not list(writable_index.parent.glob(".tmp-*"))
    assert "note" in Index.load(writable_index).documents


def test_crash_between_renames_is_recovered(writable_index):
    old = writable_index.parent / f".old-{writable_index.name}-deadbeef"
    writable_index.rename(old)  # as if the process died after moving the old version aside
    index = Index.load(writable_index)
    assert len(index.documents) == 4 and writable_index.is_dir()


def test_a_stale_old_version_is_removed_by_the_next_writer(writable_index):
    from rag.index import write_lock

    stale = writable_index.parent / f".old-{writable_index.name}-deadbeef"
    shutil.copytree(writable_index, stale)  # as if a crash came after the swap, before the old one was removed
    with write_lock(writable_index):
        pass
    assert not stale.exists() and len(Index.load(writable_index).documents) == 4


def test_reingest_reembeds_only_the_changed_file(writable_index, tmp_path, embedder, monkeypatch):
    docs = tmp_path / "docs"
    shutil.copytree(SEEDS, docs)
    _, first = ingest([docs], writable_index, embedder=embedder)  # sources now point at the copy
    laos = docs / "sex-trafficking-in-laos.txt"
    laos.write_text(laos.read_text() + "\n\n==Update==\nA new shelter opened in Vientiane in 2024.\n")
    (docs / "sex-trafficking-in-malaysia.txt").unlink()

    embedded_texts: list[str] = []
    original = embedder.encode

    def spy(texts, progress=False):
        embedded_texts.extend(texts)
        return original(texts, progress=progress)

    monkeypatch.setattr(embedder, "encode", spy)
    report, index = ingest([docs], writable_index, embedder=embedder)
    assert report.changed == ["sex-trafficking-in-laos"]
    assert report.removed == ["sex-trafficking-in-malaysia"]
    assert report.added == []
    laos_chunks = [c for c in index.chunks if c.doc_id == "sex-trafficking-in-laos"]
    assert len(embedded_texts) == len(laos_chunks) == report.chunks_embedded
    assert all("Laos" in t for t in embedded_texts)
    reloaded = Index.load(writable_index)
    assert "sex-trafficking-in-malaysia" not in reloaded.documents
    assert "Vientiane" in reloaded.documents["sex-trafficking-in-laos"].text
    # Unchanged documents kept their vectors: same count and same vectors as before.
    assert sum(c.doc_id == "compound-abuses-myanmar-border-areas-2023" for c in reloaded.chunks) == \
        sum(c.doc_id == "compound-abuses-myanmar-border-areas-2023" for c in first.chunks)

    # Nothing changed: nothing embedded, nothing rewritten.
    embedded_texts.clear()
    manifest_before = (writable_index / MANIFEST).read_text()
    report, _ = ingest([docs], writable_index, embedder=embedder)
    assert not report.modified and embedded_texts == []
    assert (writable_index / MANIFEST).read_text() == manifest_before


def test_unreadable_file_keeps_its_previous_version(writable_index, tmp_path, embedder):
    docs = tmp_path / "docs"
    shutil.copytree(SEEDS, docs)
    ingest([docs], writable_index, embedder=embedder)
    (docs / "sex-trafficking-in-laos.txt").write_bytes(b"\x00\x00binary now")
    report, index = ingest([docs], writable_index, embedder=embedder)
    assert any("sex-trafficking-in-laos.txt" in p for p, _ in report.skipped)
    assert "sex-trafficking-in-laos" in index.documents
    assert not report.removed


def test_rebuild_replaces_an_incompatible_index(writable_index, embedder):
    _edit_manifest(writable_index, **{"model.name": "other/model"})
    with pytest.raises(IndexMismatchError):
        ingest([SEEDS], writable_index, embedder=embedder)
    report, index = ingest([SEEDS], writable_index, embedder=embedder, rebuild=True)
    assert len(index.documents) == 4 and report.chunks_embedded == len(index.chunks)
    Index.load(writable_index)


def test_upgrade_rebuilds_only_an_incompatible_index(writable_index, embedder):
    report, _ = ingest([SEEDS], writable_index, embedder=embedder, upgrade=True)
    assert report.chunks_embedded == 0  # compatible and unchanged: nothing re-embedded
    _edit_manifest(writable_index, format_version=0)
    report, index = ingest([SEEDS], writable_index, embedder=embedder, upgrade=True)
    assert report.chunks_embedded == len(index.chunks) and \
        Index.load(writable_index).manifest["format_version"] == FORMAT_VERSION


def test_changed_bm25_settings_rewrite_the_index_without_re_embedding(writable_index, embedder):
    config = Config().replace(bm25_k1=1.5, bm25_b=0.6)
    ingest([SEEDS], writable_index, embedder=embedder)  # record the sources as this test gives them
    report, _ = ingest(None, writable_index, config, embedder=embedder)
    assert report.chunks_embedded == 0  # the vectors do not depend on BM25's parameters
    loaded = Index.load(writable_index, config)
    assert loaded.manifest["bm25"]["k1"] == 1.5 and loaded.manifest["bm25"]["b"] == 0.6
    assert (loaded.bm25.k1, loaded.bm25.b) == (1.5, 0.6)


# ------------------------------------------------------------- manifests of the wrong shape
@pytest.mark.parametrize("manifest", [
    "[]", "null", "5", '"text"',
    "MISSING_MODEL", "FILES_AS_LIST", "SOURCES_AS_NUMBER", "COUNTS_NOT_A_MAPPING",
])
def test_a_malformed_manifest_is_a_clear_error(writable_index, config, manifest):
    import json as _json

    from rag.errors import IndexError_
    from rag.index import Index

    path = writable_index / "manifest.json"
    good = _json.loads(path.read_text(encoding="utf-8"))
    edits = {"MISSING_MODEL": lambda m: m.pop("model"), "FILES_AS_LIST": lambda m: m.update(files=list(m["files"])),
             "SOURCES_AS_NUMBER": lambda m: m.update(sources=5), "COUNTS_NOT_A_MAPPING": lambda m: m.update(counts=[])}
    if manifest in edits:
        edits[manifest](good)
        manifest = _json.dumps(good)
    path.write_text(manifest, encoding="utf-8")
    with pytest.raises(IndexError_, match="rag ingest"):
        Index.load(writable_index, config)


def test_chunk_spans_beyond_the_document_are_refused_at_load(writable_index, config):
    import json as _json
    import sqlite3

    from rag.errors import IndexCorruptError
    from rag.index import MANIFEST, STORE, Index, _sha256_file

    with sqlite3.connect(writable_index / STORE) as db:
        db.execute('UPDATE chunks SET "end" = 1000000000 WHERE id = (SELECT min(id) FROM chunks)')
    db.close()
    manifest = _json.loads((writable_index / MANIFEST).read_text(encoding="utf-8"))
    manifest["files"][STORE] = _sha256_file(writable_index / STORE)  # consistent hashes: the span itself is wrong
    (writable_index / MANIFEST).write_text(_json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexCorruptError, match="outside its document"):
        Index.load(writable_index, config)


# ---------------------------------------------------------------------- concurrent writers and readers
_SWAPPER = """
import sys, time
from pathlib import Path
from rag.index import Index, write_lock
target, versions, rounds = Path(sys.argv[1]), [Index.load(Path(p)) for p in sys.argv[2:4]], int(sys.argv[4])
print("ready", flush=True)
for i in range(rounds):
    with write_lock(target):
        versions[i % 2].save(target)
"""


def test_readers_during_writes_see_the_old_or_the_new_index_never_a_false_corruption(tmp_path, writable_index,
                                                                                     embedder, config):
    """A process swapping two versions in as fast as it can, while this one loads in a loop: every load is
    one whole version (the loads used to fail with "missing or altered" or a raw FileNotFoundError)."""
    import subprocess
    import sys

    from rag import ingest
    from rag.index import Index

    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "note.txt").write_text("A short note about river transport in the delta.\n", encoding="utf-8")
    version_b = tmp_path / "b"
    shutil.copytree(writable_index, version_b)
    ingest([extra], version_b, config, embedder=embedder)
    target = tmp_path / "live"
    shutil.copytree(writable_index, target)
    seeds_only = set(Index.load(writable_index, config).documents)
    with_note = set(Index.load(version_b, config).documents)
    assert with_note - seeds_only

    writer = subprocess.Popen([sys.executable, "-c", _SWAPPER, str(target), str(writable_index), str(version_b), "40"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "ready"
    seen: Counter = Counter()
    while writer.poll() is None:
        docs = set(Index.load(target, config).documents)  # raises on any false corruption
        seen["seeds" if docs == seeds_only else "note" if docs == with_note else "mixed"] += 1
    assert writer.returncode == 0, writer.stderr.read()
    assert seen["mixed"] == 0 and sum(seen.values()) > 0, seen
    assert not list(tmp_path.glob(".tmp-live-*")) and not list(tmp_path.glob(".old-live-*"))


def test_a_second_writer_waits_for_the_first_then_gives_up_with_a_clear_error(writable_index):
    """The write lock is held by another process: a writer waits up to its timeout, then IndexBusyError."""
    import subprocess
    import sys
    import time

    from rag.errors import IndexBusyError
    from rag.index import write_lock

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from rag.index import write_lock\nwith write_lock(Path(sys.argv[1])):\n"
                               "    print('held', flush=True); time.sleep(1.5)", str(writable_index)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    started = time.monotonic()
    with pytest.raises(IndexBusyError, match="another process"):
        with write_lock(writable_index, timeout=0.2):
            pass
    with write_lock(writable_index, timeout=30):  # waits for the holder to finish, then gets the lock
        waited = time.monotonic() - started
    holder.wait(timeout=30)
    assert holder.returncode == 0 and waited > 0.2


def test_an_unwritable_index_folder_is_a_one_line_error_and_nothing_changes(writable_index, config, embedder,
                                                                          tmp_path, monkeypatch):
    """A full disk (faiss's RuntimeError) or a read-only parent (PermissionError) while writing is an
    IndexWriteError naming the cause and the fix; the previous index loads as before."""
    import errno

    import faiss

    from rag import ingest
    from rag.errors import IndexWriteError
    from rag.index import Index

    before = set(Index.load(writable_index, config).documents)
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "note.txt").write_text("A note about fishing boats in the Andaman Sea.\n", encoding="utf-8")

    import rag.store as store_module

    def full_disk(*_args, **_kwargs):
        raise RuntimeError("Error in faiss::FileIOWriter: write error: No space left on device")

    def full_copy(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    # The disk fills while faiss writes the vectors, or while the new version's copy of the store is written
    # (the same error there, not a retry through SQLite).
    for module, name, fake in [(faiss, "write_index", full_disk), (store_module, "_copy_file", full_copy)]:
        monkeypatch.setattr(module, name, fake)
        with pytest.raises(IndexWriteError, match="disk is full; nothing was changed"):
            ingest([extra], writable_index, config, embedder=embedder)
        monkeypatch.undo()
        assert set(Index.load(writable_index, config).documents) == before
        assert not list(writable_index.parent.glob(".tmp-*"))

    def read_only(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(IndexWriteError, match="permission denied"):
        ingest([extra], tmp_path / "ro" / "index", config, embedder=embedder)
    monkeypatch.undo()
    assert set(Index.load(writable_index, config).documents) == before


# ---------------------------------------------------------------------- stable ids, approximate store
@pytest.mark.slow
def test_a_document_is_removed_from_an_approximate_index_without_a_rebuild(writable_index, embedder, monkeypatch):
    """An ivf index: removing a document deletes its rows only. Nothing is embedded or trained again, the
    other chunks keep their ids and vectors, and the index answers from what is left."""
    import numpy as np

    import rag.vectorstore as vectorstore_module
    from rag import Assistant

    config = Config(vector_index="ivf", ivf_nprobe=64)
    folder = writable_index
    flat = Index.load(folder, config)

    def no_embedding(*_args, **_kwargs):
        raise AssertionError("nothing may be embedded when a document is removed")

    # Asking for ivf converts the flat store from its exact vectors: no document is embedded again.
    monkeypatch.setattr(embedder, "encode", no_embedding)
    report, _ = ingest([SEEDS], folder, config, embedder=embedder)
    monkeypatch.undo()
    assert report.chunks_embedded == 0
    before = Index.load(folder, config)
    assert np.array_equal(before.store.chunk_ids(), flat.store.chunk_ids())
    assert before.manifest["vector_store"]["kind"] == "ivf" and before.vectors.kind == "ivf"
    gone = "sex-trafficking-in-malaysia"
    gone_ids = set(before.store.chunk_ids_of([gone]).tolist())
    kept_ids = np.asarray(sorted(set(before.store.chunk_ids().tolist()) - gone_ids))
    kept_vectors = before.reconstruct(kept_ids)

    def no_training(*_args, **_kwargs):
        raise AssertionError("the approximate index may not be trained again")

    def no_bm25_rebuild(*_args, **_kwargs):
        raise AssertionError("BM25 may not be built again from every chunk")

    assistant = Assistant(before, config, embedder)
    monkeypatch.setattr(embedder, "encode", no_embedding)
    monkeypatch.setattr(vectorstore_module.VectorStore, "create", no_training)
    monkeypatch.setattr(BM25Index, "from_terms", no_bm25_rebuild)
    report = assistant.remove([gone])
    monkeypatch.undo()
    assert report.removed == [gone]

    after = Index.load(folder, config)
    assert after.vectors.kind == "ivf" and after.vectors.nlist == before.vectors.nlist
    assert np.array_equal(after.store.chunk_ids(), kept_ids)
    assert np.array_equal(after.vectors.all_ids(), kept_ids) and np.array_equal(after.bm25.ids, kept_ids)
    assert np.allclose(after.reconstruct(kept_ids), kept_vectors)
    assert gone not in after.documents and len(after.documents) == 3
    _assert_bm25_as_if_built_now(after)
    answer = Assistant(after, config, embedder).ask("How many people may be held in scam centres across Myanmar?")
    assert "120,000" in answer.text
    assert all(c.doc_id != gone for c in Assistant(after, config, embedder).retrieve("Malaysia trafficking", k=10))


@pytest.mark.slow
def test_a_changed_document_gets_new_ids_and_the_others_keep_theirs(writable_index, tmp_path, embedder):
    import numpy as np

    docs = tmp_path / "docs"
    shutil.copytree(SEEDS, docs)
    ingest([docs], writable_index, embedder=embedder)
    before = Index.load(writable_index)
    laos = docs / "sex-trafficking-in-laos.txt"
    laos.write_text(laos.read_text() + "\n\n==Update==\nA new shelter opened in Vientiane in 2024.\n")
    ingest([docs], writable_index, embedder=embedder)
    after = Index.load(writable_index)
    old_laos = set(before.store.chunk_ids_of(["sex-trafficking-in-laos"]).tolist())
    new_laos = set(after.store.chunk_ids_of(["sex-trafficking-in-laos"]).tolist())
    assert not old_laos & new_laos and min(new_laos) > max(before.store.chunk_ids())  # ids are never reused
    others = sorted(set(before.store.chunk_ids().tolist()) - old_laos)
    assert sorted(set(after.store.chunk_ids().tolist()) - new_laos) == others
    assert np.array_equal(after.reconstruct(others), before.reconstruct(others))
    assert after.manifest["next_chunk_id"] == max(new_laos) + 1
    _assert_bm25_as_if_built_now(after)


def _assert_bm25_as_if_built_now(index: Index) -> None:
    """The BM25 an update left equals one built from scratch over the chunks the index now holds."""
    import numpy as np

    ids, terms = zip(*index.store.iter_terms())
    fresh = BM25Index.from_terms([t.split() for t in terms], index.bm25.k1, index.bm25.b, np.asarray(ids))
    assert np.array_equal(index.bm25.ids, fresh.ids)
    for question in ("Vientiane shelter", "scam centres Myanmar 120,000", "sex trafficking Malaysia victims"):
        assert np.array_equal(index.bm25.scores(question), fresh.scores(question)), question
    index.bm25.check()


def test_reingest_reads_only_files_whose_size_or_mtime_changed(writable_index, tmp_path, embedder, monkeypatch):
    import os

    import rag.assistant as assistant_module

    docs = tmp_path / "docs"
    shutil.copytree(SEEDS, docs)
    ingest([docs], writable_index, embedder=embedder)
    read: list[str] = []
    real = assistant_module.load_documents

    def spy(paths, *args, **kwargs):
        read.extend(p.name for p in map(Path, paths))
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(assistant_module, "load_documents", spy)
    report, _ = ingest([docs], writable_index, embedder=embedder)
    assert read == [] and not report.modified  # nothing changed: no file is read
    laos = docs / "sex-trafficking-in-laos.txt"
    laos.write_text(laos.read_text() + "\n\n==Update==\nA new shelter opened in Vientiane in 2024.\n")
    report, _ = ingest([docs], writable_index, embedder=embedder)
    assert read == ["sex-trafficking-in-laos.txt"] and report.changed == ["sex-trafficking-in-laos"]
    read.clear()
    os.utime(docs / "sex-trafficking-in-malaysia.txt")  # touched, same bytes: read, found unchanged, stamp kept
    report, _ = ingest([docs], writable_index, embedder=embedder)
    assert read == ["sex-trafficking-in-malaysia.txt"] and not report.changed and report.chunks_embedded == 0
    read.clear()
    report, _ = ingest([docs], writable_index, embedder=embedder)
    assert read == []
    # --rebuild reads everything again (the folder as given).
    ingest([docs], writable_index, embedder=embedder, rebuild=True)
    assert read == ["docs"]


def test_an_index_without_bm25_term_frequencies_gets_them_at_its_next_write(writable_index, tmp_path, embedder):
    """An index written before BM25 kept its term frequencies loads and answers; the next change builds BM25
    once from every chunk's stored terms (it cannot be updated) and writes them, so later changes update it."""
    from rag.index import BM25_DIR

    bm25 = writable_index / BM25_DIR
    manifest = json.loads((writable_index / MANIFEST).read_text())
    for name in (BM25Index.TF, BM25Index.LENGTHS):
        (bm25 / name).unlink()
        del manifest["files"][f"{BM25_DIR}/{name}"], manifest["file_stats"][f"{BM25_DIR}/{name}"]
    (writable_index / MANIFEST).write_text(json.dumps(manifest))
    old = Index.load(writable_index)
    assert old.bm25.tf is None and old.bm25.scores("scam centres").max() > 0

    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "note.txt").write_text("A shelter for rescued fishermen opened in Ranong in 2024.\n", encoding="utf-8")
    ingest([extra], writable_index, embedder=embedder)
    new = Index.load(writable_index)
    assert new.bm25.tf is not None and (bm25 / BM25Index.TF).is_file() and "note" in new.documents
    _assert_bm25_as_if_built_now(new)
