"""Hostile documents and index folders given to ``rag.ingest`` and ``rag ingest``.

Each case ends with the index intact: it loads, holds the documents it held before (plus the ones that were
rightly added), and answers a question. Nothing outside the index folder is changed or deleted.
"""

from __future__ import annotations

import os
import random
import shutil
import string
import time
from pathlib import Path

import pytest

from rag import DocumentError, InputError, RagError, ingest, load_documents
from rag.chunking import Chunker
from rag.index import Index
from rag.tokens import count_tokens

from .conftest import (CORPUS, REPO, assert_intact, assert_one_error_line, doc_state, is_root, leftovers,
                       run_rag, tree_snapshot, write_files)

GOOD = "lighthouse.txt"
GOOD_TEXT = "The lighthouse of Porto stands on the north pier. Its keeper lights the lamp at dusk every day.\n"
GOOD_ID = "lighthouse"

#: name -> (bytes, "skip" | "add" | "either", text expected in the skip reason or in the added document)
HOSTILE_FILES = {
    "empty": (b"", "skip", "empty"),
    "whitespace-only": (b"  \n\t\n \r\n\x0c\x0b   \n", "skip", "empty"),
    "binary": (bytes(range(256)) * 40, "skip", "binary"),
    "pdf-bytes": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
                  b"stream\nx\x9c\xcb\x48\xcd\xc9\xc9\x57\x28\xcf\x2f\xca\x49\x01\x00\nendstream\n%%EOF\n", "skip", "PDF"),
    "zip-bytes": (b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(200), "skip", "ZIP"),
    "latin-1": ("Le café de la gare ouvre à sept heures. Les crêpes sont prêtes à midi.\n".encode("latin-1"),
                "either", "UTF-8|café"),
    "utf-16-bom": ("The ferry to Capri leaves at nine. Tickets are sold on the pier.\n".encode("utf-16"),
                   "add", "ferry to Capri"),
    "utf-16-be-bom": (b"\xfe\xff" + "The tram to the castle runs every ten minutes.\n".encode("utf-16-be"),
                      "add", "tram to the castle"),
    "utf-8-bom": ("\ufeffThe museum closes on Mondays. Entry is free on Sundays.\n".encode("utf-8"), "add",
                  "museum closes"),
    "invalid-utf8-inside": (b"The harbour is deep. " + b"\xff\xfe\xfa\xc3(" + b" Ships dock at night.\n", "either",
                            "UTF-8|harbour"),
    "old-mac-line-ends": (b"The orchard grows pears.\rThe cider is pressed in autumn.\r\rApples ripen late.\r",
                          "add", "orchard grows pears"),
    "headings-only": (b"= Title =\n\n==One==\n\n==Two==\n", "skip", "no text"),
    "nul-after-sniff-window": (b"The granary stores wheat. " * 400 + b"\x00\x00\x00 end.\n", "either",
                               "binary|granary"),
}


def _hostile(folder: Path, case: str) -> Path:
    data, _kind, _text = HOSTILE_FILES[case]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{case}.txt"
    path.write_bytes(data)
    return path


def _check_outcome(case: str, report_or_index_docs: dict, skipped: list[tuple[str, str]], doc_id: str) -> None:
    _data, kind, text = HOSTILE_FILES[case]
    alternatives = text.split("|")
    reasons = [r for p, r in skipped if Path(p).name == f"{case}.txt"]
    if doc_id in report_or_index_docs:
        assert kind in ("add", "either"), f"{case} should have been skipped, was indexed"
        assert any(t in report_or_index_docs[doc_id].text for t in alternatives), report_or_index_docs[doc_id].text[:200]
        assert not reasons, f"{case} both indexed and skipped"
    else:
        assert kind in ("skip", "either"), f"{case} should have been indexed, was skipped: {reasons}"
        assert len(reasons) == 1, f"{case} skipped {len(reasons)} times: {skipped}"
        assert any(t.lower() in reasons[0].lower() for t in alternatives), reasons[0]


