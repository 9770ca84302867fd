"""The generator's prompt: numbered sentences of the best passages, and the question.

The template lives in one versioned file (`prompts/answer_v1.txt`, two sections: `### system`
and `### user`); a new wording is a new file and a new `PROMPT_VERSION`, so a response and an
eval report say which prompt they came from. The sentences are numbered 1..n in passage
order; the model is asked to end every sentence with the numbers it rests on, or to write
`NO_ANSWER`. Only as many sentences are numbered as fit the model's context (counted with
tiktoken, with a margin: the served model's own tokenizer may count more).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rag.answer.sentences import sentence_candidates
from rag.models import Passage
from rag.text.chunking import get_encoding

PROMPT_VERSION = "answer_v1"
PROMPTS = Path(__file__).parent / "prompts"
NO_ANSWER = "NO_ANSWER"

# tiktoken's cl100k_base counts fewer tokens than the small vocabularies of most local models
# (SmolLM2's 49k: about 1.2x as many on these articles); the budget is divided by this.
TOKEN_MARGIN = 1.3
CHAT_OVERHEAD = 32  # tokens of the chat template around the two messages
MAX_SENTENCE_CHARS = 600  # a "sentence" longer than this (a table, a list) is cut


@dataclass(frozen=True, slots=True)
class Source:
    """A numbered sentence: `document.text[start:end] == text`."""

    number: int
    passage: Passage
    start: int  # offsets in the document's text
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class Prompt:
    version: str
    messages: list[dict[str, str]]
    sources: list[Source]
    tokens: int  # as tiktoken counts them
    truncated: bool  # some sentences of the passages did not fit


@lru_cache(maxsize=4)
def load_template(version: str = PROMPT_VERSION) -> tuple[str, str]:
    """(system, user) of a prompt file."""
    text = (PROMPTS / f"{version}.txt").read_text(encoding="utf-8")
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("### "):
            current = line[4:].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    if set(sections) != {"system", "user"}:
        raise ValueError(f"{version}.txt needs exactly a '### system' and a '### user' section")
    return "\n".join(sections["system"]).strip(), "\n".join(sections["user"]).strip()


def number_sentences(passages: Sequence[Passage]) -> list[Source]:
    """Every sentence of the passages once (overlapping chunks repeat some), numbered 1..n."""
    return [
        Source(i, c.passage, c.start, c.end, c.text)
        for i, c in enumerate(sentence_candidates(passages), start=1)
    ]


def fill(template: str, **values: str) -> str:
    """The template with each `{name}` replaced in one pass (a question holding "{sentences}"
    stays as it is)."""
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), template)


def _line(s: Source) -> str:
    text = " ".join(s.text.split())
    if len(text) > MAX_SENTENCE_CHARS:
        text = text[:MAX_SENTENCE_CHARS].rsplit(" ", 1)[0] + " ..."
    return f"[{s.number}] {text}"


def build_prompt(
    question: str,
    passages: Sequence[Passage],
    *,
    context_tokens: int,
    max_tokens: int,
    version: str = PROMPT_VERSION,
    encoding: str = "cl100k_base",
) -> Prompt:
    """The chat messages for `question`, numbering the passages' sentences in order until the
    prompt would not leave `max_tokens` for the answer in a `context_tokens` window."""
    system, user = load_template(version)
    enc = get_encoding(encoding)

    def count(text: str) -> int:
        return len(enc.encode(text, disallowed_special=()))

    budget = int((context_tokens - max_tokens) / TOKEN_MARGIN) - CHAT_OVERHEAD
    fixed = count(system) + count(fill(user, sentences="", question=question))
    numbered = number_sentences(passages)
    kept: list[Source] = []
    used = fixed
    for s in numbered:
        cost = count(_line(s)) + 1
        if used + cost > budget:
            break
        kept.append(s)
        used += cost
    body = "\n".join(_line(s) for s in kept)
    content = fill(user, sentences=body, question=question)
    messages = [{"role": "system", "content": system}, {"role": "user", "content": content}]
    return Prompt(version, messages, kept, used, truncated=len(kept) < len(numbered))
