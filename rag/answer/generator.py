"""The client of an OpenAI-compatible chat-completions endpoint (Ollama, vLLM, llama.cpp's
server, OpenAI): the only place that talks to the generator.

`POST {RAG_GENERATOR_URL}/chat/completions` with httpx, each attempt bounded by
RAG_GENERATOR_TIMEOUT_SECONDS. Refused connections, 429 and 5xx are retried
RAG_GENERATOR_RETRIES times (short backoff); a timeout is not retried (it would double a
slow request). Failures raise `GeneratorError` subclasses that the edges turn into 502/504
with the extractive answer still offered. The API key (RAG_GENERATOR_API_KEY) is sent as a
bearer token and never logged or put in an error message.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
from pydantic import SecretStr

logger = logging.getLogger(__name__)

BACKOFF_SECONDS = 0.25
MAX_BODY_CHARS = 200  # of a bad response quoted in an error


class GeneratorError(RuntimeError):
    """The generator failed; `extractive` is the answer given without it (set by the engine)."""

    code = "generator_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.extractive = None  # rag.models.AskResponse, once the engine has it


class GeneratorNotConfigured(GeneratorError):
    code = "generator_not_configured"


class GeneratorUnavailable(GeneratorError):
    """Unreachable: refused, reset, no such host."""

    code = "generator_unreachable"


class GeneratorTimeout(GeneratorError):
    code = "generator_timeout"


class GeneratorBadResponse(GeneratorError):
    """An error status, or a body that is not an OpenAI chat completion."""

    code = "generator_bad_response"


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    model: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None


class Generator:
    """A chat-completions client for one endpoint. Safe to share between threads."""

    def __init__(
        self,
        url: str,
        *,
        model: str | None = None,
        api_key: SecretStr | None = None,
        timeout: float = 20.0,
        retries: int = 1,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> None:
        self.url = url.rstrip("/") + "/chat/completions"
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.retries = retries
        self.timeout = timeout
        headers = {"Accept": "application/json"}
        key = api_key.get_secret_value() if api_key is not None else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(
            headers=headers, timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0))
        )

    @classmethod
    def from_settings(cls, settings) -> Generator:
        if not settings.generator_url:
            raise GeneratorNotConfigured(
                "generation is not configured on this server: set RAG_GENERATOR_URL to an "
                "OpenAI-compatible base URL (e.g. http://127.0.0.1:8080/v1)"
            )
        return cls(
            settings.generator_url,
            model=settings.generator_model,
            api_key=settings.generator_api_key,
            timeout=settings.generator_timeout_seconds,
            retries=settings.generator_retries,
            max_tokens=settings.generator_max_tokens,
            temperature=settings.generator_temperature,
        )

    def close(self) -> None:
        self._client.close()

    def _body(self, messages: list[dict[str, str]], stream: bool) -> dict:
        body: dict = {
            "messages": messages,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stream": stream,
        }
        if self.model:
            body["model"] = self.model
        return body

    def complete(self, messages: list[dict[str, str]]) -> Completion:
        """The model's answer to the chat `messages`."""
        body = self._body(messages, stream=False)
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                r = self._client.post(self.url, json=body)
            except httpx.TimeoutException as exc:
                raise GeneratorTimeout(
                    f"the generator did not answer within {self.timeout:g} s"
                ) from exc
            except httpx.TransportError as exc:
                if last:
                    raise GeneratorUnavailable(
                        f"the generator at {self._where()} is unreachable "
                        f"({type(exc).__name__}, {attempt + 1} attempt(s))"
                    ) from exc
                self._pause(attempt, type(exc).__name__)
                continue
            if (r.status_code == 429 or r.status_code >= 500) and not last:
                self._pause(attempt, f"HTTP {r.status_code}")
                continue
            return parse_completion(r.status_code, r.text, self._where())
        raise AssertionError("unreachable")  # the loop returns or raises

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        """The answer's text as the model writes it (server-sent events), no retries once a
        response has started."""
        body = self._body(messages, stream=True)
        try:
            with self._client.stream("POST", self.url, json=body) as r:
                if r.status_code != 200:
                    r.read()
                    parse_completion(r.status_code, r.text, self._where())  # raises
                for line in r.iter_lines():
                    delta = parse_stream_line(line)
                    if delta:
                        yield delta
        except httpx.TimeoutException as exc:
            raise GeneratorTimeout(
                f"the generator did not answer within {self.timeout:g} s"
            ) from exc
        except httpx.TransportError as exc:
            raise GeneratorUnavailable(
                f"the generator at {self._where()} is unreachable ({type(exc).__name__})"
            ) from exc

    def _pause(self, attempt: int, why: str) -> None:
        logger.warning("generator at %s: %s; retrying", self._where(), why)
        time.sleep(BACKOFF_SECONDS * 2**attempt)

    def _where(self) -> str:
        """The endpoint without credentials a URL might carry (user:pass@)."""
        u = httpx.URL(self.url)
        return str(u.copy_with(username=None, password=None, query=None))


def parse_completion(status: int, text: str, where: str = "the generator") -> Completion:
    """An OpenAI chat-completion body as a `Completion`; GeneratorBadResponse otherwise."""
    if status != 200:
        raise GeneratorBadResponse(
            f"the generator at {where} answered HTTP {status}: {_quote(text)}"
        )
    try:
        obj = json.loads(text)
        choice = obj["choices"][0]
        content = choice["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise GeneratorBadResponse(
            f"the generator's answer is not an OpenAI chat completion: {_quote(text)}"
        ) from exc
    if not isinstance(content, str) or not content.strip():
        raise GeneratorBadResponse("the generator answered with no text")
    usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else {}
    return Completion(
        text=content,
        model=str(obj.get("model") or ""),
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        finish_reason=choice.get("finish_reason"),
    )


def parse_stream_line(line: str) -> str | None:
    """The text delta of one server-sent-events line of a streamed chat completion."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if not data or data == "[DONE]":
        return None
    try:
        delta = json.loads(data)["choices"][0].get("delta") or {}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise GeneratorBadResponse(f"a streamed chunk is not JSON: {_quote(data)}") from exc
    content = delta.get("content")
    return content if isinstance(content, str) else None


def _quote(text: str) -> str:
    text = " ".join((text or "").split())
    return repr(text if len(text) <= MAX_BODY_CHARS else text[:MAX_BODY_CHARS] + "...")
