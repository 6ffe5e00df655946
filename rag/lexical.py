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


#: Distinct words whose analysis is remembered: a corpus repeats a vocabulary of some ten thousand words, so
#: each is normalised and stemmed once instead of at every occurrence (all three caches bounded, together
#: about 40 MB when full; 10,000 SciFact/SQuAD documents hold 186,000 distinct pieces).
_WORD_CACHE = 1 << 17


@lru_cache(maxsize=_WORD_CACHE >> 1)
def _normalise(word: str) -> str:
    word = unicodedata.normalize("NFKC", word).lower().replace("’", "'")
    if word[:1].isdigit():
        return word.replace(",", "")
    word = word.split("'")[0]  # possessives: "myanmar's" -> "myanmar"
    if len(word) >= 6:
        for pattern, replacement in _SPELLING:
            word = pattern.sub(replacement, word)
    return word


@lru_cache(maxsize=_WORD_CACHE >> 1)
def _term(word: str) -> str | None:
    """The stemmed term of one matched word, or None for a stop word (or one that normalises to nothing).

    Stemming is per word (Snowball looks at nothing else), so caching it is exact; the cache is shared by
    threads, each stemming with its own stemmer."""
    normal = _normalise(word)
    if not normal or normal in _stopwords():
        return None
    return _stemmer().stemWord(normal)


def _terms_of(piece: str) -> tuple[str, ...]:
    # findall gives the matched strings without building a match object per word (the pattern has no groups).
    return tuple(t for w in _WORD.findall(piece) if (t := _term(w)) is not None)


#: Whitespace-separated pieces ("Myanmar's,", "(2023)") repeat even more than words: their terms are
#: remembered too, for pieces up to this long (a longer one is analysed each time, so no huge key is kept).
_PIECE_CHARS = 48
_cached_terms_of = lru_cache(maxsize=_WORD_CACHE)(_terms_of)


def analyze(text: str) -> list[str]:
    """Stemmed content terms of ``text`` (stop words removed), in order."""
    # No word of _WORD holds whitespace (no character is both str.isspace and \w, '.', ',' or an apostrophe),
    # so the words of the whitespace-separated pieces, in order, are exactly the words of the text.
    terms: list[str] = []
    for piece in text.split():
        terms.extend(_cached_terms_of(piece) if len(piece) <= _PIECE_CHARS else _terms_of(piece))
    return terms


def question_terms(question: str) -> list[str]:
    """Key terms of a question: ``analyze`` minus words that only shape the question."""
    seen: dict[str, None] = {}
    for word in _WORD.findall(question):
        term = _term(word)
        if term is not None and _normalise(word) not in _QUESTION_WORDS:
            seen.setdefault(term, None)
    return list(seen)


class BM25Index:
    """BM25 over analyzed chunk texts (``bm25s``), saved as plain files (no pickle)."""

    PARAMS = "rag_bm25.json"
    IDS = "rag_ids.npy"

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        import bm25s

        # bm25s sets its own logger to DEBUG on import; its messages are not ours to show.
        logging.getLogger("bm25s").setLevel(logging.WARNING)

        self.k1, self.b = k1, b
        self._bm25 = bm25s.BM25(k1=k1, b=b)
        self._vocab: dict[str, int] = {}
        self._df = np.zeros(0, dtype=np.int64)
        self.n_docs = 0
        #: Row -> chunk id, ascending (rows are in chunk-id order).
        self.ids = np.zeros(0, dtype=np.int64)

    @classmethod
    def build(cls, texts: Sequence[str], k1: float = 1.2, b: float = 0.75,
              ids: np.ndarray | None = None) -> "BM25Index":
        """BM25 over ``texts``; row i is chunk ``ids[i]`` (default: i)."""
        return cls.from_terms([analyze(t) for t in texts], k1, b, ids)

    @classmethod
    def from_terms(cls, terms: Sequence[Sequence[str]], k1: float = 1.2, b: float = 0.75,
                   ids: np.ndarray | None = None) -> "BM25Index":
        """BM25 over already analysed texts (the chunk store keeps each chunk's terms, so a rebuild
        after adding or removing a document does not analyse every text again)."""
        index = cls(k1, b)
        # Lists are used as they are (a copy per chunk costs ~0.5 GB at a million); an empty text keeps its row.
        tokens = [t if isinstance(t, list) and t else (list(t) or ["\u2205"]) for t in terms]
        index._bm25.index(tokens, show_progress=False)
        index._after_load(len(tokens))
        if ids is not None:
            ids = np.asarray(ids, dtype=np.int64)
            if len(ids) != len(tokens) or (len(ids) > 1 and not (np.diff(ids) > 0).all()):
                raise ValueError("BM25 row ids must be one ascending id per text")
            index.ids = ids
        return index

    def _after_load(self, n_docs: int) -> None:
        self.n_docs = n_docs
        self.ids = np.arange(n_docs, dtype=np.int64)
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

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Rows of chunk ``ids`` (each must be indexed)."""
        rows = np.searchsorted(self.ids, ids)
        rows = np.minimum(rows, max(len(self.ids) - 1, 0))
        if len(ids) and (not len(self.ids) or (self.ids[rows] != ids).any()):
            raise KeyError("chunk ids missing from the BM25 index")
        return rows

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._bm25.save(str(folder))
        np.save(folder / self.IDS, self.ids, allow_pickle=False)
        (folder / self.PARAMS).write_text(json.dumps({"k1": self.k1, "b": self.b, "n_docs": self.n_docs}))

    @classmethod
    def load(cls, folder: Path, mmap: bool = False) -> "BM25Index":
        """``mmap``: map the score matrix instead of reading it (a large index is paged in as queried)."""
        import bm25s

        params = json.loads((folder / cls.PARAMS).read_text())
        index = cls(params["k1"], params["b"])
        index._bm25 = bm25s.BM25.load(str(folder), allow_pickle=False, show_progress=False, mmap=mmap)
        index._after_load(int(params["n_docs"]))
        if (folder / cls.IDS).is_file():
            ids = np.load(folder / cls.IDS, allow_pickle=False)
            if ids.dtype != np.int64 or ids.shape != (index.n_docs,) or (len(ids) > 1 and not (np.diff(ids) > 0).all()):
                raise ValueError(f"{folder / cls.IDS} is not one ascending chunk id per BM25 row")
            index.ids = ids
        return index
