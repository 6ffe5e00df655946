"""Fixtures and checks shared by the hostile-input suite.

* ``base_corpus`` / ``base_index``: three tiny documents and a real index over them, built once per session
  and only read; ``idx`` is a private copy a test may damage or write to.
* ``assert_intact``: the index loads, holds exactly the expected documents (same content hashes), and
  answers a question through ``Assistant`` (shared embedder and reader, so no model is loaded again).
* ``cli``: runs ``rag.cli.main`` in-process with logging set up as in a real process (``logging.basicConfig``
  writes to the captured stderr), so "one stderr line" is checked as a user would see it.
* ``run_rag``: the real ``.venv/bin/rag`` in a subprocess, for cases that need a process (kill -9, bytes argv).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import pytest

REPO = Path(__file__).resolve().parents[2]
RAG_BIN = REPO / ".venv" / "bin" / "rag"
if not RAG_BIN.exists():  # another interpreter: the console script next to it
    RAG_BIN = Path(sys.executable).with_name("rag")

#: Three tiny documents, each answering its own question.
CORPUS = {
    "mekong.txt": ("The Mekong River flows through six countries. It rises on the Tibetan Plateau and ends in the "
                   "South China Sea. Fishermen on the Mekong catch giant catfish in the dry season.\n"),
    "bakery.txt": ("The village bakery opens at six in the morning. Its rye bread is baked in a wood oven. "
                   "The baker, Anna Kowalski, has run it since 1998.\n"),
    "etna.txt": ("Mount Etna is an active volcano on the island of Sicily. It erupted many times in the last "
                 "century. Its summit is about 3,300 metres high.\n"),
}
BASE_IDS = frozenset(Path(name).stem for name in CORPUS)
QUESTION = "Where does the Mekong River end?"


# ---------------------------------------------------------------------- corpora and indexes
def write_files(folder: Path, files: dict[str, str | bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def base_corpus(tmp_path_factory) -> Path:
    return write_files(tmp_path_factory.mktemp("hostile-corpus") / "docs", CORPUS)


@pytest.fixture(scope="session")
def base_index(tmp_path_factory, session_home, base_corpus, config, embedder) -> Path:
    """A real index over the three tiny documents; read-only."""
    os.environ["RAG_CACHE_DIR"] = str(session_home / "cache")
    from rag import ingest

    folder = tmp_path_factory.mktemp("hostile-index") / "idx"
    report, _ = ingest([base_corpus], folder, config, embedder=embedder)
    assert sorted(report.added) == sorted(BASE_IDS)
    return folder


@pytest.fixture(scope="session")
def base_state(base_index, config) -> dict[str, str]:
    return doc_state(base_index, config)


@pytest.fixture(scope="session")
def base_assistant(base_index, config, embedder, reader):
    """A read-only assistant over the base index."""
    from rag import Assistant
    from rag.index import Index

    return Assistant(Index.load(base_index, config), config, embedder, reader)


@pytest.fixture
def idx(tmp_path, base_index) -> Path:
    """A private copy of the base index (in its own parent folder) that a test may change."""
    target = tmp_path / "indexes" / "idx"
    shutil.copytree(base_index, target)
    return target


@pytest.fixture(autouse=True)
def _in_tmp_cwd(tmp_path, monkeypatch):
    """Relative paths in the CLI (``seeds``, ``PATHS``) never resolve inside the repository."""
    monkeypatch.chdir(tmp_path)


# ---------------------------------------------------------------------- checks
def doc_state(folder: Path, config) -> dict[str, str]:
    """doc_id -> sha256 of what the index at ``folder`` holds (loading it verifies every file)."""
    from rag.index import Index

    index = Index.load(folder, config)
    return {d.doc_id: d.sha256 for d in index.documents.values()}


def assert_intact(folder: Path, expected: dict[str, str] | Sequence[str] | None, config, embedder, reader,
                  question: str = QUESTION):
    """The index loads, holds exactly ``expected`` (ids -> sha256, or just ids), its chunks are exact, unique
    slices, and an assistant over it answers ``question``. Returns the Answer."""
    from rag import Answer, Assistant
    from rag.index import Index

    index = Index.load(folder, config)
    if expected is not None:
        if isinstance(expected, dict):
            assert {d.doc_id: d.sha256 for d in index.documents.values()} == expected
        else:
            assert set(index.documents) == set(expected)
    spans = [(c.doc_id, c.start, c.end) for c in index.chunks]
    assert len(spans) == len(set(spans)), "duplicate chunks in the index"
    assert index.vectors.ntotal == len(index.chunks)
    for c in index.chunks:
        assert index.documents[c.doc_id].text[c.start:c.end] == c.text
    answer = Assistant(index, config, embedder, reader).ask(question)
    assert isinstance(answer, Answer)
    for c in answer.citations:
        assert index.documents[c.doc_id].text[c.start:c.end] == c.quote
    return answer


def tree_snapshot(folder: Path) -> dict[str, Any]:
    """Relative path -> sha256 (files), "<dir>" (folders) or "-> target" (symlinks), for "nothing changed"."""
    out: dict[str, Any] = {}
    for path in sorted(Path(folder).rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_dir():
            out[rel] = "<dir>"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def leftovers(index_folder: Path) -> list[str]:
    """Temporary siblings a writer left behind (``.tmp-`` / ``.old-``)."""
    parent = Path(index_folder).parent
    return sorted(p.name for p in parent.iterdir()
                  if p.name.startswith((f".tmp-{index_folder.name}", f".old-{index_folder.name}")))


def assert_one_error_line(code: int, err: str, *, contains: str | Sequence[str] = ()) -> str:
    """Non-zero exit, exactly one non-empty stderr line, starting "error:", no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0, f"exit code 0, stderr: {err!r}"
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}: {err!r}"
    assert lines[0].startswith("error:"), lines[0]
    for text in [contains] if isinstance(contains, str) else contains:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    return lines[0]


