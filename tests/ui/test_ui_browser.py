"""The UI in a real headless Chromium (Debian's /usr/bin/chromium), driven by Playwright."""

from __future__ import annotations

import logging
import re
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from rag import Config

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
QUESTION = "Where are women from Myanmar trafficked to?"
ANSWER_TIMEOUT_MS = 30_000
#: Questions whose cited sentence lies below the first screenful of its passage box.
DEEP_QUOTE_QUESTIONS = ("How many people may be held in scam centres across Myanmar?",
                        "Why have casino employees in Shan State border areas reportedly been made to take drugs?")
#: How long the browser may take to scroll, re-render or lay out after an answer arrived.
SETTLE_TIMEOUT_MS = 5_000
#: Words of document text in the over-long question (about 500 tokens: over Config.max_question_tokens).
LONG_QUESTION_WORDS = 400
#: Lines a heading or a document title may take (a whole question as a heading took dozens).
MAX_TITLE_LINES = 3
NARROW_VIEWPORT = {"width": 400, "height": 900}
#: The document filter's share of a narrow viewport's width.
MIN_FILTER_SHARE = 0.9
#: Most the sources may start below the answer on a narrow screen: the question box lies between them.
MAX_SOURCES_GAP_PX = 200
#: Page pixels of tolerance for sub-pixel rounding in rectangle comparisons.
PX_TOLERANCE = 1

#: Where a card's highlighted quote is relative to its passage box, the card's own scroll container.
QUOTE_GEOMETRY_JS = """(card) => {
  const box = card.querySelector('.rag-passage'), mark = box.querySelector('mark');
  const b = box.getBoundingClientRect(), m = mark.getBoundingClientRect();
  const top = b.top + box.clientTop;  // the box's visible content starts inside its border
  return {markTop: m.top - top, markBottom: m.bottom - top, visibleHeight: box.clientHeight,
          scrollTop: box.scrollTop, contentBottom: m.bottom - top + box.scrollTop};
}"""

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed (make browser)"),
]
log = logging.getLogger(__name__)

PAYLOAD_DOC = """# Zebra census <img src=x onerror="window.__xss='title';alert('title')">

## Findings <script>window.__xss='heading';alert('heading')</script>

The zebra census in Narnia counted 42 zebras <script>window.__xss='script';alert('script')</script> near the lamp post.
The census report about zebras in Narnia had an image <img src=x onerror="window.__xss='img';alert('img')"> attached.
Read [the zebra census](javascript:window.__xss='link';alert('link')) for the zebra count in Narnia.
Templates ${alert('tpl')} and {{constructor.constructor('alert(1)')()}} stay text in the zebra census.
"""


@pytest.fixture(scope="module")
def server(ui_server_factory):
    return ui_server_factory(Config())


@pytest.fixture(scope="module")
def browser_context():
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="rag-chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000})
        yield context
        context.close()


@pytest.fixture
def page(browser_context, server):
    """A fresh tab on the UI, recording every request and every dialog."""
    page = browser_context.new_page()
    page.requests = []  # type: ignore[attr-defined]
    page.dialogs = []  # type: ignore[attr-defined]
    page.on("request", lambda request: page.requests.append(request.url))

    def on_dialog(dialog) -> None:
        page.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto(server.url)
    page.wait_for_selector("#question textarea")
    yield page
    page.close()


def ask(page, question: str, turn: int) -> float:
    """Type a question, press Ask, wait for answer ``turn``; returns the seconds it took."""
    page.fill("#question textarea", question)
    started = time.perf_counter()
    page.click("#ask")
    page.wait_for_selector(f"#chat #turn-{turn} .rag-bot", timeout=ANSWER_TIMEOUT_MS)
    return time.perf_counter() - started


