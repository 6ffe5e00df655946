"""Stage 6b: short extractive answers whose quotes are exact, and honest abstentions.

The first tests ask the real pipeline (shipped reader, real index); the later ones swap in a scripted
reader through the ``Reader`` seam, so the answer logic itself is checked exactly.
"""

from __future__ import annotations

import pytest

from rag import Assistant, Reading, SentenceScore
from rag.answer import ABSTAIN_MESSAGE, Answerer, is_label, word_count
from rag.chunking import split_sentences
from rag.index import Index

ANSWERABLE = [
    ("How many people did the UN think were being forced to run online scams in Myanmar?", "120,000"),
    ("How long are the working days inside the scam compounds?", "16 hours"),
    ("Which charity rescues and restores sex trafficking survivors in Myanmar?", "Eden Ministry"),
    ("Which organisation runs anti-trafficking initiatives in Laos?", "Village Focus International"),
    ("How many scam centres has the UWSA raided?", "40 scam centres"),
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
        if c.answer_start >= 0:  # the marked answer lies inside its quote
            assert c.start <= c.answer_start < c.answer_end <= c.end
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


def test_passages_are_reranked_by_the_reader(assistant):
    passages = assistant.retrieve("Which charity rescues and restores sex trafficking survivors in Myanmar?")
    read = [p for p in passages if p.reader_score is not None]
    assert len(read) == min(assistant.config.reader_passages, len(passages))
    assert [p.rank for p in passages] == list(range(1, len(passages) + 1))
    # The answering passage is the one the reader rates highest, and it comes first.
    assert "Eden Ministry" in passages[0].text
    assert passages[0].reader_score == max(p.reader_score for p in read) > 0.5


def test_long_sentence_is_trimmed_to_exact_clauses_around_the_answer(assistant):
    answerer: Answerer = assistant.answerer
    doc = assistant.documents["compound-abuses-myanmar-border-areas-2023"]
    start = doc.text.index("Although some individuals, particularly persons from Myanmar")
    end = doc.text.index("upon arrival within these facilities.") + len("upon arrival within these facilities.")
    focus = doc.text.index("voluntarily", start)
    a, b = answerer.trim(doc.text, start, end, 20, (focus, focus + len("voluntarily")))
    assert start <= a < b <= end
    assert word_count(doc.text[a:b]) <= 20
    assert "voluntarily" in doc.text[a:b]
    a2, b2 = answerer.trim(doc.text, start, end, 20)  # no answer marked: the first clauses
    assert a2 == start and word_count(doc.text[a2:b2]) <= 20


@pytest.mark.parametrize("sentence, label", [
    ("-24-year-old male, Laukkaing Township", True),
    ("See also Human trafficking in Thailand", True),
    ("Eden Ministry Myanmar reaches, rescues, and restores sex trafficked victims.", False),
])
def test_labels_are_not_answers(sentence, label):
    assert is_label(sentence) is label


# ---------------------------------------------------------------------- a scripted reader through the seam
class ScriptedReader:
    """Gives each sentence the logit ``script`` returns for its text (default -5), and marks no span."""

    name = "scripted"

    def __init__(self, script):
        self.script = script
        self.calls = 0

    def info(self):
        return {"name": self.name, "sha256": None}

    def read(self, question, passages, documents):
        self.calls += 1
        out = []
        for p in passages:
            text = documents[p.doc_id].text
            sentences = []
            for a, b in split_sentences(text, p.start, p.end):
                logit = self.script(text[a:b])
                sentences.append(SentenceScore(a, b, logit, 1 / (1 + 2.718281828 ** -logit)))
            best = max((s.probability for s in sentences), default=0.0)
            span = next(((s.start, s.start + 5) for s in sentences if s.logit > 0), (-1, -1))
            out.append(Reading(p, best, tuple(sentences), span[0], span[1], 5.0 if span[0] >= 0 else -12.0))
        return out


def _scripted(seed_index_dir, config, embedder, script, **changes):
    cfg = config.replace(**changes) if changes else config
    return Assistant(Index.load(seed_index_dir, cfg), cfg, embedder, reader=ScriptedReader(script))


EDEN = "Eden Ministry Myanmar reaches, rescues, and restores"
SUPPORTED = "It is supported by the United Nations Trust Fund"


def test_the_seam_takes_any_reader_and_ranks_by_its_scores(seed_index_dir, config, embedder):
    a = _scripted(seed_index_dir, config, embedder, lambda s: 6.0 if s.startswith(EDEN) else -5.0)
    answer = a.ask("Which charity rescues and restores sex trafficking survivors in Myanmar?")
    assert a.reader.calls == 1  # one reading per question, shared by reranking and answering
    assert not answer.abstained and answer.citations[0].quote.startswith(EDEN)
    assert answer.passages[0].reader_score == max(p.reader_score or 0 for p in answer.passages)
    c = answer.citations[0]
    assert c.answer_start == c.start and c.to_dict()["answer"] == c.quote[:5]  # the marked span travels
    assert a.info()["reader"]["name"] == "scripted"


def test_low_reader_scores_abstain_and_keep_the_passages(seed_index_dir, config, embedder):
    a = _scripted(seed_index_dir, config, embedder, lambda s: -8.0)
    answer = a.ask("Which charity rescues and restores sex trafficking survivors in Myanmar?")
    assert answer.abstained and answer.text == ABSTAIN_MESSAGE and answer.passages
    assert set(answer.features) == {"reader_logit", "span_margin", "best_span_margin", "top_passage_cosine"}


def test_a_pronoun_sentence_takes_the_sentence_it_refers_to(seed_index_dir, config, embedder):
    a = _scripted(seed_index_dir, config, embedder, lambda s: 6.0 if s.startswith(SUPPORTED) else -5.0)
    answer = a.ask("Who supports the charity that rescues sex trafficking victims in Myanmar?")
    assert answer.citations[0].quote.startswith(EDEN) and SUPPORTED in answer.citations[0].quote


def test_a_second_sentence_only_when_nearly_as_good(seed_index_dir, config, embedder):
    def script(gap):
        def score(s):
            if s.startswith("Eden Ministry"):
                return 6.0
            if s.startswith("Other nongovernmental organizations"):
                return 6.0 - gap
            return -5.0
        return score

    question = "What do non-governmental organisations do about sex trafficking in Myanmar?"
    close = _scripted(seed_index_dir, config, embedder, script(0.5)).ask(question)
    far = _scripted(seed_index_dir, config, embedder, script(3.0)).ask(question)
    assert len(close.citations) == 2 and len(far.citations) == 1
    single = _scripted(seed_index_dir, config, embedder, script(0.5), answer_max_sentences=1).ask(question)
    assert len(single.citations) == 1


def test_k_limits_the_passages_and_the_readings(seed_index_dir, config, embedder):
    a = _scripted(seed_index_dir, config, embedder, lambda s: 6.0 if s.startswith(EDEN) else -5.0)
    answer = a.ask("Which charity rescues and restores sex trafficking survivors in Myanmar?", k=1)
    assert len(answer.passages) == 1
    assert all(c.doc_id == answer.passages[0].doc_id for c in answer.citations)
