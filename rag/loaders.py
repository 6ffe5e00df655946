"""Stage 1a: read PDF, DOCX and HTML files into text with its structure (headings, title, pages).

One interface for every format. ``detect_format(raw, name)`` says which loader reads a file, from its
content first and its name second: a PDF named ``.txt`` is read as a PDF, a ``.docx`` that is really a
PDF is read as a PDF, and other binary files are refused with their type named. ``LOADERS[fmt]`` is a
``Loader``; its ``extract(raw, name)`` returns an ``Extracted``: the text, its headings as offsets into
that text, a title, and (PDF) the page of every character. ``rag.documents`` turns an ``Extracted``
into a ``Document`` exactly as it does plain text, so sections, blocks and chunks behave alike for
every format.

* **PDF** (pypdf): the text of each page, lines joined by ``\\n`` and paragraphs (told by the vertical
  gap between lines) by a blank line. Headings come from the outline (bookmarks) when there is one, else
  from lines set in a larger font than the body, else from the plain-text rules of ``rag.documents``
  (a table of contents), else from short numbered or title-case lines standing alone. Running headers,
  footers and page numbers repeated at the top or bottom of pages are dropped.
* **DOCX** (python-docx): the body's paragraphs and tables in document order; paragraphs in a Heading
  style (or with an outline level) are headings, the Title style or the core property is the title; each
  table row becomes one line of its cells joined by `` | ``.
* **HTML** (selectolax/lexbor): the main text (``<main>``, or a lone ``<article>``, else ``<body>``)
  without navigation chrome, scripts or forms; ``h1``–``h6`` are headings; the title is ``<title>`` or
  the first ``h1``.

Every problem is a ``DocumentError`` naming the file and the fix (scanned, encrypted or damaged PDFs,
damaged or password-protected Word files, pages made only of scripts); the caller skips the file.
"""

from __future__ import annotations

import io
import logging
import re
import statistics
import zipfile
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Protocol

from .errors import DocumentError
from .types import Page

log = logging.getLogger(__name__)

TEXT = "text"
PDF = "pdf"
DOCX = "docx"
HTML = "html"

TEXT_SUFFIXES = (".txt", ".md")
PDF_SUFFIXES = (".pdf",)
DOCX_SUFFIXES = (".docx",)
HTML_SUFFIXES = (".htm", ".html")

PDF_MAGIC = b"%PDF-"
PDF_EOF = b"%%EOF"
#: Readers look for the end-of-file marker this far from the end (writers may append a little after it).
PDF_EOF_WINDOW = 1024
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0"
#: A PDF's header may follow some junk (readers look this far); only for files named .pdf, so a text
#: file that mentions "%PDF-" near its start is still read as text.
PDF_HEADER_WINDOW = 1024
#: The part of a DOCX package that holds its body.
DOCX_BODY_PART = "word/document.xml"
#: Binary formats no loader reads, told by their first bytes (named in the refusal).
OTHER_BINARY_SIGNATURES = ((OLE_MAGIC, "Microsoft Office (old .doc/.xls/.ppt, or password-protected)"),
                           (b"{\\rtf", "RTF"), (b"\x89PNG", "PNG image"), (b"\xff\xd8\xff", "JPEG image"),
                           (b"GIF8", "GIF image"), (b"\x1f\x8b", "gzip"), (b"\x7fELF", "executable"))
#: Every signature ``read_text_file`` refuses as "not text".
BINARY_SIGNATURES = ((PDF_MAGIC, "PDF"), (ZIP_MAGIC, "ZIP (or DOCX/XLSX/ODT)")) + OTHER_BINARY_SIGNATURES
#: How a file named .txt/.md is told to be HTML: it opens (after spaces) with one of these.
HTML_STARTS = (b"<!doctype html", b"<html")
#: Bytes looked at for the HTML signature.
HTML_SNIFF = 512
EXPORT_HINT = "save or export it as PDF, DOCX, HTML, .txt or .md first"
#: Characters of a parser's own error message quoted in a skip reason.
ERROR_DETAIL_CHARS = 200

# --- PDF heuristics ------------------------------------------------------------------------------
#: A line set in a font this much larger than the body text is a heading (when there is no outline).
HEADING_SIZE_RATIO = 1.15
#: Headings are short: a longer line in a large font is a pull quote or a cover blurb.
HEADING_MAX_WORDS = 12
#: A wrapped heading runs over at most this many lines of the same size.
HEADING_MAX_LINES = 3
#: When more than this share of lines look like headings, the font sizes say nothing (slides, posters).
HEADING_MAX_SHARE = 0.3
#: Points a bookmark's target height may sit below its heading's baseline (rounding in the writer).
OUTLINE_TOP_TOLERANCE = 1.0
#: A vertical gap this much larger than the page's usual line spacing ends a paragraph.
PARAGRAPH_GAP_RATIO = 1.3
#: Font sizes are compared rounded to this many decimals (the same style comes out as 10.98 and 11.0).
SIZE_DECIMALS = 1
#: Lines at the top and bottom of each page looked at for running headers and footers.
FURNITURE_LINES = 2
#: A top/bottom line repeated (digits aside) on at least this share of the pages, and on at least
#: FURNITURE_MIN_PAGES pages, is a running header or footer.
FURNITURE_SHARE = 0.5
FURNITURE_MIN_PAGES = 3
_PAGE_NUMBER = re.compile(r"^\s*(?:page\s+)?(?:\d{1,4}|[ivxlc]{1,7})(?:\s*(?:of|/)\s*\d{1,4})?\s*$", re.IGNORECASE)
_NUMBERED_HEADING = re.compile(r"^(?:\d{1,2}(?:\.\d{1,2}){0,3}\.?|[IVX]{1,5}\.|[A-Z]\.)\s+\S")
_SENTENCE_END = re.compile(r"[.!?:;\"\u201d\u2019)\]]\s*$")
_TITLE_FILLERS = frozenset("a an and as at by for from in of on or the to with vs via".split())
#: Document-information titles that are not titles (tools' defaults, file names).
_JUNK_TITLE = re.compile(r"^(untitled|title|document\d*|microsoft word|slide \d+)$|\.(docx?|pdf|tex|dvi|indd|rtf)$",
                         re.IGNORECASE)