def test_question_answer_sources_and_follow_up(page, server, tmp_path):
    from playwright.sync_api import expect

    expected = server.assistant.ask(QUESTION)
    assert not expected.abstained and expected.citations
    seconds = ask(page, QUESTION, 1)
    log.warning("end-to-end latency of one question in the UI: %.2fs", seconds)
    print(f"\nend-to-end latency of one question in the UI: {seconds:.2f}s")

    chat = page.locator("#chat")
    markers = chat.locator("#turn-1 a.rag-cite")
    expect(markers).to_have_count(len(expected.citations))
    assert markers.first.inner_text() == "[1]"
    assert expected.citations[0].quote.split()[0] in chat.inner_text()

    # The sources panel: title, section, the quote highlighted in its passage, the score; uncited ones collapsed.
    source = page.locator("#sources #src-1-1")
    expect(source).to_be_visible()
    assert expected.citations[0].title in source.inner_text()
    assert expected.citations[0].section in source.inner_text()
    highlighted = source.locator("mark").inner_text()
    assert " ".join(highlighted.split()) == " ".join(expected.citations[0].quote.split())
    assert len(source.locator(".rag-passage").inner_text()) > len(highlighted)  # shown inside its passage
    first = expected.citations[0]
    if first.answer_start >= 0:  # the reader's marked answer is shown in bold inside the highlighted quote
        assert source.locator("mark b.rag-answer").inner_text() == first.to_dict()["answer"]
    assert "retrieval score" in source.inner_text()
    uncited = page.locator("#sources details.rag-uncited")
    expect(uncited).to_have_count(1)
    assert uncited.get_attribute("open") is None

    # Clicking a marker brings its source into view; the first screenshot shows this state.
    markers.first.click()
    expect(source).to_be_in_viewport()
    page.wait_for_timeout(600)  # let the smooth scroll settle
    shot = tmp_path / "ui-answer.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    # A follow-up is resolved against the conversation, and the searched question is shown.
    ask(page, "and from Laos?", 2)
    expect(chat.locator("#turn-2 .rag-searched")).to_contain_text("Where are women from Laos trafficked to?")
    expect(page.locator("#sources #src-2-1")).to_contain_text("Sex trafficking in Laos")

    # Clicking a marker of the first answer opens its (now older, collapsed) sources and brings them into view.
    chat.locator("#turn-1 a.rag-cite").first.click()
    first_source = page.locator("#sources #src-1-1")
    expect(first_source).to_be_in_viewport()
    expect(first_source).to_have_class(re.compile(r"\brag-selected\b"))

    # Markdown export of the latest answer, ready to copy or download.
    page.locator("#export .label-wrap").click()
    expect(page.locator("#markdown textarea")).to_have_value(
        re.compile(r"^\*\*Q:\*\* Where are women from Laos trafficked to\?"), timeout=5000)
    assert "**Sources**" in page.locator("#markdown textarea").input_value()
    page.wait_for_timeout(600)  # let the smooth scroll settle
    page.screenshot(path=str(tmp_path / "ui-conversation.png"), full_page=True)

    # Nothing was loaded from anywhere but this server (no fonts, scripts or analytics from outside).
    hosts = {urlparse(url).hostname for url in page.requests if not url.startswith(("data:", "blob:"))}
    assert hosts == {"127.0.0.1"}, hosts
    assert not page.dialogs


def test_abstention_filter_and_about(page, server):
    from playwright.sync_api import expect

    ask(page, "What is the boiling point of mercury?", 1)
    expect(page.locator("#chat #turn-1 .rag-abstain")).to_have_text("The documents do not answer this question.")
    expect(page.locator("#sources .rag-abstain")).to_be_visible()
    expect(page.locator("#sources .rag-passage-card:visible")).to_have_count(3)  # closest ones open, rest collapsed

    # Filter to one document: every passage then comes from it.
    for title in ("Sex trafficking in Laos", "Sex trafficking in Myanmar",
                  "Compound Abuses: Human Trafficking, Forced Criminality, and Abuse in Myanmar's Border Areas"):
        page.locator("#doc-filter label", has_text=title).click()
    ask(page, "Where are women trafficked to?", 2)
    expect(page.locator("#chat #turn-2")).to_contain_text("searched 1 of")
    titles = page.locator("#sources .rag-turn-sources").first.locator(".rag-source-head b").all_text_contents()
    assert titles and set(titles) == {"Sex trafficking in Malaysia"}

    page.get_by_role("tab", name="About this index").click()
    about = page.locator("#about")
    expect(about).to_contain_text("all-MiniLM-L6-v2")
    expect(about).to_contain_text(f"{len(server.assistant.index.chunks)} chunks")


def quote_geometry(page, card: str) -> dict:
    """The highlighted quote of ``card`` (a selector) relative to the visible part of its passage box."""
    return page.locator(card).evaluate(QUOTE_GEOMETRY_JS)


