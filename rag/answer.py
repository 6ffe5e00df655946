"""Stage 6: a short extractive answer whose every sentence cites an exact quote.

No reader or NLI model is available offline, so the answer is made only of
sentences (or clauses of long sentences) copied from the retrieved passages.
Candidate sentences are scored by

    w_dense * cosine(question, sentence)
  + w_lexical * IDF-weighted share of the question's key terms the sentence covers
  + w_passage * 1 / rank of the passage it came from

and the best one or two form the answer. Before answering, the evidence is
scored (see ``evidence_confidence``); below the threshold the assistant
abstains and still returns the closest passages.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Sequence

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


@dataclass(frozen=True)
class Candidate:
    doc_id: str
    start: int
    end: int
    passage_rank: int
    text: str
    coverage: float = 0.0
    cosine: float = 0.0
    score: float = 0.0


def word_count(text: str) -> int:
    return len(_WORDS.findall(text))


class Answerer:
    """Chooses answer sentences from passages and decides whether to abstain."""

    def __init__(self, index: Index, embedder: Embedder, config: Config) -> None:
        self.index = index
        self.embedder = embedder
        self.config = config

    # ---------------------------------------------------------------- features
    def term_weights(self, question: str) -> dict[str, float]:
        """IDF weight of each key term of the question (unknown terms weigh the most)."""
        return {t: self.index.bm25.idf(t) for t in question_terms(question)}

    @staticmethod
    def coverage(weights: dict[str, float], text: str) -> float:
        """IDF-weighted share of the question's key terms present in ``text``."""
        total = sum(weights.values())
        if total <= 0:
            return 0.0
        present = set(analyze(text))
        return sum(w for t, w in weights.items() if t in present) / total

    def evidence_confidence(self, passages: Sequence[Passage], best: Candidate | None,
                            weights: dict[str, float]) -> float:
        """How well the passages support an answer, in [0, 1]."""
        if not passages or best is None:
            return 0.0
        top_cos = max(p.dense_score for p in passages)
        passage_cov = max(self.coverage(weights, p.text) for p in passages[: self.config.answer_passages])
        # Headers count for coverage too: "Laos" in the title answers "in Laos".
        header_cov = max(self.coverage(weights, f"{p.title} {p.section} {p.text}")
                         for p in passages[: self.config.answer_passages])
        z = -4.0 + 4.0 * top_cos + 2.5 * max(passage_cov, header_cov) + 1.5 * best.coverage + 2.0 * best.cosine
        return 1.0 / (1.0 + math.exp(-z))

    # ---------------------------------------------------------------- candidates
    def candidates(self, passages: Sequence[Passage]) -> list[Candidate]:
        seen: dict[tuple[str, int, int], Candidate] = {}
        for p in passages[: self.config.answer_passages]:
            text = self.index.documents[p.doc_id].text
            for a, b in split_sentences(text, p.start, p.end):
                sentence = text[a:b]
                if word_count(sentence) < MIN_SENTENCE_WORDS:
                    continue
                key = (p.doc_id, a, b)
                if key not in seen:
                    seen[key] = Candidate(p.doc_id, a, b, p.rank, sentence)
        return list(seen.values())

    def score(self, question_vec: np.ndarray, weights: dict[str, float],
              candidates: list[Candidate]) -> list[Candidate]:
        if not candidates:
            return []
        vectors = self.embedder.encode([c.text for c in candidates])
        cosines = vectors @ question_vec.astype(np.float32)
        cfg = self.config
        scored = []
        for c, cos in zip(candidates, cosines.tolist()):
            cov = self.coverage(weights, c.text)
            s = cfg.sentence_weight_dense * cos + cfg.sentence_weight_lexical * cov \
                + cfg.sentence_weight_passage / c.passage_rank
            scored.append(Candidate(c.doc_id, c.start, c.end, c.passage_rank, c.text, cov, cos, s))
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

    def answer(self, question: str, question_vec: np.ndarray, passages: list[Passage]) -> Answer:
        """Answer from ``passages`` or abstain."""
        if not passages:
            return Answer(NO_PASSAGES_MESSAGE, True, [], passages, question, 0.0)
        weights = self.term_weights(question)
        ranked = self.score(question_vec, weights, self.candidates(passages))
        best = ranked[0] if ranked else None
        confidence = self.evidence_confidence(passages, best, weights)
        if best is None or confidence < self.config.abstain_threshold:
            log.info("abstained (confidence %.3f < %.3f): %s", confidence, self.config.abstain_threshold, question)
            return Answer(ABSTAIN_MESSAGE, True, [], passages, question, confidence)

        chosen = [best]
        covered = set(t for t in weights if t in set(analyze(best.text)))
        for cand in ranked[1:]:
            if len(chosen) >= self.config.answer_max_sentences:
                break
            if cand.score < self.config.second_sentence_ratio * best.score:
                break
            new_terms = {t for t in weights if t in set(analyze(cand.text))} - covered
            overlaps = any(c.doc_id == cand.doc_id and c.start < cand.end and cand.start < c.end for c in chosen)
            if new_terms and not overlaps:
                chosen.append(cand)
                covered |= new_terms

        budget = self.config.answer_max_words
        parts: list[str] = []
        citations: list[Citation] = []
        # Present sentences in reading order within a document, best document first.
        chosen.sort(key=lambda c: (c.doc_id != best.doc_id, c.doc_id, c.start))
        for number, cand in enumerate(chosen, start=1):
            doc = self.index.documents[cand.doc_id]
            remaining = budget - sum(word_count(p) for p in parts)
            if remaining < MIN_SENTENCE_WORDS:
                break
            a, b = self.trim(doc.text, cand.start, cand.end, weights, remaining)
            quote = doc.text[a:b]
            shown = " ".join(quote.split())  # page breaks inside a quote read as one line
            # Mark where a long sentence was cut to its best clauses.
            parts.append(("\u2026" if a > cand.start else "") + shown + ("\u2026" if b < cand.end else ""))
            citations.append(Citation(number, doc.doc_id, doc.title, doc.section_at(a), quote, a, b))
        text = " ".join(f"{part} [{c.number}]" for part, c in zip(parts, citations))
        return Answer(text, False, citations, passages, question, confidence)
