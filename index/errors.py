"""Errors raised by the index layer. The CLI and the API turn them into messages and codes."""


class IndexStoreError(Exception):
    """Base class of every error about an index on disk."""


class IndexNotFound(IndexStoreError):
    """No index exists at the given path."""


class IndexCorrupt(IndexStoreError):
    """An index exists but fails its checks (checksums, counts, unreadable files)."""


class IndexMismatch(IndexStoreError):
    """An index was built with settings (model, dimension, format) other than the ones asked for."""


class StoreUnavailable(IndexStoreError):
    """The vector store cannot serve the generation now: its server (Milvus) is down or does
    not answer, or the generation's collection is missing. Unlike IndexCorrupt it may pass:
    the same request can succeed once the server is back."""


class UnknownChunk(KeyError):
    """No chunk with that id."""


class UnknownDocument(KeyError):
    """No document with that id."""
