"""Metric functions against values computed by hand (and, for nDCG, by ir-measures)."""

import math

import pytest

from rag import metrics as m


def test_distinct_keeps_first_occurrences_in_order():
    assert m.distinct(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]


def test_hit_at_k():
    ranked = ["x", "y", "gold", "z"]
    assert m.hit_at_k(ranked, {"gold"}, 1) == 0.0
    assert m.hit_at_k(ranked, {"gold"}, 2) == 0.0
    assert m.hit_at_k(ranked, {"gold"}, 3) == 1.0
    assert m.hit_at_k(ranked, {"gold", "x"}, 1) == 1.0
    assert m.hit_at_k([], {"gold"}, 5) == 0.0


def test_reciprocal_rank_is_cut_at_k():
    ranked = ["x", "y", "gold"]
    assert m.reciprocal_rank(ranked, {"gold"}, 10) == pytest.approx(1 / 3)
    assert m.reciprocal_rank(ranked, {"gold"}, 2) == 0.0
    assert m.reciprocal_rank(ranked, {"y", "gold"}) == 0.5
    assert m.reciprocal_rank(ranked, set()) == 0.0


def test_recall_at_k():
    ranked = ["a", "x", "b", "y"]
    assert m.recall_at_k(ranked, {"a", "b", "c"}, 1) == pytest.approx(1 / 3)
    assert m.recall_at_k(ranked, {"a", "b", "c"}, 3) == pytest.approx(2 / 3)
    assert m.recall_at_k(ranked, set(), 3) is None


def test_ndcg_binary_by_hand():
    # The only relevant document at rank 2: DCG = 1/log2(3), ideal DCG = 1.
    assert m.ndcg_at_k(["x", "g"], {"g": 1}, 10) == pytest.approx(1 / math.log2(3))
    # Two relevant, found at ranks 1 and 3: (1 + 1/2) / (1 + 1/log2(3)).
    expected = (1 + 1 / 2) / (1 + 1 / math.log2(3))
    assert m.ndcg_at_k(["a", "x", "b"], {"a": 1, "b": 1}, 10) == pytest.approx(expected)
    assert m.ndcg_at_k(["g", "x"], {"g": 1}) == 1.0
    assert m.ndcg_at_k(["x", "y"], {"g": 1}) == 0.0


def test_ndcg_graded_by_hand():
    # Ranked b (grade 1), a (grade 2), d (unjudged); c is judged 0.
    # DCG = 1/log2(2) + 2/log2(3); ideal: a, b -> 2/log2(2) + 1/log2(3), about 0.8597.
    grades = {"a": 2, "b": 1, "c": 0}
    expected = (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert m.ndcg_at_k(["b", "a", "d"], grades, 10) == pytest.approx(expected)
    # Cut at k=1: DCG = 1, ideal = 2.
    assert m.ndcg_at_k(["b", "a", "d"], grades, 1) == pytest.approx(0.5)


def test_ndcg_is_undefined_without_relevant_documents():
    assert m.ndcg_at_k(["a"], {}) is None
    assert m.ndcg_at_k(["a"], {"a": 0}) is None


def test_ndcg_agrees_with_ir_measures():
    import ir_measures
    from ir_measures import nDCG

    qrels = {"q1": {"a": 2, "b": 1, "c": 0, "e": 3}, "q2": {"x": 1, "y": 1}}
    ranked = {"q1": ["b", "a", "d", "c", "e"], "q2": ["z", "y", "w", "x"]}
    run = {q: {d: float(len(r) - i) for i, d in enumerate(r)} for q, r in ranked.items()}
    theirs = {x.query_id: x.value for x in ir_measures.iter_calc([nDCG @ 10], qrels, run)}
    for q in qrels:
        assert m.ndcg_at_k(ranked[q], qrels[q], 10) == pytest.approx(theirs[q])


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("The Denver Broncos", "denver broncos"),
        ("  Denver   Broncos!! ", "denver broncos"),
        ("a, an; the.", ""),
        ("Theatre of the Absurd", "theatre of absurd"),  # only whole-word articles go
        ("$24.5 billion", "245 billion"),  # punctuation, including '.' and '$', is stripped
        ("U.S.-Korea", "uskorea"),
        ("An apple a day", "apple day"),
        ("Tokayev’s", "tokayev’s"),  # curly quotes are not in string.punctuation
    ],
)
def test_squad_normalisation(text, normalised):
    assert m.normalize_answer(text) == normalised


def test_exact_match_takes_the_best_gold():
    assert m.exact_match("the Denver Broncos.", ["Broncos", "Denver Broncos"]) == 1.0
    assert m.exact_match("Denver", ["Denver Broncos"]) == 0.0
    assert m.exact_match("anything", []) == 0.0


def test_token_f1_by_hand():
    # prediction tokens: cat sat on mat (4); gold: cat on mat (3); overlap 3.
    # precision 3/4, recall 3/3, F1 = 2 * 0.75 * 1 / 1.75 = 6/7.
    assert m.token_f1("The cat sat on the mat", ["cat on mat"]) == pytest.approx(6 / 7)
    # max over golds
    assert m.token_f1("The cat sat on the mat", ["dog", "cat on mat", "mat"]) == pytest.approx(
        6 / 7
    )
    # Repeated tokens match once per occurrence: "x x y" vs "x y y" share one x and one y,
    # so P = R = 2/3.
    assert m.token_f1("x x y", ["x y y"]) == pytest.approx(2 / 3)
    assert m.token_f1("", ["x"]) == 0.0
    assert m.token_f1("the", ["a"]) == 0.0  # both normalise to nothing: 0 in SQuAD v1.1


def test_contains_gold_ignores_case_and_white_space():
    answer = "It targets Molybdenum  and\ntungsten, crucial for chips."
    assert m.contains_gold(answer, ["molybdenum and tungsten"])
    assert m.contains_gold(answer, ["cobalt", "TUNGSTEN"])
    assert not m.contains_gold(answer, ["cobalt"])
    assert not m.contains_gold(None, ["tungsten"])
    assert not m.contains_gold(answer, ["", "   "])  # empty golds never match


def test_mean_skips_undefined():
    assert m.mean([1.0, None, 0.0]) == 0.5
    assert m.mean([]) is None
    assert m.mean([None]) is None


def test_percentile_interpolates_like_numpy():
    import numpy as np

    values = [12.0, 3.0, 7.0, 1.0, 30.0]
    for q in (0, 25, 50, 90, 95, 100):
        assert m.percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    assert m.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert m.percentile([1.0, 2.0, 3.0, 4.0], 95) == pytest.approx(3.85)
    assert m.percentile([5.0], 95) == 5.0
    assert m.percentile([], 50) is None
    with pytest.raises(ValueError):
        m.percentile([1.0], 101)


def test_precision_recall_f1():
    predicted = [True, True, False, False, True]
    actual = [True, False, True, False, True]
    p, r, f1 = m.precision_recall_f1(predicted, actual)
    assert p == pytest.approx(2 / 3) and r == pytest.approx(2 / 3) and f1 == pytest.approx(2 / 3)
    assert m.precision_recall_f1([False, False], [True, False]) == (None, 0.0, None)
    assert m.precision_recall_f1([True], [False]) == (0.0, None, None)
    assert m.precision_recall_f1([True, False], [False, True]) == (0.0, 0.0, 0.0)
