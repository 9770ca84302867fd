"""A test hook: stop a writer at a named point, so that a test can kill it exactly there.

Only tests set these; unset (always, in use), `pause_point` is one environment lookup.

    RAG_TEST_PAUSE_AT=embedding      the point to stop at (one of POINTS)
    RAG_TEST_PAUSE_MARKER=/tmp/at    a file created on reaching it (holds the process id)

On reaching the point the process creates the marker and sleeps (a minute at most, then
goes on), so the test, waiting for the marker, can send SIGKILL at a known moment without
mocking anything (tests/integration/ops/test_crash.py: `rag index` killed while embedding,
while writing its store, and just before the pointer swap).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

logger = logging.getLogger(__name__)

PAUSE_AT = "RAG_TEST_PAUSE_AT"
PAUSE_MARKER = "RAG_TEST_PAUSE_MARKER"
# embedding: a batch of new chunks is about to be embedded (earlier batches are written);
# store: the chunk store and the vectors are written, BM25 and the manifest are not;
# pointer: the generation is renamed into place, CURRENT does not name it yet.
POINTS = ("embedding", "store", "pointer")
PAUSE_SECONDS = 60.0


def pause_point(name: str) -> None:
    """Stop here for a while if a test asked to (see the module's docstring)."""
    if os.environ.get(PAUSE_AT) != name:
        return
    marker = os.environ.get(PAUSE_MARKER)
    logger.warning("test hook: pausing at %r for %.0f s", name, PAUSE_SECONDS)
    if marker:
        tmp = Path(f"{marker}.tmp-{os.getpid()}")
        tmp.write_text(str(os.getpid()), encoding="utf-8")
        os.replace(tmp, marker)  # the test sees the marker whole or not at all
    time.sleep(PAUSE_SECONDS)
