"""Progress on long loops: a tqdm bar on a terminal, else an INFO log line now and then
(so a run in CI or under nohup still says how far it has got)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import TypeVar

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

T = TypeVar("T")


def track(items: Sequence[T], desc: str, *, bar: bool, every_seconds: float = 60.0) -> Iterator[T]:
    """Yield `items`, showing progress with a bar (`bar`) or a log line every `every_seconds`."""
    if bar:
        yield from tqdm(items, desc=desc)
        return
    started = last = time.perf_counter()
    for i, item in enumerate(items, start=1):
        yield item
        now = time.perf_counter()
        if now - last >= every_seconds and i < len(items):
            last = now
            rate = i / (now - started)
            logger.info(
                "%s: %d/%d (%.1f/s, about %.0fs left)",
                desc,
                i,
                len(items),
                rate,
                (len(items) - i) / rate,
            )
