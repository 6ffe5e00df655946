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
from array import array
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

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


#: The term an empty text is indexed under, so that it keeps its row.
EMPTY_TERM = "\u2205"
#: Postings scored per block when the score matrix is computed (bounds the float64 temporaries to ~100 MB).
_SCORE_BLOCK = 1 << 22


def _count(term_lists: Iterable[Sequence[str]], vocab: dict[str, int]) -> tuple[np.ndarray, ...]:
    """Postings of some texts given as their terms: (term id, row, term frequency) ordered by term id, then
    row (the column order of bm25s's CSC matrix), and each text's length in terms. Rows count from 0; a new
    term takes the next id of ``vocab``, which this extends; an empty text counts as one ``EMPTY_TERM``."""
    flat: array[int] = array("i")
    lengths: array[int] = array("i")
    for terms in term_lists:
        if not terms:
            terms = (EMPTY_TERM,)
        lengths.append(len(terms))
        flat.extend([vocab.setdefault(t, len(vocab)) for t in terms])
    per_text = np.frombuffer(lengths, dtype=np.int32) if len(lengths) else np.zeros(0, np.int32)
    rows = np.repeat(np.arange(len(per_text), dtype=np.int64), per_text)
    # One sort of (term, row) keys gives the distinct postings in CSC order and, by counting, their frequencies.
    keys = np.frombuffer(flat, dtype=np.int32).astype(np.int64) if len(flat) else np.zeros(0, np.int64)
    keys <<= 32
    keys |= rows
    del rows, flat
    keys, tf = np.unique(keys, return_counts=True)
    return ((keys >> 32).astype(np.int32), (keys & 0xFFFFFFFF).astype(np.int32), tf.astype(np.int32),
            per_text.copy())


def _score_matrix(term: np.ndarray, row: np.ndarray, tf: np.ndarray, lengths: np.ndarray, n_terms: int,
                  k1: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """bm25s's CSC score matrix (data, indptr) of postings in CSC order, computed as bm25s computes it."""
    n_docs = len(lengths)
    df = np.bincount(term, minlength=n_terms)
    indptr = np.zeros(n_terms + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])
    # bm25s's "lucene" idf with the same float64 operations (math.log: numpy's vectorised log may differ in
    # the last bit), stored as float32; a term that no row holds any more has idf 0, as bm25s gives it.
    idf = np.array([math.log(1 + (n_docs - d + 0.5) / (d + 0.5)) if d else 0.0 for d in df.tolist()],
                   dtype=np.float32)
    avg_length = np.mean(lengths, dtype=np.float64) if n_docs else np.float64(1.0)
    # tf / (k1 * ((1 - b) + b * length / avg) + tf): per row, the same float64 expression as bm25s's.
    row_k = k1 * ((1 - b) + b * lengths.astype(np.float64) / avg_length)
    data = np.empty(len(term), dtype=np.float32)
    for start in range(0, len(term), _SCORE_BLOCK):
        part = slice(start, start + _SCORE_BLOCK)
        f = tf[part].astype(np.float64)
        data[part] = idf[term[part]].astype(np.float64) * (f / (row_k[row[part]] + f))
    return data, indptr


