"""``rag eval`` on the gold set, through the real CLI, the real model and a real index over the seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.gold import read_gold
from eval.report import results_section
from eval.runner import run_gold, score_retrieval
from rag import Assistant, Config, Passage
from rag.cli import main

REPO = Path(__file__).resolve().parents[2]
GOLD = REPO / "eval" / "gold.jsonl"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _subset(tmp_path: Path) -> Path:
    """A few questions of every flavour from the shipped gold set: two per answerable kind seen, two unanswerable."""
    rows = [json.loads(line) for line in GOLD.read_text(encoding="utf-8").splitlines() if line.strip()]
    picked, per_kind = [], {}
    for row in rows:
        if per_kind.get(row["kind"], 0) < (2 if row["kind"] in ("factoid", "multi_doc", "unanswerable") else 1):
            per_kind[row["kind"]] = per_kind.get(row["kind"], 0) + 1
            picked.append(row)
    path = tmp_path / "subset.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in picked), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def gold_run(tmp_path_factory, seed_index_dir):
    """One CLI run over a subset of the gold set with all three retrievers, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("gold-run")
    subset = _subset(tmp)
    out = tmp / "run1"
    code = main(["--index", str(seed_index_dir), "-q", "eval", str(subset), "--out", str(out)])
    return subset, out, code


