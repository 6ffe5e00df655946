"""The Gradio web UI: a chat with grounded answers beside their sources.

``build_app(assistant)`` returns the ``gr.Blocks``; ``start(app, …)`` launches it
with this UI's theme, CSS and limits; ``serve(…)`` (used by ``rag serve``) does
both over an index folder.

Safety: questions, answers, document text, titles and file names are data. Every
piece is HTML-escaped by this module before it reaches a ``gr.HTML`` component;
no Markdown renderer ever sees them, so ``<script>``, ``<img onerror=…>`` and
``[x](javascript:…)`` show as inert text.

Conversations asked in the browser are saved (``rag.history.ConversationStore``) and listed under
"Conversations" to reopen or delete; "About this index" can remove a document (as ``rag remove``).

Programs use the named endpoints ``/ask``, ``/retrieve``, ``/upload``,
``/documents`` and ``/info`` (JSON dicts), e.g. with ``gradio_client``.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import hashlib  # noqa: E402
import html  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Sequence  # noqa: E402

import gradio as gr  # noqa: E402

from rag import (ABSTAIN_MESSAGE, Answer, Assistant, Config, ConversationStore, HistoryError,  # noqa: E402
                 InputError, Passage, RagError, Service, ask_in_context, project_home, resolve_followup)
from rag.service import QuestionLength, UploadResult, human_size, safe_upload_name  # noqa: E402

log = logging.getLogger(__name__)

__all__ = ["build_app", "start", "serve", "parse_auth", "safe_upload_name", "add_uploads", "UploadResult",
           "render_answer_html", "render_sources_html", "render_about_html"]

AUTH_ENV = "RAG_AUTH"
#: Characters of document text shown on each side of a quote when no retrieved passage holds it.
CONTEXT_CHARS = 300
#: Closest passages shown open under an abstention (the rest are collapsed).
ABSTAIN_OPEN_PASSAGES = 3
MAX_K = 50
#: Characters of the question quoted in a sources heading; the whole question is its tooltip.
HEADING_QUESTION_CHARS = 80
#: Viewport widths up to this (px) get the one-column layout (phones, narrow windows).
NARROW_MAX_PX = 720
#: The Ask button's minimum width, so the question box gets the rest of a narrow row.
ASK_BUTTON_MIN_PX = 80
#: Gradio concurrency groups: asks (``Config.serve_concurrency`` at once), index writes (one at a time),
#: cheap reads (no limit).
ASK_GROUP, INDEX_GROUP, READ_GROUP = "ask", "index", "read"
NO_DOCUMENTS_MESSAGE = "No documents are selected; tick at least one document to search."
EMPTY_QUESTION_MESSAGE = "Type a question first."
NO_CONVERSATION_MESSAGE = "Choose a saved conversation first."
NO_DOCUMENT_CHOSEN_MESSAGE = "Choose a document to remove first."
#: Characters of a conversation's title shown in the list.
CONVERSATION_TITLE_CHARS = 60

CSS = """
.rag-chat { display: flex; flex-direction: column; gap: 0.9rem; padding: 0.25rem; }
.rag-empty { color: var(--body-text-color-subdued); padding: 1rem; line-height: 1.5; }
.rag-turn { display: flex; flex-direction: column; gap: 0.35rem; }
.rag-msg { border-radius: 0.75rem; padding: 0.6rem 0.85rem; max-width: 92%; line-height: 1.5;
           white-space: pre-wrap; overflow-wrap: anywhere; }
.rag-user { align-self: flex-end; background: var(--color-accent-soft); }
.rag-bot { align-self: flex-start; background: var(--background-fill-secondary);
           border: 1px solid var(--border-color-primary); }
.rag-who { display: block; font-size: 0.75rem; font-weight: 600; color: var(--body-text-color-subdued);
           white-space: normal; }
.rag-searched { align-self: flex-end; font-size: 0.8rem; color: var(--body-text-color-subdued); }
.rag-abstain { font-weight: 600; }
.rag-meta { display: block; font-size: 0.75rem; color: var(--body-text-color-subdued); margin-top: 0.3rem;
            white-space: normal; }
a.rag-cite { font-weight: 700; text-decoration: none; color: var(--color-accent); cursor: pointer;
             padding: 0 0.1rem; border-radius: 0.25rem; }
a.rag-cite:hover, a.rag-cite:focus { background: var(--color-accent-soft); outline: none; }
.rag-sources { display: flex; flex-direction: column; gap: 0.75rem; padding: 0.25rem; }
.rag-sources h3 { font-size: 1rem; font-weight: 600; line-height: 1.4; margin: 0.2rem 0; overflow-wrap: anywhere; }
.rag-sources h4 { font-size: 0.9rem; margin: 0.4rem 0 0.2rem; }
.rag-source { border: 1px solid var(--border-color-primary); border-radius: 0.6rem; padding: 0.6rem 0.75rem;
              margin-bottom: 0.6rem; scroll-margin: 2rem; transition: box-shadow 0.3s; }
.rag-source.rag-selected { border-color: var(--color-accent); box-shadow: 0 0 0 3px var(--color-accent-soft); }
.rag-source-head { font-size: 0.9rem; margin-bottom: 0.3rem; }
.rag-num { font-weight: 700; color: var(--color-accent); margin-right: 0.3rem; }
.rag-section { color: var(--body-text-color-subdued); }
.rag-page { color: var(--body-text-color-subdued); font-size: 0.8rem; white-space: nowrap; }
.rag-passage { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 0.88rem; line-height: 1.5;
               max-height: 22rem; overflow-y: auto; }
