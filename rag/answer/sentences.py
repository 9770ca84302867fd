"""Extractive answers: choose the sentence of the retrieved passages that best answers the
question, cut a short answer out of it when the question asks for a date, number, amount or
percentage and exactly one is there, and cite the sentence by exact character span (listing
other documents' near-duplicate sentences as corroboration rather than citing them again).

Pure: passages in, `ComposedAnswer` out. No model runs here, so the query path stays at one
embedding. A sentence's score combines how much of the question it covers (words weighted by
rarity among the candidate sentences), its passage's retrieval evidence, and whether it holds
an answer of the type the question asks for (`rag/answer/types.py`). The confidence compared
with the abstention threshold is the mean of the best passage's cosine similarity and the
chosen sentence's coverage. Choices and measurements: eval/README.md, "Answers".
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from rag.answer.types import (
    DATE,
    MONEY,
    NUMBER,
    PERCENT,
    QUANTITY,
    TypedSpan,
    expected_type,
    matches,
    typed_spans,
)
from rag.models import Citation, Passage, Quote
from rag.text.chunking import split_sentences
from rag.text.terms import content_terms, deletion_index, deletions, stem, words

# Short answers are cut only for these types: on the tune split and SQuAD, a single date,
# number, amount or percentage in the best sentence is the answer nearly whenever the
# sentence holds it; capitalised names are not (about half the time).
SHORT_ANSWER_TYPES = frozenset({DATE, MONEY, NUMBER, PERCENT, QUANTITY})

# Candidates (best first by words and passage score) checked for a span of the expected type.
TYPED_CANDIDATES = 8

# Question words shorter than this are not corrected for typos.
MIN_TYPO_LENGTH = 5

# Weight of question coverage against dense similarity in the confidence (tune split, SQuAD
# and off-topic questions; see eval/README.md).
COVERAGE_WEIGHT = 0.5

# Sentences that share this much of their words (Jaccard) say the same thing.
NEAR_DUPLICATE = 0.6

# Passages, sentences and terms whose analysis is kept between questions: a corpus's popular
# passages come back question after question, and splitting and stemming them again was half
# the CPU time of an answer.
ANALYSIS_CACHE_SIZE = 2048  # passages of ~10-20 kB analysed: at most ~40 MB
# The typo index of a passage is bigger (every term's deletions, ~100 kB): fewer are kept.
TYPO_INDEX_CACHE_SIZE = 256


@dataclass(frozen=True, slots=True)
class Weights:
    """How a sentence's score is made (chosen on the tune split and a SQuAD subset)."""

    lexical: float = 0.5  # idf-weighted share of the question's words in the sentence
    passage: float = 0.5  # the passage's retrieval evidence
    answer_type: float = 0.2  # the sentence holds a span of the expected type
    short_fragment: float = 0.5  # factor for sentences under 4 words (headings, fragments)


@dataclass(frozen=True, slots=True)
class Candidate:
    passage: Passage
    start: int  # offsets in the document's text
    end: int
    text: str
    terms: frozenset[str]
    score: float = 0.0
    coverage: float = 0.0
    typed: bool = False


@dataclass(frozen=True, slots=True)
class ComposedAnswer:
    answer: str | None
    answerable: bool
    confidence: float
    citations: list[Citation]
    short_answer: str | None = None
    answer_type: str | None = None
    reason: str | None = None  # why it abstained


def sentence_candidates(passages: Sequence[Passage]) -> list[Candidate]:
    out = []
    seen: set[tuple[str, int]] = set()
    for p in passages:
        for span_start, span_end, terms in passage_sentences(p.text):
            start = p.start + span_start
            if (p.doc_id, start) in seen:  # overlapping chunks repeat sentences
                continue
            seen.add((p.doc_id, start))
            out.append(
                Candidate(
                    passage=p,
                    start=start,
                    end=p.start + span_end,
                    text=p.text[span_start:span_end],
                    terms=terms,
                )
            )
    return out


@lru_cache(maxsize=ANALYSIS_CACHE_SIZE)
def passage_sentences(text: str) -> tuple[tuple[int, int, frozenset[str]], ...]:
    """The sentences of a passage: (start, end, content terms) each, offsets in `text`."""
    return tuple(
        (span.start, span.end, frozenset(content_terms(text[span.start : span.end])))
        for span in split_sentences(text)
    )


