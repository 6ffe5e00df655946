"""The lexical stage (rag.lexical): BM25 scores are bm25s's own, and an update equals a build from scratch."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from rag.lexical import EMPTY_TERM, BM25Index, analyze

QUESTIONS = [
    "How many people are held in scam compounds?",
    "Which charity rescues sex trafficking survivors in Myanmar?",
    "forced labour casinos Laos border",
    "What share of victims in Malaysia came from abroad?",
    "debt bondage passports confiscated",
]


@pytest.fixture(scope="module")
def paragraphs(seed_docs) -> list[str]:
    """Real text: the seeds' paragraphs, one row each (a few hundred rows, thousands of distinct terms)."""
    out = [p.strip() for doc in seed_docs.values() for p in doc.text.split("\n\n") if p.strip()]
    assert len(out) > 300
    return out


def _bm25s_scores(term_lists: list[list[str]], question: str, k1: float = 1.2, b: float = 0.75) -> np.ndarray:
    """What bm25s itself gives for these rows (built by its own index(), empty rows as our placeholder)."""
    import bm25s

    ref = bm25s.BM25(k1=k1, b=b)
    ref.index([t if t else [EMPTY_TERM] for t in term_lists], show_progress=False)
    known = [t for t in analyze(question) if t in ref.vocab_dict]
    return ref.get_scores(known).astype(np.float32) if known else np.zeros(len(term_lists), np.float32)


@pytest.mark.parametrize("k1, b", [(1.2, 0.75), (1.5, 0.6)])
def test_scores_are_those_of_bm25s_own_build(paragraphs, k1, b):
    terms = [analyze(p) for p in paragraphs]
    terms[5] = []  # an empty text keeps its row
    index = BM25Index.from_terms(terms, k1, b)
    for question in QUESTIONS:
        assert np.array_equal(index.scores(question), _bm25s_scores(terms, question, k1, b)), question
    assert index.n_docs == len(terms) and np.array_equal(index.ids, np.arange(len(terms)))
    assert int(index.lengths.sum()) == sum(max(len(t), 1) for t in terms)


