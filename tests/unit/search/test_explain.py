"""Why retrieved / why missed: `Engine.explain`, `rag explain` and POST /explain on the
bundled corpus (the HTTP tests against a real uvicorn server)."""

from __future__ import annotations

import shutil

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from index import UnknownDocument
from index.analysis import analyze
from rag.cli import main
from rag.search.explain import competition_ranks, diagnose
from tests.conftest import CHIRCHIK, UZBEK_DOC
from tests.servers import start_api, wait_until

# Ranked 4th for CHIRCHIK in hybrid mode: retrieved at k 5, missed at k 3.
YOON_DOC = "004_a42af59a74583b78"


def test_competition_ranks_share_ties():
    assert competition_ranks(np.array([0.5, 2.0, 0.5, 1.0])).tolist() == [3, 1, 3, 2]


def test_diagnose_names_the_signal_that_lost_it():
    common = dict(mode="hybrid", k=5, pool=50, bm25_score=1.0)
    assert diagnose(rank=2, dense_rank=1, bm25_rank=9, **common)[0] == []
    assert diagnose(rank=None, dense_rank=80, bm25_rank=60, **common)[0] == ["dense", "bm25"]
    assert diagnose(rank=7, dense_rank=2, bm25_rank=30, **common)[0] == ["bm25"]
    assert diagnose(rank=6, dense_rank=3, bm25_rank=4, **common)[0] == ["fusion"]
    lost, reason = diagnose(
        mode="bm25", k=5, pool=5, rank=None, dense_rank=1, bm25_rank=9, bm25_score=0.0
    )
    assert lost == ["bm25"] and "no term" in reason


def test_gold_document_of_a_known_question_shows_its_rank(engine):
    r = engine.explain(CHIRCHIK, gold=UZBEK_DOC)
    assert r.gold is not None and r.gold.kind == "document"
    assert r.gold.retrieved and r.gold.rank == 1 and r.gold.doc_rank == 1
    assert r.gold.lost_by == []
    assert r.gold.chunk.chunk_id == r.passages[0].chunk_id
    assert r.n_searched == len(engine.index)


def test_explained_passages_are_the_retrieved_ones_with_their_signals(engine):
    r = engine.explain(CHIRCHIK, k=5)
    search = engine.search(CHIRCHIK, k=5)
    assert [p.chunk_id for p in r.passages] == [p.chunk_id for p in search.passages]
    assert r.query_terms == analyze(CHIRCHIK)
    for e, p in zip(r.passages, search.passages, strict=True):
        assert e.retrieved and e.candidate and e.rank == p.rank
        assert e.dense_score == pytest.approx(p.dense_score, abs=1e-5)
        assert e.bm25_score == pytest.approx(p.bm25_score, abs=1e-4)
        # "matches" means what BM25 saw: the analysed terms, each term's share sums to the score
        assert set(e.matched_terms) == set(r.query_terms) & set(analyze(e.text))
        assert sum(e.term_scores.values()) == pytest.approx(e.bm25_score, rel=1e-4, abs=1e-5)
    assert "chirchik" in r.passages[0].matched_terms
    # ranks over every chunk: the best dense passage is dense rank 1
    assert min(e.dense_rank for e in r.passages) == 1


def test_a_missed_gold_gets_the_rank_it_actually_came(engine):
    missed = engine.explain(CHIRCHIK, k=3, gold=YOON_DOC).gold
    assert missed is not None and not missed.retrieved
    assert missed.rank is not None and missed.rank > 3 and missed.lost_by
    # the rank the explanation gives is where the real retrieval puts it
    deeper = engine.search(CHIRCHIK, k=missed.rank).passages
    assert deeper[missed.rank - 1].chunk_id == missed.chunk.chunk_id
    dense_only = engine.explain(CHIRCHIK, k=1, mode="dense", gold=YOON_DOC).gold
    assert dense_only.lost_by == ["dense"] and dense_only.rank == dense_only.chunk.dense_rank


