"""The HTTP API (``rag api``): REST endpoints and an OpenAI-compatible chat endpoint over one ``Service``.

``create_app(service, api_key=…)`` returns the FastAPI app; ``build_server(…)`` loads an index and wraps the
app in a uvicorn server bound to 127.0.0.1 by default; ``serve_in_thread(app)`` runs one in the background
(tests, benchmarks).

Endpoints (all under ``/v1``; JSON in and out):

* ``POST /v1/ask`` ``{question, k?, doc_ids?, history?}`` → the answer (``Answer.to_dict``) plus ``asked``,
  ``searched`` (the follow-up as resolved), ``markdown``, ``seconds``, ``question_tokens``, ``truncated``;
* ``POST /v1/retrieve`` ``{question, k?, doc_ids?}`` → ``{question, passages, …}``;
* ``GET /v1/documents``; ``POST /v1/documents`` (multipart, one or more ``files``); ``DELETE
  /v1/documents/{doc_id}``; ``GET /v1/info``;
* ``POST /v1/chat/completions`` (OpenAI's format, ``stream`` too) and ``GET /v1/models``: the last user
  message is the question, the earlier user messages are the conversation it may follow up on; the answer
  with its ``[n]`` markers is ``choices[0].message.content`` and the citations are in the extra top-level
  field ``citations``.

Every error, whatever its cause (a library error, a validation error, a missing key, an unknown route, a
body over the limit), is ``{"error": {"type": …, "message": …, "code": …}}`` with a fitting status.
``/docs`` is a page rendered here from ``/openapi.json``: FastAPI's own Swagger page loads its scripts from
a CDN, which an offline machine cannot reach and a local tool should not call.
"""

from __future__ import annotations

import hmac
import html
import ipaddress
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from typing import Annotated, Any, Iterator

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__
from .assistant import Assistant
from .config import Config
from .conversation import FollowupAnswer
from .errors import (ConfigError, DocumentError, EmptyCorpusError, IndexBusyError, IndexError_, IndexWriteError,
                     InputError, ModelError, RagError)
from .service import (LastDocumentError, NothingAddedError, QuestionTooLongError, Service, UnknownDocumentError,
                      UploadTooLargeError, human_size, resolve_history)
from .tokens import count_tokens
from .types import Citation

__all__ = ["API_KEY_ENV", "MODEL_ID", "build_server", "create_app", "error_body", "serve", "serve_in_thread"]

log = logging.getLogger(__name__)

#: Environment variable holding the bearer token clients must send (``--api-key`` wins over it).
API_KEY_ENV = "RAG_API_KEY"
#: The one "model" ``/v1/models`` lists and ``/v1/chat/completions`` answers as.
MODEL_ID = "rag-assistant"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
#: Longest question (and history entry) accepted, in characters. Only the first ``Config.max_question_tokens``
#: (200) tokens, some 1,000 characters, are searched; this refuses pasted documents outright.
MAX_QUESTION_CHARS = 4000
#: Earlier questions accepted in ``history`` (only the latest is used to resolve a follow-up).
MAX_HISTORY = 100
#: Messages accepted in one chat completion request.
MAX_MESSAGES = 200
#: Largest JSON request body, in bytes (a question, its history and options fit many times over).
MAX_JSON_BYTES = 1 << 20
#: An upload request's body may be this many times ``Config.max_upload_bytes``, as in the UI: a file just
#: over the per-file limit is refused with its reason, a body far over it before anything is read.
UPLOAD_BODY_FACTOR = 2
#: Files accepted in one upload request.
MAX_UPLOAD_FILES = 20
#: Words per streamed chunk of a chat completion.
STREAM_WORDS = 3

_WORDS = re.compile(r"\S+\s*|\s+")


# ---------------------------------------------------------------------- errors
class ErrorDetail(BaseModel):
    type: str = Field(description="the kind of error: invalid_request_error, authentication_error, "
                                  "not_found_error, conflict_error, request_too_large, service_unavailable, "
                                  "server_error")
    message: str = Field(description="what was wrong and how to fix it")
    code: str = Field(description="a stable short name of this error, e.g. unknown_document, invalid_api_key")


class ErrorBody(BaseModel):
    """The one shape of every error this API returns."""

    error: ErrorDetail


