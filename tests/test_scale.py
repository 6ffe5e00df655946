"""``rag bench --scale N`` (rag.scale): generated corpus, a real build, load and queries in a fresh process."""

from __future__ import annotations

import numpy as np
import pytest

from rag import Config
from rag.errors import InputError

pytestmark = pytest.mark.slow


def _benchmarks_or_skip():
    """The generated corpus is real SQuAD text from ../shared/benchmarks (not shipped: CC BY-SA, 40 MB)."""
    from rag.scale import benchmarks_dir

    try:
        benchmarks_dir()
    except InputError as exc:
        pytest.skip(f"benchmark texts not available: {exc}")


def _format_2_or_skip():
    try:
        from rag.index import Embedded  # noqa: F401 - index format 2 provides it
    except ImportError:
        pytest.skip("needs index format 2 (rag.index.Embedded, Index.build(prepared=...)), not landed yet")


def test_variant_vectors_keep_a_realistic_distance_to_their_base():
    from rag.scale import variant_vectors

    rng = np.random.default_rng(0)
    # A base shaped like sentence embeddings: a shared direction plus spread, normalised.
    base = (rng.standard_normal((500, 384)) * 0.05 + rng.standard_normal(384) * 0.03).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    x = variant_vectors(base, 2000, seed=3)
    assert x.shape == (2000, 384) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    cos = np.sum(x[:500] * base, axis=1)
    assert 0.6 < cos.mean() < 0.85  # moved, not copied: no clusters of near-duplicates
    same = np.sum(x[:500] * x[500:1000], axis=1)  # two variants of one base passage
    assert same.mean() < 0.8
    assert np.array_equal(x, variant_vectors(base, 2000, seed=3))  # reproducible


def test_synthetic_corpus_is_real_text_varied_in_documents(config):
    _benchmarks_or_skip()
    from rag.scale import base_passages, synthetic_corpus

    base = base_passages(config, size=50)
    vectors = np.eye(50, 384, dtype=np.float32)
    corpus = synthetic_corpus(230, config, base, vectors, per_doc=10)
    assert len(corpus.documents) == 23 and sum(len(c) for c in corpus.chunks) == 230
    assert len(corpus.vectors) == 230 and len({d.title for d in corpus.documents}) == 23
    texts = [c.text for chunks in corpus.chunks for c in chunks]
    assert len(set(texts)) == 230  # every copy of a base passage differs
    for doc, chunks in zip(corpus.documents, corpus.chunks):
        assert all(doc.text[c.start:c.end] == c.text and len(c.text) <= config.chunk_max_chars for c in chunks)
    assert corpus.prepared()[corpus.documents[0].sha256].vectors.shape == (10, 384)


def test_scale_bench_at_3000_passages_on_the_approximate_index(tmp_path):
    _format_2_or_skip()
    _benchmarks_or_skip()
    from rag.scale import run_scale_bench

    config = Config(vector_index="ivf", ivf_threshold=1000)
    result = run_scale_bench(3000, config, out=tmp_path / "scale", queries=20, base_size=300)
    assert result["vector_store"]["kind"] == "ivf"
    assert result["passages"] == 3000 and result["documents"] == 300 and result["embedded_in_build"] == 0
    assert result["recall_at_10"] >= 0.9
    assert result["build_s"] > 0 and result["disk_mb"] > 0 and result["load_s"] > 0
    assert 0 < result["index_store_mb"] < 500 and result["rss_end_mb"] > result["index_store_mb"]
    assert 0 < result["vector_search"]["p50_ms"] <= result["vector_search"]["p95_ms"]
    assert result["retrieve"]["p50_ms"] >= result["query_encoding"]["p50_ms"] > 0
    assert (tmp_path / "scale" / "manifest.json").is_file()
