"""Dense, BM25 and hybrid retrieval (`rank_chunks`, `Engine.retrieve`) on a tiny real index
built here with the real model: five one-chunk articles with dates. What dense search misses
and BM25 finds reaches the hybrid; every candidate is scored exactly on both signals; `k` cuts
one ranking; filters hold for both signals; misspelt rare words still reach BM25."""

from __future__ import annotations

import pytest

from index import Chunk, Document
from rag.config import Settings
from rag.engine import Engine
from rag.indexing import build_index
from rag.models import Filters, Passage
from rag.search.retrieval import MODES, Vocabulary, corrected_query, rank_chunks

DOCS = [
    Document(
        id="reservoir",
        title="Kair reservoir",
        date="2023-04-02",
        text="Kair reservoir\n\nThe Kair reservoir holds 40 million cubic metres of water and "
        "supplies the town with drinking water through a pipeline built in 1968.",
    ),
    Document(
        id="bridge",
        title="Council votes on the bridge",
        date="2024-02-10",
        text="Council votes on the bridge\n\nThe town council voted nine to two on Tuesday to "
        "rebuild the old stone bridge over the river before winter.",
    ),
    Document(
        id="quarry",
        title="Valley quarry ships granite",
        date="2024-06-01",
        text="Valley quarry ships granite\n\nThe valley quarry shipped 48,000 tonnes of granite "
        "to the port of Marlow, where barges carried it on to the capital.",
    ),
    Document(
        id="permit",
        title="Dredging permit granted",
        date="2024-07-15",
        text="Dredging permit granted\n\nThe harbour board granted the dredging permit to "
        "Vennor, a marine contractor from Fallow Bay, on Friday.",
    ),
    Document(
        id="library",
        title="Library reopens",
        date="2022-11-20",
        text="Library reopens\n\nThe public library reopened on Saturday after a year of roof "
        "repairs, with a new reading room for children.",
    ),
]
ALL = len(DOCS)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, embedder) -> Engine:
    settings = Settings(index_path=tmp_path_factory.mktemp("tiny") / "index")
    index, _ = build_index(settings, embedder, DOCS)
    assert len(index) == ALL  # one chunk each
    return Engine(settings, index, embedder, reader=None)


def ranked(engine: Engine, question: str, k: int = ALL, **kwargs):
    vector = engine.embedder.encode_query(question)
    return rank_chunks(engine.index, question, vector, k, **kwargs)


def chunk_of(engine: Engine, passage: Passage) -> Chunk:
    return engine.index.store.get_chunk(passage.chunk_id)


def docs(results) -> list[str]:
    return [r.doc_id for r in results]


def test_a_word_dense_search_misses_is_found_by_bm25_and_ranked_first_by_the_hybrid(tiny):
    # "Tuesday" is in the bridge article only; to the dense model the word says little
    dense = ranked(tiny, "Tuesday", mode="dense")
    assert docs(dense).index("bridge") >= 3, [(r.doc_id, r.score) for r in dense]
    assert docs(ranked(tiny, "Tuesday", mode="bm25")) == ["bridge"]  # the one sharing a term
    [first] = ranked(tiny, "Tuesday", k=1, mode="hybrid")
    assert first.doc_id == "bridge"
    assert (first.dense_rank, first.bm25_rank) == (docs(dense).index("bridge") + 1, 1)


