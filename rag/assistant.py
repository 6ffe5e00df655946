"""The entry class: one ``Assistant`` over an index, used by the CLI, the UI and the evaluation."""

from __future__ import annotations

import json
import logging
import threading
import time
import warnings
from collections import OrderedDict
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

from .answer import Answerer
from .config import Config, default_index_dir, default_seeds_dir, project_home
from .documents import (display_path, expand_paths, load_documents, resolve_stored_path, source_stamp,
                        suffixed_id)
from .embedding import Embedder
from .generator import Generator, make_generator
from .errors import (EmptyCorpusError, IndexCorruptError, IndexMismatchError, IndexNotFoundError, InputError,
                     QuestionTruncatedWarning, RagError)
from .index import Embedded, Index, check_writable_target, disk_stamp, write_lock
from .store import DocumentInfo
from .reader import Reader, TrainedReader
from .retrieval import Retriever, doc_id_set, make_reranker
from .tokens import truncate_tokens
from .types import Answer, Document, IngestReport, Passage, Reading

log = logging.getLogger(__name__)

#: Where ``ingest`` reads, chunks and embeds: this process, or a Ray cluster (rag.distributed).
ENGINES = ("local", "ray")


class Assistant:
    """Question answering with citations over one index.

    >>> assistant = Assistant.load()                 # embeddings/default, built from seeds/ if missing
    >>> assistant.retrieve("question", k=10)         # list[Passage], best first
    >>> assistant.ask("question")                    # Answer with citations, or an abstention
    """

    def __init__(self, index: Index, config: Config | None = None, embedder: Embedder | None = None,
                 reader: Reader | None = None, generator: Generator | None = None) -> None:
        self.config = config or Config()
        self.embedder = embedder or Embedder(self.config.model_name, self.config.embed_dtype,
                                             self.config.embed_batch_size)
        self.reader = reader if reader is not None else load_reader(self.config)
        self.reranker = make_reranker(self.config.reranker, self.config.rerank_retrieval_weight)
        # Opt-in (Config.generator_url or $RAG_GENERATOR_URL); None answers by quoting only.
        self.generator = generator if generator is not None else make_generator(self.config, self.embedder)
        self._writing = threading.Lock()  # one write at a time in this process (the file lock: across processes)
        self._reloading = threading.Lock()
        self._failed_stamp: tuple[int, int, int] | None = None
        self._set_index(index)

    def _set_index(self, index: Index) -> None:
        model = index.manifest.get("model", {})
        if model.get("dimension", self.embedder.dimension) != self.embedder.dimension:
            raise IndexMismatchError(f"index dimension {model.get('dimension')} differs from the model's "
                                     f"{self.embedder.dimension}; rebuild it with: rag ingest --rebuild")
        # One assignment publishes index, retriever and answerer together: a request running on another
        # thread keeps the state it started with, and needs no lock to read it.
        self._state = _State(index, Retriever(index, self.embedder, self.config), Answerer(index, self.config))

    @property
    def index(self) -> Index:
        return self._state.index

    @property
    def retriever(self) -> Retriever:
        return self._state.retriever

    @property
    def answerer(self) -> Answerer:
        return self._state.answerer

    def refresh(self) -> bool:
        """Load the index again if another process (``rag ingest``, a second server) wrote a newer version.

        Called before every request; costs one ``stat`` when nothing changed. A newer version that cannot
        be loaded is reported once and the current one kept. Returns True when a newer version was loaded.
        """
        index = self._state.index
        if index.path is None or not index.is_stale():
            return False
        if not self._reloading.acquire(blocking=False):  # another thread is loading it: go on with this one
            return False
        try:
            stamp = disk_stamp(index.path)
            if stamp is None or stamp == self._failed_stamp or self._state.index.stamp == stamp:
                return False
            try:
                fresh = Index.load(index.path, self.config)
            except RagError as exc:
                self._failed_stamp = stamp
                log.warning("kept the loaded index: the newer one at %s cannot be loaded (%s)", index.path, exc)
                return False
            self._set_index(fresh)
            log.info("reloaded %s: written by another process (%d documents)", index.path, len(fresh.documents))
            return True
        finally:
            self._reloading.release()

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(cls, index_dir: str | Path | None = None, config: Config | None = None, *,
             build_if_missing: bool = True, progress: bool = False) -> "Assistant":
        """Open an index (default ``embeddings/default``); build the default one from ``seeds/`` if missing."""
        config = config or Config()
        if index_dir is not None and not isinstance(index_dir, (str, Path)):
            raise InputError(f"index_dir must be a folder path, got {type(index_dir).__name__} {index_dir!r}")
        folder = Path(index_dir) if index_dir is not None else default_index_dir(config)
        try:
            return cls(Index.load(folder, config), config)
        except IndexNotFoundError:
            if not (build_if_missing and index_dir is None):
                raise
        log.info("no index at %s: building it from %s", folder, default_seeds_dir())
        embedder = Embedder(config.model_name, config.embed_dtype, config.embed_batch_size)
        _report, index = ingest([default_seeds_dir()], folder, config, progress=progress, embedder=embedder)
        return cls(index, config, embedder)

    @classmethod
    def build(cls, paths: Sequence[str | Path], index_dir: str | Path | None, config: Config | None = None, *,
              progress: bool = False) -> "Assistant":
        """Index files or folders from scratch; saved to ``index_dir`` unless it is None (in memory)."""
        config = config or Config()
        docs, skipped = load_documents(paths)
        for path, reason in skipped:
            log.warning("skipped %s: %s", path, reason)
        return cls.from_documents(docs, config, index_dir, progress=progress,
                                  sources=[display_path(Path(p)) for p in paths])

    @classmethod
    def from_documents(cls, documents: Sequence[Document], config: Config | None = None,
                       index_dir: str | Path | None = None, *, progress: bool = False,
                       sources: Sequence[str] = ()) -> "Assistant":
        """Index ``documents`` (already loaded); saved to ``index_dir`` unless it is None."""
        if not documents:
            raise EmptyCorpusError("no documents to index")
        ids = [d.doc_id for d in documents]
        if len(set(ids)) != len(ids):
            raise InputError("document ids must be unique; duplicates: "
                             + ", ".join(sorted({i for i in ids if ids.count(i) > 1})))
        config = config or Config()
        embedder = Embedder(config.model_name, config.embed_dtype, config.embed_batch_size)
        folder = Path(index_dir) if index_dir is not None else None
        index, _ = Index.build(documents, config, embedder, progress=progress, sources=sources, target=folder)
        if folder is not None:
            with write_lock(folder, config.write_lock_timeout):
                index.save(folder)
        return cls(index, config, embedder)

    # ------------------------------------------------------------------ reading
    @property
    def documents(self) -> Mapping[str, Document]:
        """Indexed documents by id; ``documents[doc_id].text[start:end]`` is a quote."""
        self.refresh()
        return self._state.index.documents

    def info(self) -> dict[str, Any]:
        """What the "About this index" view shows."""
        self.refresh()
        index = self._state.index
        m = index.manifest
        return {"index": str(index.path) if index.path else "(in memory)",
                "documents": [{"doc_id": d.doc_id, "title": d.title, "path": d.path, "chunks": d.chunks}
                              for d in index.descriptions().values()],
                "vector_store": m.get("vector_store", {}),
                "chunks": len(index.chunks), "model": m.get("model", {}), "created_at": m.get("created_at"),
                "updated_at": m.get("updated_at"), "settings": m.get("settings", {}),
                "retriever": self.config.retriever, "reranker": self.config.reranker, "reader": self.reader.info()}

    def _question(self, question: Any) -> str:
        if not isinstance(question, str):
            raise InputError(f"question must be text, got {type(question).__name__}")
        try:
            question.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate: undecodable bytes from a terminal, or bad JSON
            raise InputError(f"the question holds characters that are not valid text (position {exc.start}); "
                             "retype it or check its encoding (UTF-8)") from None
        question = " ".join(question.split())
        if not question:
            raise InputError("the question is empty; type a question")
        limit = self.config.max_question_tokens
        cut, total = truncate_tokens(question, limit, self.config.encoding)
        if total > limit:
            warnings.warn(QuestionTruncatedWarning(
                f"question has {total} tokens; only the first {limit} are used (max_question_tokens)"), stacklevel=3)
            log.info("question truncated from %d to %d tokens", total, limit)  # the warning tells the caller
        return cut

    def _k(self, k: int | None) -> int:
        k = self.config.top_k if k is None else k
        if isinstance(k, bool) or not isinstance(k, int):
            raise InputError(f"k must be an integer, got {k!r}")
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}; ask for 1 or more passages")
        return k

    def retrieve(self, question: str, k: int | None = None, *, doc_ids: Collection[str] | None = None,
                 retriever: str | None = None) -> list[Passage]:
        """The ``k`` passages most relevant to ``question``, best first (reranked by the reader)."""
        question = self._question(question)
        k = self._k(k)
        self.refresh()
        return self._search(self._state, question, k, doc_ids, retriever)[0]

    def ask(self, question: str, k: int | None = None, *, doc_ids: Collection[str] | None = None,
            retriever: str | None = None) -> Answer:
        """A grounded answer with numbered citations, or an abstention with the closest passages."""
        question = self._question(question)
        k = self._k(k)
        self.refresh()
        state = self._state
        key = (question, k, None if doc_ids is None else tuple(sorted(doc_id_set(doc_ids))), retriever)
        cached = state.cached(key)
        if cached is not None:
            return cached
        passages, readings = self._search(state, question, k, doc_ids, retriever)
        answer = state.answerer.answer(question, passages, readings)
        if self.generator is not None:
            result = self.generator.generate(question, passages, answer, state.index.documents, readings)
            answer = replace(result.answer, mode=result.mode)
            if "generator unavailable" in result.mode:
                return answer  # not cached: the server may be back for the next ask
        state.remember(key, answer, self.config.answer_cache_size)
        return answer

    def _search(self, state: "_State", question: str, k: int, doc_ids: Collection[str] | None,
                retriever: str | None) -> tuple[list[Passage], list[Reading]]:
        """First-stage passages, the reader's readings of the top ones, reranked; the best ``k`` of them."""
        retr, index = state.retriever, state.index
        qvec = self.embedder.encode_one(question)
        passages = retr.search(question, qvec, max(k, self.config.reader_passages), mode=retriever, doc_ids=doc_ids)
        readings = self.reader.read(question, passages[:self.config.reader_passages], index.documents)
        passages = self.reranker.rerank(question, passages, readings)[:k]
        kept = {(p.doc_id, p.start, p.end): p for p in passages}
        readings = [replace(r, passage=kept[key]) for r in readings
                    if (key := (r.passage.doc_id, r.passage.start, r.passage.end)) in kept]
        return passages, readings

    # ------------------------------------------------------------------ writing
    def ingest(self, paths: Sequence[str | Path] | None = None, *, rebuild: bool = False,
               progress: bool = False) -> IngestReport:
        """Bring this assistant's index up to date with ``paths`` (see ``rag.assistant.ingest``).

        Asks keep being answered from the current version while this runs; the new one replaces it at the end.
        """
        folder = self.index.path
        if folder is None:
            raise InputError("this assistant's index lives in memory; build it with an index_dir to ingest")
        with self._writing:
            # ``ingest`` re-reads the index under the file lock when another process wrote it since.
            report, index = ingest(paths, folder, self.config, rebuild=rebuild, progress=progress,
                                   embedder=self.embedder, previous=self.index)
            if index is not self.index:
                self._set_index(index)
            return report

    def remove(self, doc_ids: Collection[str]) -> IngestReport:
        """Drop documents from the index by id."""
        doc_ids = doc_id_set(doc_ids)
        with self._writing:
            folder = self.index.path
            lock = write_lock(folder, self.config.write_lock_timeout) if folder is not None else nullcontext()
            with lock:
                if self.index.is_stale():  # another process wrote it: remove from that version, not ours
                    self._set_index(Index.load(folder, self.config))
                current = self.index
                unknown = doc_ids - current.store.doc_id_set()
                if unknown:
                    raise InputError(f"unknown document id(s): {', '.join(sorted(unknown))}")
                keep = [d for d in current.store.doc_ids() if d not in doc_ids]
                if not keep:
                    raise InputError("removing every document would leave an empty index; delete the folder instead")
                # Kept documents are named by id: only the removed ones' rows change, nothing is re-embedded.
                index, _ = Index.build(keep, self.config, self.embedder, previous=current,
                                       sources=current.manifest.get("sources", []), target=folder)
                if folder is not None:
                    index.save(folder)
                self._set_index(index)
        return IngestReport([], [], keep, sorted(doc_ids), [], len(index.chunks), 0,
                            str(folder or "(in memory)"))