def test_an_update_equals_a_build_from_scratch(paragraphs):
    terms = [analyze(p) for p in paragraphs]
    ids = np.arange(0, 3 * len(terms), 3, dtype=np.int64)  # ids with gaps, as after earlier removals
    index = BM25Index.from_terms(terms, ids=ids)
    rng = random.Random(3)
    removed = np.asarray(sorted(rng.sample(list(ids), 60)), dtype=np.int64)
    # New rows: some with terms no row had ("zanzibarite"), one empty, some repeating a removed row's text.
    added_terms = [analyze(p + " zanzibarite") for p in paragraphs[:20]] + [[]] + [terms[int(removed[0]) // 3]]
    added_ids = np.arange(ids[-1] + 10, ids[-1] + 10 + len(added_terms), dtype=np.int64)
    assert index.can_update(1.2, 0.75, added_ids)

    updated = index.updated(np.append(removed, 999_999), added_ids, added_terms)  # an absent id is ignored

    gone = set(removed.tolist())
    kept = [(i, t) for i, t in zip(ids.tolist(), terms) if i not in gone]
    expected_terms = [t for _i, t in kept] + added_terms
    expected_ids = np.asarray([i for i, _t in kept] + added_ids.tolist(), dtype=np.int64)
    fresh = BM25Index.from_terms(expected_terms, ids=expected_ids)
    assert np.array_equal(updated.ids, expected_ids)
    for question in QUESTIONS + ["zanzibarite"]:
        assert np.array_equal(updated.scores(question), fresh.scores(question)), question
        assert np.array_equal(updated.scores(question), _bm25s_scores(expected_terms, question)), question
    assert updated.idf("zanzibarite") == pytest.approx(fresh.idf("zanzibarite"))
    updated.check()
    # The original is untouched (a reader may still be using it).
    assert np.array_equal(index.ids, ids) and index.scores("zanzibarite").sum() == 0


def test_a_term_whose_every_row_went_scores_nothing(paragraphs):
    terms = [["alpha", "beta"], ["beta"], ["gamma", "beta"]]
    index = BM25Index.from_terms(terms).updated(np.asarray([0]), np.zeros(0, np.int64), [])
    assert index.scores("alpha").tolist() == [0.0, 0.0]
    assert np.array_equal(index.scores("beta gamma"), BM25Index.from_terms(terms[1:], ids=[1, 2]).scores("beta gamma"))
    assert index.idf("alpha") == pytest.approx(index.idf("never-seen"))
    index.check()


def test_when_an_update_does_not_apply(tmp_path, paragraphs):
    index = BM25Index.from_terms([analyze(p) for p in paragraphs[:50]], ids=np.arange(10, 60))
    assert not index.can_update(1.5, 0.75, np.asarray([100]))  # other parameters: every score changes
    assert not index.can_update(1.2, 0.75, np.asarray([59]))  # a new id must come after every present one
    with pytest.raises(ValueError, match="cannot be updated"):
        index.updated(np.zeros(0, np.int64), np.asarray([59]), [["x"]])
    with pytest.raises(ValueError, match="one ascending id per text"):
        index.updated(np.zeros(0, np.int64), np.asarray([70, 65]), [["x"], ["y"]])
    # An index saved before term frequencies were kept loads and answers, but can only be rebuilt.
    index.save(tmp_path / "bm25")
    (tmp_path / "bm25" / BM25Index.TF).unlink()
    (tmp_path / "bm25" / BM25Index.LENGTHS).unlink()
    old = BM25Index.load(tmp_path / "bm25", mmap=True)
    assert old.tf is None and not old.can_update(1.2, 0.75, np.asarray([100]))
    assert np.array_equal(old.scores(QUESTIONS[0]), index.scores(QUESTIONS[0]))


def test_saved_files_round_trip_and_damage_is_found(tmp_path, paragraphs):
    index = BM25Index.from_terms([analyze(p) for p in paragraphs])
    folder = tmp_path / "bm25"
    index.save(folder)
    loaded = BM25Index.load(folder, mmap=True)
    loaded.check()
    assert np.array_equal(np.asarray(loaded.tf), index.tf) and np.array_equal(np.asarray(loaded.lengths), index.lengths)
    assert loaded.tf.dtype == np.uint16  # frequencies in a chunk fit in 16 bits
    for question in QUESTIONS:
        assert np.array_equal(loaded.scores(question), index.scores(question))

    def damaged(name: str, change, checked: bool = False) -> None:
        """Load (and check) with one file changed, then put the file back."""
        array = np.load(folder / name, allow_pickle=False)
        np.save(folder / name, change(array.copy()), allow_pickle=False)
        try:
            loaded = BM25Index.load(folder)
            if checked:
                loaded.check()
        finally:
            np.save(folder / name, array, allow_pickle=False)

    def bump(a: np.ndarray) -> np.ndarray:
        a[len(a) // 2] += 1
        return a

    # Same shapes, other values: only check() can tell.
    for name, message in [(BM25Index.TF, "do not add up"), (BM25Index.LENGTHS, "do not add up"),
                          ("data.csc.index.npy", "scores are not those")]:
        with pytest.raises(ValueError, match=message):
            damaged(name, bump, checked=True)
    # Other shapes or types: refused at load.
    with pytest.raises(ValueError, match="one term frequency per BM25 score"):
        damaged(BM25Index.TF, lambda a: a[:-1])
    with pytest.raises(ValueError, match="one term frequency per BM25 score"):
        damaged(BM25Index.TF, lambda a: a.astype(np.float32))
    with pytest.raises(ValueError, match="one length per BM25 row"):
        damaged(BM25Index.LENGTHS, lambda a: a[:-1])
    BM25Index.load(folder).check()  # every file back as it was
    vocab = json.loads((folder / "vocab.index.json").read_text())
    first, second = sorted(vocab, key=vocab.get)[:2]
    (folder / "vocab.index.json").write_text(json.dumps({**vocab, first: vocab[second]}))
    with pytest.raises(ValueError, match="vocabulary"):
        BM25Index.load(folder, mmap=True).check()


def test_an_update_that_changes_no_row_is_the_same_index(paragraphs):
    index = BM25Index.from_terms([analyze(p) for p in paragraphs[:30]])
    assert index.updated(np.asarray([999]), np.zeros(0, np.int64), []) is index
