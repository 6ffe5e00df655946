"""Saved conversations (rag/history.py): a real SQLite file, real answers, several threads and processes."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from rag import InputError
from rag.history import HISTORY_FILE, ConversationStore, HistoryError


def test_a_conversation_survives_a_restart_with_its_answers(tmp_path, assistant):
    question = "How many people may be held in scam centres across Myanmar?"
    answer = assistant.ask(question)
    store = ConversationStore(tmp_path / HISTORY_FILE)
    cid = store.create()
    store.add_turn(cid, question, question, answer.to_dict(), 0.25)
    store.add_turn(cid, "and in Laos?", "How many people may be held in scam centres across Laos?",
                   {"text": "The documents do not answer this question.", "abstained": True}, 0.1)
    reopened = ConversationStore(tmp_path / HISTORY_FILE)  # as after a restart
    [summary] = reopened.list()
    assert summary.id == cid and summary.turns == 2 and summary.title == question
    saved = reopened.get(cid)
    assert [t.number for t in saved.turns] == [1, 2]
    assert saved.turns[0].answer == answer.to_dict()  # exactly as answered, citations and quotes included
    assert saved.turns[1].searched.endswith("across Laos?")


def test_empty_conversations_are_not_listed_and_deleting_removes_the_turns(tmp_path):
    store = ConversationStore(tmp_path / HISTORY_FILE)
    empty = store.create()
    kept = store.create()
    store.add_turn(kept, "q?", "q?", {"text": "a"}, 0.0)
    assert [c.id for c in store.list()] == [kept]
    store.delete(kept)
    assert store.list() == []
    with pytest.raises(InputError, match="no conversation"):
        store.get(kept)
    with pytest.raises(InputError, match="no conversation"):
        store.delete(kept)
    with pytest.raises(InputError, match="no conversation"):
        store.add_turn("nope", "q?", "q?", {}, 0.0)
    with pytest.raises(InputError, match="non-empty string"):
        store.get(None)
    store.get(empty)  # still there, just not listed


def test_a_long_first_question_makes_a_short_title(tmp_path):
    store = ConversationStore(tmp_path / HISTORY_FILE)
    cid = store.create()
    store.add_turn(cid, "word " * 100, "word " * 100, {}, 0.0)
    title = store.list()[0].title
    assert len(title) <= 82 and title.endswith("\u2026")


def test_threads_and_processes_writing_at_once_lose_no_turn(tmp_path):
    path = tmp_path / HISTORY_FILE
    store = ConversationStore(path)
    cid = store.create("shared")
    script = ("import sys; from rag.history import ConversationStore\n"
              "s = ConversationStore(sys.argv[1])\n"
              "for i in range(20): s.add_turn(sys.argv[2], f'p{i}?', f'p{i}?', {'i': i}, 0.0)")
    proc = subprocess.Popen([sys.executable, "-c", script, str(path), cid])
    threads = [threading.Thread(target=lambda n=n: [store.add_turn(cid, f"t{n}-{i}?", "q", {}, 0.0)
                                                    for i in range(10)]) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert proc.wait(timeout=60) == 0
    turns = store.get(cid).turns
    assert len(turns) == 50 and [t.number for t in turns] == list(range(1, 51))


def test_a_file_that_is_not_a_database_is_a_clear_error_and_is_left_alone(tmp_path):
    path = tmp_path / HISTORY_FILE
    path.write_bytes(b"these are my notes, not a database" * 100)
    with pytest.raises(HistoryError, match="move it away"):
        ConversationStore(path)
    assert path.read_bytes().startswith(b"these are my notes")