@dataclass(frozen=True)
class _State:
    """What one request reads: an index and the stages over it, replaced together."""

    index: Index
    retriever: Retriever
    answerer: Answerer
    #: Answers already given over this index, by (question, k, doc_ids, retriever). Answers are frozen, so
    #: one may be handed to many callers; a new index brings a new state and so an empty cache.
    answers: "OrderedDict[tuple, Answer]" = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def cached(self, key: tuple) -> Answer | None:
        with self.lock:
            answer = self.answers.get(key)
            if answer is not None:
                self.answers.move_to_end(key)
            return answer

    def remember(self, key: tuple, answer: Answer, size: int) -> None:
        if size < 1:
            return
        with self.lock:
            self.answers[key] = answer
            while len(self.answers) > size:
                self.answers.popitem(last=False)


def load_reader(config: Config) -> Reader:
    """The reader ``config`` names, loaded once per process (``ModelError`` if its files are missing or altered)."""
    return TrainedReader.shared(config.reader_path or None, config.reader_precision, config.reader_batch_size)


def ingest(paths: Sequence[str | Path] | None = None, index_dir: str | Path | None = None,
           config: Config | None = None, *, rebuild: bool = False, progress: bool = False,
           embedder: Embedder | None = None, previous: Index | None = None,
           upgrade: bool = False, engine: str = "local", ray_address: str | None = None
           ) -> tuple[IngestReport, Index]:
    """Bring the index at ``index_dir`` up to date with ``paths`` and save it atomically.

    ``paths`` defaults to every source ingested before (``seeds/`` for a new
    index). Changed documents are re-embedded and unchanged ones keep their
    vectors; documents whose file vanished from a given folder (or, with no
    paths, from disk) are dropped; unreadable files are skipped and reported,
    and their previous version, if any, is kept. ``rebuild`` re-embeds
    everything and replaces an index built with other settings, model or format;
    ``upgrade`` does that only when the index is incompatible or unreadable
    (what ``make run`` wants for the default index, derived from seeds/).
    ``engine="ray"`` reads, chunks and embeds the files on a Ray cluster (``rag.distributed``; a local
    one unless ``ray_address`` or $RAY_ADDRESS names one); the index is written here, the same way.
    """
    config = config or Config()
    if engine not in ENGINES:
        raise InputError(f"engine {engine!r} is unknown; choose one of {', '.join(ENGINES)}")
    if index_dir is not None and not isinstance(index_dir, (str, Path)):
        raise InputError(f"index_dir must be a folder path, got {type(index_dir).__name__} {index_dir!r}")
    folder = Path(index_dir) if index_dir is not None else default_index_dir(config)
    check_writable_target(folder)  # before any work: a file or a foreign folder is refused, untouched
    embedder = embedder or Embedder(config.model_name, config.embed_dtype, config.embed_batch_size)
    with write_lock(folder, config.write_lock_timeout):
        sources: list[str] = []
        if previous is None or previous.path is None or previous.path.resolve() != folder.resolve() \
                or previous.is_stale():  # re-read under the lock: another writer may have saved since
            previous = None
        if previous is None:
            try:
                previous = Index.load(folder, config)
            except IndexNotFoundError:
                previous = None
            except (IndexMismatchError, IndexCorruptError) as exc:
                if not (rebuild or upgrade):
                    raise
                log.warning("rebuilding %s: %s", folder, exc)
                rebuild = True
                sources = _recorded_sources(folder)
                previous = None
        if previous is None and not paths and not sources and folder.is_dir() and any(folder.iterdir()) \
                and folder.resolve() != default_index_dir(config).resolve():
            # The seeds are the sources of the default index only; another index's are unknown now.
            raise InputError(f"the index at {folder} has no readable manifest, so the documents it was built "
                             f"from are unknown; rebuild it from them with: rag ingest PATHS --rebuild "
                             f"--index {folder}")
        report, index = _plan_and_build(previous, paths, config, embedder, rebuild=rebuild, progress=progress,
                                        sources=sources, folder=folder, engine=engine, ray_address=ray_address)
        if previous is None or report.modified or rebuild or _describes_differently(previous, index):
            index.save(folder)
            return report, index
        return report, previous


