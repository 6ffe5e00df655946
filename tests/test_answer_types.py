"""Answer types: what a question asks for, and whether a sentence holds it."""

from __future__ import annotations

import pytest

from rag.answer import (comparison_parts, expected_type, is_label, missing_anchors, question_anchors, question_parts,
                        type_matches)


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
    ("Which Lao province sends the most women abroad?", "place"),  # a modifier before the noun; "sends" is no plural
    ("Which international agency did he approach?", "name"),
    ("What border-related weakness holds the work back?", None),  # the noun must end the word
])
def test_expected_type(question, kind):
    assert expected_type(question) == kind


@pytest.mark.parametrize("kind, text, question, ok", [
    ("number", "The UWSA raided more than 40 scam centres.", "How many scam centres were raided?", True),
    ("number", "The UWSA raided scam centres.", "How many scam centres were raided?", False),
    ("number", "In 2022 there were raids.", "How many raids were there in 2022?", False),  # the asked year is no answer
    ("number", "The 2023 report described raids.", "How many raids were there?", False),  # a year is no count
    ("number", "The 2023 report counted 117 calls.", "How many calls were there?", True),
    ("number", "For nearly a decade, they have fought together.", "For how long have they been allied?", True),
    ("date", "It was founded in 2009.", "When was it founded?", True),
    ("time", "I had to start working at 2:30 AM.", "At what time did he start?", True),
    ("name", "Village Focus International carries out initiatives in Laos.", "Who works in Laos?", True),
    ("name", "It carries out initiatives in Laos.", "Who works in Laos?", False),
    ("reason", "They choose deportation because the process is convoluted.", "Why deportation?", True),
    ("list", "They are trafficked into Thailand, Vietnam, China and Japan.", "Which countries?", True),
    # several names asked for: one new name is not enough
    ("place", "Lao citizens are trafficked into other countries in Asia.", "To which countries are Lao women sent?",
     False),
    ("place", "Lao women are trafficked into Thailand, Vietnam and China.", "To which countries are Lao women sent?",
     True),
    ("place", "Women are trafficked to China.", "Where are women trafficked to?", True),
])
def test_type_matches(kind, text, question, ok):
    assert type_matches(kind, text, question) is ok


@pytest.mark.parametrize("sentence, label", [
    ("- Human trafficking in Malaysia", True),  # a "See also" link
    ("United Wa State Army / Arakan Army", True),  # a signatory line
    ("-24-year-old female, Laukkaing Township", True),  # an attribution
    ("I had to start working at 2:30 AM.", False),
    ("forced to carry out online scams.\u00b9\u2079", False),  # a footnote mark after the full stop
    ("He said: \u201cI have no money.\u201d", False),
    ("- Town reported to be partially or fully controlled by MNDAA and/or resistance forces", False),  # long
])
def test_is_label(sentence, label):
    assert is_label(sentence) is label


def test_question_anchors_are_proper_nouns_acronyms_and_numbers():
    assert question_anchors("How many victims did the IOM assist in Myanmar's north during 2023?") == \
        ["IOM", "Myanmar", "2023"]
    assert question_anchors("Why do people go?") == []


@pytest.mark.parametrize("question, text, missing", [
    ("What did the IOM do in Myanmar?", "The International Organization for Migration helped people in Myanmar.", 0.0),
    ("What did the UN estimate?", "the United Nations estimated that at least 120,000 people", 0.0),
    ("How many Kenyan nationals were trafficked?", "Kenya said one of its nationals was trafficked.", 0.0),
    ("How many Malaysian courts convicted traffickers in 2022?", "Myanmar's hotlines received 117 calls in 2022.", 0.5),
    ("Which tier is Malaysia in?", "Myanmar is a Tier Three state.", 1.0),
    ("Why do people go?", "Anything at all.", 0.0),
])
def test_missing_anchors(question, text, missing):
    assert missing_anchors(question_anchors(question), text) == missing


@pytest.mark.parametrize("question, parts", [
    ("Which law do police use against scam finances, and what gap do they have for foreign victims?",
     ["Which law do police use against scam finances?", "what gap do they have for foreign victims?"]),
    ("What share of victims in Malaysia came from abroad and which countries are Lao women sent to?",
     ["What share of victims in Malaysia came from abroad?", "which countries are Lao women sent to?"]),
    ("What corrupt acts are reported in Myanmar and in Laos respectively?", []),  # one question, two places
    ("Where are women trafficked and how are they recruited?", []),  # "how are they recruited" is too thin alone
])
def test_question_parts(question, parts):
    assert question_parts(question) == parts


TITLES = {"laos": "Sex trafficking in Laos", "myanmar": "Sex trafficking in Myanmar",
          "report": "Compound Abuses: Scam Centres in Myanmar's Border Areas"}


@pytest.mark.parametrize("question, parts", [
    ("What corrupt acts are reported in Myanmar and in Laos respectively?",
     [("What corrupt acts are reported in Myanmar?", {"myanmar", "report"}),
      ("What corrupt acts are reported in Laos?", {"laos"})]),
    ("Are the Myanmar and Lao governments making efforts?",  # a demonym matches its country's title
     [("Are the Myanmar governments making efforts?", {"myanmar", "report"}),
      ("Are the Lao governments making efforts?", {"laos"})]),
    ("Which countries receive women from Laos and Thailand?", []),  # no document is about Thailand
    ("What happens on the border between Myanmar and Laos?", []),  # one thing between two places
    ("Which scam hubs operate in Shan State and Kayin State?", []),  # no title names either
])
def test_comparison_parts(question, parts):
    assert comparison_parts(question, TITLES) == parts
