"""Word-level text helpers shared by answer composition and evaluation."""

from index.analysis import STOP_WORDS, analyze, stem, words


def content_terms(text: str) -> list[str]:
    """Stemmed words of `text` that are not stop words, in order (the BM25 index's terms)."""
    return analyze(text)


def deletions(term: str) -> set[str]:
    """`term` and every string one character shorter: two terms are at most one edit apart
    (insertion, deletion or substitution) when these sets meet."""
    return {term} | {term[:i] + term[i + 1 :] for i in range(len(term))}


__all__ = ["STOP_WORDS", "analyze", "content_terms", "deletions", "stem", "words"]
