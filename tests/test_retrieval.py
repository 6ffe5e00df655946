"""Stage 5: the right document and passage come back near the top, in every mode."""

from __future__ import annotations

import pytest

from rag import InputError

# (question, document id, a phrase the right passage contains)
QUESTIONS = [
    ("How many people did the UN think were being forced to run online scams in Myanmar?",
     "compound-abuses-myanmar-border-areas-2023", "at least 120,000 people"),
    ("How long are the working days inside the scam compounds?",
     "compound-abuses-myanmar-border-areas-2023", "between 12 and 16 hours per day"),
    ("Which charity rescues and restores sex trafficking survivors in Myanmar?",
     "sex-trafficking-in-myanmar", "Eden Ministry Myanmar"),
    ("Which organisation runs anti-trafficking initiatives in Laos?",
     "sex-trafficking-in-laos", "Village Focus International"),
    ("What share of sex trafficking victims in Malaysia came from abroad?",
     "sex-trafficking-in-malaysia", "96%"),
    ("What three parts make up the crime of trafficking for adult victims?",
     "compound-abuses-myanmar-border-areas-2023", "an act; a means; and, a purpose"),
]


@pytest.mark.parametrize("question, doc_id, phrase", QUESTIONS)
def test_right_passage_in_top_5(assistant, question, doc_id, phrase):
    passages = assistant.retrieve(question, k=5)
    assert any(p.doc_id == doc_id and phrase in p.text for p in passages), [p.text[:80] for p in passages]


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_every_mode_returns_best_first_with_exact_spans(assistant, mode):
    question = "forced labour in casinos"
    first_stage = assistant.retriever.search(question, assistant.embedder.encode_one(question), 12, mode=mode)
    assert all(a.score >= b.score for a, b in zip(first_stage, first_stage[1:]))
    passages = assistant.retrieve(question, k=12, retriever=mode)
    assert len(passages) == 12
    assert [p.rank for p in passages] == list(range(1, 13))
    read = passages[:assistant.config.reader_passages]
    # The reader's passages first, by the reader's score fused with the first-stage score; the rest in
    # first-stage order.
    assert all(p.reader_score is not None for p in read)
    w, top = assistant.config.rerank_retrieval_weight, max(p.score for p in first_stage)
    fused = [(1 - w) * p.reader_score + w * p.score / top for p in read]
    assert all(a >= b - 1e-9 for a, b in zip(fused, fused[1:])), fused
    rest = passages[len(read):]
    assert all(p.reader_score is None for p in rest) and all(a.score >= b.score for a, b in zip(rest, rest[1:]))
    assert {(p.doc_id, p.start) for p in passages} == {(p.doc_id, p.start) for p in first_stage}
    for p in passages:
        assert assistant.documents[p.doc_id].text[p.start:p.end] == p.text
        assert p.title == assistant.documents[p.doc_id].title and p.section


def test_without_reranking_the_first_stage_order_stays(seed_index_dir, config, embedder):
    from rag import Assistant
    from rag.index import Index

    cfg = config.replace(reranker="none")
    plain = Assistant(Index.load(seed_index_dir, cfg), cfg, embedder)
    passages = plain.retrieve("forced labour in casinos", k=8)
    assert all(a.score >= b.score for a, b in zip(passages, passages[1:]))
    assert all(p.reader_score is not None for p in passages[:cfg.reader_passages])


def test_document_filter(assistant):
    passages = assistant.retrieve("corruption and bribes", k=5, doc_ids=["sex-trafficking-in-laos"])
    assert passages and {p.doc_id for p in passages} == {"sex-trafficking-in-laos"}
    with pytest.raises(InputError, match="unknown document id"):
        assistant.retrieve("x", doc_ids=["nope"])


def test_k_larger_than_index_returns_what_exists(assistant):
    passages = assistant.retrieve("corruption", k=50, doc_ids=["sex-trafficking-in-laos"])
    laos_chunks = sum(1 for c in assistant.index.chunks if c.doc_id == "sex-trafficking-in-laos")
    assert len(passages) == laos_chunks


@pytest.mark.parametrize("bad_k", [0, -3])
def test_bad_k_is_refused(assistant, bad_k):
    with pytest.raises(InputError, match="k must be at least 1"):
        assistant.retrieve("scam centres", k=bad_k)