# ---------------------------------------------------------------------- odd contents
@pytest.mark.parametrize("case", list(HOSTILE_FILES))
def test_hostile_file_next_to_a_good_one(case, tmp_path, idx, base_state, config, embedder, reader):
    """Python API: a folder holding the hostile file and a good one; the good one is added, the hostile one
    added correctly or skipped with its reason; the old documents stay."""
    docs = write_files(tmp_path / "docs", {GOOD: GOOD_TEXT})
    _hostile(docs, case)
    report, index = ingest([docs], idx, config, embedder=embedder)
    assert GOOD_ID in report.added
    _check_outcome(case, index.documents, report.skipped, case)
    expected = set(base_state) | {GOOD_ID} | ({case} if case in index.documents else set())
    assert_intact(idx, expected, config, embedder, reader)
    assert not leftovers(idx)


@pytest.mark.parametrize("case", [c for c, (_d, kind, _t) in HOSTILE_FILES.items() if kind == "skip"])
def test_hostile_file_alone_is_a_document_error(case, tmp_path, idx, base_state, config, embedder, reader):
    """Python API: the hostile file alone gives a DocumentError naming it; the index is unchanged."""
    before = tree_snapshot(idx)
    path = _hostile(tmp_path / "docs", case)
    with pytest.raises(DocumentError, match=path.name.replace(".", r"\.")):
        ingest([path], idx, config, embedder=embedder)
    assert tree_snapshot(idx) == before
    assert_intact(idx, base_state, config, embedder, reader)


@pytest.mark.parametrize("case", ["empty", "binary", "pdf-bytes", "utf-16-bom", "latin-1"])
def test_cli_ingest_hostile_file(case, cli, tmp_path, idx, base_state, config, embedder, reader):
    """The command on a folder with the hostile file: exit 0, good file added, the hostile file named on
    stderr (or added), never a traceback."""
    docs = write_files(tmp_path / "docs", {GOOD: GOOD_TEXT})
    path = _hostile(docs, case)
    run = cli("-q", "--index", idx, "ingest", docs)
    assert run.code == 0, run.err
    assert "Traceback" not in run.err
    assert f"added    {GOOD_ID}" in run.out
    state = doc_state(idx, config)
    if case not in state:
        assert path.name in run.err
    assert_intact(idx, set(base_state) | {GOOD_ID} | ({case} & set(state)), config, embedder, reader)


def test_cli_ingest_only_unreadable_files_is_one_error_line(cli, tmp_path, idx, base_state, config, embedder,
                                                            reader):
    docs = tmp_path / "docs"
    for case in ("empty", "binary", "pdf-bytes"):
        _hostile(docs, case)
    before = tree_snapshot(idx)
    run = cli("-q", "--index", idx, "ingest", docs)
    assert_one_error_line(run.code, run.err, contains="no readable documents")
    assert run.code == DocumentError.exit_code
    assert tree_snapshot(idx) == before
    assert_intact(idx, base_state, config, embedder, reader)


# ---------------------------------------------------------------------- sizes
def _long_line(n: int) -> str:
    rng = random.Random(7)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n)) + "\n"


#: ``chunk_tokens`` is a target for chunks of whole sentences: they are packed by summing each sentence's own
#: token count, and the joined text can tokenize a few tokens longer (2 of 458 seed chunks have 181). The hard
#: caps are ``chunk_max_chars`` and, for cut sentences, ``chunk_tokens`` itself.
TOKEN_JOIN_SLACK = 1.05


def _token_cap(config) -> int:
    return int(config.chunk_tokens * TOKEN_JOIN_SLACK)


def _assert_within_caps(doc, chunks, config) -> None:
    assert chunks, "no chunk"
    for c in chunks:
        assert doc.text[c.start:c.end] == c.text
        assert len(c.text) <= config.chunk_max_chars, f"chunk of {len(c.text)} characters"
        assert count_tokens(c.text, config.encoding) <= _token_cap(config), \
            f"chunk of {count_tokens(c.text, config.encoding)} tokens"
    # Nothing lost: every non-space character of the document is in some chunk.
    covered = bytearray(len(doc.text))
    for c in chunks:
        covered[c.start:c.end] = b"\x01" * (c.end - c.start)
    missing = [i for i, ch in enumerate(doc.text) if not covered[i] and not ch.isspace()]
    assert not missing, f"{len(missing)} characters in no chunk (first at {missing[0]})"


