"""Server-side paths, confined to the corpus roots an operator lists (RAG_CORPUS_ROOTS).

A path a client names is resolved (`..` and symlinks followed, as far as they exist) before
anything is read, and must then lie inside one of the roots, themselves resolved; otherwise
it is refused whether or not it exists, so a refusal tells nothing about the server's files.
Documents are read with `rag index`'s own loader, ids and sources relative to the root that
holds the path: the ids `rag index ROOT` gives the same files.

Errors carry only what the client sent (`sent`), never the server's own paths.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from index.records import Document
from rag.ingest.documents import CorpusError, EmptyCorpus, Skipped, iter_corpus, read_file

logger = logging.getLogger(__name__)


class CorpusPathError(Exception):
    """A server-side path the service will not read; the message is safe to show."""


class NoCorpusRoots(CorpusPathError):
    """No corpus roots are configured: the server reads no server-side path at all."""


class OutsideCorpusRoots(CorpusPathError):
    """A path that, resolved, is in none of the corpus roots."""


class CorpusPathNotFound(CorpusPathError):
    """A path inside a corpus root that does not exist."""


@dataclass(frozen=True, slots=True)
class CorpusPath:
    """A path the client may read: resolved, and the resolved root that holds it."""

    sent: str  # as the client wrote it (the only form messages may show)
    path: Path
    root: Path


def locate(sent: str, roots: Sequence[Path]) -> CorpusPath:
    """Where `sent` is, checked against `roots`. An absolute path is taken as it is; a
    relative one is relative to the roots, the first under which it exists. Raises
    NoCorpusRoots, OutsideCorpusRoots (also for a path that does not exist there) or
    CorpusPathNotFound."""
    if not roots:
        raise NoCorpusRoots(
            "this server reads no server-side paths: its operator has not set RAG_CORPUS_ROOTS "
            "(the folders it may read)"
        )
    resolved_roots = [_resolve(Path(root).expanduser()) for root in roots]
    requested = Path(sent)  # never expanduser: "~" would be the server's home
    bases = [requested] if requested.is_absolute() else [r / requested for r in resolved_roots]
    inside = [
        CorpusPath(sent, path, root)
        for path in (_resolve(b) for b in bases)
        if (root := _root_of(path, resolved_roots)) is not None
    ]
    if not inside:
        logger.warning("refused %r: outside the corpus roots", sent)
        raise OutsideCorpusRoots(
            f"{_shown(sent)} is outside the folders this server may read (RAG_CORPUS_ROOTS)"
        )
    found = next((c for c in inside if os.path.exists(c.path)), None)
    if found is None:
        raise CorpusPathNotFound(f"{_shown(sent)} does not exist")
    logger.info("reading %s (corpus root %s) for %r", found.path, found.root, sent)
    return found


def iter_documents(
    place: CorpusPath, *, max_file_bytes: int, skipped: list[Skipped]
) -> Iterator[Document]:
    """The documents at `place`, as `rag index` reads them. A folder is read recursively,
    its unreadable files skipped (into `skipped`) as `rag index` skips them; a single file
    that cannot be read raises rag.ingest.formats.Unreadable."""
    if place.path.is_file():
        yield from read_file(place.path, root=place.root, max_file_bytes=max_file_bytes)
        return
    if not place.path.is_dir():
        raise CorpusError(f"{_shown(place.sent)} is neither a file nor a folder")
    try:
        yield from iter_corpus(
            place.path, root=place.root, max_file_bytes=max_file_bytes, skipped=skipped
        )
    except EmptyCorpus:
        raise EmptyCorpus(f"no documents found in {_shown(place.sent)}") from None


def public_detail(detail: str, place: CorpusPath) -> str:
    """A skipped file's reason without the server's paths: relative to the root."""
    root = str(place.root)
    if root == os.sep:  # a root of "/" hides nothing, and every "/" would be replaced
        return detail
    return detail.replace(root + os.sep, "").replace(root, "the corpus root")


def _resolve(path: Path) -> Path:
    # realpath, not Path.resolve: the same, but it never raises for a missing part or a
    # symlink loop; "..", symlinks and a missing tail all end up spelled out plainly.
    return Path(os.path.realpath(path))


def _root_of(path: Path, roots: Sequence[Path]) -> Path | None:
    """The first root `path` lies in (both resolved), or None."""
    return next((root for root in roots if path.is_relative_to(root)), None)


def _shown(sent: str, limit: int = 200) -> str:
    text = repr(sent)
    return text if len(text) <= limit else text[: limit - 3] + "..."
