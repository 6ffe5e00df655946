"""The UI's named endpoints, through gradio_client and plain HTTP, against a real server on a free port."""

from __future__ import annotations

import html
import inspect
import json
import os
import re
import subprocess
import sys
import time

import httpx
import pytest

MYANMAR_Q = "Where are women from Myanmar trafficked to?"
ABSTAIN = "The documents do not answer this question."
UPLOAD_LIMIT = 50_000
#: Generic names Gradio makes up for unlabelled components ("value_44", "parameter_43").
GENERATED_NAME = re.compile(r"^(value|parameter)_\d+$")


@pytest.fixture(scope="module")
def server(ui_server_factory):
    from rag import Config

    return ui_server_factory(Config(max_upload_bytes=UPLOAD_LIMIT))


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server.url, verbose=False)


def _scanned_pdf() -> bytes:
    """A PDF page holding only a drawn rectangle: what a scan without OCR looks like to a text extractor."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(20, 20, 120, 80, style="F")
    return bytes(pdf.output())


def index_state(server) -> tuple[dict, bytes, list[str]]:
    """What must not change when an upload is refused: the index's contents, its manifest, the uploads folder."""
    info = server.assistant.info()
    manifest = (server.index_dir / "manifest.json").read_bytes()
    uploads = sorted(p.name for p in server.uploads.iterdir()) if server.uploads.exists() else []
    return {"documents": [d["doc_id"] for d in info["documents"]], "chunks": info["chunks"]}, manifest, uploads


def test_ask_returns_an_answer_with_exact_quotes(client, server):
    result = client.predict(question=MYANMAR_Q, api_name="/ask")
    assert result["abstained"] is False
    assert result["searched"] == result["asked"] == result["question"] == MYANMAR_Q
    assert result["citations"], result
    docs = server.assistant.documents
    for c in result["citations"]:
        assert f"[{c['number']}]" in result["text"]
        assert docs[c["doc_id"]].text[c["start"]:c["end"]] == c["quote"]
    assert {c["doc_id"] for c in result["citations"]} <= {"sex-trafficking-in-myanmar",
                                                          "compound-abuses-myanmar-border-areas-2023"}
    assert "trafficked" in result["text"]
    assert result["markdown"].startswith(f"**Q:** {MYANMAR_Q}")
    assert result["citations"][0]["quote"] in result["markdown"]
    assert len(result["passages"]) == 10  # the default number of passages
    json.dumps(result)  # plain JSON all the way down


def test_follow_up_is_resolved_before_retrieving(client):
    first = client.predict(question=MYANMAR_Q, api_name="/ask")
    follow = client.predict(question="and from Laos?", history=[first["searched"]], api_name="/ask")
    assert follow["asked"] == "and from Laos?"
    assert follow["searched"] == "Where are women from Laos trafficked to?"
    assert not follow["abstained"]
    assert {c["doc_id"] for c in follow["citations"]} == {"sex-trafficking-in-laos"}
    # Without the conversation the same words are searched as they are.
    alone = client.predict(question="and from Laos?", api_name="/ask")
    assert alone["searched"] == "and from Laos?"


def test_document_filter_and_number_of_passages(client):
    only = ["sex-trafficking-in-malaysia"]
    result = client.predict(question="Where are women trafficked to?", k=4, doc_ids=only, api_name="/ask")
    assert len(result["passages"]) == 4
    assert {p["doc_id"] for p in result["passages"]} == set(only)
    assert {c["doc_id"] for c in result["citations"]} <= set(only)
    retrieved = client.predict(question="scam centres", k=3, doc_ids=["sex-trafficking-in-laos"],
                               api_name="/retrieve")
    assert [p["doc_id"] for p in retrieved["passages"]] == ["sex-trafficking-in-laos"] * 3
    assert [p["rank"] for p in retrieved["passages"]] == [1, 2, 3]


def test_bad_requests_get_clear_messages(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="unknown document id"):
        client.predict(question="Where are women trafficked to?", doc_ids=["no-such-doc"], api_name="/ask")
    with pytest.raises(AppError, match="question is empty"):
        client.predict(question="   ", api_name="/ask")
    with pytest.raises(AppError, match="between 1 and 50"):
        client.predict(question="trafficking", k=0, api_name="/retrieve")


def test_abstention_comes_with_the_closest_passages(client):
    result = client.predict(question="What is the boiling point of mercury?", api_name="/ask")
    assert result["abstained"] is True
    assert result["text"] == ABSTAIN
    assert result["citations"] == []
    assert result["passages"], "an abstention still offers the closest passages"
    assert "Closest passages" in result["markdown"]


