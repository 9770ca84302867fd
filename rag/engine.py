"""The question-answering engine: one embedding model and one loaded index generation.

An `Engine` is safe to share between threads. Each call reads `self.index` once, so a
concurrent `swap_index` is seen either entirely or not at all by a request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from index import Document, Index
from rag.answer import compose_answer
from rag.config import Settings
from rag.embedding import Embedder
from rag.errors import InvalidQuestion, QuestionTooLong
from rag.indexing import build_index, directory_size
from rag.models import (
    AskResponse,
    BuildReport,
    ChunkDetail,
    DocumentDetail,
    DocumentInfo,
    Filters,
    IndexStats,
    Passage,
    SearchResponse,
)
from rag.retrieval import MODES, rank_chunks

logger = logging.getLogger(__name__)

RETRIEVAL_MODES = MODES


class Engine:
    def __init__(self, settings: Settings, index: Index, embedder: Embedder):
        self.settings = settings
        self.index = index
        self.embedder = embedder
        self._write_lock = threading.Lock()

    @classmethod
    def load(cls, settings: Settings, embedder: Embedder | None = None) -> Engine:
        """Load the index at `settings.index_path` and the model it was built with (or the
        configured one, which must match)."""
        index = Index.load(
            settings.index_path,
            model=_configured_model(settings),
            verify=settings.verify_checksums,
        )
        if embedder is None:
            embedder = Embedder(
                settings.model or index.manifest.model,
                device=settings.device,
                batch_size=settings.batch_size,
                threads=settings.torch_threads,
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
            raise InvalidQuestion(f"k must be between 1 and {self.settings.max_k}")
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
            raise InvalidQuestion(f"unknown retrieval mode {mode!r}: use one of {RETRIEVAL_MODES}")
        timings = {} if timings is None else timings
        question = self.validate_question(question)
        k = self._k(k)
        t0 = time.perf_counter()
        vector = self.embedder.encode_query(question)
        t1 = time.perf_counter()
        ranked = rank_chunks(
            index,
            question,
            vector,
            k,
            mode=mode,
            allowed_ids=_allowed_ids(index, filters),
            depth=self.settings.fusion_depth,
            fusion=self.settings.fusion,
            dense_weight=self.settings.dense_weight,
        )
        doc_ids = sorted({r.chunk.doc_id for r in ranked})
        summaries = {s.id: s for s in index.store.summaries(ids=doc_ids)}
        t2 = time.perf_counter()
        timings["embed"] = round((t1 - t0) * 1000, 3)
        timings["search"] = round((t2 - t1) * 1000, 3)
        return [
            Passage(
                rank=rank,
                chunk_id=r.chunk.id,
                doc_id=r.chunk.doc_id,
                title=summaries[r.chunk.doc_id].title,
                date=summaries[r.chunk.doc_id].date,
                start=r.chunk.start,
                end=r.chunk.end,
                text=r.chunk.text,
                score=round(r.score, 6),
                dense_score=round(r.dense_score, 6),
                bm25_score=round(r.bm25_score, 6),
                dense_rank=r.dense_rank,
                bm25_rank=r.bm25_rank,
            )
            for rank, r in enumerate(ranked, start=1)
        ]

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
    ) -> AskResponse:
        started = time.perf_counter()
        timings: dict[str, float] = {}
        passages = self.retrieve(question, k, filters, timings=timings, mode=mode)
        t = time.perf_counter()
        composed = compose_answer(question, passages, min_score=self.settings.min_score)
        timings["compose"] = round((time.perf_counter() - t) * 1000, 3)
        timings["total"] = round((time.perf_counter() - started) * 1000, 3)
        return AskResponse(
            question=question.strip(),
            answer=composed.answer,
            short_answer=composed.short_answer,
            answerable=composed.answerable,
            confidence=composed.confidence,
            citations=composed.citations,
            passages=passages,
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
            previous_id=previous_id,
            next_id=next_id,
        )

    def document(self, doc_id: str) -> DocumentDetail:
        index = self.index
        doc = index.store.get_document(doc_id)
        summary = index.store.get_summary(doc_id)
        return DocumentDetail(**_info(summary).model_dump(), text=doc.text)

    def documents(self, offset: int = 0, limit: int | None = None) -> list[DocumentInfo]:
        return [_info(s) for s in self.index.store.summaries(offset=offset, limit=limit)]

    def count_documents(self) -> int:
        return self.index.store.count_documents()

    def stats(self) -> IndexStats:
        index = self.index
        m = index.manifest
        return IndexStats(
            path=str(index.path),
            generation=m.generation,
            model=m.model,
            dimension=m.dimension,
            index_type=m.index_type,
            tokenizer=m.tokenizer,
            chunking=m.chunking,
            n_documents=m.n_documents,
            n_chunks=m.n_chunks,
            created=m.created,
            build_seconds=m.build_seconds,
            size_bytes=directory_size(index.path),
        )

    # writes
    def upsert(self, documents: Sequence[Document]) -> BuildReport:
        """Add or replace documents: a new generation is written, then swapped in."""
        with self._write_lock:
            index, report = build_index(
                self.settings, self.embedder, documents, base=self.index, replace_all=False
            )
            self.swap_index(index)
            return report

    def delete(self, doc_id: str) -> BuildReport:
        with self._write_lock:
            self.index.store.get_summary(doc_id)  # raises UnknownDocument
            index, report = build_index(
                self.settings,
                self.embedder,
                [],
                base=self.index,
                replace_all=False,
                delete_ids=[doc_id],
            )
            self.swap_index(index)
            return report

    def swap_index(self, index: Index) -> None:
        old, self.index = self.index, index
        logger.info("now serving index generation %d (was %d)", index.generation, old.generation)
        # The old generation's readers may still be running; its files stay until pruned.


def _configured_model(settings: Settings) -> str | None:
    from rag.embedding import canonical_model_name

    return canonical_model_name(settings.model) if settings.model else None


def _allowed_ids(index: Index, filters: Filters | None) -> list[int] | None:
    if filters is None or (
        filters.doc_ids is None and filters.date_from is None and filters.date_to is None
    ):
        return None
    return index.store.vector_ids_where(
        doc_ids=filters.doc_ids,
        date_from=filters.date_from.isoformat() if filters.date_from else None,
        date_to=filters.date_to.isoformat() if filters.date_to else None,
    )


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
