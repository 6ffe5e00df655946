"""``rag bench --scale N``: an index of N passages of real text, built, loaded and queried, measured.

The passages are SQuAD v1.1 train paragraphs (``../shared/benchmarks``, used for benchmarking only, never
shipped), cut by the project's chunker into a *base* of real passages that are embedded once and cached
under ``embeddings/.scale-cache/``. N passages are then made from the base with variation:

* text: the base passage's sentences rotated or shuffled, a few words swapped, a document number, so BM25 sees
  distinct documents (not N copies of a few thousand texts);
* vectors: ``normalise(a * base[i] + b * g)`` where ``g`` is Gaussian noise with the base's own covariance
  (see :func:`variant_vectors`). A variant's cosine to its base is about 0.7 and its nearest-neighbour scores
  look like the base's own, so an approximate index is not flattered by tight near-duplicate clusters.

Queries are real SQuAD questions, embedded (the questions are not in the corpus).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .config import Config, project_home
from .config import benchmarks_dir as shared_benchmarks
from .errors import InputError

log = logging.getLogger(__name__)

SQUAD_TRAIN = "squad-train-v1.1-explorer/train-v1.1.explorer.json"
#: Real passages embedded once; N variants are made from them.
BASE_SIZE = 20_000
#: Questions embedded once; a bench uses the first ``queries`` of them.
QUESTION_POOL = 1_000
#: Variant = normalise(A * base + B * noise): cosine to its base about 0.7 (measured in eval/experiments/ann_choice.py).
VARIANT_A = 1.0
VARIANT_B = 1.0


class _CountingEmbedder:
    """The embedder, counting the texts given to ``encode`` (the build must encode none)."""

    def __init__(self, embedder: Any) -> None:
        self._embedder = embedder
        self.encoded = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._embedder, name)

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        self.encoded += len(texts)
        return self._embedder.encode(texts, progress=progress)


@dataclass(frozen=True)
class BasePassage:
    """One real passage: its article title, its text (a chunk of one SQuAD paragraph) and its token count."""

    title: str
    text: str
    tokens: int
    #: Position of its article in SQuAD (passages of one article are grouped into documents).
    article: int = 0


def benchmarks_dir(explicit: Path | str | None = None) -> Path:
    """The shared benchmark folder (``explicit``, else ``../shared/benchmarks``) holding SQuAD v1.1 train."""
    return shared_benchmarks(explicit, (SQUAD_TRAIN,))


def cache_dir() -> Path:
    """Cached base vectors (gitignored: everything under embeddings/ is)."""
    return project_home() / "embeddings" / ".scale-cache"


def _squad(folder: Path) -> dict[str, Any]:
    return json.loads((folder / SQUAD_TRAIN).read_text(encoding="utf-8"))


def base_passages(config: Config, folder: Path | None = None, size: int = BASE_SIZE) -> list[BasePassage]:
    """``size`` real passages: SQuAD train paragraphs chunked by the project's chunker, spread over all articles.

    Paragraphs are taken round-robin over the 442 articles (first paragraph of each, then the second, ...), so
    every topic is present whatever ``size`` is; the order is fixed, so the cache key is stable.
    """
    from .chunking import Chunker
    from .documents import document_from_text

    data = _squad(benchmarks_dir(folder))
    chunker = Chunker.from_config(config)
    articles = [(a["title"].replace("_", " "), [p["context"] for p in a["paragraphs"]]) for a in data["data"]]
    out: list[BasePassage] = []
    depth = max(len(ps) for _, ps in articles)
    for i in range(depth):
        for a, (title, paragraphs) in enumerate(articles):
            if i >= len(paragraphs):
                continue
            doc = document_from_text(f"squad-{a}-{i}", paragraphs[i], title=title)
            for chunk in chunker.chunk(doc):
                out.append(BasePassage(title, chunk.text, chunk.tokens, a))
                if len(out) >= size:
                    return out
    return out


def squad_questions(folder: Path | None = None, count: int = QUESTION_POOL, seed: int = 7) -> list[str]:
    """``count`` real SQuAD train questions, drawn at random over all articles (fixed seed)."""
    data = _squad(benchmarks_dir(folder))
    questions = [q["question"].strip() for a in data["data"] for p in a["paragraphs"] for q in p["qas"]]
    rng = random.Random(seed)
    return rng.sample(questions, min(count, len(questions)))


def _key(texts: Sequence[str], config: Config) -> str:
    h = hashlib.sha256(f"{config.model_name}|{config.embed_headers}".encode())
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def _cached_encode(name: str, texts: Sequence[str], config: Config, embedder: Any = None,
                   progress: bool = False) -> np.ndarray:
    """Vectors of ``texts``, encoded once and kept in the cache folder (keyed by the texts and the model)."""
    path = cache_dir() / f"{name}-{len(texts)}-{_key(texts, config)}.npy"
    if path.is_file():
        return np.load(path)
    if embedder is None:
        from .embedding import Embedder

        embedder = Embedder(config.model_name, config.embed_dtype, config.embed_batch_size)
    log.info("encoding %d %s texts once (cached in %s)", len(texts), name, path.parent)
    vectors = embedder.encode(list(texts), progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    tmp.replace(path)
    return vectors


def base_texts(passages: Sequence[BasePassage], config: Config) -> list[str]:
    """What each base passage is embedded as (``rag.index.embedded_text``: headed by its title)."""
    from .index import embedded_text
    from .types import Chunk

    return [embedded_text(Chunk("", p.title, 0, len(p.text), p.text), p.title, config.embed_headers)
            for p in passages]


def base_matrix(config: Config, passages: Sequence[BasePassage], embedder: Any = None,
                progress: bool = False) -> np.ndarray:
    """The base passages' vectors (float32, normalised), from the cache when present."""
    return _cached_encode("base", base_texts(passages, config), config, embedder, progress)


