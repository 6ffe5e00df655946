"""PDF, DOCX and HTML loaders, over small real files the tests write (fpdf2, python-docx, plain HTML).

What is checked: headings become sections, every character of a PDF keeps its page and citations carry
it (through a real index, the reader and the CLI), DOCX tables are searchable text, HTML chrome is left
out, bad files are skipped with a message naming the fix, content beats the file name, and indexes
written before pages existed still load.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from rag import Config, DocumentError, load_documents
from rag.documents import load_document
from rag.index import Index
from rag.loaders import DOCX, HTML, PDF, TEXT, detect_format
from rag.types import Page

PAGE_2_QUESTION = "Who designed the lighthouse on the north pier?"
PAGE_2_FACT = "designed by the engineer Maria Soares"
PAGE_1_FACT = "three ferry lines"
TABLE_ROW = "Blue line | 07:15 | 4 euros"
CHROME = ("SITE HEADER", "NAVLINK", "ROLE NAV", "ASIDE TEXT", "FOOTER TEXT", "SEARCHBTN", "NOSCRIPT", "SCRIPTTEXT",
          "color: red")


# ---------------------------------------------------------------------- files the tests write
def harbour_pdf(*, outline: bool = True, metadata: bool = True, heading_size: float = 16) -> bytes:
    """Two pages: a title, "1 Ferry services" on page 1 and "2 The lighthouse" on page 2 (bookmarked when
    ``outline``), each heading followed by body paragraphs in 11 pt."""
    from fpdf import FPDF

    pdf = FPDF()
    if metadata:
        pdf.set_title("Harbour report")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 22)
    pdf.cell(0, 12, "Harbour report", new_x="LMARGIN", new_y="NEXT")
    for number, (heading, paragraphs) in enumerate((
            ("1 Ferry services", [
                f"The harbour of Porto has {PAGE_1_FACT}. The first line crosses the river every twenty minutes "
                "from dawn until dusk, and the second one runs at night. Tickets are sold on the pier and on board.",
                "Timetables change in winter, when the night line stops at ten in the evening. Fares rise in the "
                "summer months."]),
            ("2 The lighthouse", [
                f"The lighthouse on the north pier was {PAGE_2_FACT} and completed in 1886. Its lamp is lit by "
                "the keeper at dusk every day and can be seen from forty kilometres away."]))):
        if number:
            pdf.add_page()
        pdf.set_font("Helvetica", "B", heading_size)
        if outline:
            pdf.start_section(heading)
        pdf.cell(0, 10, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 11)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6, paragraph, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(4)
    return bytes(pdf.output())


def scanned_pdf() -> bytes:
    """A page with only a drawn rectangle: no text layer, as a scan without OCR."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 120, 80, style="F")
    return bytes(pdf.output())