def test_a_candidate_from_one_list_is_scored_exactly_on_the_other(tiny):
    """With depth 1 each signal brings its best chunk: dense the permit article, BM25 the
    bridge one. Each is scored on both signals (not 0 where the other list did not have it),
    and with two candidates the dense weight decides."""
    vector = tiny.embedder.encode_query("Tuesday")
    assert docs(ranked(tiny, "Tuesday", k=1, mode="dense")) == ["permit"]
    assert docs(ranked(tiny, "Tuesday", k=1, mode="bm25")) == ["bridge"]

    [dense_side] = ranked(tiny, "Tuesday", k=1, depth=1, dense_weight=0.6)
    assert dense_side.doc_id == "permit"
    assert dense_side.score == pytest.approx(0.6)  # best of two on dense, worst on BM25
    assert dense_side.bm25_score == 0.0 and (dense_side.dense_rank, dense_side.bm25_rank) == (1, 2)

    [lexical_side] = ranked(tiny, "Tuesday", k=1, depth=1, dense_weight=0.4)
    assert lexical_side.doc_id == "bridge"
    assert lexical_side.score == pytest.approx(0.6)
    exact = float(tiny.index.vectors_for([chunk_of(tiny, lexical_side)])[0] @ vector)
    assert exact != 0.0 and lexical_side.dense_score == pytest.approx(exact, abs=1e-6)
    assert (lexical_side.dense_rank, lexical_side.bm25_rank) == (2, 1)


@pytest.mark.parametrize("question", ["water for the harbour", "Tuesday", "granite shipped"])
def test_every_candidate_carries_both_exact_scores_and_its_rank_by_each(tiny, question):
    vector = tiny.embedder.encode_query(question)
    results = ranked(tiny, question, mode="hybrid")
    assert sorted(docs(results)) == sorted(d.id for d in DOCS)  # depth 50: every chunk
    lexical = {h.chunk.id: h.score for h in tiny.index.search_lexical(question, ALL)}
    for r in results:
        exact = float(tiny.index.vectors_for([chunk_of(tiny, r)])[0] @ vector)
        assert r.dense_score == pytest.approx(exact, abs=1e-6), r.chunk_id
        assert r.bm25_score == pytest.approx(lexical.get(r.chunk_id, 0.0)), r.chunk_id
    for rank, score in (("dense_rank", "dense_score"), ("bm25_rank", "bm25_score")):
        by_rank = sorted(results, key=lambda r, rank=rank: getattr(r, rank))
        assert [getattr(r, rank) for r in by_rank] == list(range(1, ALL + 1)), rank
        in_rank_order = [getattr(r, score) for r in by_rank]
        assert in_rank_order == sorted(in_rank_order, reverse=True), rank


@pytest.mark.parametrize("mode", MODES)
def test_k_cuts_one_ranking_best_first(tiny, mode):
    question = "water for the harbour"  # BM25: the reservoir ("water") and the permit ("harbour")
    longest = ranked(tiny, question, k=ALL + 1, mode=mode)
    assert len(longest) == (2 if mode == "bm25" else ALL)
    scores = [r.score for r in longest]
    assert scores == sorted(scores, reverse=True)
    for r in longest:
        if mode == "dense":
            assert r.score == r.dense_score
        elif mode == "bm25":
            assert r.score == r.bm25_score > 0
    for k in range(1, ALL + 1):
        got = ranked(tiny, question, k=k, mode=mode)
        assert [r.chunk_id for r in got] == [r.chunk_id for r in longest[:k]], k


def test_hybrid_weights_move_the_ranking_between_the_signals(tiny):
    question = "Tuesday"
    dense_order = docs(ranked(tiny, question, mode="dense"))
    assert docs(ranked(tiny, question, dense_weight=1.0)) == dense_order
    # all weight on BM25: the one chunk sharing a term first, then the others (all zero on BM25)
    # in the order they came as candidates, which is the dense order
    assert docs(ranked(tiny, question, dense_weight=0.0)) == ["bridge"] + [
        d for d in dense_order if d != "bridge"
    ]
    # reciprocal rank fusion: the reported ranks are the ones it fused
    rrf = ranked(tiny, question, fusion="rrf", dense_weight=0.5)
    for r in rrf:
        expected = 0.5 / (60 + r.dense_rank) + 0.5 / (60 + r.bm25_rank)
        assert r.score == pytest.approx(expected, abs=1e-6)  # passages round to 6 places
    assert [r.score for r in rrf] == sorted((r.score for r in rrf), reverse=True)


