"""Saved conversations: every question asked in the UI, with its answer, kept across restarts.

One SQLite file in the project's data folder (``conversations.sqlite3`` beside
``embeddings/``), in WAL mode so a server's writes never block its readers.
Answers are stored as the JSON of ``Answer.to_dict()`` — plain data, never
pickle — so the UI can show a saved turn exactly as it was answered, even
after the index has changed.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from .config import project_home
from .errors import InputError, RagError

log = logging.getLogger(__name__)

#: The file's name inside the data folder.
HISTORY_FILE = "conversations.sqlite3"
#: Bumped when the tables change; a file of another version is refused, not altered.
SCHEMA_VERSION = 1
#: A conversation's title is its first question, cut to this many characters.
TITLE_CHARS = 80
#: Seconds a write waits for another process's write to the same file.
BUSY_TIMEOUT_SECONDS = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    asked TEXT NOT NULL,
    searched TEXT NOT NULL,
    answer TEXT NOT NULL,
    seconds REAL NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (conversation_id, number)
);
"""


class HistoryError(RagError):
    """The conversations file cannot be read or written (names the file and the fix)."""

    exit_code = 4


@dataclass(frozen=True)
class SavedTurn:
    """One question of a saved conversation and the answer it got then."""

    number: int
    asked: str
    searched: str
    answer: Mapping[str, Any]
    seconds: float
    created_at: str


@dataclass(frozen=True)
class ConversationSummary:
    """A line of the conversation list."""

    id: str
    title: str
    turns: int
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class SavedConversation:
    """A conversation with all its turns, oldest first."""

    id: str
    title: str
    created_at: str
    updated_at: str
    turns: tuple[SavedTurn, ...]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _title(question: str) -> str:
    text = " ".join(question.split())
    return text if len(text) <= TITLE_CHARS else text[:TITLE_CHARS].rsplit(" ", 1)[0] + " \u2026"


class ConversationStore:
    """Conversations in one SQLite file; safe to share between threads and processes.

    >>> store = ConversationStore()                  # <project home>/conversations.sqlite3
    >>> cid = store.create()
    >>> store.add_turn(cid, "question?", "question?", answer.to_dict(), 0.2)
    >>> store.list()                                 # newest first
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else project_home() / HISTORY_FILE
        self._lock = threading.Lock()  # one write at a time in this process (SQLite serialises processes)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version not in (0, SCHEMA_VERSION):
                    raise HistoryError(f"{self.path} holds conversations of schema {version}, this version "
                                       f"reads {SCHEMA_VERSION}; move the file away to start a new one")
                db.executescript(_SCHEMA)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise HistoryError(f"cannot open the conversations file {self.path} ({exc}); move it away to start "
                               "a new one") from None
        except OSError as exc:
            raise HistoryError(f"cannot create the conversations file {self.path} ({exc.strerror or exc}); "
                               "choose a writable RAG_HOME") from None

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # A connection per operation: sqlite3 connections must not cross threads, and these are cheap.
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            with db:  # one transaction: committed on success, rolled back on an error
                yield db
        except sqlite3.OperationalError as exc:
            raise HistoryError(f"the conversations file {self.path} is not usable now ({exc}); retry, or move "
                               "it away to start a new one") from None
        finally:
            db.close()

    @staticmethod
    def _check_id(conversation_id: Any) -> str:
        if not isinstance(conversation_id, str) or not conversation_id:
            raise InputError(f"a conversation id is a non-empty string, got {conversation_id!r}")
        return conversation_id

    # ------------------------------------------------------------------ writing
    def create(self, title: str = "") -> str:
        """A new empty conversation; its title becomes its first question unless given."""
        cid = uuid.uuid4().hex[:12]
        now = _now()
        with self._lock, self._connect() as db:
            db.execute("INSERT INTO conversations VALUES (?, ?, ?, ?)", (cid, _title(title), now, now))
        return cid

    def add_turn(self, conversation_id: str, asked: str, searched: str, answer: Mapping[str, Any],
                 seconds: float) -> SavedTurn:
        """Append a question and its answer (``Answer.to_dict()``) to a conversation."""
        cid = self._check_id(conversation_id)
        if not isinstance(asked, str) or not asked.strip():
            raise InputError("a saved turn needs the question that was asked")
        payload = json.dumps(dict(answer), ensure_ascii=False)
        now = _now()
        with self._lock, self._connect() as db:
            row = db.execute("SELECT title, (SELECT COUNT(*) FROM turns WHERE conversation_id = ?) "
                             "FROM conversations WHERE id = ?", (cid, cid)).fetchone()
            if row is None:
                raise InputError(f"no conversation {cid!r}; it may have been deleted")
            number = row[1] + 1
            db.execute("INSERT INTO turns VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (cid, number, asked, searched, payload, float(seconds), now))
            title = row[0] or _title(asked)
            db.execute("UPDATE conversations SET updated_at = ?, title = ? WHERE id = ?", (now, title, cid))
        return SavedTurn(number, asked, searched, json.loads(payload), float(seconds), now)

    def delete(self, conversation_id: str) -> None:
        """Delete a conversation and its turns; an unknown id is an InputError."""
        cid = self._check_id(conversation_id)
        with self._lock, self._connect() as db:
            if db.execute("DELETE FROM conversations WHERE id = ?", (cid,)).rowcount == 0:
                raise InputError(f"no conversation {cid!r}")

    # ------------------------------------------------------------------ reading
    def list(self) -> list[ConversationSummary]:
        """Every conversation that has at least one turn, most recently used first."""
        with self._connect() as db:
            rows = db.execute("SELECT c.id, c.title, COUNT(t.number), c.created_at, c.updated_at "
                              "FROM conversations c JOIN turns t ON t.conversation_id = c.id "
                              "GROUP BY c.id ORDER BY c.updated_at DESC, c.rowid DESC").fetchall()
        return [ConversationSummary(*row) for row in rows]

    def get(self, conversation_id: str) -> SavedConversation:
        """A conversation with its turns; an unknown id is an InputError."""
        cid = self._check_id(conversation_id)
        with self._connect() as db:
            head = db.execute("SELECT id, title, created_at, updated_at FROM conversations WHERE id = ?",
                              (cid,)).fetchone()
            if head is None:
                raise InputError(f"no conversation {cid!r}")
            rows = db.execute("SELECT number, asked, searched, answer, seconds, created_at FROM turns "
                              "WHERE conversation_id = ? ORDER BY number", (cid,)).fetchall()
        turns = []
        for number, asked, searched, payload, seconds, created in rows:
            try:
                answer = json.loads(payload)
            except ValueError:
                log.warning("%s: turn %d of %s is unreadable; shown without its answer", self.path, number, cid)
                answer = {}
            turns.append(SavedTurn(number, asked, searched, answer, seconds, created))
        return SavedConversation(*head, tuple(turns))
