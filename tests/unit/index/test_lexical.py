"""The BM25 index's own score matrix (`bm25_scores`) against bm25s building it, bit for bit,
on real text: the bundled articles' chunks."""

from __future__ import annotations

import bm25s
import numpy as np

from index.analysis import analyze
from index.lexical import EMPTY, K1, B, LexicalIndex


def test_the_vectorised_matrix_scores_every_term_exactly_as_bm25s_does(bundled_documents):
    from rag.text.chunking import chunk_text

    texts = [c.text for d in bundled_documents for c in chunk_text(d.id, d.text, max_tokens=64)]
    texts += ["", "Tungsten tungsten tungsten."]  # an empty chunk, and a repeated term
    ours = LexicalIndex.build(texts, list(range(len(texts))))
    theirs = bm25s.BM25(k1=K1, b=B)
    theirs.index([analyze(t) or [EMPTY] for t in texts], show_progress=False)
    vocab = sorted(theirs.vocab_dict)
    assert sorted(ours.retriever.vocab_dict) == vocab and len(vocab) > 300
    for term in vocab:
        if term == "":  # bm25s's own placeholder for queries, past the matrix
            continue
        got, want = ours.retriever.get_scores([term]), theirs.get_scores([term])
        assert np.array_equal(got, want), term
    for query in ("molybdenum and tungsten", "Chirchik rare metals center", "tungsten"):
        terms = analyze(query)
        assert np.array_equal(ours.retriever.get_scores(terms), theirs.get_scores(terms)), query
    assert ours.scores("tungsten").argmax() == len(texts) - 1  # three times in three words
