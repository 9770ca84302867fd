import pytest

from rag.errors import InvalidQuestion, QuestionTooLong
from tests.conftest import CHIRCHIK, UZBEK_DOC


def test_chirchik_question_answers_with_the_minerals_and_cites_the_article(any_engine):
    r = any_engine.ask(CHIRCHIK)
    assert r.answerable
    assert "molybdenum" in r.answer and "tungsten" in r.answer
    assert r.citations and r.citations[0].doc_id == UZBEK_DOC
    assert "Chirchik" in r.citations[0].quote


def test_every_citation_and_passage_quotes_its_document_exactly(any_engine):
    for question in [CHIRCHIK, "What did Yoon sign in Kazakhstan?", "trade volume"]:
        r = any_engine.ask(question)
        for c in r.citations:
            assert any_engine.document(c.doc_id).text[c.start : c.end] == c.quote
        for p in r.passages:
            assert any_engine.document(p.doc_id).text[p.start : p.end] == p.text


def test_off_corpus_question_is_not_answered(any_engine):
    # (A near miss such as "What is the capital of Turkmenistan?" names words the corpus
    # holds and is answered; eval/README.md, Abstention.)
    r = any_engine.ask("What is the boiling point of water in degrees Fahrenheit?")
    assert r.answerable is False
    assert r.answer is None and r.citations == []
    assert r.passages  # what was retrieved is still shown


def test_passages_are_ranked_and_timed(any_engine):
    r = any_engine.ask(CHIRCHIK, k=3)
    assert [p.rank for p in r.passages] == [1, 2, 3]
    scores = [p.score for p in r.passages]
    assert scores == sorted(scores, reverse=True)
    assert {"embed", "search", "total"} <= set(r.timings_ms)
    assert ("read" if r.answer_mode == "reader" else "compose") in r.timings_ms


@pytest.mark.parametrize("question", ["", "   ", "\n\t"])
def test_empty_question_is_refused(engine, question):
    with pytest.raises(InvalidQuestion, match="empty"):
        engine.ask(question)


def test_huge_question_is_refused(engine):
    with pytest.raises(QuestionTooLong):
        engine.ask("why " * 1000)


def test_odd_but_valid_questions_work(engine):
    for q in ["🙂 molybdenum?", "tungsten\x00\x07 Chirchik", "x" * 1500, "Ünïcödé Çhîrçhîk"]:
        r = engine.ask(q)
        if r.answerable:  # an answer is cited by a sentence that holds it
            assert r.answer and r.citations and r.answer in r.citations[0].quote, r
        else:  # a refusal says why and cites nothing
            assert r.answer is None and not r.citations and r.reason, r


def test_repeated_questions_reuse_the_cached_embedding(embedder, monkeypatch):
    a = embedder.encode_query("cache me")
    assert embedder.encode_query("cache me") is a
    assert not a.flags.writeable
    monkeypatch.setattr(embedder, "cache_size", 3)
    for i in range(5):
        embedder.encode_query(f"question {i}")
    assert list(embedder._cache)[-3:] == ["question 2", "question 3", "question 4"]
    assert len(embedder._cache) <= 3


@pytest.fixture(scope="module")
def pdf_engine(tmp_path_factory, embedder):
    """An index of a folder holding the two-page quarry PDF and two text articles."""
    from rag.config import Settings
    from rag.engine import Engine
    from rag.indexing import build_index
    from tests.conftest import write_corpus
    from tests.making import quarry_pdf, write

    folder = tmp_path_factory.mktemp("pdf-corpus")
    write(folder / "quarry.pdf", quarry_pdf())
    write_corpus(
        folder,
        {
            "bridge.txt": "Council votes on the bridge\n\nThe town council voted nine to two "
            "on Tuesday to rebuild the old stone bridge over the river before winter.",
            "library.txt": "Library reopens\n\nThe public library reopened on Saturday after "
            "a year of repairs to its roof, with a new reading room for children.",
        },
    )
    settings = Settings(index_path=folder.parent / f"{folder.name}-index", corpus_dir=folder)
    from rag.ingest.documents import load_corpus

    build_index(settings, embedder, load_corpus(folder))
    return Engine.load(settings, embedder=embedder)


@pytest.mark.parametrize("answer_mode", ["reader", "sentence"])
def test_an_answer_from_a_pdf_s_second_page_cites_page_2(pdf_engine, answer_mode):
    from rag.evaluation.retrieval import engine_variant
    from tests.making import QUARRY_ANSWER_SENTENCE, QUARRY_QUESTION

    engine = engine_variant(pdf_engine, answer_mode=answer_mode)
    r = engine.ask(QUARRY_QUESTION)
    assert r.answerable and "48,000" in r.answer, r
    cited = r.citations[0]
    assert cited.doc_id == "quarry" and cited.page == 2
    doc = engine.document("quarry")
    assert doc.pages is not None and len(doc.pages) == 2
    page_2 = doc.text[doc.pages[1] :]
    assert cited.quote in page_2 and QUARRY_ANSWER_SENTENCE in cited.quote
    assert doc.text[cited.start : cited.end] == cited.quote
    # passages of the PDF carry their page; the text articles have none
    for p in r.passages:
        assert (p.page is not None) == (p.doc_id == "quarry")
        if p.page is not None:
            assert p.page == (1 if p.start < doc.pages[1] else 2)
