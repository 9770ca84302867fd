"""The web page at `/`, driven in headless Chromium (Debian's) against a real `rag serve`.

The server's index holds the bundled corpus plus one hostile document: markup in its title and
text, and emoji (outside the BMP) before the passage it is cited for, so that highlighting is
checked where code-point and UTF-16 offsets differ; and a two-page PDF whose citations show
their page. Without Chromium these tests skip on a
developer's machine and fail in CI (CI=true).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from index import Document
from rag.config import PROJECT_ROOT, Settings
from tests.conftest import CHIRCHIK, UZBEK_DOC
from tests.making import QUARRY_QUESTION, quarry_pdf
from tests.servers import free_port

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = PROJECT_ROOT / "artifacts" / "web"

OFF_CORPUS = "What is the boiling point of water in degrees Fahrenheit?"
HOSTILE = Document(
    id="zz-hostile-markup",
    title='Quarry notes <img src=x onerror="window.__y=1"> 🦄',
    date="2024-05-01",
    text=(
        "Quarry notes 🦄 from the field\n\n"
        "This note quotes markup: <script>window.__x=1</script> and "
        '<img src=x onerror="window.__y=1"> appear here as plain text.\n\n'
        "The Zarafshan 🪨 quarry near Navoi produces obsidian and lapis lazuli for 💎 jewellers "
        "in Samarkand."
    ),
)
HOSTILE_QUESTION = "What does the Zarafshan quarry near Navoi produce?"


def quarry_document() -> Document:
    """The two-page PDF of tests/making.py, read as `rag index` reads it."""
    from rag.ingest.documents import parse_pdf

    return parse_pdf(quarry_pdf(), doc_id="quarry", source="quarry.pdf")


# the browser and the server


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must run the browser tests (the setup installs chromium)")
    pytest.skip(reason)


def _chromium_path() -> str:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    _unavailable("Debian's chromium is not installed (apt-get install chromium)")
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def browser() -> Iterator:
    executable = _chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable('playwright is not installed (pip install -e ".[dev]")')
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, embedder, bundled_settings) -> Iterator[str]:
    """`rag serve` on a copy of the bundled corpus's index, plus the hostile document.

    The server starts on the copy at once; the document is added while it loads its model,
    and it follows the new index generation like any other write."""
    from rag.engine import Engine
    from rag.writer import Writer

    tmp = tmp_path_factory.mktemp("web")
    settings = Settings(index_path=tmp / "index")
    shutil.copytree(bundled_settings.index_path, settings.index_path)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    environ.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    port = free_port()
    command = [sys.executable, "-m", "rag.cli", "serve", "--index", str(settings.index_path)]
    log = tmp / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            cwd=PROJECT_ROOT,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        engine = Engine.load(settings, embedder=embedder)
        Writer(engine).upsert([HOSTILE, quarry_document()])  # embeds only their own chunks
        expected = engine.index.manifest.n_documents
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"rag serve exited with {process.returncode}:\n{log.read_text()}")
            try:
                r = httpx.get(url + "/ready", timeout=2)
                if r.status_code == 200 and r.json()["documents"] == expected:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"rag serve not ready after 120 s:\n{log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture()
def page(browser, server):
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server + "/")
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def api_ask(server: str, question: str) -> dict:
    r = httpx.post(server + "/ask", json={"question": question}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def ask_on_page(page, question: str) -> None:
    page.fill("#question", question)
    page.press("#question", "Enter")


# the tests


def test_the_page_is_served_with_a_strict_content_security_policy(server):
    r = httpx.get(server + "/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'self'" in csp
    for asset in ("app.js", "app.css"):
        assert httpx.get(f"{server}/static/{asset}").status_code == 200
    assert httpx.get(server + "/static/nope.js").status_code == 404


def test_a_citation_opens_its_document_with_the_exact_quote_highlighted(page, server):
    expected = api_ask(server, CHIRCHIK)
    citation = expected["citations"][0]

    ask_on_page(page, CHIRCHIK)
    answer = page.locator("#answer .answer-text")
    answer.wait_for()
    assert "molybdenum" in answer.text_content() and "tungsten" in answer.text_content()
    assert "ms" in page.text_content("#answer .timing")  # latency shown

    page.click("#answer .cite[data-citation='1']")
    mark = page.locator("#reader mark.cited")
    mark.wait_for()
    assert mark.text_content() == citation["quote"]
    assert page.text_content("#reader-title") == citation["title"]
    assert mark.is_visible() and _in_viewport(page, "#reader mark.cited")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "answer.png"))

    # every retrieved chunk, with its scores and the question's terms marked
    passages = page.locator("#passage-list > li")
    assert passages.count() == len(expected["passages"])
    first = passages.first
    assert expected["passages"][0]["chunk_id"] in first.text_content()
    assert {"fused", "dense", "BM25"} <= set(first.locator(".chip-label").all_text_contents())
    assert "Chirchik" in first.locator("mark.term").all_text_contents()

    # the same, by keyboard: the source button under the answer
    page.locator("#tab-documents").click()
    page.locator("#tab-ask").click()
    page.focus("#answer .source[data-citation='1']")
    page.keyboard.press("Enter")
    page.wait_for_function("document.activeElement.id === 'reader-title'")
    assert page.text_content("#reader mark.cited") == citation["quote"]


def test_a_short_answer_its_sentence_and_each_citation_s_support_are_shown(page, server):
    question = "How many memorandums of understanding did Yoon sign in Kazakhstan?"
    expected = api_ask(server, question)
    assert expected["short_answer"] and expected["answer_mode"] == "reader"
    ask_on_page(page, question)
    short = page.locator("#answer .short-answer")
    short.wait_for()
    assert short.text_content() == expected["short_answer"]
    assert expected["short_answer"] in page.text_content("#answer .answer-text")
    # the cited sentence, with the answer marked in it
    quote = page.locator("#answer .quote")
    assert quote.text_content() == expected["citations"][0]["quote"]
    assert quote.locator("mark.answer-span").text_content() == expected["answer"]
    support = page.locator("#answer .citations .support")
    assert support.count() == len(expected["citations"])
    assert support.first.text_content().startswith("supports the answer")
    assert "null" not in page.text_content("#answer")


def test_an_off_corpus_question_shows_that_the_corpus_does_not_answer(page, server):
    assert not api_ask(server, OFF_CORPUS)["answerable"]
    ask_on_page(page, OFF_CORPUS)
    heading = page.locator("#answer.unanswerable h2")
    heading.wait_for()
    assert heading.text_content() == "The corpus does not answer this"
    assert page.locator("#answer .cite").count() == 0


def test_markup_in_documents_is_shown_as_text_and_never_runs(page, server):
    expected = api_ask(server, HOSTILE_QUESTION)
    hostile = [c for c in expected["citations"] if c["doc_id"] == HOSTILE.id]
    assert hostile, expected["citations"]
    assert "💎" in hostile[0]["quote"]  # code points != UTF-16 units before and inside it

    ask_on_page(page, HOSTILE_QUESTION)
    page.locator("#answer .answer-text").wait_for()
    page.click(f"#answer .cite[data-citation='{hostile[0]['id']}']")
    page.locator("#reader mark.cited").wait_for()
    assert page.text_content("#reader mark.cited") == hostile[0]["quote"]
    assert page.text_content("#reader-title") == HOSTILE.title

    # the documents view: filter by title, open it
    page.click("#tab-documents")
    page.fill("#doc-filter", "quarry notes")
    docs = page.locator("#doc-list .doc")
    docs.first.wait_for()
    assert docs.count() == 1
    docs.first.click()
    page.wait_for_function("document.querySelector('#reader .doc-text:not(:has(mark))')")
    assert page.text_content("#reader .doc-text") == HOSTILE.text
    assert HOSTILE.title in page.text_content("#doc-list")

    assert page.locator("body script, body img, #reader *:not(h2,p,div,span,mark,a)").count() == 0
    page.wait_for_timeout(300)  # a broken image's onerror would have fired by now
    assert page.evaluate("[typeof window.__x, typeof window.__y]") == ["undefined", "undefined"]


def test_a_pdf_citation_shows_its_page_and_opens_that_page_highlighted(page, server):
    expected = api_ask(server, QUARRY_QUESTION)
    citation = expected["citations"][0]
    assert citation["doc_id"] == "quarry" and citation["page"] == 2
    doc = httpx.get(server + "/documents/quarry").json()
    page_2 = doc["text"][doc["pages"][1] :]

    ask_on_page(page, QUARRY_QUESTION)
    source = page.locator("#answer .source[data-citation='1'] .source-meta")
    source.wait_for()
    assert source.text_content().startswith("p. 2 · quarry:")
    page.click("#answer .cite[data-citation='1']")
    mark = page.locator("#reader mark.cited")
    mark.wait_for()
    assert mark.text_content() == citation["quote"]
    assert page.text_content("#reader .reader-page") == "Page 2 of 2"
    assert "p. 2" in page.text_content("#reader .reader-note")
    # the source pane holds that page's text only, the quote highlighted in it
    assert page.text_content("#reader .doc-text") == page_2
    assert "market square" not in page.text_content("#reader .doc-text")  # page 1's


def test_the_documents_view_lists_and_filters_by_title(page, server):
    page.click("#tab-documents")
    docs = page.locator("#doc-list .doc")
    docs.first.wait_for()
    assert docs.count() == httpx.get(server + "/documents").json()["total"] == 7
    page.fill("#doc-filter", "supply chain ties")
    assert docs.count() == 1
    docs.first.click()
    page.locator("#reader .doc-text").wait_for()
    detail = httpx.get(f"{server}/documents/{UZBEK_DOC}").json()
    assert page.text_content("#reader-title") == detail["title"]
    assert page.text_content("#reader .doc-text") == detail["text"]
    page.fill("#doc-filter", "no title has this")
    assert page.text_content("#doc-list") == "No title matches the filter."


def test_an_api_error_is_shown_as_a_message(page, server):
    long_question = "x" * 2001
    r = httpx.post(server + "/ask", json={"question": long_question})
    assert r.status_code == 413
    ask_on_page(page, long_question)
    error = page.locator("#ask-error")
    error.wait_for(state="visible")
    assert r.json()["error"]["message"] in error.text_content()
    assert "question_too_long" in error.text_content()
    assert page.locator("#answer").is_hidden()


def test_the_page_fits_a_narrow_screen(page, server):
    page.set_viewport_size({"width": 375, "height": 800})
    ask_on_page(page, CHIRCHIK)
    page.locator("#answer .answer-text").wait_for()
    page.click("#answer .cite[data-citation='1']")
    page.locator("#reader mark.cited").wait_for()
    assert _in_viewport(page, "#reader mark.cited")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than a 375px screen"


def _in_viewport(page, selector: str) -> bool:
    return page.evaluate(
        """(selector) => {
            const r = document.querySelector(selector).getBoundingClientRect();
            return r.bottom > 0 && r.top < window.innerHeight;
        }""",
        selector,
    )


def _outside_requests(context) -> list[str]:
    """Abort every request that leaves this machine, and list them."""
    outside: list[str] = []

    def route(r):
        host = r.request.url.split("/")[2].split(":")[0] if "//" in r.request.url else ""
        if host in ("127.0.0.1", "localhost", ""):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    return outside


def test_the_api_docs_render_offline(browser, server):
    """/docs: Swagger UI from the package, listing the operations, with nothing fetched from
    elsewhere (and the page at / likewise)."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    outside = _outside_requests(context)
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(server + "/docs")
        operation = page.locator(".opblock-summary-path", has_text="/ask").first
        operation.wait_for()
        paths = page.locator(".opblock-summary-path").all_text_contents()
        assert {"/ask", "/search", "/documents"} <= {p.strip() for p in paths}
        page.goto(server + "/")
        page.locator("#question").wait_for()
        assert not outside, f"requests left the machine: {outside}"
    finally:
        context.close()


