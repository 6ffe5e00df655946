"""The Python API: Assistant.load, retrieve, ask, and bad input."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from rag import Answer, Assistant, Citation, InputError, Passage, QuestionTruncatedWarning

from .conftest import SEEDS


def test_results_are_frozen_dataclasses(assistant):
    answer = assistant.ask("How many hours a day do scam centre workers work?")
    assert isinstance(answer, Answer) and isinstance(answer.passages[0], Passage)
    assert isinstance(answer.citations[0], Citation)
    with pytest.raises(dataclasses.FrozenInstanceError):
        answer.text = "changed"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        answer.passages[0].score = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("question", ["", "   ", "\n\t"])
def test_empty_question_is_refused(assistant, question):
    with pytest.raises(InputError, match="question is empty"):
        assistant.ask(question)
    with pytest.raises(InputError, match="question is empty"):
        assistant.retrieve(question)


def test_non_text_question_is_refused(assistant):
    with pytest.raises(InputError, match="must be text"):
        assistant.ask(None)  # type: ignore[arg-type]


def test_overlong_question_warns_and_truncates(assistant):
    question = "Which charity rescues sex trafficking victims in Myanmar? " + "please " * 800
    with pytest.warns(QuestionTruncatedWarning, match="only the first 200"):
        answer = assistant.ask(question)
    assert len(answer.question) < len(question)
    assert answer.question.startswith("Which charity rescues")


def test_load_builds_the_default_index_from_seeds_when_missing(isolated_home, embedder):
    shutil.copytree(SEEDS, isolated_home / "seeds")
    assert not (isolated_home / "embeddings").exists()
    assistant = Assistant.load()
    assert (isolated_home / "embeddings" / "default" / "manifest.json").is_file()
    assert len(assistant.documents) == 4
    again = Assistant.load()  # second load reads the saved index
    assert again.index.manifest["created_at"] == assistant.index.manifest["created_at"]


def test_assistant_ingest_adds_a_file(writable_index, tmp_path, config, embedder):
    from rag.index import Index

    assistant = Assistant(Index.load(writable_index), config, embedder)
    note = tmp_path / "field-note.md"
    note.write_text("# Field note\n\nThe shelter in Mae Sot housed 14 survivors from Kenya in March.\n")
    report = assistant.ingest([note])
    assert report.added == ["field-note"] and not report.removed
    assert len(assistant.documents) == 5
    answer = assistant.ask("How many Kenyan survivors did the Mae Sot shelter house?")
    assert "14 survivors" in answer.text
