"""Distributed ingestion on Ray Data: read, parse and chunk files as a ``map``, embed as ``map_batches``.

``prepare_with_ray`` does on a Ray cluster what ``Index.build`` does in one process before it writes
anything: it turns files into documents, their chunks and the chunks' vectors. The index itself is
still built and saved by the driver (``Index.build(..., prepared=...)``), so the result is the same
index format whichever engine made it.

The pipeline, per file::

    from_items(file paths)  →  map: load + parse + chunk  →  flat_map: one row per chunk
                            →  map_batches over an actor pool: embed (the model loaded once per actor)

Documents and chunks cross Ray as JSON text of plain dicts and vectors as float32 arrays, so none of
our classes has to be pickled between machines. Document ids are assigned on the driver exactly as
``rag.documents.load_documents`` assigns them (catalogue titles, same-name suffixes), so both engines
give the same ids.

On one machine ``ray.init()`` starts a local cluster and stops it afterwards; with an address (or
``RAY_ADDRESS``) the work goes to that cluster, which is left running. Workers import this project
from their own installation (the ``ray`` extra), read the files at the paths the driver sees (a
shared folder on many machines), and never touch the network: the Hugging Face offline switches are
set in the job's runtime environment.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .chunking import Chunker
from .config import Config
from .documents import (SUPPORTED_SUFFIXES, _catalogue, display_path, expand_paths, load_document, slugify,
                        suffixed_id)
from .errors import ConfigError, DocumentError, EmptyCorpusError, RagError
from .index import Embedded, embedded_text
from .types import Block, Chunk, Document, Page, Section

log = logging.getLogger(__name__)

INSTALL_HINT = 'pip install -e ".[ray]"'
#: Environment every Ray worker runs with: no model hub, no telemetry, no tokenizer thread pools
#: fighting Ray's one-CPU-per-actor placement.
WORKER_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
              "HF_DATASETS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "TOKENIZERS_PARALLELISM": "false",
              "RAY_USAGE_STATS_ENABLED": "0"}
#: Input blocks per embedding actor: enough that a slow file (a long PDF) does not leave the other
#: actors idle at the end, few enough that per-block overhead stays small.
BLOCKS_PER_ACTOR = 8
MAX_BLOCKS = 1024
_SUFFIXES = ", ".join(SUPPORTED_SUFFIXES)
#: Bytes of one chunk row at most (a chunk of chunk_max_chars, its JSON and its embedded text), for
#: sizing blocks to about one embedding batch.
CHUNK_ROW_BYTES = 4096
MIN_BLOCK_BYTES = 64 * 1024
#: Embedding batches an actor gets per call: the embedder sorts the texts of one call into batches of about
#: the same length (less padding), which it cannot do within a call of a single batch.
BATCHES_PER_ACTOR_CALL = 8

# Row kinds of the flat dataset: a document, a file that could not be read, a chunk to embed.
_DOC, _SKIP, _CHUNK = "doc", "skip", "chunk"


# ---------------------------------------------------------------------- plain-dict serialisation
def document_to_dict(doc: Document) -> dict[str, Any]:
    """A document as a dict of JSON values (sections, blocks and pages as dicts)."""
    return dataclasses.asdict(doc)


def document_from_dict(data: Mapping[str, Any]) -> Document:
    return Document(doc_id=data["doc_id"], title=data["title"], path=data["path"], text=data["text"],
                    sha256=data["sha256"], sections=tuple(Section(**s) for s in data["sections"]),
                    blocks=tuple(Block(**b) for b in data["blocks"]), meta=dict(data["meta"]),
                    pages=tuple(Page(**p) for p in data["pages"]))


def chunk_from_dict(data: Mapping[str, Any]) -> Chunk:
    return Chunk(**data)


# ---------------------------------------------------------------------- what runs on the workers
def _load_and_chunk(row: dict[str, Any], *, config: Config, known: frozenset[str]) -> dict[str, Any]:
    """Ray ``map``: one file to its document and chunks (or the reason it was skipped)."""
    from .embedding import set_offline_environment

    set_offline_environment()
    meta = json.loads(row["meta"])
    try:
        doc = load_document(Path(row["path"]), doc_id=row["doc_id"], stored=row["stored"],
                            title=row["title"] or None, meta=meta)
    except DocumentError as exc:
        # The same reason text load_documents records.
        return {"ord": row["ord"], "kind": _SKIP, "payload": str(exc).split(": ", 1)[-1], "chunks": "[]"}
    chunks: list[dict[str, Any]] = []
    if doc.sha256 not in known:  # the index holds this text already: nothing to embed
        chunks = [dataclasses.asdict(c) | {"embed": embedded_text(c, doc.title, config.embed_headers)}
                  for c in Chunker.from_config(config).chunk(doc)]
    data = document_to_dict(doc) | {"chunked": doc.sha256 not in known}
    # JSON text, not nested Arrow columns: a document's meta mixes value types, which Arrow refuses.
    return {"ord": row["ord"], "kind": _DOC, "payload": json.dumps(data), "chunks": json.dumps(chunks)}


def _explode(row: dict[str, Any]) -> list[dict[str, Any]]:
    """Ray ``flat_map``: a document row, then one row per chunk, so embedding batches count chunks."""
    head = {"ord": row["ord"], "seq": -1, "kind": row["kind"], "payload": row["payload"], "text": ""}
    rows = [head]
    for seq, chunk in enumerate(json.loads(row["chunks"])):
        text = chunk.pop("embed")
        rows.append({"ord": row["ord"], "seq": seq, "kind": _CHUNK, "payload": json.dumps(chunk), "text": text})
    return rows


class ChunkEmbedder:
    """Ray ``map_batches`` callable: loads the embedder once per actor, then embeds the chunk rows of each batch.

    Other rows (documents, skipped files) pass through with a zero vector, so every batch keeps one
    float32 ``vector`` column of the model's dimension.
    """

    def __init__(self, model_name: str, dtype: str, batch_size: int) -> None:
        from .embedding import Embedder, set_offline_environment

        set_offline_environment()
        self.error: RagError | None = None
        try:
            self.embedder = Embedder(model_name, dtype, batch_size)
        except RagError as exc:
            # Raised from the first batch instead: Ray reports an error in an actor's __init__ only as text,
            # an error in a task as the exception itself, which the driver re-raises (ModelError, exit 5).
            self.error = exc

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.error is not None:
            raise self.error
        kinds = batch["kind"]
        is_chunk = np.asarray([k == _CHUNK for k in kinds], dtype=bool)
        vectors = np.zeros((len(kinds), self.embedder.dimension), dtype=np.float32)
        if is_chunk.any():
            vectors[is_chunk] = self.embedder.encode([str(t) for t in batch["text"][is_chunk]])
        # The embedded text is not needed back on the driver.
        return {"ord": batch["ord"], "seq": batch["seq"], "kind": kinds, "payload": batch["payload"],
                "vector": vectors}


# ---------------------------------------------------------------------- the driver
@dataclass
class _File:
    """What the driver works out about one file before it is read (as load_documents would)."""

    ord: int
    path: Path
    stored: str
    base_id: str  # slugify(stem): the id unless another file with that name was loaded before
    title: str | None
    meta: dict[str, Any]
    doc_id: str = ""  # assigned assuming every earlier file loads; corrected after loading if not


def _plan(files: Sequence[Path], home: Path | None) -> tuple[list[_File], dict[int, tuple[str, str]]]:
    """Files to read, with their catalogue title and metadata and provisional ids; and the files refused by
    name alone (keyed by position, so the skipped list keeps load_documents' order)."""
    planned: list[_File] = []
    refused: dict[int, tuple[str, str]] = {}
    catalogues: dict[Path, dict[str, dict]] = {}
    for i, f in enumerate(files):
        try:
            str(f).encode("utf-8")
        except UnicodeEncodeError:
            shown = str(f).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            refused[i] = (shown, "the file name is not valid UTF-8; rename the file")
            continue
        folder = f.resolve().parent
        if folder not in catalogues:
            catalogues[folder] = _catalogue(folder)
        entry = catalogues[folder].get(f.name, {})
        meta = {k: v for k, v in entry.items() if k not in ("file", "title") and v is not None}
        meta["file"] = f.name
        planned.append(_File(i, f, display_path(f, home), slugify(f.stem), entry.get("title"), meta))
    _assign_ids(planned)
    return planned, refused


def _assign_ids(files: Iterable[_File]) -> None:
    """load_documents' rule: a second file whose name gives a taken id gets one suffixed by its path."""
    used: dict[str, str] = {}
    for f in files:
        f.doc_id = f.base_id
        if f.doc_id in used and used[f.doc_id] != f.stored:
            f.doc_id = suffixed_id(f.base_id, f.stored)
        used[f.doc_id] = f.stored


def _import_ray():
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # before ray is imported: it reads this at start-up
    try:
        import ray
        import ray.data  # noqa: F401 - the Data library is a separate part of the ray[data] extra
    except ImportError as exc:
        raise ConfigError(f"the ray engine needs Ray Data, which is not installed ({exc}); install it with: "
                          f"{INSTALL_HINT}") from exc
    return ray


@contextlib.contextmanager
def ray_cluster(address: str | None = None, *, verbose: bool | None = None) -> Iterator[Any]:
    """Connect to the Ray cluster at ``address`` (else ``RAY_ADDRESS``), or start a local one for the duration.

    Yields the ``ray`` module. A local cluster this started is shut down at the end; from a cluster given
    by address this only disconnects, and it is left running. When this process is already connected
    (``ray.init`` called by the caller), that connection is used and left as it is.
    """
    ray = _import_ray()
    verbose = log.isEnabledFor(logging.INFO) if verbose is None else verbose
    address = address or os.environ.get("RAY_ADDRESS") or None
    opened = False
    if not ray.is_initialized():
        common = dict(runtime_env={"env_vars": dict(WORKER_ENV)}, log_to_driver=verbose,
                      logging_level=logging.INFO if verbose else logging.ERROR)
        local = address in (None, "local")
        try:
            if local:
                # "local": always a new cluster of this machine's CPUs, even where `ray start` left one
                # running (or its address file behind); connecting to that one is --ray-address auto.
                ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False, **common)
            else:
                ray.init(address=address, **common)
        except ConnectionError as exc:
            raise ConfigError(
                f"cannot connect to the Ray cluster at {address!r} ({exc}); start it on the head machine with "
                "`ray start --head --port=6379` and give HEAD:6379 (--ray-address or RAY_ADDRESS); a cluster "
                "with token authentication (Ray's default once ~/.ray/auth_token exists) also needs "
                "RAY_AUTH_MODE=token here and the head's token in ~/.ray/auth_token") from exc
        opened = True
        log.info("ray: %s with %s CPUs", "local cluster" if local else f"cluster at {address}",
                 ray.cluster_resources().get("CPU", 0))
    try:
        with _quiet_ray_data(verbose):
            yield ray
    finally:
        if opened:
            ray.shutdown()


