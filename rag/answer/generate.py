"""Generated answers, checked sentence by sentence against the sentences they cite.

Pure: the model's text, the numbered sentences it was shown (`prompt.Source`) and two
scoring functions in; the answer to return out. Nothing here talks to the generator
(`generator.py` does) or loads a model (the engine passes the reader in as `signal`).

1. `parse_answer` splits the text into sentences (*claims*), each with the numbers in the
   square brackets that end it (`[2]`, `[2, 5]`, `[2][5]`), or notices the `NO_ANSWER` token.
2. `judge_claims` maps each claim's numbers to the numbered sentences. A number that names
   no sentence is dropped and reported (it never becomes a citation). A claim is supported
   when it cites one to MAX_CITED real sentences, its words are in what it cites (idf-weighted
   term recall at least `min_overlap`, the floor), and the real signal on the cited sentences
   reaches `min_signal` (the engine's reader: the probability that they answer the question).
3. `compose` keeps the supported claims (or every claim, marked, when `unsupported="mark"`),
   renumbers their markers as citations with exact document offsets, and records each
   sentence's support. No supported claim: no generated answer (the engine falls back).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from rag.answer.prompt import NO_ANSWER, Source
from rag.models import Citation, GeneratedSentence, SentenceSupport
from rag.text.chunking import split_sentences

_MARKERS = re.compile(r"\[\s*(\d+(?:\s*[,;]\s*\d+)*)\s*\]")
_LEADING = re.compile(r"(?:\s*\[[\d\s,;]*\])*[\s.,;:]*")
_NO_ANSWER = re.compile(rf"^\W*{NO_ANSWER}\b", re.IGNORECASE)

# A sentence rests on a few sentences: one citing a dozen (SmolLM2 does) would pass the word
# check on their sum without saying anything; it is unsupported.
MAX_CITED = 3

Overlap = Callable[[str, str], float | None]  # (claim, evidence) -> term recall, None: no terms
# (claim, evidence) pairs -> support in [0, 1] each
Signal = Callable[[Sequence[tuple[str, str]]], list[float]]


@dataclass(frozen=True, slots=True)
class Claim:
    text: str  # the sentence without its markers
    markers: tuple[int, ...]  # the numbers it cites, as written (first occurrence order)


@dataclass(frozen=True, slots=True)
class Judged:
    claim: Claim
    cited: tuple[int, ...]  # the markers that name a numbered sentence
    invalid: tuple[int, ...]  # the markers that name none
    overlap: float | None
    signal: float | None
    supported: bool
    reason: str | None  # why it is not supported


@dataclass(frozen=True, slots=True)
class Composed:
    answer: str | None  # None: no supported sentence
    citations: list[Citation]
    support: list[SentenceSupport]
    sentences: list[GeneratedSentence]  # every generated sentence, kept or not


def is_no_answer(text: str) -> bool:
    """The model wrote the fixed token for "the sentences do not answer"."""
    return bool(_NO_ANSWER.match(text or ""))


def parse_answer(text: str) -> list[Claim]:
    """The sentences of a generated answer, each with the numbers of its markers. A marker
    belongs to the sentence it follows, also when the sentence's full stop comes first
    ("... in 2019. [2] Then ..."), except at the start of a line (see `_owner`)."""
    spans = [s for s in split_sentences(text) if _MARKERS.sub("", text[s.start : s.end]).strip()]
    starts = [_LEADING.match(text, s.start).end() for s in spans]
    found = [(m.start(), _numbers(m.group(1))) for m in _MARKERS.finditer(text)]
    claims: list[Claim] = []
    owners = [_owner(text, pos, [s.start for s in spans], starts) for pos, _ in found]
    for i, span in enumerate(spans):
        numbers: list[int] = []
        for (_, ns), owner in zip(found, owners, strict=True):
            if owner == i:
                numbers += ns
        words = " ".join(_MARKERS.sub(" ", text[starts[i] : span.end]).split())
        words = re.sub(r"\s+([.,;:!?])", r"\1", words).strip()
        if words.strip(".,;:!?- "):
            claims.append(Claim(words, tuple(dict.fromkeys(numbers))))
    return claims


def _owner(text: str, pos: int, spans: Sequence[int], starts: Sequence[int]) -> int:
    """The sentence a marker at `pos` belongs to: the one it follows; but a marker opening a
    line ("[3] The center ...", the prompt's own layout copied) belongs to the line's
    sentence."""
    line_start = text.rfind("\n", 0, pos) + 1
    if not text[line_start:pos].strip():
        following = [j for j, st in enumerate(spans) if st >= line_start]
        if following:
            return following[0]
    return max([j for j, st in enumerate(starts) if st <= pos], default=0)


def _numbers(group: str) -> list[int]:
    return [int(n) for n in re.split(r"\s*[,;]\s*", group.strip()) if n]


def judge_claims(
    claims: Sequence[Claim],
    sources: Mapping[int, Source],
    *,
    overlap: Overlap,
    signal: Signal,
    min_overlap: float,
    min_signal: float,
    signal_name: str = "the reader's probability that they answer the question",
) -> list[Judged]:
    """Each claim checked against the sentences it cites (see the module's docstring). The
    signal runs once, on the claims that pass the floor."""
    staged: list[tuple[Claim, tuple[int, ...], tuple[int, ...], float | None, str | None]] = []
    for claim in claims:
        cited = tuple(n for n in claim.markers if n in sources)
        invalid = tuple(n for n in claim.markers if n not in sources)
        reason = None
        recall = None
        if not claim.markers:
            reason = "cites no numbered sentence"
        elif not cited:
            reason = f"its marker(s) {_brackets(invalid)} name no sentence that was given"
        elif len(cited) > MAX_CITED:
            reason = f"it cites {len(cited)} sentences; a sentence may rest on {MAX_CITED} at most"
        else:
            recall = overlap(claim.text, _evidence(cited, sources))
            if recall is None:
                reason = "has no content words to check"
            elif recall < min_overlap:
                reason = (
                    f"only {recall:.0%} of its words (idf-weighted) are in the sentence(s) "
                    f"it cites, under {min_overlap:.0%}"
                )
        staged.append((claim, cited, invalid, recall, reason))
    to_score = [
        (claim.text, _evidence(cited, sources))
        for claim, cited, _, _, reason in staged
        if reason is None
    ]
    scores = iter(signal(to_score) if to_score else [])
    out: list[Judged] = []
    for claim, cited, invalid, recall, reason in staged:
        score = None
        if reason is None:
            score = float(next(scores))
            if score < min_signal:
                reason = (
                    f"on the cited sentence(s), {signal_name} is {score:.2f}, "
                    f"under {min_signal:.2f}"
                )
        out.append(Judged(claim, cited, invalid, recall, score, reason is None, reason))
    return out


def _evidence(cited: Sequence[int], sources: Mapping[int, Source]) -> str:
    return " ".join(sources[n].text for n in cited)


def _with_markers(text: str, citation_ids: Sequence[int]) -> str:
    """The sentence with its citation markers before its final punctuation: "... 2019 [1]."."""
    if not citation_ids:
        return text
    body = text.rstrip(".!?")
    return f"{body} {_brackets(citation_ids)}{text[len(body) :]}"


def _brackets(numbers: Sequence[int]) -> str:
    return "".join(f"[{n}]" for n in numbers)


def sentence_support(j: Judged) -> float:
    """One number for a claim's support: the signal when it ran, capped by the overlap floor
    (a claim whose words are not in its sources scores at most its overlap)."""
    if j.signal is not None:
        return round(min(j.signal, 1.0), 4)
    return round(min(j.overlap or 0.0, 1.0), 4) if j.cited else 0.0


def compose(
    judged: Sequence[Judged],
    sources: Mapping[int, Source],
    *,
    unsupported: str = "drop",
) -> Composed:
    """The answer from the judged claims: supported ones only (`drop`), or all of them with
    the unsupported flagged (`mark`); empty when none is supported. Each cited sentence is a
    citation (numbered in order of first use) with its exact offsets in its document."""
    if not any(j.supported for j in judged):
        return Composed(None, [], [], [_generated(j, False, ()) for j in judged])
    kept = [j for j in judged if j.supported or unsupported == "mark"]
    ids: dict[int, int] = {}  # source number -> citation id
    for j in kept:
        for n in j.cited:
            ids.setdefault(n, len(ids) + 1)
    best: dict[int, float] = {}
    backed: dict[int, bool] = {}
    parts: list[str] = []
    support: list[SentenceSupport] = []
    sentences: list[GeneratedSentence] = []
    position = 0
    for j in judged:
        if j not in kept:
            sentences.append(_generated(j, False, ()))
            continue
        cite = tuple(ids[n] for n in j.cited)
        score = sentence_support(j)
        for n in j.cited:
            best[n] = max(best.get(n, 0.0), score)
            backed[n] = backed.get(n, False) or j.supported
        text = _with_markers(j.claim.text, cite)
        start = position + (1 if parts else 0)
        parts.append(text)
        position = start + len(text)
        support.append(
            SentenceSupport(
                text=text,
                start=start,
                end=position,
                citation_ids=list(cite),
                support=score,
                supported=j.supported,
            )
        )
        sentences.append(_generated(j, True, cite))
    citations = [
        Citation(
            id=cid,
            doc_id=sources[n].passage.doc_id,
            title=sources[n].passage.title,
            chunk_id=sources[n].passage.chunk_id,
            start=sources[n].start,
            end=sources[n].end,
            quote=sources[n].text,
            score=best[n],
            support=best[n],
            supported=backed[n],
        )
        for n, cid in ids.items()
    ]
    return Composed(" ".join(parts), citations, support, sentences)


def _generated(j: Judged, kept: bool, citation_ids: Sequence[int]) -> GeneratedSentence:
    return GeneratedSentence(
        text=j.claim.text,
        markers=list(j.claim.markers),
        invalid_markers=list(j.invalid),
        citation_ids=list(citation_ids),
        overlap=None if j.overlap is None else round(j.overlap, 4),
        signal=None if j.signal is None else round(j.signal, 4),
        support=sentence_support(j),
        supported=j.supported,
        kept=kept,
        reason=j.reason,
    )


__all__ = [
    "Claim",
    "Composed",
    "Judged",
    "compose",
    "is_no_answer",
    "judge_claims",
    "parse_answer",
    "sentence_support",
]
