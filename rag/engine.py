"""The question-answering engine: one embedding model and one loaded index generation, read
only (ask, search, explain, inspect); writes are rag/writer.py's.

An `Engine` is safe to share between threads. Each call reads `self.index` once, so a
concurrent `swap_index` is seen either entirely or not at all by a request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from index import ChunkFilter, Index, vectors
from index.records import page_at
from rag.answer import compose_answer, generated, load_reader
from rag.answer.generated import generate_answer
from rag.answer.generator import Completion, Generator, GeneratorBadResponse, GeneratorError
from rag.answer.reader import Reader
from rag.answer.reading import answer_support, read_answer
from rag.answer.verify import SupportCheck, check_support
from rag.config import BUNDLED_CORPUS, BUNDLED_EXAMPLES, Settings
from rag.embed.embedding import Embedder
from rag.errors import InvalidParameter, InvalidQuestion, QuestionTooLong
from rag.indexing import index_stats, load_index
from rag.models import (
    AskResponse,
    ChunkDetail,
    Citation,
    DocumentDetail,
    DocumentInfo,
    ExplainResponse,
    Filters,
    IndexStats,
    Passage,
    Quote,
    SearchResponse,
)
from rag.search.retrieval import MODES, rank_chunks

logger = logging.getLogger(__name__)

RETRIEVAL_MODES = MODES


class Engine:
    def __init__(
        self,
        settings: Settings,
        index: Index,
        embedder: Embedder,
        reader: Reader | None | bool = True,
    ):
        """`reader`: a loaded reader, None for the sentence method, or True (the default) for
        the one the settings name (loaded once per process and shared)."""
        self.settings = settings
        self.index = index
        self.embedder = embedder
        self.reader = load_reader(settings) if reader is True else reader or None
        self._generator: Generator | None = None
        self._generator_lock = threading.Lock()
        self._examples: dict[int, bool] = {}  # generation -> holds the bundled corpus
        # FAISS OpenMP threads per request thread (the server sets it; None: FAISS's default)
        self.search_threads: int | None = None

    @classmethod
    def load(cls, settings: Settings, embedder: Embedder | None = None) -> Engine:
        """Load the index at `settings.index_path` and the model it was built with (or the
        configured one, which must match)."""
        index = load_index(settings, model=_configured_model(settings))
        if embedder is None:
            embedder = Embedder.from_settings(
                settings, settings.model or index.manifest.model, queries=True
            )
        index.check_compatible(model=embedder.name, dimension=embedder.dimension)
        return cls(settings, index, embedder)

    # questions
    def validate_question(self, question: str) -> str:
        if not isinstance(question, str) or not question.strip():
            raise InvalidQuestion("the question is empty")
        if len(question) > self.settings.max_question_chars:
            raise QuestionTooLong(
                f"the question has {len(question)} characters; the limit is "
                f"{self.settings.max_question_chars}"
            )
        return question.strip()

    def _k(self, k: int | None) -> int:
        k = self.settings.k if k is None else k
        if k < 1 or k > self.settings.max_k:
            raise InvalidParameter(f"k must be between 1 and {self.settings.max_k}")
        return k

    def retrieve(
        self,
        question: str,
        k: int | None = None,
        filters: Filters | None = None,
        *,
        index: Index | None = None,
        timings: dict[str, float] | None = None,
        mode: str | None = None,
    ) -> list[Passage]:
        """Top-k passages for `question`. `mode`: one of RETRIEVAL_MODES (default: settings)."""
        index = index or self.index
        mode = mode or self.settings.retrieval_mode
        if mode not in RETRIEVAL_MODES:
            raise InvalidParameter(f"unknown retrieval mode {mode!r}: use one of {RETRIEVAL_MODES}")
        timings = {} if timings is None else timings
        question = self.validate_question(question)
        k = self._k(k)
        if self.search_threads:
            vectors.limit_threads_of_this_thread(self.search_threads)
        t0 = time.perf_counter()
        vector = self.embedder.encode_query(question)
        t1 = time.perf_counter()
        passages = rank_chunks(
            index,
            question,
            vector,
            k,
            mode=mode,
            allowed_ids=_allowed_ids(index, filters),
            where=_where(filters),
            depth=self.settings.fusion_depth,
            fusion=self.settings.fusion,
            dense_weight=self.settings.dense_weight,
        )
        t2 = time.perf_counter()
        timings["embed"] = round((t1 - t0) * 1000, 3)
        timings["search"] = round((t2 - t1) * 1000, 3)
        return passages

    def search(
        self,
        question: str,
        k: int | None = None,
        filters: Filters | None = None,
        mode: str | None = None,
    ) -> SearchResponse:
        started = time.perf_counter()
        timings: dict[str, float] = {}
        passages = self.retrieve(question, k, filters, timings=timings, mode=mode)
        timings["total"] = round((time.perf_counter() - started) * 1000, 3)
        return SearchResponse(question=question.strip(), passages=passages, timings_ms=timings)

    def ask(
        self,
        question: str,
        k: int | None = None,
        filters: Filters | None = None,
        mode: str | None = None,
        *,
        generate: bool = False,
    ) -> AskResponse:
        """The answer to `question`: extractive, or with `generate` written by the configured
        generator from the passages and checked sentence by sentence (rag.answer.generate);
        a GeneratorError carries the extractive answer as `extractive`."""
        started = time.perf_counter()
        generator = self.generator() if generate else None  # refuses before any work
        timings: dict[str, float] = {}
        index = self.index  # one generation for the whole answer, even if a write swaps it
        passages = self.retrieve(question, k, filters, index=index, timings=timings, mode=mode)
        t = time.perf_counter()
        if self.reader is not None and self.settings.answer_mode == "reader":
            s = self.settings
            composed, _, _ = read_answer(
                question,
                passages,
                self.reader,
                min_answerable=s.min_answerable,
                min_dense=s.min_dense,
                n_windows=s.reader_windows,
                type_check=s.reader_type_check,
            )
            timings["read"] = round((time.perf_counter() - t) * 1000, 3)
            answer_mode = "reader"
            citations = composed.citations
            support = answer_support(composed.answer, citations) if composed.answer else None
        else:
            composed = compose_answer(question, passages, min_score=self.settings.min_score)
            timings["compose"] = round((time.perf_counter() - t) * 1000, 3)
            answer_mode = "sentence"
            citations, support = composed.citations, None
        if (
            answer_mode == "sentence"
            and self.settings.verify_citations
            and composed.answer
            and citations
        ):
            t = time.perf_counter()
            checked = self.check_support(composed.answer, citations, index=index)
            citations, support = checked.citations, checked.sentences
            timings["verify"] = round((time.perf_counter() - t) * 1000, 3)
        citations = _with_pages(index, citations)
        timings["total"] = round((time.perf_counter() - started) * 1000, 3)
        response = AskResponse(
            question=question.strip(),
            answer=composed.answer,
            short_answer=composed.short_answer,
            answerable=composed.answerable,
            confidence=composed.confidence,
            citations=citations,
            passages=passages,
            timings_ms=timings,
            support=support,
            answer_mode=answer_mode,
            reason=composed.reason,
        )
        if generator is None:
            return response
        return generate_answer(
            self.settings,
            generator,
            response,
            reader=self.reader if answer_mode == "reader" else None,
            embed=lambda texts: self.embedder.encode(texts, progress=False),
            weight=index.lexical.idf,
            started=started,
        )

    def ask_stream(
        self,
        question: str,
        k: int | None = None,
        filters: Filters | None = None,
        mode: str | None = None,
        *,
        generate: bool = False,
    ) -> tuple[AskResponse, Iterator[str] | None, Callable[[str], AskResponse] | None]:
        """For streaming: (the extractive response, the generator's text as it is written,
        the function that checks the whole text and gives the final response). Without
        `generate`, or when the extractive stage abstains, only the first: it is final.
        Errors before the first delta raise here, so they are a status, not an event."""
        started = time.perf_counter()
        generator = self.generator() if generate else None
        response = self.ask(question, k, filters, mode)
        if generator is None:
            return response, None, None
        done = generated.skipped(self.settings, response)
        if done is not None:
            return done, None, None
        prompt = generated.prompt_for(self.settings, response)
        t = time.perf_counter()
        deltas = generator.stream(prompt.messages)
        try:
            first = next(deltas, "")
        except GeneratorError as exc:
            exc.extractive = response
            raise
        index = self.index

        def text() -> Iterator[str]:
            if first:
                yield first
            try:
                yield from deltas
            except GeneratorError as exc:
                exc.extractive = response
                raise

        def finish(full: str) -> AskResponse:
            if not full.strip():
                exc = GeneratorBadResponse("the generator answered with no text")
                exc.extractive = response
                raise exc
            return generated.finish(
                self.settings,
                response,
                prompt,
                Completion(full, self.settings.generator_model or ""),
                reader=self.reader if response.answer_mode == "reader" else None,
                embed=lambda texts: self.embedder.encode(texts, progress=False),
                weight=index.lexical.idf,
                timings={"generate": t},
                started=started,
            )

        return response, text(), finish

    def generator(self) -> Generator:
        """The configured generator's client (made once); GeneratorNotConfigured without one."""
        if self._generator is None:
            with self._generator_lock:
                if self._generator is None:
                    self._generator = Generator.from_settings(self.settings)
        return self._generator

    def check_support(
        self, answer: str, citations: Sequence[Citation], *, index: Index | None = None
    ) -> SupportCheck:
        """Each citation of `answer` scored against the sentence(s) citing it
        (rag.answer.verify)."""
        return check_support(
            answer,
            citations,
            lambda texts: self.embedder.encode(texts, progress=False),
            min_support=self.settings.min_support,
            weight=(index or self.index).lexical.idf,
        )

    def explain(
        self,
        question: str,
        k: int | None = None,
        filters: Filters | None = None,
        mode: str | None = None,
        gold: str | None = None,
    ) -> ExplainResponse:
        """The k passages retrieved, with their dense, BM25 and fused scores and ranks and the
        question terms each matches; with `gold` (a document or chunk id), where it ranked and
        which signal lost it (rag.search.explain)."""
        from index.analysis import analyze
        from rag.search import explain as ex

        started = time.perf_counter()
        timings: dict[str, float] = {}
        index = self.index
        mode = mode or self.settings.retrieval_mode
        k = self._k(k)
        passages = self.retrieve(question, k, filters, index=index, timings=timings, mode=mode)
        t = time.perf_counter()
        question = question.strip()
        terms = analyze(question)
        rankings = ex.rank_everything(
            index,
            question,
            self.embedder.encode_query(question),
            k=k,
            mode=mode,
            settings=self.settings,
            allowed_ids=_allowed_ids(index, filters),
        )
        explained = ex.explain_passages(index, passages, rankings, terms, k=k)
        gold_report = None
        if gold is not None:
            pool = max(k, self.settings.fusion_depth) if mode == "hybrid" else k
            gold_report = ex.explain_gold(
                index, gold.strip(), rankings, terms, mode=mode, k=k, pool=pool
            )
        timings["explain"] = round((time.perf_counter() - t) * 1000, 3)
        timings["total"] = round((time.perf_counter() - started) * 1000, 3)
        return ExplainResponse(
            question=question,
            mode=mode,
            k=k,
            query_terms=terms,
            n_searched=int(rankings.searched.sum()),
            n_candidates=len(rankings.mode_rank),
            passages=explained,
            gold=gold_report,
            timings_ms=timings,
        )

    # inspection
    def chunk(self, chunk_id: str) -> ChunkDetail:
        index = self.index
        chunk = index.store.get_chunk(chunk_id)
        previous_id, next_id = index.store.neighbours(chunk)
        title = index.store.get_summary(chunk.doc_id).title
        return ChunkDetail(
            chunk_id=chunk.id,
            doc_id=chunk.doc_id,
            title=title,
            ordinal=chunk.ordinal,
            start=chunk.start,
            end=chunk.end,
            text=chunk.text,
            n_tokens=chunk.n_tokens,
            page=chunk.page,
            previous_id=previous_id,
            next_id=next_id,
        )

    def document(self, doc_id: str) -> DocumentDetail:
        index = self.index
        doc = index.store.get_document(doc_id)
        summary = index.store.get_summary(doc_id)
        pages = list(doc.pages) if doc.pages else None
        return DocumentDetail(**_info(summary).model_dump(), text=doc.text, pages=pages)

    def documents(self, offset: int = 0, limit: int | None = None) -> list[DocumentInfo]:
        return [_info(s) for s in self.index.store.summaries(offset=offset, limit=limit)]

    def count_documents(self) -> int:
        return self.index.store.count_documents()

    def example_questions(self) -> list[str]:
        """Questions to offer as examples: the configured ones, or the bundled corpus's when
        the live index holds every bundled document."""
        if self.settings.example_questions is not None:
            return list(self.settings.example_questions)
        index = self.index
        if index.generation not in self._examples:
            ids = set(index.store.document_hashes())
            bundled = {p.stem for p in BUNDLED_CORPUS.glob("*.txt")}
            self._examples = {index.generation: bool(bundled) and bundled <= ids}
        return list(BUNDLED_EXAMPLES) if self._examples[index.generation] else []

    def stats(self) -> IndexStats:
        return index_stats(self.index)

    def swap_index(self, index: Index) -> None:
        """Serve `index` from now on (a newer generation: rag/writer.py, or another worker's)."""
        old, self.index = self.index, index
        logger.info("now serving index generation %d (was %d)", index.generation, old.generation)
        # The old generation's readers may still be running; its files stay until pruned.


