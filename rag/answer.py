"""Stage 6: a short extractive answer whose every sentence cites an exact quote.

No reader or NLI model is available offline, so the answer is made only of
sentences (or clauses of long sentences) copied from the retrieved passages.
Each candidate sentence of the top passages is scored by

    w_dense   * cosine(question, sentence)
  + w_lexical * IDF-weighted share of the question's key terms found in the
                sentence and the one before it (its context), read under its
                document's title and section heading
  + w_type    * [the sentence holds what the question asks for: a number, a
                 year, a time, a name]
  + w_passage / rank of the passage it came from

The best sentence is widened to a neighbour when the two read as one thought
(a colon, or a next sentence that starts "Instead", "This", "They" …), and a
second span is added when it covers key terms the first misses. A compound
question ("Which law …, and what gap …?") is split in two and each part gets
its own best sentence, from whichever document holds it; so is a comparison of
two subjects that separate documents are about ("… in Myanmar and in Laos?"),
each part answered from its own subject's documents. Before
answering, a small logistic model over the evidence features (see
``FEATURES``: how close the best sentence is, how much of the question it
covers, whether it holds the kind of answer asked for, and whether its passage
names what the question is specifically about — its proper nouns, acronyms
and numbers) estimates whether the passages answer the question at all; below
``abstain_threshold`` the assistant abstains and still returns the passages.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np

from .chunking import split_sentences
from .config import Config
from .embedding import Embedder
from .index import Index
from .lexical import analyze, question_terms
from .types import Answer, Citation, Passage

log = logging.getLogger(__name__)

ABSTAIN_MESSAGE = "The documents do not answer this question."
NO_PASSAGES_MESSAGE = "The documents do not answer this question (no passage matched)."

_CLAUSE_BREAK = re.compile(r"(?<=[,;:\u2014\u2013])\s+|\s+(?=[\u2014\u2013]\s)")
_WORDS = re.compile(r"\S+")
#: Sentences shorter than this many words are not answers on their own (headings, attributions).
MIN_SENTENCE_WORDS = 4
#: A line without sentence-final punctuation and shorter than this is a label (a "See also" link, a map
#: legend, an attribution like "-24-year-old male, Laukkaing Township"), not an answer of its own. It can
#: still be joined to a chosen sentence before it that ends with a colon.
MIN_LABEL_WORDS = 8
_FINAL = re.compile(r"[.!?:;…][\s\"'”’)\]¹²³⁰-⁹\d]*$")

# ---------------------------------------------------------------------------- answer types
# "which Lao province", "which international agency", "which two countries": up to two words before the noun.
_MODIFIERS = r"(?:[\w'’-]+ ){0,2}?"
_TYPE_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("time", re.compile(r"\b(what|which) time\b|\bat what (hour|time)\b")),
    ("date", re.compile(r"^\s*when\b|\b(what|which) (year|month|date|day)\b|\bin what year\b|\bsince when\b")),
    ("number", re.compile(
        r"\bhow (many|much|long|old|large|big|far|often|high|low)\b|"
        r"\b(what|which) (percentage|percent|proportion|share|number|amount|fraction|sum|age|price|cost|rate|salary|"
        r"commission|figure|total)\b|\bat what age\b")),
    ("place", re.compile(r"^\W*(where|to where|from where)\b|\b(which|what) " + _MODIFIERS +
                         r"(country|countries|city|cities|town|towns|province|provinces|region|regions|state|states|"
                         r"place|places|border)(?![\w-])")),
    ("name", re.compile(r"^\s*(who|whom|whose)\b|\bwhat is the name\b|\bname of\b|"
                        r"\b(which|what) " + _MODIFIERS + r"(organi[sz]ation|group|agency|ngo|charity|company|"
                        r"ministry|person|official|commander|leader|newspaper|outlet|law|statute|act)(?![\w-])")),
]
_NUMBER_WORDS = ("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
                 "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred hundreds "
                 "thousand thousands million millions billion dozen dozens half tenfold twice double decade decades "
                 "century")
_NUMBER = re.compile(r"\d|\b(" + "|".join(_NUMBER_WORDS.split()) + r")\b", re.IGNORECASE)
_YEAR_DIGITS = re.compile(r"\b(?:1[89]|20)\d\d\b")
_YEAR = re.compile(r"(" + _YEAR_DIGITS.pattern + r")|\b(January|February|March|April|May|June|July|August|September|"
                   r"October|November|December)\b")
_TIME = re.compile(r"\b\d{1,2}(:\d\d)?\s?(AM|PM|am|pm|a\.m\.|p\.m\.)|\b\d{1,2}:\d\d\b|\bmidnight\b|\bnoon\b")
_REASON_QUESTION = re.compile(r"^\W*(why|how come)\b|\bwhy\b|\b(what|which) (caused|causes|led to|leads to|drove|"
                              r"drives|explains|made)\b|\bfor what reason\b|\bwhat (is|was|are|were) the reasons?\b")
_REASON = re.compile(r"\b(because|due to|as a result|since|given|owing to|lack of|led to|leading to|driven|drove|"
                     r"so that|in order to|therefore|thus|caused|causing|result(ed|s)? in|so\b|for fear|fears? of|"
                     r"unable|inability)\b", re.IGNORECASE)
# "which countries", "what kinds of jobs", "name the groups": an answer that enumerates.
_LIST_QUESTION = re.compile(r"\b(?:which|what)\s+(?:\w+\s+){0,2}?(\w{3,}s)\b|\b(list|name the)\b")
#: Words ending in "s" that are not plural nouns ("what role does …").
_NOT_PLURAL = {"does", "was", "has", "this", "its", "his", "hers", "thus", "always", "across", "whereas", "less",
               "unless", "status", "process", "access", "address", "success", "business", "crisis", "basis"}
_ENUMERATION = re.compile(r"[^,;]+[,;][^,;]+[,;]|\b\w+,? (and|or) \w+\b.*,|:\s*\S")
_CAPITALISED = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-zA-Z'’-]+")
# Words that open a sentence continuing the previous one.
_CONTINUATION = re.compile(r"^(Instead|However|But|This|These|That|Those|They|It|Its|Their|Such|So|Thus|Therefore|"
                           r"As a result|Because|Consequently|Then|He|She|His|Her)\b")

# "Besides being branded criminals, how …": the clause names what the answer is not.
_EXCLUSION = re.compile(r"^\W*(?:besides|apart from|aside from|other than|in addition to|beyond)\s+([^,?]+),",
                        re.IGNORECASE)

_STRICT_TYPES = ("number", "date", "time", "name", "place")
# "Which countries …", "what organisations …": the answer names several, not one.
_PLURAL_NAMES = re.compile(r"\b(which|what)\s+" + _MODIFIERS + r"(countries|cities|towns|provinces|regions|states|"
                           r"places|organi[sz]ations|groups|agencies|ngos|charities|companies|ministries|people|"
                           r"officials|leaders|nationalities|ethnicities)\b")

# "…, and what …": a second question joined to the first.
_COMPOUND = re.compile(r",?\s+(?:and|but)\s+(?P<wh>(?:what|which|who|whom|how|why|where|when)\b)", re.IGNORECASE)
#: Each part of a compound question needs this many key terms to be asked on its own.
MIN_PART_TERMS = 2
# "… in Myanmar and in Laos …", "the Myanmar and Lao governments": two named things compared.
_PAIR = re.compile(r"(?P<p1>\b(?:in|from|of|by|for|on|to|at)\s+)?(?P<a>[A-Z][\w'’-]*)\s+(?:and|or|versus|vs\.?)\s+"
                   r"(?P<p2>(?:in|from|of|by|for|on|to|at)\s+)?(?P<b>[A-Z][\w'’-]*)")
_RESPECTIVELY = re.compile(r",?\s+(?:respectively|each)\b", re.IGNORECASE)

# Anchors: what a question is specifically about (a proper noun, an acronym, a number or year).
_ACRONYM = re.compile(r"^[A-Z][A-Z0-9]{1,7}s?$")
_NAME_RUN = re.compile(r"[A-Z][\w'’-]*(?:\s+(?:(?:of|for|and|the|on|in|de)\s+)*[A-Z][\w'’-]*)*")
_DIGITS = re.compile(r"\d+(?:[.,]\d+)*")

#: Evidence features, in the order the abstention model's coefficients are given.
FEATURES = ("best_cosine", "best_coverage", "missing_key_term", "type_mismatch", "top_passage_cosine",
            "missing_anchor")


def expected_type(question: str) -> str | None:
    """What the question asks for: "reason", "time", "date", "number", "place", "name", "list" or None."""
    q = question.lower()
    if _REASON_QUESTION.search(q):
        return "reason"  # whatever else the question mentions ("why is it hard to gauge how big …")
    for kind, pattern in _TYPE_PATTERNS:
        if pattern.search(q):
            return kind
    for m in _LIST_QUESTION.finditer(q):
        if m.group(2) or m.group(1) not in _NOT_PLURAL:
            return "list"
    return None


def type_matches(kind: str | None, text: str, question: str) -> bool:
    """Whether ``text`` holds an answer of ``kind`` that the question does not already contain."""
    if kind is None:
        return True
    if kind == "reason":
        return bool(_REASON.search(text))
    if kind == "list":
        return bool(_ENUMERATION.search(text))
    if kind == "time":
        return bool(_TIME.search(text))
    if kind == "date":
        asked = set(_YEAR.findall(question))
        return any(m not in asked for m in _YEAR.findall(text))
    if kind == "number":
        # A count or an amount: a year ("in 2023") is a date, not the number asked for.
        asked = {m.group(0).lower() for m in _NUMBER.finditer(question)}
        years = [m.span() for m in _YEAR_DIGITS.finditer(text)]
        return any(m.group(0).lower() not in asked and not any(a <= m.start() < b for a, b in years)
                   for m in _NUMBER.finditer(text))
    # A name or place: a capitalised word that is not one of the question's own terms (two different
    # ones when the question asks for several: "which countries …").
    asked_terms = set(analyze(question))
    wanted = 2 if _PLURAL_NAMES.search(question.lower()) else 1
    found: set[str] = set()
    for m in _CAPITALISED.finditer(text):
        terms = analyze(m.group(0))
        if terms and not set(terms) <= asked_terms:
            found.add(" ".join(terms))
            if len(found) >= wanted:
                return True
    return False


def question_parts(question: str) -> list[str]:
    """The two questions of a compound one ("Which law …, and what gap …?"), or [] for a single question.

    Each part gets its own best sentence: one sentence seldom answers both.
    """
    m = _COMPOUND.search(question)
    if not m:
        return []
    first, second = question[:m.start()].strip(" ,;"), question[m.start("wh"):].strip()
    if min(len(question_terms(first)), len(question_terms(second))) < MIN_PART_TERMS:
        return []
    return [first + "?", second if second.endswith("?") else second + "?"]


@lru_cache(maxsize=8192)
def _title_terms(title: str) -> frozenset[str]:
    return frozenset(analyze(title))


def comparison_parts(question: str, titles: Mapping[str, str]) -> list[tuple[str, frozenset[str]]]:
    """The question asked once per compared subject, each with the documents about that subject
    ("… in Myanmar and in Laos?" -> ("… in Myanmar?", {Myanmar's documents}), ("… in Laos?", {…})),
    or [] when it compares nothing the documents are separately about.

    ``titles`` maps doc_id to title. Only a pair whose two names are each named by the title of a
    different document is split: such a question wants one sentence from each, and no single
    sentence tends to hold both.
    """
    for m in _PAIR.finditer(question):
        if m.start("a") == 0 or question[:m.start()].rstrip().lower().endswith("between"):
            continue
        a, b = m.group("a"), m.group("b")
        docs_a = {i for i, t in titles.items() if anchor_found(a, t, _title_terms(t))}
        docs_b = {i for i, t in titles.items() if anchor_found(b, t, _title_terms(t))}
        only_a, only_b = frozenset(docs_a - docs_b), frozenset(docs_b - docs_a)
        if not (only_a and only_b):
            continue
        head, tail = question[:m.start()], _RESPECTIVELY.sub("", question[m.end():])
        return [(f"{head}{m.group('p1') or ''}{a}{tail}", only_a),
                (f"{head}{m.group('p2') or m.group('p1') or ''}{b}{tail}", only_b)]
    return []


def question_anchors(question: str) -> list[str]:
    """The question's proper nouns, acronyms and numbers, as raw words ("Malaysian", "IOM", "2022")."""
    words = [m.group(0) for m in _CAPITALISED.finditer(question)] + _DIGITS.findall(question)
    seen: dict[str, None] = {}
    for w in words:
        w = w.replace("’", "'").split("'")[0]
        if analyze(w):
            seen.setdefault(w, None)
    return list(seen)


def anchor_found(anchor: str, text: str, terms: set[str] | frozenset[str]) -> bool:
    """Whether ``text`` (with analyzed ``terms``) mentions ``anchor``.

    Lenient on purpose: a demonym matches its country ("Malaysian" / "Malaysia", by a shared stem of
    four letters or more) and an acronym its spelled-out name ("IOM" / "International Organization
    for Migration").
    """
    stems = analyze(anchor)
    if all(t in terms for t in stems):
        return True
    if len(stems) == 1 and len(stems[0]) >= 4 and not stems[0][0].isdigit():
        stem = stems[0]
        if any(len(t) >= 4 and (t.startswith(stem) or stem.startswith(t)) for t in terms):
            return True
    if _ACRONYM.match(anchor):
        letters = anchor.rstrip("s").upper()
        for run in _NAME_RUN.findall(text):
            initials = "".join(w[0] for w in run.split() if w[:1].isupper())
            if letters in initials:
                return True
    return False


def missing_anchors(anchors: Sequence[str], text: str) -> float:
    """Share of ``anchors`` that ``text`` does not mention (0 when the question has none)."""
    if not anchors:
        return 0.0
    terms = set(analyze(text))
    return sum(not anchor_found(a, text, terms) for a in anchors) / len(anchors)


@dataclass(frozen=True)
class Candidate:
    """One sentence of a retrieved passage, with its scores."""

    doc_id: str
    start: int
    end: int
    passage_rank: int
    text: str
    prev_start: int = -1  # the sentence before it in the same passage (-1: none)
    next_end: int = -1  # end of the sentence after it in the same passage (-1: none)
    next_start: int = -1
    coverage: float = 0.0
    cosine: float = 0.0
    type_ok: bool = True
    score: float = 0.0


def word_count(text: str) -> int:
    return len(_WORDS.findall(text))


def is_label(sentence: str) -> bool:
    """A short line that does not end like a sentence (a link, a legend entry, a caption name)."""
    words = [w for w in _WORDS.findall(sentence) if any(ch.isalnum() for ch in w)]
    return len(words) < MIN_LABEL_WORDS and not _FINAL.search(sentence.rstrip())


class Answerer:
    """Chooses answer sentences from passages and decides whether to abstain."""

    def __init__(self, index: Index, embedder: Embedder, config: Config) -> None:
        self.index = index
        self.embedder = embedder
        self.config = config
        self.titles = {doc_id: d.title for doc_id, d in index.documents.items()}  # the index does not change
        # Embeddings of candidate sentences, by (doc_id, start, end). Encoding them is most of the time
        # of an answer, and questions keep meeting the same passages; an Answerer lives as long as its
        # index, so an entry can never describe text that changed.
        self._sentence_vectors: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()

    def sentence_vectors(self, candidates: Sequence[Candidate]) -> np.ndarray:
        """Embeddings of the candidates' sentences, encoding only those not seen recently."""
        keys = [(c.doc_id, c.start, c.end) for c in candidates]
        size = self.config.sentence_cache_size
        with self._cache_lock:
            known = {k: self._sentence_vectors[k] for k in keys if k in self._sentence_vectors}
        missing = list(dict.fromkeys(k for k in keys if k not in known))
        if missing:
            text = {(c.doc_id, c.start, c.end): c.text for c in candidates}
            known.update(zip(missing, self.embedder.encode([text[k] for k in missing])))
        if size:
            with self._cache_lock:
                for k in keys:
                    self._sentence_vectors[k] = known[k]
                    self._sentence_vectors.move_to_end(k)
                while len(self._sentence_vectors) > size:
                    self._sentence_vectors.popitem(last=False)
        if not keys:
            return np.zeros((0, self.embedder.dimension), dtype=np.float32)
        return np.stack([known[k] for k in keys])

    # ---------------------------------------------------------------- features
    def term_weights(self, question: str) -> dict[str, float]:
        """IDF weight of each key term of the question (unknown terms weigh the most).

        Terms of a "Besides X, …" / "Apart from X, …" clause name what the answer
        is not, so they do not count towards a sentence's coverage.
        """
        excluded = set()
        clause = _EXCLUSION.search(question)
        if clause:
            excluded = set(question_terms(clause.group(1))) - set(question_terms(question[clause.end():]))
        return {t: self.index.bm25.idf(t) for t in question_terms(question) if t not in excluded}

    @staticmethod
    def coverage(weights: dict[str, float], text: str) -> float:
        """IDF-weighted share of the question's key terms present in ``text``."""
        total = sum(weights.values())
        if total <= 0:
            return 0.0
        present = set(analyze(text))
        return sum(w for t, w in weights.items() if t in present) / total

    @staticmethod
    def missing_key_term(weights: dict[str, float], text: str) -> float:
        """Share of the question's weight carried by its heaviest term absent from ``text``."""
        total = sum(weights.values())
        if total <= 0:
            return 0.0
        present = set(analyze(text))
        missing = [w for t, w in weights.items() if t not in present]
        return max(missing, default=0.0) / total

    def features(self, question: str, passages: Sequence[Passage], best: Candidate,
                 weights: dict[str, float]) -> dict[str, float]:
        doc_text = self.index.documents[best.doc_id].text
        context = doc_text[best.prev_start if best.prev_start >= 0 else best.start:best.end]
        p = next((p for p in passages if p.rank == best.passage_rank), passages[0])
        headed = f"{p.title} {p.section} {context}"
        kind = expected_type(question)
        anchors = question_anchors(question)
        return {
            "best_cosine": best.cosine,
            "best_coverage": self.coverage(weights, headed),
            "missing_key_term": self.missing_key_term(weights, headed),
            # Only types a sentence either holds or not; "reason" and "list" cues are too loose to judge by.
            "type_mismatch": 0.0 if best.type_ok or kind not in _STRICT_TYPES else 1.0,
            "top_passage_cosine": max(p.dense_score for p in passages),
            # Anchors are looked for in the whole passage: the sentence itself may say "it" or "the group".
            "missing_anchor": missing_anchors(anchors, f"{p.title} {p.section} {p.text}"),
        }

    def confidence(self, features: dict[str, float]) -> float:
        """Probability that the passages answer the question (logistic model from the config)."""
        coefficients = dict(self.config.abstain_coefficients)
        z = coefficients.get("bias", 0.0) + sum(coefficients.get(name, 0.0) * features[name] for name in FEATURES)
        return 1.0 / (1.0 + math.exp(-z))

    # ---------------------------------------------------------------- candidates
    def candidates(self, passages: Sequence[Passage]) -> list[Candidate]:
        seen: dict[tuple[str, int, int], Candidate] = {}
        for p in passages[: self.config.answer_passages]:
            text = self.index.documents[p.doc_id].text
            spans = split_sentences(text, p.start, p.end)
            for i, (a, b) in enumerate(spans):
                sentence = text[a:b]
                if word_count(sentence) < MIN_SENTENCE_WORDS or is_label(sentence) or (p.doc_id, a, b) in seen:
                    continue
                prev_start = spans[i - 1][0] if i > 0 else -1
                next_start, next_end = spans[i + 1] if i + 1 < len(spans) else (-1, -1)
                seen[(p.doc_id, a, b)] = Candidate(p.doc_id, a, b, p.rank, sentence, prev_start, next_end, next_start)
        return list(seen.values())

    def score(self, question: str, question_vec: np.ndarray, weights: dict[str, float],
              candidates: list[Candidate], vectors: np.ndarray | None = None) -> list[Candidate]:
        """``candidates`` scored for ``question``, best first (``vectors``: their embeddings, if known)."""
        if not candidates:
            return []
        if vectors is None:
            vectors = self.sentence_vectors(candidates)
        cosines = vectors @ question_vec.astype(np.float32)
        cfg = self.config
        kind = expected_type(question)
        scored = []
        for c, cos in zip(candidates, cosines.tolist()):
            doc = self.index.documents[c.doc_id]
            context = doc.text[c.prev_start if c.prev_start >= 0 else c.start:c.end]
            # A sentence is read under its document's title and section, as passages are embedded: in the
            # Laos article, "Women and girls from families in poverty … are vulnerable" is about Laos.
            headers = f"{self.titles[c.doc_id]} {doc.section_at(c.start)} "
            cov = 0.5 * (self.coverage(weights, headers + c.text) + self.coverage(weights, headers + context))
            ok = type_matches(kind, c.text, question)
            s = (cfg.sentence_weight_dense * cos + cfg.sentence_weight_lexical * cov
                 + cfg.sentence_weight_type * (1.0 if ok and kind else 0.0)
                 + cfg.sentence_weight_passage / c.passage_rank)
            scored.append(replace(c, coverage=cov, cosine=cos, type_ok=ok, score=s))
        scored.sort(key=lambda c: (-c.score, c.passage_rank, c.start))
        return scored

    # ---------------------------------------------------------------- shaping
    def trim(self, doc_text: str, start: int, end: int, weights: dict[str, float], budget: int) -> tuple[int, int]:
        """Shrink a span longer than ``budget`` words to its best run of clauses (still an exact slice)."""
        if word_count(doc_text[start:end]) <= budget:
            return start, end
        pieces: list[tuple[int, int]] = []
        last = start
        for m in _CLAUSE_BREAK.finditer(doc_text, start, end):
            pieces.append((last, m.start()))
            last = m.end()
        pieces.append((last, end))
        best, best_key = None, None
        for i in range(len(pieces)):
            for j in range(i, len(pieces)):
                a, b = pieces[i][0], pieces[j][1]
                words = word_count(doc_text[a:b])
                if words > budget:
                    break
                key = (self.coverage(weights, doc_text[a:b]), -i, words)
                if best_key is None or key > best_key:
                    best, best_key = (a, b), key
        if best is None:  # even one clause is too long: cut at the word budget
            words = list(_WORDS.finditer(doc_text, start, end))
            best = (start, words[budget - 1].end())
        a, b = best
        while b > a and doc_text[b - 1] in ",;:\u2014\u2013 ":
            b -= 1
        return a, b

    def _widen(self, cand: Candidate, ranked: Sequence[Candidate], budget: int) -> tuple[int, int]:
        """Join a neighbour sentence when the two read as one thought and fit the budget.

        A sentence opening with a pronoun or connective ("It is supported by …",
        "So they choose …") takes the sentence before it, which says what "it" is;
        a sentence ending in a colon, or followed by one that continues it, takes the next.
        """
        text = self.index.documents[cand.doc_id].text
        start, end = cand.start, cand.end
        if cand.prev_start >= 0 and _CONTINUATION.match(text[cand.start:cand.end]) \
                and word_count(text[cand.prev_start:end]) <= budget:
            start = cand.prev_start
        if cand.next_start < 0:
            return start, end
        following = text[cand.next_start:cand.next_end]
        reads_on = text[cand.start:cand.end].rstrip().endswith(":") or bool(_CONTINUATION.match(following))
        neighbour = next((c for c in ranked if c.doc_id == cand.doc_id and c.start == cand.next_start), None)
        strong = neighbour is not None and neighbour.score >= self.config.second_sentence_ratio * cand.score
        if word_count(text[start:cand.next_end]) <= budget and (reads_on or strong):
            end = cand.next_end
        return start, end

    def answer(self, question: str, question_vec: np.ndarray, passages: list[Passage]) -> Answer:
        """Answer from ``passages`` or abstain."""
        if not passages:
            return Answer(NO_PASSAGES_MESSAGE, True, [], passages, question, 0.0)
        weights = self.term_weights(question)
        candidates = self.candidates(passages)
        vectors = self.sentence_vectors(candidates)
        ranked = self.score(question, question_vec, weights, candidates, vectors)
        if not ranked:
            return Answer(ABSTAIN_MESSAGE, True, [], passages, question, 0.0)
        best = ranked[0]
        features = self.features(question, passages, best, weights)
        confidence = self.confidence(features)
        if confidence < self.config.abstain_threshold:
            log.info("abstained (confidence %.3f < %.3f): %s", confidence, self.config.abstain_threshold, question)
            return Answer(ABSTAIN_MESSAGE, True, [], passages, question, confidence, features)

        budget = self.config.answer_max_words
        parts: list[tuple[str, frozenset[str] | None]] = [(q, None) for q in question_parts(question)]
        comparison = False
        if not parts:
            parts = list(comparison_parts(question, self.titles))
            comparison = bool(parts)
        parts = parts[: self.config.answer_max_sentences]
        spans = self._part_spans(parts, candidates, vectors, budget) if len(parts) > 1 else []
        if not spans:
            spans = self._spans(best, ranked, weights, budget)
        if not comparison:  # a comparison keeps the order asked ("in Myanmar and in Laos")
            # Reading order within a document, best document first.
            spans.sort(key=lambda s: (s[0].doc_id != best.doc_id, s[0].doc_id, s[1]))
        return self._compose(question, passages, spans, weights, budget, confidence, features)

    def _spans(self, best: Candidate, ranked: Sequence[Candidate], weights: dict[str, float],
               budget: int) -> list[tuple[Candidate, int, int]]:
        """The best sentence (widened), and a second one if it scores nearly as well and adds key terms."""
        spans: list[tuple[Candidate, int, int]] = [(best, *self._widen(best, ranked, budget))]
        covered = set(analyze(self.index.documents[best.doc_id].text[spans[0][1]:spans[0][2]]))
        for cand in ranked[1:]:
            if len(spans) >= self.config.answer_max_sentences:
                break
            if cand.score < self.config.second_sentence_ratio * best.score:
                break
            new_terms = {t for t in weights if t in set(analyze(cand.text))} - covered
            overlaps = any(c.doc_id == cand.doc_id and a < cand.end and cand.start < b for c, a, b in spans)
            if new_terms and not overlaps:
                spans.append((cand, cand.start, cand.end))
                covered |= new_terms
        return spans

    def _part_spans(self, parts: Sequence[tuple[str, frozenset[str] | None]], candidates: list[Candidate],
                    vectors: np.ndarray, budget: int) -> list[tuple[Candidate, int, int]]:
        """One sentence per part of a question (each part scored on its own, from its own documents when it
        names them), no sentence twice."""
        spans: list[tuple[Candidate, int, int]] = []
        share = budget // len(parts)
        part_vectors = self.embedder.encode([sub for sub, _ in parts])
        for (sub, doc_ids), vec in zip(parts, part_vectors):
            rows = [i for i, c in enumerate(candidates) if doc_ids is None or c.doc_id in doc_ids]
            if not rows:  # no retrieved passage from the part's documents: another document cannot answer it
                continue
            ranked = self.score(sub, vec, self.term_weights(sub), [candidates[i] for i in rows], vectors[rows])
            for cand in ranked:
                a, b = self._widen(cand, ranked, share)
                if not any(c.doc_id == cand.doc_id and a < e and s < b for c, s, e in spans):
                    spans.append((cand, a, b))
                    break
        return spans

    def _compose(self, question: str, passages: list[Passage], spans: Sequence[tuple[Candidate, int, int]],
                 weights: dict[str, float], budget: int, confidence: float, features: dict[str, float]) -> Answer:
        """The answer text, each span trimmed to the word budget and cited by its exact quote."""
        parts: list[str] = []
        citations: list[Citation] = []
        for cand, start, end in spans:
            doc = self.index.documents[cand.doc_id]
            remaining = budget - sum(word_count(p) for p in parts)
            if remaining < MIN_SENTENCE_WORDS:
                break
            a, b = self.trim(doc.text, start, end, weights, remaining)
            quote = doc.text[a:b]
            if parts and word_count(quote) < min(self.config.second_quote_min_words, word_count(doc.text[start:end])):
                # What is left of the budget would cut this span to a fragment ("… the lowest tier …") that
                # has lost what it is about, and a fragment read next to another sentence misleads.
                continue
            shown = " ".join(quote.split())  # page breaks inside a quote read as one line
            # Mark where a long sentence was cut to its best clauses.
            parts.append(("\u2026" if a > start else "") + shown + ("\u2026" if b < end else ""))
            citations.append(Citation(len(citations) + 1, doc.doc_id, doc.title, doc.section_at(a), quote, a, b))
        text = " ".join(f"{part} [{c.number}]" for part, c in zip(parts, citations))
        return Answer(text, False, citations, passages, question, confidence, features)
