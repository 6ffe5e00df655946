"""``rag bench --ingest-docs N``: ingest time against raw ``SentenceTransformer.encode`` on the same chunk texts.

A corpus of N real documents is written as Markdown files: BEIR SciFact abstracts and SQuAD v1.1 train
articles (two paragraphs of one article per document), alternating, from ``../shared/benchmarks`` (used only
to benchmark; licences in its PROVENANCE.md). Then, in one process, with the model loaded and warmed up first
so that load time counts for neither side:

1. a fresh ``rag.assistant.ingest`` of the folder is timed end to end (wall time);
2. the chunk texts are read back from the built index (``embedded_text`` per chunk) and encoded by the
   project's loaded SentenceTransformer directly, with its default settings (the *raw encode*);
3. one document's file is changed and ``ingest`` runs again over the whole folder (the *re-ingest*): its wall
   time and how many chunks were embedded (only that document's should be).

The ratio ingest / raw encode is issue 12's target (at most 1.11). With ``profile`` a second fresh ingest
and the re-ingest run under cProfile and their time is grouped by stage (cProfile slows Python code more than
the model's C++ kernels, so the breakdown shows where time goes, not the unprofiled ratio).

For large N the fresh build takes long (embedding dominates): with ``reuse`` an index already built in
``workdir`` is kept, or rebuilt from the vectors the raw encode left there (``vectors.npy``), and only the
re-ingest is timed.
"""

from __future__ import annotations

import cProfile
import hashlib
import json
import logging
import os
import platform
import pstats
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .config import Config
from .config import benchmarks_dir as shared_benchmarks
from .embedding import Embedder
from .errors import InputError

log = logging.getLogger(__name__)

SCIFACT = "scifact/corpus.jsonl"
SQUAD_TRAIN = "squad-train-v1.1-explorer/train-v1.1.explorer.json"
#: SQuAD paragraphs of one article put in one document (an article part).
SQUAD_PARAGRAPHS_PER_DOC = 2
#: What the re-ingest appends to the changed document (a new sentence, so its chunks change).
REVISION_MARK = "Revision note: this abstract was revised for the ingest benchmark, run "

#: Stages of an ingest, each the inclusive time of the functions named (file suffix, function name, and the
#: file they are called from: only those calls count, so a function called inside another of the same stage
#: is not counted twice). "other" is the rest (planning, locks, the manifest, ...).
_STORE_CALLS = tuple(("rag/store.py", f, "rag/index.py") for f in (
    "copy_to", "create", "begin", "delete_documents", "put_documents", "set_positions", "set_descriptions",
    "set_source_stamps", "put_chunks", "commit", "iter_terms", "descriptions", "__init__"))
STAGES: tuple[tuple[str, tuple[tuple[str, str, str | None], ...]], ...] = (
    ("loading_parsing", (("rag/documents.py", "load_documents", "rag/assistant.py"),
                         ("rag/documents.py", "expand_paths", "rag/assistant.py"),
                         ("rag/documents.py", "source_stamp", "rag/assistant.py"))),
    ("loading_previous_index", (("rag/index.py", "load", "rag/assistant.py"),)),
    ("chunking", (("rag/chunking.py", "chunk", "rag/index.py"),)),
    ("embedding", (("rag/embedding.py", "encode", "rag/index.py"),)),
    ("bm25", (("rag/lexical.py", "analyze", "rag/index.py"), ("rag/lexical.py", "from_terms", "rag/index.py"),
              ("rag/lexical.py", "updated", "rag/index.py"), ("rag/lexical.py", "build", "rag/index.py"))),
    ("chunk_store_and_vectors", _STORE_CALLS + (("rag/index.py", "_next_vectors", "rag/index.py"),)),
    ("saving_hashing", (("rag/index.py", "save", "rag/assistant.py"),)),
)
#: Parts of the stages above, shown beside them (included in their stage's time; any caller).
DETAILS: tuple[tuple[str, tuple[tuple[str, str, str | None], ...]], ...] = (
    ("parsing.reading_files", (("rag/documents.py", "_read_bytes", None),)),
    ("parsing.parse_document", (("rag/documents.py", "parse_document", None),)),
    ("parsing.content_hash", (("rag/documents.py", "sha256_text", None),)),
    ("chunking.split_sentences", (("rag/chunking.py", "split_sentences", None),)),
    ("chunking.token_counts", (("rag/chunking.py", "_tokens", None),)),
    ("embedding.tokenizer", (("~", "<method 'encode_batch' of 'tokenizers.Tokenizer' objects>", None),)),
    ("embedding.token_lengths", (("rag/embedding.py", "_token_lengths", None),)),
    ("bm25.analyze", (("rag/lexical.py", "analyze", None),)),
    ("saving.file_hashes", (("rag/index.py", "_sha256_file", None),)),
    ("saving.fsync", (("rag/index.py", "_fsync_tree", None),)),
)


