"""Answers read by the trained reader: the short span that answers, cited by the sentence that
holds it, or an abstention when no window of the passages answers.

The reader reads a few windows, not whole passages (its cost is in the query path, about
8 ms per 128 tokens per core): the windows start at the sentence before each of the best
candidate sentences (ranked by `sentences.score_candidates`, words and retrieval), one
window per candidate, never two over the same text. The best span across all windows is the
answer; the abstention decision is the reader's answerability across them, with the
retrieval evidence as a floor (`min_dense`). Each citation's `support` is the reader's
answerability for the window it was read from: a passage on the topic that does not answer
scores low. Choices and measurements: eval/README.md, "Reader".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from rag.answer.reader import Reader, Reading, Span
from rag.answer.sentences import (
    Candidate,
    ComposedAnswer,
    _corroboration,
    _similarity,
    passage_sentences,
    score_candidates,
    sentence_candidates,
)
from rag.answer.types import type_mismatch
from rag.models import Citation, Passage, SentenceSupport


@dataclass(frozen=True, slots=True)
class ReadWindow:
    passage: Passage
    start: int  # offsets in the passage's text
    end: int


def reading_windows(
    reader: Reader,
    question: str,
    passages: Sequence[Passage],
    n_windows: int,
    candidates: Sequence[Candidate] | None = None,
) -> list[ReadWindow]:
    """Up to `n_windows` stretches of the passages, each as long as the reader reads in one
    window, around the best candidate sentences (best first, none over the same text).
    `candidates`: the passages' sentence candidates, when the caller has them already."""
    ranked = score_candidates(question, candidates or sentence_candidates(passages))
    room = _context_room(reader, question)
    out: list[ReadWindow] = []
    for c in ranked:
        if len(out) >= n_windows:
            break
        lo, hi = c.start - c.passage.start, c.end - c.passage.start
        if any(_same_text(w, c.passage, lo, hi) for w in out):
            continue  # already read
        window = _window_around(reader, c.passage, lo, room)
        if any(_same_text(w, c.passage, window.start, window.end) for w in out):
            continue  # a window over mostly the same text (near the passage's end)
        out.append(window)
    return out


def _same_text(window: ReadWindow, passage: Passage, start: int, end: int) -> bool:
    """Whether `window` already covers most of passage text [start, end)."""
    if window.passage.chunk_id != passage.chunk_id:
        return False
    overlap = min(end, window.end) - max(start, window.start)
    return overlap >= 0.8 * (end - start)


def _context_room(reader: Reader, question: str) -> int:
    q = len(reader.tokenizer.encode(question, add_special_tokens=False).ids)
    return reader.max_length - min(q, 48) - 3


def _window_around(reader: Reader, passage: Passage, sentence_start: int, room: int) -> ReadWindow:
    """The passage's text from the sentence before the one at `sentence_start` (or from that
    sentence, when both do not fit), `room` tokens long at most."""
    offsets = _token_offsets(reader, passage.text)
    starts = [s for s, _, _ in passage_sentences(passage.text)]
    before = [s for s in starts if s < sentence_start]
    first = _token_at(offsets, before[-1] if before else sentence_start)
    own = _token_at(offsets, sentence_start)
    if own - first > room // 2:
        first = own
    last = min(len(offsets), first + room) - 1
    if last < first:
        return ReadWindow(passage, sentence_start, len(passage.text))
    if last == len(offsets) - 1:  # at the passage's end: fill the window from the left
        first = min(first, max(0, _word_start(offsets, last + 1 - room)))
    return ReadWindow(passage, offsets[first][0], offsets[last][1])


@lru_cache(maxsize=2048)
def _token_offsets(reader: Reader, text: str) -> tuple[tuple[int, int], ...]:
    """The character span of each of the reader's tokens of a passage (passages recur)."""
    return tuple(reader.tokenizer.encode(text, add_special_tokens=False).offsets)


def _token_at(offsets: Sequence[tuple[int, int]], char: int) -> int:
    for i, (_, e) in enumerate(offsets):
        if e > char:
            return i
    return max(0, len(offsets) - 1)


def _word_start(offsets: Sequence[tuple[int, int]], i: int) -> int:
    """The token starting the word that token i is in (a window never starts mid-word)."""
    i = max(0, i)
    while i > 0 and offsets[i][0] == offsets[i - 1][1]:
        i -= 1
    return i


