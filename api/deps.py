"""Dependencies: the engine, the settings, and API-key checks, as named aliases."""

from __future__ import annotations

import hmac
from typing import Annotated

import anyio.to_thread
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from api.errors import Forbidden, NotAuthenticated
from api.state import Service
from rag.config import Settings
from rag.engine import Engine

bearer = HTTPBearer(
    auto_error=False,
    description="`Authorization: Bearer <key>`: RAG_API_KEY for writes; RAG_READ_API_KEY (or "
    "the write key) for reads when a read key is configured.",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


# Async, though they only read attributes: FastAPI runs a plain `def` dependency in the
# thread pool, and two thread hops for these cost more than the rest of the routing.
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_service(request: Request) -> Service:
    return request.app.state.service


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[Service, Depends(get_service)]


async def get_engine(service: ServiceDep) -> Engine:
    """The engine on the index's live generation; 503 (IndexNotLoaded) when there is none."""
    pointer = service.pointer()
    engine = service.engine
    if engine is not None and service.is_current(pointer):
        return engine
    # A new generation (written by another worker, or by `rag index`) or a first load:
    # loading reads files, so it happens off the event loop.
    return await anyio.to_thread.run_sync(service.refresh, pointer)


EngineDep = Annotated[Engine, Depends(get_engine)]


def _key(secret: SecretStr | None) -> bytes | None:
    value = secret.get_secret_value() if secret is not None else ""
    return value.encode("utf-8") if value else None


def _matches(credentials: HTTPAuthorizationCredentials, key: bytes) -> bool:
    # Starlette decodes headers as latin-1, so this gives back the bytes that were sent.
    sent = credentials.credentials.encode("latin-1", errors="replace")
    return hmac.compare_digest(sent, key)


async def require_read_key(settings: SettingsDep, credentials: Credentials) -> None:
    """Reads are open unless RAG_READ_API_KEY is set; then it (or the write key) is needed."""
    read_key = _key(settings.read_api_key)
    if read_key is None:
        return
    if credentials is None:
        raise NotAuthenticated("reads need an API key here: Authorization: Bearer <key>")
    write_key = _key(settings.api_key)
    # Both comparisons always run, so timing does not tell which key was close.
    ok_read = _matches(credentials, read_key)
    ok_write = write_key is not None and _matches(credentials, write_key)
    if not (ok_read or ok_write):
        raise Forbidden("the API key is not valid")


async def require_write_key(settings: SettingsDep, credentials: Credentials) -> None:
    """Writes need RAG_API_KEY; without one configured they are refused."""
    write_key = _key(settings.api_key)
    disabled = "writes are disabled on this server: start it with RAG_API_KEY set"
    if credentials is None:
        raise NotAuthenticated(
            disabled if write_key is None else "writes need the key: Authorization: Bearer <key>"
        )
    if write_key is None:
        raise Forbidden(disabled)
    if not _matches(credentials, write_key):
        raise Forbidden("the API key is not valid")


ReadAccess = Depends(require_read_key)
WriteAccess = Depends(require_write_key)