# ---------------------------------------------------------------------- corpus
def benchmarks_dir(explicit: Path | str | None = None) -> Path:
    """The shared benchmark folder (``explicit``, else ``../shared/benchmarks``) holding SciFact and SQuAD."""
    return shared_benchmarks(explicit, (SCIFACT, SQUAD_TRAIN))


def _scifact(folder: Path) -> Iterator[tuple[str, str]]:
    with (folder / SCIFACT).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                if row["text"].strip():
                    yield row["title"].strip(), row["text"].strip()


def _squad(folder: Path) -> Iterator[tuple[str, str]]:
    data = json.loads((folder / SQUAD_TRAIN).read_text(encoding="utf-8"))["data"]
    for article in data:
        title = article["title"].replace("_", " ")
        paragraphs = [p["context"].strip() for p in article["paragraphs"] if p["context"].strip()]
        for part, i in enumerate(range(0, len(paragraphs), SQUAD_PARAGRAPHS_PER_DOC), 1):
            yield f"{title} (part {part})", "\n\n".join(paragraphs[i:i + SQUAD_PARAGRAPHS_PER_DOC])


def corpus(n_docs: int, folder: Path | None = None) -> list[tuple[str, str]]:
    """``n_docs`` (title, body) pairs: SciFact abstracts and SQuAD article parts, alternating (then the rest
    of the longer source). About 1,400 characters each; 5,183 + 9,500 are available."""
    if not isinstance(n_docs, int) or isinstance(n_docs, bool) or n_docs < 1:
        raise InputError(f"the number of documents must be a positive integer, got {n_docs!r}")
    root = benchmarks_dir(folder)
    sources = [_scifact(root), _squad(root)]
    out: list[tuple[str, str]] = []
    while sources and len(out) < n_docs:
        for source in list(sources):
            item = next(source, None)
            if item is None:
                sources.remove(source)
            elif len(out) < n_docs:
                out.append(item)
    if len(out) < n_docs:
        raise InputError(f"only {len(out)} benchmark documents are available, {n_docs} were asked for; "
                         f"ask for {len(out)} or fewer")
    return out


def write_corpus(n_docs: int, folder: Path, benchmarks: Path | None = None) -> list[Path]:
    """Write the corpus as ``folder/dNNNNN.md`` Markdown files (only files whose content differs are written,
    so a reused corpus keeps its files); other ``.md`` files there are removed."""
    folder.mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(n_docs - 1)))
    paths = []
    for i, (title, body) in enumerate(corpus(n_docs, benchmarks)):
        path = folder / f"d{i:0{width}d}.md"
        text = f"# {title}\n\n{body}\n"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        paths.append(path)
    keep = set(paths)
    for stale in folder.glob("*.md"):
        if stale not in keep:
            stale.unlink()
    return paths


def revise(path: Path) -> str:
    """Change one document's file: replace the revision sentence a previous run appended, or append one.

    The sentence carries a fresh token, so every call is a change. Returns the new text."""
    text = path.read_text(encoding="utf-8")
    base = text.split(f"\n\n{REVISION_MARK}", 1)[0].rstrip("\n")
    text = f"{base}\n\n{REVISION_MARK}{uuid.uuid4().hex[:8]}.\n"
    path.write_text(text, encoding="utf-8")
    return text


# ---------------------------------------------------------------------- encoding
def chunk_texts(index: Any, config: Config) -> list[str]:
    """The text of every chunk of ``index`` as it is embedded, in chunk order (read back from the index)."""
    from .index import embedded_text

    titles: dict[str, str] = {}
    texts = []
    for chunk in index.chunks:
        title = titles.get(chunk.doc_id)
        if title is None:
            title = titles[chunk.doc_id] = index.documents[chunk.doc_id].title
        texts.append(embedded_text(chunk, title, config.embed_headers))
    return texts