def test_after_an_abstention_the_source_pane_shows_no_earlier_citation(page, server):
    ask_on_page(page, CHIRCHIK)
    page.locator("#answer .answer-text").wait_for()
    page.click("#answer .cite[data-citation='1']")
    page.locator("#reader mark.cited").wait_for()
    ask_on_page(page, OFF_CORPUS)
    page.locator("#answer.unanswerable h2").wait_for()
    assert page.locator("#reader mark").count() == 0
    assert page.locator("#reader-empty").is_visible()
    assert "Why:" in page.text_content("#answer")


def test_the_examples_come_from_the_loaded_index(page, server):
    expected = httpx.get(server + "/ready").json()["examples"]
    assert expected  # the server's index holds the bundled corpus
    buttons = page.locator("#examples .example")
    buttons.first.wait_for()
    assert buttons.all_text_contents() == expected
    buttons.first.click()
    page.locator("#answer").wait_for()
    assert page.input_value("#question") == expected[0]


def test_on_a_phone_the_source_comes_right_after_the_answer(page, server):
    page.set_viewport_size({"width": 390, "height": 844})
    ask_on_page(page, CHIRCHIK)
    page.locator("#answer .answer-text").wait_for()
    tops = page.evaluate(
        """() => ["#answer", "#reader", "#passages"].map(
            (s) => document.querySelector(s).getBoundingClientRect().top + window.scrollY)"""
    )
    answer, reader, passages = tops
    assert answer < reader < passages, tops
    assert reader - answer < 1200, tops  # not below every passage (was ~4,200 px down)
