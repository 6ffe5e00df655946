"""Follow-up questions: rewrite an elliptical question into one that stands alone.

In a conversation, "and in Laos?" after "How are women trafficked in Myanmar?"
means "How are women trafficked in Laos?". Retrieval sees one question at a
time, so the follow-up is resolved against the previous (already resolved)
question *before* retrieving, and the UI shows the question actually searched.

The rules are deterministic and small:

* A question is a follow-up when there is a previous question and it
  - starts with a connective ("and", "what about", "how about", "also", "same for", …), or
  - is a bare topic such as "Laos?" or "in Laos?", or
  - leans on a pronoun ("they", "them", "their", "it", "its", "there", "these",
    "those") and names no topic of its own (no proper noun, acronym or number).
* **Substitution** — when the follow-up is only a (prepositional) topic, e.g.
  "and in Laos?", "what about Malaysia and Thailand?", the previous question is
  repeated with its topic replaced: the topic after the same preposition if
  there is one, else its last topic; with no topic to replace, the new one is
  appended.
* **Inheritance** — otherwise the follow-up keeps its own words (minus a
  leading "and"/"also") and inherits the previous question's topic: "there" is
  replaced by it ("what is the situation there?" → "… in Laos?"), or it is added
  at the end ("and who are the traffickers?" → "Who are the traffickers in Myanmar?").

A topic is a run of capitalised words (not the first word of a full question),
an acronym or a number, e.g. "Myanmar", "Operation 1027", "Shan State"; in a bare
follow-up, lower-case words after a preposition count too ("and in laos?").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

__all__ = ["resolve_followup", "is_followup"]

#: Leading phrases that mark an elliptical follow-up, longest first.
CONNECTIVES = (
    "and what about", "and how about", "but what about", "then what about", "what about", "how about",
    "and what of", "what of", "same question for", "same question about", "same for", "the same for",
    "and also", "and", "also", "but", "or",
)
#: Connectives that are only glue: dropped when the follow-up keeps its own words.
DROPPABLE = {"and", "also", "but", "or", "and also"}

PREPOSITIONS = {"in", "for", "at", "from", "to", "into", "on", "of", "within", "inside", "across", "about",
                "by", "near", "around", "between", "among", "under", "during", "after", "before", "since"}
#: Prepositions that introduce a place or time, so a lower-case word after them is a topic ("in laos").
TOPIC_PREPOSITIONS = {"in", "for", "at", "from", "to", "into", "within", "inside", "across", "during", "near",
                      "around", "since", "before", "after", "about", "on"}
#: Prepositions of direction, which replace the previous question's ("trafficked to Laos" → "from Laos").
DIRECTIONAL = {"from", "to", "into"}
PRONOUNS = {"they", "them", "their", "theirs", "it", "its", "there", "these", "those", "he", "she", "his",
            "her", "him"}
QUESTION_WORDS = {"who", "whom", "whose", "what", "which", "when", "where", "why", "how", "is", "are", "was",
                  "were", "do", "does", "did", "can", "could", "should", "would", "will", "has", "have", "had",
                  "may", "might", "must", "shall", "tell", "list", "describe", "explain", "give", "name", "show"}
STOPWORDS = QUESTION_WORDS | PREPOSITIONS | PRONOUNS | {
    "a", "an", "the", "and", "or", "but", "not", "no", "yes", "also", "so", "then", "than", "that", "this",
    "i", "me", "my", "we", "our", "you", "your", "as", "if", "be", "been", "being", "with", "without",
    "about", "any", "some", "many", "much", "more", "most", "such", "other", "same", "there", "here", "one",
    "ones", "all", "each", "every", "very", "just", "only", "what's", "who's", "how's", "there's", "it's",
    "please", "else", "still", "too", "well", "ok", "okay", "now",
}
#: "there" in these pairs is existential ("are there …"), not a place.
EXISTENTIAL = re.compile(r"\b(?:is|are|was|were|be|been|isn't|aren't|wasn't|weren't)\s+there\b"
                         r"|\bthere\s+(?:is|are|was|were|be|been|have|has|had|exist|exists|existed|seem|seems|"
                         r"appear|appears|will|would|may|might|could|must|should)\b", re.IGNORECASE)

_TOKEN = re.compile(r"[A-Za-z0-9\u00C0-\u024F][\w\u00C0-\u024F'\u2019.\-]*")
_POSSESSIVE = re.compile(r"(?:'s|\u2019s|'|\u2019)$")
#: Short lower-case words that may sit inside a capitalised name ("Republic of the Union of Myanmar").
_NAME_GLUE = {"of", "the", "and", "de", "del", "da"}
#: A bare follow-up ("in Laos?") has at most this many words.
MAX_BARE_WORDS = 6
#: A pronoun follow-up without a topic of its own has at most this many words.
MAX_PRONOUN_FOLLOWUP_WORDS = 14


@dataclass(frozen=True)
class _Token:
    text: str
    start: int
    end: int

    @property
    def lower(self) -> str:
        return self.text.lower()


@dataclass(frozen=True)
class _Topic:
    """A topic span in a question, with the preposition in front of it (if any)."""

    start: int
    end: int
    text: str
    preposition: str
    prep_start: int


def _tokens(text: str) -> list[_Token]:
    tokens = []
    for m in _TOKEN.finditer(text):
        word = m.group(0).rstrip(".-")  # a sentence's full stop is not part of the word
        if word:
            tokens.append(_Token(word, m.start(), m.start() + len(word)))
    return tokens


def _is_name_word(token: _Token, first: bool) -> bool:
    """A word that is (part of) a proper noun, an acronym or a number."""
    word = _POSSESSIVE.sub("", token.text)
    if not word:
        return False
    if any(ch.isdigit() for ch in word):
        return True
    if len(word) > 1 and word.isupper():
        return True  # acronym: UNODC, COVID
    if not word[0].isupper():
        return False
    if word.lower() in STOPWORDS:
        return False
    return not first


def _topics(text: str, *, bare: bool = False) -> list[_Topic]:
    """Topic spans of ``text`` in order. ``bare``: the text is a fragment, so its first word may be a name."""
    tokens = _tokens(text)
    topics: list[_Topic] = []
    i = 0
    while i < len(tokens):
        if not _is_name_word(tokens[i], first=(i == 0 and not bare)):
            i += 1
            continue
        j = i
        while j + 1 < len(tokens):
            nxt = tokens[j + 1]
            if _is_name_word(nxt, first=False) and not _POSSESSIVE.search(tokens[j].text):
                j += 1
            elif (nxt.lower in _NAME_GLUE and j + 2 < len(tokens) and _is_name_word(tokens[j + 2], first=False)
                  and nxt.lower != "and"):
                j += 2
            else:
                break
        start, end = tokens[i].start, tokens[j].end
        m = _POSSESSIVE.search(text[start:end])
        if m:
            end = start + m.start()
        prep, prep_start = "", start
        if i > 0 and tokens[i - 1].lower in PREPOSITIONS:
            prep, prep_start = tokens[i - 1].lower, tokens[i - 1].start
        topics.append(_Topic(start, end, text[start:end], prep, prep_start))
        i = j + 1
    return topics


def _strip_connective(question: str) -> tuple[str, str]:
    """Split a leading connective off: ("and", "in Laos?")."""
    lowered = question.lower()
    for connective in CONNECTIVES:
        if lowered.startswith(connective) and (len(lowered) == len(connective)
                                               or not lowered[len(connective)].isalnum()):
            rest = question[len(connective):].lstrip(" ,;:\u2014\u2013-")
            return connective, rest
    return "", question


def _content_words(text: str) -> list[str]:
    return [t.text for t in _tokens(text) if t.lower not in STOPWORDS and len(t.text) > 1]


def _bare_topic(fragment: str) -> tuple[str, str] | None:
    """If ``fragment`` is only a topic ("in Laos", "Malaysia and Thailand", "in laos"), return (preposition, topic)."""
    body = fragment.strip().rstrip("?.!").strip()
    tokens = _tokens(body)
    if not tokens or len(tokens) > MAX_BARE_WORDS:
        return None
    prep = ""
    if tokens[0].lower in PREPOSITIONS:
        prep = tokens[0].lower
        tokens = tokens[1:]
        if tokens and tokens[0].lower == "the":
            pass  # "in the Philippines": keep the article in the topic
    if not tokens:
        return None
    words = [t for t in tokens if t.lower not in {"the", "and", "or", ","}]
    if not words:
        return None
    named = all(_is_name_word(t, first=False) or (t.text[:1].isupper() and t.lower not in STOPWORDS)
                for t in words)
    lower_place = prep in TOPIC_PREPOSITIONS and all(t.lower not in STOPWORDS for t in words) and len(words) <= 3
    if not (named or lower_place):
        return None
    topic = body[tokens[0].start:tokens[-1].end]
    return prep, topic


def _finish(text: str) -> str:
    text = " ".join(text.split()).strip(" ,;:")
    text = re.sub(r"\s+([?.!,;:])", r"\1", text)
    if not text:
        return text
    text = text[0].upper() + text[1:]
    if not text.endswith(("?", ".", "!")):
        text += "?"
    return text


def _core(question: str) -> str:
    """The question without its final punctuation."""
    return question.strip().rstrip("?.! ").strip()


def _substitute(previous: str, prep: str, topic: str) -> str:
    """The previous question with its topic replaced by ``topic``."""
    base = _core(previous)
    topics = _topics(base)
    target = None
    if prep:
        same = [t for t in topics if t.preposition == prep]
        target = same[-1] if same else None
    if target is None and topics:
        target = topics[-1]
    if target is None:
        joiner = f" {prep} " if prep else " for "
        return _finish(base + joiner + topic)
    if prep in DIRECTIONAL and target.preposition and target.preposition != prep:
        # "in Myanmar" → "from Laos": a direction replaces the old preposition; "in" after "of" keeps "of".
        return _finish(base[:target.prep_start] + f"{prep} {topic}" + base[target.end:])
    return _finish(base[:target.start] + topic + base[target.end:])


def _topic_phrase(previous: str) -> str:
    """What a follow-up inherits: "in Myanmar", "Operation 1027", or the previous question's key words."""
    base = _core(previous)
    topics = _topics(base)
    if topics:
        t = topics[-1]
        return f"{t.preposition} {t.text}" if t.preposition in TOPIC_PREPOSITIONS else f"({t.text})"
    words = _content_words(base)
    return f"({' '.join(words[:6])})" if words else ""


