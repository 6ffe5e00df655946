"""Load and check a gold question set (JSON lines), and anchor its evidence to character spans.

One object per line::

    {"id": "g001", "question": "...", "answerable": true,
     "answers": ["short answer span exactly as in the document"],
     "evidence": ["an exact quote from the document (8-40 words) that contains the answer"],
     "doc": "seed file name", "kind": "factoid|number|list|why|multi_doc|unanswerable"}

A two-document question gives ``"docs": [..]`` instead of ``"doc"``; an
unanswerable one has empty ``answers`` and ``evidence``, and its ``"doc"`` is
null or names the document the question is closest to (not used in scoring). A
document may be named by its file name, by the original file name recorded in
the seeds catalogue, or by its document id.

Every evidence quote is located once in its document(s); relevance is then
decided by span overlap, never by chunk ids, so re-chunking cannot silently
invalidate the gold set.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from rag import Document, InputError

from .metrics import answer_tokens

log = logging.getLogger(__name__)

KINDS = ("factoid", "number", "list", "why", "multi_doc", "unanswerable")
REQUIRED_FIELDS = ("id", "question", "answerable", "answers", "evidence", "kind")
KNOWN_FIELDS = frozenset(REQUIRED_FIELDS + ("doc", "docs"))
EVIDENCE_WORDS = (8, 40)
#: A question sharing this many consecutive words with its evidence copies the document.
COPIED_WORDS = 8


class GoldError(InputError):
    """The gold file is malformed or does not match its documents."""


@dataclass(frozen=True)
class EvidenceSpan:
    """One occurrence of an evidence quote: ``documents[doc_id].text[start:end] == quote``."""

    quote_index: int
    doc_id: str
    start: int
    end: int


@dataclass(frozen=True)
class GoldItem:
    """A checked gold question with its evidence located in the documents."""

    id: str
    question: str
    answerable: bool
    answers: tuple[str, ...]
    evidence: tuple[str, ...]
    doc_names: tuple[str, ...]
    doc_ids: tuple[str, ...]
    kind: str
    line: int
    spans: tuple[EvidenceSpan, ...] = ()

    def relevant(self, doc_id: str, start: int, end: int) -> bool:
        """True when the span [start, end) of ``doc_id`` overlaps an evidence quote."""
        return any(s.doc_id == doc_id and s.start < end and start < s.end for s in self.spans)

    def quotes_overlapping(self, doc_id: str, start: int, end: int) -> set[int]:
        """Indexes of the evidence quotes that the span [start, end) of ``doc_id`` overlaps."""
        return {s.quote_index for s in self.spans if s.doc_id == doc_id and s.start < end and start < s.end}


@dataclass(frozen=True)
class Problem:
    """Something wrong (``error``) or doubtful (``warning``) on one line of a gold file."""

    line: int
    item_id: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = f"line {self.line}" + (f" ({self.item_id})" if self.item_id else "")
        return f"{where}: {self.severity}: {self.message}"


@dataclass(frozen=True)
class GoldSet:
    """A gold file: its checked items and every problem found."""

    path: str
    sha256: str
    items: tuple[GoldItem, ...]
    problems: tuple[Problem, ...] = field(default=())

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def counts(self) -> dict[str, int]:
        kinds = {k: sum(1 for i in self.items if i.kind == k) for k in KINDS}
        return {"questions": len(self.items), "answerable": sum(i.answerable for i in self.items),
                "unanswerable": sum(not i.answerable for i in self.items), **kinds}


def document_names(documents: Mapping[str, Document]) -> dict[str, str]:
    """Every name a gold file may use for a document, mapped to its doc id.

    A document answers to its file name (``meta["file"]``), the original file
    name from the seeds catalogue (``meta["original_file"]``), its doc id, and
    its stored path.
    """
    names: dict[str, str] = {}
    for doc in documents.values():
        for name in (doc.doc_id, doc.path, Path(doc.path).name if doc.path else None,
                     doc.meta.get("file"), doc.meta.get("original_file")):
            if isinstance(name, str) and name:
                names.setdefault(name, doc.doc_id)
    return names


def _squash(text: str) -> str:
    return " ".join(text.split())


def _why_missing(needle: str, texts: list[str]) -> str:
    """A hint for a string that is not an exact substring of any of ``texts``."""
    if any(_squash(needle) in _squash(t) for t in texts):
        return "it matches only when whitespace is collapsed: copy it exactly, line breaks included"
    if any(needle.casefold() in t.casefold() for t in texts):
        return "it matches only ignoring case: copy it with the document's capitals"
    if any(_squash(needle.replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"'))
           in _squash(t.replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"')) for t in texts):
        return "it matches only with straight quotes: copy the document's curly quotes and apostrophes"
    return "copy it character for character from the document"


def _longest_shared_run(a: str, b: str) -> int:
    """Length in words of the longest run of consecutive normalised words shared by ``a`` and ``b``."""
    x, y = answer_tokens(a), answer_tokens(b)
    best = 0
    prev = [0] * (len(y) + 1)
    for i in range(1, len(x) + 1):
        cur = [0] * (len(y) + 1)
        for j in range(1, len(y) + 1):
            if x[i - 1] == y[j - 1]:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def _find_all(text: str, needle: str) -> list[int]:
    return [m.start() for m in re.finditer(re.escape(needle), text)] if needle else []


def _string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def read_gold(path: str | Path, documents: Mapping[str, Document]) -> GoldSet:
    """Parse and check a gold file against ``documents``; never raises for content problems.

    Every problem is returned in ``GoldSet.problems`` with its line number;
    items with errors are left out of ``GoldSet.items``.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise GoldError(f"cannot read gold file {path}: {exc.strerror or exc}") from exc
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise GoldError(f"{path} is not UTF-8 text (bad byte at offset {exc.start})") from exc
    names = document_names(documents)
    items: list[GoldItem] = []
    problems: list[Problem] = []
    seen_ids: dict[str, int] = {}
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as exc:
            problems.append(Problem(number, "", f"not valid JSON ({exc})"))
            continue
        if not isinstance(data, dict):
            problems.append(Problem(number, "", f"expected a JSON object, got {type(data).__name__}"))
            continue
        item_id = data.get("id") if isinstance(data.get("id"), str) else ""
        item_problems: list[Problem] = []

        def problem(message: str, severity: str = "error") -> None:
            item_problems.append(Problem(number, item_id, message, severity))

        missing = [f for f in REQUIRED_FIELDS if f not in data]
        if missing:
            problem(f"missing field(s) {', '.join(missing)}")
        unknown = sorted(set(data) - KNOWN_FIELDS)
        if unknown:
            problem(f"unknown field(s) {', '.join(unknown)} are ignored", "warning")
        if missing:
            problems.extend(item_problems)
            continue
        if not item_id.strip():
            problem("id must be a non-empty string")
        elif item_id in seen_ids:
            problem(f"duplicate id {item_id!r} (first on line {seen_ids[item_id]})")
        else:
            seen_ids[item_id] = number
        question = data["question"]
        if not isinstance(question, str) or not question.strip():
            problem("question must be a non-empty string")
        answerable = data["answerable"]
        if not isinstance(answerable, bool):
            problem(f"answerable must be true or false, got {answerable!r}")
        kind = data["kind"]
        if kind not in KINDS:
            problem(f"kind {kind!r} is unknown; use one of {', '.join(KINDS)}")
        answers, evidence = data["answers"], data["evidence"]
        for name, value in (("answers", answers), ("evidence", evidence)):
            if not _string_list(value):
                problem(f"{name} must be a list of strings")
        if "doc" in data and "docs" in data:
            problem('give either "doc" or "docs", not both')
        doc_field = data.get("docs", data.get("doc"))
        if doc_field is None:
            doc_names: list[str] = []
        elif isinstance(doc_field, str):
            doc_names = [doc_field]
        elif _string_list(doc_field):
            doc_names = list(doc_field)
        else:
            problem('"doc" must be a file name or null, "docs" a list of file names')
            doc_names = []
        if any(p.severity == "error" for p in item_problems):
            problems.extend(item_problems)
            continue

        if answerable != (kind != "unanswerable"):
            problem(f"kind {kind!r} contradicts answerable={str(answerable).lower()}: "
                    "unanswerable questions have kind \"unanswerable\" and answerable false")
        if not answerable:
            if answers or evidence:
                problem("an unanswerable question must have empty answers and evidence")
        else:
            if not answers:
                problem("an answerable question needs at least one answer")
            if not evidence:
                problem("an answerable question needs at least one evidence quote")
            if not doc_names:
                problem('an answerable question needs "doc" (or "docs" for two documents)')
            if kind == "multi_doc" and len(set(doc_names)) < 2:
                problem('a multi_doc question should name two documents in "docs"', "warning")
        doc_ids: list[str] = []
        for name in doc_names:
            if name in names:
                doc_ids.append(names[name])
            else:
                known = ", ".join(sorted({d.meta.get("file") or d.doc_id for d in documents.values()})[:8])
                # An unanswerable question's document is only a note on what it is about.
                problem(f"document {name!r} is not among the documents ({known}); "
                        "name a file in seeds/ or its original file name from seeds/catalogue.json",
                        "error" if answerable else "warning")
        if any(p.severity == "error" for p in item_problems):
            problems.extend(item_problems)
            continue

        texts = [documents[d].text for d in doc_ids]
        spans: list[EvidenceSpan] = []
        for qi, quote in enumerate(evidence):
            if not quote.strip():
                problem(f"evidence quote {qi + 1} is empty")
                continue
            found = False
            for doc_id in doc_ids:
                for start in _find_all(documents[doc_id].text, quote):
                    spans.append(EvidenceSpan(qi, doc_id, start, start + len(quote)))
                    found = True
            if not found:
                problem(f"evidence quote {qi + 1} \u201c{quote[:60]}\u2026\u201d is not an exact substring of "
                        f"{' or '.join(doc_names)}: {_why_missing(quote, texts)}")
            words = len(quote.split())
            if not EVIDENCE_WORDS[0] <= words <= EVIDENCE_WORDS[1]:
                problem(f"evidence quote {qi + 1} has {words} words; quotes should have "
                        f"{EVIDENCE_WORDS[0]}-{EVIDENCE_WORDS[1]}", "warning")
        for answer in answers:
            if not answer.strip():
                problem("an answer is empty")
                continue
            if not any(answer in t for t in texts):
                problem(f"answer \u201c{answer}\u201d is not an exact substring of {' or '.join(doc_names)}: "
                        f"{_why_missing(answer, texts)}")
            elif not any(answer in quote for quote in evidence):
                problem(f"answer \u201c{answer}\u201d is not inside any of its evidence quotes; "
                        "extend a quote so it contains the answer")
        if kind == "multi_doc":
            covered = {s.doc_id for s in spans}
            for name, doc_id in zip(doc_names, doc_ids):
                if doc_id not in covered:
                    problem(f"no evidence quote comes from {name}; give one quote from each document", "warning")
        for quote in evidence:
            run = _longest_shared_run(question, quote)
            if run >= COPIED_WORDS:
                problem(f"the question copies {run} consecutive words of its evidence; paraphrase it", "warning")
                break
        problems.extend(item_problems)
        if any(p.severity == "error" for p in item_problems):
            continue
        items.append(GoldItem(item_id, " ".join(question.split()), answerable, tuple(answers), tuple(evidence),
                              tuple(doc_names), tuple(doc_ids), kind, number, tuple(spans)))
    if not items and not any(p.severity == "error" for p in problems):
        problems.append(Problem(0, "", "the file holds no questions"))
    return GoldSet(str(path), hashlib.sha256(raw).hexdigest(), tuple(items), tuple(problems))


def load_gold(path: str | Path, documents: Mapping[str, Document]) -> GoldSet:
    """Read a gold file for evaluation: raises ``GoldError`` naming the first problems when any line is wrong."""
    gold = read_gold(path, documents)
    errors = gold.errors
    if errors:
        shown = "; ".join(str(p) for p in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise GoldError(f"{path}: {shown}{more}; list them all with: rag eval --check-gold {path}")
    for warning in gold.warnings:
        log.warning("%s: %s", path, warning)
    return gold
