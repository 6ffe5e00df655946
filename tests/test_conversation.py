"""Follow-up questions are rewritten into standalone ones before retrieval (rag.conversation)."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest

from rag import ABSTAIN_MESSAGE, Answer, Citation, Passage, is_followup, resolve_followup
from rag.cli import main
from rag.conversation import FollowupAnswer, ask_in_context, followup_subjects, speaks_about

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


# ---------------------------------------------------------------------- ask_in_context: the answer is about the subject
SCAMS_ACROSS = "How many people may be held in scam centres across Myanmar?"
MALAYSIA_DOC = "sex-trafficking-in-malaysia"


@pytest.mark.parametrize("question, previous, expected", [
    ("and in Laos?", MYANMAR, ("Laos",)),
    ("and in laos", MYANMAR, ("laos",)),
    ("what about Malaysia and Thailand?", MYANMAR, ("Malaysia", "Thailand")),
    ("how about the Philippines?", SCAMS, ("the Philippines",)),
    ("what about forced marriage in Thailand?", MYANMAR, ("Thailand",)),  # names its own topic
    ("and in 2022?", "How many victims were identified in 2023?", ("2022",)),
    ("same for Shan State", "Who runs the compounds in Kayin State?", ("Shan State",)),
    ("and in Myanmar?", "What happens in Myanmar's border areas?", ()),  # nothing new
    ("and who are the traffickers?", MYANMAR, ()),  # inherits the previous topic
    ("What is the situation in Laos?", MYANMAR, ()),  # stands alone
])
def test_follow_up_subjects_are_the_new_topics(question, previous, expected):
    assert followup_subjects(question, [previous]) == expected


def test_no_history_no_subjects():
    assert followup_subjects("and in Laos?", []) == ()


@pytest.mark.parametrize("subject, text, expected", [
    ("Malaysia", "Malaysian citizens, primarily women and girls", True),  # demonym
    ("malaysia", "in MALAYSIA.", True),  # case
    ("Thailand", "on the Thai-Myanmar border", True),
    ("Laos", "Lao women", True),
    ("Laos", "Laotian girls", True),
    ("China", "other Chinese dialects", True),
    ("Myanmar", "Myanmar's border areas", True),
    ("the Philippines", "Philippine nationals", True),
    ("Malaysia", "at least 120,000 people across Myanmar", False),
    ("Malaysia", "across Southeast Asia", False),
    ("Peru", "ten percent of them", False),  # a short stem is not a prefix of any word
    ("UN", "under the law", False),  # acronyms and numbers match exactly
    ("UN", "the UN estimated", True),
    ("2022", "identified in 2023", False),
    ("Shan State", "in Kayin State", False),  # every word of a subject is needed
    ("Shan State", "compounds in Shan State", True),
])
def test_speaks_about_normalises_case_and_variants(subject, text, expected):
    assert speaks_about(subject, [text]) is expected


def test_the_country_switch_of_issue_14_is_declined(assistant):
    """ "and in Malaysia?" after the Myanmar scam-centre question must not quote the Myanmar 120,000 sentence."""
    turn = ask_in_context(assistant, "and in Malaysia?", [SCAMS_ACROSS])
    assert isinstance(turn, FollowupAnswer)
    assert turn.asked == "and in Malaysia?"
    assert turn.searched == "How many people may be held in scam centres across Malaysia?"
    assert turn.rewritten and turn.subjects == ("Malaysia",) and turn.unsupported == ("Malaysia",)
    answer = turn.answer
    assert answer.abstained and not answer.citations
    assert answer.text.startswith(ABSTAIN_MESSAGE)
    assert "do not speak about Malaysia" in answer.text
    assert "120,000" not in answer.text
    assert answer.passages, "the closest passages are kept so the user sees what was found"
    assert answer.question == turn.searched
    # The assistant alone answers the rewritten question from the Myanmar report: the check is what declines.
    plain = assistant.ask(turn.searched)
    assert {p.doc_id for p in plain.passages} == {p.doc_id for p in answer.passages}


def test_a_switch_to_a_country_no_document_covers_is_declined(assistant):
    turn = ask_in_context(assistant, "and in Thailand?", [SCAMS_ACROSS])
    assert turn.answer.abstained and "do not speak about Thailand" in turn.answer.text


@pytest.mark.parametrize("previous, followup", [
    ("Where are women from Laos trafficked to?", "and from Malaysia?"),
    ("Who are the victims of sex trafficking in Laos?", "and in Malaysia?"),
])
def test_a_supported_follow_up_is_answered_from_its_document(assistant, previous, followup):
    turn = ask_in_context(assistant, followup, [previous])
    assert turn.subjects == ("Malaysia",) and turn.unsupported == ()
    assert not turn.answer.abstained
    assert {c.doc_id for c in turn.answer.citations} == {MALAYSIA_DOC}
    assert turn.answer == assistant.ask(turn.searched)  # exactly what the assistant says


def test_a_first_question_is_answered_as_the_assistant_would(assistant):
    turn = ask_in_context(assistant, f"  {SCAMS_ACROSS} ", [])
    assert turn.asked == turn.searched == SCAMS_ACROSS and not turn.rewritten and turn.subjects == ()
    assert turn.answer == assistant.ask(SCAMS_ACROSS)
    assert not turn.answer.abstained and "120,000" in turn.answer.text


def test_a_follow_up_that_only_inherits_is_answered_as_the_assistant_would(assistant):
    turn = ask_in_context(assistant, "and who are the traffickers?", [MYANMAR], k=5,
                          doc_ids=["sex-trafficking-in-myanmar"])
    assert turn.searched == "Who are the traffickers in Myanmar?" and turn.subjects == ()
    assert turn.answer == assistant.ask(turn.searched, k=5, doc_ids=["sex-trafficking-in-myanmar"])


class _StubAssistant:
    """Returns a fixed answer and records how it was asked."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.calls: list[tuple[str, object, object]] = []

    def ask(self, question, k=None, *, doc_ids=None):
        self.calls.append((question, k, doc_ids))
        return self.answer