def quote_in_view(g: dict) -> bool:
    return g["markTop"] >= -PX_TOLERANCE and g["markBottom"] <= g["visibleHeight"] + PX_TOLERANCE


def wait_for_quote_in_view(page, card: str) -> dict:
    """Wait (bounded) until the quote of ``card`` is inside its passage box; return where it is then."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    predicate = (f"(card) => {{ const g = ({QUOTE_GEOMETRY_JS})(document.querySelector(card)); "
                 f"return g.markTop >= -{PX_TOLERANCE} && g.markBottom <= g.visibleHeight + {PX_TOLERANCE}; }}")
    try:
        page.wait_for_function(predicate, arg=card, timeout=SETTLE_TIMEOUT_MS)
    except PlaywrightTimeout:
        pass  # the assertion below reports where the quote is
    return quote_geometry(page, card)


@pytest.mark.parametrize("question", DEEP_QUOTE_QUESTIONS)
def test_cited_quote_is_scrolled_into_view_inside_its_card(page, server, question):
    from playwright.sync_api import expect

    expected = server.assistant.ask(question)
    assert not expected.abstained and expected.citations
    page_scroll = page.evaluate("() => window.scrollY")
    ask(page, question, 1)
    deep = []
    for c in expected.citations:
        card = f"#sources #src-1-{c.number}"
        g = wait_for_quote_in_view(page, card)
        assert quote_in_view(g), (card, g)
        if g["contentBottom"] > g["visibleHeight"] + PX_TOLERANCE:
            deep.append(card)
    # The question must exercise the defect: a quote that the unscrolled box would not show.
    assert deep, f"every quote of {question!r} fits its box unscrolled; choose a question with a deeper quote"
    assert page.evaluate("() => window.scrollY") == page_scroll, "showing the quotes scrolled the page itself"

    # Scrolled away by hand, the quote comes back into view when its [n] marker is clicked.
    card = deep[0]
    number = card.rsplit("-", 1)[1]
    page.locator(card).locator(".rag-passage").evaluate("(box) => { box.scrollTop = 0; }")
    assert not quote_in_view(quote_geometry(page, card))
    page.locator(f"#chat #turn-1 a.rag-cite[data-target='src-1-{number}']").click()
    g = wait_for_quote_in_view(page, card)
    assert quote_in_view(g), (card, g)
    expect(page.locator(card).locator("mark")).to_be_in_viewport()


def test_no_documents_selected_is_one_calm_message(page, server):
    from playwright.sync_api import expect

    from ui.app import NO_DOCUMENTS_MESSAGE

    labels = page.locator("#doc-filter label")
    for i in range(labels.count()):
        labels.nth(i).click()
    expect(page.locator("#doc-filter input:checked")).to_have_count(0)
    typed = "Where are women trafficked to?"
    page.fill("#question textarea", typed)
    page.press("#question textarea", "Enter")
    notice = page.locator("#chat .rag-notice")
    expect(notice).to_have_text(NO_DOCUMENTS_MESSAGE, timeout=ANSWER_TIMEOUT_MS)
    expect(notice).to_be_visible()
    expect(page.locator("#question textarea")).to_have_value(typed)
    # Neither a toast nor Gradio's red "Error" badges over the chat, the sources or the question box.
    expect(page.locator(".toast-body")).to_have_count(0)
    expect(page.locator(".error")).to_have_count(0)
    expect(page.locator("#chat .rag-turn")).to_have_count(0)

    # With a document ticked again, the question still in the box is answered and the notice goes.
    page.locator("#doc-filter label", has_text="Sex trafficking in Malaysia").click()
    page.click("#ask")
    page.wait_for_selector("#chat #turn-1 .rag-bot", timeout=ANSWER_TIMEOUT_MS)
    expect(notice).to_have_count(0)
    expect(page.locator("#chat #turn-1")).to_contain_text("searched 1 of")


def test_long_question_is_marked_truncated_under_a_short_heading(page, server):
    from playwright.sync_api import expect

    from rag.tokens import truncate_tokens
    from ui.app import HEADING_QUESTION_CHARS

    config = server.assistant.config
    words = server.assistant.documents["compound-abuses-myanmar-border-areas-2023"].text.split()
    question = f"{DEEP_QUOTE_QUESTIONS[0]} {' '.join(words[:LONG_QUESTION_WORDS])}"
    _cut, tokens = truncate_tokens(question, config.max_question_tokens, config.encoding)
    assert tokens > config.max_question_tokens
    ask(page, question, 1)
    note = page.locator("#chat #turn-1 .rag-truncated")
    expect(note).to_contain_text(f"Only the first {config.max_question_tokens} tokens of your question were used")
    expect(note).to_contain_text(f"it has {tokens}")

    heading = page.locator("#sources h3").first
    text = heading.inner_text()
    assert text.startswith("Sources for \u201c") and text.endswith("\u2026\u201d"), text
    assert len(text) <= len("Sources for \u201c\u2026\u201d") + HEADING_QUESTION_CHARS, text
    assert question.startswith(text[len("Sources for \u201c"):-2])
    size = heading.evaluate("""(h) => { const cs = getComputedStyle(h);
        return {font: parseFloat(cs.fontSize), line: parseFloat(cs.lineHeight),
                height: h.getBoundingClientRect().height, body: parseFloat(getComputedStyle(document.body).fontSize)};
    }""")
    assert size["font"] <= size["body"], size  # body-sized, not a display heading
    assert size["height"] <= MAX_TITLE_LINES * size["line"] + PX_TOLERANCE, size


def test_passages_box_shows_the_number_used(page, server):
    from playwright.sync_api import expect

    assert len(server.assistant.ask(QUESTION, k=1).passages) == 1
    box = page.locator("#k-slider input[type=number]")
    box.click()
    box.press("Control+a")
    box.type("0")  # still focused: Gradio's slider alone clamps only when the box loses focus
    expect(box).to_have_value("1")
    ask(page, QUESTION, 1)
    meta = page.locator("#chat #turn-1 .rag-meta")
    expect(meta).to_contain_text(re.compile(r"\u00b7 1 passage \u00b7"))
    expect(box).to_have_value("1")
    expect(page.locator("#chat #turn-1 .rag-truncated")).to_have_count(0)  # a short question is not cut

    box.click()
    box.press("Control+a")
    box.type("99")
    expect(box).to_have_value("50")


#: Rectangles (page coordinates) of the parts the narrow layout arranges, and each title's line count.
NARROW_GEOMETRY_JS = """() => {
  const rect = (sel) => { const r = document.querySelector(sel).getBoundingClientRect();
    return {left: r.left, top: r.top + scrollY, width: r.width, bottom: r.bottom + scrollY}; };
  const lines = (el) => Math.round(el.getBoundingClientRect().height / parseFloat(getComputedStyle(el).lineHeight));
  const titles = [...document.querySelectorAll('#doc-filter label span')].map((span) => ({
    title: span.textContent, lines: lines(span)}));
  return {filter: rect('#doc-filter'), slider: rect('#k-slider'), answer: rect('#chat #turn-1 .rag-bot'),
          sources: rect('#sources'), titles, pageWidth: document.documentElement.scrollWidth};
}"""


def test_narrow_layout_stacks_filter_answer_and_sources(page, server, tmp_path):
    from playwright.sync_api import expect

    page.set_viewport_size(NARROW_VIEWPORT)
    ask(page, QUESTION, 1)
    expect(page.locator("#sources #src-1-1")).to_be_visible()
    shot = tmp_path / "ui-400px.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    g = page.evaluate(NARROW_GEOMETRY_JS)
    width = NARROW_VIEWPORT["width"]
    assert g["pageWidth"] <= width, g  # nothing sticks out sideways
    assert g["filter"]["width"] >= MIN_FILTER_SHARE * width, g["filter"]
    assert g["slider"]["top"] >= g["filter"]["bottom"] - PX_TOLERANCE, g  # under the filter, not squeezing it
    assert g["titles"] and all(t["lines"] <= MAX_TITLE_LINES for t in g["titles"]), g["titles"]
    gap = g["sources"]["top"] - g["answer"]["bottom"]
    assert 0 <= gap <= MAX_SOURCES_GAP_PX, g


def test_uploaded_payload_document_renders_inert(page, server):
    from playwright.sync_api import expect

    # Upload through the browser, with a hostile file name too.
    page.get_by_role("tab", name="Add documents").click()
    page.locator("#upload-files input[type=file]").set_input_files(
        files=[{"name": "<img src=x onerror=alert('name')>.md", "mimeType": "text/markdown",
                "buffer": PAYLOAD_DOC.encode()}])
    expect(page.locator("#upload-files")).to_contain_text("onerror")  # uploaded to the server
    page.click("#upload-button")
    status = page.locator("#upload-status")
    expect(status).to_contain_text("Added", timeout=ANSWER_TIMEOUT_MS)
    # (Gradio itself drops the angle brackets from uploaded file names.)
    expect(status).to_contain_text("from \u201cimg src=x onerror=alert('name').md\u201d")
    expect(status).to_contain_text("Zebra census <img src=x")
    assert (server.uploads / "img-src-x-onerror-alert-name.md").is_file()

    page.get_by_role("tab", name="Ask").click()
    question = "How many zebras did the census count in Narnia? <img src=x onerror=\"alert('question')\">"
    ask(page, question, 1)
    chat, sources = page.locator("#chat"), page.locator("#sources")
    expect(chat.locator("#turn-1 a.rag-cite").first).to_be_visible()
    expect(chat.locator(".rag-user")).to_contain_text("<img src=x onerror=\"alert('question')\">")
    sources.locator("details.rag-uncited summary").first.click()
    text = sources.inner_text()
    assert "<script>window.__xss='script';alert('script')</script>" in text
    assert "[the zebra census](javascript:window.__xss='link';alert('link'))" in text
    assert "${alert('tpl')}" in text and "{{constructor.constructor('alert(1)')()}}" in text
    assert "Zebra census <img" in page.locator("#doc-filter").inner_text()
    page.wait_for_timeout(500)

    injected = page.evaluate("""() => ({
        xss: window.__xss === undefined ? null : String(window.__xss),
        images: document.querySelectorAll('img[src="x"]').length,
        scripts: document.querySelectorAll('#chat script, #sources script, #upload-status script, #doc-filter script').length,
        jsLinks: document.querySelectorAll('a[href^="javascript" i]').length,
    })""")
    assert injected == {"xss": None, "images": 0, "scripts": 0, "jsLinks": 0}
    assert not page.dialogs

    # A page opened later lists the new document (as text) in its filter and its About view.
    fresh = page.context.new_page()
    fresh.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    fresh.goto(server.url)
    expect(fresh.locator("#doc-filter")).to_contain_text("Zebra census <img src=x", timeout=10_000)
    fresh.get_by_role("tab", name="About this index").click()
    expect(fresh.locator("#about")).to_contain_text("img-src-x-onerror-alert-name")
    assert fresh.evaluate("() => document.querySelectorAll('img[src=\"x\"]').length") == 0
    fresh.close()
    assert not page.dialogs


# ---------------------------------------------------------------------- saved conversations, removing documents
SECOND_QUESTION = "Where are women from Laos trafficked to?"


def open_page(browser_context, url: str):
    page = browser_context.new_page()
    page.dialogs = []  # type: ignore[attr-defined]
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(url)
    page.wait_for_selector("#question textarea")
    return page


def open_conversations(page):
    panel = page.locator("#conversations-panel")
    panel.locator("button").first.click()
    page.wait_for_selector("#conversations", state="visible")
    return panel


def test_conversations_survive_a_restart_and_can_be_deleted(browser_context, ui_server_factory):
    from playwright.sync_api import expect

    from rag import ConversationStore

    first = ui_server_factory(Config())
    page = open_page(browser_context, first.url)
    ask(page, QUESTION, 1)
    ask(page, SECOND_QUESTION, 2)
    saved = first.history.list()
    assert [c.turns for c in saved] == [2] and saved[0].title == QUESTION
    open_conversations(page)
    expect(page.locator("#conversations label")).to_have_count(1)
    page.close()

    # A restart: a new app over the same index and the same conversations file.
    restarted = ui_server_factory(Config(), index_dir=first.index_dir, history_path=first.history.path)
    assert restarted.assistant is not first.assistant
    page = open_page(browser_context, restarted.url)
    expect(page.locator("#chat #turn-1")).to_have_count(0)
    open_conversations(page)
    entry = page.locator("#conversations label")
    expect(entry).to_have_count(1)
    expect(entry).to_contain_text("2 turns")
    expect(entry).to_contain_text(QUESTION[:40])
    entry.click()
    chat = page.locator("#chat")
    expect(chat.locator("#turn-1 .rag-user")).to_contain_text(QUESTION, timeout=SETTLE_TIMEOUT_MS)
    expect(chat.locator("#turn-2 .rag-user")).to_contain_text(SECOND_QUESTION)
    expect(chat.locator("#turn-1 a.rag-cite").first).to_be_visible()
    expect(page.locator("#sources .rag-source").first).to_be_visible()
    expect(page.locator("#conversation-status")).to_contain_text("2 turns")

    # A follow-up continues the restored conversation.
    ask(page, "and in Myanmar?", 3)
    expect(entry).to_contain_text("3 turns", timeout=SETTLE_TIMEOUT_MS)
    assert [c.turns for c in ConversationStore(first.history.path).list()] == [3]

    # Deleting it empties the list, the chat (it was the one shown) and the file.
    page.click("#conversation-delete")
    expect(page.locator("#conversations label")).to_have_count(0, timeout=SETTLE_TIMEOUT_MS)
    expect(page.locator("#conversation-status")).to_contain_text("Conversation deleted.")
    expect(chat.locator("#turn-1")).to_have_count(0)
    assert ConversationStore(first.history.path).list() == []
    # "New conversation" then starts afresh: the next question is a new conversation of one turn.
    page.click("#clear")
    expect(page.locator("#conversation-status")).not_to_contain_text("deleted")  # cleared before asking
    ask(page, QUESTION, 1)
    expect(page.locator("#conversations label")).to_have_count(1, timeout=SETTLE_TIMEOUT_MS)
    assert [c.turns for c in restarted.history.list()] == [1]
    assert not page.dialogs
    page.close()


def choose_document(page, title: str) -> None:
    box = page.locator("#remove-doc input")
    box.click()
    page.get_by_role("option", name=title, exact=True).click()
    expect_value = page.locator("#remove-doc input")
    from playwright.sync_api import expect
    expect(expect_value).to_have_value(title)


def test_removing_a_document_from_the_ui(browser_context, ui_server_factory, monkeypatch):
    from playwright.sync_api import expect

    from rag import HistoryError
    from rag.index import Index

    server = ui_server_factory(Config())

    # A conversations file that cannot be written: the question is answered all the same, with one calm line.
    def broken(*args, **kwargs):
        raise HistoryError("the conversations file x.sqlite3 is not usable now (disk I/O error)")

    monkeypatch.setattr(server.history, "add_turn", broken)
    page = open_page(browser_context, server.url)
    ask(page, QUESTION, 1)
    expect(page.locator("#chat #turn-1 a.rag-cite").first).to_be_visible()
    expect(page.locator("#chat .rag-notice")).to_contain_text("This answer was not saved: The conversations file")
    expect(page.locator(".toast-body")).to_have_count(0)
    monkeypatch.undo()
    page.close()

    title = "Sex trafficking in Laos"
    doc_id = next(d.doc_id for d in server.assistant.documents.values() if d.title == title)
    page = open_page(browser_context, server.url)
    expect(page.locator("#doc-filter label", has_text=title)).to_have_count(1)
    page.get_by_role("tab", name="About this index").click()
    choose_document(page, title)
    page.click("#remove-button")
    status = page.locator("#remove-status")
    expect(status).to_contain_text(f"Removed \u201c{title}\u201d", timeout=ANSWER_TIMEOUT_MS)
    expect(page.locator("#about")).not_to_contain_text(doc_id)
    assert doc_id not in Index.load(server.index_dir).documents
    assert doc_id not in server.assistant.documents
    page.get_by_role("tab", name="Ask").click()
    expect(page.locator("#doc-filter label", has_text=title)).to_have_count(0)
    expect(page.locator("#doc-filter label")).to_have_count(len(server.assistant.documents))

    # The last document is refused with the library's message, calmly (no error toast).
    server.assistant.remove(list(server.assistant.documents)[:-1])
    page.reload()
    page.wait_for_selector("#question textarea")
    page.get_by_role("tab", name="About this index").click()
    last = next(iter(server.assistant.documents.values()))
    choose_document(page, last.title)
    page.click("#remove-button")
    expect(status).to_contain_text("Not removed:", timeout=ANSWER_TIMEOUT_MS)
    expect(status).to_contain_text("is the only document")
    assert list(Index.load(server.index_dir).documents) == [last.doc_id]
    expect(page.locator(".toast-body")).to_have_count(0)
    assert not page.dialogs
    page.close()
