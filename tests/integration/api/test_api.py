"""The HTTP API, tested against real uvicorn processes over real HTTP.

Three servers start once for the module, side by side: `api` serves a copy of the bundled
index read-only; `writer` serves another copy with write and read keys, for the write
tests; `empty` has no index at all.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from rag.config import PROJECT_ROOT
from tests.conftest import CHIRCHIK, UZBEK_DOC
from tests.making import QUARRY_QUESTION, docx_bytes, quarry_pdf, scan_pdf_bytes
from tests.servers import Server, free_port, start_api, wait_until

WRITE_KEY = "test-write-key"
READ_KEY = "test-read-key"
UPLOAD_LIMIT = 200_000
MAX_DOCS = 3


@dataclass
class Servers:
    api: Server
    writer: Server
    empty: Server


@pytest.fixture(scope="module")
def servers(bundled_settings, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    for copy in ("read-index", "write-index"):
        shutil.copytree(bundled_settings.index_path, tmp / copy)
    started = [
        start_api(tmp, "api", RAG_INDEX_PATH=str(tmp / "read-index")),
        start_api(
            tmp,
            "writer",
            RAG_INDEX_PATH=str(tmp / "write-index"),
            RAG_API_KEY=WRITE_KEY,
            RAG_READ_API_KEY=READ_KEY,
            RAG_MAX_UPLOAD_BYTES=str(UPLOAD_LIMIT),
            RAG_MAX_DOCUMENTS_PER_REQUEST=str(MAX_DOCS),
        ),
        start_api(
            tmp, "empty", serve_args=["--index", str(tmp / "no-index-here"), "--allow-empty"]
        ),
    ]
    try:
        wait_until(started[0], "/ready")
        wait_until(started[1], "/ready")
        wait_until(started[2], "/health")
        yield Servers(*started)
    finally:
        for server in started:
            server.process.terminate()
        for server in started:
            try:
                server.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.process.kill()


@pytest.fixture(scope="module")
def api(servers):
    with servers.api.client() as client:
        yield client


@pytest.fixture(scope="module")
def writer(servers):
    with servers.writer.client(headers={"Authorization": f"Bearer {WRITE_KEY}"}) as client:
        yield client


def ask(client: httpx.Client, question: str, **body) -> dict:
    r = client.post("/ask", json={"question": question, **body})
    assert r.status_code == 200, r.text
    return r.json()


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert "Traceback" not in r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


# answers and citations


def test_chirchik_answer_cites_the_exact_passage(api):
    r = ask(api, CHIRCHIK)
    assert r["answerable"] is True
    assert "tungsten" in r["answer"] and "molybdenum" in r["answer"]
    assert UZBEK_DOC in [c["doc_id"] for c in r["citations"]]
    assert {"embed", "search", "total"} <= set(r["timings_ms"])
    for c in r["citations"]:
        assert set(c) >= {"doc_id", "title", "chunk_id", "start", "end", "quote", "score"}
        doc = api.get(f"/documents/{c['doc_id']}").json()
        assert doc["text"][c["start"] : c["end"]] == c["quote"]
        chunk = api.get(f"/chunks/{c['chunk_id']}").json()
        assert chunk["doc_id"] == c["doc_id"]
        assert chunk["start"] <= c["start"] and c["end"] <= chunk["end"]
        assert doc["text"][chunk["start"] : chunk["end"]] == chunk["text"]


def test_chunk_lists_its_neighbours(api):
    chunk = api.get(f"/chunks/{UZBEK_DOC}:3").json()
    assert (chunk["previous_id"], chunk["next_id"]) == (f"{UZBEK_DOC}:2", f"{UZBEK_DOC}:4")
    first = api.get(f"/chunks/{UZBEK_DOC}:0").json()
    assert first["previous_id"] is None and first["next_id"] == f"{UZBEK_DOC}:1"


def test_search_ranks_chunks_without_composing_an_answer(api):
    r = api.post("/search", json={"query": "rare metals Chirchik", "k": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "answer" not in body
    passages = body["passages"]
    assert [p["rank"] for p in passages] == [1, 2, 3, 4]
    scores = [p["score"] for p in passages]
    assert scores == sorted(scores, reverse=True)
    same = api.post("/search", json={"question": "rare metals Chirchik", "k": 4}).json()
    assert [p["chunk_id"] for p in same["passages"]] == [p["chunk_id"] for p in passages]
    dense = api.post("/search", json={"query": "rare metals", "mode": "dense", "k": 3})
    assert dense.status_code == 200, dense.text


def test_filters_restrict_retrieval(api):
    only = ask(api, CHIRCHIK, filters={"doc_ids": ["000_a87859622d3621ae"]})
    assert {p["doc_id"] for p in only["passages"]} == {"000_a87859622d3621ae"}
    later = api.post("/search", json={"query": "minerals", "filters": {"date_from": "2024-06-01"}})
    passages = later.json()["passages"]
    assert passages and all(p["date"] >= "2024-06-01" for p in passages)
    nothing = ask(api, CHIRCHIK, filters={"date_to": "1990-01-01"})
    assert nothing["passages"] == [] and nothing["answerable"] is False


def test_ask_accepts_a_retrieval_mode(api):
    r = ask(api, CHIRCHIK, mode="dense")
    assert r["passages"]
    assert_error(api.post("/ask", json={"question": CHIRCHIK, "mode": "psychic"}), 422)


@pytest.mark.parametrize(
    "question",
    [
        "🙂 molybdenum?",
        "tungsten\x00\x07\x1b Chirchik",
        "Ünïcödé Çhîrçhîk — 鎢 и молибден؟",
        "x" * 2000,
        "Chirchik " + "a" * 1900,
    ],
)
def test_odd_but_valid_questions_are_answered_or_declined(api, question):
    r = ask(api, question)
    if r["answerable"]:  # an answer is a span of its cited sentence
        assert r["answer"] and r["citations"], r
        assert r["answer"] in r["citations"][0]["quote"]
    else:  # a refusal says why and cites nothing
        assert r["answer"] is None and not r["citations"] and r["reason"], r


# documents, health


def test_documents_are_listed_a_page_at_a_time(api):
    first = api.get("/documents", params={"limit": 2}).json()
    assert first["total"] == 5 and first["limit"] == 2 and len(first["documents"]) == 2
    rest = api.get("/documents", params={"offset": 2, "limit": 100}).json()
    ids = [d["id"] for d in first["documents"] + rest["documents"]]
    assert len(ids) == 5 and ids == sorted(ids) and UZBEK_DOC in ids
    assert {"id", "title", "date", "n_chunks"} <= set(first["documents"][0])


def test_responses_show_no_server_paths(api, writer, servers):
    listed = api.get("/documents", params={"limit": 100}).json()["documents"]
    assert {d["source"] for d in listed} == {f"{d['id']}.txt" for d in listed}
    assert api.get(f"/documents/{UZBEK_DOC}").json()["source"] == f"{UZBEK_DOC}.txt"
    r = writer.post("/documents", json={"documents": [{**NEW_DOC, "id": "paths"}]})
    assert r.status_code == 200, r.text
    report = r.json()["report"]
    assert report["path"] == f"gen-{report['generation']:06d}"
    assert writer.get("/documents/paths").json()["source"] == "api"
    r = writer.delete("/documents/paths")
    assert r.json()["report"]["path"] == f"gen-{r.json()['report']['generation']:06d}"
    for response in (r, api.get("/documents"), api.get("/ready")):
        assert "/tmp" not in response.text and str(PROJECT_ROOT) not in response.text


def test_absolute_sources_of_older_indexes_are_shown_as_file_names():
    from api.routes.documents import public_source

    assert public_source("/srv/articles/sub/a.md") == "a.md"
    assert public_source("sub/a.md") == "sub/a.md"
    assert public_source("upload:a.md") == "upload:a.md" and public_source(None) is None


def test_health_and_ready(api):
    assert api.get("/health").json() == {"status": "ok"}
    ready = api.get("/ready").json()
    assert ready["status"] == "ready"
    assert ready["documents"] == 5 and ready["chunks"] >= 5
    assert ready["model"].endswith("all-MiniLM-L6-v2") and ready["index_created"]


def test_server_without_an_index_is_alive_but_not_ready(servers):
    with servers.empty.client() as client:
        assert client.get("/health").status_code == 200
        error = assert_error(client.get("/ready"), 503, "index_not_loaded")
        assert "rag index" in error["message"]
        assert "no-index-here" not in error["message"] and "<index>" in error["message"]
        assert (
            "rag index"
            in assert_error(client.post("/ask", json={"question": CHIRCHIK}), 503)["message"]
        )
        assert_error(client.post("/search", json={"query": "tungsten"}), 503)
        assert_error(client.get("/documents"), 503)
        assert client.get("/openapi.json").status_code == 200


# errors

LONG = "why " * 501  # 2004 characters
JSON = {"content-type": "application/json"}


def raw(body: bytes) -> dict:
    return {"content": body, "headers": JSON}


def ask_body(**fields) -> dict:
    return {"json": {"question": "x", **fields}}


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("POST", "/ask", {"json": {"question": ""}}, 422, "invalid_question"),
        ("POST", "/ask", {"json": {"question": " \n\t "}}, 422, "invalid_question"),
        ("POST", "/ask", {"json": {"question": 42}}, 422, "invalid_request"),
        ("POST", "/ask", {"json": {"question": ["a"]}}, 422, "invalid_request"),
        ("POST", "/ask", {"json": {"question": None}}, 422, "invalid_request"),
        ("POST", "/ask", {"json": {}}, 422, "invalid_request"),
        ("POST", "/ask", {"json": []}, 422, "invalid_request"),
        ("POST", "/ask", ask_body(k=0), 422, "invalid_request"),
        ("POST", "/ask", ask_body(k=-3), 422, "invalid_request"),
        ("POST", "/ask", ask_body(k=51), 422, "invalid_request"),
        ("POST", "/ask", ask_body(k=500), 422, "invalid_request"),
        ("POST", "/ask", ask_body(k="5"), 422, "invalid_request"),
        ("POST", "/ask", ask_body(topk=5), 422, "invalid_request"),
        ("POST", "/ask", ask_body(filters={"date_from": "soon"}), 422, None),
        ("POST", "/ask", ask_body(filters={"date_from": 0}), 422, "invalid_request"),
        ("POST", "/ask", ask_body(filters={"date_to": 1711411200}), 422, "invalid_request"),
        ("POST", "/ask", ask_body(filters={"date_to": "2024-03-26T00:00:00"}), 422, None),
        ("POST", "/search", {"json": {"query": "x", "filters": {"date_from": 1.5}}}, 422, None),
        ("POST", "/ask", ask_body(filters={"doc_ids": ["a"] * 1001}), 422, None),
        ("POST", "/ask", raw(b'{"question": "x",'), 422, "invalid_request"),
        ("POST", "/ask", raw(b"\xff\xfe"), 422, "invalid_request"),
        ("POST", "/ask", raw(b'{"question": "\\ud800 tungsten"}'), 422, None),
        ("POST", "/ask", {"json": {"question": LONG}}, 413, "question_too_long"),
        ("POST", "/search", {"json": {"query": ""}}, 422, None),
        ("POST", "/search", {"json": {"k": 3}}, 422, "invalid_request"),
        ("POST", "/search", {"json": {"query": LONG}}, 413, "question_too_long"),
        ("POST", "/search", raw(b'{"query": "x", "filters": {"doc_ids": ["\\udfff"]}}'), 422, None),
        ("GET", "/chunks/no-such-chunk:0", {}, 404, "unknown_chunk"),
        ("GET", "/chunks/..%2F..%2Fetc%2Fpasswd", {}, 404, "unknown_chunk"),
        ("GET", "/documents/no-such-document", {}, 404, "unknown_document"),
        ("GET", "/documents/..%2F..%2Fetc%2Fpasswd", {}, 404, "unknown_document"),
        ("GET", "/documents/%2E%2E", {}, 404, "unknown_document"),
        ("GET", "/documents", {"params": {"limit": 0}}, 422, "invalid_request"),
        ("GET", "/documents", {"params": {"limit": 101}}, 422, "invalid_request"),
        ("GET", "/documents", {"params": {"offset": -1}}, 422, "invalid_request"),
        ("GET", "/documents", {"params": {"limit": "many"}}, 422, "invalid_request"),
        ("GET", "/no/such/route", {}, 404, "not_found"),
        ("PUT", "/ask", {}, 405, "method_not_allowed"),
        ("POST", "/documents", {"json": {"documents": []}}, 401, "unauthorized"),
        ("DELETE", f"/documents/{UZBEK_DOC}", {}, 401, "unauthorized"),
        ("POST", "/documents", {"json": {}, "headers": {"Authorization": "Bearer x"}}, 403, None),
    ],
)
def test_bad_requests_get_a_clear_json_error(api, method, path, kwargs, status, code):
    assert_error(api.request(method, path, **kwargs), status, code)


def test_bodies_over_the_limit_are_refused_before_being_read(api):
    big = b'{"question": "' + b"a" * 1_100_000 + b'"}'
    headers = {"content-type": "application/json"}
    assert_error(api.post("/ask", content=big, headers=headers), 413, "payload_too_large")

    def chunked():  # no Content-Length: counted as it streams in
        for i in range(0, len(big), 64_000):
            yield big[i : i + 64_000]

    assert_error(api.post("/ask", content=chunked(), headers=headers), 413, "payload_too_large")
    assert ask(api, CHIRCHIK)["answerable"]  # and the server is fine


# writes (on the writer server, which also requires a read key)

NEW_DOC = {
    "id": "tashkent-lithium",
    "title": "Tashkent opens a lithium refinery",
    "text": "Tashkent opened a lithium refinery in May 2024.\n\nThe Tashkent lithium refinery "
    "processes spodumene ore from the Zarafshan valley into battery-grade lithium carbonate.",
    "date": "2024-05-02",
}
NEW_QUESTION = "What ore does the Tashkent lithium refinery process?"
FILE_TEXT = (
    "Samarkand gallium plant\n\nThe Samarkand gallium plant recovers gallium from bauxite "
    "residue and ships it to chip makers in Busan.\n"
)
FILE_QUESTION = "What does the Samarkand plant recover gallium from?"


def cited(response: dict) -> set[str]:
    return {c["doc_id"] for c in response["citations"]}


def test_keys_guard_reads_and_writes(servers, writer):
    with servers.writer.client() as anonymous:
        assert anonymous.get("/health").status_code == 200
        assert anonymous.get("/ready").status_code == 200
        assert_error(anonymous.post("/ask", json={"question": CHIRCHIK}), 401, "unauthorized")
        assert_error(anonymous.post("/documents", json={"documents": [NEW_DOC]}), 401)
        assert_error(anonymous.delete(f"/documents/{UZBEK_DOC}"), 401)
        # a key that is not the write key is refused (403); one sent otherwise than as a
        # bearer token is no key at all (401)
        for auth, status in (
            ("Bearer wrong", 403),
            (f"Bearer {WRITE_KEY}x", 403),
            (f"Basic {WRITE_KEY}", 401),
            ("Bearer ключ", 403),
        ):
            headers = {"Authorization": auth.encode()}
            r = anonymous.post("/documents", json={"documents": [NEW_DOC]}, headers=headers)
            assert_error(r, status, "forbidden" if status == 403 else "unauthorized")
        read = {"Authorization": f"Bearer {READ_KEY}"}
        assert anonymous.post("/ask", json={"question": CHIRCHIK}, headers=read).status_code == 200
        assert_error(anonymous.post("/documents", json={"documents": [NEW_DOC]}, headers=read), 403)
    assert writer.get(f"/documents/{UZBEK_DOC}").status_code == 200  # the write key reads too


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"json": {"documents": [{**NEW_DOC, "text": " \n "}]}}, 422),
        ({"json": {"documents": [{**NEW_DOC, "id": "a/b"}]}}, 422),
        ({"json": {"documents": [{**NEW_DOC, "id": ".."}]}}, 422),
        ({"json": {"documents": [NEW_DOC, NEW_DOC]}}, 422),
        ({"json": {"documents": [{k: v for k, v in NEW_DOC.items() if k != "text"}]}}, 422),
        ({"json": {"documents": [NEW_DOC, {**NEW_DOC, "id": "x", "text": ""}]}}, 422),
        ({"json": {"documents": [{**NEW_DOC, "id": f"d{i}"} for i in range(MAX_DOCS + 1)]}}, 413),
        ({"json": {"documents": [{**NEW_DOC, "text": "x" * (UPLOAD_LIMIT + 1)}]}}, 413),
        ({"files": {"files": ("big.txt", b"x " * UPLOAD_LIMIT)}}, 413),
        ({"files": {"files": ("photo.png", b"\x89PNG\r\n")}}, 415),
        ({"files": {"files": ("bad.txt", b"\x00\x01\x02 binary")}}, 422),
        ({"files": {"files": ("broken.pdf", b"%PDF-1.7\n1 0 obj << /Pages 9 0 R >>\n%%EOF")}}, 422),
        ({"files": {"files": ("cut.pdf", quarry_pdf()[:700])}}, 422),
        ({"files": {"files": ("scan.pdf", scan_pdf_bytes())}}, 422),
        ({"files": {"files": ("broken.docx", b"PK\x03\x04 not a zip")}}, 422),
        ({"files": {"other": ("a.txt", b"text")}}, 422),
        ({"content": b"id,text\n1,hello", "headers": {"content-type": "text/csv"}}, 415),
        (raw(b'{"documents": ['), 422),
        (raw(b'{"documents": [{"id": "s", "text": "\\ud800"}]}'), 422),
        ({"files": {"files": ("s.jsonl", b'{"id": "s", "text": "a \\ud800 b"}')}}, 422),
    ],
)
def test_bad_writes_are_refused_and_change_nothing(writer, kwargs, status):
    before = writer.get("/ready").json()
    assert_error(writer.post("/documents", **kwargs), status)
    after = writer.get("/ready").json()
    assert after["generation"] == before["generation"]
    assert writer.get(f"/documents/{NEW_DOC['id']}").status_code == 404


def test_documents_added_and_deleted_while_questions_keep_being_answered(writer):
    errors: list[str] = []
    answered = 0
    stop = threading.Event()

    def keep_asking() -> None:
        nonlocal answered
        with httpx.Client(base_url=str(writer.base_url), headers=writer.headers, timeout=60) as c:
            while not stop.is_set():
                try:
                    r = c.post("/ask", json={"question": CHIRCHIK})
                    if r.status_code != 200 or "tungsten" not in (r.json()["answer"] or ""):
                        errors.append(f"{r.status_code}: {r.text[:300]}")
                    answered += 1
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))

    threads = [threading.Thread(target=keep_asking) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        assert NEW_DOC["id"] not in cited(ask(writer, NEW_QUESTION))

        r = writer.post("/documents", json={"documents": [NEW_DOC]})
        assert r.status_code == 200, r.text
        assert r.json()["ids"] == [NEW_DOC["id"]] and r.json()["report"]["added"] == 1
        answer = ask(writer, NEW_QUESTION)
        assert NEW_DOC["id"] in cited(answer) and "spodumene" in answer["citations"][0]["quote"]
        text = writer.get(f"/documents/{NEW_DOC['id']}").json()["text"]
        for c in answer["citations"]:
            if c["doc_id"] == NEW_DOC["id"]:
                assert text[c["start"] : c["end"]] == c["quote"]

        files = {"files": ("samarkand-gallium.md", FILE_TEXT.encode(), "text/markdown")}
        r = writer.post("/documents", files=files)
        assert r.status_code == 200, r.text
        assert r.json()["ids"] == ["samarkand-gallium"]
        assert "samarkand-gallium" in cited(ask(writer, FILE_QUESTION))

        replaced = {**NEW_DOC, "text": NEW_DOC["text"].replace("spodumene", "petalite")}
        r = writer.post("/documents", json={"documents": [replaced]})
        assert r.json()["report"]["changed"] == 1
        # the answer is read from the new version: its cited sentence names the new ore
        assert "petalite" in ask(writer, NEW_QUESTION)["citations"][0]["quote"]

        for doc_id in (NEW_DOC["id"], "samarkand-gallium"):
            r = writer.delete(f"/documents/{doc_id}")
            assert r.status_code == 200, r.text
            assert r.json()["report"]["removed"] == 1
            assert_error(writer.get(f"/documents/{doc_id}"), 404, "unknown_document")
            assert_error(writer.delete(f"/documents/{doc_id}"), 404, "unknown_document")
        assert NEW_DOC["id"] not in cited(ask(writer, NEW_QUESTION))
        assert "samarkand-gallium" not in cited(ask(writer, FILE_QUESTION))
        assert writer.get("/documents").json()["total"] == 5
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:5]
    assert answered > 0


def test_pdf_docx_and_latin_1_uploads_are_read_and_a_pdf_citation_names_its_page(writer):
    files = [
        ("files", ("quarry.pdf", quarry_pdf(), "application/pdf")),
        ("files", ("harbour.docx", docx_bytes([("h1", "Dredging"), ("p", HARBOUR)]), DOCX)),
        ("files", ("cafe.txt", "Le café de la gare a rouvert à Genève.".encode("latin-1"))),
    ]
    r = writer.post("/documents", files=files)
    assert r.status_code == 200, r.text
    assert sorted(r.json()["ids"]) == ["cafe", "harbour", "quarry"]
    try:
        answer = ask(writer, QUARRY_QUESTION)
        cited = answer["citations"][0]
        assert cited["doc_id"] == "quarry" and cited["page"] == 2, answer
        doc = writer.get("/documents/quarry").json()
        assert len(doc["pages"]) == 2 and cited["quote"] in doc["text"][doc["pages"][1] :]
        assert doc["text"][cited["start"] : cited["end"]] == cited["quote"]
        assert "café" in writer.get("/documents/cafe").json()["text"]
        harbour = writer.get("/documents/harbour").json()
        assert harbour["text"] == f"Dredging\n\n{HARBOUR}" and harbour["pages"] is None
    finally:
        for doc_id in ("quarry", "harbour", "cafe"):
            assert writer.delete(f"/documents/{doc_id}").status_code == 200
    assert writer.get("/documents").json()["total"] == 5


HARBOUR = "Dredging of the inner harbour finished in May, two weeks early."
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


# concurrency, docs

QUESTIONS = [
    CHIRCHIK,
    "What did Yoon sign in Kazakhstan?",
    "trade volume between Korea and Uzbekistan",
    "What is the capital of Turkmenistan?",
]


def test_concurrent_questions_get_the_serial_answers(api):
    serial = {q: ask(api, q) for q in QUESTIONS}

    def essentials(r: dict) -> tuple:
        return (r["answer"], r["answerable"], [(c["chunk_id"], c["start"]) for c in r["citations"]])

    # Each concurrent question is new to the server (extra spaces after its first word), so
    # none comes from the query-embedding cache: the model itself runs concurrently.
    def variant(i: int) -> tuple[str, str]:
        base = QUESTIONS[i % len(QUESTIONS)]
        first, rest = base.split(" ", 1)
        return base, first + " " * (i + 2) + rest

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda i: (variant(i)[0], ask(api, variant(i)[1])), range(20)))
    assert len(results) == 20
    for base, r in results:
        assert essentials(r) == essentials(serial[base])


def test_openapi_documents_every_model_with_examples(api):
    docs = api.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    schema = api.get("/openapi.json").json()
    assert {"/ask", "/search", "/chunks/{chunk_id}", "/documents", "/documents/{doc_id}"} <= set(
        schema["paths"]
    )
    assert {"/health", "/ready"} <= set(schema["paths"])
    models = schema["components"]["schemas"]
    for name in ("AskRequest", "SearchRequest", "AskResponse", "SearchResponse", "Citation"):
        assert name in models
    for name in ("Passage", "DocumentsIn", "DocumentDetail", "ChunkDetail", "ErrorResponse"):
        assert name in models
    missing = [n for n, m in models.items() if not ({"example", "examples"} & set(m))]
    assert not missing, f"schemas without examples: {missing}"
    ask_body = schema["paths"]["/ask"]["post"]["requestBody"]["content"]["application/json"]
    assert ask_body["examples"]["chirchik"]["value"]["question"] == CHIRCHIK
    upload = schema["paths"]["/documents"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(upload)


def test_an_unexpected_error_is_a_json_500_without_a_traceback(tmp_path):
    # The one test in-process: a real server has no route that fails on purpose.
    import asyncio

    from api.main import create_app
    from rag.config import Settings

    app = create_app(Settings(index_path=tmp_path / "index"))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/boom")

    r = asyncio.run(call())
    assert_error(r, 500, "internal_error")
    assert "secret internals" not in r.text and "RuntimeError" not in r.text


def test_ask_and_search_bodies_are_their_documented_models(api):
    # The handlers send the engine's models as JSON themselves (no second validation).
    from rag.models import AskResponse, SearchResponse

    r = api.post("/ask", json={"question": CHIRCHIK, "k": 3})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    answer = AskResponse.model_validate_json(r.content)
    assert answer.answerable and answer.citations and len(answer.passages) == 3
    assert r.headers["content-length"] == str(len(r.content))
    r = api.post("/search", json={"query": "rare metals", "k": 2})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert len(SearchResponse.model_validate_json(r.content).passages) == 2


def _bench_load():
    """eval/benchmarks/load.py, the benchmark's load generator (eval/ is not a package on
    sys.path: the package is registered by hand, so its relative imports resolve)."""
    import importlib
    import importlib.util
    import sys

    if "benchmarks" not in sys.modules:
        package = PROJECT_ROOT / "eval" / "benchmarks"
        spec = importlib.util.spec_from_file_location(
            "benchmarks", package / "__init__.py", submodule_search_locations=[str(package)]
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["benchmarks"] = module
        spec.loader.exec_module(module)
    return importlib.import_module("benchmarks.load")


def test_the_benchmark_load_generator_reads_what_httpx_reads(servers):
    load = _bench_load()

    async def exchange() -> list[tuple[int, bytes]]:
        client = load.HttpClient(servers.api.url)
        try:
            out = [await client.post_json("/ask", {"question": CHIRCHIK})]
            assert len(client.idle) == 1  # kept alive and reused
            out.append(await client.post_json("/ask", {"question": ""}))
            out.append(await client.post_json("/search", {"query": "rare metals", "k": 2}))
            assert len(client.idle) == 1
            client.idle[0].transport.close()  # as when the server drops an idle connection
            status, _ = await client.post_json("/search", {"query": "rare metals", "k": 2})
            assert status == 200 and len(client.idle) == 1 and not client.idle[0].closed
            return out
        finally:
            client.close()

    (ok, ok_body), (bad, bad_body), (found, found_body) = load.run_async(exchange())
    with servers.api.client() as reference:
        expected = reference.post("/ask", json={"question": CHIRCHIK}).json()
        expected_search = reference.post("/search", json={"query": "rare metals", "k": 2}).json()
    got = httpx.Response(ok, content=ok_body).json()
    assert ok == 200 and got["answer"] == expected["answer"]
    assert got["citations"] == expected["citations"]
    assert bad == 422 and httpx.Response(bad, content=bad_body).json()["error"]["code"]
    found_json = httpx.Response(found, content=found_body).json()
    assert found == 200 and [p["chunk_id"] for p in found_json["passages"]] == [
        p["chunk_id"] for p in expected_search["passages"]
    ]


def test_the_benchmark_fixed_rate_load_counts_every_request_and_cpu(servers):
    load = _bench_load()
    questions = [CHIRCHIK, "What did Yoon sign in Kazakhstan?"]
    pid = servers.api.process.pid
    r = load.run_async(load.fixed_rate(servers.api.url, questions, 20.0, 1.0, 4, [0], pid))
    assert r["scheduled"] == 20 and r["completed"] == 20 and r["errors"] == 0
    assert r["client_cpu_ms_per_request"] > 0 and 0 < r["client_cpu_share"] < 1
    assert r["server_cpu_ms_per_request"] > 0 and 0 < r["server_cpu_share"] <= 1
    # a server that is gone: every request is an error, none hangs
    dead = f"http://127.0.0.1:{free_port()}"
    r = load.run_async(load.fixed_rate(dead, questions, 20.0, 0.5, 2, [0]))
    assert r["completed"] == 0 and r["errors"] == r["scheduled"] == 10
    assert r["server_cpu_ms_per_request"] is None


def test_handlers_run_in_a_worker_thread_with_the_request_context():
    import asyncio
    import contextvars

    from api.concurrency import run_in_thread

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    finished = threading.Event()

    def work(x: int) -> tuple[str, str, int]:
        return var.get(), threading.current_thread().name, x * 2

    def slow() -> None:
        time.sleep(0.3)
        finished.set()

    async def main() -> tuple[str, str, int]:
        var.set("request-7")
        got = await run_in_thread(work, 21)
        task = asyncio.ensure_future(run_in_thread(slow))
        await asyncio.sleep(0.05)
        task.cancel()  # the awaiting request goes; the started call finishes
        with pytest.raises(asyncio.CancelledError):
            await task
        return got

    value, thread, doubled = asyncio.run(main())
    assert value == "request-7" and doubled == 42
    assert thread.startswith("rag-request") and thread != threading.current_thread().name
    assert finished.wait(5)
