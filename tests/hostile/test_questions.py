"""Hostile questions, k values and document filters, through the Python API and the ``rag`` command.

After every case the shared base index must still load, hold the same documents and answer a question.
"""

from __future__ import annotations

import warnings

import pytest

from rag import Answer, InputError, QuestionTruncatedWarning

from .conftest import QUESTION, assert_intact, assert_one_error_line, run_rag

LONG = ("Where does the Mekong River end and what do the fishermen catch there " * 1500)[:100_000]

#: Questions that must be refused with an InputError.
BAD_QUESTIONS = {
    "empty": "",
    "whitespace": " \t\n\r\u00a0\u2003 ",
    "none": None,
    "bytes": b"Where does the Mekong River end?",
    "lone-surrogate": "\ud800",
    "surrogate-inside-text": "Where does the Mekong \udcff River end?",
    "number": 42,
    "list": ["Where does the Mekong River end?"],
}

#: Questions that must be answered (an abstention is an answer), never crash.
ODD_QUESTIONS = {
    "control-chars-and-nul": "Where\x00 does the\x07 Mekong\x1b[31m River\x08 end?\x7f",
    "emoji": "🌊🐟 Where does the Mekong River end? 🤔👩🏽‍🔬🇹🇭",
    "arabic": "أين ينتهي نهر ميكونغ؟",
    "hebrew": "איפה נגמר נהר המקונג?",
    "burmese": "မဲခေါင်မြစ်သည် မည်သည့်နေရာတွင် အဆုံးသတ်သနည်း။",
    "chinese": "湄公河在哪里入海？",
    "mixed-bidi": "Where does the \u202eMekong\u202c River end? \u200f(نهر)\u200e",
    "html": "<script>alert('x')</script><b onmouseover=alert(1)>Where</b> does the <i>Mekong</i> end?",
    "markdown": "**Where** does the [Mekong](javascript:alert(1)) end? ![x](http://evil/x.png) `rm -rf /`",
    "zero-width-only": "\u200b\u200c\u200d\ufeff",
    "combining-marks": "Z\u0351\u0364\u036b\u0303a\u0362l\u0354g\u0353o Mekong" + "\u0301" * 500,
}


def _check_after(base_index, base_state, config, embedder, reader) -> None:
    assert_intact(base_index, base_state, config, embedder, reader)


# ---------------------------------------------------------------------- Python API: the question
@pytest.mark.parametrize("question", list(BAD_QUESTIONS.values()), ids=list(BAD_QUESTIONS))
def test_bad_question_is_an_input_error(base_assistant, base_index, base_state, config, embedder, reader, question):
    with pytest.raises(InputError) as info:
        base_assistant.ask(question)
    assert str(info.value).strip()
    with pytest.raises(InputError):
        base_assistant.retrieve(question)
    _check_after(base_index, base_state, config, embedder, reader)


@pytest.mark.parametrize("question", list(ODD_QUESTIONS.values()), ids=list(ODD_QUESTIONS))
def test_odd_question_is_answered(base_assistant, base_index, base_state, config, embedder, reader, question):
    answer = base_assistant.ask(question)
    assert isinstance(answer, Answer) and isinstance(answer.text, str) and answer.text
    for c in answer.citations:
        assert base_assistant.documents[c.doc_id].text[c.start:c.end] == c.quote
    passages = base_assistant.retrieve(question)
    assert all(p.doc_id in base_state for p in passages)
    _check_after(base_index, base_state, config, embedder, reader)


def test_100k_character_question_is_truncated_with_a_warning(base_assistant, base_index, base_state, config,
                                                             embedder, reader):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        answer = base_assistant.ask(LONG)
    assert isinstance(answer, Answer)
    assert any(issubclass(w.category, QuestionTruncatedWarning) for w in caught)
    _check_after(base_index, base_state, config, embedder, reader)


# ---------------------------------------------------------------------- Python API: k
@pytest.mark.parametrize("k", [0, -1, "3", 2.5, True, False, float("nan"), [3]],
                         ids=["zero", "minus-one", "string", "float", "true", "false", "nan", "list"])
def test_bad_k_is_an_input_error(base_assistant, base_index, base_state, config, embedder, reader, k):
    with pytest.raises(InputError, match="k"):
        base_assistant.ask(QUESTION, k=k)
    with pytest.raises(InputError, match="k"):
        base_assistant.retrieve(QUESTION, k=k)
    _check_after(base_index, base_state, config, embedder, reader)


def test_huge_k_returns_every_passage_at_most(base_assistant, base_index, base_state, config, embedder, reader):
    n = len(base_assistant.index.chunks)
    passages = base_assistant.retrieve(QUESTION, k=10**9)
    assert 1 <= len(passages) <= n
    answer = base_assistant.ask(QUESTION, k=10**9)
    assert isinstance(answer, Answer) and len(answer.passages) <= n
    _check_after(base_index, base_state, config, embedder, reader)


# ---------------------------------------------------------------------- Python API: doc_ids
@pytest.mark.parametrize("doc_ids", [["no-such-document"], ["mekong", "no-such-document"], "no-such-document",
                                     [5], 5, [None]],
                         ids=["unknown", "one-known-one-unknown", "unknown-string", "int-in-list", "int", "none-in-list"])