class BM25Index:
    """BM25 over analyzed chunk texts, in bm25s's plain files (no pickle), updated without a rebuild.

    bm25s keeps one precomputed score per (term, row) in a CSC matrix and scores a query by adding up its
    terms' columns. It builds that matrix in Python loops (about a minute at a million chunks) and cannot
    change it. Here the matrix is computed with numpy from the postings (term, row, term frequency) and the
    length of each row, which are saved beside bm25s's files (``rag_tf.npy``, ``rag_lengths.npy``). Adding
    or removing documents then counts the terms of the new rows only and recomputes the scores from the
    stored frequencies: a change moves N, the average length and its terms' document frequencies, so every
    score moves a little. The scores are bm25s's own ("lucene" BM25); tests/test_lexical.py compares them
    with an index bm25s built.
    """

    PARAMS = "rag_bm25.json"
    IDS = "rag_ids.npy"
    TF = "rag_tf.npy"
    LENGTHS = "rag_lengths.npy"

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
        #: Term frequency of each stored score, in the matrix's order, and terms per row; None in an index
        #: saved before they were kept (it cannot be updated, only rebuilt).
        self.tf: np.ndarray | None = None
        self.lengths: np.ndarray | None = None

    @classmethod
    def build(cls, texts: Sequence[str], k1: float = 1.2, b: float = 0.75,
              ids: np.ndarray | None = None) -> "BM25Index":
        """BM25 over ``texts``; row i is chunk ``ids[i]`` (default: i)."""
        return cls.from_terms([analyze(t) for t in texts], k1, b, ids)

    @classmethod
    def from_terms(cls, terms: Iterable[Sequence[str]], k1: float = 1.2, b: float = 0.75,
                   ids: np.ndarray | None = None) -> "BM25Index":
        """BM25 over already analysed texts (the chunk store keeps each chunk's terms, so a rebuild does not
        analyse every text again); ``terms`` may be a generator. Row i is chunk ``ids[i]`` (default: i)."""
        vocab: dict[str, int] = {}
        term, row, tf, lengths = _count(terms, vocab)
        if ids is None:
            ids = np.arange(len(lengths), dtype=np.int64)
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) != len(lengths) or (len(ids) > 1 and not (np.diff(ids) > 0).all()):
            raise ValueError("BM25 row ids must be one ascending id per text")
        return cls._assemble(k1, b, vocab, term, row, tf, lengths, ids)

    def can_update(self, k1: float, b: float, added_ids: np.ndarray) -> bool:
        """Whether ``updated`` applies: frequencies kept, same parameters, new ids above every present one."""
        return (self.tf is not None and self.lengths is not None and (self.k1, self.b) == (k1, b)
                and (not len(added_ids) or not len(self.ids) or int(added_ids[0]) > int(self.ids[-1])))

    def updated(self, removed_ids: np.ndarray, added_ids: np.ndarray,
                added_terms: Sequence[Sequence[str]]) -> "BM25Index":
        """A new index: this one without the rows of chunks ``removed_ids`` (absent ids are ignored) and with
        rows for ``added_ids`` (ascending, above every present id), whose texts' terms are ``added_terms``.
        Only the added texts are counted; the result equals ``from_terms`` over the rows it holds."""
        added_ids = np.asarray(added_ids, dtype=np.int64)
        if not self.can_update(self.k1, self.b, added_ids):
            raise ValueError("this BM25 index cannot be updated (no term frequencies, or new ids not above "
                             "the present ones); build it again with from_terms")
        if len(added_ids) != len(added_terms) or (len(added_ids) > 1 and not (np.diff(added_ids) > 0).all()):
            raise ValueError("added BM25 rows need one ascending id per text")
        assert self.tf is not None and self.lengths is not None
        gone = np.isin(self.ids, np.asarray(removed_ids, dtype=np.int64))
        if not gone.any() and not len(added_ids):
            return self  # no row changed (only a title or a path, say): nothing to recompute
        n_terms = len(self._df)
        # The empty token bm25s adds past the last column is not a term of the matrix.
        vocab = {t: i for t, i in self._vocab.items() if i < n_terms}
        indptr = np.asarray(self._bm25.scores["indptr"])
        term = np.repeat(np.arange(n_terms, dtype=np.int32), np.diff(indptr))
        row = np.asarray(self._bm25.scores["indices"], dtype=np.int32)
        tf = np.asarray(self.tf, dtype=np.int32)
        lengths, ids = np.asarray(self.lengths, dtype=np.int32), self.ids
        if gone.any():
            kept = ~gone
            keep = kept[row]
            term, tf = term[keep], tf[keep]
            row = (np.cumsum(kept, dtype=np.int64) - 1)[row[keep]].astype(np.int32)
            lengths, ids = lengths[kept], ids[kept]
        if len(added_ids):
            new_term, new_row, new_tf, new_lengths = _count(added_terms, vocab)
            new_row += len(lengths)
            # New rows come after every kept row: each goes at the end of its term's column, in row order.
            at = np.searchsorted(term, new_term, side="right")
            term, row, tf = np.insert(term, at, new_term), np.insert(row, at, new_row), np.insert(tf, at, new_tf)
            lengths, ids = np.concatenate([lengths, new_lengths]), np.concatenate([ids, added_ids])
        return self._assemble(self.k1, self.b, vocab, term, row, tf, lengths, ids)

    @classmethod
    def _assemble(cls, k1: float, b: float, vocab: dict[str, int], term: np.ndarray, row: np.ndarray,
                  tf: np.ndarray, lengths: np.ndarray, ids: np.ndarray) -> "BM25Index":
        """The index of these postings (CSC order): bm25s's score matrix computed as bm25s computes it."""
        index = cls(k1, b)
        n_docs, n_terms = len(lengths), len(vocab)
        data, indptr = _score_matrix(term, row, tf, lengths, n_terms, k1, b)
        vocab_dict = dict(vocab)
        if "" not in vocab_dict:
            vocab_dict[""] = n_terms  # as bm25s: an empty token after the last term
        index._bm25.scores = {"data": data, "indices": np.asarray(row, dtype=np.int32), "indptr": indptr,
                              "num_docs": n_docs}
        index._bm25.vocab_dict = vocab_dict
        index._bm25.unique_token_ids_set = set(vocab_dict.values())
        index._bm25.nonoccurrence_array = None
        index._after_load(n_docs)
        index.ids = np.asarray(ids, dtype=np.int64)
        index.tf = tf.astype(np.uint16 if not len(tf) or int(tf.max()) <= np.iinfo(np.uint16).max else np.uint32)
        index.lengths = np.asarray(lengths, dtype=np.int32)
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

    def check(self) -> None:
        """Raise ValueError unless the score matrix, the term frequencies and the row lengths agree (run on
        files that changed since they were written, though their hashes match, before they are trusted)."""
        if self.tf is None or self.lengths is None:
            return
        indptr = np.asarray(self._bm25.scores["indptr"])
        row = np.asarray(self._bm25.scores["indices"])
        tf, lengths = np.asarray(self.tf), np.asarray(self.lengths)
        n_terms = len(indptr) - 1
        term_ids = sorted(i for t, i in self._vocab.items() if t or i < n_terms)
        if term_ids != list(range(n_terms)):
            raise ValueError("the BM25 vocabulary does not name each column of its matrix once")
        if indptr[0] != 0 or indptr[-1] != len(row) or (np.diff(indptr) < 0).any():
            raise ValueError("the BM25 matrix's column pointers are not those of its rows")
        if len(row) and (int(row.min()) < 0 or int(row.max()) >= self.n_docs):
            raise ValueError("the BM25 matrix names rows it does not have")
        if (tf == 0).any() or not np.array_equal(np.bincount(row, weights=tf, minlength=self.n_docs), lengths):
            raise ValueError("the BM25 term frequencies do not add up to the row lengths")
        term = np.repeat(np.arange(n_terms, dtype=np.int32), np.diff(indptr))
        data, _ = _score_matrix(term, row, tf, lengths, n_terms, self.k1, self.b)
        if not np.array_equal(data, np.asarray(self._bm25.scores["data"])):
            raise ValueError("the BM25 scores are not those of its term frequencies")

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._bm25.save(str(folder), show_progress=False)
        np.save(folder / self.IDS, self.ids, allow_pickle=False)
        if self.tf is not None and self.lengths is not None:
            np.save(folder / self.TF, self.tf, allow_pickle=False)
            np.save(folder / self.LENGTHS, self.lengths, allow_pickle=False)
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
        if (folder / cls.TF).is_file() or (folder / cls.LENGTHS).is_file():
            mode = "r" if mmap else None
            tf = np.load(folder / cls.TF, mmap_mode=mode, allow_pickle=False)
            lengths = np.load(folder / cls.LENGTHS, mmap_mode=mode, allow_pickle=False)
            postings = np.shape(index._bm25.scores["data"])
            if tf.dtype.kind != "u" or tf.shape != postings:
                raise ValueError(f"{folder / cls.TF} is not one term frequency per BM25 score")
            if lengths.dtype != np.int32 or lengths.shape != (index.n_docs,):
                raise ValueError(f"{folder / cls.LENGTHS} is not one length per BM25 row")
            index.tf, index.lengths = tf, lengths
        return index
