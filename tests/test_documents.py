"""Stage 1: loading files, titles, sections and blocks of the four seeds."""

from __future__ import annotations

import re

import pytest

from rag import DocumentError, EmptyCorpusError, load_documents
from rag.documents import parse_document


REPORT = "compound-abuses-myanmar-border-areas-2023"
REPORT_HEADINGS = [
    "Executive Summary", "Key Recommendations", "Methodology", "Background",
    "Pre-pandemic Myanmar: a source country for trafficking", "Current Context",
    "Human trafficking for online scamming", "A different victim profile", "Recruitment Tactics",
    "Conditions in Scam Centres", "Sexual Exploitation of Women and Girls by Criminal Networks",
    "Myanmar Nationals Risk Abuse When Working in Areas Dominated by Criminal Networks", "Forecast",
    "Legal Framework", "Response Implications", "Challenges faced by civil society organisations",
    "Lack of flexible funding", "Recommendations",
]


def test_seeds_load_with_catalogue_titles(seed_docs):
    assert set(seed_docs) == {REPORT, "sex-trafficking-in-myanmar", "sex-trafficking-in-laos",
                              "sex-trafficking-in-malaysia"}
    assert seed_docs["sex-trafficking-in-laos"].title == "Sex trafficking in Laos"
    assert seed_docs[REPORT].title.startswith("Compound Abuses")
    assert seed_docs[REPORT].meta["original_file"] == "003_71ec8fa67aa06d39.txt"
    assert seed_docs[REPORT].meta["date"] == "2023-12"


def test_report_sections_follow_its_table_of_contents(seed_docs):
    doc = seed_docs[REPORT]
    titles = [s.title for s in doc.sections]
    for heading in REPORT_HEADINGS:
        assert heading in titles, heading
    # The three "Impacts of Operation 1027" subsections are told apart by their parent.
    impacts = [t for t in titles if t.endswith("Impacts of Operation 1027")]
    assert len(impacts) == 3 and len(set(impacts)) == 3
    # Sections tile the document in order and each starts at its heading line.
    for a, b in zip(doc.sections, doc.sections[1:]):
        assert a.end == b.start
    funding = next(s for s in doc.sections if s.title == "Lack of flexible funding")
    assert doc.text[funding.start:].startswith("LACK OF FLEXIBLE FUNDING")


@pytest.mark.parametrize("doc_id, sections", [
    ("sex-trafficking-in-myanmar", ["Introduction", "Victims", "Perpetrators", "Anti-sex trafficking efforts",
                                    "Corruption", "Government response problems", "Non-governmental organizations"]),
    ("sex-trafficking-in-laos", ["Introduction", "Victims", "Perpetrators", "Anti-sex trafficking efforts",
                                 "Corruption", "Government response problems", "Non-governmental organizations"]),
    ("sex-trafficking-in-malaysia", ["Introduction", "Tactics of Sex Traffickers in Malaysia", "See also"]),
])
def test_article_sections(seed_docs, doc_id, sections):
    assert [s.title for s in seed_docs[doc_id].sections] == sections


def test_table_of_contents_is_not_a_block(seed_docs):
    doc = seed_docs[REPORT]
    for block in doc.blocks:
        assert "Executive Summary\t3" not in doc.text[block.start:block.end]


def test_footnotes_are_blocks_of_their_own(seed_docs):
    doc = seed_docs[REPORT]
    footnotes = [b for b in doc.blocks if b.kind == "footnote"]
    assert len(footnotes) >= 60  # the report has 64 numbered notes
    for block in doc.blocks:
        text = doc.text[block.start:block.end]
        if block.kind == "body":
            # No line of a body block starts a footnote.
            assert not re.search(r"(^|\n)[¹²³⁴⁵⁶⁷⁸⁹⁰]+ [A-Z]", text), text[:120]


def test_wiki_title_line_is_not_body(seed_docs):
    doc = seed_docs["sex-trafficking-in-laos"]
    first = doc.blocks[0]
    assert doc.text[first.start:first.end].startswith("Sex trafficking in Laos is human trafficking")


