"""Stage 6b: a short extractive answer whose every sentence cites an exact quote.

The reader (``rag.reader``) has read the top passages against the question and
scored every sentence; this stage turns those scores into an answer:

* **Abstention.** A small logistic model over the evidence (``FEATURES``: the
  best sentence's reader logit, the span head's margin over "no answer", how
  close the best passage is) estimates whether the passages answer the question
  at all; below ``abstain_threshold`` the assistant says so and still returns
  the passages.
* **Sentences.** The best-scored sentence is the answer (the reader's logit plus a prior for the rank of
  its passage, which the reranker decided from the reader and the first stage together). A sentence that opens
  with a pronoun or connective ("They …", "This …") takes the sentence before
  it, which says what it refers to; a second sentence is added when the reader
  scores it nearly as high and it is elsewhere.
* **Shape.** A span longer than the word budget is cut to its clauses around
  the answer the span head marks, and every part is cited with its exact
  document offsets; the marked answer itself is carried on the citation
  (``answer_start``/``answer_end``) so the UI can highlight it.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Sequence

from .config import Config
from .index import Index
from .lexical import analyze
from .types import Answer, Citation, Passage, Reading

log = logging.getLogger(__name__)

ABSTAIN_MESSAGE = "The documents do not answer this question."
NO_PASSAGES_MESSAGE = "The documents do not answer this question (no passage matched)."

_CLAUSE_BREAK = re.compile(r"(?<=[,;:\u2014\u2013])\s+|\s+(?=[\u2014\u2013]\s)")
_WORDS = re.compile(r"\S+")
#: Sentences shorter than this many words are not answers on their own (headings, attributions).
MIN_SENTENCE_WORDS = 4
#: A line without sentence-final punctuation and shorter than this is a label (a "See also" link, a map
#: legend, an attribution like "-24-year-old male, Laukkaing Township"), not an answer of its own.
MIN_LABEL_WORDS = 8
_FINAL = re.compile(r"[.!?:;…][\s\"'”’)\]¹²³⁰-⁹\d]*$")
# Words that open a sentence continuing the previous one.
_CONTINUATION = re.compile(r"^(Instead|However|But|This|These|That|Those|They|It|Its|Their|Such|So|Thus|Therefore|"
                           r"As a result|Because|Consequently|Then|He|She|His|Her)\b")
#: Two sentences sharing this share of their words (Jaccard) say the same thing: the second is not quoted.
REPEAT_OVERLAP = 0.6
#: Span-head margins are clipped to this range before they enter the abstention model.
MARGIN_CLIP = 20.0

#: Evidence features, in the order the abstention model's coefficients are given.
FEATURES = ("reader_logit", "span_margin", "best_span_margin", "top_passage_cosine")


def _clip(margin: float) -> float:
    return max(-MARGIN_CLIP, min(MARGIN_CLIP, margin)) if math.isfinite(margin) else -MARGIN_CLIP


def word_count(text: str) -> int:
    return len(_WORDS.findall(text))


def is_label(sentence: str) -> bool:
    """A short line that does not end like a sentence (a link, a legend entry, a caption name)."""
    words = [w for w in _WORDS.findall(sentence) if any(ch.isalnum() for ch in w)]
    return len(words) < MIN_LABEL_WORDS and not _FINAL.search(sentence.rstrip())


@dataclass(frozen=True)
class Candidate:
    """One sentence of a read passage, with the reader's logit for it."""

    doc_id: str
    start: int
    end: int
    passage_rank: int
    #: The reader's logit for the sentence.
    logit: float
    #: What sentences are ranked by: the logit plus the prior of its passage's rank (``Config.sentence_rank_prior``).
    score: float
    prev_start: int = -1  # the sentence before it in the same passage (-1: none)
    answer_start: int = -1  # the span head's answer, when it lies in this sentence
    answer_end: int = -1


