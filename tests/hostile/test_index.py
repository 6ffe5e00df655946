"""Damaged index folders: every case is IndexCorruptError or IndexMismatchError naming the rebuild command (one
``error:`` line from the command, exit code 4), the failed load changes nothing, and the named command run
with the real sources brings the same documents back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from rag import Assistant, IndexCorruptError, IndexMismatchError
from rag.errors import IndexError_
from rag.index import BM25_DIR, CHUNKS, DOCUMENTS, MANIFEST, VECTORS, Index

from .conftest import QUESTION, assert_intact, assert_one_error_line, edit_manifest, rebuild_command, rehash, \
    tree_snapshot

Damage = Callable[[Path], None]


def _lines(folder: Path, name: str) -> list[str]:
    return (folder / name).read_text(encoding="utf-8").splitlines()


def _write_lines(folder: Path, name: str, lines: list[str], *, rehashed: bool = True) -> None:
    (folder / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    if rehashed:
        rehash(folder, name)


def _edit_row(name: str, row: int, change: Callable[[dict], object]) -> Damage:
    def damage(folder: Path) -> None:
        lines = _lines(folder, name)
        data = json.loads(lines[row])
        result = change(data)
        lines[row] = json.dumps(result if isinstance(result, (list, dict)) else data)
        _write_lines(folder, name, lines)

    return damage


def _first_bm25_file(folder: Path) -> Path:
    return sorted((folder / BM25_DIR).iterdir())[0]


def _delete(name: str) -> Damage:
    def damage(folder: Path) -> None:
        path = folder / name
        if path.is_dir():
            import shutil

            shutil.rmtree(path)
        else:
            path.unlink()

    return damage


def _truncate_vectors(rehashed: bool) -> Damage:
    def damage(folder: Path) -> None:
        data = (folder / VECTORS).read_bytes()
        (folder / VECTORS).write_bytes(data[: len(data) // 2])
        if rehashed:
            rehash(folder, VECTORS)

    return damage


def _empty_vectors(folder: Path) -> None:
    (folder / VECTORS).write_bytes(b"")
    rehash(folder, VECTORS)


def _vectors_with_extra_row(folder: Path) -> None:
    import faiss

    vectors = faiss.read_index(str(folder / VECTORS))
    vectors.add(np.ones((1, vectors.d), dtype=np.float32) / np.sqrt(vectors.d))
    faiss.write_index(vectors, str(folder / VECTORS))
    rehash(folder, VECTORS)


def _vectors_of_another_dimension(folder: Path) -> None:
    import faiss

    other = faiss.IndexFlatIP(16)
    other.add(np.ones((Index.load(folder).vectors.ntotal, 16), dtype=np.float32) / 4)
    faiss.write_index(other, str(folder / VECTORS))
    rehash(folder, VECTORS)


def _drop_last_chunk(folder: Path) -> None:
    _write_lines(folder, CHUNKS, _lines(folder, CHUNKS)[:-1])


def _bad_json_line(name: str, rehashed: bool) -> Damage:
    def damage(folder: Path) -> None:
        lines = _lines(folder, name)
        lines.insert(1, '{"id": 1, "doc_id": "mekong", "start": 0,')
        _write_lines(folder, name, lines, rehashed=rehashed)

    return damage


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


def _unlisted_and_altered(name: str) -> Damage:
    """The manifest stops listing a file's hash, and the file is then altered (spans still valid)."""
    def damage(folder: Path) -> None:
        edit_manifest(folder, lambda m: m["files"].pop(name, None))
        lines = _lines(folder, CHUNKS)
        rows = [json.loads(line) for line in lines]
        rows[0]["doc_id"], rows[1]["doc_id"] = rows[1]["doc_id"], rows[0]["doc_id"]
        rows[0]["start"] = rows[1]["start"] = 0
        rows[0]["end"] = rows[1]["end"] = 10
        (folder / CHUNKS).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    return damage