_WORD_PREFIX = re.compile(r"^microsoft (word|powerpoint) - ", re.IGNORECASE)

# --- DOCX and HTML -------------------------------------------------------------------------------
CELL_SEPARATOR = " | "
#: Tables inside table cells are read to this depth (deeper ones give their cells' plain text).
MAX_TABLE_NESTING = 4
#: Styles based on styles are followed this far (a chain that loops back on itself ends here).
MAX_STYLE_DEPTH = 16
#: Word's outline levels: 0-8 are heading levels, 9 is body text.
BODY_OUTLINE_LEVEL = 9
#: Elements that are page chrome or not text, never read (with all they hold).
HTML_DROP_TAGS = frozenset({"nav", "header", "footer", "aside", "script", "style", "noscript", "form", "template",
                            "svg", "canvas", "iframe", "object", "embed", "button", "select", "dialog", "head"})
#: ARIA roles of the same chrome (role=navigation is <nav> written as a <div>, and so on).
HTML_DROP_ROLES = frozenset({"navigation", "banner", "contentinfo", "complementary", "search", "dialog"})
#: Elements that start and end a paragraph of their own.
HTML_BLOCK_TAGS = frozenset({"p", "div", "section", "article", "main", "li", "ul", "ol", "dl", "dt", "dd",
                             "blockquote", "pre", "figure", "figcaption", "address", "details", "summary", "hr",
                             "center", "fieldset", "legend", "body", "caption", "table"})
HTML_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})

# Characters that break search or display: ligatures as single glyphs ("ﬁnance"), soft hyphens, controls.
_LIGATURES = str.maketrans({"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
                            "\ufb05": "st", "\ufb06": "st"})
_DROPPED_CHARS = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f\u00ad\ufeff]")
_BLANK_RUN = re.compile(r"\n[ \t\u00a0]*(?:\n[ \t\u00a0]*)+")
_ALNUM = re.compile(r"\w", re.UNICODE)
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


@dataclass(frozen=True)
class Heading:
    """A heading line of an extracted text: ``text[start:end]`` is the line (``start == end`` for a heading
    known only by its position, e.g. a PDF bookmark whose words are not found on its page)."""

    title: str
    start: int
    end: int