def test_filters_by_document_and_date_hold_for_every_mode(tiny):
    for mode in MODES:
        only = tiny.retrieve("Tuesday", k=ALL, mode=mode, filters=Filters(doc_ids=["library"]))
        assert [p.doc_id for p in only] == ([] if mode == "bm25" else ["library"]), mode
    since = tiny.retrieve("water for the harbour", k=ALL, filters=Filters(date_from="2024-01-01"))
    assert sorted(p.doc_id for p in since) == ["bridge", "permit", "quarry"]
    assert all(p.date >= "2024-01-01" for p in since)
    until = tiny.retrieve("water for the harbour", k=ALL, filters=Filters(date_to="2023-12-31"))
    assert sorted(p.doc_id for p in until) == ["library", "reservoir"]
    window = Filters(date_from="2024-01-01", date_to="2024-06-30", doc_ids=["quarry", "permit"])
    assert [p.doc_id for p in tiny.retrieve("granite", k=ALL, filters=window)] == ["quarry"]
    assert tiny.retrieve("granite", k=ALL, filters=Filters(date_from="2030-01-01")) == []


@pytest.mark.parametrize("mode", ["dense", "bm25"])
def test_a_filter_keeps_the_unfiltered_order_of_what_it_allows(tiny, mode):
    """Dense and BM25 scores do not depend on the other candidates: filtering removes
    chunks from the ranking and leaves the rest in their order, with their scores."""
    question = "water for the harbour"
    everything = ranked(tiny, question, mode=mode)
    allowed = tiny.index.store.vector_ids_where(doc_ids=["permit", "bridge", "reservoir"])
    filtered = ranked(tiny, question, mode=mode, allowed_ids=allowed)
    kept = [r for r in everything if chunk_of(tiny, r).vector_id in set(allowed)]
    assert [r.chunk_id for r in filtered] == [r.chunk_id for r in kept]
    assert [r.score for r in filtered] == pytest.approx([r.score for r in kept], abs=2e-6)
    assert len(filtered) == {"dense": 3, "bm25": 2}[mode]  # BM25: only these share a term
    assert ranked(tiny, question, mode=mode, allowed_ids=[]) == []


def test_a_misspelt_rare_word_reaches_bm25(tiny):
    assert corrected_query(tiny.index, "Vennorr") == "Vennorr vennor"
    assert docs(ranked(tiny, "Vennorr", mode="bm25")) == ["permit"]
    assert corrected_query(tiny.index, "Vennor") == "Vennor"  # an indexed term stays alone
    assert corrected_query(tiny.index, "Who is Vennorr?") == "Who is Vennorr? vennor"
    assert corrected_query(tiny.index, "Kiar") == "Kiar"  # short words are left as they are


def test_unknown_modes_are_refused(tiny):
    with pytest.raises(ValueError, match="unknown retrieval mode 'psychic'"):
        ranked(tiny, "Tuesday", mode="psychic")
    with pytest.raises(ValueError, match="unknown fusion 'max'"):
        ranked(tiny, "Tuesday", fusion="max")


def test_the_vocabulary_corrects_one_edit_to_the_most_frequent_term():
    vocab = Vocabulary({"tungsten": 9, "tungstan": 2, "molybdenum": 2, "lithium": 1})
    assert vocab.correct("tungsten") is None  # indexed
    assert vocab.correct("tungstin") == "tungsten"  # one edit from two terms: the frequent one
    assert vocab.correct("molybdenium") == "molybdenum"  # an insertion
    assert vocab.correct("molbdenum") == "molybdenum"  # a deletion
    assert vocab.correct("lithiun") == "lithium"  # a substitution, at the shortest length
    assert vocab.correct("lithum") is None  # six letters: too short to correct
    assert vocab.correct("tungstxx") is None  # two edits away
    # equally frequent: the first in alphabetical order, whatever the order of the set
    tie = Vocabulary({"tungsten": 2, "tungstan": 2})
    assert tie.correct("tungstin") == "tungstan"
    assert Vocabulary({}).correct("tungstin") is None