def test_2mb_line_without_spaces_is_chunked_within_the_caps(tmp_path, config):
    path = tmp_path / "one-line.txt"
    path.write_text(_long_line(2_000_000), encoding="utf-8")
    started = time.perf_counter()
    docs, skipped = load_documents([path])
    assert not skipped
    chunks = Chunker.from_config(config).chunk(docs[0])
    assert time.perf_counter() - started < 120
    _assert_within_caps(docs[0], chunks, config)


@pytest.mark.parametrize("paragraph_every", [1, 7, 10_000], ids=["one-sentence-paragraphs", "seven-sentence-paragraphs",
                                                                 "one-paragraph"])
def test_prose_is_chunked_within_the_caps(paragraph_every, config):
    """Ordinary sentences (the text of the 50 MB case, shortened): every chunk within both caps."""
    from rag import document_from_text

    text = "".join(f"Entry {i} records that the harbour of town {i % 977} shipped {i % 131} tonnes of grain in "
                   f"spring. " + ("\n\n" if i % paragraph_every == paragraph_every - 1 else "") for i in range(300))
    doc = document_from_text("prose", text)
    _assert_within_caps(doc, Chunker.from_config(config).chunk(doc), config)


@pytest.mark.slow
def test_2mb_line_without_spaces_ingests_within_the_caps(tmp_path, idx, base_state, config, embedder, reader):
    path = tmp_path / "docs" / "one-line.txt"
    path.parent.mkdir()
    path.write_text(_long_line(2_000_000), encoding="utf-8")
    report, index = ingest([path], idx, config, embedder=embedder)
    assert report.added == ["one-line"]
    _assert_within_caps(index.documents["one-line"], [c for c in index.chunks if c.doc_id == "one-line"], config)
    assert_intact(idx, set(base_state) | {"one-line"}, config, embedder, reader)


@pytest.mark.slow
def test_50mb_file_loads_and_chunks_within_the_caps(tmp_path, config):
    """Loading and chunking only: embedding ~70,000 chunks would take about 20 minutes on 2 cores."""
    path = tmp_path / "big.txt"
    parts, size, i = [], 0, 0
    while size < 50 * 1024 * 1024:
        s = f"Entry {i} records that the harbour of town {i % 977} shipped {i % 131} tonnes of grain in spring. "
        parts.append(s + ("\n\n" if i % 7 == 6 else ""))
        size += len(parts[-1])
        i += 1
    path.write_text("".join(parts), encoding="utf-8")
    del parts
    docs, skipped = load_documents([path])
    assert not skipped and len(docs[0].text) >= 50 * 1024 * 1024
    chunks = Chunker.from_config(config).chunk(docs[0])
    for c in chunks:
        assert len(c.text) <= config.chunk_max_chars and c.tokens <= _token_cap(config)
        assert docs[0].text[c.start:c.end] == c.text
    assert sum(len(c.text) for c in chunks) >= 0.95 * len(docs[0].text.replace("\n\n", ""))


@pytest.mark.slow
def test_folder_of_1000_tiny_files(tmp_path, idx, base_state, config, embedder, reader, cli):
    docs = write_files(tmp_path / "many", {f"sub{i % 10}/note-{i:04d}.txt": f"Box {i} holds item {i}.\n"
                                           for i in range(1000)})
    run = cli("-q", "--index", idx, "ingest", docs)
    assert run.code == 0, run.err
    assert "1000 added" in run.out
    expected = set(base_state) | {f"note-{i:04d}" for i in range(1000)}
    assert_intact(idx, expected, config, embedder, reader)
    answer = assert_intact(idx, expected, config, embedder, reader, question="Which box holds item 617?")
    assert any(p.doc_id == "note-0617" for p in answer.passages)


# ---------------------------------------------------------------------- names and folders
def test_duplicate_content_under_two_names(tmp_path, idx, base_state, config, embedder, reader):
    docs = write_files(tmp_path / "docs", {"report.txt": GOOD_TEXT, "copy of report.txt": GOOD_TEXT})
    report, index = ingest([docs], idx, config, embedder=embedder)
    kept = set(report.added) & {"report", "copy-of-report"}
    skipped = [p for p, _ in report.skipped if Path(p).name in ("report.txt", "copy of report.txt")]
    assert len(kept) + len(skipped) == 2 and kept, (report.added, report.skipped)
    assert_intact(idx, set(base_state) | kept, config, embedder, reader)
    # Re-ingesting the same folder changes nothing.
    again, _ = ingest([docs], idx, config, embedder=embedder)
    assert not again.added and not again.changed and not again.removed


