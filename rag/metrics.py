"""Evaluation metrics: pure functions over plain data (ids, strings, numbers).

Ranking metrics take a ranked list of ids (best first, duplicates already removed) and
the relevant ids, or graded relevance `{id: grade}` for nDCG. Answer metrics follow the
official SQuAD v1.1 evaluation script. Undefined values (a mean of nothing, precision
with no predictions) are `None`, never a silent 0.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from typing import TypeVar

T = TypeVar("T", bound=Hashable)

# ranking


def distinct(ids: Iterable[T]) -> list[T]:
    """`ids` in order with repeats dropped (a passage ranking becomes a document ranking)."""
    seen: set[T] = set()
    out: list[T] = []
    for i in ids:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


def hit_at_k(ranked: Sequence[T], relevant: Collection[T], k: int) -> float:
    """1.0 when any of the first `k` ranked ids is relevant, else 0.0."""
    return 1.0 if any(r in relevant for r in ranked[:k]) else 0.0


def recall_at_k(ranked: Sequence[T], relevant: Collection[T], k: int) -> float | None:
    """Share of the relevant ids found in the first `k`; None when nothing is relevant."""
    if not relevant:
        return None
    return len(set(ranked[:k]) & set(relevant)) / len(set(relevant))


def reciprocal_rank(ranked: Sequence[T], relevant: Collection[T], k: int = 10) -> float:
    """1 / rank of the first relevant id within the first `k`; 0.0 when there is none."""
    for rank, r in enumerate(ranked[:k], start=1):
        if r in relevant:
            return 1.0 / rank
    return 0.0


def dcg(gains: Sequence[float]) -> float:
    """Discounted cumulative gain with linear gains: sum of gain / log2(rank + 1)."""
    return sum(g / math.log2(rank + 1) for rank, g in enumerate(gains, start=1))


def ndcg_at_k(ranked: Sequence[T], grades: Mapping[T, float], k: int = 10) -> float | None:
    """nDCG@k with graded relevance `grades` (missing ids count 0), linear gains as in
    trec_eval and ir-measures. None when no id has a positive grade."""
    ideal = sorted((g for g in grades.values() if g > 0), reverse=True)[:k]
    if not ideal:
        return None
    gains = [max(0.0, float(grades.get(r, 0))) for r in ranked[:k]]
    return dcg(gains) / dcg(ideal)


# answers (official SQuAD v1.1 normalisation)

_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, strip punctuation, drop the articles a/an/the, squeeze white space."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES_RE.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, golds: Iterable[str]) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer."""
    norm = normalize_answer(prediction)
    return max((1.0 if norm == normalize_answer(g) else 0.0 for g in golds), default=0.0)


def _f1(prediction: str, gold: str) -> float:
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, golds: Iterable[str]) -> float:
    """Token-overlap F1 of the normalised prediction, the best over the gold answers."""
    return max((_f1(prediction, g) for g in golds), default=0.0)


def _squeeze(text: str) -> str:
    return " ".join(text.casefold().split())


def contains_gold(prediction: str | None, golds: Iterable[str]) -> bool:
    """Whether the prediction contains any gold string, ignoring case and runs of white space."""
    if not prediction:
        return False
    haystack = _squeeze(prediction)
    return any(_squeeze(g) and _squeeze(g) in haystack for g in golds)


# aggregates


def mean(values: Iterable[float | None]) -> float | None:
    """The mean of the defined values; None when there are none."""
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between closest ranks, as
    numpy's default; None for no values."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def precision_recall_f1(
    predicted: Sequence[bool], actual: Sequence[bool]
) -> tuple[float | None, float | None, float | None]:
    """Precision, recall and F1 of boolean predictions against boolean truth (e.g. "the system
    abstained" against "the question is unanswerable"). Undefined parts are None."""
    if len(predicted) != len(actual):
        raise ValueError("predicted and actual must have the same length")
    tp = sum(1 for p, a in zip(predicted, actual, strict=True) if p and a)
    n_predicted = sum(1 for p in predicted if p)
    n_actual = sum(1 for a in actual if a)
    precision = tp / n_predicted if n_predicted else None
    recall = tp / n_actual if n_actual else None
    if precision is None or recall is None:
        f1 = None
    elif precision + recall == 0:
        f1 = 0.0
    else:
        f1 = 2 * precision * recall / (precision + recall)
    return precision, recall, f1
