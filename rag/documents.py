"""Stage 1: load files into documents with sections and blocks.

``.txt``/``.md`` files are read here; PDF, DOCX and HTML files are read by ``rag.loaders``, whose
text and headings become a document the same way. What a file is, is told by its content first (a
PDF named ``.txt`` is read as a PDF) and its name second.

Three heading styles are recognised in plain text:

* wiki style: a ``= Title =`` first line and ``==Section==`` lines;
* Markdown: ``# Title`` and ``##`` … ``######`` headings;
* plain-line headings listed in a table of contents ("Contents" followed by
  ``Heading<TAB>page`` lines), found again as whole lines in the body.

The text is split into paragraph blocks. Footnotes (paragraphs starting with a
superscript number such as ``¹``) become blocks of their own so the chunker
never glues them into a body passage; the table of contents is not a block, so
it is never indexed.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from . import loaders
from .config import project_home
from .errors import DocumentError, EmptyCorpusError
from .loaders import Extracted
from .types import Block, Document, Page, Section

log = logging.getLogger(__name__)

#: Every suffix indexed in a folder: text and Markdown, and what ``rag.loaders`` reads (PDF, DOCX, HTML).
SUPPORTED_SUFFIXES = loaders.SUPPORTED_SUFFIXES
CATALOGUE_NAME = "catalogue.json"
#: File formats told by their first bytes (a PDF renamed .txt is still a PDF).
_FORMATS = loaders.BINARY_SIGNATURES
#: Signatures of formats ``load_document`` reads although ``read_text_file`` refuses them as not text.
_LOADABLE = (loaders.PDF_MAGIC, loaders.ZIP_MAGIC)
_SUFFIX_LIST = ", ".join(SUPPORTED_SUFFIXES)
#: Bytes sniffed for NUL characters to tell binary files from text.
_BINARY_SNIFF = 8192

# Headings and table-of-contents entries are recognised by the functions _wiki_title,
# _wiki_heading, _md_heading and _toc_entry below, not by regular expressions: the natural
# patterns (kept in their docstrings, and in tests/test_documents.py as the reference the
# functions are checked against) backtrack quadratically or cubically over a long run of spaces.
_TOC_START = re.compile(r"^\s*(table of )?contents\s*$", re.IGNORECASE)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\u00a0]*\n\s*")
_SUPERSCRIPT_DIGITS = "⁰¹²³⁴⁵⁶⁷⁸⁹"
_FOOTNOTE_START = re.compile(rf"^[{_SUPERSCRIPT_DIGITS}]+\s")
_SLUG = re.compile(r"[^a-z0-9]+")

FRONT_MATTER = "(front matter)"
INTRODUCTION = "Introduction"


@dataclass(frozen=True)
class _Heading:
    title: str
    line_start: int  # offset of the heading line
    line_end: int  # offset just after the heading line


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def slugify(name: str) -> str:
    slug = _SLUG.sub("-", name.lower()).strip("-")[:80].strip("-")
    return slug or "doc"


def _lines(text: str) -> Iterable[tuple[int, int, str]]:
    """Yield (start, end, line) for each line, end excluding the newline."""
    pos = 0
    for line in text.split("\n"):
        yield pos, pos + len(line), line
        pos += len(line) + 1


def _md_heading(line: str) -> tuple[str, str] | None:
    r"""``(hashes, raw title)`` of a Markdown heading line, or None.

    Exactly groups 1 and 2 of ``re.match(r"^(#{1,6})\s+(.+?)\s*#*\s*$", line)`` for a line
    without a newline, in linear time (the regex took a minute on a '#' line padded with
    2,000 spaces): the title runs to where the trailing spaces-hashes-spaces begin.
    """
    hashes = len(line) - len(line.lstrip("#"))
    if not 1 <= hashes <= 6 or hashes == len(line) or not line[hashes].isspace():
        return None
    body = len(line) - len(line[hashes:].lstrip())
    if body == len(line):  # nothing but spaces after the hashes: the title is the last of them
        if body - hashes < 2:
            return None
        body -= 1
    tail = len(line.rstrip().rstrip("#").rstrip())
    return line[:hashes], line[body:max(tail, body + 1)]


def _wiki_heading(line: str) -> str | None:
    r"""Raw title of a wiki heading line (``== Title ==``), or None.

    Exactly group 2 of ``re.match(r"^(={2,6})\s*(.+?)\s*\1\s*$", line)``, in linear time:
    the most opening '=' (at most 6) that the line also ends with.
    """
    lead = len(line) - len(line.lstrip("="))
    right = len(line.rstrip())
    for k in range(min(6, lead), 1, -1):
        close = right - k
        if close < k + 1 or line[close:right] != "=" * k:
            continue
        spaces = len(line) - len(line[k:].lstrip()) - k
        start = k + min(spaces, close - k - 1)
        gap = len(line[:close].rstrip())
        return line[start:max(gap, start + 1)]
    return None


def _wiki_title(line: str) -> str | None:
    r"""Raw title of a wiki title line (``= Title =``), or None.

    Exactly group 1 of ``re.match(r"^=\s*([^=].*?)\s*=\s*$", line)``, in linear time.
    """
    right = len(line.rstrip())
    if not line.startswith("=") or right < 3 or line[right - 1] != "=":
        return None
    spaces = len(line) - len(line[1:].lstrip()) - 1
    after = 1 + spaces
    if after < len(line) and line[after] != "=" and spaces <= right - 3:
        start = after
    else:  # the title must start with a non-'=': it takes the last space before
        if min(spaces - 1, right - 3) < 0:
            return None
        start = 1 + min(spaces - 1, right - 3)
    gap = len(line[:right - 1].rstrip())
    return line[start:max(gap, start + 1)]


def _toc_entry(line: str) -> str | None:
    r"""Raw title of a table-of-contents line (``Title<TAB>page``, ``Title .... page``), or None.

    Exactly the title group of
    ``re.match(r"^\s*(?P<title>\S.*?)(?:\t+|\s*\.{3,}\s*|\s{2,})(?P<page>\d{1,4})\s*$", line)``,
    in linear time: the title ends where the earliest separator before the page number may start.
    """
    first = len(line) - len(line.lstrip())
    right = len(line.rstrip())
    page = right
    while page > 0 and right - page <= 4 and line[page - 1].isdecimal():
        page -= 1
    if not 1 <= right - page <= 4 or first >= page:
        return None
    lo = first + 1  # the title holds at least one character
    ends: list[int] = []
    spaces = len(line[:page].rstrip())
    tabs = len(line[:page].rstrip("\t"))
    if tabs < page and max(tabs, lo) <= page - 1:  # \t+
        ends.append(max(tabs, lo))
    if page - spaces >= 2 and max(spaces, lo) <= page - 2:  # \s{2,}
        ends.append(max(spaces, lo))
    dots = len(line[:spaces].rstrip("."))
    if spaces - dots >= 3:  # \s*\.{3,}\s*
        lead = len(line[:dots].rstrip())
        if max(lead, lo) <= spaces - 3:
            ends.append(max(lead, lo))
    return line[first:min(ends)] if ends else None


def _find_toc(text: str, lines: Sequence[tuple[int, int, str]] | None = None
              ) -> tuple[tuple[int, int] | None, list[str]]:
    """Locate a table of contents; return its span and its entry titles."""
    lines = list(_lines(text)) if lines is None else lines
    for i, (start, _end, line) in enumerate(lines):
        if not _TOC_START.match(line):
            continue
        entries: list[str] = []
        toc_end = None
        blanks = 0
        # Walk on from the "Contents" line by index: slicing the rest of the lines for every
        # such line made many of them quadratic.
        for j in range(i + 1, len(lines)):
            _s, e, candidate = lines[j]
            if not candidate.strip():
                blanks += 1
                if entries and blanks > 1:
                    break
                continue
            title = _toc_entry(candidate)
            if title is None:
                break
            blanks = 0
            entries.append(title.strip())
            toc_end = e
        if len(entries) >= 3 and toc_end is not None:
            return (start, toc_end), entries
    return None, []


def _headings(text: str, suffix: str) -> tuple[str | None, list[_Heading], tuple[int, int] | None]:
    """Return (title, headings in order, table-of-contents span)."""
    lines = list(_lines(text))
    title: str | None = None
    headings: list[_Heading] = []
    first = next(((s, e, l) for s, e, l in lines if l.strip()), None)

    # Wiki style.
    wiki_title = _wiki_title(first[2]) if first else None
    if wiki_title is not None and _wiki_heading(first[2]) is None:
        title = wiki_title.strip()
        for s, e, line in lines:
            heading = _wiki_heading(line) if line.startswith("==") else None
            if heading is not None:
                headings.append(_Heading(heading.strip(), s, e))
        return title, headings, None

    # Markdown.
    md = [m for _s, _e, line in lines if line.startswith("#") and (m := _md_heading(line)) is not None]
    if md and (suffix == ".md" or any(hashes != "#" for hashes, _t in md)):
        in_code = False
        for s, e, line in lines:
            if line.lstrip().startswith("```"):
                in_code = not in_code
                continue
            m = None if in_code or not line.startswith("#") else _md_heading(line)
            if not m:
                continue
            if m[0] == "#" and title is None:
                title = m[1].strip()
            else:
                headings.append(_Heading(m[1].strip(), s, e))
        return title, headings, None

    # Plain-line headings from a table of contents.
    toc_span, entries = _find_toc(text, lines)
    if toc_span:
        # Each entry is the first matching line after the previous one: an index of the lines by
        # their folded text finds it at once (a scan per entry was entries x lines).
        body = [(s, e, l) for s, e, l in lines if s >= toc_span[1]]
        where: dict[str, list[int]] = {}
        for j, (_s, _e, l) in enumerate(body):
            where.setdefault(l.strip().casefold(), []).append(j)
        cursor = 0
        for entry in entries:
            found = where.get(entry.casefold(), [])
            k = bisect.bisect_left(found, cursor)
            if k < len(found):
                s, e, _l = body[found[k]]
                headings.append(_Heading(entry, s, e))
                cursor = found[k] + 1
            else:
                log.info("table-of-contents entry %r not found as a heading line; ignored", entry)
    return None, headings, toc_span


def _qualified_titles(headings: Sequence[_Heading]) -> list[str]:
    """Repeated headings ("Impacts of …" under several parts) get the nearest unique heading before them."""
    counts: dict[str, int] = {}
    for h in headings:
        counts[h.title.casefold()] = counts.get(h.title.casefold(), 0) + 1
    titles: list[str] = []
    last_unique = ""
    for h in headings:
        if counts[h.title.casefold()] > 1 and last_unique:
            titles.append(f"{last_unique} \u203a {h.title}")
        else:
            titles.append(h.title)
            if counts[h.title.casefold()] == 1:
                last_unique = h.title
    return titles


def _paragraphs(text: str, start: int, end: int) -> Iterable[tuple[int, int]]:
    """Spans of the non-blank paragraphs of ``text[start:end]``, trimmed of outer whitespace."""
    pos = start
    for m in _PARAGRAPH_BREAK.finditer(text, start, end):
        yield from _trimmed(text, pos, m.start())
        pos = m.end()
    yield from _trimmed(text, pos, end)


def _trimmed(text: str, start: int, end: int) -> Iterable[tuple[int, int]]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        yield start, end


def parse_document(text: str, *, doc_id: str, path: str = "", title: str | None = None,
                   suffix: str = ".txt", meta: dict | None = None) -> Document:
    """Turn raw text into a ``Document`` with sections and classified blocks."""
    if not text.strip():
        raise DocumentError(f"{path or doc_id}: the document is empty")
    found_title, headings, toc_span = _headings(text, suffix)
    return _assemble(text, doc_id=doc_id, path=path, title=title or found_title, headings=headings,
                     toc_span=toc_span, title_line_end=_first_line_end(text) if found_title is not None else 0,
                     meta=meta)


def document_from_extracted(extracted: Extracted, *, doc_id: str, path: str = "", title: str | None = None,
                            meta: dict | None = None) -> Document:
    """A ``Document`` from what a loader read (PDF, DOCX, HTML): its headings become sections as plain-text
    headings do; a format that marks none gets the plain-text rules, then the loader's fallback headings."""
    text = extracted.text
    if not text.strip():
        raise DocumentError(f"{path or doc_id}: holds no text")
    found_title, toc_span, title_line_end = None, None, 0
    if extracted.headings is None:
        found_title, headings, toc_span = _headings(text, ".txt")
        if not headings and extracted.fallback_headings:
            headings = [_Heading(h.title, h.start, h.end) for h in extracted.fallback_headings]
        title_line_end = _first_line_end(text) if found_title is not None else 0
    else:
        headings = [_Heading(h.title, h.start, h.end) for h in extracted.headings]
    merged = {**extracted.meta, **(meta or {})}
    return _assemble(text, doc_id=doc_id, path=path, title=title or extracted.title or found_title,
                     headings=headings, toc_span=toc_span, title_line_end=title_line_end, meta=merged,
                     pages=extracted.pages, title_lines=extracted.title_lines)