def encrypted_pdf(user_password: str) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(harbour_pdf())))
    # RC4-128: pypdf writes (and reads) it without the optional cryptography package.
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def harbour_docx() -> bytes:
    """A title, two Heading 1 sections, a Heading 2, and a timetable table (with a merged cell)."""
    import docx

    document = docx.Document()
    document.add_heading("Harbour timetable", 0)
    document.add_paragraph("This guide lists the ferries of the harbour.")
    document.add_heading("Ferries", 1)
    document.add_paragraph("Three lines leave from the main pier.")
    table = document.add_table(rows=3, cols=3)
    for row, cells in zip(table.rows, (("Line", "Departs", "Fare"), ("Blue line", "07:15", "4 euros"),
                                       ("Night line", "closed in winter", ""))):
        for cell, text in zip(row.cells, cells):
            cell.text = text
    table.cell(2, 1).merge(table.cell(2, 2))
    document.add_paragraph("Children under six travel free.")
    document.add_heading("Lighthouse", 1)
    document.add_heading("Visits", 2)
    document.add_paragraph("The lighthouse opens to visitors on Sundays.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


HARBOUR_HTML = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Harbour guide | Porto Tourism</title>
<style>body { color: red; }</style><script>var tracking = "SCRIPTTEXT";</script></head>
<body>
<header><div class="logo">SITE HEADER</div><nav><ul><li><a href="/">Home</a></li><li>NAVLINK</li></ul></nav></header>
<div role="navigation">ROLE NAV</div>
<main>
<h1>Harbour guide</h1>
<p>The harbour of Porto has <b>three</b> ferry&nbsp;lines.<br>Tickets are sold on the pier.</p>
<h2>The lighthouse</h2>
<p>The lighthouse was built in 1886 and is lit at dusk.</p>
<table><tr><th>Line</th><th>Departs</th></tr><tr><td>Blue</td><td>07:15</td></tr></table>
<aside>ASIDE TEXT</aside>
<form><input name=q><button>SEARCHBTN</button></form>
</main>
<footer>FOOTER TEXT &copy; 2024</footer>
<noscript>NOSCRIPT</noscript>
</body></html>
"""

SCRIPT_ONLY_HTML = """<!doctype html><html><head><title>App</title><script src="app.js"></script></head>
<body><div id="root"></div><noscript>You need to enable JavaScript to run this app.</noscript>
<script>document.getElementById("root").textContent = "rendered later";</script></body></html>"""


def write(folder: Path, files: dict[str, bytes | str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return folder


@pytest.fixture(scope="module")
def good_files(tmp_path_factory) -> Path:
    """A folder with one good file of each new format."""
    return write(tmp_path_factory.mktemp("loaders") / "docs", {
        "harbour-report.pdf": harbour_pdf(), "timetable.docx": harbour_docx(), "guide.html": HARBOUR_HTML})


@pytest.fixture(scope="module")
def mixed_assistant(good_files, config, embedder, reader):
    """A real assistant (embedder, reader) over the PDF, the DOCX and the HTML page, in memory."""
    from rag import Assistant

    docs, skipped = load_documents([good_files])
    assert not skipped
    index, _ = Index.build(docs, config, embedder)
    return Assistant(index, config, embedder, reader=reader)


# ---------------------------------------------------------------------- PDF
def _doc(tmp_path: Path, name: str, data: bytes | str):
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return load_document(path, doc_id=Path(name).stem)


def test_pdf_sections_come_from_the_outline_and_every_character_keeps_its_page(tmp_path):
    doc = _doc(tmp_path, "harbour.pdf", harbour_pdf())
    assert doc.title == "Harbour report"
    assert [s.title for s in doc.sections if s.title.startswith(("1 ", "2 "))] == ["1 Ferry services",
                                                                                   "2 The lighthouse"]
    assert [p.number for p in doc.pages] == [1, 2]
    assert doc.page_at(doc.text.index(PAGE_1_FACT)) == 1
    assert doc.page_at(doc.text.index(PAGE_2_FACT)) == 2
    assert doc.section_at(doc.text.index(PAGE_2_FACT)) == "2 The lighthouse"
    assert PAGE_2_FACT in doc.text[doc.pages[1].start:doc.pages[1].end]
    assert doc.meta["format"] == "pdf" and doc.meta["page_count"] == 2
    body = " ".join(doc.text[b.start:b.end] for b in doc.blocks)
    assert "Ferry services" not in body and "Harbour report" not in body  # headings and title are not body
    assert len([b for b in doc.blocks if b.section == "1 Ferry services"]) == 2  # the paragraph gap is kept


@pytest.mark.parametrize("metadata", [True, False])
def test_pdf_without_an_outline_finds_headings_by_font_size(tmp_path, metadata):
    doc = _doc(tmp_path, "harbour.pdf", harbour_pdf(outline=False, metadata=metadata))
    assert [s.title for s in doc.sections][-2:] == ["1 Ferry services", "2 The lighthouse"]
    assert doc.title == "Harbour report"  # the document information, else the one line in the largest font
    assert doc.page_at(doc.text.index(PAGE_2_FACT)) == 2


def test_pdf_headings_in_the_body_size_are_found_as_numbered_lines(tmp_path):
    doc = _doc(tmp_path, "harbour.pdf", harbour_pdf(outline=False, heading_size=11))
    assert [s.title for s in doc.sections][-2:] == ["1 Ferry services", "2 The lighthouse"]


def test_pdf_bytes_named_txt_are_read_as_a_pdf(tmp_path):
    write(tmp_path / "docs", {"report.txt": harbour_pdf(), "notes.txt": "Plain notes about the pier.\n"})
    docs, skipped = load_documents([tmp_path / "docs"])
    by_id = {d.doc_id: d for d in docs}
    assert not skipped and set(by_id) == {"report", "notes"}
    assert by_id["report"].meta["format"] == "pdf" and "%PDF" not in by_id["report"].text
    assert by_id["report"].page_at(by_id["report"].text.index(PAGE_2_FACT)) == 2
    assert by_id["notes"].pages == () and "format" not in by_id["notes"].meta


@pytest.mark.parametrize("name, data, fmt", [
    ("a.txt", b"%PDF-1.7 ...", PDF), ("a.docx", None, DOCX), ("a.txt", None, DOCX), ("a.pdf", None, DOCX),
    ("a.txt", b"  <!DOCTYPE html><p>x</p>", HTML), ("a.htm", b"<p>x</p>", HTML), ("a.md", b"# T\n\nx", TEXT),
    ("a.txt", b"x %PDF-1.7 later", TEXT),
])
def test_the_format_is_told_by_content_then_by_name(name, data, fmt):
    assert detect_format(harbour_docx() if data is None else data, name) == fmt


@pytest.mark.parametrize("name, data, message", [
    ("photo.pdf", b"\x89PNG\r\n\x1a\n....", "is a PNG image file"),
    ("archive.txt", b"PK\x03\x04\x14\x00" + bytes(100), "is a damaged ZIP file"),
    ("login.pdf", b"<!DOCTYPE html><title>Sign in</title>", "is not a PDF"),
    ("letter.docx", b"Dear Sir,\n", "is not a Word .docx file"),
    ("locked.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "password-protected Word file"),
])
def test_other_binaries_and_misnamed_files_are_refused_with_what_they_are(name, data, message):
    with pytest.raises(DocumentError, match=message):
        detect_format(data, name)


# ---------------------------------------------------------------------- bad files: skipped, the rest indexed
BAD_FILES = {
    "scanned.pdf": (scanned_pdf, "has no text layer (scanned?); run OCR first"),
    "locked.pdf": (lambda: encrypted_pdf("secret"), "is encrypted; decrypt it first"),
    "cut.pdf": (lambda: harbour_pdf()[:1500], "is a damaged PDF"),
    "cut.docx": (lambda: harbour_docx()[:3000], "is a damaged Word file"),
    "app.html": (lambda: SCRIPT_ONLY_HTML, "has no readable text"),
}


def test_bad_files_are_skipped_with_a_clear_message_and_the_rest_is_loaded(tmp_path):
    folder = write(tmp_path / "docs", {name: make() for name, (make, _m) in BAD_FILES.items()})
    write(folder, {"good.pdf": harbour_pdf(), "open.pdf": encrypted_pdf(""), "notes.md": "# Notes\n\nThe pier.\n"})
    docs, skipped = load_documents([folder])
    assert {d.doc_id for d in docs} == {"good", "open", "notes"}  # an empty user password opens as usual
    reasons = {Path(p).name: r for p, r in skipped}
    assert set(reasons) == set(BAD_FILES)
    for name, (_make, message) in BAD_FILES.items():
        assert message in reasons[name], (name, reasons[name])
        assert "Traceback" not in reasons[name]
    by_id = {d.doc_id: d for d in docs}
    assert PAGE_2_FACT in by_id["open"].text


def test_rag_ingest_skips_bad_files_then_ask_prints_the_page(tmp_path, capsys, good_files, embedder):
    from rag.cli import main

    folder = write(tmp_path / "docs", {"scanned.pdf": scanned_pdf(), "locked.pdf": encrypted_pdf("secret")})
    for path in good_files.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    index = tmp_path / "idx"
    assert main(["-q", "--index", str(index), "ingest", str(folder)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert "skipped" in captured.err and "scanned.pdf: has no text layer (scanned?); run OCR first" in captured.err
    assert "locked.pdf: is encrypted; decrypt it first" in captured.err
    assert "added    harbour-report" in captured.out and "3 added" in captured.out

    assert main(["--index", str(index), "ask", PAGE_2_QUESTION]) == 0
    out = capsys.readouterr().out
    assert "Maria Soares" in out and "p. 2, chars" in out
    assert main(["--index", str(index), "ask", PAGE_2_QUESTION, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["citations"][0]["page"] == 2 and data["citations"][0]["doc_id"] == "harbour-report"
    # Page spans survive the index on disk.
    loaded = Index.load(index, Config()).documents["harbour-report"]
    assert [p.number for p in loaded.pages] == [1, 2]


# ---------------------------------------------------------------------- citations carry the page
def test_citations_carry_the_page_of_their_quote(mixed_assistant):
    answer = mixed_assistant.ask(PAGE_2_QUESTION)
    assert not answer.abstained, answer.text
    first = answer.citations[0]
    assert first.doc_id == "harbour-report" and PAGE_2_FACT in first.quote and first.page == 2
    assert answer.to_dict()["citations"][0]["page"] == 2
    assert "(p. 2, chars" in answer.to_markdown()
    doc = mixed_assistant.documents[first.doc_id]
    assert doc.text[first.start:first.end] == first.quote
    page_1 = mixed_assistant.ask("How many ferry lines does the harbour of Porto have?", doc_ids=["harbour-report"])
    assert page_1.citations and page_1.citations[0].page == 1


def test_citations_of_documents_without_pages_have_none(assistant):
    answer = assistant.ask("Which organisation rescues and restores sex trafficking victims in Myanmar?")
    assert answer.citations and all(c.page is None for c in answer.citations)
    assert answer.to_dict()["citations"][0]["page"] is None
    assert "p. " not in answer.to_markdown().split("**Sources**")[1].split(":")[0]


# ---------------------------------------------------------------------- DOCX
def test_docx_headings_become_sections_and_tables_become_rows(tmp_path):
    doc = _doc(tmp_path, "timetable.docx", harbour_docx())
    assert doc.title == "Harbour timetable"
    assert [s.title for s in doc.sections] == ["Introduction", "Ferries", "Lighthouse", "Visits"]
    assert TABLE_ROW in doc.text and "Line | Departs | Fare" in doc.text
    assert "Night line | closed in winter\n" in doc.text + "\n"  # a merged cell is read once
    # Document order: the table sits between the paragraphs around it.
    assert doc.text.index("Three lines leave") < doc.text.index(TABLE_ROW) < doc.text.index("Children under six")
    assert doc.section_at(doc.text.index(TABLE_ROW)) == "Ferries"
    assert doc.pages == () and doc.meta["format"] == "docx"


def test_docx_table_text_is_searchable(mixed_assistant):
    passages = mixed_assistant.retrieve("What is the fare of the Blue line and when does it depart?", k=3)
    assert passages[0].doc_id == "timetable" and TABLE_ROW in passages[0].text


# ---------------------------------------------------------------------- HTML
def test_html_main_text_without_chrome(tmp_path):
    doc = _doc(tmp_path, "guide.html", HARBOUR_HTML)
    assert doc.title == "Harbour guide"  # the h1, not "<title> | site name"
    assert [s.title for s in doc.sections] == ["Harbour guide", "The lighthouse"]
    for chrome in CHROME:
        assert chrome not in doc.text
    assert "The harbour of Porto has three ferry lines.\nTickets are sold on the pier." in doc.text
    assert "Line | Departs\nBlue | 07:15" in doc.text
    assert doc.section_at(doc.text.index("built in 1886")) == "The lighthouse"


def test_html_without_main_uses_the_body_less_its_chrome(tmp_path):
    page = HARBOUR_HTML.replace("<main>", "<div>").replace("</main>", "</div>").replace("<title>Harbour guide | Porto "
                                                                                       "Tourism</title>", "")
    doc = _doc(tmp_path, "guide.htm", page)
    assert doc.title == "Harbour guide" and "built in 1886" in doc.text
    assert not any(chrome in doc.text for chrome in CHROME)


# ---------------------------------------------------------------------- the index on disk
def test_text_documents_have_no_pages_in_the_store(assistant):
    assert all(d.pages == () for d in assistant.documents.values())
    doc = next(iter(assistant.documents.values()))
    assert doc.page_at(0) is None


def test_page_spans_round_trip_through_the_store_and_bad_ones_are_refused(tmp_path):
    import sqlite3

    from rag.store import ChunkStore, StoreError

    doc = _doc(tmp_path, "harbour.pdf", harbour_pdf())
    store = ChunkStore.create(tmp_path / "s.sqlite3")
    store.begin()
    store.put_documents([(doc, 0)])
    store.commit()
    store.close()
    again = ChunkStore(tmp_path / "s.sqlite3").document(doc.doc_id)
    assert again == doc and again.pages == doc.pages and isinstance(again.pages[0], Page)
    pages = [[p.start, p.end, p.number] for p in doc.pages]
    pages[1][1] = len(doc.text) + 5
    with sqlite3.connect(tmp_path / "s.sqlite3") as db:
        db.execute("UPDATE documents SET pages = ?", (json.dumps(pages),))
    db.close()
    with pytest.raises(StoreError, match="page spans"):
        ChunkStore(tmp_path / "s.sqlite3").document(doc.doc_id)


def test_upload_types_are_the_loadable_ones():
    assert {".pdf", ".docx", ".htm", ".html", ".txt", ".md"} <= set(Config().allowed_extensions)
