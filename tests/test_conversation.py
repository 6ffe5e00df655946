"""Follow-up questions are rewritten into standalone ones before retrieval (rag.conversation)."""

from __future__ import annotations

import pytest

from rag import is_followup, resolve_followup

MYANMAR = "How are women trafficked in Myanmar?"
SCAMS = "How many people may be held in scam centres in Myanmar?"


@pytest.mark.parametrize("question, previous, expected", [
    # Substitution: a bare topic replaces the previous question's topic.
    ("and in Laos?", MYANMAR, "How are women trafficked in Laos?"),
    ("And Laos?", MYANMAR, "How are women trafficked in Laos?"),
    ("Laos?", MYANMAR, "How are women trafficked in Laos?"),
    ("and in laos", MYANMAR, "How are women trafficked in laos?"),
    ("what about Malaysia and Thailand?", MYANMAR, "How are women trafficked in Malaysia and Thailand?"),
    ("how about the Philippines?", SCAMS, "How many people may be held in scam centres in the Philippines?"),
    ("and from Laos?", "Where are women from Myanmar trafficked to?", "Where are women from Laos trafficked to?"),
    ("and in 2022?", "How many victims were identified in 2023?", "How many victims were identified in 2022?"),
    ("what about Operation 1027?", "What did the report say about COVID-19?",
     "What did the report say about Operation 1027?"),
    ("and in Laos?", "What happens in Myanmar's border areas?", "What happens in Laos's border areas?"),
    ("same for Shan State", "Who runs the compounds in Kayin State?", "Who runs the compounds in Shan State?"),
    # No topic to replace: the new one is added.
    ("and in Laos?", "What are the main forms of sex trafficking?",
     "What are the main forms of sex trafficking in Laos?"),
    # Inheritance: the follow-up keeps its words and takes the previous topic.
    ("and who are the traffickers?", MYANMAR, "Who are the traffickers in Myanmar?"),
    ("What about children?", MYANMAR, "What about children in Myanmar?"),
    ("What is the situation there?", "Who is trafficked in Laos?", "What is the situation in Laos?"),
    ("What do they earn?", "Who works in the scam centres in Myanmar?", "What do they earn in Myanmar?"),
    ("Where are they located?", "What are scam centres?", "Where are they located (scam centres)?"),
    ("and?", MYANMAR, MYANMAR),
])
def test_follow_ups_are_resolved(question, previous, expected):
    assert resolve_followup(question, [previous]) == expected


@pytest.mark.parametrize("question", [
    "What is the situation in Laos?",
    "Are there shelters for victims?",  # existential "there", not a place
    "Who are the traffickers?",
    "Which countries are Malaysian women trafficked to?",
    "How many people may be held in scam centres in Myanmar?",
])
def test_standalone_questions_are_left_alone(question):
    assert not is_followup(question)
    assert resolve_followup(question, [MYANMAR]) == question


def test_a_follow_up_naming_its_own_topic_stands_alone():
    assert resolve_followup("and how do they recruit in Laos?", [MYANMAR]) == "How do they recruit in Laos?"
    assert resolve_followup("what about forced marriage in Thailand?", [MYANMAR]) == \
        "What about forced marriage in Thailand?"


def test_only_the_latest_resolved_question_counts():
    history = ["What is the boiling point of mercury?", MYANMAR]
    first = resolve_followup("and in Laos?", history)
    assert first == "How are women trafficked in Laos?"
    # A chain of follow-ups resolves against the previous resolution.
    assert resolve_followup("and Malaysia?", history + [first]) == "How are women trafficked in Malaysia?"


def test_without_history_the_question_is_unchanged():
    assert resolve_followup("and in Laos?", []) == "and in Laos?"
    assert resolve_followup("  and   in Laos? ", ["", "   "]) == "and in Laos?"
    assert resolve_followup("", [MYANMAR]) == ""


def test_it_is_deterministic_and_accepts_any_sequence():
    outputs = {resolve_followup("what about Laos?", (MYANMAR,)) for _ in range(3)}
    assert outputs == {"How are women trafficked in Laos?"}


def test_follow_up_detection():
    assert is_followup("and in Laos?")
    assert is_followup("What about children?")
    assert is_followup("Where are they located?")
    assert not is_followup("")


def test_resolved_follow_up_finds_the_right_document(assistant):
    """End to end with the real index: the follow-up retrieves and cites the Laos article."""
    first = "Where are women from Myanmar trafficked to?"
    searched = resolve_followup("and from Laos?", [first])
    answer = assistant.ask(searched)
    assert not answer.abstained
    assert {c.doc_id for c in answer.citations} == {"sex-trafficking-in-laos"}
    # The question it follows is answered from the Myanmar documents, not the Laos article.
    cited = {c.doc_id for c in assistant.ask(first).citations}
    assert cited and cited <= {"sex-trafficking-in-myanmar", "compound-abuses-myanmar-border-areas-2023"}