@pytest.mark.slow
def test_cli_writes_every_output(gold_run, capsys):
    subset, out, code = gold_run
    assert code == 0
    n_questions = sum(1 for line in subset.read_text(encoding="utf-8").splitlines() if line.strip())
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["retrievers"] == ["bm25", "dense", "hybrid"] and metrics["default_retriever"] == "hybrid"
    assert metrics["counts"]["questions"] == n_questions and metrics["counts"]["unanswerable"] == 2
    for retriever, summary in metrics["summary"].items():
        for key in ("hit@1", "hit@5", "hit@10", "mrr@10", "ndcg@10", "evidence_recall@5"):
            assert 0.0 <= summary["retrieval"][key] <= 1.0
        assert summary["retrieval"]["hit@1"] <= summary["retrieval"]["hit@5"] <= summary["retrieval"]["hit@10"]
        assert summary["citations"]["exactness"] == 1.0, "every citation must quote its document exactly"
        assert summary["abstention"]["unanswerable"] == 2
        assert set(summary["latency_ms"]) == {"retrieve", "ask"}
        assert summary["latency_ms"]["ask"]["p50"] > 0
        assert set(summary["by_kind"]) == {"factoid", "number", "list", "why", "multi_doc", "unanswerable"}
    curve = metrics["curves"]["hit@k"]["hybrid"]
    assert len(curve) == 10 and curve == sorted(curve)
    assert curve[4] == metrics["summary"]["hybrid"]["retrieval"]["hit@5"]

    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(predictions) == 3 * n_questions
    for p in predictions:
        assert len(p["retrieved"]) == 10 and p["answer"]["text"]
        assert set(p["latency_ms"]) == {"retrieve", "ask"}
    report = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Retrieval", "## Answers", "## Citations", "## Abstention", "## Latency", "## Per kind",
                    "worst questions", "**Weakest kinds**", "![hit_at_k](hit_at_k.png)"):
        assert heading in report
    section = results_section(metrics, "Gold set")
    assert f"`{metrics['command']}`" in section and "--out" not in metrics["command"]
    assert "| hit@5 | " in section and "### Per kind (hybrid)" in section
    for name in ("hit_at_k.png", "latency.png", "by_kind.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000


@pytest.mark.slow
def test_relevance_in_predictions_is_span_overlap(gold_run, seed_docs):
    subset, out, _ = gold_run
    gold = {i.id: i for i in read_gold(subset, seed_docs).items}
    for p in map(json.loads, (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()):
        item = gold[p["id"]]
        for r in p["retrieved"]:
            text = seed_docs[r["doc_id"]].text
            expected = any(r["doc_id"] in item.doc_ids and quote in text
                           and any(r["start"] < s + len(quote) and s < r["end"]
                                   for s in [i for i in range(len(text)) if text.startswith(quote, i)])
                           for quote in item.evidence)
            assert bool(r["relevant"]) == expected, (p["id"], r)


@pytest.mark.slow
def test_rerun_is_deterministic_and_compare_prints_deltas(gold_run, seed_index_dir, capsys):
    subset, first, _ = gold_run
    second = first.parent / "run2"
    capsys.readouterr()
    code = main(["--index", str(seed_index_dir), "-q", "eval", str(subset), "--out", str(second),
                 "--compare", str(first)])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"compared with {first}" in printed and "hybrid.retrieval.mrr@10" in printed
    deltas = json.loads((second / "compare.json").read_text(encoding="utf-8"))["deltas"]
    quality = [d for d in deltas if ".latency_ms." not in d["metric"]]
    assert len(quality) > 60
    assert all(d["delta"] == 0 for d in quality), [d for d in quality if d["delta"]]
    assert "## Comparison with an earlier run" in (second / "report.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_relevance_survives_rechunking(seed_docs):
    """The same gold items score against two different chunkings: relevance follows spans, not chunk ids."""
    small = [seed_docs[d] for d in ("sex-trafficking-in-laos", "sex-trafficking-in-myanmar")]
    gold = read_gold(GOLD, {d.doc_id: d for d in small})
    items = [i for i in gold.items if i.answerable][:4]
    assert len(items) == 4
    spans = []
    for chunk_tokens, overlap in ((180, 40), (50, 10)):
        config = Config().replace(chunk_tokens=chunk_tokens, chunk_overlap_tokens=overlap)
        assistant = Assistant.from_documents(small, config)
        subset = type(gold)(gold.path, gold.sha256, tuple(items))
        run = run_gold(assistant, subset, ("bm25",), k=10)
        spans.append({(r.doc_id, r.start, r.end) for q in run.results for r in q.retrieved})
        for q in run.results:
            item = next(i for i in items if i.id == q.id)
            for r in q.retrieved:
                text = seed_docs[r.doc_id].text[r.start:r.end]
                # A passage is relevant exactly when it shares characters with an evidence quote.
                shares = any(s.doc_id == r.doc_id and r.start < s.end and s.start < r.end for s in item.spans)
                assert bool(r.relevant) == shares
                assert text.strip()
            assert q.n_relevant >= 1, "each evidence quote lies inside some passage, whatever the chunking"
    assert spans[0] != spans[1], "the two chunkings should cut the documents differently"


def test_score_retrieval_hand_made_ranking(seed_docs):
    """hit, MRR, nDCG and evidence recall of a hand-made ranking over a two-quote question."""
    gold = read_gold(GOLD, seed_docs)
    item = next(i for i in gold.items if i.kind == "multi_doc" and len(i.evidence) == 2
                and len({s.doc_id for s in i.spans}) == 2)
    a, b = sorted({s.quote_index: s for s in item.spans}.values(), key=lambda s: s.quote_index)

    def passage(doc_id: str, start: int, end: int, rank: int) -> Passage:
        return Passage(seed_docs[doc_id].text[start:end], doc_id, "", "", start, end, 1.0 / rank, rank=rank)

    miss_doc = next(d for d in seed_docs if d not in item.doc_ids)
    ranking = [passage(miss_doc, 0, 50, 1),
               passage(a.doc_id, a.start + 5, a.end + 20, 2),  # overlaps quote 1
               passage(a.doc_id, a.end, a.end + 40, 3),  # touches quote 1 but shares no character
               passage(b.doc_id, max(0, b.start - 30), b.start + 1, 4)]  # shares one character with quote 2
    m, spans, ranks = score_retrieval(ranking, item, pool=3)
    assert [s.relevant for s in spans] == [0.0, 1.0, 0.0, 1.0]
    assert ranks == (2, 4)
    assert m["hit@1"] == 0.0 and m["hit@5"] == 1.0
    assert m["mrr@10"] == pytest.approx(0.5)
    # DCG = 1/log2(3) + 1/log2(5); IDCG (3 relevant passages exist) = 1 + 1/log2(3) + 1/log2(4)
    assert m["ndcg@10"] == pytest.approx((0.630930 + 0.430677) / (1 + 0.630930 + 0.5), abs=1e-5)
    assert m["evidence_recall@5"] == 1.0
    m_top2, _, _ = score_retrieval(ranking[:2], item, pool=3)
    assert m_top2["evidence_recall@5"] == 0.5


def test_bad_invocations_are_one_line_errors(tmp_path, seed_index_dir, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x1", "question": "q?", "answerable": true}\n', encoding="utf-8")
    assert main(["--index", str(seed_index_dir), "-q", "eval", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "line 1 (x1)" in err and "missing field(s)" in err
    assert main(["--index", str(seed_index_dir), "eval", str(GOLD), "--k", "5"]) == 2
    assert "--k 10 or more" in capsys.readouterr().err
    assert main(["eval", str(GOLD), "--set", "chunk_tokens"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["eval", str(GOLD), "--set", "nonsense=1"]) == 2
    assert "unknown setting" in capsys.readouterr().err
    assert main(["eval", str(GOLD), "--compare", str(tmp_path / "nowhere")]) == 2
    assert "metrics.json not found" in capsys.readouterr().err
    assert main(["eval"]) == 2
    assert "give a gold file" in capsys.readouterr().err
