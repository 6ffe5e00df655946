"""Stage 3: the shipped MiniLM model, normalised vectors, and the bfloat16 choice."""

from __future__ import annotations

import numpy as np
import pytest

from rag import ModelError
from rag.embedding import Embedder, model_path


def test_shipped_model_gives_normalised_384_dim_vectors(embedder):
    vectors = embedder.encode(["Scam centres in Myanmar", "Trafficking victims in Laos"])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_similar_texts_score_higher(embedder):
    q, near, far = embedder.encode(["forced labour in scam compounds", "people forced to work in scam centres",
                                    "recipe for banana bread"])
    assert q @ near > q @ far + 0.2


@pytest.mark.slow
def test_bfloat16_autocast_agrees_with_float32(seed_docs, embedder):
    texts = [seed_docs["compound-abuses-myanmar-border-areas-2023"].text[i:i + 800] for i in range(0, 16000, 800)]
    fp32 = embedder.encode(texts) if embedder.dtype_used == "float32" else Embedder(dtype="float32").encode(texts)
    bf16 = Embedder(dtype="bfloat16").encode(texts)
    assert (fp32 * bf16).sum(axis=1).min() >= 0.998


def test_unknown_model_is_refused_offline():
    with pytest.raises(ModelError, match="not available offline"):
        model_path("someone/some-model-on-the-hub")