def test_bad_doc_ids_are_an_input_error(base_assistant, base_index, base_state, config, embedder, reader, doc_ids):
    with pytest.raises(InputError):
        base_assistant.ask(QUESTION, doc_ids=doc_ids)
    with pytest.raises(InputError):
        base_assistant.retrieve(QUESTION, doc_ids=doc_ids)
    _check_after(base_index, base_state, config, embedder, reader)


def test_unknown_doc_id_error_names_it(base_assistant):
    with pytest.raises(InputError, match="no-such-document"):
        base_assistant.ask(QUESTION, doc_ids=["no-such-document"])


def test_doc_ids_as_one_string_is_that_document(base_assistant, base_index, base_state, config, embedder, reader):
    passages = base_assistant.retrieve("When does the bakery open?", doc_ids="bakery")
    assert passages and {p.doc_id for p in passages} == {"bakery"}
    answer = base_assistant.ask("When does the bakery open?", doc_ids="bakery")
    assert {p.doc_id for p in answer.passages} <= {"bakery"}
    _check_after(base_index, base_state, config, embedder, reader)


def test_empty_doc_ids_is_an_error_or_an_abstention(base_assistant, base_index, base_state, config, embedder,
                                                    reader):
    try:
        answer = base_assistant.ask(QUESTION, doc_ids=[])
    except InputError:
        pass
    else:  # an empty filter: nothing to search, so nothing may be cited
        assert isinstance(answer, Answer) and not answer.citations
    _check_after(base_index, base_state, config, embedder, reader)


# ---------------------------------------------------------------------- the rag command (in-process)
@pytest.mark.parametrize("argv, contains", [
    (["ask", ""], "empty"),
    (["ask", " \t \n "], "empty"),
    (["ask", "\ud800"], "not valid text"),
    (["ask", "Where is it \udcff\udcfe?"], "not valid text"),
    (["ask", QUESTION, "--k", "0"], "k must be at least 1"),
    (["ask", QUESTION, "--k", "-1"], "k must be at least 1"),
    (["ask", QUESTION, "--k", "abc"], "--k"),
    (["ask", QUESTION, "--k", "2.5"], "--k"),
    (["ask", QUESTION, "--doc", "no-such-document"], "no-such-document"),
    (["retrieve", "", "--json"], "empty"),
    (["retrieve", QUESTION, "--k", "0"], "k must be at least 1"),
], ids=["empty", "whitespace", "lone-surrogate", "surrogate-escapes", "k-0", "k-minus-1", "k-string", "k-float",
        "unknown-doc", "retrieve-empty", "retrieve-k-0"])
def test_cli_bad_question_is_one_error_line(cli, base_index, base_state, config, embedder, reader, argv, contains):
    run = cli("-q", "--index", base_index, *argv)
    assert_one_error_line(run.code, run.err, contains=contains)
    assert run.out == ""
    _check_after(base_index, base_state, config, embedder, reader)


@pytest.mark.parametrize("question", [ODD_QUESTIONS[k] for k in
                                      ("control-chars-and-nul", "emoji", "arabic", "hebrew", "burmese", "chinese",
                                       "html", "markdown")],
                         ids=["control-chars-and-nul", "emoji", "arabic", "hebrew", "burmese", "chinese", "html",
                              "markdown"])
def test_cli_odd_question_is_answered(cli, base_index, base_state, config, embedder, reader, question):
    run = cli("-q", "--index", base_index, "ask", question)
    assert run.code == 0, run.err
    assert "Traceback" not in run.err and run.out.strip()
    assert "\x1b" not in run.out
    _check_after(base_index, base_state, config, embedder, reader)


def test_cli_100k_question_warns_once_and_answers(cli, base_index, base_state, config, embedder, reader):
    run = cli("-q", "--index", base_index, "ask", LONG)
    assert run.code == 0, run.err
    lines = [line for line in run.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning:"), run.err
    assert "tokens" in lines[0]
    assert run.out.strip()
    _check_after(base_index, base_state, config, embedder, reader)


def test_cli_huge_k_and_single_doc(cli, base_index, base_state, config, embedder, reader):
    import json

    run = cli("-q", "--index", base_index, "ask", QUESTION, "--k", str(10**9), "--json")
    assert run.code == 0, run.err
    data = json.loads(run.out)
    assert len(data["passages"]) <= 3
    run = cli("-q", "--index", base_index, "retrieve", "When does the bakery open?", "--doc", "bakery", "--json")
    assert run.code == 0, run.err
    assert {p["doc_id"] for p in json.loads(run.out)} == {"bakery"}
    _check_after(base_index, base_state, config, embedder, reader)


# ---------------------------------------------------------------------- the real process: undecodable argv
@pytest.mark.slow
def test_invalid_utf8_bytes_on_the_command_line(tmp_path, base_index, base_state, config, embedder, reader):
    """``rag ask`` given bytes that are not UTF-8 (Python sees lone surrogates via surrogateescape)."""
    run = run_rag([b"-q", b"--index", str(base_index).encode(), b"ask", b"Where does the \xff\xfe Mekong end? \xc3("],
                  cwd=tmp_path)
    line = assert_one_error_line(run.code, run.err)
    assert run.code == InputError.exit_code, (run.code, line)
    assert "UTF-8" in line or "not valid text" in line
    _check_after(base_index, base_state, config, embedder, reader)

