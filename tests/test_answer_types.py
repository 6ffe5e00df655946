"""Answer types: what a question asks for, and whether a sentence holds it."""

from __future__ import annotations

import pytest

from rag.answer import expected_type, type_matches


@pytest.mark.parametrize("question, kind", [
    ("How many scam centres did the UWSA raid?", "number"),
    ("What percentage of victims came from abroad?", "number"),
    ("In what year was the group founded?", "date"),
    ("When did Operation 1027 begin?", "date"),
    ("At what time did the shift start?", "time"),
    ("Who is the commander of the MNDAA?", "name"),
    ("Why is it hard to gauge how big the problem is?", "reason"),
    ("Which countries are Lao women trafficked to?", "place"),
    ("Where are women from Myanmar trafficked to?", "place"),
    ("Which methods do traffickers use to control victims?", "list"),
    ("What role does Laos play in trafficking?", None),
])
def test_expected_type(question, kind):
    assert expected_type(question) == kind


@pytest.mark.parametrize("kind, text, question, ok", [
    ("number", "The UWSA raided more than 40 scam centres.", "How many scam centres were raided?", True),
    ("number", "The UWSA raided scam centres.", "How many scam centres were raided?", False),
    ("number", "In 2022 there were raids.", "How many raids were there in 2022?", False),  # the asked year is no answer
    ("date", "It was founded in 2009.", "When was it founded?", True),
    ("time", "I had to start working at 2:30 AM.", "At what time did he start?", True),
    ("name", "Village Focus International carries out initiatives in Laos.", "Who works in Laos?", True),
    ("name", "It carries out initiatives in Laos.", "Who works in Laos?", False),
    ("reason", "They choose deportation because the process is convoluted.", "Why deportation?", True),
    ("list", "They are trafficked into Thailand, Vietnam, China and Japan.", "Which countries?", True),
])
def test_type_matches(kind, text, question, ok):
    assert type_matches(kind, text, question) is ok