@contextlib.contextmanager
def _quiet_ray_data(verbose: bool) -> Iterator[None]:
    """Ray Data logs every execution to the console (and warns when progress bars are off): keep its
    console quiet unless verbose. Its log file in the session folder still has everything."""
    handlers = [h for h in logging.getLogger("ray.data").handlers if not isinstance(h, logging.FileHandler)]
    levels = [h.level for h in handlers]
    if not verbose:
        for h in handlers:
            # Not even its errors: each one also reaches the caller as an exception (ours re-raised as is).
            h.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for h, level in zip(handlers, levels):
            h.setLevel(level)


def _rag_error(exc: BaseException) -> RagError | None:
    """The project error behind a Ray task or actor failure (Ray wraps the exception it carries)."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, RagError):
            # Ray re-raises a worker's exception as a subclass of both RayTaskError and its class; the
            # original (with its one-line message) is its ``cause``.
            # Ray Data also appends its retry advice to the message: our message is the first line.
            inner = getattr(e, "cause", None)
            found = inner if isinstance(inner, RagError) else e
            message = str(found).split("\nFailed to apply", 1)[0]
            return found if message == str(found) else type(found)(message)
        stack.extend([e.__cause__, e.__context__, getattr(e, "cause", None)])
    return None


def prepare_with_ray(paths: Sequence[str | Path], config: Config, *, known: Mapping[str, str] | None = None,
                     address: str | None = None, num_actors: int | None = None, home: Path | None = None,
                     progress: bool = False
                     ) -> tuple[list[Document], list[tuple[str, str]], dict[str, Embedded]]:
    """Load, chunk and embed the files under ``paths`` on a Ray cluster.

    Returns what ``load_documents`` returns (documents in load order, skipped ``(path, reason)``) plus an
    ``Embedded`` per document ``sha256`` for ``Index.build(..., prepared=...)``. Documents whose sha256 is
    among the values of ``known`` (doc_id → sha256 of what the index holds) are loaded but neither
    chunked nor embedded. ``num_actors`` embedding actors (default: one per CPU of the cluster), each
    holding the model once, embed calls of ``BATCHES_PER_ACTOR_CALL`` batches of ``config.embed_batch_size``
    chunks each.

    Raises ``EmptyCorpusError`` like ``load_documents``, ``ConfigError`` when Ray is not installed or the
    cluster cannot be reached, ``ModelError`` when a worker cannot load the model offline.
    """
    if not paths:
        raise EmptyCorpusError(f"no input: give at least one file or folder of documents ({_SUFFIXES})")
    if num_actors is not None and num_actors < 1:
        raise ConfigError(f"num_actors must be at least 1, got {num_actors}")
    Chunker.from_config(config)  # bad chunk settings fail here, not inside a worker
    from .embedding import model_path

    model_path(config.model_name)  # a model that is not installed fails on the driver first

    files, skipped, _folders = expand_paths(paths)
    planned, refused = _plan(files, home)
    known_shas = frozenset((known or {}).values())
    rows: dict[int, dict[str, Any]] = {}
    chunk_rows: dict[int, list[tuple[int, str, np.ndarray]]] = {}
    if planned:
        with ray_cluster(address) as ray:
            try:
                rows, chunk_rows = _run(ray, planned, config, known_shas, num_actors, progress)
            except Exception as exc:  # noqa: BLE001 - Ray wraps worker errors; surface ours as they are
                cause = _rag_error(exc)
                if cause is not None:
                    raise cause from None
                raise
    return _collect(paths, planned, refused, skipped, rows, chunk_rows, config)


@contextlib.contextmanager
def _data_context(ray: Any, **values: Any) -> Iterator[None]:
    """Ray Data settings for the datasets made inside (each dataset copies the context when it is made),
    put back afterwards: the process may go on using Ray for other work."""
    ctx = ray.data.DataContext.get_current()
    saved = {name: getattr(ctx, name) for name in values}
    for name, value in values.items():
        setattr(ctx, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(ctx, name, value)


def _items(planned: Sequence[_File]) -> list[dict[str, Any]]:
    """The dataset's input rows: one per file, with what the driver decided about it."""
    return [{"ord": f.ord, "path": str(f.path), "stored": f.stored, "doc_id": f.doc_id, "title": f.title or "",
             "meta": json.dumps(f.meta)} for f in planned]


