"""Request body size limits, enforced before a body is read (an ASGI middleware).

A declared Content-Length over the limit is refused at once, before the app runs. A body
without one (chunked transfer) is counted as it streams in; the moment it passes the
limit the app's reading fails, whatever response the app makes of that is dropped, and
the client gets the 413 instead.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response


class BodyTooLarge(Exception):
    """Raised inside the app's `receive` when a streamed body passes the limit."""


class BodySizeLimit:
    """Refuse request bodies larger than `max_body_bytes` (or a per-route limit) with 413.

    `route_limits` maps `(method, path)` to that route's own limit, e.g. a larger one for
    uploads.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        route_limits: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.route_limits = dict(route_limits or {})

    def limit_for(self, scope: Scope) -> int:
        path = scope["path"].rstrip("/") or "/"
        return self.route_limits.get((scope["method"], path), self.max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            await _refuse(scope, receive, send, limit)
            return

        received = 0
        exceeded = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge(f"request body over {limit} bytes")
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if exceeded:
                return  # the app's reaction to BodyTooLarge; the 413 replaces it
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not response_started:
            await _refuse(scope, receive, send, limit)


async def _refuse(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    response = error_response(
        413,
        "payload_too_large",
        f"the request body is over the limit of {limit} bytes",
        headers={"Connection": "close"},
    )
    await response(scope, receive, send)