def score_candidates(
    question: str, candidates: Sequence[Candidate], weights: Weights | None = None
) -> list[Candidate]:
    """Candidates with scores, best first (ties keep passage order)."""
    w = weights or Weights()
    q_terms = question_terms(question, candidates)
    wanted = expected_type(question)
    q_words = set(words(question))
    n = len(candidates)
    df = Counter(t for c in candidates for t in c.terms & q_terms)
    idf = {t: math.log(1 + (n + 1) / (df.get(t, 0) + 0.5)) for t in q_terms}
    total = sum(idf.values()) or 1.0
    scale = (w.lexical + w.passage + w.answer_type) or 1.0  # scores in [0, 1]
    best_passage = max((_similarity(c.passage) for c in candidates), default=0.0) or 1.0
    scored = []
    for c in candidates:
        coverage = sum(idf[t] for t in c.terms & q_terms) / total
        evidence = max(0.0, _similarity(c.passage)) / best_passage
        score = (w.lexical * coverage + w.passage * evidence) / scale
        if len(c.text.split()) < 4:
            score *= w.short_fragment
        scored.append(replace(c, score=round(score, 6), coverage=coverage))
    scored.sort(key=lambda c: -c.score)
    if wanted is None or not w.answer_type:
        return scored
    # Typing spans is the costly part: only the leading candidates can gain enough from it.
    for i, c in enumerate(scored[:TYPED_CANDIDATES]):
        typed = any(
            matches(wanted, s.type) and not _in_question(s.text, q_words)
            for s in _typed_spans(c.text, wanted)
        )
        if typed:
            bonus = w.answer_type / scale
            if len(c.text.split()) < 4:
                bonus *= w.short_fragment
            scored[i] = replace(c, score=round(c.score + bonus, 6), typed=True)
    return sorted(scored, key=lambda c: -c.score)


def question_terms(question: str, candidates: Sequence[Candidate]) -> set[str]:
    """The question's content terms, a misspelt one replaced by the candidates' term one edit
    away ("chirchk" -> "chirchik") when there is exactly one such term."""
    terms = set(content_terms(question))
    known = {t for c in candidates for t in c.terms}
    unknown = {t for t in terms - known if len(t) >= MIN_TYPO_LENGTH}
    if not unknown:
        return terms
    indexes = [_near_terms(text) for text in dict.fromkeys(c.passage.text for c in candidates)]
    out = terms - unknown
    for t in unknown:
        found = {k for index in indexes for d in deletions(t) for k in index.get(d, ())}
        out.add(found.pop() if len(found) == 1 else t)
    return out


@lru_cache(maxsize=TYPO_INDEX_CACHE_SIZE)
def _near_terms(passage: str) -> dict[str, frozenset[str]]:
    """The passage's terms long enough to be corrected to, by each of their `deletions`."""
    terms = {t for _, _, sentence_terms in passage_sentences(passage) for t in sentence_terms}
    return deletion_index(terms, MIN_TYPO_LENGTH - 1)


@lru_cache(maxsize=ANALYSIS_CACHE_SIZE)
def _typed_spans(sentence: str, wanted: str | None) -> tuple[TypedSpan, ...]:
    return tuple(typed_spans(sentence, wanted))


def confidence_score(dense: float, coverage: float) -> float:
    """The evidence an answer rests on, compared with the abstention threshold: the mean of
    the best passage's cosine similarity (semantic match) and the share of the question's
    words, weighted by rarity, that the chosen sentence holds (lexical match). Off-topic
    questions score low on both whatever the corpus; a one-word or misspelt question that
    names something the corpus holds scores high on one."""
    return (1 - COVERAGE_WEIGHT) * dense + COVERAGE_WEIGHT * coverage