@dataclass(frozen=True)
class Extracted:
    """What a loader read from a file, before it becomes a ``Document``."""

    text: str
    format: str
    #: Headings in order; None when the format gave none, so the plain-text rules look for them.
    headings: tuple[Heading, ...] | None
    title: str | None = None
    pages: tuple[Page, ...] = ()
    #: Headings to use when the plain-text rules find none (PDF: short numbered or title-case lines).
    fallback_headings: tuple[Heading, ...] = ()
    #: Lines that are the title, not body text (``(start, end)`` of each).
    title_lines: tuple[tuple[int, int], ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


class Loader(Protocol):
    """Reads one file format into an ``Extracted``; every problem is a ``DocumentError`` naming the file."""

    format: str
    suffixes: tuple[str, ...]

    def extract(self, raw: bytes, name: str) -> Extracted: ...


# ---------------------------------------------------------------------- format detection
def detect_format(raw: bytes, name: str) -> str:
    """The format of a file (TEXT, PDF, DOCX or HTML): its content decides, its name only when the content
    has no signature. Raises ``DocumentError`` for other binary formats and for a .pdf/.docx that is not one."""
    suffix = _suffix(name)
    if not raw.strip():
        raise DocumentError(f"{name}: is empty")
    if raw.startswith(PDF_MAGIC) or (suffix in PDF_SUFFIXES and PDF_MAGIC in raw[:PDF_HEADER_WINDOW]):
        return PDF
    if raw.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as package:
                if DOCX_BODY_PART in package.namelist():
                    return DOCX
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            if suffix in DOCX_SUFFIXES:
                return DOCX  # its loader names the damage
            raise DocumentError(f"{name}: is a damaged ZIP file, not text (whatever its name says); "
                                f"{EXPORT_HINT}") from None
        if suffix in DOCX_SUFFIXES:
            raise DocumentError(f"{name}: is a ZIP package without {DOCX_BODY_PART}, so not a Word document "
                                f"(an .odt or .xlsx renamed?); {EXPORT_HINT}")
        raise DocumentError(f"{name}: is a ZIP file (or XLSX/ODT/PPTX), which cannot be indexed (whatever its "
                            f"name says); {EXPORT_HINT}")
    if raw.startswith(OLE_MAGIC) and suffix in DOCX_SUFFIXES + (".doc",):
        # Word keeps password-protected .docx files, like old .doc files, in the older compound format.
        raise DocumentError(f"{name}: is a password-protected Word file or an old-format .doc; remove the "
                            "password, or open it in Word or LibreOffice and save it as .docx")
    kind = next((label for magic, label in OTHER_BINARY_SIGNATURES if raw.startswith(magic)), None)
    if kind is not None:
        raise DocumentError(f"{name}: is a {kind} file, which cannot be indexed (whatever its name says); "
                            f"{EXPORT_HINT}")
    if suffix in PDF_SUFFIXES:
        raise DocumentError(f"{name}: is not a PDF (it does not start with {PDF_MAGIC.decode()}; "
                            f"{_looks_like(raw)}); check the file, or rename it to what it is")
    if suffix in DOCX_SUFFIXES:
        raise DocumentError(f"{name}: is not a Word .docx file (not a ZIP package; {_looks_like(raw)}); check "
                            "the file, or rename it to what it is")
    if suffix in HTML_SUFFIXES or _looks_like_html(raw):
        return HTML
    return TEXT


def _suffix(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 and "/" not in name[dot:] else ""


def _looks_like_html(raw: bytes) -> bool:
    head = raw[:HTML_SNIFF].lstrip(b"\xef\xbb\xbf").lstrip().lower()
    return head.startswith(HTML_STARTS)


def _looks_like(raw: bytes) -> str:
    if _looks_like_html(raw):
        return "it is an HTML page, perhaps a download that failed"
    return "it looks like text" if b"\x00" not in raw[:HTML_SNIFF] else "its content is of an unknown kind"


# ---------------------------------------------------------------------- shared text helpers
def clean_text(text: str) -> str:
    """Text as extracted, made safe to index: ligatures spelled out, soft hyphens and control characters
    dropped, line ends normalised, trailing spaces removed."""
    text = text.translate(_LIGATURES).replace("\r\n", "\n").replace("\r", "\n").replace("\x0c", "\n")
    text = _DROPPED_CHARS.sub("", text)
    return "\n".join(line.rstrip() for line in text.split("\n"))


def one_line(text: str) -> str:
    """Whitespace (newlines included) collapsed to single spaces."""
    return " ".join(text.split())


def _has_text(text: str) -> bool:
    return _ALNUM.search(text) is not None


def _norm(text: str) -> str:
    """A heading's words, for comparing a bookmark with a line ("2.1 Methods" == "2.1. METHODS")."""
    return _NON_WORD.sub(" ", text).strip().casefold()


class _TextBuilder:
    """Paragraphs joined by blank lines, with the offsets of the headings among them."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.headings: list[Heading] = []

    def paragraph(self, text: str) -> tuple[int, int] | None:
        """Append a paragraph (blank lines inside it are closed up, so it stays one block); its span."""
        text = _BLANK_RUN.sub("\n", clean_text(text)).strip()
        if not text:
            return None
        if self.parts:
            self.parts.append("\n\n")
            self.length += 2
        start = self.length
        self.parts.append(text)
        self.length += len(text)
        return start, self.length

    def heading(self, text: str) -> None:
        title = one_line(clean_text(text))
        span = self.paragraph(title) if _has_text(title) else None
        if span is not None:
            self.headings.append(Heading(title, *span))

    def text(self) -> str:
        return "".join(self.parts)


# ---------------------------------------------------------------------- PDF
@dataclass(frozen=True)
class _Line:
    """One extracted line of a PDF page: its text, dominant font size and baseline height (None: unknown)."""

    text: str
    size: float
    y: float | None
    start: int = -1  # offsets in the document text, once placed (``_place_lines``)
    end: int = -1


class PdfLoader:
    """PDF files through pypdf (pure Python)."""

    format = PDF
    suffixes = PDF_SUFFIXES

    def extract(self, raw: bytes, name: str) -> Extracted:
        reader = self._open(raw, name)
        try:
            pages = [self._page_lines(page) for page in reader.pages]
        except DocumentError:
            raise
        except Exception as exc:  # pypdf raises many kinds on broken content streams
            raise self._damaged(name, exc, raw) from None
        if not pages:
            raise DocumentError(f"{name}: is a PDF without pages; check the file, or export it again")
        if not any(_has_text(line.text) for lines in pages for line in lines):
            raise DocumentError(f"{name}: has no text layer (scanned?); run OCR first (e.g. ocrmypdf {name} "
                                "out.pdf) and add the result")
        empty = [i + 1 for i, lines in enumerate(pages) if not any(_has_text(line.text) for line in lines)]
        if empty:
            log.info("%s: pages %s have no text layer; indexed without them", name, _ranges(empty))
        pages = _drop_furniture(pages)
        body_size = _body_size(pages)
        outline = self._outline(reader, name)
        title = self._metadata_title(reader)
        text, page_spans, pages = _place_lines(pages, body_size)
        if not _has_text(text):  # nothing but page numbers and running heads
            raise DocumentError(f"{name}: has no text layer (scanned?) beyond page numbers and headers; run OCR "
                                f"first (e.g. ocrmypdf {name} out.pdf) and add the result")
        headings, title_lines = _pdf_headings(pages, outline, body_size, title)
        if title is None and title_lines:
            title = one_line(" ".join(text[a:b] for a, b in title_lines))
        fallback = () if headings else _fallback_headings(pages, body_size)
        meta = {"format": PDF, "page_count": len(pages)}
        return Extracted(text, PDF, tuple(headings) if headings else None, title, tuple(page_spans),
                         tuple(fallback), tuple(title_lines), meta)

    # ---------------- reading
    @staticmethod
    def _damaged(name: str, exc: BaseException, raw: bytes) -> DocumentError:
        if PDF_EOF not in raw[-PDF_EOF_WINDOW:]:
            return DocumentError(f"{name}: is a damaged PDF: it ends without its end-of-file marker, so it was cut "
                                 "short (an interrupted download or copy?); download or export it again")
        return DocumentError(f"{name}: is a damaged PDF that cannot be read ({type(exc).__name__}: "
                             f"{one_line(str(exc))[:ERROR_DETAIL_CHARS]}); repair it (e.g. qpdf {name} "
                             "repaired.pdf) or export it again")

    def _open(self, raw: bytes, name: str) -> Any:
        from pypdf import PdfReader
        from pypdf.errors import DependencyError

        _quiet_pypdf()
        try:
            reader = PdfReader(io.BytesIO(raw), strict=False)
        except Exception as exc:
            raise self._damaged(name, exc, raw) from None
        if reader.is_encrypted:
            # Many "encrypted" PDFs only restrict printing or copying: they open with the empty password.
            try:
                opened = reader.decrypt("")
            except DependencyError:
                raise DocumentError(f"{name}: is encrypted with AES, which needs the cryptography package even "
                                    "to try the empty password; pip install cryptography, or decrypt it first "
                                    f"(e.g. qpdf --decrypt {name} decrypted.pdf)") from None
            except Exception as exc:
                raise self._damaged(name, exc, raw) from None
            if not opened:
                raise DocumentError(f"{name}: is encrypted; decrypt it first (e.g. qpdf --password=PASSWORD "
                                    f"--decrypt {name} decrypted.pdf) and add the decrypted file")
        return reader

    @staticmethod
    def _page_lines(page: Any) -> list[_Line]:
        """The page's lines as pypdf extracts them, each with its font size and height on the page.

        pypdf's visitor sees the extracted text piece by piece (the pieces concatenate to exactly what
        ``extract_text`` returns), each with the text and transformation matrices that place it.
        """
        lines: list[_Line] = []
        pieces: list[str] = []
        sizes: Counter[float] = Counter()
        y: list[float | None] = [None]

        def flush() -> None:
            text = clean_text("".join(pieces)).strip()
            if text:
                size = sizes.most_common(1)[0][0] if sizes else 0.0
                lines.append(_Line(text, size, y[0]))
            pieces.clear()
            sizes.clear()
            y[0] = None

        def visit(text: str, cm: Any, tm: Any, _font: Any, font_size: Any) -> None:
            try:
                # The text matrix mapped by the current transformation: its y column scales the font.
                b = tm[0] * cm[1] + tm[1] * cm[3]
                d = tm[2] * cm[1] + tm[3] * cm[3]
                size = round(abs(float(font_size)) * (b * b + d * d) ** 0.5, SIZE_DECIMALS)
                height = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
            except (TypeError, ValueError, IndexError):
                size, height = 0.0, None
            for i, part in enumerate(text.split("\n")):
                if i:
                    flush()
                if part:
                    pieces.append(part)
                    if part.strip():
                        sizes[size] += len(part.strip())
                        if y[0] is None:
                            y[0] = height

        page.extract_text(visitor_text=visit)
        flush()
        return lines

    @staticmethod
    def _outline(reader: Any, name: str) -> list[tuple[str, int, float | None]]:
        """Bookmarks as (title, page index, top of the target or None), in reading order."""
        try:
            items = reader.outline
        except Exception as exc:  # a broken outline is no reason to lose the text
            log.info("%s: outline unreadable (%s); headings found from fonts instead", name, exc)
            return []
        found: list[tuple[str, int, float | None]] = []
        stack: list[Iterable[Any]] = [iter(items)]
        while stack:
            item = next(stack[-1], None)  # type: ignore[call-overload]
            if item is None:
                stack.pop()
                continue
            if isinstance(item, list):
                stack.append(iter(item))
                continue
            try:
                index = reader.get_destination_page_number(item)
                title = one_line(clean_text(str(item.title or "")))
                top = item.top
                top = float(top) if top is not None and not isinstance(top, bool) else None
            except Exception:  # a bookmark to another file, or a malformed one
                continue
            if index is not None and index >= 0 and _has_text(title):
                found.append((title, index, top))
        return found

    @staticmethod
    def _metadata_title(reader: Any) -> str | None:
        try:
            raw = reader.metadata.title if reader.metadata is not None else None
        except Exception:
            return None
        title = one_line(clean_text(str(raw or "")))
        title = _WORD_PREFIX.sub("", title).strip()
        return title if _has_text(title) and not _JUNK_TITLE.search(title) else None


def _quiet_pypdf() -> None:
    """pypdf logs a warning for every flaw it works around; the loader reports what matters about a file as
    its skip reason, so unless the application set pypdf's level, only its errors are shown."""
    logger = logging.getLogger("pypdf")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.ERROR)


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 7] -> "1-3, 7"."""
    out: list[str] = []
    for n in numbers:
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)


def _drop_furniture(pages: list[list[_Line]]) -> list[list[_Line]]:
    """Pages without their running headers and footers (lines repeated at the top or bottom of many
    pages, page numbers aside) and bare page numbers there: they would be glued into passages."""
    def key(line: _Line) -> str:
        return re.sub(r"\d+", "#", one_line(line.text).casefold())

    def edges(lines: list[_Line]) -> list[int]:
        n = len(lines)
        return sorted(set(range(min(FURNITURE_LINES, n))) | set(range(max(0, n - FURNITURE_LINES), n)))

    counts: Counter[str] = Counter()
    for lines in pages:
        counts.update({key(lines[i]) for i in edges(lines)})
    threshold = max(FURNITURE_MIN_PAGES, FURNITURE_SHARE * len(pages))
    repeated = {k for k, c in counts.items() if c >= threshold}
    kept: list[list[_Line]] = []
    for lines in pages:
        edge = set(edges(lines))
        kept.append([line for i, line in enumerate(lines)
                     if not (i in edge and (key(line) in repeated or _PAGE_NUMBER.match(line.text)))])
    return kept


def _body_size(pages: list[list[_Line]]) -> float:
    """The font size most of the text is set in (by characters)."""
    sizes: Counter[float] = Counter()
    for lines in pages:
        for line in lines:
            sizes[line.size] += len(line.text)
    return sizes.most_common(1)[0][0] if sizes else 0.0


def _is_large(line: _Line, body_size: float) -> bool:
    return body_size > 0 and line.size >= body_size * HEADING_SIZE_RATIO and _headline(line.text)


def _headline(text: str) -> bool:
    """Short enough and wordy enough to be a heading, and not opening in lower case (a link, a sentence's
    end) nor ending as a clause does."""
    words = text.split()
    first_letter = next((ch for ch in text if ch.isalpha()), "")
    return 0 < len(words) <= HEADING_MAX_WORDS and bool(first_letter) and not first_letter.islower() \
        and not text.rstrip().endswith((",", ";"))


def _paragraph_breaks(lines: list[_Line], body_size: float) -> set[int]:
    """Indexes of the lines that start a new paragraph on one page (the first line excluded).

    A gap clearly wider than the page's usual line spacing starts one; so does a jump upwards (a new
    column or box) and a line in a heading's size, before and after it.
    """
    gaps = [a.y - b.y for a, b in zip(lines, lines[1:]) if a.y is not None and b.y is not None and a.y > b.y]
    usual = statistics.median(gaps) if gaps else 0.0
    starts: set[int] = set()
    for i in range(1, len(lines)):
        a, b = lines[i - 1], lines[i]
        if _is_large(a, body_size) != _is_large(b, body_size) or (
                _is_large(a, body_size) and a.size != b.size):
            starts.add(i)
        elif a.y is not None and b.y is not None and (
                b.y > a.y or (usual > 0 and a.y - b.y > usual * PARAGRAPH_GAP_RATIO)):
            starts.add(i)
    return starts


def _place_lines(pages: list[list[_Line]], body_size: float
                 ) -> tuple[str, list[Page], list[list[_Line]]]:
    """The document text from the pages' lines, the page spans, and the lines with their offsets."""
    parts: list[str] = []
    length = 0
    spans: list[Page] = []
    placed_pages: list[list[_Line]] = []
    previous: _Line | None = None
    for number, lines in enumerate(pages, 1):
        placed: list[_Line] = []
        placed_pages.append(placed)
        if not lines:
            continue
        breaks = _paragraph_breaks(lines, body_size)
        if previous is not None:
            first = lines[0]
            # A sentence running on to the next page stays one paragraph.
            runs_on = (not _SENTENCE_END.search(previous.text) and first.text[:1].islower()
                       and not _is_large(previous, body_size) and not _is_large(first, body_size))
            sep = "\n" if runs_on else "\n\n"
            parts.append(sep)
            length += len(sep)
        start = length
        for i, line in enumerate(lines):
            if i:
                sep = "\n\n" if i in breaks else "\n"
                parts.append(sep)
                length += len(sep)
            parts.append(line.text)
            placed.append(replace(line, start=length, end=length + len(line.text)))
            length += len(line.text)
        spans.append(Page(start, length, number))
        previous = lines[-1]
    return "".join(parts), spans, placed_pages


