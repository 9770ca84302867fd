"""Reader inputs: a question and a context cut into token windows, `[CLS] question [SEP]
context [SEP]`, each context token keeping its character span in the context.

Pure, and shared by training (`eval/train_reader.py`) and answering, so the reader is read
with exactly the windows it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenizers import Tokenizer

# Questions longer than this (in word pieces) are cut: SQuAD's longest are about 40.
MAX_QUESTION_TOKENS = 48


@dataclass(frozen=True, slots=True)
class Window:
    """One reader input. `offsets[i]` is the character span in the context of input token i,
    or None for [CLS], the question and [SEP]."""

    input_ids: list[int]
    type_ids: list[int]
    offsets: list[tuple[int, int] | None]

    @property
    def context_start(self) -> int:
        """Index of the first context token."""
        return next(i for i, o in enumerate(self.offsets) if o is not None)

    @property
    def char_span(self) -> tuple[int, int]:
        """The characters of the context this window covers."""
        spans = [o for o in self.offsets if o is not None]
        return spans[0][0], spans[-1][1]


def load_tokenizer(source: str) -> Tokenizer:
    """A `tokenizers` tokenizer from a tokenizer.json path or its JSON text, with its own
    truncation and padding turned off (windows are cut here)."""
    tokenizer = (
        Tokenizer.from_str(source)
        if source.lstrip().startswith("{")
        else Tokenizer.from_file(source)
    )
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def encode_windows(
    tokenizer: Tokenizer,
    question: str,
    context: str,
    *,
    max_length: int,
    stride: int,
) -> list[Window]:
    """The context in windows of at most `max_length` tokens with the question, consecutive
    windows sharing `stride` context tokens, so an answer cut by one window is whole in the
    next."""
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    q_ids = tokenizer.encode(question, add_special_tokens=False).ids[:MAX_QUESTION_TOKENS]
    ctx = tokenizer.encode(context, add_special_tokens=False)
    room = max_length - len(q_ids) - 3
    if room < 8:
        raise ValueError(f"max_length {max_length} leaves no room for the context")
    stride = min(stride, room // 2)
    head_ids = [cls, *q_ids, sep]
    head_offsets: list[tuple[int, int] | None] = [None] * len(head_ids)
    out = []
    start, n = 0, len(ctx.ids)
    while True:
        end = min(start + room, n)
        ids = ctx.ids[start:end]
        out.append(
            Window(
                input_ids=[*head_ids, *ids, sep],
                type_ids=[0] * len(head_ids) + [1] * (len(ids) + 1),
                offsets=[*head_offsets, *ctx.offsets[start:end], None],
            )
        )
        if end >= n:
            return out
        start = end - stride


def token_span(window: Window, char_start: int, char_end: int) -> tuple[int, int] | None:
    """The input tokens (first, last) that cover characters [char_start, char_end) of the
    context, or None when the window does not hold all of them."""
    lo, hi = window.char_span
    if char_start < lo or char_end > hi or char_end <= char_start:
        return None
    inside = [
        i
        for i, o in enumerate(window.offsets)
        if o is not None and o[1] > char_start and o[0] < char_end
    ]
    return (inside[0], inside[-1]) if inside else None
