"""Frozen result types shared by every stage.

Every span is a pair of character offsets into its document's full text, so
``document.text[start:end]`` is exactly the chunk, passage or quote.
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Section:
    """A heading and the span of text it governs (heading line included)."""

    title: str
    start: int
    end: int


@dataclass(frozen=True)
class Block:
    """A paragraph-level span of a document, classified by kind.

    kind is "body", "footnote" or "front" (title page); the table of contents is
    not a block at all, so it is never indexed.
    """

    start: int
    end: int
    kind: str
    section: str


@dataclass(frozen=True)
class Page:
    """The span of a document's text that came from one page of its file (PDF pages, numbered from 1)."""

    start: int
    end: int
    number: int


@dataclass(frozen=True)
class Document:
    """A loaded source document.

    ``pages`` is empty for formats without pages (text, Markdown, DOCX, HTML); for a PDF it holds
    one span per page with text, in order, so every character's page is known.
    """

    doc_id: str
    title: str
    path: str
    text: str
    sha256: str
    sections: tuple[Section, ...] = ()
    blocks: tuple[Block, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    pages: tuple[Page, ...] = ()

    def section_at(self, offset: int) -> str:
        """Title of the section holding character ``offset`` ('' if none)."""
        title = ""
        for section in self.sections:
            if section.start <= offset < section.end:
                title = section.title
        return title

    def page_at(self, offset: int) -> int | None:
        """Number of the page holding character ``offset`` (None without pages).

        An offset between two pages' spans (the break joining them) belongs to the page before it.
        """
        if not self.pages:
            return None
        i = bisect.bisect_right([p.start for p in self.pages], offset) - 1
        return self.pages[max(i, 0)].number


@dataclass(frozen=True)
class Chunk:
    """A retrievable unit: an exact slice of one document inside one section."""

    doc_id: str
    section: str
    start: int
    end: int
    text: str
    kind: str = "body"
    tokens: int = 0


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with its score, best first in a result list."""

    text: str
    doc_id: str
    title: str
    section: str
    start: int
    end: int
    score: float
    chunk_id: int = -1
    rank: int = 0
    #: Cosine of question and passage, and the passage's BM25 score, whatever the mode.
    dense_score: float = 0.0
    bm25_score: float = 0.0
    #: The reader's probability that the passage holds the answer (None when it was not read).
    reader_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SentenceScore:
    """A reader's verdict on one sentence of a passage (absolute character offsets)."""

    start: int
    end: int
    logit: float
    probability: float


@dataclass(frozen=True)
class Reading:
    """What a reader made of one passage for one question.

    ``score`` is the probability of the passage's best sentence; ``span_start``/``span_end`` is
    the answer the span head marks (absolute offsets, -1 when none), and ``span_margin`` its
    logit over the "no answer here" option.
    """

    passage: Passage
    score: float
    sentences: tuple[SentenceScore, ...]
    span_start: int = -1
    span_end: int = -1
    span_margin: float = float("-inf")


@dataclass(frozen=True)
class Citation:
    """A numbered quote backing one sentence of an answer.

    ``quote`` is an exact substring of the document: ``text[start:end] == quote``.
    """

    number: int
    doc_id: str
    title: str
    section: str
    quote: str
    start: int
    end: int
    #: The exact answer the reader marks inside the quote (document offsets; -1 when none).
    answer_start: int = -1
    answer_end: int = -1
    #: The page of the quote's first character, for documents with pages (PDF); None otherwise.
    page: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["answer"] = self.quote[self.answer_start - self.start:self.answer_end - self.start] \
            if self.answer_start >= 0 else None
        return data


@dataclass(frozen=True)
class Answer:
    """A grounded answer, or an abstention with the closest passages."""

    text: str
    abstained: bool
    citations: list[Citation]
    passages: list[Passage]
    question: str = ""
    confidence: float = 0.0
    #: Evidence features behind ``confidence`` (see rag.answer.FEATURES).
    features: dict[str, float] = field(default_factory=dict, compare=False)
    #: Which way it was answered: "extractive" (quoted), "generated" (written by the opt-in generator, every
    #: sentence checked against its quote) or "extractive (…why the generator's text was not used)".
    mode: str = "extractive"

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "text": self.text,
            "abstained": self.abstained,
            "mode": self.mode,
            "confidence": round(self.confidence, 4),
            "features": {k: round(v, 4) for k, v in self.features.items()},
            "citations": [c.to_dict() for c in self.citations],
            "passages": [p.to_dict() for p in self.passages],
        }

    def to_markdown(self) -> str:
        """The answer with its numbered sources, for copying or export."""
        lines = [f"**Q:** {self.question}", "", self.text, ""]
        if self.citations:
            lines.append("**Sources**")
            lines.append("")
            for c in self.citations:
                where = f"{c.title}, {c.section}" if c.section and c.section != c.title else c.title
                page = f"p. {c.page}, " if c.page is not None else ""
                lines.append(f"{c.number}. {where} ({page}chars {c.start}–{c.end}): \u201c{c.quote}\u201d")
        elif self.passages:
            lines.append("**Closest passages**")
            lines.append("")
            for i, p in enumerate(self.passages[:3], 1):
                lines.append(f"{i}. {p.title}, {p.section}: \u201c{p.text[:300]}\u201d")
        return "\n".join(lines).rstrip() + "\n"


@dataclass(frozen=True)
class IngestReport:
    """What an ingest changed."""

    added: list[str]
    changed: list[str]
    unchanged: list[str]
    removed: list[str]
    skipped: list[tuple[str, str]]
    chunks_total: int
    chunks_embedded: int
    index_dir: str

    @property
    def modified(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    def summary(self) -> str:
        parts = [
            f"{len(self.added)} added",
            f"{len(self.changed)} changed",
            f"{len(self.removed)} removed",
            f"{len(self.unchanged)} unchanged",
            f"{len(self.skipped)} skipped",
        ]
        return (f"documents: {', '.join(parts)}; chunks: {self.chunks_total} in index, "
                f"{self.chunks_embedded} embedded now; index: {self.index_dir}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["skipped"] = [{"path": p, "reason": r} for p, r in self.skipped]
        return data