def _describes_differently(previous: Index, index: Index) -> bool:
    """True when settings (BM25's included), sources, or a document's path/title/metadata changed.

    The vectors may be the same; the saved index must still record what it was built with.
    """
    keys = ("settings", "bm25", "sources", "vector_store")
    if any(previous.manifest.get(k) != index.manifest.get(k) for k in keys):
        return True
    before = previous.descriptions()
    # A source's stamp counts too: kept stale, its file would be read again at every ingest.
    return any((d.path, d.title, d.meta, d.source_stamp) != (before[i].path, before[i].title, before[i].meta,
                                                             before[i].source_stamp)
               for i, d in index.descriptions().items() if i in before)


def _changed_files(paths: Sequence[Path], known: Mapping[str, DocumentInfo], home: Path, rebuild: bool
                   ) -> tuple[list[Path], list[Path], list[tuple[str, str]], dict[Path, str]]:
    """The files under ``paths``, those of them that may have changed since they were indexed, the paths
    skipped while listing, and the stamp of each file to read (taken before it is read).

    A file whose size and mtime (and its folder's catalogue's) are those recorded when it was read is not
    read again: re-ingesting a corpus of thousands of files reads only the changed ones.
    """
    files, listed_skips, _folders = expand_paths(paths)
    recorded = {} if rebuild else {resolve_stored_path(d.path, home).resolve(): d.source_stamp
                                   for d in known.values() if d.source_stamp}
    stamps: dict[Path, str] = {}
    to_read: list[Path] = []
    for f in files:
        stamp = source_stamp(f)
        resolved = f.resolve()
        if stamp and recorded.get(resolved) == stamp:
            continue
        stamps[resolved] = stamp
        to_read.append(f)
    return files, to_read, listed_skips, stamps


