"""Word-level text helpers shared by answer composition and evaluation."""

from collections.abc import Iterable

from index.analysis import STOP_WORDS, analyze, stem, words


def content_terms(text: str) -> list[str]:
    """Stemmed words of `text` that are not stop words, in order (the BM25 index's terms)."""
    return analyze(text)


def deletions(term: str) -> set[str]:
    """`term` and every string one character shorter: two terms are at most one edit apart
    (insertion, deletion or substitution) when these sets meet."""
    return {term} | {term[:i] + term[i + 1 :] for i in range(len(term))}


def deletion_index(terms: Iterable[str], min_length: int = 0) -> dict[str, frozenset[str]]:
    """Each of the `deletions` of the terms at least `min_length` long, with the terms it
    comes from: a misspelt word's own deletions look up the terms one edit away."""
    index: dict[str, set[str]] = {}
    for term in terms:
        if len(term) >= min_length:
            for variant in deletions(term):
                index.setdefault(variant, set()).add(term)
    return {variant: frozenset(found) for variant, found in index.items()}


__all__ = [
    "STOP_WORDS",
    "analyze",
    "content_terms",
    "deletion_index",
    "deletions",
    "stem",
    "words",
]