def question_matrix(config: Config, questions: Sequence[str], embedder: Any = None) -> np.ndarray:
    """The questions' vectors, from the cache when present."""
    return _cached_encode("questions", list(questions), config, embedder)


def noise_model(base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and Cholesky factor of the base vectors' covariance (float64), for :func:`variant_vectors`."""
    x = base.astype(np.float64)
    mean = x.mean(axis=0)
    cov = np.cov(x, rowvar=False)
    # A tiny ridge: the covariance of normalised vectors is close to singular along the mean direction.
    factor = np.linalg.cholesky(cov + 1e-6 * np.eye(cov.shape[0]))
    return mean, factor


def variant_vectors(base: np.ndarray, n: int, *, seed: int = 0, a: float = VARIANT_A, b: float = VARIANT_B,
                    rows: np.ndarray | None = None, block: int = 65_536) -> np.ndarray:
    """``n`` normalised vectors made from ``base``: row i is ``normalise(a * base[r_i] + b * g_i)``.

    ``r_i`` is ``rows[i % len(rows)]`` (default: ``i % B``, every base row in turn).

    ``g_i`` is drawn from a Gaussian with the base's mean and covariance, i.e. a random "passage" shaped like
    real ones (norm about 1, in the same cone as real embeddings), so a variant is its base passage moved by
    a comparable step in a realistic direction. With a = b = 1 a variant's cosine to its base is about 0.75
    and two variants of one base about 0.6, near the base's own nearest-neighbour scores: no tight clusters
    of near-duplicates that would make an approximate index look better than it is. Blocks are seeded apart,
    so the result depends only on (base, n, seed, a, b).
    """
    if n < 1:
        raise InputError(f"the number of vectors must be at least 1, got {n}")
    mean, factor = noise_model(base)
    factor32 = factor.T.astype(np.float32)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    order = np.arange(len(base)) if rows is None else np.asarray(rows, dtype=np.int64)
    for start in range(0, n, block):
        stop = min(n, start + block)
        rng = np.random.default_rng([seed, start // block])
        z = rng.standard_normal((stop - start, base.shape[1]), dtype=np.float32)
        g = z @ factor32 + mean.astype(np.float32)
        v = a * base[order[np.arange(start, stop) % len(order)]] + b * g
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        out[start:stop] = v
    return out


# ---------------------------------------------------------------------- synthetic corpus
#: Passages per generated document.
PASSAGES_PER_DOC = 10
_WORD = re.compile(r"\S+")


@dataclass
class Corpus:
    """N generated passages grouped into documents, with their vectors (row i = passage i, document order)."""

    documents: list[Any]          # rag.types.Document
    chunks: list[tuple[Any, ...]]  # per document, its rag.types.Chunk tuple
    vectors: np.ndarray           # float32 (N, dim), normalised
    base_rows: np.ndarray         # row of the base passage each passage varies

    def prepared(self) -> dict[str, Any]:
        """``Index.build``'s ``prepared``: each document's chunks and vectors, keyed by its sha256."""
        from .index import Embedded

        out, row = {}, 0
        for doc, chunks in zip(self.documents, self.chunks):
            out[doc.sha256] = Embedded(chunks, self.vectors[row:row + len(chunks)])
            row += len(chunks)
        return out


def _vary(sentences: Sequence[str], copy: int, rng: random.Random, vocabulary: Sequence[str],
          max_chars: int) -> str:
    """One variant of a passage's text: sentences rotated (or shuffled), two word pairs swapped, a few words
    replaced by words of other passages; copy 0 of a passage keeps its sentence order."""
    order = list(sentences)
    if len(order) > 1 and copy:
        if copy < len(order):
            order = order[copy:] + order[:copy]
        else:
            rng.shuffle(order)
    words = " ".join(order).split()
    if len(words) > 4:
        for _ in range(2):
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
        for _ in range(1 + copy % 3):
            words[rng.randrange(len(words))] = rng.choice(vocabulary)
    text = " ".join(words)
    if len(text) > max_chars:  # a replacement made it longer than a chunk may be: cut at a space
        text = text[:max_chars].rsplit(" ", 1)[0]
    return text


def synthetic_corpus(n: int, config: Config, base: Sequence[BasePassage], base_vectors: np.ndarray, *,
                     seed: int = 0, per_doc: int = PASSAGES_PER_DOC) -> Corpus:
    """``n`` passages of real text with variation, ``per_doc`` to a document, and their vectors.

    The base passages are taken article by article (so a document's passages share a topic) and each is
    used in turn; passage i is copy ``i // len(base)`` of its base passage, its text varied by :func:`_vary`
    and its vector by :func:`variant_vectors`. Documents are titled by article and a running report number,
    so titles differ too. Chunks are exact slices of their document, one body block per passage.
    """
    from .chunking import split_sentences
    from .documents import sha256_text
    from .types import Block, Chunk, Document, Section

    if n < 1:
        raise InputError(f"--scale needs at least 1 passage, got {n}")
    order = np.array(sorted(range(len(base)), key=lambda i: (base[i].article, i)), dtype=np.int64)
    vectors = variant_vectors(base_vectors, n, seed=seed, rows=order)
    sentences = [[p.text[a:b] for a, b in split_sentences(p.text)] or [p.text] for p in base]
    rng = random.Random(seed)
    vocabulary = [w for p in base[:2000] for w in _WORD.findall(p.text)]
    documents: list[Any] = []
    chunk_lists: list[tuple[Any, ...]] = []
    for d, first in enumerate(range(0, n, per_doc)):
        rows = [int(order[i % len(order)]) for i in range(first, min(n, first + per_doc))]
        texts = [_vary(sentences[r], i // len(order), rng, vocabulary, config.chunk_max_chars)
                 for i, r in zip(range(first, first + len(rows)), rows)]
        title = f"{base[rows[0]].title}, report {d + 1}"
        doc_id = f"scale-{d:07d}"
        text = "\n\n".join(texts)
        spans, at = [], 0
        for t in texts:
            spans.append((at, at + len(t)))
            at += len(t) + 2
        doc = Document(doc_id=doc_id, title=title, path=f"scale/{doc_id}.txt", text=text, sha256=sha256_text(text),
                       sections=(Section(title, 0, len(text)),),
                       blocks=tuple(Block(a, b, "body", title) for a, b in spans), meta={"synthetic": True})
        documents.append(doc)
        chunk_lists.append(tuple(Chunk(doc_id, title, a, b, t, "body", base[r].tokens)
                                 for (a, b), t, r in zip(spans, texts, rows)))
    return Corpus(documents, chunk_lists, vectors, order[np.arange(n) % len(order)])


# ---------------------------------------------------------------------- the bench
def _rss_mb() -> dict[str, float]:
    """This process's resident memory now and at its peak (VmRSS, VmHWM), in MiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def _percentiles_ms(seconds: Sequence[float]) -> dict[str, float]:
    from .bench import _percentile

    ms = [s * 1e3 for s in seconds]
    return {"p50_ms": round(_percentile(ms, 0.5), 2), "p95_ms": round(_percentile(ms, 0.95), 2)}


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _measure_loaded(spec_path: str) -> None:
    """The child process of :func:`run_scale_bench`: load the index, query it, write what it measured.

    Run in a fresh interpreter so the memory it reports is this index's and nothing else's.
    """
    import gc
    import time

    spec = json.loads(Path(spec_path).read_text())
    from .index import Index
    from .retrieval import Retriever

    config = Config.from_dict(spec["config"])
    folder = Path(spec["folder"])
    queries = np.load(spec["queries"])
    questions: list[str] = spec["questions"]
    # The libraries the index needs are imported first, so the load's memory is the index's alone.
    import bm25s  # noqa: F401
    import faiss  # noqa: F401
    import Stemmer  # noqa: F401

    out: dict[str, Any] = {"rss_before_load_mb": _rss_mb()["VmRSS"]}
    started = time.perf_counter()
    index = Index.load(folder, config)
    out["load_s"] = round(time.perf_counter() - started, 3)
    out["rss_after_load_mb"] = _rss_mb()["VmRSS"]
    del index
    gc.collect()
    started = time.perf_counter()
    index = Index.load(folder, config)
    out["load_again_s"] = round(time.perf_counter() - started, 3)
    out["vector_store"] = index.manifest.get("vector_store")

    vectors = index.vectors
    for q in queries[:5]:  # warm-up: first touches of the mapped files
        vectors.search(q[None], 10)
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        _, ids = vectors.search(q[None], 10)
        times.append(time.perf_counter() - t)
        found.append(ids[0])
    out["vector_search"] = _percentiles_ms(times)
    out["rss_after_vector_queries_mb"] = _rss_mb()["VmRSS"]

    from .embedding import Embedder

    before = _rss_mb()["VmRSS"]
    embedder = Embedder(config.model_name, config.embed_dtype, config.embed_batch_size)
    embedder.encode_one("warm up")
    out["embedder_mb"] = round(_rss_mb()["VmRSS"] - before, 1)
    retriever = Retriever(index, embedder, config)
    for question in questions[:3]:
        retriever.search(question, embedder.encode_one(question), 10)
    times, encode = [], []
    for question in questions:
        t = time.perf_counter()
        qvec = embedder.encode_one(question)
        e = time.perf_counter()
        retriever.search(question, qvec, 10)
        times.append(time.perf_counter() - t)
        encode.append(e - t)
    out["retrieve"] = _percentiles_ms(times)
    out["query_encoding"] = _percentiles_ms(encode)
    rss = _rss_mb()
    out["rss_end_mb"], out["rss_peak_mb"] = rss["VmRSS"], rss["VmHWM"]
    # Where the hits are, by (document, start): the parent maps them to its rows (after timing, not timed).
    out["found"] = [[[c.doc_id, c.start] for c in (index.chunks[int(i)] for i in ids if i >= 0)] for ids in found]
    Path(spec["result"]).write_text(json.dumps(out))


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Rows of the exact top ``k`` inner products per query (faiss Flat over the same matrix)."""
    import faiss

    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(np.ascontiguousarray(vectors, dtype=np.float32))
    _, rows = flat.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return rows


def run_scale_bench(n: int, config: Config, *, out: Path | None = None, queries: int = 200,
                    keep: bool = False, benchmarks: Path | None = None, base_size: int = BASE_SIZE
                    ) -> dict[str, Any]:
    """Build an index of ``n`` generated passages, save it, load and query it in a fresh process; measure.

    Returns build and save time, size on disk, load time (first and second load), resident memory (before
    and after the load, i.e. the index and store alone, and in all), vector query and full retrieve p50/p95
    (query encoding included), and recall@10 of the vector store against exact search over the same vectors.
    The index goes to ``out`` (kept) or a temporary folder (removed unless ``keep``). ``base_size`` real
    passages are embedded (once: cached) and varied; tests use a small base.
    """
    import gc
    import shutil
    import subprocess
    import sys
    import tempfile
    import time

    from .embedding import Embedder
    from .index import Index

    if queries < 1:
        raise InputError(f"queries must be at least 1, got {queries}")
    embedder = Embedder(config.model_name, config.embed_dtype, config.embed_batch_size)
    base = base_passages(config, benchmarks, base_size)
    base_vectors = base_matrix(config, base, embedder, progress=False)
    questions = squad_questions(benchmarks, queries)
    qvecs = np.ascontiguousarray(question_matrix(config, questions, embedder))

    started = time.perf_counter()
    corpus = synthetic_corpus(n, config, base, base_vectors)
    generate_s = time.perf_counter() - started
    truth = exact_top(corpus.vectors, qvecs)
    starts = [[c.start for c in chunks] for chunks in corpus.chunks]
    per_doc = len(corpus.chunks[0])

    workdir = Path(tempfile.mkdtemp(prefix="rag-scale-"))
    folder = Path(out) if out is not None else workdir / "index"
    result: dict[str, Any] = {"passages": n, "documents": len(corpus.documents), "queries": queries,
                              "generate_s": round(generate_s, 1), "index": str(folder)}
    try:
        parent_before = _rss_mb()["VmRSS"]
        started = time.perf_counter()
        counting = _CountingEmbedder(embedder)
        index, _embedded = Index.build(corpus.documents, config, counting, prepared=corpus.prepared(), target=folder)
        result["build_s"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        index.save(folder)
        result["save_s"] = round(time.perf_counter() - started, 1)
        # Texts actually encoded during the build: 0, every vector came prepared (Index.build's own count
        # includes prepared vectors, as chunks embedded for this version elsewhere).
        result["embedded_in_build"] = counting.encoded
        result["parent_build_peak_mb"] = _rss_mb()["VmHWM"]
        result["parent_before_build_mb"] = parent_before
        del index, corpus
        gc.collect()
        result["disk_mb"] = round(_folder_bytes(folder) / 2**20, 1)
        result["disk_files_mb"] = {p.name + ("/" if p.is_dir() else ""): round(
            (_folder_bytes(p) if p.is_dir() else p.stat().st_size) / 2**20, 1) for p in sorted(folder.iterdir())}

        np.save(workdir / "queries.npy", qvecs)
        spec = {"folder": str(folder), "config": config.to_dict(), "queries": str(workdir / "queries.npy"),
                "questions": questions, "result": str(workdir / "child.json")}
        (workdir / "spec.json").write_text(json.dumps(spec))
        code = "import sys; from rag.scale import _measure_loaded; _measure_loaded(sys.argv[1])"
        proc = subprocess.run([sys.executable, "-c", code, str(workdir / "spec.json")], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"the measuring process failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
        child = json.loads((workdir / "child.json").read_text())
        found = child.pop("found")
        rows = [[int(doc_id.split("-")[1]) * per_doc + starts[int(doc_id.split("-")[1])].index(start)
                 for doc_id, start in hits] for hits in found]
        result["recall_at_10"] = round(float(np.mean([len(set(r) & set(t)) / 10 for r, t in zip(rows, truth)])), 4)
        result.update(child)
        result["index_store_mb"] = round(child["rss_after_load_mb"] - child["rss_before_load_mb"], 1)
        result["index_store_after_queries_mb"] = round(child["rss_end_mb"] - child["rss_before_load_mb"]
                                                       - child["embedder_mb"], 1)
    finally:
        if out is None and not keep:
            shutil.rmtree(workdir, ignore_errors=True)
            result["index"] = None
        else:
            for name in ("queries.npy", "spec.json", "child.json"):
                (workdir / name).unlink(missing_ok=True)
            if out is not None:
                shutil.rmtree(workdir, ignore_errors=True)
    return result


def format_table(result: dict[str, Any]) -> str:
    """The measurements as a short two-column table."""
    vs = result.get("vector_store") or {}
    rows = [
        ("passages / documents", f"{result['passages']:,} / {result['documents']:,}"),
        ("vector store", f"{vs.get('factory', vs.get('kind', '?'))}"),
        ("build + save", f"{result['build_s']} s + {result['save_s']} s"),
        ("size on disk", f"{result['disk_mb']} MB"),
        ("load (first / again)", f"{result['load_s']} s / {result['load_again_s']} s"),
        ("RSS index + store", f"{result['index_store_mb']} MB after load, "
                              f"{result['index_store_after_queries_mb']} MB after queries"),
        ("RSS total", f"{result['rss_end_mb']} MB (peak {result['rss_peak_mb']} MB, model {result['embedder_mb']} MB)"),
        ("vector query p50 / p95", f"{result['vector_search']['p50_ms']} / {result['vector_search']['p95_ms']} ms"),
        ("retrieve p50 / p95", f"{result['retrieve']['p50_ms']} / {result['retrieve']['p95_ms']} ms "
                               f"(encoding p50 {result['query_encoding']['p50_ms']} ms)"),
        ("recall@10 vs exact", f"{result['recall_at_10']:.3f} over {result['queries']} questions"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
