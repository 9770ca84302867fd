"""The core's errors. Only the edges (CLI, HTTP) turn these into messages and status codes."""

from index.errors import (
    IndexCorrupt,
    IndexMismatch,
    IndexNotFound,
    IndexStoreError,
    StoreUnavailable,
    UnknownChunk,
    UnknownDocument,
)
from rag.answer.reader import ReaderUnavailable
from rag.embed.embedding import ModelNotAvailable
from rag.ingest.documents import CorpusError, EmptyCorpus
from rag.ingest.roots import CorpusPathError, CorpusPathNotFound, NoCorpusRoots, OutsideCorpusRoots


class InvalidQuestion(ValueError):
    """An empty question, or one the service will not take."""


class InvalidParameter(InvalidQuestion):
    """A request parameter out of its range (k, the retrieval mode): the same kind of mistake
    as a schema violation, reported as one."""


class QuestionTooLong(InvalidQuestion):
    """A question over the configured length limit."""


__all__ = [
    "CorpusError",
    "CorpusPathError",
    "CorpusPathNotFound",
    "EmptyCorpus",
    "IndexCorrupt",
    "IndexMismatch",
    "IndexNotFound",
    "IndexStoreError",
    "InvalidParameter",
    "InvalidQuestion",
    "ModelNotAvailable",
    "NoCorpusRoots",
    "OutsideCorpusRoots",
    "QuestionTooLong",
    "ReaderUnavailable",
    "StoreUnavailable",
    "UnknownChunk",
    "UnknownDocument",
]