def _configured_model(settings: Settings) -> str | None:
    from rag.embed.embedding import canonical_model_name

    return canonical_model_name(settings.model) if settings.model else None


Q = TypeVar("Q", bound=Quote)


def _with_pages(index: Index, citations: list[Citation]) -> list[Citation]:
    """Citations (and their corroborations) in paged documents with the page their quote
    starts on. From the quote's offset and the document's page starts, not the chunk's page:
    a chunk that begins with a sentence running over from the page before holds sentences of
    the next page too."""
    quoted = {q.doc_id for c in citations for q in (c, *c.corroborated_by)}
    pages = index.store.pages_of(sorted(quoted))
    if not pages:
        return citations

    def paged(q: Q) -> Q:
        return (
            q.model_copy(update={"page": page_at(pages[q.doc_id], q.start)})
            if q.doc_id in pages
            else q
        )

    return [
        paged(c).model_copy(update={"corroborated_by": [paged(q) for q in c.corroborated_by]})
        for c in citations
    ]


def _allowed_ids(index: Index, filters: Filters | None) -> list[int] | None:
    """The vector ids the filters allow (resolved by the chunk store), or None for all."""
    where = _where(filters)
    if where is None:
        return None
    return index.store.vector_ids_where(
        doc_ids=where.doc_ids, date_from=where.date_from, date_to=where.date_to
    )


def _where(filters: Filters | None) -> ChunkFilter | None:
    """The filters as the vector store sees them (Milvus runs them in the database)."""
    if filters is None:
        return None
    where = ChunkFilter(
        doc_ids=filters.doc_ids,
        date_from=filters.date_from.isoformat() if filters.date_from else None,
        date_to=filters.date_to.isoformat() if filters.date_to else None,
    )
    return None if where.empty else where


def _info(summary) -> DocumentInfo:
    return DocumentInfo(
        id=summary.id,
        title=summary.title,
        date=summary.date,
        url=summary.url,
        source=summary.source,
        n_chunks=summary.n_chunks,
        content_hash=summary.content_hash,
    )


__all__ = ["Engine"]
