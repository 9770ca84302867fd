"""Word-level text helpers shared by answer composition and evaluation."""

from index.analysis import STOP_WORDS, analyze, stem, words


def content_terms(text: str) -> list[str]:
    """Stemmed words of `text` that are not stop words, in order (the BM25 index's terms)."""
    return analyze(text)


__all__ = ["STOP_WORDS", "analyze", "content_terms", "stem", "words"]