def _citation(number: int, doc_id: str, title: str, quote: str, start: int) -> Citation:
    return Citation(number, doc_id, title, "Victims", quote, start, start + len(quote))


def test_off_subject_sentences_are_dropped_and_the_rest_renumbered():
    on = _citation(1, "a", "Trafficking in Malaysia", "Victims come from abroad.", 0)
    off = _citation(2, "b", "Trafficking in Myanmar", "Most victims are women.", 100)
    passages = [Passage(on.quote, "a", on.title, "Victims", 0, 40, 0.9),
                Passage(off.quote, "b", off.title, "Victims", 90, 140, 0.8)]
    answer = Answer(f"{off.quote} [1] \u2026{on.quote} [2]", False, [replace(off, number=1), replace(on, number=2)],
                    passages, "Who are the victims in Malaysia?", 0.7)
    stub = _StubAssistant(answer)
    turn = ask_in_context(stub, "and in Malaysia?", ["Who are the victims in Laos?"], k=3, doc_ids=["a", "b"])
    assert stub.calls == [("Who are the victims in Malaysia?", 3, ["a", "b"])]
    assert not turn.answer.abstained
    assert turn.answer.text == f"\u2026{on.quote} [1]"
    assert [(c.number, c.doc_id) for c in turn.answer.citations] == [(1, "a")]
    assert turn.answer.confidence == 0.7 and turn.answer.passages == passages


def test_an_abstention_is_passed_through():
    answer = Answer(ABSTAIN_MESSAGE, True, [], [], "How are women trafficked in Malaysia?", 0.1)
    turn = ask_in_context(_StubAssistant(answer), "and in Malaysia?", [MYANMAR])
    assert turn.answer is answer and turn.subjects == ("Malaysia",)


def test_chat_resolves_follow_ups_and_shows_the_question_searched(seed_index_dir, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{SCAMS_ACROSS}\nand in Malaysia?\n"))
    assert main(["--index", str(seed_index_dir), "chat"]) == 0
    out = capsys.readouterr().out
    first, second = out.split("? and in Malaysia?")
    assert "120,000" in first and "(searched:" not in first
    assert "(searched: How many people may be held in scam centres across Malaysia?)" in second
    assert "do not speak about Malaysia" in second and "120,000" not in second
    assert "Closest passages:" in second