def _has_pronoun(text: str) -> bool:
    without_existential = EXISTENTIAL.sub(" ", text)
    return any(t.lower in PRONOUNS for t in _tokens(without_existential))


def _inherit(own: str, previous: str) -> str:
    """``own`` (a follow-up with its own words) plus the previous question's topic."""
    phrase = _topic_phrase(previous)
    core = _core(own)
    if not phrase:
        return _finish(core)
    if not phrase.startswith("("):
        # "there" as a place ("what is the situation there") becomes the topic itself.
        masked = EXISTENTIAL.sub(lambda m: "\0" * len(m.group(0)), core)
        place = re.search(r"\bthere\b", masked, re.IGNORECASE)
        if place:
            return _finish(core[:place.start()] + phrase + core[place.end():])
    return _finish(f"{core} {phrase}")


def is_followup(question: str) -> bool:
    """Whether ``question`` leans on an earlier one (a connective, a bare topic, or a pronoun without a topic)."""
    question = " ".join(question.split())
    if not question:
        return False
    connective, rest = _strip_connective(question)
    if connective:
        return True
    if _bare_topic(question) is not None and len(_tokens(question)) <= 3:
        return True
    tokens = _tokens(question)
    return (_has_pronoun(question) and not _topics(question)
            and len(tokens) <= MAX_PRONOUN_FOLLOWUP_WORDS)


