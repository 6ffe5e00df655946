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

A rewritten question can still be answered from the old subject: "and in
Malaysia?" after a question on scam centres in Myanmar retrieves the Myanmar
report, whose best sentence is about Myanmar. ``ask_in_context`` resolves,
asks, and then checks that every cited sentence speaks about the subject the
follow-up introduced (``followup_subjects``): the subject's words, or variants
sharing their stem ("Malaysian", "Thai", "Lao"), must appear in the quote, its
passage, its section title or its document title (``speaks_about``). Cited
sentences that do not are dropped; with none left, the answer is an abstention
that says the documents found do not speak about the subject.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Collection, Sequence

from .answer import ABSTAIN_MESSAGE
from .errors import InputError
from .types import Answer, Citation, Passage

if TYPE_CHECKING:
    from .assistant import Assistant

__all__ = ["FollowupAnswer", "ask_in_context", "followup_subjects", "is_followup", "resolve_followup",
           "speaks_about"]

log = logging.getLogger(__name__)

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


# ---------------------------------------------------------------------- asking in a conversation
#: The shortest word (after normalisation) that may match another by prefix ("thai" ~ "thailand").
MIN_PREFIX = 4
#: At most this many letters may follow a matched prefix ("malaysia" + "n", "thai" + "land", "lao" + "tian").
MAX_SUFFIX = 4
_WORD = re.compile(r"[^\W_]+")
_TRAILING_VOWEL = re.compile(r"[aeiouy]$")
#: Words that join several subjects in one follow-up ("what about Malaysia and Thailand?").
_SUBJECT_SPLIT = re.compile(r"\s*(?:,|;|/|&|\band\b|\bor\b)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class FollowupAnswer:
    """One turn of a conversation: what was asked, what was searched, and the answer.

    ``subjects`` are the topics the follow-up introduced ("Malaysia" in "and in
    Malaysia?"); empty for a question that stands alone or only inherits the
    previous topic. ``unsupported`` are those the cited evidence does not speak
    about; when every subject is unsupported the answer is an abstention.
    """

    asked: str
    searched: str
    subjects: tuple[str, ...]
    answer: Answer
    unsupported: tuple[str, ...] = ()

    @property
    def rewritten(self) -> bool:
        """Whether the question searched differs from the one asked."""
        return self.searched != self.asked

    def to_dict(self) -> dict[str, Any]:
        return {"asked": self.asked, "searched": self.searched, "subjects": list(self.subjects),
                "unsupported": list(self.unsupported), "answer": self.answer.to_dict()}


def _previous(history: Sequence[str] | None) -> str:
    return next((" ".join(h.split()) for h in reversed(list(history or [])) if h and h.strip()), "")


def _split_subjects(topic: str) -> list[str]:
    """ "Malaysia and Thailand" → ["Malaysia", "Thailand"]; a part without a name-like word is left out."""
    subjects = []
    for part in _SUBJECT_SPLIT.split(topic):
        part = part.strip(" ?.!")
        if _subject_words(part):
            subjects.append(part)
    return subjects


def _normal(word: str) -> str:
    """Case-folded, accents removed, a plural or possessive "s" dropped ("Laos" → "lao", "Myanmar's" → "myanmar")."""
    word = "".join(ch for ch in unicodedata.normalize("NFKD", word) if not unicodedata.combining(ch)).casefold()
    word = _POSSESSIVE.sub("", word)
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word


def _subject_words(subject: str) -> list[tuple[str, bool]]:
    """The words a subject must be matched by, each with whether it must match exactly (acronym, number)."""
    words = []
    for token in _tokens(subject):
        text = _POSSESSIVE.sub("", token.text)
        if not text or text.lower() in STOPWORDS or text.lower() in _NAME_GLUE:
            continue
        exact = any(ch.isdigit() for ch in text) or (len(text) > 1 and text.isupper()) or len(_normal(text)) < 3
        words.append((_normal(text), exact))
    return words


def _same_word(subject: str, word: str, exact: bool) -> bool:
    """Whether a document word is the subject word or a recognised variant of it.

    Variants share a prefix: one word is the other plus a short ending ("Malaysia" ~ "Malaysian",
    "Thai" ~ "Thailand", "Laos" ~ "Lao" ~ "Laotian"), or both are the same stem without a final
    vowel ("China" ~ "Chinese", "Burma" ~ "Burmese"). Acronyms and numbers match exactly.
    """
    if subject == word:
        return True
    if exact:
        return False
    short, long_ = sorted((subject, word), key=len)
    if long_.startswith(short) and len(long_) - len(short) <= MAX_SUFFIX \
            and (len(short) >= MIN_PREFIX or short == subject):
        return True
    stem = _TRAILING_VOWEL.sub("", short)
    return (stem != short and len(stem) >= MIN_PREFIX and long_.startswith(stem)
            and len(long_) - len(stem) <= MAX_SUFFIX)


def speaks_about(subject: str, texts: Sequence[str]) -> bool:
    """Whether ``texts`` together name ``subject``: every word of it, or a recognised variant, appears.

    >>> speaks_about("Malaysia", ["Malaysian women were trafficked."])
    True
    >>> speaks_about("Malaysia", ["120,000 people across Myanmar"])
    False
    """
    needed = _subject_words(subject)
    if not needed:
        return True
    seen = {_normal(w) for text in texts for w in _WORD.findall(text)}
    return all(any(_same_word(s, w, exact) for w in seen) for s, exact in needed)


def followup_subjects(question: str, history: Sequence[str]) -> tuple[str, ...]:
    """The topics a follow-up introduces, in order: "Malaysia" for "and in Malaysia?".

    Empty for a question that stands alone, a follow-up that only inherits the previous
    topic ("and who are the traffickers?"), and topics the previous question already named.

    >>> followup_subjects("what about Malaysia and Thailand?", ["How are women trafficked in Myanmar?"])
    ('Malaysia', 'Thailand')
    """
    question = " ".join(str(question).split())
    previous = _previous(history)
    if not question or not previous or not is_followup(question):
        return ()
    _connective, rest = _strip_connective(question)
    bare = _bare_topic(rest)
    if bare is not None:
        topics = [bare[1]]
    else:
        topics = [t.text for t in _topics(rest, bare=bool(_connective))]
    subjects: list[str] = []
    for topic in topics:
        for subject in _split_subjects(topic):
            if not speaks_about(subject, [previous]) and subject not in subjects:
                subjects.append(subject)
    return tuple(subjects)


def _evidence(citation: Citation, passages: Sequence[Passage]) -> list[str]:
    """What a cited sentence is read with: its quote, the passage holding it, its section and document titles."""
    texts = [citation.quote, citation.section, citation.title]
    texts += [p.text for p in passages
              if p.doc_id == citation.doc_id and p.start < citation.end and citation.start < p.end]
    return texts


def _keep_citations(answer: Answer, keep: Sequence[Citation]) -> Answer:
    """The answer with only the ``keep`` citations (renumbered), its text rebuilt from their parts."""
    parts: dict[int, str] = {}
    pos = 0
    text = answer.text
    for c in answer.citations:  # the text is "part [1] part [2]", each part an exact quote, maybe with "…"
        marker = f" [{c.number}]"
        shown = " ".join(c.quote.split())
        at = text.find(shown, pos)
        end = text.find(marker, at + len(shown)) if at >= 0 else -1
        if at < 0 or end < 0:
            break
        begin = at - 1 if at > 0 and text[at - 1] == "\u2026" else at
        parts[c.number] = text[begin:end]
        pos = end + len(marker)
    citations, pieces = [], []
    for number, c in enumerate(keep, 1):
        citations.append(replace(c, number=number))
        pieces.append(f"{parts.get(c.number, ' '.join(c.quote.split()))} [{number}]")
    return replace(answer, text=" ".join(pieces), citations=citations)


def off_subject_answer(answer: Answer, subjects: Sequence[str]) -> Answer:
    """An abstention saying the documents found do not speak about ``subjects``, with the closest passages."""
    about = " or ".join(subjects) if subjects else "this subject"
    text = f"{ABSTAIN_MESSAGE} The documents found do not speak about {about} for this question."
    return Answer(text, True, [], list(answer.passages), answer.question, 0.0, dict(answer.features))


def ask_in_context(assistant: "Assistant", question: str, history: Sequence[str] | None = None, *,
                   k: int | None = None, doc_ids: Collection[str] | None = None) -> FollowupAnswer:
    """Answer ``question`` as a turn of a conversation and check the answer is about what was asked.

    ``history`` holds the earlier questions as searched (resolved), oldest first. The
    question is resolved with ``resolve_followup`` and asked; when the follow-up introduced
    a subject ("and in Malaysia?"), each cited sentence must name it (or a variant such as
    "Malaysian") in the sentence, its passage, its section title or its document title.
    Citations that do not are dropped; when none is left, the answer becomes an
    abstention that says so and keeps the closest passages. Any other question is
    answered exactly as ``assistant.ask(searched, k=k, doc_ids=doc_ids)``.
    """
    if not isinstance(question, str):
        raise InputError(f"question must be text, got {type(question).__name__}")
    asked = " ".join(question.split())
    history = [h for h in (history or []) if isinstance(h, str) and h.strip()]
    searched = resolve_followup(asked, history)
    answer = assistant.ask(searched, k=k, doc_ids=doc_ids)
    subjects = followup_subjects(asked, history)
    if not subjects or answer.abstained:
        return FollowupAnswer(asked, searched, subjects, answer)
    on_subject = []
    found: set[str] = set()
    for c in answer.citations:
        evidence = _evidence(c, answer.passages)
        named = {s for s in subjects if speaks_about(s, evidence)}
        found |= named
        if named:
            on_subject.append(c)
    unsupported = tuple(s for s in subjects if s not in found)
    if not on_subject:
        log.info("declined (the answer does not speak about %s; confidence was %.3f): %s",
                 ", ".join(subjects), answer.confidence, searched)
        return FollowupAnswer(asked, searched, subjects, off_subject_answer(answer, subjects), unsupported)
    if len(on_subject) < len(answer.citations):
        log.info("dropped %d cited sentence(s) not about %s: %s", len(answer.citations) - len(on_subject),
                 ", ".join(subjects), searched)
        answer = _keep_citations(answer, on_subject)
    return FollowupAnswer(asked, searched, subjects, answer, unsupported)
