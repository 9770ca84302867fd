"""`fuse`, the pure half of hybrid retrieval: the fused scores of candidates from their dense
and BM25 scores, checked against values worked out by hand. Convex fusion mixes the min-max
normalised scores; reciprocal rank fusion (RRF) only looks at the ranks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.search.retrieval import FUSIONS, fuse

# Three candidates: the dense signal puts them 1st, 3rd, 2nd; BM25 puts them 3rd, 1st, 2nd.
DENSE = np.array([0.9, 0.1, 0.5])
BM25 = np.array([0.0, 10.0, 5.0])


def test_convex_fusion_mixes_the_min_max_normalised_scores_by_the_weight():
    # normalised: dense [1, 0, 0.5], BM25 [0, 1, 0.5]
    assert fuse(DENSE, BM25, method="convex", dense_weight=0.5) == pytest.approx([0.5, 0.5, 0.5])
    got = fuse(DENSE, BM25, method="convex", dense_weight=0.7)
    assert got == pytest.approx([0.7, 0.3, 0.5])
    assert fuse(DENSE, BM25, dense_weight=1.0) == pytest.approx([1.0, 0.0, 0.5])  # dense only
    assert fuse(DENSE, BM25, dense_weight=0.0) == pytest.approx([0.0, 1.0, 0.5])  # BM25 only


def test_convex_fusion_by_hand_on_four_candidates():
    dense = np.array([0.8, 0.2, 0.6, 0.4])  # normalised: 1, 0, 2/3, 1/3
    bm25 = np.array([1.0, 9.0, 0.0, 3.0])  # normalised: 1/9, 1, 0, 1/3
    expected = [
        0.75 * 1 + 0.25 * (1 / 9),
        0.75 * 0 + 0.25 * 1,
        0.75 * (2 / 3) + 0.25 * 0,
        0.75 * (1 / 3) + 0.25 * (1 / 3),
    ]
    assert fuse(dense, bm25, dense_weight=0.75) == pytest.approx(expected)
    # the order this gives: the dense winner, then the dense runner-up, BM25's winner last
    assert np.argsort(-fuse(dense, bm25, dense_weight=0.75)).tolist() == [0, 2, 3, 1]


def test_convex_fusion_ignores_each_signal_s_scale_and_offset():
    """Cosines and BM25 scores live on different scales: min-max makes them comparable."""
    plain = fuse(DENSE, BM25, dense_weight=0.6)
    assert fuse(3 * DENSE - 1, 0.01 * BM25 + 7, dense_weight=0.6) == pytest.approx(plain)


def test_a_signal_that_does_not_separate_the_candidates():
    # every candidate scores 0 on BM25 (no query term anywhere): that side adds nothing, and
    # no candidate can reach more than the dense weight
    only_dense = fuse(np.array([0.2, 0.8, 0.5]), np.zeros(3))
    assert only_dense == pytest.approx([0.0, 0.5, 0.25])
    # the same positive score everywhere counts as full marks for all
    assert fuse(np.full(3, 0.3), np.array([0.0, 2.0, 1.0])) == pytest.approx([0.5, 1.0, 0.75])
    # the same negative (or zero) score everywhere counts as nothing
    assert fuse(np.array([-0.2, -0.2]), np.array([1.0, 3.0])) == pytest.approx([0.0, 0.5])
    # a single candidate: full marks on a positive signal, none on a zero one
    assert fuse(np.array([0.4]), np.array([2.0])) == pytest.approx([1.0])
    assert fuse(np.array([0.4]), np.array([0.0])) == pytest.approx([0.5])


def test_rrf_by_hand():
    # ranks: dense [1, 3, 2], BM25 [3, 1, 2]
    got = fuse(DENSE, BM25, method="rrf", dense_weight=0.5, rrf_k=60)
    assert got == pytest.approx([0.5 / 61 + 0.5 / 63, 0.5 / 63 + 0.5 / 61, 0.5 / 62 + 0.5 / 62])
    # where convex fusion ties all three, RRF puts a first and a third place over two seconds
    assert got[0] == pytest.approx(got[1]) and got[0] > got[2]
    # a smaller k weighs the top ranks more
    assert fuse(DENSE, BM25, method="rrf", rrf_k=0) == pytest.approx([2 / 3, 2 / 3, 1 / 2])
    # the weight leans towards one list's order
    leaning = fuse(DENSE, BM25, method="rrf", dense_weight=0.8, rrf_k=60)
    assert leaning == pytest.approx([0.8 / 61 + 0.2 / 63, 0.8 / 63 + 0.2 / 61, 1 / 62])
    assert leaning[0] > leaning[2] > leaning[1]


def test_rrf_sees_only_the_order_of_each_signal():
    plain = fuse(DENSE, BM25, method="rrf")
    assert fuse(DENSE**3, np.exp(BM25), method="rrf") == pytest.approx(plain)


def test_rrf_ranks_tied_scores_in_candidate_order():
    """Equal scores share no rank: the earlier candidate (dense hits come first) ranks higher."""
    got = fuse(np.array([0.5, 0.5, 0.9]), np.array([2.0, 2.0, 2.0]), method="rrf", rrf_k=60)
    # dense ranks [2, 3, 1]; BM25 ranks [1, 2, 3]
    assert got == pytest.approx([0.5 / 62 + 0.5 / 61, 0.5 / 63 + 0.5 / 62, 0.5 / 61 + 0.5 / 63])
    assert got[0] > got[1]


def test_no_candidates_and_unknown_fusions():
    for method in FUSIONS:
        assert fuse(np.zeros(0), np.zeros(0), method=method).shape == (0,)
    with pytest.raises(ValueError, match="unknown fusion 'max'"):
        fuse(DENSE, BM25, method="max")
    with pytest.raises(ValueError, match="unknown fusion 'max'"):  # with no candidates too
        fuse(np.zeros(0), np.zeros(0), method="max")


signal = st.floats(min_value=-1.0, max_value=30.0, allow_nan=False)
pairs = st.lists(st.tuples(signal, signal), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(pairs, st.floats(min_value=0.0, max_value=1.0))
def test_a_candidate_better_on_both_signals_is_never_fused_below(candidates, weight):
    dense = np.array([d for d, _ in candidates])
    bm25 = np.array([b for _, b in candidates])
    convex = fuse(dense, bm25, dense_weight=weight)
    assert (convex >= -1e-12).all() and (convex <= 1 + 1e-12).all()
    rrf = fuse(dense, bm25, method="rrf", dense_weight=weight)
    for i in range(len(candidates)):
        for j in range(len(candidates)):
            if dense[i] >= dense[j] and bm25[i] >= bm25[j]:
                assert convex[i] >= convex[j] - 1e-12, (i, j)
            if dense[i] > dense[j] and bm25[i] > bm25[j]:
                assert rrf[i] >= rrf[j], (i, j)