def resolve_followup(question: str, history: Sequence[str]) -> str:
    """Rewrite ``question`` so it stands alone, given the earlier questions of the conversation.

    ``history`` holds the previous questions as they were searched (already
    resolved), oldest first. A question that stands alone is returned unchanged
    (whitespace normalised).

    >>> resolve_followup("and in Laos?", ["How are women trafficked in Myanmar?"])
    'How are women trafficked in Laos?'
    >>> resolve_followup("What do they earn?", ["Who works in the scam centres in Myanmar?"])
    'What do they earn in Myanmar?'
    """
    question = " ".join(str(question).split())
    previous = next((" ".join(h.split()) for h in reversed(list(history or [])) if h and h.strip()), "")
    if not question or not previous or not is_followup(question):
        return question
    connective, rest = _strip_connective(question)
    if not rest.strip(" ?.!"):
        return _finish(previous)  # "and?" / "what about?": ask the same again
    bare = _bare_topic(rest)
    if bare is not None:
        prep, topic = bare
        return _substitute(previous, prep, topic)
    if _topics(rest, bare=bool(connective)):
        # "what about forced marriage in Thailand?": it names its own topic.
        return _finish(rest if connective in DROPPABLE else question)
    own = rest if connective in DROPPABLE else question
    return _inherit(own, previous)