def _first_line_end(text: str) -> int:
    """End of the first non-blank line (the title line of wiki and Markdown documents)."""
    for _s, e, line in _lines(text):
        if line.strip():
            return e
    return 0


def _assemble(text: str, *, doc_id: str, path: str, title: str | None, headings: Sequence[_Heading],
              toc_span: tuple[int, int] | None, title_line_end: int, meta: dict | None,
              pages: Sequence[Page] = (), title_lines: Sequence[tuple[int, int]] = ()) -> Document:
    """Sections from the headings, paragraph blocks inside them (headings, the title and the table of
    contents left out), and the document."""
    titles = _qualified_titles(headings)
    doc_title = title or Path(path).stem.replace("-", " ").replace("_", " ").strip().capitalize() or doc_id

    sections: list[Section] = []
    first_heading = headings[0].line_start if headings else len(text)
    lead_name = FRONT_MATTER if toc_span else (INTRODUCTION if headings else doc_title)
    if text[:first_heading].strip():
        sections.append(Section(lead_name, 0, first_heading))
    for i, (h, name) in enumerate(zip(headings, titles)):
        end = headings[i + 1].line_start if i + 1 < len(headings) else len(text)
        sections.append(Section(name, h.line_start, end))

    # The title line (wiki "= T =", Markdown "# T", a PDF's title) is not body text, nor are headings.
    heading_lines = {(h.line_start, h.line_end) for h in headings} | set(title_lines)
    blocks: list[Block] = []
    for section in sections:
        for s, e in _paragraphs(text, section.start, section.end):
            if toc_span and s < toc_span[1] and e > toc_span[0]:
                # A paragraph overlapping the table of contents: keep only what lies outside it.
                pieces = [(s, min(e, toc_span[0])), (max(s, toc_span[1]), e)]
                spans = [p for a, b in pieces if b > a for p in _trimmed(text, a, b)]
            else:
                spans = [(s, e)]
            for a, b in spans:
                a, b = _strip_heading_lines(text, a, b, heading_lines, title_line_end)
                if b <= a:
                    continue
                if _TOC_START.match(text[a:b]):
                    continue
                kind = "footnote" if _FOOTNOTE_START.match(text[a:b]) else "body"
                blocks.append(Block(a, b, kind, section.title))
    if not blocks:
        raise DocumentError(f"{path or doc_id}: the document holds headings but no text")
    return Document(doc_id=doc_id, title=doc_title, path=path, text=text, sha256=sha256_text(text),
                    sections=tuple(sections), blocks=tuple(blocks), meta=dict(meta or {}), pages=tuple(pages))


