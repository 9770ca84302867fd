"""The HTTP load generator of the `http` section: serial asks, and a fixed arrival rate
(open loop) from a pool of keep-alive connections, with the client's and the server's CPU
time per request."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from typing import Any

from .common import case_variant, cpu_seconds, percentiles, process_tree_cpu_seconds


# Why a client of its own and not httpx: the generator shares the 2 cores with the server it
# measures. Measured 2026-12-03 (uvloop, `rag serve --workers 2` on the bundled corpus, reader
# cache off, 16 connections, this client and httpx.AsyncClient with a keep-alive pool of 16
# alternating on one server, 20 s a run; the machine busy with other jobs):
# - POST /ask at a fixed 30 req/s (6 runs each): this client 0.41-0.66 ms of CPU a request,
#   httpx 2.1-2.6 ms; the server 31-36 ms. At 100 req/s (4 runs each) the server, not the
#   client, held both to 27-44 req/s; this client 0.34-0.35 ms a request, httpx 2.1-2.3 ms.
# - a request the server answers in about 1 ms of CPU (422, empty question), so the client's
#   own ceiling shows: both kept 100 and 150 req/s with 0 errors; this client 0.37-0.39 ms a
#   request (2.8 % of the cores at 150 req/s), httpx 1.5-1.6 ms (11-12 %).
# At the 150 req/s the server has at most 13 ms of CPU a request on 2 cores, of which
# httpx would take a sixth: CPU the server it measures would not have.
class HttpConnection(asyncio.Protocol):
    """A lean HTTP/1.1 keep-alive connection for the load generator: one request at a time,
    responses with a Content-Length (what uvicorn sends for JSON)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(cls, host, port)
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a uvloop or asyncio Transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("the server closed the connection"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None or self.waiter.done():
            return
        head = bytes(self.buffer[:end]).lower()
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" or (name == b"connection" and b"close" in value):
                self.closed = True  # not kept alive; chunked bodies are not read either
        if length is None:
            self.waiter.set_exception(ConnectionError("a response without Content-Length"))
            return
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        self.waiter.set_result((int(head[9:12]), body))

    async def post_json(self, path: str, payload: bytes, timeout: float) -> tuple[int, bytes]:
        """POST `payload` (JSON) to `path`: (status, body)."""
        if self.closed or self.transport is None or self.transport.is_closing():
            raise ConnectionError("the connection is closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(
            b"POST %s HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (path.encode(), len(payload), payload)
        )
        async with asyncio.timeout(timeout):
            return await self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HttpClient:
    """Keeps one `HttpConnection` per concurrent caller (`clients` at most) to `url`."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        address = url.removeprefix("http://").rstrip("/")
        host, _, port = address.partition(":")
        self.host, self.port = host, int(port or 80)
        self.timeout = timeout
        self.idle: list[HttpConnection] = []

    async def post_json(self, path: str, body: Any) -> tuple[int, bytes]:
        """(status, body); raises OSError or TimeoutError when the exchange fails. A kept-alive
        connection the server has closed meanwhile (uvicorn closes idle ones after 5 s) is
        replaced by a new one, as browsers and httpx do."""
        payload = json.dumps(body).encode()
        while self.idle and self.idle[-1].closed:
            self.idle.pop()
        reused = bool(self.idle)
        conn = self.idle.pop() if reused else await HttpConnection.open(self.host, self.port)
        try:
            try:
                result = await conn.post_json(path, payload, self.timeout)
            except ConnectionError:
                if not reused or conn.buffer:
                    raise
                conn.close()  # closed by the server before it answered: once more, afresh
                conn = await HttpConnection.open(self.host, self.port)
                result = await conn.post_json(path, payload, self.timeout)
        except BaseException:
            conn.close()
            raise
        if conn.closed:
            conn.close()
        else:
            self.idle.append(conn)
        return result

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


def run_async(coro: Any) -> Any:
    """Run `coro` on uvloop when it is installed (cheaper for the load generator), else on
    asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


async def serial_asks(
    url: str, questions: list[str], repeats: int, server_pid: int | None = None
) -> dict[str, Any]:
    """One client asking every question `repeats` times, one after another."""
    latencies, server_ms = [], []
    n = errors = 0
    client = HttpClient(url, timeout=30.0)
    try:
        for q in questions[:5]:
            await client.post_json("/ask", {"question": q})
        cpu_before = cpu_seconds()
        server_before = process_tree_cpu_seconds(server_pid) if server_pid else None
        started = time.perf_counter()
        for _ in range(repeats):
            for q in questions:
                n += 1
                t = time.perf_counter()
                status, body = await client.post_json("/ask", {"question": case_variant(q, n)})
                latencies.append((time.perf_counter() - t) * 1000)
                if status != 200:
                    errors += 1
                    continue
                server_ms.append(json.loads(body)["timings_ms"]["total"])
        elapsed = time.perf_counter() - started
        client_cpu = cpu_seconds() - cpu_before
        server_after = process_tree_cpu_seconds(server_pid) if server_pid else None
    finally:
        client.close()
    server_cpu = (
        server_after - server_before
        if server_after is not None and server_before is not None
        else None
    )
    return {
        "n": n,
        "latency_ms": percentiles(latencies),
        "server_total_ms": percentiles(server_ms),
        "achieved_rps": round(n / elapsed, 2),
        "errors": errors,
        "client_cpu_ms_per_request": round(client_cpu * 1000 / n, 3),
        "server_cpu_ms_per_request": (
            round(server_cpu * 1000 / n, 3) if server_cpu is not None else None
        ),
    }


async def fixed_rate(
    url: str,
    questions: list[str],
    rate: float,
    seconds: float,
    clients: int,
    counter: list[int],
    server_pid: int | None = None,
) -> dict[str, Any]:
    """An open-loop load at a fixed arrival rate: request i is due at start + i / rate and is
    sent by the first of `clients` connections that is free. Latency runs from the due time,
    not the send time, so a slow server is not hidden by requests that wait to be sent
    (coordinated omission). Requests still queued at the end count as not completed.

    CPU: this process's (the load generator's) and, with `server_pid`, the server's, per
    completed request and as a share of the machine's cores over the run."""
    total = int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    next_i = 0
    client = HttpClient(url, timeout=10.0)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.1
    deadline = start + seconds + 10.0  # let the last requests finish
    cpu_before = cpu_seconds()
    server_before = process_tree_cpu_seconds(server_pid) if server_pid else None

    async def worker() -> None:
        nonlocal next_i, errors
        while True:
            i = next_i
            if i >= total:
                return
            next_i += 1
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if loop.time() > deadline:
                return
            counter[0] += 1
            question = case_variant(questions[i % len(questions)], counter[0])
            try:
                status, _ = await client.post_json("/ask", {"question": question})
                ok = status == 200
            except (OSError, TimeoutError):
                ok = False
            if ok:
                latencies.append((loop.time() - due) * 1000)
            else:
                errors += 1

    try:
        await asyncio.gather(*(worker() for _ in range(clients)))
    finally:
        client.close()
    elapsed = max(loop.time() - start, seconds)
    cores = os.cpu_count() or 1
    client_cpu = cpu_seconds() - cpu_before
    server_after = process_tree_cpu_seconds(server_pid) if server_pid else None
    server_cpu = (
        server_after - server_before
        if server_after is not None and server_before is not None
        else None
    )
    done = max(1, len(latencies))
    return {
        "offered_rps": round(rate, 2),
        "seconds": seconds,
        "scheduled": total,
        "completed": len(latencies),
        "errors": errors,
        "achieved_rps": round(len(latencies) / elapsed, 2),
        "latency_ms": percentiles(latencies, (50, 95, 99)),
        "client_cpu_ms_per_request": round(client_cpu * 1000 / done, 3),
        "client_cpu_share": round(client_cpu / (elapsed * cores), 3),
        "server_cpu_ms_per_request": (
            round(server_cpu * 1000 / done, 3) if server_cpu is not None else None
        ),
        "server_cpu_share": (
            round(server_cpu / (elapsed * cores), 3) if server_cpu is not None else None
        ),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
