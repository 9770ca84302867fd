"""Extractive answers: choose the sentence(s) of the retrieved passages that best answer the
question, and cite them by exact character span.

Pure: passages in, `ComposedAnswer` out. No model runs here; sentence choice combines the
passage's retrieval score with how much of the question the sentence covers (words weighted
by rarity among the candidate sentences), so the query path stays at one embedding.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from rag.chunking import split_sentences
from rag.models import Citation, Passage
from rag.text import content_terms


@dataclass(frozen=True, slots=True)
class Candidate:
    passage: Passage
    start: int  # offsets in the document's text
    end: int
    text: str
    terms: frozenset[str]
    score: float = 0.0


@dataclass(frozen=True, slots=True)
class ComposedAnswer:
    answer: str | None
    answerable: bool
    confidence: float
    citations: list[Citation]


def sentence_candidates(passages: Sequence[Passage]) -> list[Candidate]:
    out = []
    for p in passages:
        for span in split_sentences(p.text):
            text = p.text[span.start : span.end]
            out.append(
                Candidate(
                    passage=p,
                    start=p.start + span.start,
                    end=p.start + span.end,
                    text=text,
                    terms=frozenset(content_terms(text)),
                )
            )
    return out


def score_candidates(
    question: str, candidates: Sequence[Candidate], *, lexical_weight: float = 0.5
) -> list[Candidate]:
    """Candidates with scores in [0, 1], best first (ties keep passage order)."""
    q_terms = set(content_terms(question))
    n = len(candidates)
    df = Counter(t for c in candidates for t in c.terms & q_terms)
    idf = {t: math.log(1 + (n + 1) / (df.get(t, 0) + 0.5)) for t in q_terms}
    total = sum(idf.values()) or 1.0
    scored = []
    for c in candidates:
        coverage = sum(idf[t] for t in c.terms & q_terms) / total
        dense = max(0.0, _similarity(c.passage))
        score = (1 - lexical_weight) * dense + lexical_weight * coverage
        if len(c.text.split()) < 4:
            score *= 0.5  # headings and fragments rarely answer anything
        scored.append(Candidate(c.passage, c.start, c.end, c.text, c.terms, round(score, 6)))
    return sorted(scored, key=lambda c: -c.score)


def compose_answer(
    question: str,
    passages: Sequence[Passage],
    *,
    min_score: float,
    max_sentences: int = 1,
) -> ComposedAnswer:
    """The best sentence(s) as the answer, each cited; or no answer when the best passage's
    score is under `min_score`."""
    confidence = max((_similarity(p) for p in passages), default=0.0)
    if not passages or confidence < min_score:
        return ComposedAnswer(None, False, round(confidence, 4), [])
    ranked = score_candidates(question, sentence_candidates(passages))
    chosen: list[Candidate] = []
    for c in ranked:
        if len(chosen) >= max_sentences:
            break
        if any(_overlaps(c, other) or c.text == other.text for other in chosen):
            continue
        chosen.append(c)
    citations = [
        Citation(
            id=i,
            doc_id=c.passage.doc_id,
            title=c.passage.title,
            chunk_id=c.passage.chunk_id,
            start=c.start,
            end=c.end,
            quote=c.text,
            score=round(c.score, 4),
        )
        for i, c in enumerate(chosen, start=1)
    ]
    answer = " ".join(c.text for c in chosen)
    return ComposedAnswer(answer, True, round(confidence, 4), citations)


def _similarity(p: Passage) -> float:
    """The passage's cosine similarity to the question: comparable across retrieval modes."""
    return p.dense_score if p.dense_score is not None else p.score


def _overlaps(a: Candidate, b: Candidate) -> bool:
    return a.passage.doc_id == b.passage.doc_id and a.start < b.end and b.start < a.end
