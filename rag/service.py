"""One service over one ``Assistant``: what the web UI, ``rag chat`` and the REST API (``rag api``) share.

>>> service = Service(Assistant.load())
>>> turn = service.ask("How are women trafficked in Myanmar?")          # FollowupAnswer
>>> service.ask("and in Laos?", history=[turn.searched]).searched        # 'How are women trafficked in Laos?'
>>> service.add_files([("notes.txt", b"Zebras live near the lamp post.")])   # UploadResult
>>> service.remove("notes")                                               # RemoveResult

What it adds to the ``Assistant``:

* **Checked arguments** with one message each that names the bad value and the fix: ``k`` between 1 and
  ``max_k``, document ids that exist (``UnknownDocumentError``), an optional cap on a question's length
  (``QuestionTooLongError``), history that is a list of questions.
* **Follow-ups**: ``ask`` goes through ``rag.conversation.ask_in_context`` ("and in Laos?" is resolved
  against the history, and an answer to a new subject must speak about it). ``resolve_history`` turns a
  conversation's questions as typed (an OpenAI ``messages`` list) into the questions as searched.
* **Uploads**: ``add_files`` checks each file (type, size, then parsed exactly as the indexer will read it),
  saves the good ones under generated names in the uploads folder and indexes them; a refused file changes
  nothing and gets a reason. This is the logic that lived in ``ui/app.py`` (``add_uploads``,
  ``_check_upload``, ``safe_upload_name``).
* **Removal** of one document by id, deleting the uploaded copy of an uploaded one.
* **Writes one at a time** (uploads and removals take one lock, so two uploads of one name cannot
  interleave their file writes); asks and reads never wait for it: the Assistant answers from the index it
  has until a write publishes the new one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, Callable, Collection, Mapping, Sequence, Union

from .assistant import Assistant
from .config import Config, project_home
from .conversation import FollowupAnswer, ask_in_context, resolve_followup
from .documents import document_from_bytes, resolve_stored_path
from .errors import DocumentError, InputError, RagError
from .tokens import truncate_tokens
from .types import Passage

__all__ = ["DocumentInfo", "LastDocumentError", "NothingAddedError", "QuestionLength", "QuestionTooLongError",
           "Rejection", "RemoveResult", "Service", "UnknownDocumentError", "UnsupportedFileError", "UploadResult",
           "UploadTooLargeError", "human_size", "resolve_history", "safe_upload_name"]

log = logging.getLogger(__name__)

#: The most passages one ask may retrieve (the UI's slider goes this far; more only costs time).
MAX_K = 50
#: Characters of a file's original name kept in its generated name.
UPLOAD_SLUG_CHARS = 60
#: Document ids listed in an "unknown document id" message before "…".
SHOWN_IDS = 12
_SLUG = re.compile(r"[^a-z0-9]+")

#: What ``add_files`` takes: a file on disk, or a client's file as (name, bytes) or (name, binary file object).
UploadSource = Union[str, "os.PathLike[str]", tuple[str, bytes], tuple[str, IO[bytes]]]


# ---------------------------------------------------------------------- errors
class UnknownDocumentError(InputError):
    """A document id that is not in the index."""


class LastDocumentError(InputError):
    """Removing this document would leave the index empty."""


class QuestionTooLongError(InputError):
    """A question (or a history entry) over the service's character limit."""


class UnsupportedFileError(InputError):
    """An upload of a file type the index does not take (``Config.allowed_extensions``)."""


class UploadTooLargeError(InputError):
    """An upload over ``Config.max_upload_bytes``."""


class NothingAddedError(InputError):
    """Every file of an upload was refused; ``result`` says why for each."""

    def __init__(self, result: "UploadResult") -> None:
        reasons = "; ".join(f"{r.file}: {r.reason}" for r in result.rejected)
        super().__init__(f"nothing was added: {reasons}")
        self.result = result