.rag-passage mark { background: #fde68a; color: #1f2937; padding: 0 0.1rem; border-radius: 0.15rem; }
.rag-passage mark b.rag-answer { background: #fbbf24; font-weight: 700; }
.rag-score { font-size: 0.75rem; color: var(--body-text-color-subdued); margin-top: 0.3rem; }
.rag-sources details > summary { cursor: pointer; font-size: 0.9rem; margin: 0.3rem 0; }
.rag-about table { border-collapse: collapse; width: 100%; }
.rag-about th, .rag-about td { text-align: left; padding: 0.3rem 0.5rem; border-bottom: 1px solid var(--border-color-primary);
                               overflow-wrap: anywhere; }
.rag-status-ok { color: var(--color-green-600, #15803d); }
.rag-status-bad { color: var(--color-red-600, #b91c1c); }
@keyframes rag-flash { from { background: var(--color-accent-soft); } to { background: transparent; } }
.rag-flash { animation: rag-flash 1.6s ease-out; }
.rag-notice { align-self: stretch; border: 1px solid var(--border-color-primary);
              border-left: 4px solid var(--color-accent); border-radius: 0.6rem; padding: 0.55rem 0.8rem;
              background: var(--background-fill-secondary); line-height: 1.5; overflow-wrap: anywhere; }
.rag-truncated { display: block; font-size: 0.8rem; margin-top: 0.3rem; white-space: normal;
                 color: var(--body-text-color-subdued); }
"""

#: The one-column layout: filter and slider stacked at full width, each document title on its own line,
#: the chat column's parts flattened (``display: contents``) so the sources come right after the question box.
#: It goes into the page's <head>: Gradio scopes ``css`` to its content, and the page padding lies outside it.
NARROW_CSS = f"""
@media (max-width: {NARROW_MAX_PX}px) {{
  .gradio-container .main.app {{ padding-left: 0.5rem !important; padding-right: 0.5rem !important; }}
  #doc-filter, #k-slider {{ flex: 1 1 100% !important; min-width: 100% !important; }}
  #doc-filter label {{ flex: 1 1 100%; }}
  .rag-answer-row {{ flex-direction: column !important; flex-wrap: nowrap !important; }}
  .rag-answer-row > .rag-chat-column {{ display: contents !important; }}
  .rag-answer-row > * {{ width: 100% !important; min-width: 0 !important; }}
  #chat {{ order: 1; }}
  .rag-question-row {{ order: 2; }}
  .rag-answer-row > .rag-sources-column {{ order: 3; }}
  .rag-clear-row {{ order: 4; }}
  #export {{ order: 5; }}
}}
"""

#: Scrolls each highlighted quote of ``root`` into the middle of its own passage box. Only that box
#: scrolls (never the page), so a quote deep in a long passage is what its card shows. A box is done once
#: (a later re-render or resize leaves the reader's own scrolling alone) unless ``force`` is set.
REVEAL_JS = """
const ragReveal = (root, force) => {
  root.querySelectorAll('.rag-passage').forEach((box) => {
    const mark = box.querySelector('mark');
    if (!mark || box.clientHeight === 0 || (box.dataset.revealed && !force)) return;  // hidden: try again later
    box.dataset.revealed = '1';
    if (box.scrollHeight <= box.clientHeight) return;
    const markRect = mark.getBoundingClientRect();
    const top = markRect.top - box.getBoundingClientRect().top - box.clientTop + box.scrollTop;
    const room = box.clientHeight - markRect.height;
    box.scrollTop = Math.max(0, room > 0 ? top - room / 2 : top);
  });
};
"""

#: Runs once when the chat component mounts: a click on a citation marker brings its source into view,
#: with the quote visible inside it.
CHAT_JS = REVEAL_JS + """
element.addEventListener('click', (event) => {
  const link = event.target.closest('a.rag-cite');
  if (!link) return;
  event.preventDefault();
  const target = document.getElementById(link.dataset.target);
  if (!target) return;
  let details = target.parentElement ? target.parentElement.closest('details') : null;
  while (details) { details.open = true; details = details.parentElement ? details.parentElement.closest('details') : null; }
  document.querySelectorAll('.rag-source.rag-selected').forEach((el) => el.classList.remove('rag-selected'));
  target.classList.add('rag-selected');
  target.classList.remove('rag-flash'); void target.offsetWidth; target.classList.add('rag-flash');
  ragReveal(target, true);
  target.scrollIntoView({behavior: 'smooth', block: 'center'});
  target.focus({preventScroll: true});
});
"""

#: Runs once when the sources component mounts: quotes are brought into view inside their passages when
#: new sources render, when the panel becomes visible (its tab shown) and when a collapsed group opens.
SOURCES_JS = REVEAL_JS + """
const ragRevealSoon = () => requestAnimationFrame(() => ragReveal(element, false));
watch('value', ragRevealSoon);
new ResizeObserver(ragRevealSoon).observe(element);
element.addEventListener('toggle', ragRevealSoon, true);  // toggle does not bubble; capture sees it
ragRevealSoon();
"""

#: Runs once per page: the passages box is clamped to its range as it is typed in, so the number shown is
#: the number used (the slider itself only clamps when the box loses focus).
PAGE_JS = """
() => {
  document.addEventListener('input', (event) => {
    const box = event.target;
    if (!(box instanceof HTMLInputElement) || box.type !== 'number' || !box.closest('#k-slider')) return;
    if (box.value === '' || !Number.isFinite(Number(box.value))) return;  // still typing
    const value = Number(box.value);
    const clamped = Math.min(Math.max(Math.round(value), Number(box.min)), Number(box.max));
    if (clamped !== value) box.value = String(clamped);  // before Gradio's own listener reads it
  }, true);
}
"""


def esc(value: Any) -> str:
    """HTML-escape anything (quotes included)."""
    return html.escape("" if value is None else str(value), quote=True)


def plural(n: int, word: str) -> str:
    """"1 passage", "2 passages"."""
    return f"{n} {word if n == 1 else word + 's'}"


def shorten(text: str, limit: int = HEADING_QUESTION_CHARS) -> str:
    """``text`` with whitespace normalised, cut at a word boundary to at most ``limit`` characters plus "…"."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = cut.rfind(" ")
    if space > limit // 2:  # keep whole words unless that loses more than half
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "\u2026"


# ---------------------------------------------------------------------- rendering
def _field(obj: Any, name: str, default: Any = None) -> Any:
    return obj.get(name, default) if isinstance(obj, dict) else getattr(obj, name, default)


def split_answer(text: str, citations: Sequence[Any]) -> list[tuple[str, int | None]]:
    """Cut an answer into (text, None) and ("", number) pieces at its citation markers.

    Markers are located after each cited quote, so a "[2]" inside a quoted
    sentence stays text.
    """
    pieces: list[tuple[str, int | None]] = []
    pos = 0
    for c in citations:
        number = int(_field(c, "number"))
        shown = " ".join(str(_field(c, "quote", "")).split())
        marker = f"[{number}]"
        idx = text.find(marker, min(len(text), pos + len(shown)))
        if idx < 0:
            idx = text.find(marker, pos)
        if idx < 0:
            continue
        pieces.append((text[pos:idx], None))
        pieces.append(("", number))
        pos = idx + len(marker)
    if pos < len(text):
        pieces.append((text[pos:], None))
    return pieces


def render_answer_html(answer: Answer | dict, turn: int) -> str:
    """The answer text, escaped, with each [n] a link to source ``src-{turn}-{n}``."""
    text = str(_field(answer, "text", ""))
    citations = list(_field(answer, "citations", []) or [])
    if _field(answer, "abstained", False):
        return f'<span class="rag-abstain">{esc(text)}</span>'
    titles = {int(_field(c, "number")): f"{_field(c, 'title', '')} \u2014 {_field(c, 'section', '')}"
              + (f", p. {_field(c, 'page')}" if _field(c, "page") is not None else "") for c in citations}
    out = []
    for piece, number in split_answer(text, citations):
        if number is None:
            out.append(esc(piece))
        else:
            out.append(f'<a class="rag-cite" href="#src-{turn}-{number}" data-target="src-{turn}-{number}" '
                       f'role="button" title="{esc(titles.get(number, ""))}">[{number}]</a>')
    return "".join(out)


def _snap_window(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen [start, end) by CONTEXT_CHARS each way, cut at whitespace."""
    a = max(0, start - CONTEXT_CHARS)
    b = min(len(text), end + CONTEXT_CHARS)
    if a > 0:
        space = text.find(" ", a, start)
        a = space + 1 if space >= 0 else a
    if b < len(text):
        space = text.rfind(" ", end, b)
        b = space if space >= 0 else b
    return a, b


def quote_in_context(citation: Any, passages: Sequence[Any], doc_text: str | None) -> tuple[str, str, str, Any]:
    """(before, quote, after, passage or None): the quote inside the retrieved passage that holds it.

    Falls back to a window of the document around the quote, and to the quote
    alone if the document changed since the answer was given.
    """
    doc_id, start, end = _field(citation, "doc_id"), int(_field(citation, "start")), int(_field(citation, "end"))
    quote = str(_field(citation, "quote", ""))
    best, best_overlap = None, 0
    for p in passages:
        if _field(p, "doc_id") != doc_id:
            continue
        overlap = min(end, int(_field(p, "end"))) - max(start, int(_field(p, "start")))
        if overlap > best_overlap:
            best, best_overlap = p, overlap
    if best is not None:
        p_start, p_end, p_text = int(_field(best, "start")), int(_field(best, "end")), str(_field(best, "text"))
        if p_start <= start and end <= p_end and p_text[start - p_start:end - p_start] == quote:
            return p_text[:start - p_start], quote, p_text[end - p_start:], best
    if doc_text is not None and doc_text[start:end] == quote:
        a, b = _snap_window(doc_text, start, end)
        if best is not None:  # a quote running over the passage's edge: show the passage and the overhang
            a, b = min(a, int(_field(best, "start"))), max(b, int(_field(best, "end")))
        return ("\u2026" if a > 0 else "") + doc_text[a:start], quote, \
            doc_text[end:b] + ("\u2026" if b < len(doc_text) else ""), best
    return "", quote, "", best


def _quote_html(citation: Any, quote: str) -> str:
    """The quote, escaped, with the answer the reader marks inside it in bold (``<b class="rag-answer">``)."""
    a, b = _field(citation, "answer_start", -1), _field(citation, "answer_end", -1)
    a, b = (-1, -1) if a is None or b is None else (int(a), int(b))
    start = int(_field(citation, "start"))
    if a < start or b <= a or b - start > len(quote):
        return esc(quote)
    i, j = a - start, b - start
    return f'{esc(quote[:i])}<b class="rag-answer">{esc(quote[i:j])}</b>{esc(quote[j:])}'


def _score_line(p: Any) -> str:
    if p is None:
        return '<div class="rag-score">not among the retrieved passages (shown from the document)</div>'
    return (f'<div class="rag-score">retrieval score {float(_field(p, "score", 0.0)):.4f} '
            f'\u00b7 rank {int(_field(p, "rank", 0))} \u00b7 cosine {float(_field(p, "dense_score", 0.0)):.3f} '
            f'\u00b7 BM25 {float(_field(p, "bm25_score", 0.0)):.2f}{_reader_part(p)}</div>')


def _reader_part(p: Any) -> str:
    score = _field(p, "reader_score")
    return "" if score is None else f" \u00b7 reader {float(score):.2f}"


def _where(title: Any, section: Any, page: Any = None) -> str:
    section_html = f' <span class="rag-section">\u2014 {esc(section)}</span>' if section and section != title else ""
    page_html = f' <span class="rag-page">p. {esc(page)}</span>' if page is not None else ""
    return f"<b>{esc(title)}</b>{section_html}{page_html}"


def _page_of(documents: Any, doc_id: Any, offset: Any) -> int | None:
    """The page of ``offset`` in a document with pages (PDF), when the documents are at hand."""
    doc = documents.get(doc_id) if documents is not None else None
    page_at = getattr(doc, "page_at", None)
    return page_at(int(offset)) if page_at is not None else None


def _passage_card(p: Any, documents: Any = None) -> str:
    page = _page_of(documents, _field(p, "doc_id"), _field(p, "start", 0))
    return (f'<article class="rag-source rag-passage-card"><div class="rag-source-head">'
            f'{_where(_field(p, "title"), _field(p, "section"), page)}</div>'
            f'<div class="rag-passage">{esc(_field(p, "text"))}</div>{_score_line(p)}</article>')


def render_sources_html(answer: Answer | dict, turn: int, documents: Any = None) -> str:
    """Sources for one answer: each citation with its quote highlighted in context, then the uncited passages.

    ``documents`` maps doc_id to a Document (for quotes outside every passage).
    """
    passages = list(_field(answer, "passages", []) or [])
    citations = list(_field(answer, "citations", []) or [])
    asked = str(_field(answer, "question", ""))
    parts = [f'<h3 class="rag-sources-title" title="{esc(asked)}">Sources for \u201c{esc(shorten(asked))}\u201d</h3>']
    if _field(answer, "abstained", False):
        parts.append(f'<p class="rag-abstain">{esc(_field(answer, "text", ABSTAIN_MESSAGE))}</p>')
        if not passages:
            parts.append("<p>No passage matched (check the document filter).</p>")
            return "".join(parts)
        parts.append("<h4>Closest passages</h4>")
        parts.extend(_passage_card(p, documents) for p in passages[:ABSTAIN_OPEN_PASSAGES])
        rest = passages[ABSTAIN_OPEN_PASSAGES:]
        if rest:
            parts.append(f"<details><summary>{plural(len(rest), 'more retrieved passage')}"
                         f"</summary>{''.join(_passage_card(p, documents) for p in rest)}</details>")
        return "".join(parts)
    used: set[Any] = set()
    for c in citations:
        number = int(_field(c, "number"))
        doc = documents.get(_field(c, "doc_id")) if documents is not None else None
        before, quote, after, passage = quote_in_context(c, passages, getattr(doc, "text", None))
        if passage is not None:
            used.add(_field(passage, "chunk_id"))
        parts.append(
            f'<article class="rag-source" id="src-{turn}-{number}" tabindex="-1">'
            f'<div class="rag-source-head"><span class="rag-num">[{number}]</span>'
            f'{_where(_field(c, "title"), _field(c, "section"), _field(c, "page"))}</div>'
            f'<div class="rag-passage">{esc(before)}<mark>{_quote_html(c, quote)}</mark>{esc(after)}</div>'
            f'{_score_line(passage)}</article>')
    uncited = [p for p in passages if _field(p, "chunk_id") not in used]
    if uncited:
        parts.append(f'<details class="rag-uncited"><summary>{plural(len(uncited), "retrieved passage")} not '
                     f'cited</summary>{"".join(_passage_card(p, documents) for p in uncited)}</details>')
    return "".join(parts)


def render_about_html(info: dict) -> str:
    """The "About this index" view."""
    model = info.get("model") or {}
    reader = info.get("reader") or {}
    rows = "".join(
        f"<tr><td>{esc(d.get('title'))}</td><td><code>{esc(d.get('doc_id'))}</code></td>"
        f"<td>{esc(d.get('chunks'))}</td><td>{esc(d.get('path'))}</td></tr>" for d in info.get("documents", []))
    settings = info.get("settings") or {}
    settings_text = ", ".join(f"{k}={v}" for k, v in settings.items())
    return (
        '<div class="rag-about">'
        f"<p><b>{len(info.get('documents', []))}</b> documents, <b>{esc(info.get('chunks'))}</b> chunks.</p>"
        "<table><tbody>"
        f"<tr><th>Model</th><td>{esc(model.get('name'))} ({esc(model.get('dimension'))} dimensions, "
        f"{esc(model.get('dtype'))})</td></tr>"
        f"<tr><th>Built</th><td>{esc(info.get('created_at'))}</td></tr>"
        f"<tr><th>Updated</th><td>{esc(info.get('updated_at'))}</td></tr>"
        f"<tr><th>Retriever</th><td>{esc(info.get('retriever'))}, reranked by {esc(info.get('reranker'))}</td></tr>"
        f"<tr><th>Reader</th><td>{esc(reader.get('name'))} ({esc(reader.get('precision'))}), sha256 "
        f"<code>{esc(reader.get('sha256'))}</code></td></tr>"
        f"<tr><th>Index settings</th><td>{esc(settings_text)}</td></tr>"
        f"<tr><th>Index folder</th><td>{esc(info.get('index'))}</td></tr>"
        "</tbody></table><h4>Documents</h4>"
        f"<table><thead><tr><th>Title</th><th>Id</th><th>Chunks</th><th>File</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div>")


# ---------------------------------------------------------------------- conversation state
@dataclass
class Turn:
    """One question and its answer, rendered once when it is asked."""

    number: int
    asked: str
    searched: str
    answer: dict
    markdown: str
    chat_html: str
    sources_html: str
    seconds: float
    #: Passages asked for (the slider's value as used).
    k: int = 0
    length: QuestionLength | None = None


def _turn_chat_html(turn: Turn, filter_note: str) -> str:
    a = turn.answer
    searched = ""
    if turn.searched != turn.asked:
        searched = f'<div class="rag-searched">Searched: \u201c{esc(turn.searched)}\u201d</div>'
    found = len(a.get("passages", []))
    passages = plural(found, "passage") + (f" (of {turn.k} asked for)" if 0 < found < turn.k else "")
    mode = str(a.get("mode") or "extractive")  # quoted, or written by the opt-in generator (each sentence checked)
    meta = (f'{esc("quoted" if mode == "extractive" else mode)} \u00b7 '
            f'confidence {float(a.get("confidence", 0.0)):.2f} \u00b7 {passages} '
            f'\u00b7 {turn.seconds:.2f} s{esc(filter_note)}')
    cut = turn.length.notice() if turn.length is not None else ""
    cut_html = f'<span class="rag-truncated" role="note">{esc(cut)}</span>' if cut else ""
    return (f'<div class="rag-turn" id="turn-{turn.number}">'
            f'<div class="rag-msg rag-user"><span class="rag-who">You</span>{esc(turn.asked)}</div>{searched}'
            f'<div class="rag-msg rag-bot{" rag-abstained" if a.get("abstained") else ""}">'
            f'<span class="rag-who">Assistant</span>{render_answer_html(a, turn.number)}'
            f'{cut_html}<span class="rag-meta">{meta}</span></div></div>')


def render_chat(turns: Sequence[Turn], n_documents: int, notice: str = "") -> str:
    """The conversation; ``notice`` (a message about the last attempt, e.g. nothing selected) comes last."""
    notice_html = f'<div class="rag-notice" role="status">{esc(notice)}</div>' if notice else ""
    if not turns:
        return (f'<div class="rag-chat"><div class="rag-empty">Ask a question about the {n_documents} indexed '
                "documents. Every answer sentence is quoted from a document and cited [n]; click a marker to "
                "see its source. Follow-ups such as \u201cand in Laos?\u201d continue the conversation.</div>"
                f"{notice_html}</div>")
    return '<div class="rag-chat">' + "".join(t.chat_html for t in turns) + notice_html + "</div>"


def render_sources_panel(turns: Sequence[Turn]) -> str:
    if not turns:
        return '<div class="rag-sources"><p class="rag-empty">Sources of the answers appear here.</p></div>'
    latest, older = turns[-1], list(reversed(turns[:-1]))
    parts = [f'<section class="rag-turn-sources" id="sources-{latest.number}">{latest.sources_html}</section>']
    for t in older:
        parts.append(f'<details class="rag-older"><summary title="{esc(t.searched)}">Earlier: '
                     f'\u201c{esc(shorten(t.searched))}\u201d</summary>'
                     f'<section class="rag-turn-sources" id="sources-{t.number}">{t.sources_html}</section></details>')
    return '<div class="rag-sources">' + "".join(parts) + "</div>"


# ---------------------------------------------------------------------- uploads
def _extensions(config: Config, code: bool = False) -> str:
    """The upload types as ".txt, .md, .pdf or .docx" (in Markdown code spans with ``code``)."""
    shown = [f"`{e}`" if code else e for e in config.allowed_extensions]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


def add_uploads(assistant: Assistant, files: Sequence[str | Path], uploads_dir: Path,
                progress: Callable[..., Any] | None = None, names: Sequence[str] | None = None) -> UploadResult:
    """Check, save (under generated names) and index uploaded files: ``rag.service.Service.add_files``, which
    the HTTP API shares; bad files are rejected, changing nothing."""
    return Service(assistant, uploads_dir=uploads_dir).add_files([str(f) for f in files or []], names=names,
                                                                 progress=progress)


def render_upload_html(result: UploadResult, titles: dict[str, str], config: Config | None = None) -> str:
    lines = []
    for label, ids in (("Added", result.added), ("Updated", result.changed), ("Already indexed", result.unchanged)):
        for doc_id in ids:
            lines.append(f'<li class="rag-status-ok">{label}: <b>{esc(titles.get(doc_id, doc_id))}</b> '
                         f'(<code>{esc(doc_id)}</code>) from \u201c{esc(result.files.get(doc_id, ""))}\u201d</li>')
    for item in result.rejected:
        lines.append(f'<li class="rag-status-bad">Not added: <b>{esc(item.file)}</b> \u2014 '
                     f'{esc(item.reason)}. The index is unchanged by this file.</li>')
    if not lines:
        lines.append(f"<li>Choose one or more {esc(_extensions(config or Config()))} files first.</li>")
    return (f'<div class="rag-upload"><ul>{"".join(lines)}</ul><p>{result.documents} documents, '
            f"{result.chunks} chunks in the index ({result.seconds:.1f} s).</p></div>")


# ---------------------------------------------------------------------- the app
def json_info(assistant: Assistant) -> dict[str, Any]:
    """``assistant.info()`` for API callers; a document's ``path`` is renamed ``file``.

    (gradio_client takes any dict with a string ``path`` for a file to download.)
    """
    info = dict(assistant.info())
    info["documents"] = [{("file" if k == "path" else k): v for k, v in d.items()} for d in info["documents"]]
    return info


def _doc_choices(assistant: Assistant) -> list[tuple[str, str]]:
    return [(d.title, d.doc_id) for d in assistant.documents.values()]


def _filter_ids(assistant: Assistant, selected: Sequence[str] | None) -> list[str] | None:
    """None for "all documents"; else the selected ids (unknown ids are an ``InputError``)."""
    if selected is None:
        return None
    selected = [str(s) for s in selected]
    unknown = sorted(set(selected) - set(assistant.documents))
    if unknown:
        raise InputError(f"unknown document id(s): {', '.join(unknown)}; see /documents")
    if not selected:
        raise InputError("select at least one document to search")
    if set(selected) >= set(assistant.documents):
        return None
    return selected


def _user_error(exc: Exception, prefix: str = "") -> gr.Error:
    """A message for the user (a toast in the UI, an AppError for clients); no server traceback."""
    return gr.Error(f"{prefix}{exc}", print_exception=False)


def _k(value: Any, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        k = int(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"the number of passages must be a whole number, got {value!r}") from exc
    if not 1 <= k <= MAX_K:
        raise InputError(f"the number of passages must be between 1 and {MAX_K}, got {k}")
    return k


def _ui_k(value: Any, default: int) -> int:
    """The slider's value as used: clamped to 1…MAX_K (and shown back in the box, so both agree)."""
    try:
        return min(max(int(round(float(value))), 1), MAX_K)
    except (TypeError, ValueError, OverflowError):
        return default


def _as_sentence(message: str) -> str:
    """A library message ("select at least one …") as a sentence for the chat."""
    message = message.strip()
    if not message:
        return message
    return message[0].upper() + message[1:] + ("" if message.endswith((".", "?", "!")) else ".")


def _conversation_label(c: Any) -> str:
    """A line of the conversation list: title, number of turns, when it was last used."""
    updated = str(c.updated_at).replace("T", " ").split("+")[0]
    return f"{shorten(c.title, CONVERSATION_TITLE_CHARS)} \u00b7 {plural(c.turns, 'turn')} \u00b7 {updated} UTC"


def _status_html(message: str, ok: bool = True) -> str:
    return f'<p class="{"rag-status-ok" if ok else "rag-status-bad"}" role="status">{esc(message)}</p>'


def restore_turns(saved: Any, documents: Any = None) -> list[Turn]:
    """The Turns of a saved conversation, rendered from its stored answer dicts."""
    turns = []
    for t in saved.turns:
        answer = dict(t.answer or {})
        answer.setdefault("question", t.searched)
        turn = Turn(int(t.number), t.asked, t.searched, answer, "", "",
                    render_sources_html(answer, int(t.number), documents), float(t.seconds),
                    len(answer.get("passages", []) or []))
        turn.chat_html = _turn_chat_html(turn, "")
        turns.append(turn)
    return turns


def build_app(assistant: Assistant, *, uploads_dir: str | Path | None = None, title: str = "Research assistant",
              history: ConversationStore | None = None) -> gr.Blocks:
    """The whole UI over ``assistant`` (launch it with ``start``).

    ``history`` keeps the conversations asked in the browser (default: ``ConversationStore()`` in the
    project home); if it cannot be opened the UI still answers, without saving.
    """
    config = assistant.config
    uploads = Path(uploads_dir) if uploads_dir is not None else project_home() / "uploads"
    service = Service(assistant, uploads_dir=uploads)
    store: ConversationStore | None = history
    store_error = ""
    if store is None:
        try:
            store = ConversationStore()
        except HistoryError as exc:
            log.warning("conversations will not be saved: %s", exc)
            store_error = f"Conversations are not saved: {_as_sentence(str(exc))}"
    default_k = min(config.top_k, MAX_K)
    export_dir = Path(tempfile.mkdtemp(prefix="rag-export-"))

    def ask_core(question: str, history: Sequence[str], doc_ids: Sequence[str] | None, k: Any
                 ) -> tuple[str, Answer, float, QuestionLength]:
        question = " ".join(str(question or "").split())
        if not question:
            raise InputError("the question is empty; type a question")
        history = [h for h in history if h]
        # Counted here, not caught from the library's QuestionTruncatedWarning: catching warnings changes
        # process-wide state, which is not safe while other asks run in other threads.
        length = QuestionLength.of(resolve_followup(question, history), config)
        started = time.perf_counter()
        # A follow-up that names a new subject ("and in Malaysia?") declines unless the quote speaks about it.
        turn = ask_in_context(assistant, question, history, k=_k(k, default_k),
                              doc_ids=_filter_ids(assistant, doc_ids))
        searched, answer = turn.searched, turn.answer
        seconds = time.perf_counter() - started
        log.info("answered in %.2fs (abstained=%s): %s", seconds, answer.abstained, searched)
        return searched, answer, seconds, length

    # ---------------- saved conversations
    def conversation_choices() -> tuple[list[tuple[str, str]], str]:
        """(choices for the list, a message when the store cannot be read)."""
        if store is None:
            return [], store_error
        try:
            return [(_conversation_label(c), c.id) for c in store.list()], ""
        except RagError as exc:
            log.warning("cannot list conversations: %s", exc)
            return [], f"Saved conversations cannot be shown now: {_as_sentence(str(exc))}"

    def conversation_list(value: str | None = None):
        choices, problem = conversation_choices()
        ids = {c[1] for c in choices}
        return gr.update(choices=choices, value=value if value in ids else None), problem

    def save_turn(conversation_id: str, turn: Turn) -> tuple[str, str]:
        """Save an answered turn; returns (conversation id, problem). Never raises: the answer is shown anyway."""
        if store is None:
            return conversation_id, store_error
        try:
            if not conversation_id:
                conversation_id = store.create()
            try:
                store.add_turn(conversation_id, turn.asked, turn.searched, turn.answer, turn.seconds)
            except InputError:  # deleted meanwhile (e.g. in another tab): keep this answer in a new one
                conversation_id = store.create()
                store.add_turn(conversation_id, turn.asked, turn.searched, turn.answer, turn.seconds)
        except RagError as exc:
            log.warning("answer not saved: %s", exc)
            return conversation_id, f"This answer was not saved: {_as_sentence(str(exc))}"
        return conversation_id, ""

    # ---------------- UI handlers
    def on_ask(question: str, turns: list[Turn], selected: list[str] | None, k: float, conversation_id: str = ""):
        """Outputs: chat, sources, turns, question box, Markdown, download, passages slider, conversation id,
        conversation list, conversation status."""
        turns = list(turns or [])
        total = len(assistant.documents)
        used_k = _ui_k(k, default_k)

        def notice(message: str):
            # One calm line in the chat; the typed question stays in its box, nothing is marked as an error.
            return (render_chat(turns, total, message), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(),
                    used_k, gr.skip(), gr.skip(), gr.skip())

        asked = " ".join(str(question or "").split())
        if not asked:
            return notice(EMPTY_QUESTION_MESSAGE)
        if selected is not None and not list(selected):
            return notice(NO_DOCUMENTS_MESSAGE)
        try:
            searched, answer, seconds, length = ask_core(asked, [t.searched for t in turns], selected, used_k)
            chosen = _filter_ids(assistant, selected)
        except RagError as exc:
            return notice(f"Not answered: {_as_sentence(str(exc))}")
        number = len(turns) + 1
        note = f" \u00b7 searched {len(chosen)} of {total} documents" if chosen is not None else ""
        data = answer.to_dict()
        turn = Turn(number, asked, searched, data, answer.to_markdown(), "",
                    render_sources_html(answer, number, assistant.documents), seconds, used_k, length)
        turn.chat_html = _turn_chat_html(turn, note)
        turns.append(turn)
        path = export_dir / f"answer-{number}-{hashlib.sha1(turn.markdown.encode()).hexdigest()[:8]}.md"
        path.write_text(turn.markdown, encoding="utf-8")
        conversation_id, problem = save_turn(str(conversation_id or ""), turn)
        listing, list_problem = conversation_list(conversation_id)
        status = problem or list_problem
        # A turn that could not be saved is still answered; one calm line under it says so.
        return (render_chat(turns, total, problem), render_sources_panel(turns), turns, "", turn.markdown,
                gr.update(value=str(path), interactive=True), used_k, conversation_id, listing,
                _status_html(status, ok=False) if status else "")

    def on_load():
        listing, problem = conversation_list()
        return (render_chat([], len(assistant.documents)),
                gr.update(choices=_doc_choices(assistant), value=list(assistant.documents)),
                render_about_html(assistant.info()), listing, _status_html(problem, ok=False) if problem else "",
                gr.update(choices=_doc_choices(assistant), value=None))

    def on_clear():
        listing, _problem = conversation_list()
        return (render_chat([], len(assistant.documents)), render_sources_panel([]), [], "", "",
                gr.update(value=None, interactive=False), gr.skip(), "", listing, "")

    def on_open(chosen: str | None):
        """Restore a saved conversation into the chat and the sources; follow-ups continue from it."""
        total = len(assistant.documents)
        if not chosen:
            return (gr.skip(),) * 9 + (_status_html(NO_CONVERSATION_MESSAGE),)
        if store is None:
            return (gr.skip(),) * 9 + (_status_html(store_error, ok=False),)
        try:
            saved = store.get(str(chosen))
        except RagError as exc:
            log.warning("cannot open conversation %s: %s", chosen, exc)
            listing, _problem = conversation_list()
            return ((gr.skip(),) * 8 + (listing,)
                    + (_status_html(f"That conversation cannot be opened: {_as_sentence(str(exc))}", ok=False),))
        turns = restore_turns(saved, assistant.documents)
        return (render_chat(turns, total), render_sources_panel(turns), turns, "", "",
                gr.update(value=None, interactive=False), gr.skip(), saved.id, gr.skip(),
                _status_html(f"Opened \u201c{shorten(saved.title, CONVERSATION_TITLE_CHARS)}\u201d "
                             f"({plural(len(turns), 'turn')}); ask a follow-up to continue it."))

    def on_delete(chosen: str | None, conversation_id: str):
        """Delete the chosen conversation (the chat is cleared when it was the one shown)."""
        if not chosen:
            return (gr.skip(),) * 9 + (_status_html(NO_CONVERSATION_MESSAGE),)
        if store is None:
            return (gr.skip(),) * 9 + (_status_html(store_error, ok=False),)
        try:
            store.delete(str(chosen))
            status = _status_html("Conversation deleted.")
        except RagError as exc:
            log.warning("cannot delete conversation %s: %s", chosen, exc)
            status = _status_html(f"Not deleted: {_as_sentence(str(exc))}", ok=False)
        listing, _problem = conversation_list()
        if str(chosen) == str(conversation_id or ""):
            return (render_chat([], len(assistant.documents)), render_sources_panel([]), [], gr.skip(), "",
                    gr.update(value=None, interactive=False), gr.skip(), "", listing, status)
        return (gr.skip(),) * 8 + (listing, status)

    def on_remove(doc_id: str | None, selected: list[str] | None):
        """Drop one document from the index (as ``rag remove``). Outputs: status, filter, About, dropdown."""
        if not doc_id:
            return _status_html(NO_DOCUMENT_CHOSEN_MESSAGE), gr.skip(), gr.skip(), gr.skip()
        title = getattr(assistant.documents.get(str(doc_id)), "title", str(doc_id))
        try:
            result = service.remove(str(doc_id))
        except RagError as exc:
            return (_status_html(f"Not removed: {_as_sentence(str(exc))}", ok=False), gr.skip(), gr.skip(),
                    gr.skip())
        remaining = [d for d in (selected if selected is not None else assistant.documents)
                     if d in assistant.documents] or list(assistant.documents)
        message = f"Removed \u201c{title}\u201d ({result.removed}): {result.documents} documents, " \
                  f"{result.chunks} chunks left."
        if result.deleted_file:
            message += " Its uploaded file was deleted."
        return (_status_html(message), gr.update(choices=_doc_choices(assistant), value=remaining),
                render_about_html(assistant.info()), gr.update(choices=_doc_choices(assistant), value=None))

    def on_upload(files: list[str] | None, selected: list[str], progress=gr.Progress(track_tqdm=True)):
        paths = [str(f) for f in (files or [])]
        before = set(assistant.documents)
        try:
            result = add_uploads(assistant, paths, uploads, progress=progress)
        except RagError as exc:
            raise _user_error(exc, "Nothing was added: ") from None
        titles = {d.doc_id: d.title for d in assistant.documents.values()}
        new_ids = [d for d in assistant.documents if d not in before]
        selected = list(selected or []) + new_ids
        if result.rejected:
            gr.Warning(f"{len(result.rejected)} file(s) not added; see the message below.")
        return (render_upload_html(result, titles, config), gr.update(choices=_doc_choices(assistant), value=selected),
                render_about_html(assistant.info()), gr.update(value=None),
                gr.update(choices=_doc_choices(assistant), value=None))

    # ---------------- API handlers (JSON in, JSON out)
    def api_ask(question: str, k: int = default_k, doc_ids: list[str] | None = None,
                history: list[str] | None = None) -> dict:
        """Answer a question with numbered citations (or abstain). `history`: earlier questions, for follow-ups."""
        try:
            searched, answer, seconds, length = ask_core(question, list(history or []), doc_ids, k)
        except RagError as exc:
            raise _user_error(exc) from None
        data = answer.to_dict()
        data.update(asked=" ".join(str(question).split()), searched=searched, markdown=answer.to_markdown(),
                    seconds=round(seconds, 3), question_tokens=length.tokens, truncated=length.truncated)
        return data

    def api_retrieve(question: str, k: int = default_k, doc_ids: list[str] | None = None) -> dict:
        """The k passages most relevant to a question, best first."""
        try:
            passages: list[Passage] = assistant.retrieve(question, k=_k(k, default_k),
                                                         doc_ids=_filter_ids(assistant, doc_ids))
        except RagError as exc:
            raise _user_error(exc) from None
        length = QuestionLength.of(str(question), config)
        return {"question": " ".join(str(question).split()), "passages": [p.to_dict() for p in passages],
                "question_tokens": length.tokens, "truncated": length.truncated}

    def api_documents() -> dict:
        """The indexed documents (ids for the doc_ids filter)."""
        return {"documents": json_info(assistant)["documents"]}

    def api_info() -> dict:
        """About this index: documents, chunk count, model, when built."""
        return json_info(assistant)

    def api_upload(files: list[str] | None) -> dict:
        try:
            return add_uploads(assistant, [str(f) for f in (files or [])], uploads).to_dict()
        except RagError as exc:
            raise _user_error(exc, "Nothing was added: ") from None

    with gr.Blocks(title=title, analytics_enabled=False) as app:
        turns_state = gr.State([])
        conversation_state = gr.State("")
        gr.HTML(f"<h2 style='margin:0.2rem 0'>{esc(title)}</h2>"
                "<p style='margin:0'>Answers are quoted from the indexed documents, each sentence with its source. "
                "Everything runs on this machine.</p>", js_on_load=None)
        with gr.Tabs():
            with gr.Tab("Ask", id="ask"):
                with gr.Row():
                    doc_filter = gr.CheckboxGroup(choices=_doc_choices(assistant), value=list(assistant.documents),
                                                  label="Search these documents", elem_id="doc-filter", scale=4)
                    k_slider = gr.Slider(1, MAX_K, value=default_k, step=1, label="Passages to retrieve",
                                         elem_id="k-slider", scale=1)
                # The elem_classes name the parts NARROW_CSS rearranges into one column on narrow screens.
                with gr.Row(equal_height=False, elem_classes=["rag-answer-row"]):
                    with gr.Column(scale=5, elem_classes=["rag-chat-column"]):
                        chat = gr.HTML(render_chat([], len(assistant.documents)), elem_id="chat", label="Chat",
                                       js_on_load=CHAT_JS, max_height=640, autoscroll=True, container=True,
                                       padding=True)
                        with gr.Row(elem_classes=["rag-question-row"]):
                            question = gr.Textbox(placeholder="Ask a question about the documents\u2026",
                                                  show_label=False, scale=8, elem_id="question", max_lines=4,
                                                  autofocus=True, container=False)
                            ask_btn = gr.Button("Ask", variant="primary", scale=1, min_width=ASK_BUTTON_MIN_PX,
                                                elem_id="ask")
                        with gr.Row(elem_classes=["rag-clear-row"]):
                            clear_btn = gr.Button("New conversation", size="sm", elem_id="clear")
                        with gr.Accordion("Conversations", open=False, elem_id="conversations-panel"):
                            conversations = gr.Radio(choices=[], value=None, label="Saved conversations, newest first",
                                                     elem_id="conversations")
                            with gr.Row():
                                open_btn = gr.Button("Open", size="sm", elem_id="conversation-open")
                                delete_btn = gr.Button("Delete", size="sm", variant="stop",
                                                       elem_id="conversation-delete")
                            conversation_status = gr.HTML("", elem_id="conversation-status", js_on_load=None)
                        with gr.Accordion("Copy or export the latest answer as Markdown", open=False,
                                          elem_id="export"):
                            markdown = gr.Textbox(label="Answer with citations (Markdown)", lines=8,
                                                  interactive=False, buttons=["copy"], elem_id="markdown")
                            download = gr.DownloadButton("Download .md", value=None, interactive=False,
                                                         elem_id="download", size="sm")
                    with gr.Column(scale=4, elem_classes=["rag-sources-column"]):
                        sources = gr.HTML(render_sources_panel([]), elem_id="sources", label="Sources",
                                          js_on_load=SOURCES_JS, max_height=720, container=True, padding=True)
            with gr.Tab("Add documents", id="upload"):
                gr.Markdown(f"Add {_extensions(config, code=True)} files (up to {human_size(config.max_upload_bytes)} "
                            "each) to the index. Only new or changed files are embedded. A file that cannot be read "
                            "(a scanned PDF without text, an encrypted or damaged file) is refused, with the reason, "
                            "and leaves the index as it was.")
                upload_files = gr.File(file_count="multiple", file_types=list(config.allowed_extensions),
                                       type="filepath", label="Files", elem_id="upload-files")
                upload_btn = gr.Button("Add to index", variant="primary", elem_id="upload-button")
                upload_status = gr.HTML("", elem_id="upload-status", js_on_load=None)
            with gr.Tab("About this index", id="about"):
                about = gr.HTML(render_about_html(assistant.info()), elem_id="about", js_on_load=None)
                refresh = gr.Button("Refresh", size="sm")
                with gr.Row():
                    remove_doc = gr.Dropdown(choices=_doc_choices(assistant), value=None, label="Document",
                                             elem_id="remove-doc", scale=4)
                    remove_btn = gr.Button("Remove from index", variant="stop", elem_id="remove-button", scale=1)
                remove_status = gr.HTML("", elem_id="remove-status", js_on_load=None)

        # Concurrency: asks share one group of config.serve_concurrency (Gradio applies the lowest limit in a
        # group, so every ask event names it); writes run one at a time; cheap reads never wait behind either.
        asks: dict[str, Any] = dict(concurrency_id=ASK_GROUP, concurrency_limit=config.serve_concurrency)
        writes: dict[str, Any] = dict(concurrency_id=INDEX_GROUP, concurrency_limit=1)
        reads: dict[str, Any] = dict(concurrency_id=READ_GROUP, concurrency_limit=None)
        outputs = [chat, sources, turns_state, question, markdown, download, k_slider, conversation_state,
                   conversations, conversation_status]
        ask_inputs = [question, turns_state, doc_filter, k_slider, conversation_state]
        # Progress shows on the chat and the sources only: the question box and the slider stay readable.
        question.submit(on_ask, ask_inputs, outputs, api_visibility="private", show_progress_on=[chat, sources],
                        **asks)
        ask_btn.click(on_ask, ask_inputs, outputs, api_visibility="private", show_progress_on=[chat, sources],
                      **asks)
        clear_btn.click(on_clear, None, outputs, api_visibility="private", **reads)
        # Choosing a conversation opens it; "Open" does the same (e.g. to reopen the one chosen).
        conversations.input(on_open, conversations, outputs, api_visibility="private", **reads)
        open_btn.click(on_open, conversations, outputs, api_visibility="private", **reads)
        delete_btn.click(on_delete, [conversations, conversation_state], outputs, api_visibility="private", **reads)
        upload_btn.click(on_upload, [upload_files, doc_filter],
                         [upload_status, doc_filter, about, upload_files, remove_doc], api_visibility="private",
                         **writes)
        remove_btn.click(on_remove, [remove_doc, doc_filter], [remove_status, doc_filter, about, remove_doc],
                         api_visibility="private", **writes)
        refresh.click(lambda: render_about_html(assistant.info()), None, about, api_visibility="private", **reads)
        # Each page load shows the index as it is now (documents may have been added since the app was built).
        app.load(on_load, None, [chat, doc_filter, about, conversations, conversation_status, remove_doc],
                 api_visibility="private", **reads)

        # Named endpoints for programs.
        gr.api(api_ask, api_name="ask", **asks)
        gr.api(api_retrieve, api_name="retrieve", **asks)
        gr.api(api_documents, api_name="documents", **reads)
        gr.api(api_info, api_name="info", **reads)
        with gr.Group(visible=False):
            # Labels name the endpoint's parameter and result in the API listing (else "parameter_43", "value_44").
            api_files = gr.File(file_count="multiple", type="filepath", visible=False, label="files")
            api_result = gr.JSON(visible=False, label="upload_result")
            api_trigger = gr.Button(visible=False)
        api_trigger.click(api_upload, api_files, api_result, api_name="upload", **writes,
                          api_description=f"Add {_extensions(config)} files to the index; returns what was added "
                                          "or refused.")
    app.rag_config = config  # type: ignore[attr-defined]  # start() takes the upload limit from it
    return app


# ---------------------------------------------------------------------- launching
def parse_auth(value: str | None) -> tuple[str, str] | None:
    """``USER:PASSWORD`` → (user, password); None or '' → None."""
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise InputError("auth must look like USER:PASSWORD (both non-empty)")
    return user, password


def theme() -> gr.themes.Base:
    """The default theme with system fonts only (nothing fetched from outside)."""
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto",
                                   "sans-serif"],
                             font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"])


def start(app: gr.Blocks, *, host: str = "127.0.0.1", port: int = 7860, auth: str | tuple[str, str] | None = None,
          open_browser: bool = False, block: bool = False) -> str:
    """Launch ``app`` (from ``build_app``) on host:port; returns its URL (serves until stopped when ``block``).

    Uploads over the configured limit get this UI's message; Gradio itself
    refuses request bodies over twice the limit before they reach the disk.
    """
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    credentials = parse_auth(auth) if isinstance(auth, str) else auth
    limit = 2 * getattr(app, "rag_config", Config()).max_upload_bytes
    app.queue(default_concurrency_limit=1)  # for any event without its own limit (build_app sets them all)
    try:
        _server, url, _share = app.launch(
            server_name=host, server_port=port, auth=credentials, inbrowser=open_browser, share=False,
            prevent_thread_lock=True, show_error=True, quiet=True, ssr_mode=False, pwa=False, mcp_server=False,
            max_file_size=limit, theme=theme(), css=CSS, js=PAGE_JS, head=f"<style>{NARROW_CSS}</style>",
            enable_monitoring=False, footer_links=["api"],
            auth_message="This research assistant is password protected." if credentials else None)
    except OSError as exc:  # the port was taken between the check and the launch
        raise InputError(f"cannot serve on {host}:{port} ({exc}); stop what uses it or pass --port N") from None
    log.info("UI at %s", url)
    if block:
        try:
            app.block_thread()
        finally:
            app.close()
    return url


def check_port(host: str, port: int) -> None:
    """Refuse a port that is taken or not ours to bind, in one line, before anything slow happens."""
    import socket

    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InputError(f"port must be a number from 0 to 65535, got {port!r}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InputError(f"cannot serve on host {host!r} ({exc.strerror}); pass --host 127.0.0.1") from None
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no clash
        try:
            probe.bind(address)
        except OSError as exc:
            raise InputError(f"cannot serve on {host}:{port} ({exc.strerror or exc}); stop what uses it or pass "
                             f"--port N") from None


def serve(index_dir: str | Path | None = None, host: str = "127.0.0.1", port: int = 7860, auth: str | None = None,
          open_browser: bool = False, config: Config | None = None) -> None:
    """Load the index (the default one is built from seeds/ when missing) and serve the UI until stopped."""
    config = config or Config()
    check_port(host, port)  # before the index and the models load
    assistant = Assistant.load(index_dir, config)
    started = time.perf_counter()
    assistant.retrieve("warm up", k=1)  # load the model now, not on the first question
    log.info("model ready in %.1fs", time.perf_counter() - started)
    auth = auth or os.environ.get(AUTH_ENV) or None
    app = build_app(assistant)
    url = start(app, host=host, port=port, auth=auth, open_browser=open_browser, block=False)
    print(f"Research assistant UI: {url}  (Ctrl-C to stop)", flush=True)
    try:
        app.block_thread()
    finally:
        app.close()