def _strip_heading_lines(text: str, start: int, end: int, heading_lines: set[tuple[int, int]],
                         title_line_end: int) -> tuple[int, int]:
    """Drop heading (and title) lines at the start of a paragraph; headings are carried as section names."""
    changed = True
    while changed and start < end:
        changed = False
        line_end = text.find("\n", start, end)
        line_end = end if line_end == -1 else line_end
        if (start, line_end) in heading_lines or (title_line_end and line_end == title_line_end):
            start = line_end
            while start < end and text[start].isspace():
                start += 1
            changed = True
    return start, end


def document_from_text(doc_id: str, text: str, title: str = "", path: str = "", meta: dict | None = None) -> Document:
    """A document built from text in memory (benchmarks, tests, uploads)."""
    return parse_document(text.replace("\r\n", "\n"), doc_id=doc_id, path=path or doc_id,
                          title=title or None, meta=meta)


def read_text_file(path: Path) -> str:
    """Read a text file strictly: binary, non-UTF-8 and empty files raise ``DocumentError``.

    PDF and DOCX files are refused here too (they are not text); ``load_document`` reads them.
    """
    return decode_text(path.name, _read_bytes(path))


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{path.name}: cannot be read ({exc.strerror or exc})") from exc


def decode_text(name: str, raw: bytes) -> str:
    """The text of a text file's bytes (UTF-8, or UTF-16 with a byte-order mark), line ends normalised;
    binary, non-UTF-8 and empty files raise ``DocumentError`` naming ``name``."""
    kind = next((label for magic, label in _FORMATS if raw.startswith(magic)), None)
    if kind is not None:  # sniffed by content, whatever the file is called
        fix = ("index it with rag ingest (or load_documents), which reads it as what it is"
               if raw.startswith(_LOADABLE) else loaders.EXPORT_HINT)
        raise DocumentError(f"{name}: is a {kind} file, not text (whatever its name says); {fix}")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with a byte-order mark
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DocumentError(f"{name}: starts like UTF-16 text but is not (bad bytes at offset "
                                f"{exc.start}); convert it to UTF-8") from exc
        if "\x00" in text[:_BINARY_SNIFF]:
            raise DocumentError(f"{name}: looks like a binary file, not text")
        return _checked_text(name, text)
    if b"\x00" in raw[:_BINARY_SNIFF]:
        raise DocumentError(f"{name}: looks like a binary file, not text (UTF-16 without a byte-order mark "
                            "also looks so: convert it to UTF-8)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"{name}: is not UTF-8 text (bad byte at offset {exc.start}); "
                            "convert it to UTF-8") from exc
    return _checked_text(name, text)