def rebuild_command(message: str) -> list[str] | None:
    """The ``rag ingest …`` command an error message names (argv after ``rag``), or None."""
    m = re.search(r"rag (ingest\b[^;\n]*)", message)
    if not m:
        return None
    return shlex.split(m.group(1).strip().rstrip(".)"))


# ---------------------------------------------------------------------- running the command
@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys) -> Callable[..., Run]:
    """``rag.cli.main(argv)`` in-process, with the logging a real process gets (warnings to stderr)."""
    from rag.cli import main

    def run(*argv: str) -> Run:
        capsys.readouterr()
        root = logging.getLogger()
        saved_handlers, saved_level = root.handlers[:], root.level
        saved_showwarning = warnings.showwarning
        root.handlers = []  # as in a fresh process, so main()'s basicConfig installs its stderr handler
        try:
            try:
                code = main([str(a) for a in argv])
            except SystemExit as exc:  # argparse
                code = exc.code if isinstance(exc.code, int) else 1
        finally:
            root.handlers = saved_handlers
            root.setLevel(saved_level)
            warnings.showwarning = saved_showwarning
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def rag_env() -> dict[str, str]:
    env = dict(os.environ)  # RAG_HOME / RAG_CACHE_DIR of this test (set by the autouse fixture)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    return env


def run_rag(args: Sequence[str | bytes], *, timeout: float = 180, cwd: Path | None = None) -> Run:
    """The real ``rag`` command in a subprocess."""
    argv = [os.fsencode(RAG_BIN)] + [a if isinstance(a, bytes) else os.fsencode(str(a)) for a in args]
    proc = subprocess.run(argv, capture_output=True, env=rag_env(), cwd=cwd, timeout=timeout)
    return Run(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))


def popen_rag(args: Sequence[str], *, cwd: Path | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([str(RAG_BIN), *map(str, args)], env=rag_env(), cwd=cwd, **kwargs)


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def edit_manifest(folder: Path, change: Callable[[dict], Any]) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def rehash(folder: Path, *names: str) -> None:
    """Record the current hashes of ``names`` in the manifest, so a damaged file passes the hash check and
    the reader of its content is what is tested. Their recorded ``file_stats`` are left as they were: the
    file no longer has them, so a load hashes it, finds the hash matching, and checks its structure."""
    from rag.index import _sha256_file

    def change(m: dict) -> None:
        for name in names:
            m["files"][name] = _sha256_file(folder / name)

    edit_manifest(folder, change)


def restamp(folder: Path, name: str) -> None:
    """Give ``name`` back the modification time the manifest records for it (its size must be the recorded
    one already): a load then trusts it without hashing (the documented cost trade-off)."""
    stats = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["file_stats"][name]
    size, mtime_ns = stats
    assert (folder / name).stat().st_size == size, "the edit changed the file's size; restamping cannot hide it"
    os.utime(folder / name, ns=(mtime_ns, mtime_ns))


def sql_edit(path: Path, *statements: str) -> None:
    """Run ``statements`` on the SQLite file at ``path`` in one transaction (the store, edited behind the
    index's back). Leaves no journal beside it."""
    import sqlite3

    db = sqlite3.connect(path)
    try:
        with db:
            for statement in statements:
                db.execute(statement)
    finally:
        db.close()
