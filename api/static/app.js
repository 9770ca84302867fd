// The rag-cited page: ask, read the answer, open a citation in its article, browse documents.
//
// Everything that comes from the API (answers, titles, document text) is inserted as text:
// DOM nodes built with el() / textContent, never innerHTML. The server's offsets count Unicode
// code points (Python); JS strings count UTF-16 units, so spans are converted before slicing.
"use strict";

(() => {
  // ---- DOM helpers ------------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  /** An element with attributes and children (strings become text nodes). */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) {
    node.replaceChildren();
    return node;
  }

  // ---- Offsets: code points (Python) to UTF-16 units (JS) ---------------------------------

  /** The UTF-16 index of code point `cp` in `text` (clamped to the text's length). */
  function utf16Index(text, cp) {
    let units = 0;
    let points = 0;
    while (points < cp && units < text.length) {
      const code = text.charCodeAt(units);
      const pair = code >= 0xd800 && code <= 0xdbff && units + 1 < text.length;
      units += pair ? 2 : 1;
      points += 1;
    }
    return units;
  }

  /** text[start:end] as Python slices it: start and end count code points. */
  function spanOf(text, start, end) {
    const from = utf16Index(text, start);
    const to = from + utf16Index(text.slice(from), end - start);
    return [from, to];
  }

  // ---- The API -----------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, options = {}) {
    let response;
    try {
      response = await fetch(path, {
        ...options,
        headers: { Accept: "application/json", ...(options.headers || {}) },
      });
    } catch (err) {
      throw new ApiError(0, "network_error", "The server could not be reached. Is `rag serve` running?");
    }
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    if (!response.ok) {
      const error = body && body.error ? body.error : {};
      throw new ApiError(
        response.status,
        error.code || "http_" + response.status,
        error.message || response.statusText || "request failed",
      );
    }
    if (body === null) throw new ApiError(response.status, "bad_response", "The server sent no JSON.");
    return body;
  }

  const postJson = (path, data) =>
    api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data) });

  function showError(box, err) {
    clear(box);
    const status = err.status ? `${err.status} ` : "";
    append(box, [
      el("strong", {}, "Something went wrong"),
      el("span", { class: "error-code" }, `${status}${err.code || "error"}`),
      el("p", {}, err.message || String(err)),
    ]);
    box.hidden = false;
  }

  // ---- Formatting --------------------------------------------------------------------------

  const fmt = (x, digits = 3) => (typeof x === "number" ? x.toFixed(digits) : "—");
  const ms = (x) => (x >= 100 ? Math.round(x) : x.toFixed(1)) + " ms";

  function formatDate(iso) {
    if (!iso) return null;
    const d = new Date(iso + "T00:00:00Z");
    if (Number.isNaN(d.getTime())) return iso;
    return d.toLocaleDateString("en", { year: "numeric", month: "long", day: "numeric", timeZone: "UTC" });
  }

  const titleOf = (item) => (item.title && item.title.trim() ? item.title : item.doc_id || item.id);

  // ---- Question terms, marked in passages ----------------------------------------------------

  const STOP_WORDS = new Set(
    ("a an and are as at be by did do does for from had has have how i in is it its of on or " +
      "that the their there these this to was were what when where which who whom why will " +
      "with you your about into than then they them can could would should not no").split(" "),
  );
  const WORD = /[\p{L}\p{N}]+/gu;

  /** A rough English stem, enough to match "minerals" with "mineral", "targets" with "target". */
  function stem(word) {
    let w = word.toLowerCase();
    for (const suffix of ["ingly", "edly", "ing", "ies", "ed", "es", "s", "ly"]) {
      if (w.length - suffix.length >= 3 && w.endsWith(suffix)) {
        w = w.slice(0, -suffix.length) + (suffix === "ies" ? "y" : "");
        break;
      }
    }
    return w;
  }

  function questionTerms(question) {
    const terms = new Set();
    for (const [word] of question.matchAll(WORD)) {
      if (!STOP_WORDS.has(word.toLowerCase()) && word.length > 1) terms.add(stem(word));
    }
    return terms;
  }

  /** `text` as nodes, with the words whose stems are in `terms` wrapped in <mark class="term">. */
  function markTerms(text, terms) {
    const nodes = [];
    let last = 0;
    for (const match of text.matchAll(WORD)) {
      if (!terms.has(stem(match[0]))) continue;
      if (match.index > last) nodes.push(text.slice(last, match.index));
      nodes.push(el("mark", { class: "term" }, match[0]));
      last = match.index + match[0].length;
    }
    if (last < text.length) nodes.push(text.slice(last));
    return nodes;
  }

  // ---- Views -------------------------------------------------------------------------------

  const views = { ask: $("view-ask"), documents: $("view-documents") };

  function showView(name, { focus = false } = {}) {
    if (!views[name]) name = "ask";
    for (const [key, view] of Object.entries(views)) view.hidden = key !== name;
    for (const tab of document.querySelectorAll(".tab")) {
      if (tab.dataset.view === name) tab.setAttribute("aria-current", "page");
      else tab.removeAttribute("aria-current");
    }
    if (name === "documents") loadDocuments();
    if (focus) (name === "ask" ? $("question") : $("doc-filter")).focus();
  }

  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => {
      const name = tab.dataset.view;
      if (location.hash !== "#" + name) history.pushState(null, "", "#" + name);
      showView(name, { focus: true });
    });
  }
  window.addEventListener("popstate", () => showView(location.hash.slice(1)));

  // ---- Status: what the server has loaded ---------------------------------------------------

  async function loadStatus() {
    const status = $("status");
    try {
      const r = await api("ready");
      status.textContent = `${r.documents} documents · ${r.chunks} chunks · ${r.retrieval_mode}`;
      renderExamples(r.examples || []);
      status.classList.remove("bad");
    } catch (err) {
      status.textContent = err.status === 503 ? "index not loaded" : "server unavailable";
      status.title = err.message;
      status.classList.add("bad");
    }
  }

  // ---- Asking ------------------------------------------------------------------------------

  let askToken = 0;

  async function ask(question) {
    const token = ++askToken;
    const button = $("ask-button");
    const errorBox = $("ask-error");
    errorBox.hidden = true;
    button.disabled = true;
    button.textContent = "Asking…";
    $("answer").setAttribute("aria-busy", "true");
    const started = performance.now();
    try {
      const response = await postJson("ask", { question });
      if (token !== askToken) return;
      documentCache.clear();
      resetReader();
      renderAnswer(response, performance.now() - started);
      renderPassages(response);
    } catch (err) {
      if (token !== askToken) return;
      $("answer").hidden = true;
      $("passages").hidden = true;
      showError(errorBox, err);
    } finally {
      if (token === askToken) {
        button.disabled = false;
        button.textContent = "Ask";
        $("answer").removeAttribute("aria-busy");
      }
    }
  }

  $("ask-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const question = $("question").value.trim();
    if (!question) {
      showError($("ask-error"), new ApiError(0, "empty_question", "Type a question first."));
      $("question").focus();
      return;
    }
    ask(question);
  });

  /** "Try:" questions for the loaded index (none for a corpus that has no examples set). */
  function renderExamples(questions) {
    const box = clear($("examples"));
    box.hidden = !questions.length;
    if (!questions.length) return;
    box.append(el("span", {}, "Try:"));
    for (const q of questions) {
      box.append(el("button", {
        type: "button",
        class: "example",
        onclick: () => { $("question").value = q; ask(q); },
      }, q));
    }
  }

  /** The source pane back to its empty state: it never shows an earlier question's source. */
  function resetReader() {
    readToken++;
    clear($("reader")).append(
      el("div", { class: "reader-empty", id: "reader-empty" },
        el("h2", { id: "reader-title", tabindex: "-1" }, "Source"),
        el("p", {}, "Click a citation or a retrieved passage to read it in its article, highlighted.")));
  }

  function timingLine(response, roundTrip) {
    const t = response.timings_ms || {};
    const parts = [];
    if (typeof t.total === "number") parts.push(`answered in ${ms(t.total)}`);
    for (const key of ["embed", "search", "read", "compose"]) {
      if (typeof t[key] === "number") parts.push(`${key} ${ms(t[key])}`);
    }
    parts.push(`round trip ${ms(roundTrip)}`);
    return parts.join(" · ");
  }

  function citationButton(citation, label) {
    return el(
      "button",
      {
        type: "button",
        class: "cite",
        "aria-label": `Citation ${citation.id}: open “${titleOf(citation)}” at the quoted passage`,
        dataset: { citation: String(citation.id) },
        onclick: () => openCitation(citation),
      },
      label,
    );
  }

  /** The answer with a marker after each cited sentence (the answer is its quotes, joined). */
  function answerNodes(answer, citations) {
    const nodes = [];
    let rest = answer;
    for (const citation of citations) {
      const at = rest.indexOf(citation.quote);
      if (at < 0) return [answer, " ", ...citations.map((c) => citationButton(c, String(c.id)))];
      nodes.push(rest.slice(0, at + citation.quote.length), citationButton(citation, String(citation.id)));
      rest = rest.slice(at + citation.quote.length);
    }
    if (rest) nodes.push(rest);
    return nodes;
  }

  function renderAnswer(response, roundTrip) {
    const box = clear($("answer"));
    box.classList.toggle("unanswerable", !response.answerable);
    const reading = response.answer_mode === "reader";
    const confidence = el("span", {
      class: "pill",
      title: reading
        ? "The reader's probability that the passages it read answer the question"
        : "Evidence: the mean of the best passage's similarity to the question and the share of the question the answer sentence covers",
    }, `confidence ${fmt(response.confidence, 2)}`);
    box.append(el("p", { class: "asked" }, response.question));
    if (!response.answerable) {
      box.append(
        el("div", { class: "answer-head" }, el("h2", { id: "answer-title" }, "The corpus does not answer this"), confidence),
        el("p", { class: "abstain" },
          "These documents do not answer it. The nearest passages are listed below."),
        response.reason ? el("p", { class: "reason" }, `Why: ${response.reason}.`) : null,
        el("p", { class: "timing" }, timingLine(response, roundTrip)),
      );
      box.hidden = false;
      return;
    }
    if (reading) {
      append(box, [
        el("div", { class: "answer-head" }, el("h2", { id: "answer-title" }, "Answer"), confidence),
        el("p", { class: "answer-text" },
          el("span", { class: "short-answer", title: "The span of the cited sentence that answers the question" },
            response.answer || ""),
          " ", ...response.citations.map((c) => citationButton(c, String(c.id)))),
        ...response.citations.map((c) => el("p", { class: "quote" }, quoteNodes(c))),
        el("p", { class: "timing" }, timingLine(response, roundTrip)),
      ]);
    } else {
      append(box, [
        el("div", { class: "answer-head" }, el("h2", { id: "answer-title" }, "Answer"), confidence),
        response.short_answer
          ? el("p", { class: "short-answer", title: "The span of the cited sentence that answers the question" },
            response.short_answer)
          : null,
        el("p", { class: "answer-text" }, answerNodes(response.answer || "", response.citations)),
        el("p", { class: "timing" }, timingLine(response, roundTrip)),
      ]);
    }
    if (response.citations.length) {
      box.append(
        el("h3", {}, "Sources"),
        el("ol", { class: "citations" },
          response.citations.map((c) =>
            el("li", {},
              el("button", {
                type: "button",
                class: "source",
                dataset: { citation: String(c.id) },
                onclick: () => openCitation(c),
              },
              el("span", { class: "num" }, String(c.id)),
              el("span", { class: "source-body" },
                el("span", { class: "source-title" }, titleOf(c)),
                el("span", { class: "source-meta" },
                  [pageLabel(c.page), c.chunk_id, `chars ${c.start}–${c.end}`, `score ${fmt(c.score, 2)}`]
                    .filter(Boolean).join(" · ")),
                supportNote(c),
              )),
              corroboration(c),
            ),
          ),
        ),
      );
    }
    box.hidden = false;
  }

  /** The cited sentence with the answer span marked (offsets are the document's). */
  function quoteNodes(c) {
    if (c.answer_start === null || c.answer_start === undefined) return [c.quote];
    const [from, to] = spanOf(c.quote, c.answer_start - c.start, c.answer_end - c.start);
    return [c.quote.slice(0, from), el("mark", { class: "answer-span" }, c.quote.slice(from, to)), c.quote.slice(to)];
  }

  /** Whether the cited passage supports the sentence citing it (null when not checked). */
  function supportNote(c) {
    if (c.supported === null || c.supported === undefined) return null;
    return el("span", {
      class: c.supported ? "support" : "support unsupported",
      title: c.answer_start !== null && c.answer_start !== undefined
        ? "The reader's probability that this passage answers the question"
        : "Embedding similarity and word overlap of the answer sentence and this quote",
    }, `${c.supported ? "supports the answer" : "may not support the answer"} (${fmt(c.support, 2)})`);
  }

  /** Other articles whose sentence says the same as the cited one. */
  function corroboration(c) {
    if (!c.corroborated_by || !c.corroborated_by.length) return null;
    return el("p", { class: "corroborated" }, "Also reported by ",
      c.corroborated_by.map((other, i) => [
        i ? ", " : "",
        el("button", {
          type: "button",
          class: "link",
          onclick: () => openDocument(other.doc_id, {
            start: other.start,
            end: other.end,
            label: `Corroborates citation ${c.id}`,
            kind: "citation",
            detail: `${other.chunk_id} · chars ${other.start}–${other.end}`,
          }),
        }, titleOf(other)),
      ]).flat());
  }

  function scoreChip(label, value, rank, title) {
    if (value === null || value === undefined) return null;
    return el("span", { class: "chip", title },
      el("span", { class: "chip-label" }, label),
      el("span", { class: "chip-value" }, fmt(value)),
      rank ? el("span", { class: "chip-rank" }, `#${rank}`) : null,
    );
  }

  function renderPassages(response) {
    const list = clear($("passage-list"));
    const terms = questionTerms(response.question);
    const hybrid = response.passages.some((p) => p.dense_score != null && p.bm25_score != null);
    $("passages-hint").textContent = response.passages.length
      ? `${response.passages.length} chunks, best first. Question terms are marked; open one to see it in its article.`
      : "No chunks were retrieved.";
    for (const p of response.passages) {
      list.append(
        el("li", { class: "passage" },
          el("div", { class: "passage-head" },
            el("span", { class: "rank", "aria-label": `rank ${p.rank}` }, String(p.rank)),
            el("div", { class: "passage-id" },
              el("button", {
                type: "button",
                class: "link",
                onclick: () => openDocument(p.doc_id, {
                  start: p.start, end: p.end, page: p.page, label: `Passage ${p.rank}`, kind: "passage", detail: p.chunk_id,
                }),
              }, titleOf(p)),
              el("span", { class: "passage-meta" },
                [formatDate(p.date), pageLabel(p.page), p.chunk_id, `chars ${p.start}–${p.end}`]
                  .filter(Boolean).join(" · ")),
            ),
          ),
          el("div", { class: "scores" },
            scoreChip(hybrid ? "fused" : "score", p.score, null, "Ranking score in the retrieval mode used"),
            scoreChip("dense", p.dense_score, p.dense_rank, "Cosine similarity of question and chunk embeddings"),
            scoreChip("BM25", p.bm25_score, p.bm25_rank, "BM25 score of the chunk's words"),
          ),
          el("p", { class: "passage-text" }, markTerms(p.text, terms)),
        ),
      );
    }
    $("passages").hidden = false;
  }

  // ---- The reader: a document with a span highlighted --------------------------------------

  const documentCache = new Map();
  let readToken = 0;

  async function fetchDocument(docId) {
    if (!documentCache.has(docId)) {
      const pending = api("documents/" + encodeURIComponent(docId));
      documentCache.set(docId, pending);
      pending.catch(() => documentCache.delete(docId));
    }
    return documentCache.get(docId);
  }

  function openCitation(citation) {
    for (const b of document.querySelectorAll("[data-citation]")) {
      b.classList.toggle("active", b.dataset.citation === String(citation.id));
    }
    return openDocument(citation.doc_id, {
      start: citation.start,
      end: citation.end,
      page: citation.page,
      label: `Citation ${citation.id}`,
      kind: "citation",
      detail: [pageLabel(citation.page), citation.chunk_id, `chars ${citation.start}–${citation.end}`]
        .filter(Boolean).join(" · "),
    });
  }

  /** "p. 2" for a place in a paged document (PDF); null elsewhere. */
  function pageLabel(page) {
    return page === null || page === undefined ? null : `p. ${page}`;
  }

  /** [start, end) in code points of page `page` (1-based) of a paged document's text. */
  function pageRange(doc, page) {
    const starts = doc.pages;
    const start = starts[page - 1];
    const end = page < starts.length ? starts[page] : Number.MAX_SAFE_INTEGER;
    return [start, end];
  }

  async function openDocument(docId, span = null) {
    const token = ++readToken;
    const reader = $("reader");
    reader.setAttribute("aria-busy", "true");
    try {
      const doc = await fetchDocument(docId);
      if (token !== readToken) return;
      renderDocument(doc, span);
    } catch (err) {
      if (token !== readToken) return;
      const box = el("div", { class: "error", role: "alert" });
      showError(box, err);
      clear(reader).append(el("h2", { id: "reader-title", tabindex: "-1" }, "Source"), box);
    } finally {
      if (token === readToken) reader.removeAttribute("aria-busy");
    }
  }

  let openDocumentId = null;

  function renderDocument(doc, span) {
    openDocumentId = doc.id;
    const reader = clear($("reader"));
    const pages = doc.pages ? `${doc.pages.length} pages` : null;
    const meta = [formatDate(doc.date), pages, `${doc.n_chunks} chunks`, doc.id].filter(Boolean);
    const title = el("h2", { id: "reader-title", tabindex: "-1" }, titleOf(doc));
    reader.append(el("p", { class: "eyebrow" }, span ? span.label : "Document"), title,
      el("p", { class: "reader-meta" }, meta.join(" · ")));
    if (doc.url) {
      reader.append(el("p", { class: "reader-meta" }, el("a", { href: doc.url, rel: "noopener noreferrer" }, doc.url)));
    }
    const body = el("div", { class: "doc-text", tabindex: "0", "aria-label": "Document text" });
    let mark = null;
    if (span) {
      // In a paged document, the span's page alone (and the rest of a sentence that runs over
      // into the next page), as the PDF shows it; offsets stay the document's.
      let text = doc.text;
      let offset = 0;
      if (doc.pages && span.page) {
        const [pageStart, pageEnd] = pageRange(doc, span.page);
        const [from, to] = spanOf(doc.text, pageStart, Math.max(pageEnd, span.end));
        text = doc.text.slice(from, to);
        offset = pageStart;
        reader.append(el("p", { class: "reader-page" }, `Page ${span.page} of ${doc.pages.length}`));
      }
      const [from, to] = spanOf(text, span.start - offset, span.end - offset);
      mark = el("mark", { class: span.kind === "citation" ? "cited" : "passage-span", id: "highlight" },
        text.slice(from, to));
      append(body, [text.slice(0, from), mark, text.slice(to)]);
      reader.append(el("p", { class: "reader-note" }, `Highlighted: ${span.label.toLowerCase()}, ${span.detail}`));
    } else {
      body.textContent = doc.text;
    }
    reader.append(body);
    title.focus({ preventScroll: true });
    // Scroll the article's own box to the span; scroll the page only if the box is out of view
    // (on a narrow screen the reader sits below the answer).
    body.scrollTop = mark ? Math.max(0, mark.offsetTop - body.clientHeight / 3) : 0;
    const target = mark || title;
    const box = target.getBoundingClientRect();
    if (box.top < 0 || box.bottom > window.innerHeight) {
      target.scrollIntoView({ block: mark ? "center" : "start", behavior: "auto" });
    }
  }

  // ---- Documents ---------------------------------------------------------------------------

  let allDocuments = null;
  let loadingDocuments = null;

  async function fetchAllDocuments() {
    const documents = [];
    const pageSize = 100;
    for (let offset = 0; offset < 100000; offset += pageSize) {
      const page = await api(`documents?offset=${offset}&limit=${pageSize}`);
      documents.push(...page.documents);
      if (!page.documents.length || documents.length >= page.total) break;
    }
    return documents;
  }

  async function loadDocuments() {
    if (allDocuments || loadingDocuments) return;
    const errorBox = $("docs-error");
    errorBox.hidden = true;
    $("doc-count").textContent = "loading…";
    loadingDocuments = fetchAllDocuments();
    try {
      allDocuments = await loadingDocuments;
      renderDocuments();
    } catch (err) {
      $("doc-count").textContent = "";
      showError(errorBox, err);
    } finally {
      loadingDocuments = null;
    }
  }

  function renderDocuments() {
    if (!allDocuments) return;
    const needle = $("doc-filter").value.trim().toLowerCase();
    const shown = allDocuments.filter((d) => !needle || titleOf(d).toLowerCase().includes(needle));
    $("doc-count").textContent = needle
      ? `${shown.length} of ${allDocuments.length}`
      : `${allDocuments.length} documents`;
    const list = clear($("doc-list"));
    if (!shown.length) {
      list.append(el("li", { class: "empty" }, needle ? "No title matches the filter." : "The index has no documents."));
      return;
    }
    for (const d of shown) {
      list.append(
        el("li", {},
          el("button", {
            type: "button",
            class: "doc",
            "aria-current": d.id === openDocumentId ? "true" : null,
            onclick: (event) => {
              for (const b of document.querySelectorAll(".doc[aria-current]")) b.removeAttribute("aria-current");
              event.currentTarget.setAttribute("aria-current", "true");
              openDocument(d.id);
            },
          },
            el("span", { class: "doc-title" }, titleOf(d)),
            el("span", { class: "doc-meta" },
              [formatDate(d.date) || "undated", `${d.n_chunks} chunks`, d.id].join(" · ")),
          ),
        ),
      );
    }
  }

  $("doc-filter").addEventListener("input", renderDocuments);

  // ---- Start -------------------------------------------------------------------------------

  loadStatus();
  showView(location.hash.slice(1) || "ask");
  if (!location.hash || location.hash === "#ask") $("question").focus();
})();