def _run(ray: Any, planned: Sequence[_File], config: Config, known: frozenset[str], num_actors: int | None,
         progress: bool) -> tuple[dict[int, dict[str, Any]], dict[int, list[tuple[int, str, np.ndarray]]]]:
    """Run the pipeline; return the document (or skip) row per file and the (seq, chunk, vector) rows per file.

    The parse stage asks for no CPU: the actors hold one each, and Ray Data cannot fuse a flat_map (which
    changes the row count) into a map_batches of a fixed batch size, so parse tasks that asked for a CPU
    would wait for ever behind actors holding them all. Parsing is a small share of the work.
    """
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    actors = num_actors or cpus
    blocks = min(len(items := _items(planned)), MAX_BLOCKS, actors * BLOCKS_PER_ACTOR)
    parsers = min(cpus, blocks)  # more would only make Ray Data warn that they cannot all be busy
    rows: dict[int, dict[str, Any]] = {}
    chunk_rows: dict[int, list[tuple[int, str, np.ndarray]]] = {}
    # Small blocks of chunk rows: an actor embeds whole blocks, so one long document in one block would keep
    # every other actor idle. The actor pool bundles blocks back up to a batch.
    block_bytes = max(MIN_BLOCK_BYTES, config.embed_batch_size * CHUNK_ROW_BYTES)
    # raise_original_map_exception: a worker's ModelError reaches the driver as itself, not as text in a
    # UserCodeException.
    with _data_context(ray, enable_progress_bars=progress, target_max_block_size=block_bytes,
                       raise_original_map_exception=True), \
            warnings.catch_warnings():
        # max_restarts goes the only way Ray 2.60 takes it: as a remote argument, which it marks deprecated.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*is deprecated")
        # A corpus of a few files has fewer blocks than actors; Ray Data warns that some will idle.
        warnings.filterwarnings("ignore", message="The (minimum|maximum) number of concurrent")
        ds = (ray.data.from_items(items, override_num_blocks=blocks)
              .map(_load_and_chunk, fn_kwargs={"config": config, "known": known}, num_cpus=0, concurrency=parsers)
              .flat_map(_explode, num_cpus=0, concurrency=parsers)
              .map_batches(ChunkEmbedder, batch_size=config.embed_batch_size * BATCHES_PER_ACTOR_CALL,
                           batch_format="numpy",
                           fn_constructor_args=(config.model_name, config.embed_dtype, config.embed_batch_size),
                           compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1,
                           # A worker that dies fails the ingest (nothing is written; run it again) instead
                           # of being restarted for ever on a batch that kills it each time.
                           max_restarts=0))
        for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
            for o, seq, kind, payload, vector in zip(batch["ord"], batch["seq"], batch["kind"], batch["payload"],
                                                     batch["vector"]):
                if kind == _CHUNK:
                    chunk_rows.setdefault(int(o), []).append((int(seq), str(payload), vector))
                else:
                    rows[int(o)] = {"kind": str(kind), "payload": str(payload)}
    return rows, chunk_rows


