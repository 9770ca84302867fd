"""POST /documents/from-path and RAG_CORPUS_ROOTS, against real uvicorn servers and real files.

Two servers start once for the module, each on its own copy of the bundled index and with a
write key: `open` may read one corpus root made here, `closed` has no roots set. The corpus
has a folder to ingest, a file reached by a relative path, and the ways out of a root that
must be refused: `..`, absolute paths elsewhere, a sibling folder whose name starts like the
root's, and symlinks (a file and a folder) pointing outside.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from rag.config import Settings
from rag.ingest.documents import load_corpus
from tests.servers import Server, start_server, wait_until

WRITE_KEY = "roots-write-key"
AUTH = {"Authorization": f"Bearer {WRITE_KEY}"}
MAX_DOCS = 4
SECRET = "The vault combination is 7741 and must never be indexed."
LITHIUM = """---
title: Navoi lithium plant opens
date: 2024-03-03
---
# Navoi lithium plant opens

The Navoi lithium plant refines spodumene concentrate shipped from the Kuraminsky ridge.
It employs 420 workers and produces battery-grade lithium carbonate for export.
"""
COPPER = """Almalyk expands copper smelting

The Almalyk mining complex will double its copper smelting capacity by 2027, its board said.
"""
QUARTERLY = """Samarkand tile exports rise

