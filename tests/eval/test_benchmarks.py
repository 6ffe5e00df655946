"""``rag eval --format beir`` and ``--format squad`` on tiny fixtures (never the shared benchmark files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.benchmarks import BenchmarkError, corpus_key, load_beir, load_squad, make_document
from rag import Config
from rag.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BEIR = FIXTURES / "beir_tiny"
SQUAD = FIXTURES / "squad_tiny.json"


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_load_beir_fixture():
    data = load_beir(BEIR)
    # q9 has no judgements; the header row of the qrels is skipped.
    assert [q for q, _ in data.queries] == ["q1", "q2", "q3", "q4", "q5"]
    assert data.qrels["q1"] == {"d1": 2, "d7": 1}
    assert len(data.corpus.documents) == 8
    untitled = next(d for d in data.corpus.documents if d.doc_id == "d5")
    assert untitled.title.strip() == "" and "Glaciers" in untitled.text
    assert [q for q, _ in load_beir(BEIR, limit=2).queries] == ["q1", "q2"]


def test_load_beir_errors(tmp_path):
    with pytest.raises(BenchmarkError, match="corpus.jsonl not found"):
        load_beir(tmp_path)
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text('{"_id": "a", "text": "x"}\nnot json\n', encoding="utf-8")
    (tmp_path / "queries.jsonl").write_text('{"_id": "q", "text": "x"}\n', encoding="utf-8")
    (tmp_path / "qrels" / "test.tsv").write_text("q\ta\t1\n", encoding="utf-8")
    with pytest.raises(BenchmarkError, match=r"corpus.jsonl line 2: not valid JSON"):
        load_beir(tmp_path)


def test_load_squad_fixture():
    data = load_squad(SQUAD)
    assert len(data.corpus.documents) == 4 and len(data.questions) == 6
    q = data.questions[0]
    doc = next(d for d in data.corpus.documents if d.doc_id == q.doc_id)
    assert doc.title == "Super Bowl Trivia" and all(a in doc.text for a in q.answers)
    assert [q.id for q in load_squad(SQUAD, limit=3).questions] == ["s1", "s2", "s3"]
    # --sample spreads the questions over the whole file: indexes 0, 2 and 4 of six.
    assert [q.id for q in load_squad(SQUAD, sample=3).questions] == ["s1", "s3", "s5"]
    assert [q.id for q in load_squad(SQUAD, limit=4, sample=2).questions] == ["s1", "s3"]
    assert len(load_squad(SQUAD, sample=50).questions) == 6


def test_corpus_key_changes_with_corpus_and_settings():
    docs = [make_document("a", "T", "Some text here."), make_document("b", "", "Other text.")]
    key = corpus_key(docs, Config())
    assert key == corpus_key(list(docs), Config())
    assert key != corpus_key(docs[:1], Config())
    assert key != corpus_key([docs[0], make_document("b", "", "Other text!")], Config())
    assert key != corpus_key(docs, Config().replace(chunk_tokens=100))
    assert key == corpus_key(docs, Config().replace(top_k=3))  # query-time settings do not shape the index


@pytest.mark.slow
def test_beir_through_the_cli_with_cache(tmp_path, capsys):
    cache = tmp_path / "cache"
    out1, out2 = tmp_path / "run1", tmp_path / "run2"
    assert main(["-q", "eval", "--format", "beir", str(BEIR), "--cache", str(cache), "--out", str(out1)]) == 0
    printed = capsys.readouterr().out
    assert "retrieval.ndcg@10" in printed
    m1 = json.loads((out1 / "metrics.json").read_text(encoding="utf-8"))
    assert m1["format"] == "beir" and m1["counts"]["queries"] == 5 and m1["index"]["cached"] is False
    assert m1["index"]["documents"] == 8
    for retriever in ("bm25", "dense", "hybrid"):
        r = m1["summary"][retriever]["retrieval"]
        assert 0 < r["ndcg@10"] <= 1 and 0 < r["mrr@10"] <= 1
        # Seven other documents can be ranked, so every judged document is within the top 100.
        assert r["recall@100"] == 1.0
        assert r["recall@10"] == 1.0
    assert m1["curves"]["recall@k"]["bm25"][-1] == 1.0
    predictions = _lines(out1 / "predictions.jsonl")
    assert len(predictions) == 15
    for p in predictions:
        ranked = [r["doc_id"] for r in p["retrieved"]]
        # Distinct documents: all eight, except that q5's own id (also a corpus document) is never ranked for it.
        assert len(ranked) == len(set(ranked)) == (7 if p["id"] == "q5" else 8)
        assert p["id"] not in ranked
        assert 0.0 < p["metrics"]["ndcg@10"] <= 1.0
    # An easy query: the almond-orchard document (grade 2) comes first with BM25.
    q1 = next(p for p in predictions if p["id"] == "q1" and p["retriever"] == "bm25")
    assert q1["retrieved"][0]["doc_id"] == "d1" and q1["retrieved"][0]["relevant"] == 2.0
    assert (out1 / "recall_at_k.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Retrieval" in (out1 / "report.md").read_text(encoding="utf-8")

    assert main(["-q", "eval", "--format", "beir", str(BEIR), "--cache", str(cache), "--out", str(out2),
                 "--retriever", "bm25", "--compare", str(out1)]) == 0
    m2 = json.loads((out2 / "metrics.json").read_text(encoding="utf-8"))
    assert m2["index"]["cached"] is True and m2["retrievers"] == ["bm25"]
    assert m2["summary"]["bm25"]["retrieval"] == m1["summary"]["bm25"]["retrieval"]
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 1


def test_squad2_unanswerables_and_trained_articles_left_out():
    v2 = Path(__file__).parent.parent / "fixtures" / "reader_tiny_squad2.json"
    data = load_squad(v2)
    assert len(data.unanswerable) == 4 and all(not q.answers for q in data.unanswerable)
    assert len(data.questions) == 11
    held = load_squad(v2, exclude_titles={"Lighthouses"})
    assert held.excluded_articles == ("Lighthouses",)
    assert len(held.questions) == 7 and len(held.unanswerable) == 2
    assert len(held.corpus.documents) == len(data.corpus.documents)  # the paragraphs stay as distractors


@pytest.mark.slow
def test_squad2_abstention_through_the_cli(tmp_path):
    v2 = Path(__file__).parent.parent / "fixtures" / "reader_tiny_squad2.json"
    out = tmp_path / "squad2"
    assert main(["-q", "eval", "--format", "squad", str(v2), "--out", str(out), "--retriever", "hybrid"]) == 0
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    abstention = m["summary"]["hybrid"]["abstention"]
    assert abstention["unanswerable"] == 4 and abstention["answerable"] == 11
    assert 0.0 <= abstention["confidence_auc"] <= 1.0
    assert m["reader"]["sha256"]


@pytest.mark.slow
def test_squad_through_the_cli(tmp_path, capsys):
    out = tmp_path / "squad"
    assert main(["-q", "eval", "--format", "squad", str(SQUAD), "--out", str(out), "--retriever", "bm25",
                 "hybrid"]) == 0
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert m["format"] == "squad" and m["counts"] == {"questions": 6, "unanswerable": 0, "paragraphs": 4}
    assert m["answers_by"] == "hybrid"
    for retriever in ("bm25", "hybrid"):
        r = m["summary"][retriever]["retrieval"]
        assert r["hit@10"] == 1.0  # only four paragraphs
        assert r["hit@1"] <= r["hit@5"] <= r["hit@10"]
    assert "answers" not in m["summary"]["bm25"]
    answers = m["summary"]["hybrid"]["answers"]
    assert 0.0 <= answers["answer_hit"] <= 1.0 and answers["questions"] == 6
    predictions = _lines(out / "predictions.jsonl")
    assert len(predictions) == 12
    hybrid = [p for p in predictions if p["retriever"] == "hybrid"]
    assert all(p["answer"] is not None and "ask" in p["latency_ms"] for p in hybrid)
    hits = [p["metrics"]["answer_hit"] for p in hybrid]
    assert sum(hits) / len(hits) == pytest.approx(answers["answer_hit"], abs=1e-4)
    # The questions were written to be answerable from one short paragraph each.
    assert answers["answer_hit"] >= 0.5
    assert (out / "hit_at_k.png").exists() and (out / "latency.png").exists()


def test_bad_squad_file(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": "1.1"}', encoding="utf-8")
    assert main(["eval", "--format", "squad", str(bad)]) == 2
    assert "is not a SQuAD file" in capsys.readouterr().err