def raw_encode(embedder: Embedder, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """``SentenceTransformer.encode`` of ``texts`` with its defaults, on the embedder's loaded model (under
    its precision, so both sides compute the same thing)."""
    with embedder._context():  # bfloat16 autocast where the embedder uses it; nothing on float32
        return embedder._model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                      show_progress_bar=False)


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def save_vectors(folder: Path, texts: Sequence[str], vectors: np.ndarray) -> None:
    """Keep the raw-encoded vectors (keyed by text hash) so a reused corpus can be indexed again without
    embedding it (``reuse``, after the index format changed)."""
    tmp = folder / f".vectors-{os.getpid()}.npy"
    np.save(tmp, np.ascontiguousarray(vectors, dtype=np.float32))
    os.replace(tmp, folder / "vectors.npy")
    (folder / "vectors.keys.json").write_text(json.dumps([_text_key(t) for t in texts]))


def load_vectors(folder: Path) -> dict[str, np.ndarray]:
    """The vectors ``save_vectors`` kept, by text hash (empty when there are none or they do not match)."""
    try:
        keys = json.loads((folder / "vectors.keys.json").read_text())
        vectors = np.load(folder / "vectors.npy")
    except (OSError, ValueError):
        return {}
    if len(keys) != len(vectors):
        return {}
    return dict(zip(keys, vectors))


@dataclass
class CachedEmbedder(Embedder):
    """The project's embedder answering known texts from ``vectors`` (by text hash), to index a corpus whose
    vectors were computed before (the model still encodes any text it has not seen)."""

    vectors: Mapping[str, np.ndarray] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        keys = [_text_key(t) for t in texts]
        missing = [i for i, k in enumerate(keys) if k not in self.vectors]
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, k in enumerate(keys):
            if k in self.vectors:
                out[i] = self.vectors[k]
        if missing:
            out[missing] = super().encode([texts[i] for i in missing], progress=progress)
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        return out


# ---------------------------------------------------------------------- profiling
def _is(key: tuple[str, int, str], suffix: str, func: str) -> bool:
    return key[2] == func and key[0].replace(os.sep, "/").endswith(suffix)


def _seconds(raw: Mapping[Any, Any], names: tuple[tuple[str, str, str | None], ...]) -> float:
    """Inclusive seconds of the functions ``names``, counting only calls from the file each names."""
    total = 0.0
    for key, (_cc, _nc, _tt, ct, callers) in raw.items():
        for suffix, func, caller in names:
            if not _is(key, suffix, func):
                continue
            if caller is None:
                total += ct
            else:
                total += sum(c[3] for ck, c in callers.items() if ck[0].replace(os.sep, "/").endswith(caller))
    return total


def stage_breakdown(profiler: cProfile.Profile, total: float) -> dict[str, Any]:
    """Profiled seconds per ingest stage (``STAGES``), their parts (``DETAILS``) and the top functions."""
    stats = pstats.Stats(profiler)
    raw = stats.stats  # {(file, line, func): (primitive calls, calls, own time, inclusive time, callers)}
    profiled_total = max((ct for (_f, _l, fn), (_cc, _nc, _tt, ct, _c) in raw.items() if fn == "ingest"),
                         default=total)

    stages = {name: round(_seconds(raw, names), 3) for name, names in STAGES}
    stages["other"] = round(max(0.0, profiled_total - sum(stages.values())), 3)
    details = {name: round(_seconds(raw, names), 3) for name, names in DETAILS}
    top = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:20]
    return {
        "profiled_seconds": round(profiled_total, 3),
        "stages": stages,
        "stage_share": {k: round(v / profiled_total, 4) if profiled_total else 0.0 for k, v in stages.items()},
        "details": details,
        "top_own_time": [{"function": f"{Path(f).name}:{line}:{fn}", "calls": nc, "own_seconds": round(tt, 3),
                          "inclusive_seconds": round(ct, 3)}
                         for (f, line, fn), (_cc, nc, tt, ct, _c) in top],
    }


def _profiled(call, *args: Any, **kwargs: Any) -> tuple[Any, float, dict[str, Any]]:
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    try:
        result = call(*args, **kwargs)
    finally:
        profiler.disable()
    seconds = time.perf_counter() - started
    return result, seconds, stage_breakdown(profiler, seconds)