# ---------------------------------------------------------------------- results
@dataclass(frozen=True)
class QuestionLength:
    """A question's length in tokens against ``Config.max_question_tokens`` (longer ones are cut)."""

    tokens: int
    limit: int

    @classmethod
    def of(cls, question: str, config: Config) -> "QuestionLength":
        """Counted as the library counts before it cuts (``Assistant._question``)."""
        _cut, total = truncate_tokens(" ".join(str(question).split()), config.max_question_tokens, config.encoding)
        return cls(total, config.max_question_tokens)

    @property
    def truncated(self) -> bool:
        return self.tokens > self.limit

    def notice(self) -> str:
        """What the user is told when the question was cut ("" when it was not)."""
        if not self.truncated:
            return ""
        return (f"Only the first {self.limit} tokens of your question were used (it has {self.tokens}); "
                "the rest was not searched. Ask a shorter question to search all of it.")


@dataclass(frozen=True)
class DocumentInfo:
    """One indexed document, as listed to callers (ids are what ``doc_ids`` filters take)."""

    doc_id: str
    title: str
    path: str
    chunks: int

    def to_dict(self) -> dict[str, Any]:
        return {"doc_id": self.doc_id, "title": self.title, "path": self.path, "chunks": self.chunks}


@dataclass(frozen=True)
class Rejection:
    """A refused upload: the client's file name, why, and a short code ("unsupported_type", "too_large",
    "unreadable", "invalid")."""

    file: str
    reason: str
    code: str = "invalid"

    def to_dict(self) -> dict[str, str]:
        return {"file": self.file, "reason": self.reason, "code": self.code}


@dataclass(frozen=True)
class UploadResult:
    """What one ``add_files`` call did; ``to_dict`` is the UI's ``/upload`` answer and the API's."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    rejected: tuple[Rejection, ...] = ()
    #: doc_id → the client's file name it came from.
    files: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    documents: int = 0
    chunks: int = 0
    seconds: float = 0.0
    summary: str = ""

    @property
    def ok(self) -> bool:
        """No file was refused."""
        return not self.rejected

    @property
    def accepted(self) -> tuple[str, ...]:
        """Ids of the files that are now indexed (added, changed or already there)."""
        return self.added + self.changed + self.unchanged

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "added": list(self.added), "changed": list(self.changed),
                "unchanged": list(self.unchanged), "rejected": [r.to_dict() for r in self.rejected],
                "files": dict(self.files), "documents": self.documents, "chunks": self.chunks,
                "seconds": round(self.seconds, 2), "summary": self.summary}


@dataclass(frozen=True)
class RemoveResult:
    """What ``remove`` did: the document dropped, what is left, and the uploaded file deleted (if it was one)."""

    removed: str
    documents: int
    chunks: int
    deleted_file: str | None = None
    seconds: float = 0.0
    summary: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"removed": self.removed, "documents": self.documents, "chunks": self.chunks,
                "deleted_file": self.deleted_file, "seconds": round(self.seconds, 2), "summary": self.summary}


# ---------------------------------------------------------------------- helpers
def human_size(n: int) -> str:
    """Bytes as "20 MB", "1.5 MB" or "49 KB" (binary units)."""
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f}".removesuffix(".0") + " MB"
    return f"{max(1, round(n / 1024))} KB"


def safe_upload_name(original: str, ext: str, taken: Callable[[str], bool] = lambda name: False,
                     content: bytes = b"") -> str:
    """A generated file name for an upload: a slug of the original stem plus the (checked) extension.

    Never a path: only ``[a-z0-9-]`` and the extension survive. ``taken(name)``
    says a name is in use by another document; then a content hash is appended.
    """
    stem = Path(str(original).replace("\\", "/")).name
    stem = stem[: -len(Path(stem).suffix)] if Path(stem).suffix else stem
    slug = _SLUG.sub("-", stem.lower()).strip("-")[:UPLOAD_SLUG_CHARS].strip("-") or "document"
    name = f"{slug}{ext}"
    if taken(name):
        name = f"{slug}-{hashlib.sha256(content or original.encode()).hexdigest()[:8]}{ext}"
    return name


def resolve_history(questions: Sequence[str]) -> list[str]:
    """A conversation's questions as typed, oldest first → as searched, each resolved against those before it.

    What ``ask(history=…)`` takes, for callers that keep only what the user typed (an OpenAI ``messages``
    list): ["How are women trafficked in Myanmar?", "and in Laos?"] → [..., "How are women trafficked in Laos?"].
    """
    resolved: list[str] = []
    for question in questions:
        text = " ".join(str(question).split())
        if text:
            resolved.append(resolve_followup(text, resolved))
    return resolved


def _size_of(source: Any) -> int:
    """The byte size of an upload source without reading it (a file object is measured by seeking)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return len(source)
    if hasattr(source, "seek") and hasattr(source, "tell"):
        here = source.tell()
        size = source.seek(0, os.SEEK_END)
        source.seek(here)
        return int(size)
    return Path(source).stat().st_size


