"""Answer composition: short answers for typed questions, near-duplicate sentences cited once,
confidence from dense and lexical evidence, and awkward questions (stop words only, one word,
typos). Real model, real index."""

import pytest

from index import Document
from rag.answer import question_terms, sentence_candidates, short_answer
from rag.answer.types import DATE, MONEY, NAME, NUMBER, PERCENT, PLACE, expected_type, typed_spans
from rag.engine import Engine
from rag.indexing import build_index
from rag.models import Passage
from rag.search.retrieval import corrected_query
from tests.conftest import UZBEK_DOC

STEP_DOC = "004_a42af59a74583b78"


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("When did the talks begin?", DATE),
        ("In what year was it founded?", DATE),
        ("How many countries were on the tour?", NUMBER),
        ("How much money did Korea invest?", MONEY),
        ("What percentage did trade fall?", PERCENT),
        ("Who did President Yoon meet?", NAME),
        ("Where is the center located?", PLACE),
        ("What minerals does the Chirchik center target?", None),
        ("Why does Korea need minerals?", None),
    ],
)
def test_expected_answer_type_of_questions(question, expected):
    assert expected_type(question) == expected


def test_typed_spans_find_dates_amounts_and_names():
    sentence = "On March 25, 2024, trade fell 13.3 percent to $695 million, Shavkat Mirziyoyev said"
    found = {(s.text, s.type) for s in typed_spans(sentence)}
    assert ("March 25, 2024", DATE) in found
    assert ("13.3 percent", PERCENT) in found
    assert ("$695 million", MONEY) in found
    assert ("Shavkat Mirziyoyev", NAME) in found


def test_short_answer_only_when_one_span_of_the_type_is_there():
    one = "In January 2021, negotiations for the agreement officially began."
    assert short_answer("When did negotiations begin?", one) == "January 2021"
    two = "Talks began in January 2021 and ended in May 2023."
    assert short_answer("When did negotiations begin?", two) is None
    assert short_answer("What did they discuss?", one) is None  # not a typed question
    # a date that is already in the question is not its answer
    assert short_answer("What happened in January 2021?", one) is None


def test_typed_question_gets_a_short_answer_and_keeps_the_sentence_as_quote(sentence_engine):
    engine = sentence_engine
    r = engine.ask("When did negotiations for the Korea-Uzbekistan free trade agreement begin?")
    assert r.answerable
    assert r.short_answer == "January 2021"
    quote = r.citations[0].quote
    assert r.short_answer in quote and len(quote) > 3 * len(r.short_answer)
    assert r.answer == quote
    c = r.citations[0]
    assert engine.document(c.doc_id).text[c.start : c.end] == quote


def test_untyped_question_has_no_short_answer(sentence_engine):
    r = sentence_engine.ask("What minerals does the Chirchik center target?")
    assert r.answerable and r.short_answer is None
    assert "molybdenum" in r.answer


@pytest.fixture(scope="module")
def twin_engine(tmp_path_factory, embedder):
    """Two articles reporting the same meeting with the same sentence, and an unrelated one."""
    meeting = (
        "Finance ministers Alma Beke and Dana Ruslan signed a water agreement in Astana on "
        "Tuesday, committing 40 million dollars to irrigation canals."
    )
    documents = [
        Document(
            id="wire-a",
            title="Ministers sign water pact",
            text=f"Ministers sign water pact\n\n{meeting} The canals will serve southern farms.",
        ),
        Document(  # a paged one (as from a PDF): the title on page 1, the story on page 2
            id="wire-b",
            title="Water pact signed in Astana",
            text=f"Water pact signed in Astana\n\nOfficials met for two days. {meeting} "
            "Critics said the sum was too small.",
            pages=(0, len("Water pact signed in Astana\n\n")),
        ),
        Document(
            id="other",
            title="Football",
            text="Football\n\nThe national football team won its qualifying match 2-0 on Sunday.",
        ),
    ]
    from rag.config import Settings

    settings = Settings(index_path=tmp_path_factory.mktemp("twins") / "index")
    build_index(settings, embedder, documents)
    return Engine.load(settings, embedder=embedder)