def typed_span(
    question: str, spans: Sequence[Span], contexts: Sequence[str]
) -> tuple[Span | None, str | None]:
    """The best span, or None and why when it is clearly not what the question asks for
    (`types.type_mismatch`: a count answered by a duration, a date by a noun).
    `contexts`: the texts the spans were read from."""
    if not spans:
        return None, None
    best = spans[0]
    after = contexts[best.context][best.end : best.end + 24]
    wanted = type_mismatch(question, best.text, after)
    if wanted is None:
        return best, None
    return None, f"the question asks for {wanted} and the best span read, {best.text!r}, is not one"


def read_answer(
    question: str,
    passages: Sequence[Passage],
    reader: Reader,
    *,
    min_answerable: float,
    min_dense: float = 0.0,
    n_windows: int = 3,
    type_check: bool = True,
) -> tuple[ComposedAnswer, Reading | None, list[ReadWindow]]:
    """The reader's answer to `question` from `passages`: the best span as `answer` and
    `short_answer`, cited by the sentence(s) holding it; no answer when the reader's
    answerability is under `min_answerable` or the best passage's cosine under `min_dense`."""
    if not passages:
        return (
            ComposedAnswer(None, False, 0.0, [], reason="no passage matched the question"),
            None,
            [],
        )
    candidates = sentence_candidates(passages)
    windows = reading_windows(reader, question, passages, n_windows, candidates)
    texts = [w.passage.text[w.start : w.end] for w in windows]
    reading = reader.read(question, texts)
    confidence = round(reading.answerable, 4)
    dense = max(_similarity(p) for p in passages)
    if dense < min_dense:
        reason = (
            f"the best passage is too far from the question (cosine {dense:.2f}, "
            f"under {min_dense:.2f})"
        )
        return ComposedAnswer(None, False, confidence, [], reason=reason), reading, windows
    if reading.best is None or reading.answerable < min_answerable:
        docs = len({p.doc_id for p in passages})
        reason = (
            f"the reader read {len(windows)} window(s) of the best passages ({docs} "
            f"document(s)) and found no answer: answerability {confidence:.2f}, under the "
            f"threshold {min_answerable:.2f}"
        )
        return ComposedAnswer(None, False, confidence, [], reason=reason), reading, windows
    best = reading.best
    if type_check:
        best, mismatch = typed_span(question, reading.spans, texts)
        if best is None:
            return ComposedAnswer(None, False, confidence, [], reason=mismatch), reading, windows
    window = windows[best.context]
    p = window.passage
    span_start, span_end = window.start + best.start, window.start + best.end
    lo, hi = _sentences_holding(p.text, span_start, span_end)
    quote = Candidate(
        passage=p,
        start=p.start + lo,
        end=p.start + hi,
        text=p.text[lo:hi],
        terms=frozenset(),
    )
    ranked = candidates
    support = round(reading.context_answerable[best.context], 4)
    citation = Citation(
        id=1,
        doc_id=p.doc_id,
        title=p.title,
        chunk_id=p.chunk_id,
        start=quote.start,
        end=quote.end,
        quote=quote.text,
        score=confidence,
        support=support,
        supported=support >= min_answerable,
        corroborated_by=_corroboration(_with_terms(quote, ranked), ranked),
        answer_start=p.start + span_start,
        answer_end=p.start + span_end,
    )
    answer = p.text[span_start:span_end]
    composed = ComposedAnswer(answer, True, confidence, [citation], short_answer=answer)
    return composed, reading, windows


def answer_support(answer: str, citations: Sequence[Citation]) -> list[SentenceSupport]:
    """The answer (one span) and the reader's support for its citation."""
    if not citations:
        return []
    c = citations[0]
    return [
        SentenceSupport(
            text=answer,
            start=0,
            end=len(answer),
            citation_ids=[c.id],
            support=c.support or 0.0,
            supported=bool(c.supported),
        )
    ]


def _sentences_holding(text: str, start: int, end: int) -> tuple[int, int]:
    """The span of the sentence(s) of `text` that hold characters [start, end)."""
    spans = [(s, e) for s, e, _ in passage_sentences(text) if s < end and start < e]
    if not spans:
        return start, end
    return min(spans[0][0], start), max(spans[-1][1], end)


def _with_terms(c: Candidate, ranked: Sequence[Candidate]) -> Candidate:
    """The quote as a candidate with its terms (for finding its near-duplicates)."""
    for r in ranked:
        if r.passage.doc_id == c.passage.doc_id and r.start == c.start and r.end == c.end:
            return r
    from rag.text.terms import content_terms

    return Candidate(c.passage, c.start, c.end, c.text, frozenset(content_terms(c.text)))