def document_from_bytes(raw: bytes, name: str, *, doc_id: str, path: str = "", title: str | None = None,
                        meta: dict | None = None) -> Document:
    """A document from a file's bytes, read as what its content says it is (``name`` gives the suffix when
    the content does not, and names the file in errors): text and Markdown here, PDF, DOCX and HTML through
    ``rag.loaders``."""
    extracted = loaders.extract(raw, name)
    if extracted is None:
        suffix = Path(name).suffix.lower()
        return parse_document(decode_text(name, raw), doc_id=doc_id, path=path, title=title,
                              suffix=suffix if suffix in loaders.TEXT_SUFFIXES else ".txt", meta=meta)
    return document_from_extracted(extracted, doc_id=doc_id, path=path, title=title, meta=meta)


def load_document(path: Path, *, doc_id: str, stored: str = "", title: str | None = None,
                  meta: dict | None = None) -> Document:
    """One file of any supported format as a ``Document`` (``stored``: the path recorded in the index)."""
    return document_from_bytes(_read_bytes(path), path.name, doc_id=doc_id, path=stored or str(path), title=title,
                               meta=meta)


def _checked_text(name: str, text: str) -> str:
    if not text.strip():
        raise DocumentError(f"{name}: is empty")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _catalogue(folder: Path) -> dict[str, dict]:
    """Entries of ``catalogue.json`` in ``folder`` keyed by file name (empty if none or unreadable)."""
    path = folder / CATALOGUE_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("documents", []), list):
            raise ValueError("expected an object with a list of \"documents\"")
        entries = {}
        for entry in data.get("documents", []):
            if not (isinstance(entry, dict) and isinstance(entry.get("file"), str)):
                continue
            kept = {k: v for k, v in entry.items() if isinstance(v, (str, int, float, bool)) or v is None}
            if not isinstance(kept.get("title"), str) or not kept["title"].strip():
                kept.pop("title", None)  # a title of the wrong type ("title": 5) is not a title
            if len(kept) < len(entry) or "title" in entry and "title" not in kept:
                log.warning("%s: ignored values of the wrong type in the entry for %s", path, entry["file"])
            entries[entry["file"]] = kept
        return entries
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("ignoring unreadable catalogue %s: %s", path, exc)
        return {}