@pytest.mark.parametrize("via", ["api", "cli"])
def test_symlink_loops_in_a_folder(via, tmp_path, idx, base_state, config, embedder, reader, cli):
    docs = write_files(tmp_path / "docs", {GOOD: GOOD_TEXT, "sub/inner.txt": "The inner courtyard has a well.\n"})
    os.symlink(docs, docs / "loop")  # a folder holding itself
    os.symlink("../..", docs / "sub" / "up")  # a folder holding its grandparent
    os.symlink("self.txt", docs / "self.txt")  # a file link to itself
    os.symlink("b.txt", docs / "a.txt")
    os.symlink("a.txt", docs / "b.txt")  # two links to each other
    started = time.perf_counter()
    if via == "api":
        report, index = ingest([docs], idx, config, embedder=embedder)
        added = set(report.added)
    else:
        run = cli("-q", "--index", idx, "ingest", docs)
        assert run.code == 0, run.err
        assert "Traceback" not in run.err
        added = {line.split()[1] for line in run.out.splitlines() if line.startswith("added")}
    assert time.perf_counter() - started < 60
    assert added == {GOOD_ID, "inner"}, added
    assert_intact(idx, set(base_state) | {GOOD_ID, "inner"}, config, embedder, reader)


ODD_NAMES = ["with  spaces and\ttab.txt", "ünïcödé 日本語 عربي.txt", "new\nline.txt", "..txt", "-rf.txt",
             "semi;colon $(touch x) `id` 'q' \"dq\".txt", "emoji 🦀🔥.txt", "UPPER.TXT", "a" * 200 + ".txt",
             "back\\slash.txt", "ctrl\x1b[31m\x07.txt"]


@pytest.mark.parametrize("name", ODD_NAMES, ids=["spaces", "unicode", "newline", "dotdot", "dash", "shell",
                                                 "emoji", "upper-suffix", "long", "backslash", "control"])
def test_odd_file_name(name, tmp_path, idx, base_state, config, embedder, reader):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / name).write_text(GOOD_TEXT, encoding="utf-8")
    report, index = ingest([docs / name], idx, config, embedder=embedder)
    assert len(report.added) == 1, (report.added, report.skipped)
    doc_id = report.added[0]
    assert doc_id and all(ch in string.ascii_lowercase + string.digits + "-" for ch in doc_id), repr(doc_id)
    stored = index.documents[doc_id].path
    assert Path(stored).resolve() == (docs / name).resolve()
    assert not (tmp_path / "x").exists()  # nothing was run from the name
    assert_intact(idx, set(base_state) | {doc_id}, config, embedder, reader)
    assert tree_snapshot(docs) == {name: tree_snapshot(docs)[name]}  # the source folder is unchanged


def test_undecodable_file_name(tmp_path, idx, base_state, config, embedder, reader, cli):
    """A file name holding bytes that are not UTF-8 (Python sees lone surrogates): added, or skipped with a
    reason; never a crash while writing the index."""
    docs = tmp_path / "docs"
    docs.mkdir()
    raw = os.fsencode(docs) + b"/bad-\xff\xfe-name.txt"
    with open(raw, "wb") as fh:
        fh.write(GOOD_TEXT.encode())
    run = cli("-q", "--index", idx, "ingest", docs)
    assert "Traceback" not in run.err
    if run.code == 0:
        state = doc_state(idx, config)
        assert len(set(state) - set(base_state)) == 1
        assert_intact(idx, state, config, embedder, reader)
        assert set(base_state) <= set(state)
    else:
        assert_one_error_line(run.code, run.err)
        assert_intact(idx, base_state, config, embedder, reader)