def test_near_duplicate_sentence_is_cited_once_with_the_other_source_listed(twin_engine):
    r = twin_engine.ask("Who signed the water agreement in Astana?", k=5)
    assert r.answerable
    assert len(r.citations) == 1
    cited = r.citations[0]
    assert "water agreement" in cited.quote
    assert [c.doc_id for c in cited.corroborated_by] == [
        ({"wire-a", "wire-b"} - {cited.doc_id}).pop()
    ]
    other = cited.corroborated_by[0]
    assert twin_engine.document(other.doc_id).text[other.start : other.end] == other.quote
    assert other.quote == cited.quote
    # both quotes carry their page: the story of wire-b is on its page 2, wire-a has none
    assert {q.doc_id: q.page for q in (cited, other)} == {"wire-a": None, "wire-b": 2}


def test_several_sentences_skip_near_duplicates(twin_engine):
    from rag.answer import compose_answer

    passages = twin_engine.retrieve("Who signed the water agreement in Astana?", k=5)
    composed = compose_answer(
        "Who signed the water agreement in Astana?", passages, min_score=0.0, max_sentences=3
    )
    quotes = [c.quote for c in composed.citations]
    assert len(quotes) == len(set(quotes))


@pytest.mark.parametrize("question", ["what is it?", "the", "a an the of", "?!", "who?"])
def test_stop_word_questions_abstain_without_error(sentence_engine, question):
    r = sentence_engine.ask(question)
    assert r.answerable is False and r.answer is None and r.citations == []
    assert r.confidence < sentence_engine.settings.min_score


@pytest.mark.parametrize("word", ["tungsten", "Chirchik"])
def test_one_word_question_naming_something_in_the_corpus_is_answered(sentence_engine, word):
    r = sentence_engine.ask(word)
    assert r.answerable
    assert r.citations[0].doc_id == UZBEK_DOC
    assert word.lower() in r.citations[0].quote.lower()


def test_one_word_question_about_nothing_in_the_corpus_abstains(sentence_engine):
    assert sentence_engine.ask("pizza").answerable is False


def test_misspelt_rare_name_reaches_bm25(sentence_engine):
    question = "Wat mineralz does the Chirchk centre targit?"
    assert "chirchik" in corrected_query(sentence_engine.index, question).split()
    assert corrected_query(sentence_engine.index, "What minerals does Chirchik target?").endswith(
        "target?"
    )
    bm25_only = sentence_engine.retrieve(question, mode="bm25")
    assert bm25_only and bm25_only[0].doc_id == UZBEK_DOC


def test_misspelt_question_is_answered_from_the_right_article(sentence_engine):
    r = sentence_engine.ask("Wat mineralz does the Chirchk centre targit?")
    assert r.answerable
    assert r.citations[0].doc_id == UZBEK_DOC
    assert "Chirchik" in r.citations[0].quote


def _passage(text: str, doc_id: str = "d", rank: int = 1) -> Passage:
    return Passage(
        rank=rank,
        chunk_id=f"{doc_id}:0",
        doc_id=doc_id,
        title="t",
        start=0,
        end=len(text),
        text=text,
        score=0.5,
    )


def test_misspelt_question_terms_are_corrected_to_one_candidate_term_only():
    one = sentence_candidates([_passage("The Chirchik center targets tungsten.")])
    assert "chirchik" in question_terms("What does the chirchk center target?", one)
    # two candidate terms one edit away: ambiguous, the question's word is kept
    two = sentence_candidates(
        [_passage("Exports of tungsten rose."), _passage("Tungstex was named.", doc_id="e")]
    )
    terms = question_terms("How much tungstem is exported?", two)
    assert "tungstem" in terms and not {"tungsten", "tungstex"} & terms
    # the analysis of a passage is kept between questions, and answers stay the same
    again = sentence_candidates([_passage("The Chirchik center targets tungsten.")])
    assert [(c.start, c.end, c.terms) for c in again] == [(c.start, c.end, c.terms) for c in one]