DAMAGES: dict[str, Damage] = {
    # missing files
    "missing-vectors": _delete(VECTORS),
    "missing-chunks": _delete(CHUNKS),
    "missing-documents": _delete(DOCUMENTS),
    "missing-bm25-folder": _delete(BM25_DIR),
    "missing-a-bm25-file": lambda f: _first_bm25_file(f).unlink(),
    # vectors.faiss
    "truncated-vectors": _truncate_vectors(rehashed=False),
    "truncated-vectors-rehashed": _truncate_vectors(rehashed=True),
    "empty-vectors-rehashed": _empty_vectors,
    "vectors-extra-row": _vectors_with_extra_row,
    "vectors-other-dimension": _vectors_of_another_dimension,
    # chunks.jsonl / documents.jsonl
    "chunks-bad-json-line": _bad_json_line(CHUNKS, rehashed=False),
    "chunks-bad-json-line-rehashed": _bad_json_line(CHUNKS, rehashed=True),
    "documents-bad-json-line-rehashed": _bad_json_line(DOCUMENTS, rehashed=True),
    "chunk-row-is-a-list": _edit_row(CHUNKS, 0, lambda r: [r["id"], r["doc_id"]]),
    "chunk-unknown-doc-id": _edit_row(CHUNKS, 0, lambda r: r.update(doc_id="no-such-document")),
    "chunk-id-out-of-order": _edit_row(CHUNKS, 0, lambda r: r.update(id=7)),
    "chunk-span-beyond-document": _edit_row(CHUNKS, 0, lambda r: r.update(end=r["end"] + 10_000)),
    "chunk-span-negative": _edit_row(CHUNKS, 0, lambda r: r.update(start=-5)),
    "chunk-span-reversed": _edit_row(CHUNKS, 0, lambda r: r.update(start=r["end"], end=r["start"])),
    "chunk-start-is-text": _edit_row(CHUNKS, 0, lambda r: r.update(start="0")),
    "chunk-start-is-float": _edit_row(CHUNKS, 0, lambda r: r.update(start=0.5)),
    "document-without-text": _edit_row(DOCUMENTS, 0, lambda d: d.pop("text")),
    "document-text-is-a-number": _edit_row(DOCUMENTS, 0, lambda d: d.update(text=12345)),
    "document-sections-malformed": _edit_row(DOCUMENTS, 0, lambda d: d.update(sections=[["x"]])),
    "row-counts-disagree-chunks-dropped": _drop_last_chunk,
    "row-counts-disagree-manifest": _manifest(lambda m: m["counts"].update(chunks=m["counts"]["chunks"] + 1)),
    # a tampered manifest
    "manifest-model-name": _manifest(_set("model.name", "sentence-transformers/all-mpnet-base-v2")),
    "manifest-dimension-768": _manifest(_set("model.dimension", 768)),
    "manifest-dimension-text": _manifest(_set("model.dimension", "384")),
    "manifest-dimension-zero": _manifest(_set("model.dimension", 0)),
    "manifest-format": _manifest(_set("format", "something-else")),
    "manifest-format-version-2": _manifest(_set("format_version", 2)),
    "manifest-format-version-text": _manifest(_set("format_version", "1")),
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
    "manifest-sources-5": _manifest(_set("sources", 5)),
    "manifest-counts-as-list": _manifest(_set("counts", [])),
    "manifest-counts-chunks-text": _manifest(_set("counts.chunks", "3")),
    "manifest-documents-as-dict": _manifest(_set("documents", {})),
    "manifest-files-unlisted-chunks": _unlisted_and_altered(CHUNKS),
    "manifest-files-empty": lambda f: (edit_manifest(f, _set("files", {})), _unlisted_and_altered(CHUNKS)(f)),
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


def test_damage_found_after_loading_is_not_a_traceback(idx, config, embedder, reader, cli):
    """The index is replaced by a damaged one while an assistant holds the old one: questions still work."""
    assistant = Assistant(Index.load(idx, config), config, embedder, reader)
    _truncate_vectors(rehashed=True)(idx)
    assert assistant.ask(QUESTION).text
    run = cli("-q", "--index", idx, "ask", QUESTION)
    assert_one_error_line(run.code, run.err, contains="rag ingest")


def test_ingest_into_a_damaged_index_refuses_then_rebuild_repairs(idx, tmp_path, base_corpus, base_state, config,
                                                                   embedder, reader, cli):
    """Adding a document to a corrupt index is refused (nothing written); ``--rebuild`` with the sources and
    the new document repairs it with nothing lost."""
    from .conftest import write_files

    _bad_json_line(CHUNKS, rehashed=True)(idx)
    before = tree_snapshot(idx)
    new = write_files(tmp_path / "new", {"heron.txt": "A grey heron nests by the mill pond every spring.\n"})
    run = cli("-q", "--index", idx, "ingest", new)
    assert_one_error_line(run.code, run.err, contains="--rebuild")
    assert tree_snapshot(idx) == before
    run = cli("-q", "--index", idx, "ingest", "--rebuild", base_corpus, new)
    assert run.code == 0, run.err
    assert_intact(idx, set(base_state) | {"heron"}, config, embedder, reader)