class Answerer:
    """Chooses answer sentences from the reader's scores and decides whether to abstain."""

    def __init__(self, index: Index, config: Config) -> None:
        self.index = index
        self.config = config

    # ---------------------------------------------------------------- evidence
    def candidates(self, readings: Sequence[Reading]) -> list[Candidate]:
        """Every answer-like sentence of the read passages, best first."""
        out: dict[tuple[str, int, int], Candidate] = {}
        prior = self.config.sentence_rank_prior
        for reading in readings:
            p = reading.passage
            text = self.index.documents[p.doc_id].text
            prev = -1
            for s in reading.sentences:
                sentence = text[s.start:s.end]
                key = (p.doc_id, s.start, s.end)
                if word_count(sentence) >= MIN_SENTENCE_WORDS and not is_label(sentence) and key not in out:
                    inside = s.start <= reading.span_start and reading.span_end <= s.end
                    out[key] = Candidate(p.doc_id, s.start, s.end, p.rank, s.logit, s.logit + prior / p.rank, prev,
                                         reading.span_start if inside else -1, reading.span_end if inside else -1)
                prev = s.start
        return sorted(out.values(), key=lambda c: (-c.score, c.passage_rank, c.start))

    def features(self, passages: Sequence[Passage], readings: Sequence[Reading], best: Candidate) -> dict[str, float]:
        reading = next((r for r in readings if r.passage.doc_id == best.doc_id
                        and r.passage.start <= best.start < r.passage.end), readings[0])
        return {"reader_logit": best.logit,
                "span_margin": _clip(reading.span_margin),
                "best_span_margin": max(_clip(r.span_margin) for r in readings),
                "top_passage_cosine": max(p.dense_score for p in passages)}

    def confidence(self, features: dict[str, float]) -> float:
        """Probability that the passages answer the question (logistic model from the config)."""
        coefficients = dict(self.config.abstain_coefficients)
        z = coefficients.get("bias", 0.0) + sum(coefficients.get(name, 0.0) * features[name] for name in FEATURES)
        return 1.0 / (1.0 + math.exp(-z))

    # ---------------------------------------------------------------- answer
    def answer(self, question: str, passages: list[Passage], readings: Sequence[Reading]) -> Answer:
        """Answer from the read ``passages`` or abstain."""
        if not passages:
            return Answer(NO_PASSAGES_MESSAGE, True, [], passages, question, 0.0)
        ranked = self.candidates(readings)
        if not ranked:
            return Answer(ABSTAIN_MESSAGE, True, [], passages, question, 0.0)
        best = ranked[0]
        features = self.features(passages, readings, best)
        confidence = self.confidence(features)
        if confidence < self.config.abstain_threshold:
            log.info("abstained (confidence %.3f < %.3f): %s", confidence, self.config.abstain_threshold, question)
            return Answer(ABSTAIN_MESSAGE, True, [], passages, question, confidence, features)
        spans = self._spans(best, ranked)
        # Reading order within a document, best document first.
        spans.sort(key=lambda s: (s[0].doc_id != best.doc_id, s[0].doc_id, s[1]))
        return self._compose(question, passages, spans, confidence, features)

    def _widen(self, cand: Candidate) -> tuple[int, int]:
        """A sentence opening with a pronoun or connective ("It is supported by …", "So they choose …")
        takes the sentence before it, which says what "it" is, when both fit the budget."""
        text = self.index.documents[cand.doc_id].text
        if cand.prev_start >= 0 and _CONTINUATION.match(text[cand.start:cand.end]) \
                and word_count(text[cand.prev_start:cand.end]) <= self.config.answer_max_words:
            return cand.prev_start, cand.end
        return cand.start, cand.end

    def _spans(self, best: Candidate, ranked: Sequence[Candidate]) -> list[tuple[Candidate, int, int]]:
        """The best sentence (widened), and more that the reader scores nearly as high and that say
        something else (a report's summary often repeats a sentence of its body almost word for word)."""
        spans: list[tuple[Candidate, int, int]] = [(best, *self._widen(best))]
        floor = best.score - self.config.second_sentence_margin
        for cand in ranked[1:]:
            if len(spans) >= self.config.answer_max_sentences or cand.score < floor:
                break
            a, b = self._widen(cand)
            if any(c.doc_id == cand.doc_id and a < e and s < b for c, s, e in spans):
                continue
            if any(self._repeats(cand, c) for c, _s, _e in spans):
                continue
            spans.append((cand, a, b))
        return spans

    def _repeats(self, a: Candidate, b: Candidate) -> bool:
        """Whether two sentences share most of their words (stemmed, stop words left out)."""
        terms_a = set(analyze(self.index.documents[a.doc_id].text[a.start:a.end]))
        terms_b = set(analyze(self.index.documents[b.doc_id].text[b.start:b.end]))
        union = terms_a | terms_b
        return bool(union) and len(terms_a & terms_b) / len(union) >= REPEAT_OVERLAP

    def trim(self, doc_text: str, start: int, end: int, budget: int, focus: tuple[int, int] = (-1, -1)
             ) -> tuple[int, int]:
        """Shrink a span longer than ``budget`` words to a run of its clauses (still an exact slice).

        The run holds ``focus`` (the marked answer) when there is one, and starts as early as it can.
        """
        if word_count(doc_text[start:end]) <= budget:
            return start, end
        pieces: list[tuple[int, int]] = []
        last = start
        for m in _CLAUSE_BREAK.finditer(doc_text, start, end):
            pieces.append((last, m.start()))
            last = m.end()
        pieces.append((last, end))
        best = None
        for i in range(len(pieces)):
            for j in range(i, len(pieces)):
                a, b = pieces[i][0], pieces[j][1]
                if word_count(doc_text[a:b]) > budget:
                    break
                if focus[0] < 0:  # nothing marked: the opening clauses, as many as fit
                    key = (True, -i, b - a)
                else:  # the longest run around the answer, the earliest of equals
                    holds = a <= focus[0] and focus[1] <= b
                    key = (holds, b - a if holds else 0, -i)
                if best is None or key > best[0]:
                    best = (key, (a, b))
        if best is None or not best[0][0]:  # no run of whole clauses fits around the answer: cut at words
            words = list(_WORDS.finditer(doc_text, start, end))
            first = 0
            if focus[0] >= 0:
                hit = next((i for i, w in enumerate(words) if w.end() > focus[0]), 0)
                first = max(0, min(hit - budget // 3, len(words) - budget))
            a, b = words[first].start(), words[min(first + budget, len(words)) - 1].end()
        else:
            a, b = best[1]
        while b > a and doc_text[b - 1] in ",;:\u2014\u2013 ":
            b -= 1
        return a, b

    def _compose(self, question: str, passages: list[Passage], spans: Sequence[tuple[Candidate, int, int]],
                 confidence: float, features: dict[str, float]) -> Answer:
        """The answer text, each span trimmed to the word budget and cited by its exact quote."""
        budget = self.config.answer_max_words
        parts: list[str] = []
        citations: list[Citation] = []
        for cand, start, end in spans:
            doc = self.index.documents[cand.doc_id]
            remaining = budget - sum(word_count(p) for p in parts)
            if remaining < MIN_SENTENCE_WORDS:
                break
            a, b = self.trim(doc.text, start, end, remaining, (cand.answer_start, cand.answer_end))
            quote = doc.text[a:b]
            if parts and word_count(quote) < min(self.config.second_quote_min_words, word_count(doc.text[start:end])):
                # What is left of the budget would cut this span to a fragment ("… the lowest tier …") that
                # has lost what it is about, and a fragment read next to another sentence misleads.
                continue
            shown = " ".join(quote.split())  # page breaks inside a quote read as one line
            # Mark where a long sentence was cut to its best clauses.
            parts.append(("\u2026" if a > start else "") + shown + ("\u2026" if b < end else ""))
            inside = a <= cand.answer_start and cand.answer_end <= b
            citations.append(Citation(len(citations) + 1, doc.doc_id, doc.title, doc.section_at(a), quote, a, b,
                                      cand.answer_start if inside else -1, cand.answer_end if inside else -1,
                                      doc.page_at(a)))
        text = " ".join(f"{part} [{c.number}]" for part, c in zip(parts, citations))
        return Answer(text, False, citations, passages, question, confidence, features)