def suffixed_id(doc_id: str, stored_path: str) -> str:
    """The id of a file whose name another file's id already has: suffixed by a hash of its path, so it is
    the same on every run."""
    return f"{doc_id}-{hashlib.sha1(stored_path.encode()).hexdigest()[:6]}"


def display_path(path: Path, home: Path | None = None) -> str:
    """Path as stored in an index: relative to the project home when inside it."""
    home = (home or project_home()).resolve()
    resolved = path.resolve()
    try:
        return resolved.relative_to(home).as_posix()
    except ValueError:
        return resolved.as_posix()


def resolve_stored_path(stored: str, home: Path | None = None) -> Path:
    p = Path(stored)
    return p if p.is_absolute() else (home or project_home()) / p


def source_stamp(path: Path) -> str:
    """What says a source file is unchanged without reading it: its size and mtime, and those of the
    ``catalogue.json`` beside it (which may give it its title). "" when it cannot be stat'ed."""
    try:
        st = path.stat()
    except OSError:
        return ""
    try:
        cat = (path.parent / CATALOGUE_NAME).stat()
        extra = f":{cat.st_size}:{cat.st_mtime_ns}"
    except OSError:
        extra = ""
    return f"{st.st_size}:{st.st_mtime_ns}{extra}"


def expand_paths(paths: Sequence[str | Path]) -> tuple[list[Path], list[tuple[str, str]], list[Path]]:
    """Expand folders to their supported files.

    Returns (files, skipped, folders). Files in folders with other suffixes are
    ignored quietly; a file named explicitly with another suffix is skipped with a reason.
    """
    files: list[Path] = []
    skipped: list[tuple[str, str]] = []
    folders: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            folders.append(p.resolve())
            for child in sorted(p.rglob("*")):
                if child.is_file() and not any(part.startswith(".") for part in child.relative_to(p).parts) \
                        and child.suffix.lower() in SUPPORTED_SUFFIXES:
                    files.append(child)
        elif p.is_file():
            if p.suffix.lower() in SUPPORTED_SUFFIXES:
                files.append(p)
            else:
                skipped.append((str(p), f"unsupported file type {p.suffix or '(none)'}; "
                                        f"only {', '.join(SUPPORTED_SUFFIXES)} are indexed"))
        else:
            skipped.append((str(p), "no such file or folder"))
    # The same file named twice is loaded once.
    unique: dict[Path, Path] = {}
    for f in files:
        unique.setdefault(f.resolve(), f)
    return list(unique.values()), skipped, folders