_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
          405: "invalid_request_error", 409: "conflict_error", 413: "request_too_large",
          422: "invalid_request_error", 503: "service_unavailable"}


def error_body(status: int, message: str, code: str) -> dict[str, Any]:
    """``{"error": {"type", "message", "code"}}`` for an HTTP status."""
    return {"error": {"type": _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error"),
                      "message": message, "code": code}}


def error_response(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, code), status_code=status, headers=headers)


def rag_error_status(exc: RagError) -> tuple[int, str]:
    """The HTTP status and error code of a library error."""
    if isinstance(exc, NothingAddedError):
        too_large = all(r.code == "too_large" for r in exc.result.rejected)
        return (413, "upload_too_large") if too_large else (422, "upload_rejected")
    for kind, status, code in (
            (UnknownDocumentError, 404, "unknown_document"), (QuestionTooLongError, 413, "question_too_long"),
            (UploadTooLargeError, 413, "upload_too_large"), (LastDocumentError, 409, "last_document"),
            (ConfigError, 400, "invalid_config"), (InputError, 400, "invalid_input"),
            (EmptyCorpusError, 422, "no_documents"), (DocumentError, 422, "unreadable_document"),
            (IndexBusyError, 503, "index_busy"), (IndexWriteError, 503, "index_write_failed"),
            (IndexError_, 503, "index_unavailable"), (ModelError, 503, "model_unavailable")):
        if isinstance(exc, kind):
            return status, code
    return 500, "rag_error"


def _validation_message(errors: list[dict[str, Any]]) -> tuple[str, str]:
    """One sentence for pydantic's errors, naming each bad field and value; and the error code."""
    parts, code = [], "validation_error"
    for e in errors[:5]:
        where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body",)) or "the body"
        if e.get("type") == "json_invalid":
            code = "invalid_json"
            parts.append(f"the body is not valid JSON ({e.get('ctx', {}).get('error', e.get('msg'))}); "
                         "send a JSON object")
        elif tuple(e.get("loc", ())) == ("body",) and isinstance(e.get("input"), (bytes, str)):
            code = "invalid_json"  # FastAPI reads a body without a JSON content type as raw bytes
            parts.append("the body must be a JSON object sent with the header Content-Type: application/json")
        elif e.get("type") == "missing":
            parts.append(f"{where} is required")
        elif e.get("type") == "extra_forbidden":
            parts.append(f"{where} is not a known field; remove it (see /docs)")
        else:
            given = repr(e.get("input"))
            given = given if len(given) <= 60 else given[:57] + "..."
            parts.append(f"{where}: {e.get('msg', 'invalid')} (got {given})")
    if len(errors) > 5:
        parts.append(f"and {len(errors) - 5} more")
    return "; ".join(parts), code


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