def _collect(paths: Sequence[str | Path], planned: Sequence[_File], refused: Mapping[int, tuple[str, str]],
             skipped: list[tuple[str, str]], rows: Mapping[int, dict[str, Any]],
             chunk_rows: Mapping[int, list[tuple[int, str, np.ndarray]]],
             config: Config) -> tuple[list[Document], list[tuple[str, str]], dict[str, Embedded]]:
    """Documents in load order, ids as load_documents gives them, and the Embedded per sha256."""
    by_ord = {f.ord: f for f in planned}
    loaded: list[_File] = []
    docs: dict[int, Document] = {}
    for i in sorted(set(by_ord) | set(refused)):
        if i in refused:
            skipped.append(refused[i])
            continue
        row = rows.get(i)
        if row is None:  # cannot happen unless Ray lost a row; never index half a corpus silently
            raise RagError(f"the Ray pipeline returned nothing for {by_ord[i].path}; run the ingest again")
        if row["kind"] == _SKIP:
            log.info("skipped %s: %s", by_ord[i].path, row["payload"])
            skipped.append((str(by_ord[i].path), row["payload"]))
            continue
        loaded.append(by_ord[i])
        docs[i] = document_from_dict(json.loads(row["payload"]))
    provisional = {f.ord: f.doc_id for f in loaded}
    _assign_ids(loaded)  # again, over the files that did load: a failed file frees its name for the next
    if not docs:
        detail = "; ".join(f"{Path(p).name}: {r}" for p, r in skipped) or f"no {_SUFFIXES} files found"
        raise EmptyCorpusError(f"no readable documents in {', '.join(map(str, paths))} ({detail})")

    prepared: dict[str, Embedded] = {}
    conflicting: set[str] = set()
    out: list[Document] = []
    for f in loaded:
        doc = docs[f.ord]
        chunked = json.loads(rows[f.ord]["payload"]).get("chunked", True)
        parts = sorted(chunk_rows.get(f.ord, []), key=lambda r: r[0])
        chunks = tuple(chunk_from_dict(json.loads(p)) for _s, p, _v in parts)
        if f.doc_id != provisional[f.ord]:
            # A file before it with the same name failed to load, so this one keeps the plain id. The id
            # may be the title too (a name with no letters), and the title is embedded: read it again here.
            again = load_document(f.path, doc_id=f.doc_id, stored=f.stored, title=f.title, meta=f.meta)
            if again.title != doc.title:
                chunked = False  # vectors of another title: Index.build embeds this one itself
            doc = again
            chunks = tuple(dataclasses.replace(c, doc_id=f.doc_id) for c in chunks)
        out.append(doc)
        if not chunked:
            continue
        dim = parts[0][2].shape[0] if parts else 0
        vectors = (np.stack([v for _s, _p, v in parts]).astype(np.float32, copy=False) if parts
                   else np.zeros((0, dim), dtype=np.float32))
        embedded = Embedded(chunks=chunks, vectors=np.ascontiguousarray(vectors))
        previous = prepared.get(doc.sha256)
        if previous is None and doc.sha256 not in conflicting:
            prepared[doc.sha256] = embedded
        elif previous is not None and not _same_content(previous, embedded, doc, out, config):
            # Two files with the same text but other sections or (embedded) titles: one Embedded per sha256
            # cannot hold both, so neither is prepared and Index.build embeds them itself.
            log.info("documents with the same text (sha256 %s) chunk or embed differently; left to Index.build",
                     doc.sha256[:12])
            conflicting.add(doc.sha256)
            del prepared[doc.sha256]
    return out, skipped, prepared


def _same_content(a: Embedded, b: Embedded, doc: Document, docs: Sequence[Document], config: Config) -> bool:
    """Would ``b`` be embedded exactly as ``a`` (chunk spans and kinds, and the title when headers are embedded)?"""
    def key(e: Embedded) -> list[tuple]:
        return [(c.section, c.start, c.end, c.kind) for c in e.chunks]

    if key(a) != key(b):
        return False
    if not config.embed_headers:
        return True
    first = next(d for d in docs if d.sha256 == doc.sha256)
    return first.title == doc.title