def _pdf_headings(pages: list[list[_Line]], outline: list[tuple[str, int, float | None]], body_size: float,
                  meta_title: str | None) -> tuple[list[Heading], list[tuple[int, int]]]:
    """Headings (from the outline, else from font sizes) and the title's lines on page 1."""
    first_page = next((lines for lines in pages if lines), [])
    title_lines: list[tuple[int, int]] = []
    if meta_title is not None:
        wanted = _norm(meta_title)
        title_lines = [(ln.start, ln.end) for ln in first_page[:HEADING_MAX_LINES] if _norm(ln.text) == wanted]
    if outline:
        headings = _outline_headings(pages, outline)
        if meta_title is None:
            title_lines = _title_by_size(pages, body_size, {h.start for h in headings})
        taken = {a for a, _b in title_lines}
        return [h for h in headings if h.start not in taken], title_lines
    if meta_title is None:
        title_lines = _title_by_size(pages, body_size, set())
    taken = {a for a, _b in title_lines}
    headings = _size_headings(pages, body_size, taken)
    return headings, title_lines


def _outline_headings(pages: list[list[_Line]], outline: list[tuple[str, int, float | None]]) -> list[Heading]:
    """Each bookmark placed at its line: the line (or two) on its page holding its words, else the first
    line at or below the bookmark's target height, else the top of the page."""
    found: dict[int, Heading] = {}
    cursor: dict[int, int] = {}  # per page: the line after the last bookmark placed there
    for title, index, top in outline:
        if index >= len(pages):
            continue
        lines = pages[index] or next((p for p in pages[index + 1:] if p), [])
        if not lines:
            continue
        wanted = _norm(title)
        first = cursor.get(index, 0)
        heading = None
        for i in range(first, len(lines)):
            if _norm(lines[i].text) == wanted:
                heading = Heading(title, lines[i].start, lines[i].end)
            elif i + 1 < len(lines) and _norm(lines[i].text + " " + lines[i + 1].text) == wanted:
                heading = Heading(title, lines[i].start, lines[i + 1].end)  # a heading wrapped over two lines
                i += 1
            if heading is not None:
                cursor[index] = i + 1
                break
        if heading is None:
            below = [ln for ln in lines[first:]
                     if top is not None and ln.y is not None and ln.y <= top + OUTLINE_TOP_TOLERANCE]
            line = below[0] if below else lines[min(first, len(lines) - 1)]
            heading = Heading(title, line.start, line.start)
        found.setdefault(heading.start, heading)  # two bookmarks at one place: the outer (first) one
    return [found[k] for k in sorted(found)]