class _Guard:
    """Bearer-token check and request-body limit, before anything reads the body.

    A pure ASGI middleware, so an unauthorised or oversized request is refused in the one error shape
    without being parsed (FastAPI would turn an error raised while parsing into a generic 400).
    """

    def __init__(self, app: ASGIApp, *, api_key: str | None, json_limit: int, upload_limit: int,
                 file_limit: int) -> None:
        self.app = app
        self.key = api_key.encode("utf-8") if api_key else None
        self.json_limit = json_limit
        self.upload_limit = upload_limit
        self.file_limit = file_limit

    def _authorised(self, scope: Scope) -> bool:
        value = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), b"")
        scheme, _, token = value.partition(b" ")
        # compare_digest on bytes: time independent of where a wrong key differs (and no TypeError on non-ASCII)
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key or b"")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if self.key is not None and (path == "/v1" or path.startswith("/v1/")) and not self._authorised(scope):
            await _send_json(send, 401, error_body(401, "a valid API key is required: send the header "
                                                        "'Authorization: Bearer KEY' (the key given to rag api "
                                                        f"with --api-key or {API_KEY_ENV})", "invalid_api_key"),
                             {"WWW-Authenticate": "Bearer"})
            return
        upload = scope.get("method") == "POST" and path.rstrip("/") == "/v1/documents"
        limit = self.upload_limit if upload else self.json_limit
        if upload:
            what = (f"an upload request is limited to {human_size(limit)} in all (each file to "
                    f"{human_size(self.file_limit)}); send fewer or smaller files per request")
        else:
            what = f"a request body is limited to {human_size(limit)}; send a shorter question and history"
        length = next((v for k, v in scope.get("headers", ()) if k == b"content-length"), None)
        if length is not None and length.isdigit() and int(length) > limit:
            await _send_json(send, 413, error_body(413, f"the body has {human_size(int(length))}: {what}",
                                                   "body_too_large"), {"Connection": "close"})
            return
        state = {"received": 0, "refused": False, "started": False}

        async def limited_receive() -> Message:
            if state["refused"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit:  # a body without Content-Length (chunked), counted as it comes
                    state["refused"] = True
                    if not state["started"]:
                        state["started"] = True
                        await _send_json(send, 413, error_body(413, f"the body is over the limit: {what}",
                                                               "body_too_large"), {"Connection": "close"})
                    return {"type": "http.disconnect"}  # the app stops reading; its own reply is dropped below
            return message

        async def guarded_send(message: Message) -> None:
            if state["refused"]:
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["refused"]:
                raise
            log.debug("request refused as too large; the app's error while reading it is dropped")


# ---------------------------------------------------------------------- request bodies
StrictK = Annotated[int, Field(strict=True, description="passages to retrieve, 1-50 (default 10)")]


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(description=f"the question, at most {MAX_QUESTION_CHARS} characters",
                          examples=["How many people may be held in scam centres across Myanmar?"])
    k: StrictK | None = None
    doc_ids: list[str] | None = Field(None, description="only search these documents (ids from GET /v1/documents)")
    history: list[str] = Field(default_factory=list, max_length=MAX_HISTORY,
                               description="the earlier questions as searched (each answer's `searched`), oldest "
                                           "first: a follow-up such as 'and in Laos?' is resolved against them")


class RetrieveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(description=f"the question, at most {MAX_QUESTION_CHARS} characters")
    k: StrictK | None = None
    doc_ids: list[str] | None = Field(None, description="only search these documents")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str = Field(description="system, developer, user or assistant (only user messages are read)")
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """OpenAI's chat completion request; options this assistant has no use for (temperature, …) are ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(description=f"'{MODEL_ID}' (GET /v1/models)")
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int | None = Field(None, description="only 1")
    k: StrictK | None = Field(None, description="extra: passages to retrieve (default 10)")
    doc_ids: list[str] | None = Field(None, description="extra: only search these documents")


# ---------------------------------------------------------------------- the app
def _message_text(message: ChatMessage) -> str:
    """The text of a message's content: a string, or OpenAI's list of parts of which only text is read."""
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for part in content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise InputError(f"only text content can be asked about, got a {part.get('type')!r} part; "
                             "send the question as text")
        texts.append(part["text"])
    return "\n".join(texts)


def _citation_dict(c: Citation) -> dict[str, Any]:
    return {"number": c.number, "doc_id": c.doc_id, "title": c.title, "section": c.section, "quote": c.quote,
            "start": c.start, "end": c.end, "page": getattr(c, "page", None)}


def _stream_pieces(text: str) -> Iterator[str]:
    """``text`` in pieces of a few words whose concatenation is exactly ``text`` ([n] markers stay whole)."""
    words = _WORDS.findall(text)
    for i in range(0, len(words), STREAM_WORDS):
        yield "".join(words[i:i + STREAM_WORDS])


def _sse(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


def _docs_html(spec: dict[str, Any]) -> str:
    """A readable page of the OpenAPI spec, with no script and nothing loaded from elsewhere."""
    schemas = spec.get("components", {}).get("schemas", {})

    def type_of(schema: dict[str, Any]) -> str:
        if schema.get("format") == "binary" or "contentMediaType" in schema:
            return "file"
        if "$ref" in schema:
            return schema["$ref"].rsplit("/", 1)[-1]
        if "anyOf" in schema:
            return " | ".join(type_of(s) for s in schema["anyOf"])
        if schema.get("type") == "array":
            return f"list of {type_of(schema.get('items', {}))}"
        return str(schema.get("type", "any"))

    def described(schema: dict[str, Any]) -> str:
        # An optional field's description sits inside its anyOf (``int | None``).
        return schema.get("description") or next((s["description"] for s in schema.get("anyOf", [])
                                                  if "description" in s), "")

    def fields(schema: dict[str, Any]) -> str:
        if "$ref" in schema:
            schema = schemas.get(schema["$ref"].rsplit("/", 1)[-1], {})
        props = schema.get("properties", {})
        if not props:
            return f"<p><code>{html.escape(type_of(schema))}</code></p>"
        required = set(schema.get("required", []))
        rows = "".join(f"<tr><td><code>{html.escape(name)}</code>{' *' if name in required else ''}</td>"
                       f"<td>{html.escape(type_of(p))}</td><td>{html.escape(described(p))}</td></tr>"
                       for name, p in props.items())
        return f"<table><tr><th>field</th><th>type</th><th>meaning</th></tr>{rows}</table>"

    parts = [f"<h1>{html.escape(spec['info']['title'])} {html.escape(spec['info'].get('version', ''))}</h1>",
             f"<div class='intro'>{html.escape(spec['info'].get('description', ''))}</div>",
             "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3). Fields marked * are "
             "required.</p>"]
    for path, operations in spec.get("paths", {}).items():
        for method, op in operations.items():
            parts.append(f"<section><h2><span class='m'>{method.upper()}</span> <code>{html.escape(path)}</code> "
                         f"&mdash; {html.escape(op.get('summary', ''))}</h2>"
                         f"<p class='d'>{html.escape(op.get('description', ''))}</p>")
            params = op.get("parameters", [])
            if params:
                parts.append("<h3>Parameters</h3><ul>" + "".join(
                    f"<li><code>{html.escape(p['name'])}</code> ({html.escape(p.get('in', ''))})</li>"
                    for p in params) + "</ul>")
            body = op.get("requestBody", {}).get("content", {})
            for media, content in body.items():
                parts.append(f"<h3>Body ({html.escape(media)})</h3>{fields(content.get('schema', {}))}")
            codes = ", ".join(f"{html.escape(code)} {html.escape(r.get('description', ''))}"
                              for code, r in op.get("responses", {}).items())
            parts.append(f"<p class='r'>Responses: {codes}</p></section>")
    style = ("body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1f2937}"
             "section{border-top:1px solid #ddd;padding:.5rem 0}h2{font-size:1.05rem}.m{color:#1d4ed8}"
             ".d,.intro{white-space:pre-wrap}table{border-collapse:collapse}td,th{border:1px solid #ddd;"
             "padding:.2rem .5rem;text-align:left;vertical-align:top}.r{color:#555;font-size:.9rem}")
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>API docs</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")


def _description(config: Config) -> str:
    return f"""Grounded answers with numbered citations over the indexed documents, offline.

Authentication: when the server was started with --api-key (or {API_KEY_ENV}), every /v1 request needs the
header 'Authorization: Bearer KEY'.
Errors: always {{"error": {{"type": ..., "message": ..., "code": ...}}}} with a fitting status (400 bad input,
401 no or wrong key, 404 unknown document or route, 409 conflict, 413 too large, 422 invalid body or
unreadable file, 503 index or model unavailable).
Limits: questions up to {MAX_QUESTION_CHARS} characters (the first {config.max_question_tokens} tokens are \
searched), JSON bodies up to {human_size(MAX_JSON_BYTES)}, uploads up to {human_size(config.max_upload_bytes)} per \
file and {MAX_UPLOAD_FILES} files per request ({human_size(UPLOAD_BODY_FACTOR * config.max_upload_bytes)} in all), \
k from 1 to 50.
OpenAI-compatible: POST /v1/chat/completions with model '{MODEL_ID}' (stream too); the citations of the
answer are in the extra top-level field 'citations'."""


def create_app(service: Service, *, api_key: str | None = None) -> FastAPI:
    """The API over ``service``; with ``api_key``, every ``/v1`` request must carry it as a bearer token."""
    config = service.config
    # Asks take turns in groups of serve_concurrency (as in the UI): the models' forward passes share the
    # cores anyway, and a burst of clients then queues instead of holding many answers in memory at once.
    asking = threading.BoundedSemaphore(max(1, config.serve_concurrency))
    app = FastAPI(title="Research assistant API", version=__version__, description=_description(config),
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    responses: dict[int | str, dict[str, Any]] = {
        code: {"model": ErrorBody, "description": text}
        for code, text in ((400, "bad input"), (401, "no or wrong API key"), (404, "unknown document or route"),
                           (409, "conflict (the last document)"), (413, "too large"), (422, "invalid body"),
                           (503, "index or model unavailable"))}
    # The middleware checks the key; the dependency declares it, so the OpenAPI spec says how to send it.
    security = [Depends(HTTPBearer(auto_error=False, description=f"the key given to rag api (or {API_KEY_ENV})"))]
    router = APIRouter(prefix="/v1", responses=responses, dependencies=security if api_key else [])

    def ask_turn(question: str, history: list[str], k: int | None, doc_ids: list[str] | None
                 ) -> tuple[FollowupAnswer, float]:
        started = time.perf_counter()
        with asking:
            turn = service.ask(question, history=history, k=k, doc_ids=doc_ids)
        return turn, time.perf_counter() - started

    @router.post("/ask", summary="Answer a question with numbered citations (or decline)")
    def ask(body: AskRequest) -> JSONResponse:
        """The answer (`text` with [n] markers, `citations`, `passages`, `abstained`, `confidence`), plus
        `asked`, `searched` (the follow-up as resolved against `history`), `markdown`, `seconds`,
        `question_tokens` and `truncated`. Pass `searched` back in `history` to ask a follow-up."""
        turn, seconds = ask_turn(body.question, body.history, body.k, body.doc_ids)
        length = service.question_length(turn.searched)
        data = turn.answer.to_dict()
        data.update(asked=turn.asked, searched=turn.searched, subjects=list(turn.subjects),
                    unsupported=list(turn.unsupported), markdown=turn.answer.to_markdown(), seconds=round(seconds, 3),
                    question_tokens=length.tokens, truncated=length.truncated)
        return JSONResponse(data)

    @router.post("/retrieve", summary="The passages most relevant to a question, best first")
    def retrieve(body: RetrieveRequest) -> JSONResponse:
        """`passages`: text, doc_id, title, section, start, end, score (first stage), reader_score."""
        started = time.perf_counter()
        with asking:
            passages = service.retrieve(body.question, k=body.k, doc_ids=body.doc_ids)
        question = " ".join(body.question.split())
        length = service.question_length(question)
        return JSONResponse({"question": question, "passages": [p.to_dict() for p in passages],
                             "question_tokens": length.tokens, "truncated": length.truncated,
                             "seconds": round(time.perf_counter() - started, 3)})

    @router.get("/documents", summary="The indexed documents (their ids filter asks)")
    def documents() -> JSONResponse:
        return JSONResponse({"documents": [d.to_dict() for d in service.documents()]})

    @router.post("/documents", summary="Add files to the index (multipart: one or more `files`)")
    def upload(files: Annotated[list[UploadFile], File(description="the files to add")]) -> JSONResponse:
        """Each file is checked (type, size, readable text) and indexed; a refused file gets a reason in
        `rejected` and changes nothing. When every file is refused the answer is an error (422, or 413 when
        all were too large). Re-uploading a file of the same name replaces its earlier version."""
        if len(files) > MAX_UPLOAD_FILES:
            raise InputError(f"{len(files)} files in one request; send at most {MAX_UPLOAD_FILES} at a time")
        result = service.add_files([(f.filename or "", f.file) for f in files])
        if result.rejected and not result.accepted:
            raise NothingAddedError(result)
        return JSONResponse(result.to_dict())

    @router.delete("/documents/{doc_id}", summary="Remove a document from the index")
    def remove(doc_id: str) -> JSONResponse:
        """An uploaded document's file is deleted too; a document added from elsewhere keeps its file."""
        return JSONResponse(service.remove(doc_id).to_dict())

    @router.get("/info", summary="About the index: documents, chunks, models, settings, build times")
    def info() -> JSONResponse:
        return JSONResponse(service.info())

    def model_card() -> dict[str, Any]:
        created = service.info().get("created_at")
        try:
            stamp = int(time.mktime(time.strptime(str(created)[:19], "%Y-%m-%dT%H:%M:%S")))
        except (TypeError, ValueError):
            stamp = 0
        return {"id": MODEL_ID, "object": "model", "created": stamp, "owned_by": "local"}

    @router.get("/models", summary="The one model: the assistant (OpenAI format)")
    def models() -> JSONResponse:
        return JSONResponse({"object": "list", "data": [model_card()]})

    @router.get("/models/{model_id}", summary="One model (OpenAI format)")
    def model(model_id: str) -> JSONResponse:
        if model_id != MODEL_ID:
            return error_response(404, f"no model {model_id!r}; this server has only {MODEL_ID!r}", "model_not_found")
        return JSONResponse(model_card())

    @router.post("/chat/completions", summary="OpenAI-compatible chat completion (stream too)")
    def chat(body: ChatRequest) -> Any:
        """The last message must be the user's question; earlier user messages are the conversation a
        follow-up builds on. `choices[0].message.content` is the answer with [n] markers; the extra top-level
        field `citations` holds number, doc_id, title, section, quote, start, end and page of each source,
        and `rag` what was searched. With `stream: true`: server-sent events in OpenAI's chunk format, the
        citations in the last chunk, then `data: [DONE]`. Extra options: `k`, `doc_ids`."""
        if body.model != MODEL_ID:
            return error_response(404, f"no model {body.model!r}; use model {MODEL_ID!r} (GET /v1/models)",
                                  "model_not_found")
        if body.n not in (None, 1):
            raise InputError(f"n must be 1 (one answer per question), got {body.n}")
        last = body.messages[-1]
        if last.role != "user":
            raise InputError(f"the last message must be the user's question (role 'user'), got role {last.role!r}")
        question = _message_text(last)
        earlier = [_message_text(m) for m in body.messages[:-1] if m.role == "user"]
        for text in earlier:  # checked as the question is, before they are resolved
            if len(" ".join(text.split())) > MAX_QUESTION_CHARS:
                raise QuestionTooLongError(f"an earlier user message has over {MAX_QUESTION_CHARS} characters; "
                                           "send shorter messages")
        turn, _seconds = ask_turn(question, resolve_history(earlier), body.k, body.doc_ids)
        answer = turn.answer
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        citations = [_citation_dict(c) for c in answer.citations]
        length = service.question_length(turn.searched)
        extra = {"asked": turn.asked, "searched": turn.searched, "abstained": answer.abstained,
                 "confidence": round(answer.confidence, 4), "truncated": length.truncated}
        prompt_tokens = count_tokens(turn.searched, config.encoding)
        completion_tokens = count_tokens(answer.text, config.encoding)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        if not body.stream:
            return JSONResponse({
                "id": ident, "object": "chat.completion", "created": created, "model": MODEL_ID,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                             "finish_reason": "stop", "logprobs": None}],
                "usage": usage, "citations": citations, "rag": extra})

        def chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> dict[str, Any]:
            return {"id": ident, "object": "chat.completion.chunk", "created": created, "model": MODEL_ID,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **more}

        def events() -> Iterator[str]:
            # The answer is complete before the first event, so an error is a proper error response, not a
            # broken stream; the pieces only let streaming clients show it as they usually do.
            yield _sse(chunk({"role": "assistant", "content": ""}))
            for piece in _stream_pieces(answer.text):
                yield _sse(chunk({"content": piece}))
            yield _sse(chunk({}, "stop", citations=citations, rag=extra))
            if (body.stream_options or {}).get("include_usage"):
                yield _sse({"id": ident, "object": "chat.completion.chunk", "created": created, "model": MODEL_ID,
                            "choices": [], "usage": usage})
            yield _sse("[DONE]")

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    app.include_router(router)

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        # Nothing external may load: the page has no script, and the policy forbids fetching anything.
        return HTMLResponse(_docs_html(app.openapi()),
                            headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})

    @app.exception_handler(RagError)
    def on_rag_error(_request: Request, exc: RagError) -> JSONResponse:
        status, code = rag_error_status(exc)
        if status >= 500:
            log.warning("%s: %s", type(exc).__name__, exc)
        return error_response(status, str(exc), code, {"Retry-After": "5"} if code == "index_busy" else None)

    @app.exception_handler(RequestValidationError)
    def on_validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        message, code = _validation_message(list(exc.errors()))
        return error_response(422, message, code)

    @app.exception_handler(StarletteHTTPException)
    def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message, code = (f"no such endpoint: {request.method} {request.url.path}; the endpoints are listed "
                             "at /docs"), "route_not_found"
        elif exc.status_code == 405:
            message, code = (f"{request.method} is not allowed on {request.url.path}; see /docs for its methods",
                             "method_not_allowed")
        else:
            message, code = str(exc.detail), f"http_{exc.status_code}"
        return error_response(exc.status_code, message, code, dict(exc.headers or {}) or None)

    @app.exception_handler(Exception)
    def on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error answering a request")
        return error_response(500, f"internal error ({type(exc).__name__}); the server's log has the details",
                              "internal_error")

    app.add_middleware(_Guard, api_key=api_key, json_limit=MAX_JSON_BYTES,
                       upload_limit=UPLOAD_BODY_FACTOR * config.max_upload_bytes, file_limit=config.max_upload_bytes)
    app.state.service = service
    return app


