"""The core's errors. Only the edges (CLI, HTTP) turn these into messages and status codes."""

from index.errors import (
    IndexCorrupt,
    IndexMismatch,
    IndexNotFound,
    IndexStoreError,
    UnknownChunk,
    UnknownDocument,
)
from rag.documents import CorpusError, EmptyCorpus
from rag.embedding import ModelNotAvailable


class InvalidQuestion(ValueError):
    """An empty question, or one the service will not take."""


class QuestionTooLong(InvalidQuestion):
    """A question over the configured length limit."""


__all__ = [
    "CorpusError",
    "EmptyCorpus",
    "IndexCorrupt",
    "IndexMismatch",
    "IndexNotFound",
    "IndexStoreError",
    "InvalidQuestion",
    "ModelNotAvailable",
    "QuestionTooLong",
    "UnknownChunk",
    "UnknownDocument",
]