def _title_by_size(pages: list[list[_Line]], body_size: float, taken: set[int]) -> list[tuple[int, int]]:
    """The title is the line (or a few consecutive ones) on the first page in the largest font, when no
    other line of the document is set that large."""
    lines = [ln for page in pages for ln in page]
    if not lines:
        return []
    largest = max(ln.size for ln in lines)
    if largest < body_size * HEADING_SIZE_RATIO:
        return []
    first_page = next(page for page in pages if page)
    run = [i for i, ln in enumerate(first_page) if ln.size == largest]
    everywhere = sum(1 for ln in lines if ln.size == largest)
    if not run or everywhere != len(run) or len(run) > HEADING_MAX_LINES or run != list(range(run[0], run[-1] + 1)):
        return []
    chosen = [first_page[i] for i in run]
    if any(ln.start in taken for ln in chosen) or not _headline(" ".join(ln.text for ln in chosen)):
        return []
    return [(ln.start, ln.end) for ln in chosen]


def _size_headings(pages: list[list[_Line]], body_size: float, taken: set[int]) -> list[Heading]:
    """Short lines in a font clearly larger than the body's; consecutive ones of one size are one heading."""
    headings: list[Heading] = []
    total = sum(len(page) for page in pages)
    large = 0
    for lines in pages:
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.start in taken or not _is_large(line, body_size):
                i += 1
                continue
            j = i + 1
            while j < len(lines) and j - i < HEADING_MAX_LINES and lines[j].size == line.size \
                    and _is_large(lines[j], body_size) and lines[j].start not in taken:
                j += 1
            title = one_line(" ".join(ln.text for ln in lines[i:j]))
            headings.append(Heading(title, line.start, lines[j - 1].end))
            large += j - i
            i = j
    if total and large > HEADING_MAX_SHARE * total:
        log.info("font sizes do not mark headings here (%d of %d lines are large); ignored", large, total)
        return []
    return headings


