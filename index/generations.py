"""Index generations on disk: write beside, fsync, then switch a pointer atomically.

    ROOT/
      CURRENT              name of the live generation ("gen-000007")
      gen-000007/          manifest.json, vectors.faiss, store.sqlite
      gen-000006/          the previous one, kept as a fallback
      .lock                held by a writer

A crash at any moment leaves CURRENT naming a complete generation: a new one is
written under a temporary name, fsynced, renamed, and only then named in CURRENT
(os.replace, then an fsync of the directory).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from index.manifest import verifies
from index.testhooks import pause_point

logger = logging.getLogger(__name__)

POINTER = "CURRENT"
_GEN_RE = re.compile(r"^gen-(\d{6,})$")


def generation_name(number: int) -> str:
    return f"gen-{number:06d}"


def generation_number(path: Path) -> int | None:
    m = _GEN_RE.match(path.name)
    return int(m.group(1)) if m else None


def list_generations(root: Path) -> list[Path]:
    """Complete generation directories, newest first."""
    if not root.is_dir():
        return []
    gens = [p for p in root.iterdir() if p.is_dir() and generation_number(p) is not None]
    return sorted(gens, key=lambda p: generation_number(p) or 0, reverse=True)


def current(root: Path) -> Path | None:
    """The generation named by the pointer, or None when there is none."""
    pointer = root / POINTER
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    if not _GEN_RE.match(name):
        return None
    return root / name


class PointerWatch:
    """The live generation's name, re-read only when the pointer file changed: one stat per
    call instead of an open and a read. A swap replaces the file (os.replace of a new one),
    so its inode and times change; two swaps within one timestamp tick that also reuse the
    inode would be missed, and writes take far longer than a tick."""

    def __init__(self, root: Path):
        self.path = root / POINTER
        self._seen: tuple[int, int, int, int] | None = None
        self._name: str | None = None

    def name(self) -> str | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._seen = self._name = None
            return None
        seen = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
        if seen != self._seen:
            live = current(self.path.parent)
            self._seen, self._name = seen, live.name if live is not None else None
        return self._name


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    for p in path.iterdir():
        if p.is_dir():
            fsync_tree(p)
        elif p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    fsync_dir(path)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (flock) on `path`, held for the block; across processes."""
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def writer_lock(root: Path) -> Iterator[None]:
    """One writer at a time per index root (readers never take it)."""
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / ".lock"):
        yield


def new_tmp_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / f".tmp-{os.getpid()}-{os.urandom(4).hex()}"
    path.mkdir()
    return path


def next_number(root: Path) -> int:
    numbers = [generation_number(p) or 0 for p in list_generations(root)]
    return max(numbers, default=0) + 1


def commit(root: Path, tmp_dir: Path, number: int) -> Path:
    """Move a fully written `tmp_dir` into place as generation `number` and point CURRENT at it."""
    fsync_tree(tmp_dir)
    final = root / generation_name(number)
    os.rename(tmp_dir, final)
    fsync_dir(root)
    pause_point("pointer")
    pointer_tmp = root / f".{POINTER}.tmp-{os.getpid()}"
    with open(pointer_tmp, "w", encoding="utf-8") as f:
        f.write(final.name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(pointer_tmp, root / POINTER)
    fsync_dir(root)
    return final


def clean_leftovers(root: Path) -> None:
    """Remove what a crashed writer left: temporary directories and pointer files, and a
    generation newer than the live one that was put in place after CURRENT was last written
    (renamed into place, never made live). A newer generation put in place before it was
    once live, and CURRENT was pointed back by hand: it is kept (a rollback loses nothing).
    Call it holding the writer lock."""
    if not root.is_dir():
        return
    live = current(root)
    live_number = generation_number(live) if live is not None else None
    pointer_written = _mtime_ns(root / POINTER)
    for p in root.iterdir():
        number = generation_number(p) if p.is_dir() else None
        orphan = (
            number is not None
            and live_number is not None
            and number > live_number
            and _ctime_ns(p) >= pointer_written
        )
        if orphan or p.name.startswith(".tmp-") or p.name.startswith(f".{POINTER}.tmp-"):
            logger.info("removing leftover %s from an interrupted write", p)
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def _ctime_ns(path: Path) -> int:
    """When `path` was renamed into place (a rename changes the inode's ctime)."""
    return path.stat().st_ctime_ns


def clean_leftovers_if_idle(root: Path) -> bool:
    """At startup: clean leftovers unless a writer is at work (then it cleans them itself).
    Returns whether it cleaned."""
    if not root.is_dir():
        return False
    with open(root / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:
            clean_leftovers(root)
            return True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def prune(
    root: Path,
    keep: int,
    on_remove: Callable[[Path], None] | None = None,
    verified: Callable[[Path], bool] | None = None,
) -> None:
    """Delete all but the newest `keep` generations; never the live one, nor the newest one
    that `verified` accepts (default: its manifest's checksums hold): when every newer one
    is corrupt, it is the one a reader falls back to. `on_remove` is called with each
    generation before its files go (e.g. to drop a Milvus collection)."""
    keep = max(keep, 1)
    gens = list_generations(root)
    if len(gens) <= keep:
        return
    live = current(root)
    spared = {live.name} if live is not None else set()
    check = verified or verifies
    newest_good = next((p for p in gens if check(p)), None)  # newest first: usually gens[0]
    if newest_good is not None and newest_good.name not in spared:
        spared.add(newest_good.name)
        if newest_good in gens[keep:]:
            logger.warning(
                "keeping %s beyond the %d newest generations: no newer one passes its checks",
                newest_good.name,
                keep,
            )
    for p in gens[keep:]:
        if p.name in spared:
            continue
        if on_remove is not None:
            on_remove(p)
        shutil.rmtree(p, ignore_errors=True)
