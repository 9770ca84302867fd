"""The Milvus vector store (milvus-lite): same results as FAISS, filters in the database,
the manifest rules against the collection, resumable streaming ingestion, the issue's
commands end to end (`rag index --store milvus`, `rag serve --store milvus`), and outages of
a milvus-lite server process killed and started again (issue #20, item 3)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from index import ChunkFilter, Index, IndexCorrupt, IndexMismatch, IndexNotFound
from index.backends.milvus import MilvusStore, client
from rag.config import PROJECT_ROOT, Settings
from rag.engine import Engine
from rag.evaluation.data import load_bundled
from rag.indexing import build_index
from rag.writer import Writer
from tests.conftest import CHIRCHIK, UZBEK_DOC, milvus_test_settings
from tests.servers import free_port

BUNDLED_EVAL = PROJECT_ROOT / "eval" / "bundled.jsonl"


def _questions() -> list[str]:
    return [q.question for q in load_bundled(BUNDLED_EVAL)]


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_faiss_and_milvus_return_the_same_top5_for_every_eval_question(engine, milvus_engine, mode):
    from rag.evaluation.retrieval import retrieve_chunks

    assert engine.index.manifest.index_type == milvus_engine.index.manifest.index_type == "flat"
    questions = _questions()
    assert len(questions) >= 20
    # The questions are embedded once, in one batch, for each engine (as `rag eval` does).
    on_faiss = retrieve_chunks(engine, questions, 5, mode=mode)
    on_milvus = retrieve_chunks(milvus_engine, questions, 5, mode=mode)
    for question, a, b in zip(questions, on_faiss, on_milvus, strict=True):
        assert len(a) == 5
        assert [h.chunk_id for h in a] == [h.chunk_id for h in b], question
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)


def test_the_milvus_index_is_described_by_its_collection(milvus_engine, milvus_settings):
    m = milvus_engine.index.manifest
    assert m.store == "milvus" and "vectors.faiss" not in m.files
    assert m.store_location["collection"] == f"{milvus_settings.milvus_collection}_g000001"
    description = milvus_engine.index.vectors.describe()
    assert description.kind == "milvus" and description.count == m.n_chunks == 28
    assert description.model == m.model and description.dimension == m.dimension == 384


def test_filters_run_in_milvus_and_agree_with_faiss(engine, milvus_engine, embedder):
    vector = embedder.encode_query(CHIRCHIK)[None, :]
    for where in [
        ChunkFilter(doc_ids=["004_a42af59a74583b78"]),
        ChunkFilter(date_from="2024-06-01"),
        ChunkFilter(doc_ids=[UZBEK_DOC, "004_a42af59a74583b78"], date_to="2024-12-31"),
        ChunkFilter(date_to="1990-01-01"),
    ]:
        # No id list: Milvus applies the metadata filter itself; FAISS resolves it to ids.
        a = [h.chunk.id for h in engine.index.search(vector, 10, where=where)[0]]
        b = [h.chunk.id for h in milvus_engine.index.search(vector, 10, where=where)[0]]
        assert a == b, where
    only = milvus_engine.index.search(vector, 10, where=ChunkFilter(doc_ids=[UZBEK_DOC]))[0]
    assert only and {h.chunk.doc_id for h in only} == {UZBEK_DOC}


def test_milvus_full_text_search_answers_like_the_local_bm25(milvus_settings, embedder):
    """milvus-lite 3.2.2 has the BM25 function: with RAG_MILVUS_LEXICAL=milvus the BM25 side
    of hybrid retrieval runs in Milvus."""
    settings = milvus_settings.model_copy(update={"milvus_lexical": "milvus"})
    engine = Engine.load(settings, embedder=embedder)
    assert engine.index.lexical_source == "store" and engine.index.manifest.store_full_text
    hits = engine.index.search_lexical("Chirchik molybdenum tungsten", 3)
    assert hits and hits[0].chunk.doc_id == UZBEK_DOC and hits[0].score > 0
    r = engine.ask(CHIRCHIK)
    assert r.answerable and r.citations[0].doc_id == UZBEK_DOC
    assert "molybdenum" in r.answer


def test_collection_must_match_the_manifest(bundled_documents, embedder, tmp_path, milvus_uri):
    settings = milvus_test_settings(tmp_path / "index", milvus_uri)
    index, _ = build_index(settings, embedder, bundled_documents[:1])
    name = index.manifest.store_location["collection"]
    milvus = client(milvus_uri)
    milvus.alter_collection_properties(name, {"rag.model": "intfloat/e5-small-v2"})
    with pytest.raises(IndexMismatch, match="e5-small-v2"):
        Index.load(settings.index_path)
    milvus.drop_collection(name)
    with pytest.raises(IndexCorrupt, match="missing"):
        Index.load(settings.index_path)


class Interrupted(Exception):
    pass


def test_interrupted_ingestion_resumes_without_duplicates(
    bundled_documents, embedder, tmp_path, milvus_uri
):
    settings = milvus_test_settings(tmp_path / "index", milvus_uri, ingest_batch_chunks=8)
    progress = []

    def stop_after_first_batch(done):
        progress.append(done)
        raise Interrupted

    with pytest.raises(Interrupted):
        build_index(settings, embedder, iter(bundled_documents), on_batch=stop_after_first_batch)
    with pytest.raises(IndexNotFound):  # nothing half-written is visible
        Index.load(settings.index_path)
    first = progress[0]
    assert 8 <= first.chunks < 28 and first.embedded == first.chunks
    name = f"{settings.milvus_collection}_g000001"
    assert MilvusStore(milvus_uri, name).count() == first.chunks

    progress.clear()
    index, report = build_index(
        settings, embedder, iter(bundled_documents), on_batch=progress.append
    )
    assert report.n_chunks == 28 and report.n_documents == 5
    assert progress[-1].skipped == first.chunks  # found in the collection, not embedded again
    assert report.embedded_chunks == 28 - first.chunks
    store = index.vectors
    ids = list(store.all_ids())
    assert store.count() == len(ids) == len(set(ids)) == 28
    assert set(ids) == {c.vector_id for _, c in index.store.iter_chunks()}
    # The resumed index answers like an uninterrupted one.
    r = Engine(settings, index, embedder).ask(CHIRCHIK)
    assert r.citations and r.citations[0].doc_id == UZBEK_DOC


def test_streaming_faiss_build_equals_the_one_batch_build(
    bundled_documents, embedder, engine, tmp_path
):
    settings = Settings(index_path=tmp_path / "index", ingest_batch_chunks=6)
    batches = []
    index, report = build_index(
        settings, embedder, iter(bundled_documents), on_batch=batches.append
    )
    assert len(batches) >= 3 and report.n_chunks == 28
    ids = [c.vector_id for _, c in engine.index.store.iter_chunks()]
    assert np.allclose(index.vectors.vectors(ids), engine.index.vectors.vectors(ids), atol=1e-5)


def test_updates_through_the_engine_stay_on_milvus(
    bundled_documents, embedder, tmp_path, milvus_uri
):
    settings = milvus_test_settings(tmp_path / "index", milvus_uri)
    build_index(settings, embedder, bundled_documents[:3])
    # A reader configured without --store follows the index (and so do its writes).
    engine = Engine.load(Settings(index_path=settings.index_path), embedder=embedder)
    writer = Writer(engine)
    report = writer.upsert(bundled_documents[3:])
    assert report.added == 2 and report.unchanged == 3 and report.n_chunks == 28
    assert engine.index.manifest.store == "milvus" and engine.index.vectors.count() == 28
    report = writer.delete(UZBEK_DOC)
    assert report.removed == 1 and engine.index.vectors.count() == report.n_chunks < 28


def test_rag_index_and_serve_on_milvus_cite_like_faiss(engine, tmp_path):
    """The issue's commands, run as a user would: `rag index --store milvus --milvus-uri
    ./milvus.db`, then `rag serve --store milvus ...`, then POST /ask."""
    from tests.servers import start_api, wait_until

    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT)}
    built = subprocess.run(
        [sys.executable, "-m", "rag.cli", "index", "--store", "milvus"]
        + ["--milvus-uri", "./milvus.db", "--index", "./index", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    assert json.loads(built.stdout)["n_chunks"] == 28
    server = start_api(
        tmp_path,
        "milvus",
        serve_args=["--store", "milvus", "--milvus-uri", str(tmp_path / "milvus.db")]
        + ["--index", str(tmp_path / "index")],
    )
    try:
        wait_until(server, "/ready")
        answer = httpx.post(server.url + "/ask", json={"question": CHIRCHIK}, timeout=60).json()
    finally:
        server.process.terminate()
        server.process.wait(timeout=30)
    expected = engine.ask(CHIRCHIK)
    got = [(c["chunk_id"], c["start"], c["end"]) for c in answer["citations"]]
    assert got == [(c.chunk_id, c.start, c.end) for c in expected.citations]
    assert answer["answer"] == expected.answer and "molybdenum" in answer["answer"]


def test_serve_refuses_several_workers_on_one_milvus_lite_file(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from rag.cli import main

    monkeypatch.delenv("RAG_STORE", raising=False)
    args = ["serve", "--store", "milvus", "--milvus-uri", str(tmp_path / "x.db"), "--workers", "2"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "one process" in result.output
    assert "RAG_STORE" not in os.environ  # refused before touching anything


def test_stats_name_the_store(milvus_settings):
    from click.testing import CliRunner

    from rag.cli import main

    args = ["stats", "--index", str(milvus_settings.index_path), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["store"] == "milvus" and stats["n_chunks"] == 28
    assert stats["store_location"]["collection"].endswith("_g000001")


def test_a_streamed_rerun_without_changes_writes_nothing(
    bundled_documents, embedder, fresh_store_settings
):
    """`rag index` streams its documents: with nothing changed it returns the live
    generation (no vectors copied, no collection left behind); a change late in the stream
    still gets every unchanged vector copied."""
    from dataclasses import replace

    settings = fresh_store_settings.model_copy(update={"ingest_batch_chunks": 8})
    first, _ = build_index(settings, embedder, iter(bundled_documents))
    again, report = build_index(settings, embedder, iter(bundled_documents), base=first)
    assert again is first and report.embedded_chunks == 0 and report.unchanged == 5
    if settings.store == "milvus":
        names = client(settings.milvus_uri).list_collections()
        ours = [n for n in names if n.startswith(settings.milvus_collection)]
        assert ours == [first.manifest.store_location["collection"]]
    last = bundled_documents[-1]
    changed = [*bundled_documents[:-1], replace(last, text=last.text + " An added sentence.")]
    third, r3 = build_index(settings, embedder, iter(changed), base=first)
    assert (r3.changed, r3.unchanged, r3.generation) == (1, 4, first.generation + 1)
    assert third.vectors.count() == r3.n_chunks
    c = third.store.chunks_of(bundled_documents[0].id)[0]
    assert np.array_equal(third.vectors_for([c]), first.vectors_for([c]))


def test_a_faiss_build_on_the_number_of_an_interrupted_milvus_write_drops_its_collection(
    bundled_documents, embedder, tmp_path, milvus_uri
):
    """An interrupted Milvus write keeps its collection for the next write of the same
    generation to resume. A FAISS build takes that generation number instead: the
    collection is dropped then, not left behind with nothing to resume or prune it."""
    settings = milvus_test_settings(tmp_path / "index", milvus_uri, ingest_batch_chunks=8)

    def stop(done):
        raise Interrupted

    with pytest.raises(Interrupted):
        build_index(settings, embedder, iter(bundled_documents), on_batch=stop)
    milvus = client(milvus_uri)
    interrupted = f"{settings.milvus_collection}_g000001"
    assert milvus.has_collection(interrupted)

    on_faiss = settings.model_copy(update={"store": "faiss"})
    index, _ = build_index(on_faiss, embedder, bundled_documents[:2])
    assert (index.generation, index.manifest.store) == (1, "faiss")
    assert not milvus.has_collection(interrupted)
    assert not list(settings.index_path.glob(".milvus-write-*"))

    # Back on Milvus: generation 2 gets a collection of its own, and it is the only one.
    index, _ = build_index(settings, embedder, bundled_documents[:2])
    ours = [n for n in milvus.list_collections() if n.startswith(settings.milvus_collection)]
    assert (
        ours
        == [index.manifest.store_location["collection"]]
        == [f"{settings.milvus_collection}_g000002"]
    )
    assert not list(settings.index_path.glob(".milvus-write-*"))


# Outages: a milvus-lite server in a process of its own, on a loopback port, killed and
# started again on the same data directory and port. The API runs in the test process (its
# lifespan, error handlers and routes all real), with the session's model.


class MilvusServer:
    """`python -m milvus_lite server` on a fixed loopback port and data directory."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir = data_dir
        self.log = log
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> None:
        command = [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(self.data_dir)]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("a") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"milvus-lite exited: {self.log.read_text(errors='replace')}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        pytest.fail(f"milvus-lite not listening after {timeout}s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # if paused
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def pause(self) -> None:
        """Stopped, not dead: connections stay open, nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@pytest.fixture()
def milvus_server(tmp_path) -> Iterator[MilvusServer]:
    server = MilvusServer(tmp_path / "milvus-data", tmp_path / "milvus.log")
    server.start()
    yield server
    server.kill()


@pytest.fixture()
def outage_settings(milvus_server, bundled_documents, embedder, tmp_path) -> Settings:
    """The bundled corpus indexed with its vectors on `milvus_server`."""
    settings = milvus_test_settings(tmp_path / "index", milvus_server.uri, rate_limit_per_minute=0)
    build_index(settings, embedder, bundled_documents)
    return settings


def _api(settings: Settings, embedder) -> TestClient:
    from api.main import create_app

    # Unhandled errors come back as the app's 500 response instead of raising here.
    return TestClient(create_app(settings, embedder=embedder), raise_server_exceptions=False)


def _unavailable(r: httpx.Response, code: str = "index_unavailable") -> str:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert "Traceback" not in r.text and "MilvusException" not in r.text
    error = r.json()["error"]
    assert error["code"] == code, error
    return error["message"]


def _wait_ready(api: TestClient, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (r := api.get("/ready")).status_code != 200:
        assert time.monotonic() < deadline, f"not ready after {timeout}s: {r.text}"
        time.sleep(0.25)


def _wait_answer(api: TestClient, timeout: float = 30) -> httpx.Response:
    """POST /ask until it answers; meanwhile every response is a clean 503."""
    deadline = time.monotonic() + timeout
    while (r := api.post("/ask", json={"question": CHIRCHIK})).status_code != 200:
        _unavailable(r)
        assert time.monotonic() < deadline, f"no answer after {timeout}s: {r.text}"
        time.sleep(0.25)
    return r


QUESTIONS = [("/ask", {"question": CHIRCHIK}), ("/search", {"question": CHIRCHIK, "k": 3})]


def test_a_milvus_outage_is_a_503_and_the_answers_come_back_without_a_restart(
    milvus_server, outage_settings, embedder
):
    from pymilvus.client.types import LoadState

    name = f"{outage_settings.milvus_collection}_g000001"
    with _api(outage_settings, embedder) as api:
        assert api.get("/ready").status_code == 200
        before = api.post("/ask", json={"question": CHIRCHIK})
        assert before.status_code == 200 and "molybdenum" in before.json()["answer"]

        milvus_server.kill()
        for path, body in QUESTIONS:
            r = api.post(path, json=body)
            message = _unavailable(r)
            assert "Milvus" in message and "unavailable" in message, message
            assert r.headers["retry-after"] == "5"
        assert "Milvus" in _unavailable(api.get("/ready"))

        # The same data directory and port: the client reconnects, and the first search
        # loads the collection again (a restarted milvus-lite holds it released).
        milvus_server.start()
        after = _wait_answer(api)
        assert after.json()["answer"] == before.json()["answer"]
        assert after.json()["citations"] == before.json()["citations"]
        searched = api.post("/search", json={"question": CHIRCHIK, "k": 3})
        assert searched.status_code == 200 and len(searched.json()["passages"]) == 3
        assert api.get("/ready").status_code == 200

        # A second outage, noticed by /ready alone: its probe loads the collection again.
        milvus_server.kill()
        assert "Milvus" in _unavailable(api.get("/ready"))
        milvus_server.start()
        _wait_ready(api)
        assert client(milvus_server.uri).get_load_state(name)["state"] == LoadState.Loaded
        again = api.post("/ask", json={"question": CHIRCHIK})
        assert again.status_code == 200 and again.json()["answer"] == before.json()["answer"]


def test_a_missing_collection_is_a_503(milvus_server, outage_settings, embedder):
    with _api(outage_settings, embedder) as api:
        assert api.get("/ready").status_code == 200
        name = f"{outage_settings.milvus_collection}_g000001"
        client(milvus_server.uri).drop_collection(name)
        for path, body in QUESTIONS:
            assert name in _unavailable(api.post(path, json=body))
        assert "missing" in _unavailable(api.get("/ready"))


def test_a_milvus_server_that_does_not_answer_makes_ready_503_within_the_probe_timeout(
    milvus_server, outage_settings, embedder
):
    from index.backends.milvus import PROBE_TIMEOUT_SECONDS

    with _api(outage_settings, embedder) as api:
        assert api.get("/ready").status_code == 200
        milvus_server.pause()
        started = time.monotonic()
        message = _unavailable(api.get("/ready"))
        waited = time.monotonic() - started
        assert "no answer in time" in message, message
        assert PROBE_TIMEOUT_SECONDS <= waited < PROBE_TIMEOUT_SECONDS + 5
        milvus_server.resume()
        _wait_ready(api)
        assert api.post("/ask", json={"question": CHIRCHIK}).status_code == 200


def test_a_server_started_during_an_outage_serves_once_milvus_is_back(
    milvus_server, outage_settings, embedder
):
    milvus_server.kill()
    with _api(outage_settings, embedder) as api:
        assert "Milvus" in _unavailable(api.get("/ready"), "index_not_loaded")
        _unavailable(api.post("/ask", json={"question": CHIRCHIK}), "index_not_loaded")
        milvus_server.start()
        _wait_ready(api)  # retried after api.state.RETRY_SECONDS, not only on a new generation
        r = api.post("/ask", json={"question": CHIRCHIK})
        assert r.status_code == 200 and "molybdenum" in r.json()["answer"]