def short_answer(question: str, sentence: str) -> str | None:
    """The span of `sentence` that answers a question asking for a date, number, amount of
    money, percentage or quantity: given only when the sentence holds exactly one span of
    that type whose words are not all in the question (several candidates, or names and
    places, which capitalisation cannot type reliably, give None: the sentence is then the
    shortest reliable answer)."""
    wanted = expected_type(question)
    if wanted not in SHORT_ANSWER_TYPES:
        return None
    q_words = set(words(question))
    allowed = {NUMBER, QUANTITY} if wanted == NUMBER else {wanted}
    spans = [
        s
        for s in _typed_spans(sentence, None)
        if s.type in allowed and not _in_question(s.text, q_words)
    ]
    if len(spans) > 1 and wanted == NUMBER:
        # "How many miles ...": the one span followed by the counted word
        counted = _counted_word(question)
        spans = [s for s in spans if counted and counted in _span_unit(sentence, s)]
    return spans[0].text if len(spans) == 1 else None


def _counted_word(question: str) -> str | None:
    found = re.search(r"\bhow many (\w+)", question.lower())
    return stem(found.group(1)) if found else None


def _span_unit(sentence: str, span) -> set[str]:
    """The stems of a number span's last word and of the word after it ("103 miles")."""
    last = words(span.text)[-1:]
    following = words(sentence[span.end :])[:1]
    return {stem(w) for w in last + following}


def compose_answer(
    question: str,
    passages: Sequence[Passage],
    *,
    min_score: float,
    max_sentences: int = 1,
    weights: Weights | None = None,
    short: bool = True,
) -> ComposedAnswer:
    """The best sentence as the answer, and the span in it that answers a typed question as
    the short answer when there is one; the sentence is cited as the quote, with near-
    duplicate sentences of other documents listed as corroboration. No answer when the
    evidence is under `min_score`."""
    wanted = expected_type(question)
    ranked = score_candidates(question, sentence_candidates(passages), weights)
    dense = max((_similarity(p) for p in passages), default=0.0)
    confidence = confidence_score(dense, ranked[0].coverage) if ranked else dense
    if not ranked or confidence < min_score:
        reason = (
            f"the evidence score {confidence:.2f} is under the threshold {min_score:.2f}: "
            "no passage covers the question well enough"
        )
        return ComposedAnswer(
            None, False, round(confidence, 4), [], answer_type=wanted, reason=reason
        )
    chosen: list[Candidate] = []
    for c in ranked:
        if len(chosen) >= max_sentences:
            break
        if any(_overlaps(c, other) or _near_duplicate(c, other) for other in chosen):
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
            corroborated_by=_corroboration(c, ranked),
        )
        for i, c in enumerate(chosen, start=1)
    ]
    answer = " ".join(c.text for c in chosen)
    brief = short_answer(question, chosen[0].text) if short and chosen else None
    return ComposedAnswer(
        answer,
        True,
        round(confidence, 4),
        citations,
        short_answer=brief,
        answer_type=wanted,
    )


def _corroboration(chosen: Candidate, ranked: Sequence[Candidate]) -> list[Quote]:
    """Sentences of other documents that say the same as the chosen one."""
    out: list[Quote] = []
    seen = {chosen.passage.doc_id}
    for c in ranked:
        if c.passage.doc_id in seen or not _near_duplicate(c, chosen):
            continue
        seen.add(c.passage.doc_id)
        out.append(
            Quote(
                doc_id=c.passage.doc_id,
                title=c.passage.title,
                chunk_id=c.passage.chunk_id,
                start=c.start,
                end=c.end,
                quote=c.text,
            )
        )
    return out


def _near_duplicate(a: Candidate, b: Candidate) -> bool:
    if a.text == b.text:
        return True
    if not a.terms or not b.terms:
        return False
    return len(a.terms & b.terms) / len(a.terms | b.terms) >= NEAR_DUPLICATE


_FUNCTION_WORDS = frozenset(
    "a an the of in on at to for by with from and or is are was were be been what which who "
    "whom whose when where how why did does do many much".split()
)


def _in_question(span: str, q_words: set[str]) -> bool:
    """Every word of the span is already in the question (it cannot be the answer)."""
    span_words = [w for w in words(span) if w not in _FUNCTION_WORDS]
    return bool(span_words) and all(w in q_words for w in span_words)


def _similarity(p: Passage) -> float:
    """The passage's cosine similarity to the question: comparable across retrieval modes."""
    return p.dense_score if p.dense_score is not None else p.score


def _overlaps(a: Candidate, b: Candidate) -> bool:
    return a.passage.doc_id == b.passage.doc_id and a.start < b.end and b.start < a.end
