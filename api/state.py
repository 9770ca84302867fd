"""The engine behind the API: loaded once at startup, then kept on the index's live generation.

Each worker process has its own `Service`. A write in one worker makes a new generation
live on disk; the others notice the changed pointer on their next request and load it
before answering (requests already running keep the generation they started with), so
every worker serves the same index. Writes take a lock file beside the index, so workers
never build on a stale generation.

A generation that fails to load is not tried again until the pointer moves, unless it failed
because its vector store was unavailable (a Milvus server down): then the next request after
RETRY_SECONDS tries again, so a server started, or a generation written, during an outage is
served once the store is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from api.errors import STORE_RETRY_SECONDS, IndexNotLoaded, without_paths
from rag.config import Settings
from rag.embed.embedding import Embedder, canonical_model_name
from rag.engine import Engine
from rag.errors import IndexStoreError, ModelNotAvailable, StoreUnavailable
from rag.indexing import (
    PointerWatch,
    clean_leftovers,
    load_generation,
    load_index,
    write_lock,
)
from rag.writer import Writer

logger = logging.getLogger(__name__)

T = TypeVar("T")

WRITE_LOCK = ".api-write.lock"
# Before loading again a generation that failed because its vector store was unavailable.
RETRY_SECONDS = float(STORE_RETRY_SECONDS)


class Service:
    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        self.settings = settings
        self._embedder = embedder  # an already loaded model to use (tests fork warm servers)
        self.engine: Engine | None = None
        self.error = "the index has not been loaded yet"
        self._lock = threading.Lock()
        self._failed_pointer: str | None = None  # a live generation that would not load
        self._retry_at: float | None = None  # when to try it again (its store was unavailable)
        self.load_seconds: dict[str, float] = {}  # "model", "index": the last loads (/metrics)
        self._pointer = PointerWatch(settings.index_path)
        self._writer: Writer | None = None

    # loading
    def start(self) -> None:
        """Load the model and the index (at startup). Failure leaves the service unready."""
        with self._lock:
            try:
                clean_leftovers(self.settings.index_path)
            except OSError as exc:  # a read-only index still serves
                logger.warning("could not clean leftovers of interrupted writes: %s", exc)
            self._load()

    def _load(self) -> None:
        try:
            self.engine = self._load_engine()
        except (IndexStoreError, ModelNotAvailable) as exc:
            self._failed(str(exc), retry=isinstance(exc, StoreUnavailable))
            logger.warning("serving without an index: %s", exc)
            return
        except Exception as exc:  # keep answering /health and explain on /ready
            self._failed(f"the index could not be loaded ({type(exc).__name__}); see the log")
            logger.exception("loading the index failed")
            return
        stats = self.engine.index.manifest
        logger.info(
            "loaded index generation %d (%d documents, %d chunks, model %s) from %s",
            stats.generation,
            stats.n_documents,
            stats.n_chunks,
            stats.model,
            self.settings.index_path,
        )

    def _load_engine(self) -> Engine:
        """Engine.load's two steps, timed apart: the index, then its model."""
        started = time.perf_counter()
        index = load_index(
            self.settings,
            model=canonical_model_name(self.settings.model) if self.settings.model else None,
        )
        loaded = time.perf_counter()
        self.load_seconds["index"] = loaded - started
        embedder = self._embedder or Embedder.from_settings(
            self.settings, self.settings.model or index.manifest.model, queries=True
        )
        self.load_seconds["model"] = time.perf_counter() - loaded
        index.check_compatible(model=embedder.name, dimension=embedder.dimension)
        if self.settings.query_batching:
            embedder.start_batching(
                max_batch=self.settings.query_batch_max,
                max_wait_ms=self.settings.query_batch_wait_ms,
                workers=self.settings.query_batch_workers,
            )
        engine = Engine(self.settings, index, embedder)
        engine.search_threads = self.settings.search_threads
        return engine

    def close(self) -> None:
        """Stop the query batcher (at shutdown); later questions embed one at a time."""
        engine = self.engine
        if engine is not None:
            engine.embedder.stop_batching()

    def _failed(self, message: str, *, retry: bool = False) -> None:
        self.engine = None
        self.error = without_paths(message, self.settings.index_path, self.settings.milvus_uri)
        self._mark_failed(self.pointer(), retry=retry)

    def _mark_failed(self, pointer: str | None, *, retry: bool) -> None:
        self._failed_pointer = pointer
        self._retry_at = time.monotonic() + RETRY_SECONDS if retry else None

    def _given_up(self, pointer: str | None) -> bool:
        """Whether `pointer` names the generation that failed to load, not yet to be retried."""
        return pointer == self._failed_pointer and (
            self._retry_at is None or time.monotonic() < self._retry_at
        )

    def pointer(self) -> str | None:
        """The name of the live generation on disk (a stat of the pointer file per request;
        read again only when it changed)."""
        return self._pointer.name()

    def is_current(self, pointer: str | None) -> bool:
        engine = self.engine
        return engine is not None and (
            pointer is None or pointer == engine.index.path.name or self._given_up(pointer)
        )

    def refresh(self, pointer: str | None, *, wait: bool | None = None) -> Engine:
        """The engine, moved to the generation `pointer` names if it is not there yet.

        A request that finds another one already moving the engine waits for it (so a
        write, once answered, is seen by every later request in every worker), except
        while the first load, model and all, is under way: then it gets IndexNotLoaded."""
        if wait is None:
            wait = self.engine is not None
        if not self._lock.acquire(blocking=wait):
            raise IndexNotLoaded("the index is being loaded; try again in a moment")
        try:
            if self.engine is None:
                if pointer is not None and not self._given_up(pointer):
                    self._load()
                if self.engine is None:
                    raise IndexNotLoaded(self.error)
                return self.engine
            if not self.is_current(pointer):
                self._follow(self.engine, pointer)
            return self.engine
        finally:
            self._lock.release()

    def _follow(self, engine: Engine, pointer: str | None) -> None:
        assert pointer is not None
        try:
            started = time.perf_counter()
            index = load_generation(self.settings, pointer)
            self.load_seconds["index"] = time.perf_counter() - started
            index.check_compatible(model=engine.embedder.name, dimension=engine.embedder.dimension)
        except IndexStoreError as exc:
            self._mark_failed(pointer, retry=isinstance(exc, StoreUnavailable))
            logger.error("still serving %s: %s", engine.index.path.name, exc)
            return
        engine.swap_index(index)

    # writing
    def write(self, operation: Callable[[Writer], T]) -> T:
        """Run `operation` with the writer of the engine, on the live generation, one writer
        at a time across all workers."""
        self.refresh(self.pointer(), wait=True)  # no index: IndexNotLoaded, before any lock
        with write_lock(self.settings.index_path / WRITE_LOCK):
            engine = self.refresh(self.pointer(), wait=True)
            if self._writer is None or self._writer.engine is not engine:
                self._writer = Writer(engine)
            return operation(self._writer)