# ---------------------------------------------------------------------- the bench
def _fresh(folder: Path) -> None:
    """Remove an index folder and its lock files, so the next ingest starts from nothing."""
    shutil.rmtree(folder, ignore_errors=True)
    for sibling in folder.parent.glob(f".{folder.name}.*"):
        sibling.unlink(missing_ok=True)


def _chunks_of(index: Any, doc_id: str) -> int:
    return sum(1 for c in index.chunks if c.doc_id == doc_id)


def _reusable_index(index_dir: Path, config: Config, n_docs: int) -> Any | None:
    from .index import Index

    try:
        index = Index.load(index_dir, config)
    except Exception as exc:  # noqa: BLE001 - whatever stops it loading (another format, damage), it is rebuilt
        log.info("cannot reuse %s: %s", index_dir, exc)
        return None
    return index if len(index.documents) == n_docs else None


def machine() -> dict[str, Any]:
    """CPU model and core count, for the report."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {"cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version()}


def run_ingest_bench(n_docs: int, config: Config, *, workdir: Path | None = None, profile: bool = False,
                     reuse: bool = False, repeats: int = 1, benchmarks: Path | None = None) -> dict[str, Any]:
    """Ingest ``n_docs`` documents fresh, encode their chunk texts raw, re-ingest after changing one document.

    ``workdir`` holds ``docs/`` and ``index/`` (a temporary folder, removed afterwards, when None). With
    ``reuse`` an index already in ``workdir`` (or the vectors a previous run saved there) is kept and only
    the re-ingest is timed. ``repeats`` fresh ingest / raw encode pairs are run (in alternating order);
    their mean times are reported, and each pair. Returns the report (seconds, ratio, chunks/s, re-ingest, optional profile).
    """
    from .assistant import ingest

    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise InputError(f"repeats must be a positive integer, got {repeats!r}")
    temporary = workdir is None
    work = Path(tempfile.mkdtemp(prefix="rag-ingestbench-")) if temporary else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    docs_dir, index_dir = work / "docs", work / "index"
    report: dict[str, Any] = {"documents": n_docs, "workdir": str(work), "machine": machine(),
                              "date": time.strftime("%Y-%m-%d %H:%M %Z"),
                              "config": {"model": config.model_name, "embed_batch_size": config.embed_batch_size,
                                         "embed_dtype": config.embed_dtype, "chunk_tokens": config.chunk_tokens,
                                         "embed_headers": config.embed_headers},
                              "corpus": "BEIR SciFact abstracts and SQuAD v1.1 train article parts, alternating"}
    try:
        started = time.perf_counter()
        paths = write_corpus(n_docs, docs_dir, benchmarks)
        report["corpus_bytes"] = sum(p.stat().st_size for p in paths)
        report["write_corpus_seconds"] = round(time.perf_counter() - started, 2)

        # Load and warm the model (and tiktoken, bm25s, faiss) before anything is timed.
        started = time.perf_counter()
        embedder = Embedder(config.model_name, config.embed_dtype, config.embed_batch_size)
        warm = work / "warmup"
        _fresh(warm / "index")
        warm_paths = write_corpus(min(2, n_docs), warm / "docs", benchmarks)
        ingest([warm / "docs"], warm / "index", config, embedder=embedder)
        raw_encode(embedder, [p.read_text(encoding="utf-8") for p in warm_paths], config.embed_batch_size)
        shutil.rmtree(warm, ignore_errors=True)
        report["warmup_seconds"] = round(time.perf_counter() - started, 2)
        report["embed_dtype_used"] = embedder.dtype_used

        index = _reusable_index(index_dir, config, n_docs) if reuse else None
        if index is not None:
            report["fresh"] = {"reused": True, "note": f"index already in {index_dir}: not rebuilt, not timed"}
        elif reuse and (cached := load_vectors(work)):
            # The index is gone or unreadable (another format), but its vectors were kept: index again
            # without embedding (timed, but not a fresh ingest), then time the re-ingest as usual.
            _fresh(index_dir)
            cached_embedder = CachedEmbedder(config.model_name, config.embed_dtype, config.embed_batch_size,
                                             vectors=cached)
            started = time.perf_counter()
            ingest_report, index = ingest([docs_dir], index_dir, config, embedder=cached_embedder)
            report["fresh"] = {"reused": True, "rebuilt_from_cached_vectors_seconds":
                               round(time.perf_counter() - started, 2), "chunks": ingest_report.chunks_total,
                               "cached_vectors_used": cached_embedder.hits, "encoded": cached_embedder.misses}
        else:
            report["fresh"] = _fresh_and_raw(ingest, docs_dir, index_dir, work, config, embedder, profile, repeats)
            index = None
        # ------------------------------------------------ re-ingest one changed document
        changed_path = paths[len(paths) // 2]
        revise(changed_path)
        started = time.perf_counter()
        ingest_report, index = ingest([docs_dir], index_dir, config, embedder=embedder)
        seconds = time.perf_counter() - started
        doc_id = ingest_report.changed[0] if len(ingest_report.changed) == 1 else None
        chunks_of_doc = _chunks_of(index, doc_id) if doc_id else None
        report["reingest"] = {
            "seconds": round(seconds, 2), "changed": ingest_report.changed, "added": len(ingest_report.added),
            "removed": len(ingest_report.removed), "unchanged": len(ingest_report.unchanged),
            "chunks_embedded": ingest_report.chunks_embedded, "chunks_total": ingest_report.chunks_total,
            "chunks_of_changed_document": chunks_of_doc,
            "only_changed_document_embedded": doc_id is not None and ingest_report.chunks_embedded == chunks_of_doc,
        }
        if profile:
            # A second change, profiled (slower than the plain run timed above).
            revise(changed_path)
            _result, seconds, breakdown = _profiled(ingest, [docs_dir], index_dir, config, embedder=embedder)
            report["reingest"]["profile"] = {"wall_seconds": round(seconds, 2), **breakdown}
        return report
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)


def _fresh_and_raw(ingest: Any, docs_dir: Path, index_dir: Path, work: Path, config: Config,
                   embedder: Embedder, profile: bool, repeats: int) -> dict[str, Any]:
    """Time a fresh ingest and the raw encode of its chunk texts, ``repeats`` pairs (seconds are the pairs'
    means); optionally profile one more fresh ingest."""
    from .index import Index

    def timed_ingest() -> tuple[Any, Any, float, float]:
        _fresh(index_dir)
        wall, cpu = time.perf_counter(), time.process_time()
        ingest_report, index = ingest([docs_dir], index_dir, config, embedder=embedder)
        return ingest_report, index, time.perf_counter() - wall, time.process_time() - cpu

    def timed_raw(texts: list[str]) -> tuple[np.ndarray, float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        vectors = raw_encode(embedder, texts, config.embed_batch_size)
        return vectors, time.perf_counter() - wall, time.process_time() - cpu

    pairs = []
    texts: list[str] = []
    for i in range(repeats):
        # Odd pairs run the raw encode first, so a load that rises or falls over the run favours neither side.
        if i % 2 == 0:
            ingest_report, index, ingest_wall, ingest_cpu = timed_ingest()
            texts = chunk_texts(Index.load(index_dir, config), config)
            vectors, raw_wall, raw_cpu = timed_raw(texts)
        else:
            vectors, raw_wall, raw_cpu = timed_raw(texts)
            ingest_report, index, ingest_wall, ingest_cpu = timed_ingest()
        pairs.append((ingest_wall, raw_wall, ingest_cpu, raw_cpu))
    save_vectors(work, texts, vectors)
    n = len(texts)
    # Pooled over the pairs: total ingest time over total raw encode time.
    ingest_wall, raw_wall, ingest_cpu, raw_cpu = (sum(p[k] for p in pairs) / repeats for k in range(4))
    out: dict[str, Any] = {
        "chunks": n, "chunks_embedded": ingest_report.chunks_embedded,
        "ingest_seconds": round(ingest_wall, 2), "raw_encode_seconds": round(raw_wall, 2),
        "ratio": round(ingest_wall / raw_wall, 3) if raw_wall else None,
        "overhead_seconds": round(ingest_wall - raw_wall, 2),
        "ingest_cpu_seconds": round(ingest_cpu, 2), "raw_encode_cpu_seconds": round(raw_cpu, 2),
        "cpu_ratio": round(ingest_cpu / raw_cpu, 3) if raw_cpu else None,
        "ingest_chunks_per_second": round(n / ingest_wall, 1) if ingest_wall else None,
        "raw_chunks_per_second": round(n / raw_wall, 1) if raw_wall else None,
        "characters_per_chunk": round(sum(map(len, texts)) / n, 1) if n else 0,
        "repeats": repeats,
    }
    if repeats > 1:
        out["pairs"] = [{"ingest_seconds": round(a, 2), "raw_encode_seconds": round(b, 2), "ratio": round(a / b, 3),
                         "cpu_ratio": round(c / d, 3)} for a, b, c, d in pairs]
    # The vectors the ingest stored are the raw encode's, to float tolerance.
    stored = _stored_vectors(index, n)
    if stored is not None:
        out["max_abs_difference_from_raw"] = float(np.abs(stored - vectors).max()) if n else 0.0
    if profile:
        profiled_dir = work / "index-profiled"
        _fresh(profiled_dir)
        _result, seconds, breakdown = _profiled(ingest, [docs_dir], profiled_dir, config, embedder=embedder)
        _fresh(profiled_dir)
        out["profile"] = {"wall_seconds": round(seconds, 2), **breakdown}
    return out


def _stored_vectors(index: Any, n: int) -> np.ndarray | None:
    """The index's vectors in chunk order, where they are exact and their ids are the chunk positions (a fresh
    build in a flat store); None otherwise."""
    manifest = getattr(index, "manifest", {}) or {}
    kind = (manifest.get("vector_store") or {}).get("kind", "flat")  # format 1 has no vector_store: flat
    if kind != "flat" or manifest.get("next_chunk_id", n) != n or getattr(index.vectors, "ntotal", -1) != n:
        return None
    try:
        return np.asarray(index.reconstruct(np.arange(n, dtype=np.int64)), dtype=np.float32)
    except Exception as exc:  # noqa: BLE001 - a store that cannot give vectors back only loses this check
        log.info("cannot read the stored vectors back: %s", exc)
        return None


def format_report(report: Mapping[str, Any]) -> str:
    """The report as a few lines for the terminal (``--json`` gives all of it)."""
    m = report["machine"]
    lines = [f"ingest bench: {report['documents']} documents on {m['cpu']} ({m['cores']} cores, "
             f"{m['torch_threads']} torch threads), {report['date']}"]
    fresh = report.get("fresh", {})
    if "ingest_seconds" in fresh:
        lines.append(f"  fresh ingest   {fresh['ingest_seconds']:8.2f} s  {fresh['chunks']} chunks, "
                     f"{fresh['ingest_chunks_per_second']} chunks/s")
        lines.append(f"  raw encode     {fresh['raw_encode_seconds']:8.2f} s  "
                     f"{fresh['raw_chunks_per_second']} chunks/s (SentenceTransformer.encode, same texts)")
        lines.append(f"  ratio          {fresh['ratio']:8.3f}    (CPU time ratio {fresh['cpu_ratio']}; target <= 1.11)")
        profile = fresh.get("profile")
        if profile:
            lines.append(f"  profiled ingest {profile['wall_seconds']:.2f} s, by stage:")
            for name, seconds in profile["stages"].items():
                lines.append(f"    {name:24s}{seconds:9.3f} s  {100 * profile['stage_share'][name]:5.1f}%")
    elif fresh:
        lines.append(f"  fresh ingest   reused ({fresh.get('note') or 'index rebuilt from cached vectors in '}"
                     f"{fresh.get('rebuilt_from_cached_vectors_seconds', '')}{' s' if 'note' not in fresh else ''})")
    re_ = report.get("reingest")
    if re_:
        lines.append(f"  re-ingest      {re_['seconds']:8.2f} s  one changed document ({', '.join(re_['changed'])}): "
                     f"{re_['chunks_embedded']} chunks embedded of {re_['chunks_total']}; only its own: "
                     f"{'yes' if re_['only_changed_document_embedded'] else 'NO'}")
        profile = re_.get("profile")
        if profile:
            lines.append(f"  profiled re-ingest {profile['wall_seconds']:.2f} s, by stage:")
            for name, seconds in profile["stages"].items():
                lines.append(f"    {name:24s}{seconds:9.3f} s  {100 * profile['stage_share'][name]:5.1f}%")
    return "\n".join(lines)