def test_markdown_headings(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("# Field notes\n\nIntro text here.\n\n## Findings\n\nWe found things.\n\n## Next steps\n\nMore.\n")
    (doc,), skipped = load_documents([path])
    assert doc.title == "Field notes"
    assert [s.title for s in doc.sections] == ["Introduction", "Findings", "Next steps"]
    assert doc.section_at(doc.text.index("We found")) == "Findings"


def test_unreadable_files_are_reported_and_skipped(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("A perfectly fine document about trafficking.")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02PK\x03\x04" * 20)
    (tmp_path / "latin1.txt").write_bytes("Caf\xe9 au lait".encode("latin-1"))
    (tmp_path / "empty.md").write_text("   \n\n")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")  # not a supported type: ignored in a folder
    docs, skipped = load_documents([tmp_path])
    assert [d.doc_id for d in docs] == ["good"]
    reasons = {p.split("/")[-1]: r for p, r in skipped}
    assert set(reasons) == {"binary.txt", "latin1.txt", "empty.md"}
    assert "binary" in reasons["binary.txt"]
    assert "UTF-8" in reasons["latin1.txt"]
    assert "empty" in reasons["empty.md"]


def test_explicit_unsupported_file_is_skipped_with_reason(tmp_path):
    odt = tmp_path / "paper.odt"
    odt.write_bytes(b"PK\x03\x04 an OpenDocument file")
    ok = tmp_path / "ok.txt"
    ok.write_text("Some text.")
    docs, skipped = load_documents([odt, ok])
    assert [d.doc_id for d in docs] == ["ok"]
    assert "unsupported file type .odt" in skipped[0][1] and ".pdf" in skipped[0][1]


def test_empty_input_is_a_clear_error(tmp_path):
    with pytest.raises(EmptyCorpusError, match="no input"):
        load_documents([])
    with pytest.raises(EmptyCorpusError, match="no readable documents"):
        load_documents([tmp_path])
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\x00\x00")
    with pytest.raises(EmptyCorpusError, match="bad.txt"):
        load_documents([tmp_path])


def test_doc_ids_are_stable_and_unique(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "Report 2023.txt").write_text("First.")
    (tmp_path / "b" / "Report 2023.txt").write_text("Second.")
    docs1, _ = load_documents([tmp_path])
    docs2, _ = load_documents([tmp_path])
    ids = [d.doc_id for d in docs1]
    assert ids == [d.doc_id for d in docs2]
    assert len(set(ids)) == 2 and ids[0] == "report-2023"


def test_parse_rejects_blank_text():
    with pytest.raises(DocumentError):
        parse_document("  \n ", doc_id="x")


@pytest.mark.parametrize("catalogue", ["[]", '{"documents": 5}', '{"documents": ["x", 3, {"file": 7}]}', "null"])
def test_a_malformed_catalogue_is_ignored_not_fatal(tmp_path, catalogue):
    from rag import load_documents

    (tmp_path / "a.md").write_text("# A title\n\nSome text about lighthouses.\n", encoding="utf-8")
    (tmp_path / "catalogue.json").write_text(catalogue, encoding="utf-8")
    docs, skipped = load_documents([tmp_path])
    assert [d.doc_id for d in docs] == ["a"] and not skipped


@pytest.mark.parametrize("raw, message", [
    (b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n", "is a PDF file"),
    (b"PK\x03\x04\x14\x00 word/document.xml", "is a ZIP"),
])
def test_a_binary_format_under_a_txt_name_is_recognised_by_content(tmp_path, raw, message):
    from rag import DocumentError, read_text_file

    path = tmp_path / "report.txt"
    path.write_bytes(raw)
    with pytest.raises(DocumentError, match=message):
        read_text_file(path)


def test_utf16_with_a_byte_order_mark_is_read(tmp_path):
    from rag import read_text_file

    path = tmp_path / "notes.txt"
    path.write_bytes("Notes\n\nThe shelter in Vientiane opened in 2024.\n".encode("utf-16"))
    assert "Vientiane opened in 2024" in read_text_file(path)


# --- issue 14: heading recognition in linear time -----------------------------------------------------------------

import random  # noqa: E402
import time  # noqa: E402

from rag import documents  # noqa: E402

# The patterns the heading functions replace (they backtrack cubically or quadratically on runs of spaces); the
# functions must give exactly their results.
_REFERENCE = {
    "md": (re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$"), documents._md_heading, None),
    "wiki_heading": (re.compile(r"^(={2,6})\s*(.+?)\s*\1\s*$"), documents._wiki_heading, 2),
    "wiki_title": (re.compile(r"^=\s*([^=].*?)\s*=\s*$"), documents._wiki_title, 1),
    "toc_entry": (re.compile(r"^\s*(?P<title>\S.*?)(?:\t+|\s*\.{3,}\s*|\s{2,})(?P<page>\d{1,4})\s*$"),
                  documents._toc_entry, "title"),
}


@pytest.mark.parametrize("name", list(_REFERENCE))
def test_heading_functions_match_their_reference_patterns(name):
    pattern, function, group = _REFERENCE[name]
    rnd = random.Random(name)
    alphabet = [" ", " ", "\t", "\u00a0", "\u2003", "\x0c", "\r", "#", "#", "=", "=", ".", ".", "a", "b", "1", "2",
                "٣"]
    heads = ["", "#", "##", "####### ", "=", "==", "===", "Intro", " A"]
    tails = ["", "=", "==", "===", " 12", "\t3", "...7", "  45", " #", "12345", "\t\t9 "]
    matched = 0
    for _ in range(20_000):
        line = rnd.choice(heads) + "".join(rnd.choices(alphabet, k=rnd.randint(0, 16))) + rnd.choice(tails)
        m = pattern.match(line)
        expected = (m.groups() if group is None else m.group(group)) if m else None
        assert function(line) == expected, repr(line)
        matched += m is not None
    assert matched > 500  # the sample exercises matches, not only rejections


@pytest.mark.parametrize("text, suffix", [
    ("# exported by a tool" + " " * 100_000 + "v2\n\nSome text.\n", ".txt"),  # was cubic: hours
    ("# Title\n\n## Part" + " " * 100_000 + "x\n\nSome text.\n", ".md"),
    ("= Title =\n\n== Part" + " " * 100_000 + "x ==\n\nSome text.\n", ".txt"),  # was quadratic
    ("= Title" + " " * 100_000 + "x =\n\nSome text.\n", ".txt"),
    ("Contents\nIntro" + " " * 100_000 + "x\nA\t1\nB\t2\n\nSome text.\n", ".txt"),
    ("Text.\n" + "Contents\nnot an entry\n" * 20_000, ".txt"),  # copied the rest of the lines per "Contents"
], ids=["hash-line", "md-heading", "wiki-heading", "wiki-title", "toc-entry", "many-contents-lines"])
def test_long_runs_of_spaces_do_not_stall_parsing(text, suffix):
    began = time.perf_counter()
    doc = parse_document(text, doc_id="x", suffix=suffix)
    assert time.perf_counter() - began < 5, "should take milliseconds"
    assert doc.blocks


def test_table_of_contents_with_many_entries_finds_each_heading_after_the_previous_one():
    entries = [f"Part {i}" for i in range(2_000)]
    toc = "Contents\n" + "".join(f"{e}\t{i % 900 + 1}\n" for i, e in enumerate(entries))
    body = []
    for i, entry in enumerate(entries):
        if i % 3 == 0:
            continue  # not in the body: ignored
        body.append(f"{entry}\n\nText of {entry.lower()}.\n")
        if i == 4:
            body.append("Part 5\n\nAn early line that looks like the next heading.\n")
    doc = parse_document(toc + "\n" + "\n".join(body), doc_id="x")
    titles = [s.title for s in doc.sections]
    assert titles == ["(front matter)"] + [e for i, e in enumerate(entries) if i % 3]
    part5 = next(s for s in doc.sections if s.title == "Part 5")
    assert doc.text[part5.start:].startswith("Part 5\n\nAn early line")  # the first matching line after Part 4