def _fallback_headings(pages: list[list[_Line]], body_size: float) -> list[Heading]:
    """Short numbered ("2.1 Methods") or title-case lines standing alone before body text, for PDFs whose
    headings are set in the body's size (used only when no table of contents names them)."""
    headings: list[Heading] = []
    for lines in pages:
        breaks = _paragraph_breaks(lines, body_size) | {0}
        for i, line in enumerate(lines[:-1]):
            after = lines[i + 1]
            if i not in breaks or (i + 1) not in breaks and len(after.text) <= len(line.text):
                continue  # a heading opens a paragraph; the body after it is longer, or a paragraph of its own
            if _SENTENCE_END.search(line.text) or not _headline(line.text) or _PAGE_NUMBER.match(line.text):
                continue
            if _NUMBERED_HEADING.match(line.text) or _title_case(line.text):
                headings.append(Heading(one_line(line.text), line.start, line.end))
    return headings


def _title_case(text: str) -> bool:
    words = [w for w in re.findall(r"[^\W\d_][\w'\u2019-]*", text)]
    if not words or len(words) > HEADING_MAX_WORDS:
        return False
    return words[0][0].isupper() and all(w[0].isupper() or w.lower() in _TITLE_FILLERS for w in words)


# ---------------------------------------------------------------------- DOCX
class DocxLoader:
    """Word .docx files through python-docx."""

    format = DOCX
    suffixes = DOCX_SUFFIXES

    def extract(self, raw: bytes, name: str) -> Extracted:
        try:
            import docx

            document = docx.Document(io.BytesIO(raw))
            return self._read(document, name)
        except DocumentError:
            raise
        except Exception as exc:  # zipfile, lxml and python-docx each raise their own kinds
            raise DocumentError(f"{name}: is a damaged Word file that cannot be read ({type(exc).__name__}: "
                                f"{one_line(str(exc))[:ERROR_DETAIL_CHARS]}); open it in Word or LibreOffice and "
                                "save it again as .docx") from None

    def _read(self, document: Any, name: str) -> Extracted:
        from docx.table import Table
        from docx.text.paragraph import Paragraph

        builder = _TextBuilder()
        title: str | None = None
        bold_lines: list[Heading] = []
        for block in document.iter_inner_content():  # paragraphs and tables in document order
            if isinstance(block, Table):
                builder.paragraph("\n".join(self._rows(block, 0)))
                continue
            if not isinstance(block, Paragraph):
                continue
            role = _paragraph_role(block)
            text = block.text
            if role == "toc" or not _has_text(text):
                continue  # a table of contents repeats the headings; it is never indexed
            if role == "title" and title is None:
                title = one_line(clean_text(text))
                continue
            if role == "heading":
                builder.heading(text)
                continue
            span = builder.paragraph(text)
            if span is not None and _bold_line(block, text):
                bold_lines.append(Heading(one_line(text), *span))
        text = builder.text()
        if not _has_text(text):
            raise DocumentError(f"{name}: holds no text (only images or empty pages?); nothing to index")
        if title is None:  # the visible Title paragraph first: the core property is often a template's
            core = one_line(clean_text(str(document.core_properties.title or "")))
            title = core if _has_text(core) and not _JUNK_TITLE.search(core) else None
        headings = tuple(builder.headings) if builder.headings else None
        return Extracted(text, DOCX, headings, title, fallback_headings=tuple(bold_lines), meta={"format": DOCX})

    def _rows(self, table: Any, depth: int) -> list[str]:
        """One line per row: the row's cells joined by CELL_SEPARATOR (a merged cell once)."""
        rows: list[str] = []
        for row in table.rows:
            cells: list[str] = []
            seen: list[Any] = []
            for cell in row.cells:
                if any(cell._tc is s for s in seen):  # a merged cell comes back once per grid column
                    continue
                seen.append(cell._tc)
                text = one_line(clean_text(self._cell_text(cell, depth)))
                if text:
                    cells.append(text)
            if cells:
                rows.append(CELL_SEPARATOR.join(cells))
        return rows

    def _cell_text(self, cell: Any, depth: int) -> str:
        if depth >= MAX_TABLE_NESTING:
            return cell.text
        from docx.table import Table

        parts = []
        for item in cell.iter_inner_content():
            parts.append("; ".join(self._rows(item, depth + 1)) if isinstance(item, Table) else item.text)
        return " ".join(parts)


