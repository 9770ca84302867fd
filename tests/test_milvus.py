"""The Milvus vector store (milvus-lite): same results as FAISS, filters in the database,
the manifest rules against the collection, resumable streaming ingestion, and the
issue's commands end to end (`rag index --store milvus`, `rag serve --store milvus`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import numpy as np
import pytest

from index import ChunkFilter, Index, IndexCorrupt, IndexMismatch, IndexNotFound
from index.milvus_store import MilvusStore, client
from rag.config import PROJECT_ROOT, Settings
from rag.engine import Engine
from rag.evaluation.data import load_bundled
from rag.indexing import build_index
from rag.writer import Writer
from tests.conftest import CHIRCHIK, UZBEK_DOC, milvus_test_settings

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
    from tests.test_api import _start, _wait

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
    server = _start(
        tmp_path,
        "milvus",
        serve_args=["--store", "milvus", "--milvus-uri", str(tmp_path / "milvus.db")]
        + ["--index", str(tmp_path / "index")],
    )
    try:
        _wait(server, "/ready")
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