def test_dot_dot_tricks_via_folders(tmp_path, idx, base_state, config, embedder, reader):
    """``docs/sub/../x.txt``, a folder named ``...``, and ``..`` in a folder path: each file indexed once under
    its real path; nothing outside the given paths is read."""
    docs = write_files(tmp_path / "docs", {"sub/keep.txt": "The sub folder file mentions a red kite.\n",
                                           "x.txt": "The x file mentions a blue heron.\n",
                                           ".../dots.txt": "The dots file mentions a grey wagtail.\n"})
    write_files(tmp_path / "outside", {"secret.txt": "The outside file must never be indexed.\n"})
    report, index = ingest([docs / "sub" / ".." / "x.txt", docs / "..." , docs / "sub" / ".." / "sub"], idx,
                           config, embedder=embedder)
    assert set(report.added) == {"x", "dots", "keep"}, report.added
    assert all("secret" not in d for d in index.documents)
    for doc_id in ("x", "dots", "keep"):
        assert ".." not in Path(index.documents[doc_id].path).parts
    assert_intact(idx, set(base_state) | {"x", "dots", "keep"}, config, embedder, reader)


def test_same_name_in_two_folders_in_separate_runs(tmp_path, idx, base_state, config, embedder, reader, cli):
    old = write_files(tmp_path / "r2023", {"summary.txt": "The 2023 summary counts 40 boats in the harbour.\n"})
    new = write_files(tmp_path / "r2024", {"summary.txt": "The 2024 summary counts 55 boats in the harbour.\n"})
    first, _ = ingest([old / "summary.txt"], idx, config, embedder=embedder)
    run = cli("-q", "--index", idx, "ingest", new / "summary.txt")
    assert run.code == 0, run.err
    index = Index.load(idx, config)
    summaries = {i: d for i, d in index.documents.items() if d.meta.get("file") == "summary.txt"}
    assert len(summaries) == 2, sorted(index.documents)
    assert first.added[0] in summaries
    texts = sorted(d.text for d in summaries.values())
    assert "2023 summary" in texts[0] and "2024 summary" in texts[1]
    # A third run of the first folder keeps both, under the same ids.
    ingest([old / "summary.txt"], idx, config, embedder=embedder)
    assert set(doc_state(idx, config)) == set(base_state) | set(summaries)
    assert_intact(idx, set(base_state) | set(summaries), config, embedder, reader)


def test_catalogue_of_the_wrong_shape_is_ignored(tmp_path, idx, base_state, config, embedder, reader):
    """``catalogue.json`` (titles for the files of a folder) holding [], null, a number, bad JSON or odd entries."""
    added = set()
    for i, content in enumerate(["[]", "null", "5", "{", '{"documents": 5}', '{"documents": [5, null, []]}',
                                 '{"documents": [{"file": "doc.txt", "title": 5, "date": []}]}',
                                 '{"documents": [{"file": 7}]}']):
        docs = write_files(tmp_path / f"cat{i}", {"doc.txt": f"Catalogue case {i} mentions a copper kettle.\n",
                                                 "catalogue.json": content})
        report, index = ingest([docs], idx, config, embedder=embedder)
        assert len(report.added) == 1, (content, report.added, report.skipped)
        doc = index.documents[report.added[0]]
        assert isinstance(doc.title, str) and doc.title, (content, doc.title)
        added |= set(report.added)
    assert_intact(idx, set(base_state) | added, config, embedder, reader)


# ---------------------------------------------------------------------- where the index goes
def _foreign_folder(tmp_path: Path) -> Path:
    return write_files(tmp_path / "project", {"notes.txt": "My own notes.\n", "thesis.docx": b"PK\x03\x04 thesis",
                                              "data/results.csv": "a,b\n1,2\n", "manifest.json": "{\"mine\": 1}"})


@pytest.mark.parametrize("via", ["api", "cli"])
def test_index_in_a_folder_holding_other_files_is_refused(via, tmp_path, config, embedder, cli, base_corpus):
    folder = _foreign_folder(tmp_path)
    before = tree_snapshot(folder)
    if via == "api":
        with pytest.raises(InputError, match="not an index"):
            ingest([base_corpus], folder, config, embedder=embedder)
    else:
        run = cli("-q", "--index", folder, "ingest", base_corpus)
        assert_one_error_line(run.code, run.err, contains="not an index")
    assert tree_snapshot(folder) == before
    assert not leftovers(folder)


@pytest.mark.parametrize("via", ["api", "cli"])
def test_index_equal_to_the_source_folder_is_refused(via, tmp_path, config, embedder, cli):
    docs = write_files(tmp_path / "docs", CORPUS)
    before = tree_snapshot(docs)
    if via == "api":
        with pytest.raises(InputError):
            ingest([docs], docs, config, embedder=embedder)
    else:
        run = cli("-q", "--index", docs, "ingest", docs)
        assert_one_error_line(run.code, run.err, contains=str(docs))
    assert tree_snapshot(docs) == before
    assert not leftovers(docs)