def _load_changed(paths: Sequence[Path], known: Mapping[str, DocumentInfo], home: Path, rebuild: bool
                  ) -> tuple[list[Document], list[tuple[str, str]], dict[Path, str]]:
    """Load the files under ``paths`` that may have changed (``_changed_files``)."""
    files, to_read, listed_skips, stamps = _changed_files(paths, known, home, rebuild)
    if len(to_read) == len(files):  # nothing to skip: load as given (its errors name the folders given)
        docs, skipped = load_documents(paths)
        return docs, skipped, stamps
    docs, skipped = load_documents(to_read, allow_empty=True) if to_read else ([], [])
    return docs, listed_skips + [s for s in skipped if s not in listed_skips], stamps


def _kinds_for(config: Config, previous: Index) -> tuple[str, ...]:
    """Vector store kinds ``previous`` may keep under ``config`` without a new version."""
    if config.vector_index != "auto":
        return (config.vector_index,)
    return ("ivf",) if len(previous.chunks) >= config.ivf_threshold else ("flat", "ivf")


def _stamps_by_id(new: Mapping[str, Document | str], stamps: Mapping[Path, str], home: Path) -> dict[str, str]:
    """Per document read now: the stamp of its file."""
    out = {}
    for doc_id, doc in new.items():
        if not isinstance(doc, str):
            stamp = stamps.get(resolve_stored_path(doc.path, home).resolve())
            if stamp:
                out[doc_id] = stamp
    return out


