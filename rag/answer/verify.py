"""Citation support: does the quote a citation points at actually say what the answer says?

Pure: the answer, its citations and the embeddings of their texts in; a `SupportCheck` out.
Each sentence of the answer (a *claim*) is scored against the quote(s) it cites:

    support = DENSE_WEIGHT * max(0, cos(claim, quote)) + (1 - DENSE_WEIGHT) * term recall

where term recall is the share of the claim's content terms (the BM25 analyzer's stemmed,
stop-word-free words, numbers included) that occur in the quote: a quote that lacks the
claim's words and means something else scores low on both. A citation is supported when its
best claim reaches `min_support` (RAG_MIN_SUPPORT; chosen on the tune split, see README).

Which sentence cites which quote: `[n]` markers in the answer when it has them; else the
i-th sentence cites the i-th citation when the counts agree (the extractive composer's
layout); else every sentence is checked against every citation and keeps its best.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rag.models import Citation, SentenceSupport
from rag.text.chunking import split_sentences
from rag.text.terms import content_terms

DENSE_WEIGHT = 0.5
_MARKER = re.compile(r"\[(\d+)\]")
_LEADING = re.compile(r"(?:\s*\[\d+\])*\s*")

Embed = Callable[[Sequence[str]], np.ndarray]  # texts -> L2-normalised rows
Weight = Callable[[str], float]  # a term's weight in the term recall


@dataclass(frozen=True, slots=True)
class Claim:
    text: str
    start: int  # offsets in the answer
    end: int
    citation_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SupportCheck:
    citations: list[Citation]  # with `support` and `supported` filled in
    sentences: list[SentenceSupport]


def term_recall(claim: str, quote: str, weight: Weight | None = None) -> float | None:
    """Share of the claim's content terms found in the quote, each counted by `weight` (e.g.
    its idf: a rare name or number missing matters more than a common word); None when the
    claim has no content terms."""
    wanted = set(content_terms(claim))
    if not wanted:
        return None
    w = weight or (lambda term: 1.0)
    total = sum(w(t) for t in wanted)
    if total <= 0:
        return None
    return sum(w(t) for t in wanted & set(content_terms(quote))) / total


def support_score(claim: str, quote: str, cosine: float, weight: Weight | None = None) -> float:
    """The claim's support by the quote, in [0, 1] (see the module's docstring)."""
    dense = min(1.0, max(0.0, float(cosine)))
    lexical = term_recall(claim, quote, weight)
    if lexical is None:  # a claim of stop words only: the embeddings decide
        return dense
    return DENSE_WEIGHT * dense + (1 - DENSE_WEIGHT) * lexical


def claims(answer: str, citation_ids: Sequence[int]) -> list[Claim]:
    """The answer's sentences, each with the ids of the citations it rests on."""
    spans = [s for s in split_sentences(answer) if _MARKER.sub("", answer[s.start : s.end]).strip()]
    ids = list(citation_ids)
    markers = [(m.start(), int(m.group(1))) for m in _MARKER.finditer(answer)]
    markers = [(pos, n) for pos, n in markers if n in ids]
    # Where each sentence's words begin (after markers that close the sentence before it).
    starts = [_LEADING.match(answer, span.start).end() for span in spans]
    owner = {
        pos: max([i for i, st in enumerate(starts) if st <= pos], default=0) for pos, _ in markers
    }
    out: list[Claim] = []
    for i, span in enumerate(spans):
        text = _MARKER.sub("", answer[span.start : span.end]).strip()
        if markers:
            # A marker belongs to the sentence it follows.
            cited = tuple(dict.fromkeys(n for pos, n in markers if owner[pos] == i))
        elif len(spans) == len(ids):
            cited = (ids[i],)
        else:
            cited = tuple(ids)
        out.append(Claim(text, span.start, span.end, cited))
    return out


def check_support(
    answer: str | None,
    citations: Sequence[Citation],
    embed: Embed,
    *,
    min_support: float,
    weight: Weight | None = None,
) -> SupportCheck:
    """Score every claim of `answer` against its cited quotes and flag each citation."""
    if not answer or not citations:
        return SupportCheck(list(citations), [])
    found = claims(answer, [c.id for c in citations])
    by_id = {c.id: c for c in citations}
    pairs = [(claim.text, by_id[n].quote) for claim in found for n in claim.citation_ids]
    # A claim that is its quote verbatim (an extractive answer) needs no embedding: cosine 1.
    texts = list(dict.fromkeys(t for a, b in pairs if a != b for t in (a, b)))
    vectors = (
        dict(zip(texts, np.asarray(embed(texts), dtype=np.float32), strict=True)) if texts else {}
    )

    def cosine(a: str, b: str) -> float:
        return 1.0 if a == b else float(vectors[a] @ vectors[b])

    best: dict[int, float] = {}
    sentences = []
    for claim in found:
        scores = {
            n: support_score(claim.text, by_id[n].quote, cosine(claim.text, by_id[n].quote), weight)
            for n in claim.citation_ids
        }
        for n, s in scores.items():
            best[n] = max(best.get(n, 0.0), s)
        score = max(scores.values(), default=0.0)
        sentences.append(
            SentenceSupport(
                text=claim.text,
                start=claim.start,
                end=claim.end,
                citation_ids=list(claim.citation_ids),
                support=round(score, 4),
                supported=bool(scores) and score >= min_support,
            )
        )
    checked = [
        c.model_copy(
            update={
                "support": round(best.get(c.id, 0.0), 4),
                "supported": best.get(c.id, 0.0) >= min_support,
            }
        )
        for c in citations
    ]
    return SupportCheck(checked, sentences)


__all__ = ["Claim", "SupportCheck", "check_support", "claims", "support_score", "term_recall"]