@pytest.mark.parametrize("via", ["api", "cli"])
def test_index_pointing_at_a_file_is_refused(via, tmp_path, config, embedder, cli, base_corpus):
    target = tmp_path / "important.txt"
    target.write_text("Do not overwrite me.\n")
    before = tree_snapshot(tmp_path)
    if via == "api":
        with pytest.raises(InputError, match="file"):
            ingest([base_corpus], target, config, embedder=embedder)
    else:
        run = cli("-q", "--index", target, "ingest", base_corpus)
        assert_one_error_line(run.code, run.err, contains="file")
    assert target.read_text() == "Do not overwrite me.\n"
    after = tree_snapshot(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith(".")} == \
           {k: v for k, v in before.items() if not k.startswith(".")}


@pytest.mark.parametrize("via", ["api", "cli"])
def test_index_under_a_file_is_refused(via, tmp_path, config, embedder, cli, base_corpus):
    """``--index some-file.txt/idx``: the parent is a file."""
    target = tmp_path / "important.txt"
    target.write_text("Do not overwrite me.\n")
    if via == "api":
        with pytest.raises(RagError):
            ingest([base_corpus], target / "idx", config, embedder=embedder)
    else:
        run = cli("-q", "--index", target / "idx", "ingest", base_corpus)
        assert_one_error_line(run.code, run.err)
    assert target.read_text() == "Do not overwrite me.\n"


@pytest.mark.skipif(is_root(), reason="running as root: chmod 0o555 does not stop root from writing")
@pytest.mark.parametrize("via", ["api", "cli"])
def test_index_in_a_read_only_folder(via, tmp_path, idx, base_state, config, embedder, cli, reader, base_corpus):
    parent = idx.parent
    docs = write_files(tmp_path / "docs", {GOOD: GOOD_TEXT})
    before = tree_snapshot(parent)
    parent.chmod(0o555)
    try:
        if via == "api":
            with pytest.raises(RagError):
                ingest([docs], idx, config, embedder=embedder)
        else:
            run = cli("-q", "--index", idx, "ingest", docs)
            assert_one_error_line(run.code, run.err)
        new_dir = tmp_path / "ro" / "idx"
        new_dir.parent.mkdir()
        new_dir.parent.chmod(0o555)
        run = cli("-q", "--index", new_dir, "ingest", base_corpus)
        assert_one_error_line(run.code, run.err)
    finally:
        parent.chmod(0o755)
        (tmp_path / "ro").chmod(0o755) if (tmp_path / "ro").exists() else None
    assert tree_snapshot(parent) == before
    assert_intact(idx, base_state, config, embedder, reader)


@pytest.mark.parametrize("damage", ["deleted", "empty", "empty-object"])
def test_lost_manifest_then_ingest_does_not_rebuild_from_the_seeds(damage, cli, tmp_path, idx, base_state, config,
                                                                   embedder, reader, isolated_home, base_corpus):
    shutil.copytree(REPO / "seeds", isolated_home / "seeds")  # the built-in seeds are right there
    manifest = idx / "manifest.json"
    if damage == "deleted":
        manifest.unlink()
    elif damage == "empty":
        manifest.write_bytes(b"")
    else:
        manifest.write_text("{}")
    before = tree_snapshot(idx)
    run = cli("-q", "--index", idx, "ingest")
    line = assert_one_error_line(run.code, run.err)
    assert "rag ingest" in line
    assert tree_snapshot(idx) == before, "the index folder was changed"
    with pytest.raises(RagError):
        ingest(None, idx, config, embedder=embedder)
    assert tree_snapshot(idx) == before
    # The documents are still there to rebuild from: the named command with the real sources restores them.
    run = cli("-q", "--index", idx, "ingest", base_corpus, "--rebuild")
    assert run.code == 0, run.err
    assert_intact(idx, base_state, config, embedder, reader)