def _recorded_sources(folder: Path) -> list[str]:
    """Sources listed in a manifest we cannot otherwise trust (for --rebuild)."""
    try:
        sources = json.loads((folder / "manifest.json").read_text(encoding="utf-8")).get("sources", [])
    except (OSError, ValueError, AttributeError):
        return []
    if not isinstance(sources, list):
        return []
    return [s for s in sources if isinstance(s, str) and s]


def _with_unique_id(doc: Document, known: Mapping[str, DocumentInfo], new: Mapping[str, Document | str],
                    by_file: Mapping[Path, str], home: Path) -> Document:
    """The document under the id its file had before; or, when another file still holds its id
    (``r2023/summary.txt`` then ``r2024/summary.txt``), under the id with a suffix from its path, as
    ``load_documents`` names same-named files of one run, so neither replaces the other. A file that
    moved (its old path gone) keeps its id."""
    source = resolve_stored_path(doc.path, home).resolve()
    if source in by_file:
        return replace(doc, doc_id=by_file[source])
    holder = known.get(doc.doc_id)
    if doc.doc_id not in new and (holder is None or not resolve_stored_path(holder.path, home).exists()):
        return doc
    doc_id = suffixed_id(doc.doc_id, doc.path)
    log.warning("%s: the id %r belongs to %s; indexed as %r", doc.path, doc.doc_id,
                holder.path if holder is not None else "another file", doc_id)
    return replace(doc, doc_id=doc_id)


