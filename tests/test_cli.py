"""The ``rag`` command: JSON output, one-line errors with exit codes, ingest summary."""

from __future__ import annotations

import json
import shutil

import pytest

from rag.cli import main

from .conftest import SEEDS


def test_ask_json_parses(seed_index_dir, capsys):
    code = main(["--index", str(seed_index_dir), "ask", "How many hours a day do people work in scam centres?",
                 "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["abstained"] is False
    assert data["citations"] and {"number", "doc_id", "quote", "start", "end"} <= set(data["citations"][0])
    assert data["passages"][0]["rank"] == 1


def test_ask_prints_numbered_sources(seed_index_dir, capsys):
    assert main(["--index", str(seed_index_dir), "ask", "Which organisation rescues and restores sex trafficking victims in Myanmar?"]) == 0
    out = capsys.readouterr().out
    assert "Sources:" in out and "[1]" in out and "Eden Ministry" in out


@pytest.mark.parametrize("argv, message, code", [
    (["ask", "   "], "question is empty", 2),
    (["ask", "scams", "--k", "0"], "k must be at least 1", 2),
])
def test_library_errors_are_one_line(seed_index_dir, capsys, argv, message, code):
    assert main(["--index", str(seed_index_dir), *argv]) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_missing_index_is_an_error_not_a_traceback(tmp_path, capsys):
    assert main(["--index", str(tmp_path / "none"), "ask", "anything"]) == 4
    assert "rag ingest" in capsys.readouterr().err


def test_ingest_reports_added_changed_removed_skipped(tmp_path, capsys, embedder):
    docs = tmp_path / "docs"
    shutil.copytree(SEEDS, docs)
    (docs / "broken.txt").write_bytes(b"\x00\x01 binary")
    index = tmp_path / "idx"
    assert main(["-q", "--index", str(index), "ingest", str(docs), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert len(first["added"]) == 4 and first["skipped"][0]["path"].endswith("broken.txt")
    (docs / "sex-trafficking-in-laos.txt").unlink()
    assert main(["-q", "--index", str(index), "ingest"]) == 0  # no paths: re-sync the recorded sources
    out = capsys.readouterr().out
    assert "removed  sex-trafficking-in-laos" in out and "1 removed" in out


def test_chat_reads_questions_from_stdin(seed_index_dir, capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("What is the capital of Peru?\nquit\n"))
    assert main(["--index", str(seed_index_dir), "chat"]) == 0
    assert "The documents do not answer this question." in capsys.readouterr().out


def test_info_names_the_reader_and_its_hash(seed_index_dir, capsys, reader):
    assert main(["--index", str(seed_index_dir), "info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["reader"]["sha256"] == reader.sha256 and info["reader"]["name"] == reader.name
    assert main(["--index", str(seed_index_dir), "info"]) == 0
    out = capsys.readouterr().out
    assert f"sha256 {reader.sha256}" in out and "documents: 4" in out and "more" not in out


def test_info_lists_the_first_documents_unless_asked_for_all(seed_index_dir, capsys, monkeypatch):
    import rag.cli as cli_module

    monkeypatch.setattr(cli_module, "INFO_DOCUMENTS", 3)
    assert main(["--index", str(seed_index_dir), "info"]) == 0
    out = capsys.readouterr().out
    assert "documents: 4" in out and "and 1 more (rag info --all" in out
    assert sum(line.startswith("  ") and "chunks)" in line for line in out.splitlines()) == 3
    assert main(["--index", str(seed_index_dir), "info", "--all"]) == 0
    out = capsys.readouterr().out
    assert sum(line.startswith("  ") and "chunks)" in line for line in out.splitlines()) == 4 and "more" not in out


def test_serve_on_a_taken_port_is_one_line_before_anything_loads(capsys, monkeypatch):
    import socket

    from rag import Assistant

    def no_load(*args, **kwargs):  # the port is checked first: nothing slow may happen before
        raise AssertionError("the index was loaded before the port was checked")

    monkeypatch.setattr(Assistant, "load", classmethod(no_load))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot serve on 127.0.0.1:") and "--port" in err and err.count("\n") == 1


def test_escape_sequences_in_a_document_are_printed_inert(tmp_path, capsys, embedder):
    """ANSI colour and OSC title sequences inside a document used to reach the terminal raw from rag ask."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "ansi.txt").write_text("The inspectors counted \x1b[31m412\x1b[0m boats \x1b]0;pwned\x07 in the "
                                     "northern harbour last year.\n", encoding="utf-8")
    index = tmp_path / "index"
    assert main(["-q", "ingest", str(corpus), "--index", str(index)]) == 0
    capsys.readouterr()
    assert main(["-q", "ask", "How many boats did the inspectors count in the northern harbour?",
                 "--index", str(index)]) == 0
    out = capsys.readouterr().out
    assert "412" in out and "\x1b" not in out and "\x07" not in out and "\u241b[31m" in out


def test_an_error_naming_a_file_with_a_newline_stays_one_line(tmp_path, capsys):
    odd = tmp_path / "two\nlines"
    odd.write_text("not an index", encoding="utf-8")
    assert main(["-q", "ingest", str(SEEDS), "--index", str(odd)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "two\u240alines" in err


def test_set_chooses_the_vector_store_at_ingest_and_nprobe_at_query_time(tmp_path, capsys, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, place in enumerate(("northern harbour", "southern dock", "eastern quay")):
        (docs / f"report-{i}.md").write_text(
            f"# Report {i}\n\nInspectors counted {12 + i} boats in the {place} in March. "
            f"The {place} was dredged in {1990 + i}.\n", encoding="utf-8")
    index = tmp_path / "idx"
    assert main(["-q", "--index", str(index), "ingest", str(docs), "--set", "vector_index=ivf"]) == 0
    capsys.readouterr()
    assert main(["--index", str(index), "info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["vector_store"]["kind"] == "ivf"
    assert main(["-q", "--index", str(index), "ask", "How many boats were counted in the southern dock?",
                 "--set", "ivf_nprobe=1", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["citations"] and all(c["doc_id"].startswith("report-") for c in answer["citations"])
    assert main(["-q", "--index", str(index), "ask", "anything", "--set", "ivf_nprobe=many"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --set ivf_nprobe=many") and "\n" not in err