def load_documents(paths: Sequence[str | Path], home: Path | None = None, *, allow_empty: bool = False
                   ) -> tuple[list[Document], list[tuple[str, str]]]:
    """Load every supported file under ``paths``.

    Unreadable files are reported in the returned ``skipped`` list as
    (path, reason) and the rest are loaded. Raises ``EmptyCorpusError`` when
    nothing was given or (unless ``allow_empty``) nothing could be read.
    """
    if not paths:
        raise EmptyCorpusError(f"no input: give at least one file or folder of documents ({_SUFFIX_LIST})")
    files, skipped, _folders = expand_paths(paths)
    docs: list[Document] = []
    used_ids: dict[str, str] = {}
    catalogues: dict[Path, dict[str, dict]] = {}
    for f in files:
        try:
            str(f).encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8 in the name (os.fsdecode's surrogate escapes)
            shown = str(f).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            skipped.append((shown, "the file name is not valid UTF-8; rename the file"))
            continue
        folder = f.resolve().parent
        if folder not in catalogues:
            catalogues[folder] = _catalogue(folder)
        entry = catalogues[folder].get(f.name, {})
        stored = display_path(f, home)
        doc_id = slugify(f.stem)
        if doc_id in used_ids and used_ids[doc_id] != stored:
            # Same file name in two folders: keep ids stable by suffixing a hash of the path.
            doc_id = suffixed_id(doc_id, stored)
        try:
            meta = {k: v for k, v in entry.items() if k not in ("file", "title") and v is not None}
            meta["file"] = f.name
            doc = load_document(f, doc_id=doc_id, stored=stored, title=entry.get("title"), meta=meta)
        except DocumentError as exc:
            log.info("skipped %s", exc)  # reported to the caller in ``skipped``, which the CLI and UI show
            skipped.append((str(f), str(exc).split(": ", 1)[-1]))
            continue
        used_ids[doc_id] = stored
        docs.append(doc)
    if not docs and not allow_empty:
        detail = "; ".join(f"{Path(p).name}: {r}" for p, r in skipped) or f"no {_SUFFIX_LIST} files found"
        raise EmptyCorpusError(f"no readable documents in {', '.join(map(str, paths))} ({detail})")
    return docs, skipped
