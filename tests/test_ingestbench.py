"""Issue 12, item 6: the ingest bench (ingest against raw SentenceTransformer.encode, re-ingest of one changed
document), and the ingest path's speed-ups keeping vectors and BM25 terms as they were."""

from __future__ import annotations

import json
import unicodedata

import numpy as np
import pytest

from rag import Config
from rag.errors import InputError
from rag.ingestbench import benchmarks_dir, format_report, run_ingest_bench

pytestmark = pytest.mark.slow


def _benchmarks():
    try:
        return benchmarks_dir()
    except InputError as exc:
        pytest.skip(f"benchmark texts not available: {exc}")


def test_small_bench_reports_ratio_and_reingests_only_the_changed_document(tmp_path):
    _benchmarks()
    work = tmp_path / "bench"
    report = run_ingest_bench(12, Config(), workdir=work)

    fresh = report["fresh"]
    assert report["documents"] == 12 and len(list((work / "docs").glob("*.md"))) == 12
    assert fresh["chunks"] >= 12 and fresh["chunks_embedded"] == fresh["chunks"]
    assert fresh["ingest_seconds"] > 0 and fresh["raw_encode_seconds"] > 0
    assert fresh["ratio"] == pytest.approx(fresh["ingest_seconds"] / fresh["raw_encode_seconds"], rel=0.02)
    assert fresh["raw_chunks_per_second"] > 0 and fresh["ingest_chunks_per_second"] > 0
    if "max_abs_difference_from_raw" in fresh:  # the index can give its vectors back: they are the raw ones
        assert fresh["max_abs_difference_from_raw"] <= 1e-5

    again = report["reingest"]
    assert len(again["changed"]) == 1 and again["added"] == again["removed"] == 0 and again["unchanged"] == 11
    assert again["chunks_embedded"] == again["chunks_of_changed_document"] >= 1
    assert again["only_changed_document_embedded"] is True
    assert again["chunks_total"] >= fresh["chunks"]
    json.dumps(report)  # the CLI prints it as JSON
    assert "re-ingest" in format_report(report)

    # Reused: the index in the work folder is kept (nothing embedded but the document changed again).
    reused = run_ingest_bench(12, Config(), workdir=work, reuse=True)
    assert reused["fresh"]["reused"] is True and "ingest_seconds" not in reused["fresh"]
    assert reused["reingest"]["changed"] == again["changed"]
    assert reused["reingest"]["only_changed_document_embedded"] is True

    # An index that no longer loads (another format, damage) is rebuilt from the vectors the first run saved:
    # every vector comes from them except those of the revised document's new text.
    for path in (work / "index").rglob("*"):
        if path.is_file():
            path.write_bytes(b"not an index")
    rebuilt = run_ingest_bench(12, Config(), workdir=work, reuse=True)
    assert rebuilt["fresh"]["reused"] is True
    assert rebuilt["fresh"]["cached_vectors_used"] >= fresh["chunks"] - again["chunks_embedded"]
    assert rebuilt["fresh"]["cached_vectors_used"] + rebuilt["fresh"]["encoded"] == rebuilt["fresh"]["chunks"]
    assert rebuilt["reingest"]["only_changed_document_embedded"] is True


def test_bad_sizes_are_refused(tmp_path):
    _benchmarks()
    with pytest.raises(InputError, match="positive integer"):
        run_ingest_bench(0, Config(), workdir=tmp_path)
    with pytest.raises(InputError, match="are available"):
        run_ingest_bench(10**7, Config(), workdir=tmp_path)
    with pytest.raises(InputError, match="repeats"):
        run_ingest_bench(3, Config(), workdir=tmp_path, repeats=0)


def test_embedder_batches_by_tokens_with_the_raw_vectors(embedder, seed_docs, config):
    """Batches sorted by wordpieces give sentence-transformers' own vectors (within 1e-5), in input order."""
    from rag.chunking import Chunker
    from rag.index import embedded_text

    chunker = Chunker.from_config(config)
    texts = [embedded_text(c, d.title, True) for d in seed_docs.values() for c in chunker.chunk(d)][:40]
    texts += ["Short.", "A title\nwith a line", "x " * 400]  # very short, and longer than the model's input
    assert len(texts) > embedder.batch_size
    ours = embedder.encode(texts)
    raw = embedder._model.encode(texts, batch_size=embedder.batch_size, normalize_embeddings=True,
                                 show_progress_bar=False)
    assert ours.dtype == np.float32 and ours.flags.c_contiguous and ours.shape == raw.shape
    assert float(np.abs(ours - raw).max()) <= 1e-5
    assert float(np.abs(embedder.encode(texts[:3]) - raw[:3]).max()) <= 1e-5  # one batch: as before


def _reference_analyze(text: str) -> list[str]:
    """The analyzer before it cached words: regex words, normalised, stop words out, stemmed in one call."""
    import Stemmer
    from bm25s.stopwords import STOPWORDS_EN

    from rag.lexical import _SPELLING, _WORD

    def normalise(word: str) -> str:
        word = unicodedata.normalize("NFKC", word).lower().replace("\u2019", "'")
        if word[:1].isdigit():
            return word.replace(",", "")
        word = word.split("'")[0]
        if len(word) >= 6:
            for pattern, replacement in _SPELLING:
                word = pattern.sub(replacement, word)
        return word

    words = [normalise(m.group(0)) for m in _WORD.finditer(text)]
    return Stemmer.Stemmer("english").stemWords([w for w in words if w and w not in set(STOPWORDS_EN)])


def test_cached_analyzer_gives_the_same_terms(seed_docs):
    from rag.lexical import analyze

    texts = [d.text for d in seed_docs.values()]
    texts += ["Myanmar’s centres criticised the labour programme; 1,000.5 people (2023) — U.S. e.g. l’été",
              "ｆｕｌｌ ﬁle ½ Ⅳ İstanbul ǅ e\u0301te\u0301 中文 ၁၂ tab\there\u3000ideographic\u2028line",
              "word" * 30 + "'s " + "x" * 100, "", "   \n\t ", "the and of"]
    for text in texts:
        assert analyze(text) == _reference_analyze(text)
        assert analyze(text) == _reference_analyze(text)  # answered from the caches the second time