Ceramic tile exports from Samarkand rose by a fifth in the first quarter, traders reported.
"""


@dataclass
class Corpus:
    root: Path  # the one corpus root of the `open` server
    outside: Path  # a folder next to it that no server may read


@dataclass
class Servers:
    open: Server
    closed: Server


def make_corpus(tmp: Path) -> Corpus:
    root, outside, sibling = tmp / "root", tmp / "outside", tmp / "root-sibling"
    for folder in (root / "news" / "sub", root / "reports", root / "many", root / "empty"):
        folder.mkdir(parents=True)
    outside.mkdir()
    sibling.mkdir()
    (root / "news" / "lithium.md").write_text(LITHIUM, encoding="utf-8")
    (root / "news" / "sub" / "copper.txt").write_text(COPPER, encoding="utf-8")
    (root / "news" / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "reports" / "q1.txt").write_text(QUARTERLY, encoding="utf-8")
    for i in range(MAX_DOCS + 1):
        (root / "many" / f"m{i}.txt").write_text(f"Note {i}\n\n{COPPER}", encoding="utf-8")
    (root / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    for folder in (outside, sibling):
        (folder / "secret.txt").write_text(f"Secret\n\n{SECRET}\n", encoding="utf-8")
    (root / "news" / "leak.txt").symlink_to(outside / "secret.txt")
    (root / "escape").symlink_to(outside, target_is_directory=True)
    return Corpus(root, outside)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def servers(bundled_settings, corpus, tmp_path_factory) -> Iterator[Servers]:
    tmp = tmp_path_factory.mktemp("roots")
    common = {"RAG_API_KEY": WRITE_KEY, "RAG_RATE_LIMIT_PER_MINUTE": "0"}
    started: list[Server] = []
    try:
        for name, env in (
            ("open", {"RAG_CORPUS_ROOTS": json.dumps([str(corpus.root)])}),
            ("closed", {}),
        ):
            shutil.copytree(bundled_settings.index_path, tmp / f"{name}-index")
            started.append(
                start_server(
                    tmp / f"{name}.log",
                    RAG_INDEX_PATH=str(tmp / f"{name}-index"),
                    RAG_MAX_DOCUMENTS_PER_REQUEST=str(MAX_DOCS),
                    **common,
                    **env,
                )
            )
        for server in started:
            wait_until(server, "/ready")
        yield Servers(*started)
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="module")
def writer(servers) -> Iterator[httpx.Client]:
    with servers.open.client(headers=AUTH) as client:
        yield client


def state(client: httpx.Client) -> tuple[int, int]:
    """The live generation and the number of documents."""
    ready = client.get("/ready").json()
    return ready["generation"], client.get("/documents", params={"limit": 1}).json()["total"]


def from_path(client: httpx.Client, path: str) -> httpx.Response:
    return client.post("/documents/from-path", json={"path": path})


def assert_refused(client: httpx.Client, path: str, status: int, code: str) -> str:
    """The path is refused with `status` and `code`, and nothing is written; the message."""
    before = state(client)
    r = from_path(client, path)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert error["code"] == code, error
    assert state(client) == before
    return error["message"]


# accepted


def test_a_folder_in_a_root_gets_the_ids_rag_index_gives_and_is_answered(writer, corpus):
    by_rag_index = {d.id: d for d in load_corpus(corpus.root) if d.source.startswith("news/")}
    assert set(by_rag_index) == {"news__lithium", "news__sub__copper"}
    generation, total = state(writer)

    r = from_path(writer, str(corpus.root / "news"))

    assert r.status_code == 200, r.text
    body = r.json()
    assert sorted(body["ids"]) == sorted(by_rag_index)
    report = body["report"]
    assert (report["added"], report["generation"]) == (2, generation + 1)
    assert report["path"] == f"gen-{generation + 1:06d}"
    skipped = {s["path"]: s["reason"] for s in report["skipped"]}
    assert skipped == {
        "news/leak.txt": "links outside the folder",
        "news/photo.png": "unsupported file type",
    }
    assert str(corpus.root.parent) not in r.text
    assert state(writer) == (generation + 1, total + 2)

    doc = writer.get("/documents/news__lithium").json()
    assert doc["title"] == "Navoi lithium plant opens"
    assert doc["source"] == "news/lithium.md"
    assert doc["text"] == by_rag_index["news__lithium"].text
    answer = writer.post("/ask", json={"question": "What does the Navoi lithium plant refine?"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["passages"][0]["doc_id"] == "news__lithium"
    assert {c["doc_id"] for c in answer.json()["citations"]} <= {"news__lithium"}
    # the symlinked secret was not read
    listed = writer.get("/documents", params={"limit": 100}).json()["documents"]
    assert not [d for d in listed if "leak" in d["id"] or "secret" in d["id"]]


def test_a_single_file_by_a_relative_path_or_a_path_through_dot_dot(writer, corpus):
    r = from_path(writer, "reports/q1.txt")
    assert r.status_code == 200, r.text
    assert r.json()["ids"] == ["reports__q1"]
    assert writer.get("/documents/reports__q1").json()["source"] == "reports/q1.txt"
    generation, total = state(writer)
    # ".." that stays inside the root is fine: the same file, so nothing changes
    again = from_path(writer, f"{corpus.root}/news/../reports/q1.txt")
    assert again.status_code == 200, again.text
    assert again.json()["ids"] == ["reports__q1"]
    assert again.json()["report"]["unchanged"] == total
    assert state(writer) == (generation, total)


# refused


OUTSIDE_PATHS: dict[str, Callable[[Corpus], str]] = {
    "dot-dot, absolute": lambda c: f"{c.root}/../outside/secret.txt",
    "dot-dot, relative": lambda c: "../outside/secret.txt",
    "deep dot-dot": lambda c: "news/sub/../../../outside",
    "absolute elsewhere": lambda c: str(c.outside / "secret.txt"),
    "sibling with the root's name as prefix": lambda c: f"{c.root}-sibling/secret.txt",
    "symlinked file": lambda c: str(c.root / "news" / "leak.txt"),
    "symlinked folder": lambda c: str(c.root / "escape"),
    "through a symlinked folder, relative": lambda c: "escape/secret.txt",
    "missing, outside": lambda c: f"{c.root}/../outside/missing.txt",
    "the filesystem root": lambda c: "/",
}


@pytest.mark.parametrize("make_path", OUTSIDE_PATHS.values(), ids=OUTSIDE_PATHS.keys())
def test_paths_out_of_the_root_are_forbidden_and_write_nothing(writer, corpus, make_path):
    path = make_path(corpus)
    message = assert_refused(writer, path, 403, "path_outside_corpus_roots")
    # what the client sent, and nothing of where it leads
    assert message == f"{path!r} is outside the folders this server may read (RAG_CORPUS_ROOTS)"
    assert writer.get("/documents/secret").status_code == 404


@pytest.mark.parametrize("path", ["news/missing.txt", "{root}/reports/missing"])
def test_a_missing_path_inside_the_root_is_not_found(writer, corpus, path):
    path = path.format(root=corpus.root)
    message = assert_refused(writer, path, 404, "path_not_found")
    assert message == f"{path!r} does not exist"


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("photo.png", 415, "unsupported_media_type"),
        ("many", 413, "payload_too_large"),
        ("empty", 422, "invalid_documents"),
    ],
)
def test_what_cannot_be_ingested_is_refused_whole(writer, path, status, code):
    message = assert_refused(writer, path, status, code)
    assert repr(path) in message


def test_no_roots_set_forbids_every_path(servers, corpus):
    with servers.closed.client(headers=AUTH) as client:
        message = assert_refused(client, str(corpus.root / "news"), 403, "corpus_roots_not_set")
        assert "RAG_CORPUS_ROOTS" in message and str(corpus.root) not in message
        assert client.get("/documents/news__lithium").status_code == 404


def test_the_write_key_is_needed(servers, corpus):
    path = str(corpus.root / "reports")
    with servers.open.client() as anonymous:
        assert from_path(anonymous, path).status_code == 401
        wrong = {"Authorization": "Bearer not-the-key"}
        r = anonymous.post("/documents/from-path", json={"path": path}, headers=wrong)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("body", [{}, {"path": ""}, {"path": "a\x00b"}, {"path": 1}, {"p": "x"}])
def test_bodies_that_are_not_one_path_are_invalid(writer, body):
    r = writer.post("/documents/from-path", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_request"


def test_openapi_shows_the_endpoint_and_its_refusals(writer):
    schema = writer.get("/openapi.json").json()
    operation = schema["paths"]["/documents/from-path"]["post"]
    responses = operation["responses"]
    assert {"200", "401", "403", "404", "413", "415", "422", "503"} <= set(responses)
    assert "RAG_CORPUS_ROOTS" in responses["403"]["description"]
    assert "path_outside_corpus_roots" in responses["403"]["description"]
    assert "path_not_found" in responses["404"]["description"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/PathIn"}
    assert schema["components"]["schemas"]["PathIn"]["example"]["path"]


# the setting


@pytest.mark.parametrize(
    ("value", "roots"),
    [
        ("", []),
        ('["/srv/a", "/srv/b c"]', [Path("/srv/a"), Path("/srv/b c")]),
        ("/srv/a:/srv/b", [Path("/srv/a"), Path("/srv/b")]),
        ("/srv/a", [Path("/srv/a")]),
    ],
)
def test_corpus_roots_are_a_json_list_or_a_path_list(monkeypatch, value, roots):
    monkeypatch.setenv("RAG_CORPUS_ROOTS", value)
    assert Settings().corpus_roots == roots


def test_corpus_roots_are_empty_by_default_and_never_blank(monkeypatch):
    monkeypatch.delenv("RAG_CORPUS_ROOTS", raising=False)
    assert Settings().corpus_roots == []
    for blank in ('[""]', "/srv/a::/srv/b", '["/srv/a", " "]'):
        monkeypatch.setenv("RAG_CORPUS_ROOTS", blank)
        with pytest.raises(ValueError, match="must not be empty"):
            Settings()