def _paragraph_role(paragraph: Any) -> str:
    """"heading", "title", "toc" or "body", from the paragraph's style (and the styles it is based on)
    or an outline level set on the paragraph."""
    if _is_outline_heading(paragraph._p.pPr):
        return "heading"
    style = paragraph.style
    depth = 0
    while style is not None and depth < MAX_STYLE_DEPTH:
        label = (style.name or "").strip().lower()
        if label.startswith("heading"):
            return "heading"
        if label == "title":
            return "title"
        if label.startswith(("toc", "table of contents")):
            return "toc"
        if _is_outline_heading(style.element.pPr):
            return "heading"
        style = style.base_style
        depth += 1
    return "body"


def _is_outline_heading(ppr: Any) -> bool:
    """Whether paragraph properties set a heading outline level (custom heading styles do)."""
    from docx.oxml.ns import qn

    element = ppr.find(qn("w:outlineLvl")) if ppr is not None else None
    value = element.get(qn("w:val")) if element is not None else None
    return value is not None and value.isdigit() and int(value) < BODY_OUTLINE_LEVEL


def _bold_line(paragraph: Any, text: str) -> bool:
    """A short paragraph set all in bold and not ending like a sentence: a heading typed by hand."""
    runs = [r for r in paragraph.runs if r.text.strip()]
    return bool(runs) and all(r.bold for r in runs) and _headline(text) and not _SENTENCE_END.search(text)


# ---------------------------------------------------------------------- HTML
class HtmlLoader:
    """HTML pages through selectolax (lexbor): the main text without navigation, headings as sections."""

    format = HTML
    suffixes = HTML_SUFFIXES

    def extract(self, raw: bytes, name: str) -> Extracted:
        from selectolax.lexbor import LexborHTMLParser

        try:
            # encoding=True: a byte-order mark or <meta charset> decides, else UTF-8 (as the HTML standard).
            tree = LexborHTMLParser(raw, encoding=True)
        except Exception as exc:
            raise DocumentError(f"{name}: is an HTML file that cannot be parsed ({type(exc).__name__}: {exc}); "
                                "save the page again from a browser") from None
        title_node, h1 = tree.css_first("title"), tree.css_first("h1")
        title = one_line(clean_text(title_node.text())) if title_node is not None else ""
        heading = one_line(clean_text(h1.text())) if h1 is not None else ""
        if not _has_text(title) or (_has_text(heading) and _norm(heading) in _norm(title)):
            # The first h1 is the page's own title; <title> often adds the site's name ("Guide | Site").
            title = heading
        root = _main_node(tree)
        builder = _TextBuilder()
        if root is not None:
            _walk_html(root, builder)
        text = builder.text()
        if not _has_text(text):
            raise DocumentError(f"{name}: has no readable text (it is all script, style or navigation: its "
                                "content is made in the browser); save the rendered page from a browser "
                                "(File > Save as, or copy its text into a .txt file) and add that")
        headings = tuple(builder.headings) if builder.headings else None
        return Extracted(text, HTML, headings, title or None, meta={"format": HTML})