def _plan_and_build(previous: Index | None, paths: Sequence[str | Path] | None, config: Config, embedder: Embedder,
                    *, rebuild: bool, progress: bool, sources: list[str], folder: Path, engine: str = "local",
                    ray_address: str | None = None) -> tuple[IngestReport, Index]:
    """Work out added/changed/removed documents and build the new index (not saved)."""
    home = project_home()
    known = previous.descriptions() if previous is not None else {}
    sources = list(previous.manifest.get("sources", [])) if previous is not None else sources
    if paths:
        given = [Path(p) for p in paths]
    else:
        given = [resolve_stored_path(s, home) for s in sources] or [default_seeds_dir()]
    given_existing = [p for p in given if p.exists()]
    if not given_existing:
        raise EmptyCorpusError("no input: " + ", ".join(map(str, given)) + " do not exist")
    prepared: dict[str, Embedded] = {}
    stamps: dict[Path, str] = {}
    if engine == "ray":
        from .distributed import prepare_with_ray

        files, to_read, listed_skips, stamps = _changed_files(given_existing, known, home, rebuild)
        docs, skipped = [], listed_skips
        if to_read:  # nothing changed: no cluster is started
            docs, skipped, prepared = prepare_with_ray(
                given_existing if len(to_read) == len(files) else to_read, config,
                known=None if rebuild else {i: d.sha256 for i, d in known.items()}, address=ray_address)
            skipped = listed_skips + [s for s in skipped if s not in listed_skips]
    else:
        docs, skipped, stamps = _load_changed(given_existing, known, home, rebuild)
    skipped = [(str(p), "no such file or folder") for p in given if not p.exists()] + skipped
    _files, _ignored, folders = expand_paths(given_existing)
    folder_set = [f.resolve() for f in folders]
    skipped_paths = {Path(p).resolve() for p, _ in skipped}

    new: dict[str, Document | str] = {}  # a document id alone: keep the previous version as it is
    added, changed, unchanged = [], [], []
    by_file = {resolve_stored_path(d.path, home).resolve(): i for i, d in known.items()}
    for doc in docs:
        doc = _with_unique_id(doc, known, new, by_file, home)
        old = known.get(doc.doc_id)
        if old is None:
            added.append(doc.doc_id)
        elif old.sha256 != doc.sha256:
            changed.append(doc.doc_id)
        else:
            unchanged.append(doc.doc_id)
        new[doc.doc_id] = doc
    removed = []
    for doc_id, old in known.items():
        if doc_id in new:
            continue
        source = resolve_stored_path(old.path, home).resolve()
        in_given_folder = any(source == f or f in source.parents for f in folder_set)
        if source in skipped_paths:
            new[doc_id] = doc_id  # unreadable now: keep the version we have, the skip is reported
            unchanged.append(doc_id)
        elif (in_given_folder or not paths) and not source.exists():
            removed.append(doc_id)
        else:
            new[doc_id] = doc_id  # not part of this ingest: keep
            unchanged.append(doc_id)
    if not new:
        raise EmptyCorpusError("nothing left to index: every document was removed or unreadable")
    # Keep a stable order: previous order first, then new documents in load order.
    order = [d for d in known if d in new] + [d for d in new if d not in known]
    new_sources = sorted(set(sources) | {display_path(p, home) for p in given_existing})
    started = time.perf_counter()
    new_stamps = _stamps_by_id(new, stamps, home)
    if previous is not None and not rebuild and not (added or changed or removed) and list(known) == order \
            and previous.manifest.get("settings") == config.index_settings() \
            and previous.manifest.get("sources") == new_sources \
            and previous.manifest.get("bm25", {}).get("k1") == config.bm25_k1 \
            and previous.manifest.get("bm25", {}).get("b") == config.bm25_b \
            and previous.manifest.get("vector_store", {}).get("kind") in _kinds_for(config, previous) \
            and all(isinstance(d, str) or (d.title, d.path, d.meta) == (known[i].title, known[i].path, known[i].meta)
                    for i, d in new.items()) \
            and all(known[i].source_stamp == stamp for i, stamp in new_stamps.items()):
        # Nothing to change: no new version is built (at scale, building one costs a copy and a BM25 index).
        report = IngestReport([], [], sorted(unchanged), [], skipped, len(previous.chunks), 0, str(folder))
        return report, previous
    if rebuild and previous is not None:
        new = {d: previous.documents[v] if isinstance(v, str) else v for d, v in new.items()}
    index, embedded = Index.build([new[d] for d in order], config, embedder,
                                  previous=None if rebuild else previous, progress=progress, sources=new_sources,
                                  prepared=prepared, target=folder,
                                  source_stamps=new_stamps)
    if not rebuild and previous is not None and embedded and not (added or changed) \
            and previous.manifest.get("settings") != index.manifest.get("settings"):
        # Settings changed since the last build: everything was re-embedded.
        changed = [d for d in order if d in known]
        unchanged = []
    log.info("built index in %.1fs (%d chunks embedded)", time.perf_counter() - started, embedded)
    report = IngestReport(added, changed, sorted(set(unchanged) - set(changed)), removed, skipped, len(index.chunks),
                          embedded, str(folder))
    return report, index