def _read(source: Any) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if hasattr(source, "read"):
        source.seek(0)
        return source.read()
    return Path(source).read_bytes()


def _check_upload(source: Any, display: str, config: Config) -> tuple[str, bytes]:
    """Validate one uploaded file's type and size and read it; returns (extension, bytes).

    Raises ``UnsupportedFileError``, ``UploadTooLargeError`` or ``DocumentError``; what the file holds is
    checked by parsing it, as the indexer will (``add_files``).
    """
    ext = Path(display).suffix.lower()
    allowed = tuple(e.lower() for e in config.allowed_extensions)
    if ext not in allowed:
        raise UnsupportedFileError(f"only {', '.join(allowed)} files can be added "
                                   f"(this is {ext or 'a file without extension'})")
    try:
        size = _size_of(source)
    except OSError as exc:
        raise DocumentError(f"cannot be read ({exc.strerror or exc})") from exc
    if size > config.max_upload_bytes:
        raise UploadTooLargeError(f"{human_size(size)} is over the upload limit of "
                                  f"{human_size(config.max_upload_bytes)}")
    try:
        raw = _read(source)
    except OSError as exc:
        raise DocumentError(f"cannot be read ({exc.strerror or exc})") from exc
    return ext, raw


def _rejection_code(exc: RagError) -> str:
    if isinstance(exc, UnsupportedFileError):
        return "unsupported_type"
    if isinstance(exc, UploadTooLargeError):
        return "too_large"
    if isinstance(exc, DocumentError):
        return "unreadable"
    return "invalid"


def _split_source(item: Any) -> tuple[Any, str | None]:
    """(what to read, the client's name or None) for one ``add_files`` item."""
    if isinstance(item, tuple):
        if len(item) != 2 or not isinstance(item[0], str):
            raise InputError(f"an upload is a path or a (name, bytes) pair, got a tuple of {len(item)}")
        return item[1], item[0]
    if isinstance(item, (str, os.PathLike)):
        return Path(item), None
    raise InputError(f"an upload is a path or a (name, bytes) pair, got {type(item).__name__}")


