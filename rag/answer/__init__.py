"""The answer stage: read the retrieved passages and cite the exact span that answers.

- `reader`: a trained extractive reader (ONNX) that finds the short answer span in windows of
  the passages and judges whether they answer at all;
- `sentences`: the sentence method (word overlap and answer types), the fallback when no
  reader file is there, and a selectable mode.
"""

import logging

from rag.answer.reader import Reader, ReaderUnavailable
from rag.answer.sentences import (
    ComposedAnswer,
    compose_answer,
    question_terms,
    sentence_candidates,
    short_answer,
)

logger = logging.getLogger(__name__)

_warned: set[str] = set()


def load_reader(settings) -> Reader | None:
    """The reader the settings name (the shipped one by default), or None for the sentence
    method: asked for, or the shipped reader cannot be loaded (said once, as a warning). A
    reader named in the settings that cannot be loaded raises ReaderUnavailable."""
    if settings.answer_mode != "reader":
        return None
    try:
        return Reader.load(
            settings.reader_path,
            threads=settings.reader_threads,
            cache_size=settings.reader_cache_windows,
        )
    except ReaderUnavailable as exc:
        if settings.reader_path is not None:
            raise
        if str(exc) not in _warned:
            _warned.add(str(exc))
            logger.warning("%s: answering with the sentence method", exc)
        return None


__all__ = [
    "Reader",
    "ReaderUnavailable",
    "load_reader",
    "ComposedAnswer",
    "compose_answer",
    "question_terms",
    "sentence_candidates",
    "short_answer",
]