def test_empty_string_index_dir_is_refused(tmp_path, config, embedder, base_corpus):
    """``index_dir=""`` is the current folder: refused (it holds other files), nothing written there."""
    (tmp_path / "mine.txt").write_text("mine\n")
    before = tree_snapshot(tmp_path)
    with pytest.raises(InputError):
        ingest([base_corpus], "", config, embedder=embedder)
    assert {k: v for k, v in tree_snapshot(tmp_path).items() if not k.startswith(".")} == \
           {k: v for k, v in before.items() if not k.startswith(".")}


# ---------------------------------------------------------------------- regressions
ESCAPES_TEXT = ("= \x1b]0;pwned title\x07Escape \x1b[2JReport =\n\n"
                "The \x1b[31mred lighthouse\x1b[0m of Porto stands on the north pier. "
                "\x1b]8;;http://evil.example/\x07Click here\x1b]8;;\x07 to read the keeper's log. "
                "The keeper rings the bell \x1b[5mat noon\x1b[0m every day \x9b31m in the C1 style.\n")


@pytest.fixture
def escapes_index(idx, tmp_path, config, embedder) -> Path:
    docs = write_files(tmp_path / "docs", {"escapes.txt": ESCAPES_TEXT})
    report, _ = ingest([docs], idx, config, embedder=embedder)
    assert report.added == ["escapes"]
    return idx


@pytest.mark.parametrize("argv", [
    ["ask", "Where does the red lighthouse of Porto stand?"],
    ["ask", "Where does the red lighthouse of Porto stand?", "--json"],
    ["ask", "What is the capital of Peru?"],
    ["retrieve", "Where does the red lighthouse of Porto stand?"],
    ["info"],
], ids=["ask", "ask-json", "ask-abstains", "retrieve", "info"])
def test_escape_codes_in_a_document_are_not_printed_raw(argv, cli, escapes_index, base_state, config, embedder,
                                                        reader):
    run = cli("-q", "--index", escapes_index, *argv)
    assert run.code == 0, run.err
    assert "\x1b" not in run.out, repr(run.out[:400])
    assert "\x9b" not in run.out, "a raw C1 CSI (U+009B) is printed: " + repr(run.out[run.out.find("\x9b") - 40:][:80])
    assert "\x1b" not in run.err
    # The document keeps its exact text (quotes are exact slices), only the display is made safe.
    assert "\x1b[31m" in Index.load(escapes_index, config).documents["escapes"].text
    assert_intact(escapes_index, set(base_state) | {"escapes"}, config, embedder, reader)


def test_skip_message_of_an_unreadable_file_is_printed_once(cli, tmp_path, idx, base_state, config, embedder,
                                                            reader):
    docs = write_files(tmp_path / "docs", {GOOD: GOOD_TEXT, "broken.txt": b"\x00\x01\x02 binary"})
    run = cli("-q", "--index", idx, "ingest", docs)
    assert run.code == 0, run.err
    mentions = [line for line in run.err.splitlines() if "broken.txt" in line]
    assert len(mentions) == 1, run.err
    assert_intact(idx, set(base_state) | {GOOD_ID}, config, embedder, reader)


@pytest.mark.slow
def test_skip_message_is_printed_once_by_the_real_command(tmp_path, idx, base_state, config, embedder, reader):
    docs = write_files(tmp_path / "docs", {GOOD: GOOD_TEXT, "broken.txt": b"%PDF-1.7 not text"})
    run = run_rag(["-q", "--index", idx, "ingest", docs], cwd=tmp_path)
    assert run.code == 0, run.err
    mentions = [line for line in run.err.splitlines() if "broken.txt" in line]
    assert len(mentions) == 1, run.err
    assert_intact(idx, set(base_state) | {GOOD_ID}, config, embedder, reader)


@pytest.mark.skipif(is_root(), reason="running as root: a chmod 000 file is still readable")
def test_skip_message_of_a_permission_denied_file_is_printed_once(cli, tmp_path, idx, base_state, config, embedder,
                                                                  reader):
    docs = write_files(tmp_path / "docs", {GOOD: GOOD_TEXT, "locked.txt": "secret\n"})
    (docs / "locked.txt").chmod(0)
    try:
        run = cli("-q", "--index", idx, "ingest", docs)
    finally:
        (docs / "locked.txt").chmod(0o644)
    assert run.code == 0, run.err
    assert len([line for line in run.err.splitlines() if "locked.txt" in line]) == 1, run.err
    assert_intact(idx, set(base_state) | {GOOD_ID}, config, embedder, reader)