def test_documents_and_info(client, server):
    docs = client.predict(api_name="/documents")["documents"]
    assert {d["doc_id"] for d in docs} >= {"sex-trafficking-in-laos", "sex-trafficking-in-malaysia",
                                           "sex-trafficking-in-myanmar",
                                           "compound-abuses-myanmar-border-areas-2023"}
    assert all(d["chunks"] > 0 and d["file"] and d["title"] for d in docs)
    info = client.predict(api_name="/info")
    assert info["model"]["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert info["chunks"] == sum(d["chunks"] for d in info["documents"]) == len(server.assistant.index.chunks)
    assert info["created_at"]
    assert info["reader"]["name"] == "minilm-reader-v1" and len(info["reader"]["sha256"]) == 64


def test_upload_adds_updates_and_refuses(client, server, tmp_path):
    from gradio_client import handle_file

    new = tmp_path / "Zebra Census (final).md"
    new.write_text("# Zebra census of Narnia\n\nThe zebra census counted 42 zebras in Narnia in 2023.\n"
                   "Most zebras live near the lamp post.\n", encoding="utf-8")
    before_docs = len(server.assistant.documents)
    result = client.predict(files=[handle_file(str(new))], api_name="/upload")
    assert result["ok"] and result["added"] == ["zebra-census-final"], result
    assert result["documents"] == before_docs + 1
    # Saved under a generated, sanitised name in the uploads folder.
    assert (server.uploads / "zebra-census-final.md").read_bytes() == new.read_bytes()
    answer = client.predict(question="How many zebras did the census count in Narnia?", api_name="/ask")
    assert not answer["abstained"]
    assert answer["citations"][0]["doc_id"] == "zebra-census-final"
    assert "42 zebras" in answer["citations"][0]["quote"]

    # The same file again changes nothing; a new version replaces the old one.
    again = client.predict(files=[handle_file(str(new))], api_name="/upload")
    assert again["unchanged"] == ["zebra-census-final"] and not again["added"]
    new.write_text("# Zebra census of Narnia\n\nThe zebra census counted 57 zebras in Narnia in 2024.\n",
                   encoding="utf-8")
    changed = client.predict(files=[handle_file(str(new))], api_name="/upload")
    assert changed["changed"] == ["zebra-census-final"]
    assert "57 zebras" in server.assistant.documents["zebra-census-final"].text
    assert result["documents"] == changed["documents"]

    # Refused files: a clear reason each, and the index and the uploads folder stay as they were.
    bad = {
        "notes.pdf": b"%PDF-1.7 not text",
        "notes.odt": b"PK\x03\x04 an OpenDocument file",
        "scan.pdf": _scanned_pdf(),
        "binary.txt": b"abc\x00\x01\x02 binary",
        "latin1.txt": "caf\u00e9 cr\u00e8me".encode("latin-1"),
        "empty.md": b"  \n\n ",
        "big.txt": b"zebra " * (UPLOAD_LIMIT // 6 + 10),
        "headings-only.md": b"# Title\n\n## Section\n",
    }
    paths = []
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
        paths.append(handle_file(str(tmp_path / name)))
    state = index_state(server)
    refused = client.predict(files=paths, api_name="/upload")
    assert not refused["ok"] and not refused["added"] and not refused["changed"]
    reasons = {r["file"]: r["reason"] for r in refused["rejected"]}
    assert set(reasons) == set(bad)
    assert "damaged PDF" in reasons["notes.pdf"]
    assert "only .txt, .md, .pdf, .docx" in reasons["notes.odt"]
    assert "no text layer (scanned?); run OCR first" in reasons["scan.pdf"]
    assert "binary" in reasons["binary.txt"]
    assert "UTF-8" in reasons["latin1.txt"]
    assert "empty" in reasons["empty.md"]
    assert "upload limit" in reasons["big.txt"]
    assert "no text" in reasons["headings-only.md"]
    assert index_state(server) == state

    # Far over the limit, Gradio itself refuses the upload before it reaches the handler.
    huge = tmp_path / "huge.txt"
    huge.write_bytes(b"zebra " * (UPLOAD_LIMIT // 2))
    with pytest.raises(Exception):
        client.predict(files=[handle_file(str(huge))], api_name="/upload")
    assert index_state(server) == state


def _two_page_pdf() -> bytes:
    """Page 1 about ferries, page 2 about the lighthouse, each under a bookmarked heading."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_title("Harbour report")
    for heading, body in (("1 Ferry services", "The harbour of Porto has three ferry lines, which cross the river "
                                               "every twenty minutes."),
                          ("2 The lighthouse", "The lighthouse on the north pier was designed by the engineer "
                                               "Maria Soares and completed in 1886.")):
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 16)
        pdf.start_section(heading)
        pdf.cell(0, 10, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 11)
        pdf.multi_cell(0, 6, body)
    return bytes(pdf.output())


def test_an_uploaded_pdf_is_cited_with_its_page(client, server, tmp_path):
    """A PDF added through /upload (named .txt, to show the content decides) answers with "p. 2" in the
    citation, the sources card and the Markdown export."""
    from gradio_client import handle_file

    from ui.app import render_sources_html

    path = tmp_path / "Harbour Report.txt"
    path.write_bytes(_two_page_pdf())
    result = client.predict(files=[handle_file(str(path))], api_name="/upload")
    assert result["ok"] and result["added"] == ["harbour-report"], result
    doc = server.assistant.documents["harbour-report"]
    assert doc.meta["format"] == "pdf" and [p.number for p in doc.pages] == [1, 2]
    question = "Who designed the lighthouse on the north pier?"
    answer = client.predict(question=question, doc_ids=["harbour-report"], api_name="/ask")
    assert not answer["abstained"] and answer["citations"][0]["page"] == 2, answer["text"]
    assert "(p. 2, chars" in answer["markdown"]
    sources = render_sources_html(server.assistant.ask(question, doc_ids=["harbour-report"]), 1,
                                  server.assistant.documents)
    assert '<span class="rag-page">p. 2</span>' in sources


def test_plain_http_call(server):
    with httpx.Client(base_url=server.url, timeout=60) as http:
        start = http.post("gradio_api/call/ask", json={"data": [MYANMAR_Q, 3, None, None]})
        start.raise_for_status()
        stream = http.get(f"gradio_api/call/ask/{start.json()['event_id']}").text
    assert "event: complete" in stream
    data = json.loads(stream.split("event: complete\ndata:", 1)[1].strip())[0]
    assert len(data["passages"]) == 3 and data["citations"]


def test_ui_handlers_are_not_public_endpoints(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/ask", "/retrieve", "/upload", "/documents", "/info"} <= names
    assert len(names) == 5, names


def test_no_endpoint_part_has_a_generated_name(client, server):
    api = client.view_api(print_info=False, return_format="dict")
    info = httpx.get(f"{server.url}gradio_api/info", timeout=30).json()
    for listing in (api, info):
        for name, endpoint in listing["named_endpoints"].items():
            for part in endpoint["parameters"] + endpoint["returns"]:
                for key in ("label", "parameter_name"):
                    assert not GENERATED_NAME.match(str(part.get(key) or "")), (name, part.get(key))
    upload = api["named_endpoints"]["/upload"]
    assert [p["parameter_name"] for p in upload["parameters"]] == ["files"]
    assert [r["label"] for r in upload["returns"]] == ["upload_result"]


def test_a_truncated_question_says_so(client, server):
    from rag.tokens import truncate_tokens

    config = server.assistant.config
    words = server.assistant.documents["compound-abuses-myanmar-border-areas-2023"].text.split()
    question = " ".join(words[:config.max_question_tokens * 2])  # a word is at least one token
    _cut, tokens = truncate_tokens(question, config.max_question_tokens, config.encoding)
    long = client.predict(question=question, api_name="/ask")
    assert long["truncated"] is True and long["question_tokens"] == tokens > config.max_question_tokens
    assert question.startswith(long["question"]) and len(long["question"]) < len(question)  # what was searched
    short = client.predict(question=MYANMAR_Q, api_name="/ask")
    assert short["truncated"] is False and 0 < short["question_tokens"] <= config.max_question_tokens
    retrieved = client.predict(question=question, k=2, api_name="/retrieve")
    assert retrieved["truncated"] is True and retrieved["question_tokens"] == tokens


# ---------------------------------------------------------------------- pure functions
def test_upload_names_are_generated_never_paths():
    from ui.app import safe_upload_name

    assert safe_upload_name("../../etc/passwd.txt", ".txt") == "passwd.txt"
    assert safe_upload_name("..\\..\\boot.ini.md", ".md") == "boot-ini.md"
    assert safe_upload_name("<img src=x onerror=alert(1)>.md", ".md") == "img-src-x-onerror-alert-1.md"
    assert safe_upload_name(".hidden.txt", ".txt") == "hidden.txt"
    assert safe_upload_name("???.txt", ".txt") == "document.txt"
    taken = safe_upload_name("Sex trafficking in Laos.txt", ".txt", lambda name: True, b"x")
    assert taken.startswith("sex-trafficking-in-laos-") and taken.endswith(".txt") and "/" not in taken


def test_auth_parsing():
    from rag import InputError
    from ui.app import parse_auth

    assert parse_auth("alice:s3:cret") == ("alice", "s3:cret")
    assert parse_auth(None) is None and parse_auth("") is None
    for bad in ("alice", ":pw", "alice:"):
        with pytest.raises(InputError):
            parse_auth(bad)


def test_binds_localhost_by_default():
    from ui.app import serve, start

    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(start).parameters["host"].default == "127.0.0.1"


def test_rendering_escapes_document_text_and_questions():
    from rag import Answer, Citation, Passage
    from ui.app import render_answer_html, render_sources_html

    text = "Intro <script>alert(1)</script> [2] then <img src=x onerror=alert(1)> [click](javascript:alert(1)) end."
    quote = text[6:60]
    passage = Passage(text=text, doc_id="d", title="<b>T</b>", section="S<i>", start=0, end=len(text),
                      score=0.5, chunk_id=0, rank=1)
    citation = Citation(1, "d", "<b>T</b>", "S<i>", quote, 6, 60)
    answer = Answer(f"{quote} [1]", False, [citation], [passage], "<img src=x onerror=alert(2)>?", 0.9)
    chat = render_answer_html(answer, 1)
    assert "<script>" not in chat and "&lt;script&gt;" in chat
    assert chat.count('class="rag-cite"') == 1  # the "[2]" inside the quote stays text
    assert chat.endswith('>[1]</a>')
    sources = render_sources_html(answer, 1)
    assert "<script>" not in sources and "<img" not in sources and "<b>T</b>" not in sources
    assert f"<mark>{html.escape(quote)}</mark>" in sources
    shown = re.search(r'<div class="rag-passage">(.*?)</div>', sources).group(1)
    assert shown.replace("<mark>", "").replace("</mark>", "") == html.escape(text)
    assert 'id="src-1-1"' in sources


def test_the_marked_answer_is_bold_inside_the_highlighted_quote():
    from rag import Answer, Citation, Passage
    from ui.app import render_sources_html

    text = "Intro. Eden <Ministry> rescues victims in the country. More text."
    start, end = 7, text.index(".", 7) + 1
    passage = Passage(text=text, doc_id="d", title="T", section="S", start=0, end=len(text), score=0.5, chunk_id=0,
                      rank=1, reader_score=0.91)
    citation = Citation(1, "d", "T", "S", text[start:end], start, end, start, start + len("Eden <Ministry>"))
    sources = render_sources_html(Answer(f"{text[start:end]} [1]", False, [citation], [passage], "Who?", 0.9), 1)
    assert '<mark><b class="rag-answer">Eden &lt;Ministry&gt;</b> rescues victims in the country.</mark>' in sources
    assert "reader 0.91" in sources
    outside = Citation(1, "d", "T", "S", text[start:end], start, end, 0, 3)  # a span outside the quote is ignored
    assert "rag-answer" not in render_sources_html(Answer("x [1]", False, [outside], [passage], "Who?", 0.9), 1)


# ---------------------------------------------------------------------- the CLI
@pytest.mark.slow
def test_rag_serve_with_auth_from_the_environment(seed_index_dir, tmp_path, free_port):
    """`rag --index DIR serve --port P` serves the UI; RAG_AUTH makes it ask for a password."""
    import shutil

    from gradio_client import Client

    index = tmp_path / "index"
    shutil.copytree(seed_index_dir, index)
    port = free_port()
    env = dict(os.environ, RAG_AUTH="alice:wonderland", GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "--index", str(index), "serve", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "config", timeout=2).status_code in (200, 401):
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.3)
        assert httpx.get(url + "config").status_code == 401
        with pytest.raises(Exception):
            Client(url, auth=("alice", "wrong"), verbose=False)
        client = Client(url, auth=("alice", "wonderland"), verbose=False)
        assert client.predict(api_name="/info")["chunks"] > 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_a_followup_that_switches_to_a_subject_the_quote_lacks_declines(client):
    """'and in Malaysia?' after the Myanmar scam-centre question quoted the Myanmar figure (issue 14)."""
    first = client.predict(question="How many people may be held in scam centres across Myanmar?",
                           api_name="/ask")
    assert not first["abstained"]
    follow = client.predict(question="and in Malaysia?", history=[first["searched"]], api_name="/ask")
    assert "Malaysia" in follow["searched"] and follow["abstained"]
    assert "Malaysia" in follow["text"]
