"""Stage 6: short extractive answers whose quotes are exact, and honest abstentions."""

from __future__ import annotations

import pytest

from rag.answer import ABSTAIN_MESSAGE, word_count

ANSWERABLE = [
    ("How many people did the UN think were being forced to run online scams in Myanmar?", "120,000"),
    ("How long are the working days inside the scam compounds?", "12 and 16 hours"),
    ("Which charity rescues and restores sex trafficking survivors in Myanmar?", "Eden Ministry"),
    ("Which organisation runs anti-trafficking initiatives in Laos?", "Village Focus International"),
    ("How many scam centres has the UWSA raided?", "40 scam centres"),
    # The answer sentence does not say "Laos": its document's title does.
    ("Why are women from Laos vulnerable to being trafficked?", "families in poverty"),
]


@pytest.mark.parametrize("question, expected", ANSWERABLE)
def test_answers_quote_their_sources_exactly(assistant, question, expected):
    answer = assistant.ask(question)
    assert not answer.abstained
    assert expected in answer.text
    assert answer.citations
    for c in answer.citations:
        doc = assistant.documents[c.doc_id]
        assert doc.text[c.start:c.end] == c.quote
        assert f"[{c.number}]" in answer.text
        assert c.title == doc.title
    assert word_count(answer.text) <= 60 + 2 * len(answer.citations)  # markers are not words of the answer


@pytest.mark.parametrize("question", [
    "What is the capital of Peru?",
    "How do I bake sourdough bread at home?",
    "Who won the football world cup in 2018?",
])
def test_off_topic_questions_abstain_but_show_passages(assistant, question):
    answer = assistant.ask(question)
    assert answer.abstained
    assert answer.text == ABSTAIN_MESSAGE
    assert answer.citations == []
    assert answer.passages  # the closest passages are still offered


def test_every_answer_sentence_is_document_text(assistant):
    answer = assistant.ask("Why are young people in Myanmar vulnerable to traffickers after the coup?")
    assert not answer.abstained
    body = answer.text
    for c in answer.citations:
        body = body.replace(f"[{c.number}]", "")
    # Remove the quotes (whitespace-normalised): nothing but ellipses and spaces may remain.
    for c in answer.citations:
        body = body.replace(" ".join(c.quote.split()), "")
    assert body.replace("\u2026", "").strip() == ""


def test_long_sentence_is_trimmed_to_an_exact_clause(assistant):
    from rag.answer import Answerer

    answerer: Answerer = assistant.answerer
    doc = assistant.documents["compound-abuses-myanmar-border-areas-2023"]
    start = doc.text.index("Although some individuals, particularly persons from Myanmar")
    end = doc.text.index("upon arrival within these facilities.") + len("upon arrival within these facilities.")
    weights = answerer.term_weights("Do people from Myanmar enter scam compounds voluntarily?")
    a, b = answerer.trim(doc.text, start, end, weights, 30)
    assert start <= a < b <= end
    assert word_count(doc.text[a:b]) <= 30
    assert "voluntarily" in doc.text[a:b]


def test_each_part_of_a_compound_question_gets_its_own_cited_sentence(assistant):
    answer = assistant.ask("What share of sex trafficking victims in Malaysia came from abroad, "
                           "and which countries are Lao women trafficked into?")
    assert not answer.abstained
    assert len(answer.citations) == 2
    by_doc = {c.doc_id: c for c in answer.citations}
    assert "96%" in by_doc["sex-trafficking-in-malaysia"].quote
    assert "Thailand" in by_doc["sex-trafficking-in-laos"].quote
    for c in answer.citations:
        assert assistant.documents[c.doc_id].text[c.start:c.end] == c.quote
    assert word_count(answer.text) <= assistant.config.answer_max_words + 2 * len(answer.citations)


def test_a_comparison_of_two_documents_subjects_cites_each_in_the_order_asked(assistant):
    answer = assistant.ask("Into which countries are women from Myanmar and from Laos trafficked, respectively?")
    assert not answer.abstained
    assert [c.doc_id for c in answer.citations] == ["sex-trafficking-in-myanmar", "sex-trafficking-in-laos"]
    for c in answer.citations:
        assert "Thailand" in c.quote and assistant.documents[c.doc_id].text[c.start:c.end] == c.quote


def test_a_compared_subject_without_retrieved_documents_is_not_answered_from_another(assistant):
    # Myanmar's documents are filtered out: its part must not be "answered" from Laos or Malaysia.
    answer = assistant.ask("Into which countries are women from Myanmar and from Laos trafficked, respectively?",
                           doc_ids=["sex-trafficking-in-laos", "sex-trafficking-in-malaysia"])
    assert not answer.abstained
    assert [c.doc_id for c in answer.citations] == ["sex-trafficking-in-laos"]


class _CountingEmbedder:
    """The real embedder, counting the texts passed to ``encode`` (the question goes through ``encode_one``)."""

    def __init__(self, embedder):
        self._embedder = embedder
        self.texts = 0

    def __getattr__(self, name):
        return getattr(self._embedder, name)

    def encode(self, texts, progress=False):
        self.texts += len(texts)
        return self._embedder.encode(texts, progress)


@pytest.mark.parametrize("size", [20000, 7, 0])
def test_sentence_embeddings_are_reused_within_the_cache_size(seed_index_dir, config, embedder, size):
    from rag import Assistant
    from rag.index import Index

    counting = _CountingEmbedder(embedder)
    cfg = config.replace(sentence_cache_size=size)
    assistant = Assistant(Index.load(seed_index_dir, cfg), cfg, counting)
    question = "How long are the working days inside the scam compounds?"
    first = assistant.ask(question)
    after_first = counting.texts
    second = assistant.ask(question)
    again = counting.texts - after_first
    assert second == first  # the same answer, citations and passages, whether or not vectors were cached
    assert len(assistant.answerer._sentence_vectors) <= size
    if size >= after_first:
        assert after_first > 0 and again == 0  # every candidate sentence came from the cache
    else:
        assert again > 1  # a small (or no) cache has to encode sentences again


def test_a_second_span_is_dropped_rather_than_cut_to_a_fragment(assistant, seed_index_dir, config, embedder):
    """What is left of the word budget must not cut a second quote to a few words out of their sentence."""
    from rag import Assistant
    from rag.index import Index

    question = "Which tier does the US Trafficking in Persons report give Malaysia?"
    loose_config = config.replace(second_quote_min_words=1)
    loose = Assistant(Index.load(seed_index_dir, loose_config), loose_config, embedder).ask(question)
    fragments = [c for c in loose.citations[1:] if word_count(c.quote) < config.second_quote_min_words]
    assert fragments  # without the rule this question quotes a fragment after its first sentence
    answer = assistant.ask(question)
    assert answer.citations
    assert all(word_count(c.quote) >= config.second_quote_min_words for c in answer.citations[1:])
    assert all(f"[{c.number}]" in answer.text for c in answer.citations)