# ---------------------------------------------------------------------- running
def resolve_api_key(api_key: str | None) -> str | None:
    """``api_key`` if given, else ``$RAG_API_KEY``, else None (no auth); an empty explicit key is an error."""
    if api_key is None:
        return os.environ.get(API_KEY_ENV) or None
    if not api_key.strip():
        raise InputError(f"the API key is empty; pass --api-key KEY (or set {API_KEY_ENV}), or leave it out")
    return api_key


def _check_port(host: str, port: int) -> None:
    """Refuse a port that is taken or not ours to bind, in one line, before the models load."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InputError(f"port must be a number from 0 to 65535, got {port!r}")
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise InputError(f"cannot serve on host {host!r} ({exc.strerror}); pass --host 127.0.0.1") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no clash
        try:
            probe.bind(address)
        except OSError as exc:
            raise InputError(f"cannot serve on {host}:{port} ({exc.strerror}); stop what uses it or pass "
                             "--port N") from None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def build_server(index_dir: str | os.PathLike[str] | None = None, *, host: str = DEFAULT_HOST,
                 port: int = DEFAULT_PORT, api_key: str | None = None, config: Config | None = None,
                 uploads_dir: str | os.PathLike[str] | None = None, log_level: str = "warning"
                 ) -> tuple[uvicorn.Server, str]:
    """A uvicorn server for the API over the index at ``index_dir`` (default ``embeddings/default``) and its URL.

    ``server.run()`` serves until Ctrl-C. Without a key on an address other than loopback, anyone who can
    reach it may ask and change the index: that is logged as a warning.
    """
    key = resolve_api_key(api_key)
    _check_port(host, port)
    assistant = Assistant.load(index_dir, config)
    service = Service(assistant, uploads_dir=uploads_dir, max_question_chars=MAX_QUESTION_CHARS)
    app = create_app(service, api_key=key)
    if key is None and not _is_loopback(host):
        log.warning("serving on %s without an API key: anyone who can reach it may ask and change the index; "
                    "pass --api-key or set %s", host, API_KEY_ENV)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                                           server_header=False, lifespan="off", timeout_graceful_shutdown=5))
    shown = f"[{host}]" if ":" in host else host
    return server, f"http://{shown}:{port}"


def serve(index_dir: str | os.PathLike[str] | None = None, **kwargs: Any) -> None:
    """Load the index and serve the API until Ctrl-C (see ``build_server`` for the options)."""
    server, url = build_server(index_dir, **kwargs)
    log.info("API at %s/v1 (docs at %s/docs)", url, url)
    server.run()


def serve_in_thread(app: FastAPI, *, host: str = DEFAULT_HOST, port: int = 0, timeout: float = 30.0
                    ) -> tuple[uvicorn.Server, threading.Thread, str]:
    """Serve ``app`` from a background thread (port 0: a free one); returns the server, its thread and URL.

    Stop it with ``server.should_exit = True; thread.join()``.
    """
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                           server_header=False, lifespan="off", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, name="rag-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RagError(f"the API server did not start on {host}:{port} within {timeout:.0f} s")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return server, thread, f"http://{shown}:{bound}"