def test_gold_chunk_and_filtered_out_gold(engine):
    from rag.models import Filters

    chunk = engine.explain(CHIRCHIK, gold=f"{UZBEK_DOC}:3").gold
    assert chunk.kind == "chunk" and chunk.rank == 1
    filtered = engine.explain(CHIRCHIK, gold=UZBEK_DOC, filters=Filters(doc_ids=[YOON_DOC])).gold
    assert filtered.lost_by == ["filters"] and not filtered.retrieved


def test_unknown_gold_is_an_error(engine):
    with pytest.raises(UnknownDocument):
        engine.explain(CHIRCHIK, gold="no-such-document")


def test_cli_explain(embedder, bundled_settings):
    runner = CliRunner()
    args = ["explain", CHIRCHIK, "--gold", UZBEK_DOC, "--index", str(bundled_settings.index_path)]
    result = runner.invoke(main, args, obj={"embedder": embedder})
    assert result.exit_code == 0, result.output
    assert "gold document 001_747dad745748a0c8: retrieved" in result.output
    assert "chirchik" in result.output
    bad = runner.invoke(main, [*args[:2], "--gold", "nope", *args[4:]])
    assert bad.exit_code == 1 and "no chunk or document with id 'nope'" in bad.output


@pytest.fixture(scope="module")
def server(bundled_settings, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("explain-api")
    shutil.copytree(bundled_settings.index_path, tmp / "index")
    s = start_api(tmp, "explain", RAG_INDEX_PATH=str(tmp / "index"))
    try:
        wait_until(s, "/ready")
        yield s
    finally:
        s.process.terminate()
        s.process.wait(timeout=30)


def test_post_explain(server, engine):
    with server.client() as client:
        r = client.post("/explain", json={"question": CHIRCHIK, "k": 3, "gold": YOON_DOC})
        assert r.status_code == 200, r.text
        body = r.json()
        local = engine.explain(CHIRCHIK, k=3, gold=YOON_DOC)
        assert [p["chunk_id"] for p in body["passages"]] == [p.chunk_id for p in local.passages]
        assert body["gold"]["rank"] == local.gold.rank and body["gold"]["lost_by"]
        unknown = client.post("/explain", json={"question": CHIRCHIK, "gold": "nope"})
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "unknown_document"
        long = client.post("/explain", json={"question": "x" * 2001})
        assert long.status_code == 413 and long.json()["error"]["code"] == "question_too_long"
        assert client.post("/explain", json={"question": CHIRCHIK, "k": 0}).status_code == 422
        metrics = client.get("/metrics").text
        assert 'route="/explain"' in metrics
        assert "/explain" in client.get("/openapi.json").json()["paths"]


def test_ask_over_http_carries_support(server):
    body = httpx.post(server.url + "/ask", json={"question": CHIRCHIK}, timeout=60).json()
    assert body["citations"][0]["supported"] is True
    assert body["support"][0]["citation_ids"] == [1]


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_rebuilt_ranking_agrees_with_retrieval(engine, mode):
    from index.records import vector_id
    from rag.config import PROJECT_ROOT
    from rag.evaluation.data import load_bundled
    from rag.search.explain import rank_everything

    items = load_bundled(PROJECT_ROOT / "eval" / "bundled.jsonl")[:20]
    for item in items:
        passages = engine.search(item.question, k=10, mode=mode).passages
        rankings = rank_everything(
            engine.index,
            item.question.strip(),
            engine.embedder.encode_query(item.question.strip()),
            k=10,
            mode=mode,
            settings=engine.settings,
        )
        positions = engine.index.lexical.positions([vector_id(p.chunk_id) for p in passages])
        rebuilt = [rankings.mode_rank.get(int(pos)) for pos in positions]
        assert rebuilt == [p.rank for p in passages], item.id
