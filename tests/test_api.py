"""The HTTP API (rag.api) against a real uvicorn server on loopback: httpx for the REST endpoints, the real
``openai`` client for the OpenAI-compatible ones; real answers over a private copy of the seed index."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from rag import Assistant, Config
from rag.api import MAX_JSON_BYTES, MAX_QUESTION_CHARS, MODEL_ID, create_app, serve_in_thread
from rag.index import Index
from rag.service import Service

KEY = "test-key-7f3a"
SCAMS = "How many people may be held in scam centres across Myanmar?"
MYANMAR = "How are women trafficked in Myanmar?"
COMPOUND = "compound-abuses-myanmar-border-areas-2023"
UPLOAD_LIMIT = 256 * 1024
OKAPI = b"Okapi survey of Narnia\n\nThe okapi survey of Narnia counted 31 okapis in the northern forest in 2024.\n"


class Api:
    def __init__(self, url: str, service: Service) -> None:
        self.url, self.service = url, service
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)


@pytest.fixture(scope="module")
def api(tmp_path_factory, seed_index_dir, embedder):
    root = tmp_path_factory.mktemp("api")
    shutil.copytree(seed_index_dir, root / "index")
    config = Config(max_upload_bytes=UPLOAD_LIMIT)
    assistant = Assistant(Index.load(root / "index", config), config, embedder)
    service = Service(assistant, uploads_dir=root / "uploads", max_question_chars=MAX_QUESTION_CHARS)
    server, thread, url = serve_in_thread(create_app(service, api_key=KEY))
    assert url.startswith("http://127.0.0.1:")
    client = Api(url, service)
    yield client
    client.http.close()
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def oai(api) -> openai.OpenAI:
    return openai.OpenAI(base_url=api.url + "/v1", api_key=KEY, max_retries=0, timeout=60)


def assert_error(response: httpx.Response, status: int, code: str, contains: str = "") -> str:
    """The one error shape, with its status and code; returns the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message", "code"}, body
    assert body["error"]["code"] == code, body
    assert contains in body["error"]["message"], body
    return body["error"]["message"]


# ---------------------------------------------------------------------- REST
def test_ask_answers_with_citations(api):
    r = api.http.post("/v1/ask", json={"question": SCAMS})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["asked"] == data["searched"] == SCAMS and data["truncated"] is False
    assert not data["abstained"] and data["passages"]
    top = data["citations"][0]
    assert top["doc_id"] == COMPOUND and "120,000" in top["quote"] and top["answer"] == "120,000"
    assert api.service.assistant.documents[COMPOUND].text[top["start"]:top["end"]] == top["quote"]
    assert f"[{top['number']}]" in data["text"] and "page" in top


def test_a_follow_up_through_history(api):
    first = api.http.post("/v1/ask", json={"question": MYANMAR}).json()
    r = api.http.post("/v1/ask", json={"question": "and in Laos?", "history": [first["searched"]], "k": 5})
    data = r.json()
    assert data["asked"] == "and in Laos?" and data["searched"] == "How are women trafficked in Laos?"
    assert data["citations"][0]["doc_id"] == "sex-trafficking-in-laos"
    assert len(data["passages"]) == 5


def test_retrieve_and_documents(api):
    r = api.http.post("/v1/retrieve", json={"question": SCAMS, "k": 3, "doc_ids": [COMPOUND]})
    passages = r.json()["passages"]
    assert len(passages) == 3 and {p["doc_id"] for p in passages} == {COMPOUND}
    docs = api.http.get("/v1/documents").json()["documents"]
    assert {d["doc_id"] for d in docs} >= {COMPOUND, "sex-trafficking-in-laos"}
    assert all(d["chunks"] > 0 and d["title"] for d in docs)
    info = api.http.get("/v1/info").json()
    assert info["chunks"] == sum(d["chunks"] for d in docs)


