"""The gold checker, on the shipped gold set and on broken files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.gold import GoldError, load_gold, read_gold
from rag.cli import main

REPO = Path(__file__).resolve().parents[2]
GOLD = REPO / "eval" / "gold.jsonl"
SEEDS = REPO / "seeds"


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def _good(seed_docs) -> dict:
    laos = seed_docs["sex-trafficking-in-laos"].text
    quote = "Laos women and girls are sex trafficked into Thailand, Vietnam, China, Taiwan, Japan, and other countries"
    assert quote in laos
    return {"id": "t1", "question": "To which countries are Lao women trafficked?", "answerable": True,
            "answers": ["Thailand"], "evidence": [quote], "doc": "sex-trafficking-in-laos.txt", "kind": "list"}


def test_shipped_gold_set_passes_the_checker(seed_docs, capsys):
    assert main(["eval", "--check-gold", str(GOLD), "--docs", str(SEEDS)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "0 error(s)" in out
    gold = read_gold(GOLD, seed_docs)
    counts = gold.counts()
    # What the issue asks of the gold set.
    assert counts["questions"] >= 60 and counts["unanswerable"] >= 12 and counts["multi_doc"] >= 5
    assert {i.doc_ids[0] for i in gold.items if i.answerable and len(i.doc_ids) == 1} == set(seed_docs)
    for item in gold.items:
        assert {s.quote_index for s in item.spans} == set(range(len(item.evidence)))
        for span in item.spans:
            assert seed_docs[span.doc_id].text[span.start:span.end] == item.evidence[span.quote_index]


@pytest.mark.parametrize("name", ["holdout.jsonl", "holdout2.jsonl"])
def test_shipped_held_out_sets_pass_the_checker(name, capsys):
    assert main(["eval", "--check-gold", str(REPO / "eval" / name), "--docs", str(SEEDS)]) == 0
    out = capsys.readouterr().out
    assert "OK: 30 valid questions" in out and "0 error(s)" in out


def test_every_section_of_the_report_has_a_question(seed_docs):
    report = seed_docs["compound-abuses-myanmar-border-areas-2023"]
    gold = read_gold(GOLD, seed_docs)
    covered = {report.section_at(s.start) for i in gold.items for s in i.spans if s.doc_id == report.doc_id}
    # Sections with real body text (a heading followed at once by a sub-heading, or by a one-line lead-in, has none).
    body = {}
    for block in report.blocks:
        if block.kind == "body":
            body[block.section] = body.get(block.section, 0) + block.end - block.start
    substantive = {title for title, chars in body.items() if chars >= 200 and title != "(front matter)"}
    assert len(substantive) >= 20
    assert substantive - covered == set()


def test_original_catalogue_file_names_are_accepted(tmp_path, seed_docs):
    item = _good(seed_docs)
    item["doc"] = "001_3920bbcee3040af8.txt"  # original name of sex-trafficking-in-laos.txt in seeds/catalogue.json
    gold = read_gold(_write(tmp_path / "g.jsonl", [item]), seed_docs)
    assert not gold.errors
    assert gold.items[0].doc_ids == ("sex-trafficking-in-laos",)


@pytest.mark.parametrize("change, expected", [
    (lambda d: d.update(evidence=["Laos women and girls are trafficked to the moon and back again every year"]),
     "not an exact substring"),
    (lambda d: d.update(evidence=[d["evidence"][0].replace("Laos women", "Laos  women")]),
     "whitespace is collapsed"),
    (lambda d: d.update(evidence=[d["evidence"][0].lower()]), "ignoring case"),
    (lambda d: d.update(answers=["Cambodia"]), "not an exact substring"),
    (lambda d: d.update(answers=["karaoke bars"]), "not inside any of its evidence quotes"),
    (lambda d: d.update(doc="nowhere.txt"), "'nowhere.txt' is not among the documents"),
    (lambda d: d.update(kind="unanswerable"), "contradicts answerable"),
    (lambda d: d.update(kind="opinion"), "kind 'opinion' is unknown"),
    (lambda d: d.pop("evidence"), "missing field(s) evidence"),
    (lambda d: d.update(answerable="yes"), "answerable must be true or false"),
    (lambda d: d.update(docs=["sex-trafficking-in-laos.txt"]), 'either "doc" or "docs"'),
])
def test_checker_names_the_line_and_the_problem(tmp_path, seed_docs, capsys, change, expected):
    good = _good(seed_docs)
    bad = dict(good, id="t2")
    change(bad)
    path = _write(tmp_path / "gold.jsonl", [good, "", bad])
    assert main(["eval", "--check-gold", str(path), "--docs", str(SEEDS)]) == 1
    err = capsys.readouterr().err
    assert "line 3 (t2): error:" in err and expected in err
    assert "line 1" not in err


def test_malformed_lines(tmp_path, seed_docs):
    good = _good(seed_docs)
    path = _write(tmp_path / "g.jsonl", [good, "{not json", "[1, 2]", dict(good)])
    gold = read_gold(path, seed_docs)
    messages = {p.line: p.message for p in gold.errors}
    assert "not valid JSON" in messages[2]
    assert "expected a JSON object" in messages[3]
    assert "duplicate id 't1' (first on line 1)" in messages[4]
    assert [i.id for i in gold.items] == ["t1"]


def test_unanswerable_rules(tmp_path, seed_docs):
    ok = {"id": "u1", "question": "Who founded the Lao Women's Union?", "answerable": False, "answers": [],
          "evidence": [], "doc": None, "kind": "unanswerable"}
    # The format names a "doc" on every line: for an unanswerable question it is the closest document.
    with_doc = dict(ok, id="u2", doc="sex-trafficking-in-laos.txt")
    with_answer = dict(ok, id="u3", answers=["someone"])
    unknown_doc = dict(ok, id="u4", doc="no-such-file.txt")
    gold = read_gold(_write(tmp_path / "g.jsonl", [ok, with_doc, with_answer, unknown_doc]), seed_docs)
    assert [i.id for i in gold.items] == ["u1", "u2", "u4"]
    assert {p.item_id for p in gold.errors} == {"u3"}
    assert any(p.item_id == "u4" and "no-such-file.txt" in p.message for p in gold.warnings)


def test_warnings_do_not_fail_the_check(tmp_path, seed_docs, capsys):
    item = _good(seed_docs)
    item["question"] = "Laos women and girls are sex trafficked into Thailand, Vietnam, China, Taiwan?"
    item["evidence"] = [item["evidence"][0], "Laos"]
    item["extra"] = 1
    path = _write(tmp_path / "g.jsonl", [item])
    assert main(["eval", "--check-gold", str(path), "--docs", str(SEEDS)]) == 0
    out = capsys.readouterr().out
    assert "copies" in out and "has 1 words" in out and "unknown field(s) extra" in out


def test_load_gold_raises_a_rag_error_naming_the_line(tmp_path, seed_docs):
    good = _good(seed_docs)
    path = _write(tmp_path / "g.jsonl", [good, dict(good, id="t9", answers=["Mars"])])
    with pytest.raises(GoldError, match=r"line 2 \(t9\).*Mars.*--check-gold"):
        load_gold(path, seed_docs)


def test_empty_and_missing_files(tmp_path, seed_docs):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(GoldError, match="no questions"):
        load_gold(empty, seed_docs)
    with pytest.raises(GoldError, match="cannot read"):
        read_gold(tmp_path / "absent.jsonl", seed_docs)
