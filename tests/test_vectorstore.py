"""The vector store: flat and ivf behind one interface, stable ids, removal, files."""

from __future__ import annotations

import numpy as np
import pytest

from rag.errors import ConfigError
from rag.vectorstore import VectorStore, choose_kind, default_nlist


def _unit(n: int, d: int = 32, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_the_kind_follows_the_corpus_size_unless_one_is_asked_for():
    assert choose_kind("auto", 10, 100) == "flat"
    assert choose_kind("auto", 100, 100) == "ivf"
    assert choose_kind("flat", 10 ** 7, 100) == "flat"
    with pytest.raises(ConfigError, match="vector_index 'hnsw' is unknown"):
        choose_kind("hnsw", 10, 100)
    assert default_nlist(1_000_000) == 4096 and default_nlist(10) == 16


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_ids_are_stable_through_removal_and_files(kind, tmp_path):
    x = _unit(4000)
    ids = np.arange(1000, 5000, dtype=np.int64)  # not row positions
    store = VectorStore.create(32, kind, training=x, nprobe=64)
    store.add(ids, x)
    _, found = store.search(x[:3], 1)
    assert found[:, 0].tolist() == [1000, 1001, 1002]
    assert store.remove(np.array([1000, 1001, 7], dtype=np.int64)) == 2  # an unknown id is ignored
    assert store.ntotal == 3998 and store.all_ids()[0] == 1002
    _, found = store.search(x[:1], 5)
    assert 1000 not in found[0]
    # The others kept their vectors (8-bit scalars in ivf: close, not equal).
    assert float(store.reconstruct(np.array([4999]))[0] @ x[-1]) > 0.99
    store.save(tmp_path / "v.faiss")
    again = VectorStore.load(tmp_path / "v.faiss", kind, nprobe=64)
    assert again.ntotal == 3998 and np.array_equal(again.all_ids(), store.all_ids())
    assert again.search(x[2:3], 1)[1][0, 0] == 1002
    with pytest.raises(KeyError):
        again.reconstruct(np.array([1000]))


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_a_clone_is_independent_and_keeps_removal_by_id(kind):
    x = _unit(3000)
    store = VectorStore.create(32, kind, training=x, nprobe=64)
    store.add(np.arange(100, 3100), x)
    copy = store.clone()
    assert copy.kind == kind and copy.nprobe == 64 and np.array_equal(copy.all_ids(), store.all_ids())
    assert copy.remove(np.array([100, 101], dtype=np.int64)) == 2
    copy.add(np.array([9000], dtype=np.int64), x[:1])
    assert store.ntotal == 3000 and copy.ntotal == 2999
    assert store.search(x[:1], 1)[1][0, 0] == 100 and copy.search(x[:1], 1)[1][0, 0] == 9000
    assert np.allclose(copy.reconstruct(np.array([3099])), store.reconstruct(np.array([3099])))


def test_a_search_can_be_restricted_to_some_ids():
    x = _unit(500)
    store = VectorStore.create(32, "flat")
    store.add(np.arange(500), x)
    _, found = store.search(x[:1], 10, ids=np.array([3, 4, 5]))
    assert sorted(i for i in found[0] if i >= 0) == [3, 4, 5]


def test_ivf_recall_against_exact_search():
    """The approximate store finds most of the exact top 10 at the default nprobe on clustered data."""
    rng = np.random.default_rng(1)
    centres = _unit(50, seed=2)
    x = centres[rng.integers(0, 50, 20000)] + 0.6 * rng.standard_normal((20000, 32)).astype(np.float32) / 32 ** .5
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    queries = x[rng.choice(20000, 50, replace=False)] + 0.05
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    ids = np.arange(20000, dtype=np.int64)
    exact = VectorStore.create(32, "flat")
    exact.add(ids, x)
    approx = VectorStore.create(32, "ivf", training=x, nprobe=32)
    approx.add(ids, x)
    truth = exact.search(queries, 10)[1]
    found = approx.search(queries, 10)[1]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, found)])
    assert recall >= 0.9, recall


def test_ivf_needs_training_vectors():
    from rag.errors import InputError

    with pytest.raises(InputError, match="training vectors"):
        VectorStore.create(32, "ivf")
