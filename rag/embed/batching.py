"""Micro-batching of query embeddings for a server under concurrent load.

Requests hand their question to a `QueryBatcher` and wait. A worker thread takes the first
waiting question, collects the others that arrive within `max_wait_ms` (or until
`max_batch`), embeds them in one call and hands each request its vector. Under load one
encoder call serves many requests, instead of each request running the model alone; a lone
request waits at most `max_wait_ms` more.

When the queue is full or the batcher is closed, callers embed on their own thread instead
(`encode` falls back), so the batcher never turns load into errors.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Request:
    text: str
    future: Future = field(default_factory=Future)


@dataclass(slots=True)
class BatchStats:
    batches: int = 0
    requests: int = 0
    largest: int = 0
    fallbacks: int = 0


class QueryBatcher:
    """Embeds queued texts in micro-batches on `workers` threads."""

    def __init__(
        self,
        encode: Callable[[Sequence[str]], np.ndarray],
        *,
        max_batch: int = 32,
        max_wait_ms: float = 2.0,
        max_queue: int = 1024,
        workers: int = 1,
    ):
        if max_batch < 1 or workers < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and workers must be >= 1, max_wait_ms >= 0")
        self._encode = encode
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.stats = BatchStats()
        self._stats_lock = threading.Lock()
        self._queue: queue.Queue[_Request | None] = queue.Queue(maxsize=max_queue)
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"query-batcher-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def encode(self, text: str) -> np.ndarray:
        """The vector of `text`, embedded in a batch with whatever else is waiting."""
        request = _Request(text)
        try:
            if self._closed:
                raise queue.Full
            self._queue.put_nowait(request)
        except queue.Full:
            with self._stats_lock:
                self.stats.fallbacks += 1
            return self._encode([text])[0]
        return request.future.result()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the workers once the queued requests are served."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)  # blocks only while the queue is full, i.e. briefly
        for thread in self._threads:
            thread.join(timeout)
        # a request that raced with closing: serve it here rather than leave it waiting
        leftovers = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                leftovers.append(item)
        if leftovers:
            self._run(leftovers)

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._collect(first)
            self._run(batch)
            if stop:
                return

    def _collect(self, first: _Request) -> tuple[list[_Request], bool]:
        batch = [first]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                if remaining > 0:
                    item = self._queue.get(timeout=remaining)
                else:  # past the deadline, still take what is already waiting
                    item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self, batch: list[_Request]) -> None:
        try:
            vectors = self._encode([r.text for r in batch])
        except BaseException as exc:  # every waiting request gets the error, none hangs
            for r in batch:
                r.future.set_exception(exc)
            return
        with self._stats_lock:
            self.stats.batches += 1
            self.stats.requests += len(batch)
            self.stats.largest = max(self.stats.largest, len(batch))
        for r, vector in zip(batch, vectors, strict=True):
            r.future.set_result(vector.copy())  # not a view pinning the whole batch
