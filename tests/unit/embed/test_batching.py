"""Micro-batched query embedding: the same vectors as one at a time, and really batched."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from rag.embed.batching import QueryBatcher

QUESTIONS = [
    "What minerals does the Chirchik center target?",
    "Who will build the sedans?",
    "rare metals",
    "When was the agreement on energy cooperation signed between the two governments?",
    "supply chains for semiconductors and electronic components",
    "How many projects were discussed?",
    "tungsten",
    "What did the president say about infrastructure, energy and critical minerals?",
] * 2  # 16 questions, duplicates included


def _concurrently(encode, texts: list[str]) -> list[np.ndarray]:
    """Call `encode` for every text from its own thread, all released at once."""
    start = threading.Barrier(len(texts))

    def one(text: str) -> np.ndarray:
        start.wait()
        return encode(text)

    with ThreadPoolExecutor(len(texts)) as pool:
        return list(pool.map(one, texts))


def test_concurrent_batched_encodes_equal_one_at_a_time(embedder):
    alone = [embedder.encode([q])[0] for q in QUESTIONS]
    batcher = QueryBatcher(embedder.encode, max_batch=32, max_wait_ms=50)
    try:
        together = _concurrently(batcher.encode, QUESTIONS)
    finally:
        batcher.close()
    for a, b in zip(alone, together, strict=True):
        # padding to the batch's longest question changes only float rounding
        assert np.abs(a - b).max() < 1e-5
        assert float(a @ b) > 0.99999
    stats = batcher.stats
    assert stats.requests == len(QUESTIONS)
    assert stats.batches < len(QUESTIONS), "no two questions shared an encoder call"
    assert stats.largest > 1


def test_batch_size_is_bounded(embedder):
    batcher = QueryBatcher(embedder.encode, max_batch=4, max_wait_ms=50)
    try:
        _concurrently(batcher.encode, QUESTIONS)
    finally:
        batcher.close()
    assert batcher.stats.largest <= 4
    assert batcher.stats.batches >= len(QUESTIONS) // 4


def test_an_error_reaches_every_request_of_its_batch_and_the_next_batch_works(embedder):
    def encode(texts):
        if any("boom" in t for t in texts):
            raise ValueError("cannot embed boom")
        return embedder.encode(texts)

    batcher = QueryBatcher(encode, max_batch=32, max_wait_ms=50)
    try:
        results = _concurrently(lambda t: _outcome(batcher.encode, t), ["boom", *QUESTIONS[:3]])
        assert isinstance(results[0], ValueError) and "boom" in str(results[0])
        # the others got the error of the batch they shared with "boom", or their own vector
        for question, r in zip(QUESTIONS[:3], results[1:], strict=True):
            if not isinstance(r, ValueError):
                assert np.abs(r - embedder.encode([question])[0]).max() < 1e-5, question
        vector = batcher.encode(QUESTIONS[0])
        assert np.abs(vector - embedder.encode([QUESTIONS[0]])[0]).max() < 1e-5
    finally:
        batcher.close()


def _outcome(fn, arg):
    try:
        return fn(arg)
    except ValueError as exc:
        return exc


def test_after_close_callers_embed_on_their_own_thread(embedder):
    batcher = QueryBatcher(embedder.encode)
    batcher.close()
    vector = batcher.encode(QUESTIONS[0])
    assert np.abs(vector - embedder.encode([QUESTIONS[0]])[0]).max() < 1e-5
    assert batcher.stats.fallbacks == 1 and batcher.stats.batches == 0
    batcher.close()  # twice is harmless


def test_invalid_parameters_are_refused(embedder):
    with pytest.raises(ValueError):
        QueryBatcher(embedder.encode, max_batch=0)


def test_embedder_batching_keeps_the_query_cache(embedder):
    embedder.clear_cache()
    expected = embedder.encode([QUESTIONS[1]])[0]
    batcher = embedder.start_batching(max_batch=8, max_wait_ms=20)
    try:
        first = embedder.encode_query(QUESTIONS[1])
        again = embedder.encode_query(QUESTIONS[1])
        assert again is first  # the cache answered; the batcher saw one request
        assert batcher.stats.requests == 1
        assert np.abs(first - expected).max() < 1e-5
    finally:
        embedder.stop_batching()
        embedder.clear_cache()
    assert embedder._batcher is None


def test_the_service_batches_and_stops_batching_at_shutdown(bundled_settings):
    from api.state import Service

    plain = Service(bundled_settings)  # batching is off unless asked for
    plain.start()
    assert plain.engine is not None and plain.engine.embedder._batcher is None
    plain.close()
    update = {"query_batching": True, "query_batch_wait_ms": 20.0}
    service = Service(bundled_settings.model_copy(update=update))
    service.start()
    assert service.engine is not None
    batcher = service.engine.embedder._batcher
    assert batcher is not None
    answers = _concurrently(
        lambda q: service.engine.ask(q), [f"{q} ({i})" for i, q in enumerate(QUESTIONS[:8])]
    )
    assert answers[0].answerable and "molybdenum" in answers[0].answer.lower()
    assert batcher.stats.requests == 8 and batcher.stats.batches < 8
    service.close()
    assert service.engine.embedder._batcher is None
    assert service.engine.ask(QUESTIONS[0]).answerable  # one at a time again
