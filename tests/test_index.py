"""Stage 4: index directory, manifest checks, atomic writes, incremental re-ingest."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from rag import (Config, IndexCorruptError, IndexMismatchError, IndexNotFoundError, ingest)
from rag.index import CHUNKS, MANIFEST, VECTORS, Index

from .conftest import SEEDS


def test_index_directory_layout_and_manifest(seed_index_dir):
    names = {p.name for p in seed_index_dir.iterdir()}
    assert {MANIFEST, VECTORS, CHUNKS, "documents.jsonl", "bm25"} <= names
    manifest = json.loads((seed_index_dir / MANIFEST).read_text())
    assert manifest["format_version"] == 1
    assert manifest["model"]["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert manifest["model"]["dimension"] == 384
    assert manifest["metric"] == "inner_product"
    assert manifest["chunker"]["chunk_tokens"] == Config().chunk_tokens
    assert {d["doc_id"] for d in manifest["documents"]} == {p.stem for p in SEEDS.glob("*.txt")}
    assert all(len(d["sha256"]) == 64 for d in manifest["documents"])
    assert manifest["versions"]["faiss-cpu"] != "not installed"
    assert manifest["created_at"]


def test_row_i_is_faiss_id_i(seed_index_dir, embedder):
    index = Index.load(seed_index_dir)
    rows = [json.loads(line) for line in (seed_index_dir / CHUNKS).read_text().splitlines()]
    assert [r["id"] for r in rows] == list(range(index.vectors.ntotal))
    # The stored vector of row 5 is the embedding of chunk 5 (with its header).
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


def test_altered_file_is_detected(writable_index):
    with (writable_index / CHUNKS).open("a") as fh:
        fh.write('{"id": 9999}\n')
    with pytest.raises(IndexCorruptError, match="altered"):
        Index.load(writable_index)


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
    assert report.chunks_embedded == len(index.chunks) and Index.load(writable_index).manifest["format_version"] == 1


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

    from rag.errors import IndexCorruptError
    from rag.index import CHUNKS, MANIFEST, Index, _sha256_file

    rows = [_json.loads(line) for line in (writable_index / CHUNKS).read_text(encoding="utf-8").splitlines()]
    rows[0]["end"] = 10 ** 9
    (writable_index / CHUNKS).write_text("".join(_json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    manifest = _json.loads((writable_index / MANIFEST).read_text(encoding="utf-8"))
    manifest["files"][CHUNKS] = _sha256_file(writable_index / CHUNKS)  # consistent hashes: the span itself is wrong
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

    def full_disk(*_args, **_kwargs):
        raise RuntimeError("Error in faiss::FileIOWriter: write error: No space left on device")

    monkeypatch.setattr(faiss, "write_index", full_disk)
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
