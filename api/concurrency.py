"""Running the handlers' blocking work in worker threads, cheaply.

`run_in_thread` hands a call to a `concurrent.futures.ThreadPoolExecutor`, whose queue is
C code (`queue.SimpleQueue`), instead of AnyIO's worker threads (FastAPI's `def` handlers),
whose hand-off through `queue.Queue` takes the event loop's thread a lock and a Python
`Condition` per request. The call runs in a copy of the caller's context, so the request
id stays on its log records. Cancelling the awaiting request leaves a started call to
finish (threads cannot be interrupted) and drops its result.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

MAX_THREADS = 40  # as many as AnyIO's default limiter, which the handlers used before

_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=MAX_THREADS, thread_name_prefix="rag-request")
    return _pool


def _forget_pool() -> None:
    global _pool
    _pool = None  # a forked child has none of its parent's threads: it starts its own pool


os.register_at_fork(after_in_child=_forget_pool)


async def run_in_thread(function: Callable[..., T], *args: object) -> T:
    """`function(*args)` in a worker thread, awaited."""
    context = contextvars.copy_context()
    call = functools.partial(context.run, function, *args)
    return await asyncio.get_running_loop().run_in_executor(_executor(), call)