# ---------------------------------------------------------------------- the service
class Service:
    """Asks, reads and writes over one ``Assistant``, with checked arguments (see the module's docstring).

    ``uploads_dir`` is where uploaded files are kept (default ``<project home>/uploads``, the UI's);
    ``max_question_chars`` caps a question's length (None: no cap; the library cuts a question at
    ``Config.max_question_tokens`` tokens anyway, with a warning).
    """

    def __init__(self, assistant: Assistant, *, uploads_dir: str | Path | None = None, max_k: int = MAX_K,
                 max_question_chars: int | None = None) -> None:
        if isinstance(max_k, bool) or not isinstance(max_k, int) or max_k < 1:
            raise InputError(f"max_k must be a whole number of at least 1, got {max_k!r}")
        self.assistant = assistant
        self.uploads_dir = Path(uploads_dir) if uploads_dir is not None else project_home() / "uploads"
        self.max_k = max_k
        self.max_question_chars = max_question_chars
        # One write (upload or removal) at a time: an upload writes its files before it indexes them, and
        # the Assistant's own lock covers only the indexing.
        self._writes = threading.Lock()

    @property
    def config(self) -> Config:
        return self.assistant.config

    # ------------------------------------------------------------------ arguments
    def _question(self, question: Any, what: str = "question") -> str:
        if not isinstance(question, str):
            raise InputError(f"{what} must be text, got {type(question).__name__}")
        question = " ".join(question.split())
        limit = self.max_question_chars
        if limit is not None and len(question) > limit:
            raise QuestionTooLongError(
                f"the {what} has {len(question)} characters, over the limit of {limit}; ask a shorter one "
                f"(only its first {self.config.max_question_tokens} tokens are searched anyway)")
        return question

    def _history(self, history: Sequence[str] | None) -> list[str]:
        if history is None:
            return []
        if isinstance(history, str) or not isinstance(history, Sequence):
            raise InputError(f"history must be a list of the earlier questions (as searched), got "
                             f"{type(history).__name__}")
        return [h for h in (self._question(h, "history entry") for h in history) if h]

    def _k(self, k: Any) -> int:
        if k is None:
            return min(self.config.top_k, self.max_k)
        if isinstance(k, bool) or not isinstance(k, int):
            raise InputError(f"k (the number of passages) must be a whole number, got {k!r}")
        if not 1 <= k <= self.max_k:
            raise InputError(f"k (the number of passages) must be between 1 and {self.max_k}, got {k}")
        return k

    def doc_filter(self, doc_ids: Collection[str] | str | None) -> list[str] | None:
        """``doc_ids`` checked: None for "all documents" (also when every id is given), else the ids.

        Unknown ids are an ``UnknownDocumentError`` listing the known ones; an empty list an ``InputError``.
        """
        if doc_ids is None:
            return None
        if isinstance(doc_ids, str):
            doc_ids = [doc_ids]
        selected = list(doc_ids)
        if any(not isinstance(d, str) for d in selected):
            raise InputError(f"doc_ids must be document ids (text), got {selected!r}")
        if not selected:
            raise InputError("select at least one document to search (doc_ids is empty)")
        known = self.assistant.documents
        unknown = sorted(set(selected) - set(known))
        if unknown:
            raise UnknownDocumentError(f"unknown document id(s): {', '.join(unknown)}; the index holds "
                                       f"{_listing(known)}")
        if set(selected) >= set(known):
            return None
        return list(dict.fromkeys(selected))

    # ------------------------------------------------------------------ reading
    def ask(self, question: str, *, history: Sequence[str] | None = None, k: int | None = None,
            doc_ids: Collection[str] | None = None) -> FollowupAnswer:
        """Answer ``question`` as a turn of a conversation (``history``: the earlier questions as searched).

        A follow-up ("and in Laos?") is resolved against the history before it is searched; the turn holds
        the question asked, the one searched, and the ``Answer``.
        """
        question = self._question(question)
        if not question:
            raise InputError("the question is empty; type a question")
        history = self._history(history)
        k = self._k(k)
        ids = self.doc_filter(doc_ids)
        started = time.perf_counter()
        turn = ask_in_context(self.assistant, question, history, k=k, doc_ids=ids)
        log.info("answered in %.2fs (abstained=%s): %s", time.perf_counter() - started, turn.answer.abstained,
                 turn.searched)
        return turn

    def retrieve(self, question: str, *, k: int | None = None,
                 doc_ids: Collection[str] | None = None) -> list[Passage]:
        """The ``k`` passages most relevant to ``question``, best first (reranked by the reader)."""
        question = self._question(question)
        return self.assistant.retrieve(question, k=self._k(k), doc_ids=self.doc_filter(doc_ids))

    def question_length(self, question: str) -> QuestionLength:
        """How long ``question`` (as searched) is against the token limit it is cut at."""
        return QuestionLength.of(question, self.config)

    def documents(self) -> tuple[DocumentInfo, ...]:
        """The indexed documents, in index order."""
        return tuple(DocumentInfo(d["doc_id"], d["title"], d["path"], int(d["chunks"]))
                     for d in self.assistant.info()["documents"])

    def info(self) -> dict[str, Any]:
        """About the index (``Assistant.info``): documents, chunks, model, reader, settings, build times."""
        return self.assistant.info()

    # ------------------------------------------------------------------ writing
    def add_files(self, files: Sequence[UploadSource], *, names: Sequence[str] | None = None,
                  progress: Callable[..., Any] | None = None) -> UploadResult:
        """Check, save (under generated names in ``uploads_dir``) and index files; bad files are refused with
        a reason each, changing nothing.

        Each item is a path, or a client's file as ``(name, bytes)`` or ``(name, binary file)``. ``names`` are
        the client's names for path items (for messages and the generated name; by default each file's own
        base name). ``progress(fraction, desc=…)`` is told how far it got (a ``gr.Progress`` fits; with one,
        the embedding's tqdm bars run too).
        """
        files = list(files or [])
        if names is not None and len(names) != len(files):
            raise InputError(f"names must give one name per file: {len(names)} names for {len(files)} files")
        with self._writes:
            return self._add_files(files, list(names) if names is not None else None, progress)

    def _add_files(self, files: list[Any], names: list[str] | None,
                   progress: Callable[..., Any] | None) -> UploadResult:
        started = time.perf_counter()
        assistant, config, uploads_dir = self.assistant, self.config, self.uploads_dir
        step = progress or (lambda *args, **kwargs: None)
        uploads_dir.mkdir(parents=True, exist_ok=True)
        home = project_home()
        planned: dict[str, bytes] = {}
        display_by_name: dict[str, str] = {}
        rejected: list[Rejection] = []

        def taken(candidate: str) -> bool:
            """In use by this batch, or the id of an indexed document that lives elsewhere (e.g. a seed)."""
            if candidate in planned:
                return True
            doc = assistant.documents.get(Path(candidate).stem)
            if doc is None:
                return False
            stored = Path(doc.path) if Path(doc.path).is_absolute() else home / doc.path
            return stored.resolve() != (uploads_dir / candidate).resolve()

        step(0.05, desc="Checking files")
        for i, item in enumerate(files):
            source, client_name = _split_source(item)
            display = client_name if client_name is not None else (names[i] if names is not None
                                                                   else Path(source).name)
            try:
                ext, raw = _check_upload(source, display, config)
                name = safe_upload_name(display, ext, taken, raw)
                # Parse now, as the indexer will (by content: a PDF named .txt is read as a PDF), so a file it
                # would skip is refused before anything is written.
                document_from_bytes(raw, name, doc_id=Path(name).stem, path=name)
            except RagError as exc:
                reason = str(exc).split(": ", 1)[-1] if isinstance(exc, DocumentError) else str(exc)
                rejected.append(Rejection(display, reason, _rejection_code(exc)))
                log.info("upload %r rejected: %s", display, reason)
                continue
            planned[name] = raw
            display_by_name[name] = display

        added: list[str] = []
        changed: list[str] = []
        unchanged: list[str] = []
        files_by_id: dict[str, str] = {}
        summary = ""
        if planned:
            step(0.2, desc=f"Saving {len(planned)} file{'s' if len(planned) != 1 else ''}")
            backups: dict[Path, bytes | None] = {}
            written: list[Path] = []
            try:
                for name, raw in planned.items():
                    target = uploads_dir / name
                    backups[target] = target.read_bytes() if target.exists() else None
                    # Written whole under a temporary name and renamed: a reader never sees half a file.
                    with tempfile.NamedTemporaryFile(dir=uploads_dir, prefix=".upload-", delete=False) as tmp:
                        tmp.write(raw)
                    os.replace(tmp.name, target)
                    written.append(target)
                step(0.35, desc="Embedding and indexing")
                report = assistant.ingest(written, progress=progress is not None)  # tqdm bars feed gr.Progress
            except Exception:
                _restore(written, backups)  # put the folder back as it was
                raise
            ids = {t.stem for t in written}
            added = [d for d in report.added if d in ids]
            changed = [d for d in report.changed if d in ids]
            unchanged = [d for d in report.unchanged if d in ids]
            kept = set(added + changed + unchanged)
            files_by_id = {t.stem: display_by_name[t.name] for t in written if t.stem in kept}
            for path, reason in report.skipped:  # not expected (each file was parsed above), but never left behind
                skipped = Path(path)
                if skipped.resolve().parent == uploads_dir.resolve() and skipped.name in planned:
                    _restore([uploads_dir / skipped.name], backups)
                rejected.append(Rejection(display_by_name.get(skipped.name, skipped.name), reason, "unreadable"))
            summary = report.summary()
        documents = self.assistant.documents  # reloads first if another process wrote the index meanwhile
        chunks = len(self.assistant.index.chunks)
        if not summary:
            summary = f"nothing added; {len(documents)} documents, {chunks} chunks in the index"
        step(1.0, desc="Done")
        result = UploadResult(tuple(added), tuple(changed), tuple(unchanged), tuple(rejected),
                              MappingProxyType(files_by_id), len(documents), chunks, time.perf_counter() - started,
                              summary)
        log.info("upload: %s (%.1fs)", result.summary, result.seconds)
        return result

    def remove(self, doc_id: str) -> RemoveResult:
        """Drop one document from the index; an uploaded one's file in ``uploads_dir`` is deleted too, so a
        later ``rag ingest`` of the recorded sources does not bring it back."""
        if not isinstance(doc_id, str) or not doc_id:
            raise InputError(f"doc_id must be a document id (text), got {doc_id!r}")
        started = time.perf_counter()
        with self._writes:
            known = self.assistant.documents
            doc = known.get(doc_id)
            if doc is None:
                raise UnknownDocumentError(f"unknown document id: {doc_id}; the index holds {_listing(known)}")
            if len(known) == 1:
                raise LastDocumentError(f"{doc_id} is the only document; removing it would leave an empty index. "
                                        "Add another document first, or delete the index folder")
            report = self.assistant.remove([doc_id])
            deleted = self._delete_upload(doc.path)
        index = self.assistant.index
        result = RemoveResult(doc_id, len(index.documents), len(index.chunks), deleted,
                              time.perf_counter() - started, report.summary())
        log.info("removed %s (%s)", doc_id, result.summary)
        return result

    def _delete_upload(self, stored: str) -> str | None:
        """Delete the file of an uploaded document (one inside ``uploads_dir``); others are left alone."""
        path = resolve_stored_path(stored, project_home())
        try:
            if path.resolve().parent != self.uploads_dir.resolve() or not path.is_file():
                return None
            path.unlink()
        except OSError as exc:  # removed from the index all the same; the file is only a leftover
            log.warning("removed from the index, but could not delete %s: %s", path, exc.strerror or exc)
            return None
        return str(path)


def _restore(paths: Sequence[Path], backups: Mapping[Path, bytes | None]) -> None:
    """Put uploaded files back as they were before this upload (deleted when they were new)."""
    for target in paths:
        old = backups.get(target)
        if old is None:
            target.unlink(missing_ok=True)
        else:
            target.write_bytes(old)


def _listing(documents: Mapping[str, Any]) -> str:
    ids = list(documents)
    shown = ", ".join(ids[:SHOWN_IDS]) + (f" … ({len(ids)} in all)" if len(ids) > SHOWN_IDS else "")
    return f"{len(ids)} document(s): {shown}" if ids else "no documents"
