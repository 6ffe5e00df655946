"""Lexical side of the index: one analyzer for every word match, and BM25 via ``bm25s``.

The same analyzer (lower-case, English stop words, Snowball stemming, numbers
kept whole) is used to build the BM25 index, to query it, and to measure how
many of a question's key terms a sentence covers when answering.
"""

from __future__ import annotations

import json
import logging
import math
import re
import unicodedata
import threading
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

_WORD = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+(?:['’][^\W\d_]+)?")
# Words that say what kind of answer is wanted, not what it is about.
_QUESTION_WORDS = {
    "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "many", "much",
    "according", "describe", "described", "mention", "mentioned", "say", "said", "says", "name", "named",
    "give", "list", "kind", "kinds", "type", "types", "does", "did", "do", "document", "documents",
    "report", "article", "text", "tell", "explain", "besides", "apart", "aside", "addition",
    # common function words beyond BM25's short stop list
    "were", "been", "being", "has", "have", "had", "having", "can", "could", "would", "should", "may",
    "might", "must", "shall", "its", "his", "her", "hers", "them", "those", "than", "from", "about",
    "after", "before", "over", "under", "between", "during", "while", "also", "any", "some", "all",
    "each", "other", "more", "most", "such", "only", "own", "same", "so", "too", "very", "just",
    "we", "you", "he", "she", "i", "me", "my", "our", "your", "us", "him", "one", "ones",
}


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


_local = threading.local()


def _stemmer():
    """This thread's stemmer: PyStemmer objects are not thread-safe, and asks are served from several threads."""
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        import Stemmer

        stemmer = _local.stemmer = Stemmer.Stemmer("english")
    return stemmer


# British and American spellings meet before stemming ("criticised"/"criticized", "labour"/"labor",
# "centre"/"center"); the rules only need to be applied the same way to questions and documents.
_SPELLING = [
    (re.compile(r"(?<=\w{3})is(e|ed|es|ing|ation|ations)$"), r"iz\1"),
    (re.compile(r"(?<=\w{3})our(s|ed|ing|ite|ites|able)?$"), r"or\1"),
    (re.compile(r"(?<=\w{3})tre(s)?$"), r"ter\1"),
    (re.compile(r"^programme(s)?$"), r"program\1"),
]


def _normalise(word: str) -> str:
    word = unicodedata.normalize("NFKC", word).lower().replace("’", "'")
    if word[:1].isdigit():
        return word.replace(",", "")
    word = word.split("'")[0]  # possessives: "myanmar's" -> "myanmar"
    if len(word) >= 6:
        for pattern, replacement in _SPELLING:
            word = pattern.sub(replacement, word)
    return word


def analyze(text: str) -> list[str]:
    """Stemmed content terms of ``text`` (stop words removed), in order."""
    stop = _stopwords()
    words = [_normalise(m.group(0)) for m in _WORD.finditer(text)]
    words = [w for w in words if w and w not in stop]
    return _stemmer().stemWords(words)


def question_terms(question: str) -> list[str]:
    """Key terms of a question: ``analyze`` minus words that only shape the question."""
    stop = _stopwords()
    words = [_normalise(m.group(0)) for m in _WORD.finditer(question)]
    words = [w for w in words if w and w not in stop and w not in _QUESTION_WORDS]
    seen: dict[str, None] = {}
    for term in _stemmer().stemWords(words):
        seen.setdefault(term, None)
    return list(seen)


class BM25Index:
    """BM25 over analyzed chunk texts (``bm25s``), saved as plain files (no pickle)."""

    PARAMS = "rag_bm25.json"

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        import bm25s

        # bm25s sets its own logger to DEBUG on import; its messages are not ours to show.
        logging.getLogger("bm25s").setLevel(logging.WARNING)

        self.k1, self.b = k1, b
        self._bm25 = bm25s.BM25(k1=k1, b=b)
        self._vocab: dict[str, int] = {}
        self._df = np.zeros(0, dtype=np.int64)
        self.n_docs = 0

    @classmethod
    def build(cls, texts: Sequence[str], k1: float = 1.2, b: float = 0.75) -> "BM25Index":
        index = cls(k1, b)
        tokens = [analyze(t) or ["\u2205"] for t in texts]  # an empty text still takes its row
        index._bm25.index(tokens, show_progress=False)
        index._after_load(len(texts))
        return index

    def _after_load(self, n_docs: int) -> None:
        self.n_docs = n_docs
        self._vocab = dict(self._bm25.vocab_dict)
        indptr = np.asarray(self._bm25.scores["indptr"])
        self._df = np.diff(indptr)  # column (term) pointers: document frequency per term

    def idf(self, term: str) -> float:
        """Smoothed inverse document frequency; unseen terms get the maximum."""
        tid = self._vocab.get(term)
        df = 0 if tid is None or tid >= len(self._df) else int(self._df[tid])
        return math.log(1.0 + (self.n_docs - df + 0.5) / (df + 0.5))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every row for ``query`` (zeros when no term is known)."""
        terms = [t for t in analyze(query) if t in self._vocab]
        if not terms or self.n_docs == 0:
            return np.zeros(self.n_docs, dtype=np.float32)
        return np.asarray(self._bm25.get_scores(terms), dtype=np.float32)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._bm25.save(str(folder))
        (folder / self.PARAMS).write_text(json.dumps({"k1": self.k1, "b": self.b, "n_docs": self.n_docs}))

    @classmethod
    def load(cls, folder: Path) -> "BM25Index":
        import bm25s

        params = json.loads((folder / cls.PARAMS).read_text())
        index = cls(params["k1"], params["b"])
        index._bm25 = bm25s.BM25.load(str(folder), allow_pickle=False, show_progress=False)
        index._after_load(int(params["n_docs"]))
        return index