def _main_node(tree: Any) -> Any:
    """<main> (or role=main), else the only <article>, else <body>."""
    main = tree.css_first("main") or tree.css_first('[role="main"]')
    if main is not None and not _dropped(main):
        return main
    articles = tree.css("article")
    if len(articles) == 1:
        return articles[0]
    return tree.body or tree.root


def _dropped(node: Any) -> bool:
    if node.tag in HTML_DROP_TAGS:
        return True
    attrs = node.attributes
    role = (attrs.get("role") or "").strip().lower()
    return role in HTML_DROP_ROLES or "hidden" in attrs or (attrs.get("aria-hidden") or "").lower() == "true"


class _HtmlState:
    """What the walk over an HTML tree is collecting: the paragraph, and the tables and cells open."""

    def __init__(self, builder: _TextBuilder) -> None:
        self.builder = builder
        self.inline: list[str] = []
        self.pre = 0  # depth inside <pre>: whitespace kept
        self.preformatted = False
        self.heading = 0
        self.tables: list[list[str]] = []  # rows of each open table
        self.rows: list[list[str]] = []  # cells of each open row
        self.cells: list[list[str]] = []  # text of each open cell

    def add(self, text: str) -> None:
        if self.cells:
            self.cells[-1].append(text)
        elif not self.tables:  # text loose between rows and cells is layout whitespace
            self.inline.append(text)
            self.preformatted = self.preformatted or self.pre > 0

    def flush(self) -> None:
        text = "".join(self.inline)
        self.inline.clear()
        if self.heading:
            self.builder.heading(text)
        elif self.preformatted:
            self.builder.paragraph(text)
        else:  # spaces collapsed (text nodes did that), line breaks from <br> kept
            self.builder.paragraph("\n".join(one_line(line) for line in text.split("\n")))
        self.preformatted = False


def _walk_html(root: Any, builder: _TextBuilder) -> None:
    """Depth first over ``root`` (a stack, not recursion: pages nest deeper than Python's stack)."""
    state = _HtmlState(builder)
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        if node.is_text_node:
            text = node.text_content or ""
            state.add(text if state.pre else re.sub(r"\s+", " ", text))
            continue
        if not node.is_element_node:
            continue  # comments
        tag = node.tag
        if leaving:
            _leave(tag, state)
            continue
        if node is not root and _dropped(node):
            continue
        _enter(tag, state)
        stack.append((node, True))
        children = list(node.iter(include_text=True))
        stack.extend((child, False) for child in reversed(children))
    state.flush()


def _enter(tag: str, state: _HtmlState) -> None:
    if state.cells:  # inside a table cell everything is the cell's text
        if tag == "table":
            state.tables.append([])
        elif tag == "tr" and state.tables:
            state.rows.append([])
        elif tag in ("td", "th") and state.rows:
            state.cells.append([])
        elif tag == "br" or tag in HTML_BLOCK_TAGS or tag in HTML_HEADINGS:
            state.add(" ")
        return
    if tag in HTML_HEADINGS:
        state.flush()
        state.heading += 1
    elif tag == "table":
        state.flush()
        state.tables.append([])
    elif tag == "tr" and state.tables:
        state.rows.append([])
    elif tag in ("td", "th") and state.rows:
        state.cells.append([])
    elif tag == "br":
        state.add(" " if state.heading else "\n")
    elif tag in HTML_BLOCK_TAGS:
        state.flush()
    if tag == "pre":
        state.pre += 1


def _leave(tag: str, state: _HtmlState) -> None:
    if tag in ("td", "th") and state.cells and state.rows:
        state.rows[-1].append(one_line("".join(state.cells.pop())))
    elif tag == "tr" and state.rows and state.tables:
        cells = [c for c in state.rows.pop() if c]
        if cells:
            state.tables[-1].append(CELL_SEPARATOR.join(cells))
    elif tag == "table" and state.tables:
        rows = state.tables.pop()
        if state.cells:  # a table inside a cell: its rows become part of the cell's text
            state.cells[-1].append(" " + "; ".join(rows) + " ")
        else:
            state.builder.paragraph("\n".join(rows))
    elif state.cells:
        return
    elif tag in HTML_HEADINGS and state.heading:
        state.flush()
        state.heading -= 1
    elif tag in HTML_BLOCK_TAGS:
        state.flush()
    if tag == "pre" and state.pre:
        state.pre -= 1


# ---------------------------------------------------------------------- registry
#: The loader of each non-text format (text files are read by ``rag.documents`` itself).
LOADERS: dict[str, Loader] = {PDF: PdfLoader(), DOCX: DocxLoader(), HTML: HtmlLoader()}
#: Every file name suffix that is indexed when found in a folder.
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + tuple(s for loader in LOADERS.values() for s in loader.suffixes)


def extract(raw: bytes, name: str) -> Extracted | None:
    """The file's text and structure through its loader, or None for a text file (read by rag.documents)."""
    fmt = detect_format(raw, name)
    return None if fmt == TEXT else LOADERS[fmt].extract(raw, name)
