"""Stage 6a: the shipped reader — hash-checked, offline, and it reads: the answering sentence above a topical one."""

from __future__ import annotations

import json
import shutil

import pytest

from rag import ModelError, Passage, TrainedReader
from rag.reader import MANIFEST, WEIGHTS, best_span, default_reader_dir, sha256_file


def test_shipped_reader_matches_its_recorded_hash(reader):
    folder = default_reader_dir()
    manifest = json.loads((folder / MANIFEST).read_text())
    assert reader.sha256 == manifest["files"][WEIGHTS] == sha256_file(folder / WEIGHTS)
    for name, digest in manifest["files"].items():
        assert sha256_file(folder / name) == digest
    card = (folder / "README.md").read_text()
    assert reader.sha256 in card and "Apache-2.0" in card and "CC BY-SA 4.0" in card
    assert "train-reader" in card and manifest["training"]["command"] in card
    assert (folder / WEIGHTS).stat().st_size < 60 * 1024 * 1024
    assert reader.info()["sha256"] == reader.sha256


def _copy(tmp_path):
    target = tmp_path / "reader"
    shutil.copytree(default_reader_dir(), target)
    return target


def test_altered_weights_are_refused_with_the_fix(tmp_path):
    folder = _copy(tmp_path)
    with (folder / WEIGHTS).open("r+b") as fh:
        fh.seek(4096)
        byte = fh.read(1)
        fh.seek(4096)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelError, match="does not match its recorded sha256.*git checkout"):
        TrainedReader(folder)


@pytest.mark.parametrize("name, message", [(WEIGHTS, "is missing"), (MANIFEST, "reader.json is missing")])
def test_missing_files_are_refused_with_the_fix(tmp_path, name, message):
    folder = _copy(tmp_path)
    (folder / name).unlink()
    with pytest.raises(ModelError, match=message + ".*(git checkout|rag train-reader)"):
        TrainedReader(folder)


def test_no_folder_at_all(tmp_path):
    with pytest.raises(ModelError, match="no trained reader"):
        TrainedReader(tmp_path / "nowhere")


def _passage(doc, start: int, end: int) -> Passage:
    return Passage(doc.text[start:end], doc.doc_id, doc.title, doc.section_at(start), start, end, 1.0, rank=1)


def _around(doc, sentence: str, other: str) -> Passage:
    """The run of whole sentences of the document from one of the two to the other."""
    from rag.chunking import split_sentences

    a, b = doc.text.index(sentence), doc.text.index(other)
    spans = split_sentences(doc.text)
    first = next(s for s, e in spans if s <= min(a, b) < e)
    last = next(e for s, e in spans if s <= max(a, b) < e)
    return _passage(doc, first, last)


#: (question, document, the sentence that answers it, a topical sentence near it that does not).
CASES = [
    # The example: the travel-restrictions sentence before the answer is on topic, not the answer.
    ("Apart from scam centres, what other illicit businesses operate in the same Myanmar border areas?",
     "compound-abuses-myanmar-border-areas-2023",
     "It is important to emphasise that scam centres do not exist in a vacuum",
     "Interviews conducted by this analytical unit have found that international travel restrictions"),
    # A sentence with a number, but not the number asked for.
    ("How many people may be held in scam centres across Myanmar?",
     "compound-abuses-myanmar-border-areas-2023",
     "By August 2023, the United Nations estimated that at least 120,000 people across Myanmar may be held",
     "According to the United States Institute of Peace, nationals of more than 46 countries"),
    ("Which organisation rescues and restores sex trafficking victims in Myanmar?",
     "sex-trafficking-in-myanmar",
     "Eden Ministry Myanmar reaches, rescues, and restores",
     "Other nongovernmental organizations disseminate"),
]


@pytest.mark.parametrize("question, doc_id, answer, topical", CASES)
def test_the_answering_sentence_scores_above_a_topical_one(reader, seed_docs, question, doc_id, answer, topical):
    doc = seed_docs[doc_id]
    passage = _around(doc, answer, topical)
    [reading] = reader.read(question, [passage], seed_docs)
    at = doc.text.index(answer)
    by_start = {s.start: s for s in reading.sentences}
    answering = next(s for s in reading.sentences if s.start <= at < s.end)
    other = next(s for s in reading.sentences if s.start <= doc.text.index(topical) < s.end)
    assert answering is not other
    assert answering.probability > other.probability
    assert answering.probability == max(s.probability for s in by_start.values())
    assert reading.score == answering.probability


def test_span_head_marks_the_answer_inside_its_sentence(reader, seed_docs):
    question, doc_id, answer, topical = CASES[1]
    doc = seed_docs[doc_id]
    passage = _around(doc, answer, topical)
    [reading] = reader.read(question, [passage], seed_docs)
    assert passage.start <= reading.span_start < reading.span_end <= passage.end
    assert "120,000" in doc.text[reading.span_start:reading.span_end]


def test_an_unrelated_question_scores_low(reader, seed_docs):
    doc = seed_docs["sex-trafficking-in-laos"]
    passage = _passage(doc, doc.blocks[0].start, doc.blocks[0].end)
    [reading] = reader.read("What is the boiling point of mercury?", [passage], seed_docs)
    assert reading.score < 0.2


def test_best_span_respects_order_and_length():
    import numpy as np

    start = np.array([0.0, 1.0, 5.0, 0.0, 0.0])
    end = np.array([0.0, 4.0, 0.0, 0.0, 9.0])
    valid = np.array([False, True, True, True, True])
    assert best_span(start, end, valid, max_tokens=3)[:2] == (2, 4)  # 5 + 9 at distance 2
    assert best_span(start, end, valid, max_tokens=2) == (3, 4, 9.0)  # (2, 4) is too long now
    assert best_span(np.array([0.0, 9.0, 0.0]), np.array([0.0, 0.0, 9.0]), valid[:3])[:2] == (1, 2)
    assert best_span(np.array([0.0, 0.0, 9.0]), np.array([0.0, 9.0, 0.0]), valid[:3])[2] < 18  # never ends first
    assert best_span(start, end, np.zeros(5, dtype=bool))[0] == -1