@pytest.mark.parametrize("body, status, code, contains", [
    ({"question": ""}, 400, "invalid_input", "question is empty"),
    ({"question": "   "}, 400, "invalid_input", "question is empty"),
    ({"question": SCAMS, "k": 0}, 400, "invalid_input", "between 1 and 50, got 0"),
    ({"question": SCAMS, "k": 500}, 400, "invalid_input", "got 500"),
    ({"question": SCAMS, "k": "5"}, 422, "validation_error", "k: Input should be a valid integer"),
    ({"question": SCAMS, "doc_ids": ["no-such-doc"]}, 404, "unknown_document", "no-such-doc"),
    ({"question": SCAMS, "doc_ids": []}, 400, "invalid_input", "at least one document"),
    ({"question": SCAMS, "top_k": 3}, 422, "validation_error", "top_k is not a known field"),
    ({"k": 3}, 422, "validation_error", "question is required"),
    ({"question": 7}, 422, "validation_error", "question: Input should be a valid string"),
    ({"question": "why " * (MAX_QUESTION_CHARS // 4 + 1)}, 413, "question_too_long", "over the limit of 4000"),
])
def test_bad_input_has_the_error_shape(api, body, status, code, contains):
    assert_error(api.http.post("/v1/ask", json=body), status, code, contains)


def test_malformed_and_oversized_bodies(api):
    assert_error(api.http.post("/v1/ask", content=b"{not json", headers={"Content-Type": "application/json"}),
                 422, "invalid_json", "not valid JSON")
    assert_error(api.http.post("/v1/ask", content=b'{"question": "x"}',
                               headers={"Content-Type": "text/plain"}), 422, "invalid_json", "Content-Type")
    huge = json.dumps({"question": "x", "history": ["y" * MAX_JSON_BYTES]}).encode()
    assert_error(api.http.post("/v1/ask", content=huge, headers={"Content-Type": "application/json"}),
                 413, "body_too_large", "limited to 1 MB")

    def chunked():  # no Content-Length: counted as it arrives
        for _ in range(20):
            yield b"x" * (MAX_JSON_BYTES // 10)

    assert_error(api.http.post("/v1/ask", content=chunked(), headers={"Content-Type": "application/json"}),
                 413, "body_too_large")
    # The server still answers after refusing.
    assert api.http.post("/v1/ask", json={"question": SCAMS}).status_code == 200


def test_unknown_routes_and_methods_have_the_error_shape(api):
    assert_error(api.http.get("/v1/nowhere"), 404, "route_not_found", "GET /v1/nowhere")
    assert_error(api.http.get("/nowhere"), 404, "route_not_found")
    assert_error(api.http.get("/v1/ask"), 405, "method_not_allowed")


def test_auth_is_required_and_checked(api):
    bare = httpx.Client(base_url=api.url, timeout=30)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"},
                    {"Authorization": f"Bearer {KEY}x"}, {"Authorization": "Bearer \u00e9t\u00e9".encode()}):
        r = bare.post("/v1/ask", json={"question": SCAMS}, headers=headers)
        assert_error(r, 401, "invalid_api_key", "Authorization: Bearer")
        assert r.headers["www-authenticate"] == "Bearer"
    # Refused before the body is read: a huge body without a key is a 401, not a 413.
    assert_error(bare.post("/v1/ask", content=b"x" * (2 * MAX_JSON_BYTES)), 401, "invalid_api_key")
    assert_error(bare.get("/v1/models"), 401, "invalid_api_key")
    assert bare.get("/v1/models", headers={"Authorization": f"bearer {KEY}"}).status_code == 200
    bare.close()


def test_docs_work_offline(api):
    bare = httpx.Client(base_url=api.url, timeout=30)
    page = bare.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    text = page.text
    assert "<script" not in text and "http://" not in text and "https://" not in text  # nothing to fetch
    assert "/v1/chat/completions" in text and "/v1/ask" in text
    spec = bare.get("/openapi.json").json()
    assert {"/v1/ask", "/v1/retrieve", "/v1/documents", "/v1/documents/{doc_id}", "/v1/chat/completions",
            "/v1/models", "/v1/info"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    bare.close()


def test_upload_ask_and_delete(api):
    r = api.http.post("/v1/documents", files=[("files", ("Okapi Survey.txt", OKAPI, "text/plain"))])
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["ok"] and result["added"] == ["okapi-survey"]
    assert result["files"] == {"okapi-survey": "Okapi Survey.txt"}
    assert "okapi-survey" in {d["doc_id"] for d in api.http.get("/v1/documents").json()["documents"]}
    answer = api.http.post("/v1/ask", json={"question": "How many okapis did the survey count in Narnia?"}).json()
    assert answer["citations"][0]["doc_id"] == "okapi-survey" and "31 okapis" in answer["citations"][0]["quote"]

    removed = api.http.delete("/v1/documents/okapi-survey")
    assert removed.status_code == 200 and removed.json()["removed"] == "okapi-survey"
    assert removed.json()["deleted_file"].endswith("okapi-survey.txt")
    assert "okapi-survey" not in {d["doc_id"] for d in api.http.get("/v1/documents").json()["documents"]}
    again = api.http.post("/v1/ask", json={"question": "How many okapis did the survey count in Narnia?"}).json()
    assert all(c["doc_id"] != "okapi-survey" for c in again["citations"])
    assert_error(api.http.delete("/v1/documents/okapi-survey"), 404, "unknown_document", "okapi-survey")


def two_page_pdf() -> bytes:
    """A real PDF: a heading and a fact on each of two pages."""
    fpdf = pytest.importorskip("fpdf")
    pdf = fpdf.FPDF()
    for heading, fact in (("1 Ferries", "The harbour of Porto has three ferry lines crossing the river."),
                          ("2 Lighthouse", "The lighthouse on the north pier was designed by Gustave Eiffel.")):
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 16)
        pdf.start_section(heading)
        pdf.cell(0, 10, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 11)
        pdf.multi_cell(0, 6, fact + " It is described in the harbour report of 2024.", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def test_a_pdf_upload_is_cited_with_its_page(api, oai):
    r = api.http.post("/v1/documents", files=[("files", ("Harbour report.pdf", two_page_pdf(), "application/pdf"))])
    assert r.status_code == 200 and r.json()["added"] == ["harbour-report"], r.text
    question = "Who designed the lighthouse on the north pier?"
    top = api.http.post("/v1/ask", json={"question": question}).json()["citations"][0]
    assert top["doc_id"] == "harbour-report" and "Eiffel" in top["quote"] and top["page"] == 2
    chat = oai.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": question}])
    assert chat.model_extra["citations"][0]["page"] == 2
    assert api.http.delete("/v1/documents/harbour-report").status_code == 200


def test_refused_uploads(api):
    docs_before = api.http.get("/v1/documents").json()["documents"]
    bad = [("files", ("tool.exe", b"MZ\x90\x00", "application/octet-stream")),
           ("files", ("latin1.txt", "caf\u00e9".encode("latin-1"), "text/plain"))]
    message = assert_error(api.http.post("/v1/documents", files=bad), 422, "upload_rejected", "nothing was added")
    assert "tool.exe: only .txt, .md" in message and "latin1.txt: " in message and "UTF-8" in message
    # Just over the per-file limit: refused with its reason; far over: refused before it is read.
    assert_error(api.http.post("/v1/documents", files=[("files", ("big.txt", b"z " * (UPLOAD_LIMIT // 2 + 10)))]),
                 413, "upload_too_large", "over the upload limit of 256 KB")
    assert_error(api.http.post("/v1/documents", files=[("files", ("huge.txt", b"z " * UPLOAD_LIMIT * 2))]),
                 413, "body_too_large", "upload request is limited to 512 KB")
    # One good file and one bad: the good one is added, the bad one is listed.
    mixed = api.http.post("/v1/documents", files=[("files", ("Kudu notes.md", b"# Kudu\n\nKudus are antelopes.\n")),
                                                  bad[0]])
    assert mixed.status_code == 200 and mixed.json()["added"] == ["kudu-notes"]
    assert [r["file"] for r in mixed.json()["rejected"]] == ["tool.exe"]
    assert api.http.delete("/v1/documents/kudu-notes").status_code == 200
    assert api.http.get("/v1/documents").json()["documents"] == docs_before
    assert_error(api.http.post("/v1/documents", data={"x": "1"}), 422, "validation_error", "files is required")


def test_asks_run_in_parallel(api):
    questions = [SCAMS, MYANMAR, "Where are women from Laos trafficked to?", "Who runs the scam compounds?"] * 2
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda q: api.http.post("/v1/ask", json={"question": q, "k": 5}), questions))
    assert all(r.status_code == 200 for r in answers)
    assert answers[0].json()["citations"][0]["doc_id"] == COMPOUND


# ---------------------------------------------------------------------- OpenAI-compatible
def test_models(oai):
    assert [m.id for m in oai.models.list()] == [MODEL_ID]
    assert oai.models.retrieve(MODEL_ID).id == MODEL_ID


def test_chat_completion_with_citations(oai, api):
    completion = oai.chat.completions.create(model=MODEL_ID, messages=[
        {"role": "system", "content": "You are helpful."}, {"role": "user", "content": SCAMS}])
    content = completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop" and completion.choices[0].message.role == "assistant"
    assert "120,000" in content and "[1]" in content
    citations = completion.model_extra["citations"]
    assert citations[0]["doc_id"] == COMPOUND and citations[0]["number"] == 1
    assert set(citations[0]) == {"number", "doc_id", "title", "section", "quote", "start", "end", "page"}
    assert api.service.assistant.documents[COMPOUND].text[citations[0]["start"]:citations[0]["end"]] == \
        citations[0]["quote"]
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    # The same answer as the REST endpoint gives.
    assert content == api.http.post("/v1/ask", json={"question": SCAMS}).json()["text"]


def test_chat_follow_up_through_messages(oai):
    completion = oai.chat.completions.create(model=MODEL_ID, messages=[
        {"role": "user", "content": MYANMAR}, {"role": "assistant", "content": "They are trafficked ... [1]"},
        {"role": "user", "content": [{"type": "text", "text": "and in Laos?"}]}])
    assert completion.model_extra["rag"]["searched"] == "How are women trafficked in Laos?"
    assert completion.model_extra["citations"][0]["doc_id"] == "sex-trafficking-in-laos"


def test_chat_streaming(oai):
    plain = oai.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": SCAMS}])
    stream = oai.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": SCAMS}],
                                         stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3  # really in pieces
    finished = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(finished) == 1 and finished[0].model_extra["citations"] == plain.model_extra["citations"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    assert len({c.id for c in chunks}) == 1


def test_raw_stream_is_server_sent_events_ending_with_done(api):
    body = {"model": MODEL_ID, "stream": True, "messages": [{"role": "user", "content": SCAMS}]}
    with api.http.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    first = json.loads(lines[0][6:])
    assert first["object"] == "chat.completion.chunk" and first["choices"][0]["delta"]["role"] == "assistant"


def test_chat_errors(oai, api):
    with pytest.raises(openai.NotFoundError, match="no model 'gpt-4o'"):
        oai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": SCAMS}])
    with pytest.raises(openai.BadRequestError, match="question is empty"):
        oai.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": " "}])
    with pytest.raises(openai.BadRequestError, match="last message must be the user's question"):
        oai.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": SCAMS},
                                                              {"role": "assistant", "content": "ok"}])
    with pytest.raises(openai.BadRequestError, match="between 1 and 50"):
        oai.chat.completions.create(model=MODEL_ID, messages=[{"role": "user", "content": SCAMS}],
                                    extra_body={"k": 0})
    wrong = openai.OpenAI(base_url=api.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="valid API key is required"):
        wrong.models.list()
    r = api.http.post("/v1/chat/completions", json={"model": MODEL_ID, "messages": []})
    assert_error(r, 422, "validation_error", "messages")


def test_rag_api_defaults_to_loopback_and_takes_the_key_from_the_environment(monkeypatch, capsys, api):
    from rag.api import API_KEY_ENV, resolve_api_key
    from rag.cli import build_parser, main

    args = build_parser().parse_args(["api"])
    assert (args.host, args.port, args.api_key) == ("127.0.0.1", 8000, None)
    monkeypatch.setenv(API_KEY_ENV, "from-env")
    assert resolve_api_key(None) == "from-env" and resolve_api_key("given") == "given"
    monkeypatch.delenv(API_KEY_ENV)
    assert resolve_api_key(None) is None
    with pytest.raises(Exception, match="API key is empty"):
        resolve_api_key(" ")
    taken = int(api.url.rsplit(":", 1)[1])  # the test server's port: refused in one line, before any loading
    assert main(["api", "--port", str(taken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot serve on 127.0.0.1:{taken}") and "--port" in err and err.count("\n") == 1
