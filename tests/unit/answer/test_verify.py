"""Citation support of the sentence method (rag.answer.verify): real answers on the bundled corpus,
their citations checked, and the same answers with the citation swapped for an unrelated
chunk. The reader's support is tested in test_reader.py."""

from __future__ import annotations

import pytest

from rag.answer.verify import check_support, claims, support_score, term_recall
from tests.conftest import CHIRCHIK, UZBEK_DOC


def test_term_recall_and_score_are_bounded():
    assert term_recall("molybdenum and tungsten", "securing molybdenum and tungsten") == 1.0
    assert term_recall("molybdenum and tungsten", "a cooking recipe") == 0.0
    assert term_recall("and the of", "anything") is None
    idf = {"tungsten": 3.0, "korea": 1.0}.get  # a missing rare term costs more
    assert term_recall("tungsten Korea", "Korea", weight=idf) == 0.25
    assert support_score("a b c", "x", -0.3) == 0.0  # stop words only: the cosine, clipped
    assert 0.0 <= support_score("molybdenum", "tungsten", 0.4) <= 1.0


def test_claims_follow_markers_then_order():
    two = claims("Tungsten is mined. [2] Molybdenum too. [1]", [1, 2])
    assert [c.text for c in two] == ["Tungsten is mined.", "Molybdenum too."]
    assert [c.citation_ids for c in two] == [(2,), (1,)]
    assert [c.citation_ids for c in claims("One. Two.", [1, 2])] == [(1,), (2,)]
    assert [c.citation_ids for c in claims("One. Two. Three.", [1, 2])] == [(1, 2)] * 3


def test_real_answer_is_supported(sentence_engine):
    r = sentence_engine.ask(CHIRCHIK)
    assert r.answerable and r.citations
    threshold = sentence_engine.settings.min_support
    assert all(c.supported is True and c.support >= threshold for c in r.citations)
    assert r.support and all(s.supported for s in r.support)
    assert r.support[0].citation_ids == [r.citations[0].id]


def test_citation_swapped_for_unrelated_chunk_is_flagged(sentence_engine):
    r = sentence_engine.ask(CHIRCHIK)
    cited = r.citations[0]
    unrelated = [
        c
        for _, c in sentence_engine.index.store.iter_chunks()
        if c.doc_id != UZBEK_DOC and "Chirchik" not in c.text
    ]
    assert len(unrelated) >= 10
    for chunk in unrelated:
        swapped = cited.model_copy(update={"quote": chunk.text, "chunk_id": chunk.id})
        checked = sentence_engine.check_support(r.answer, [swapped])
        assert checked.citations[0].supported is False, (chunk.id, checked.citations[0].support)
        assert checked.sentences[0].supported is False


def test_short_answer_inside_its_quote_is_supported(sentence_engine):
    r = sentence_engine.ask(CHIRCHIK)
    checked = sentence_engine.check_support("molybdenum and tungsten", r.citations)
    assert checked.citations[0].supported is True


def test_check_can_be_turned_off(sentence_engine):
    from rag.evaluation.retrieval import engine_variant

    r = engine_variant(sentence_engine, verify_citations=False).ask(CHIRCHIK)
    assert r.support is None
    assert r.citations and all(c.supported is None and c.support is None for c in r.citations)
    assert "verify" not in r.timings_ms


def test_no_answer_no_check(sentence_engine):
    out = check_support(None, [], lambda texts: pytest.fail("no embedding needed"), min_support=0.5)
    assert out.citations == [] and out.sentences == []
