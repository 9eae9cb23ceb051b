"""One HTTP attempt against an OpenAI-compatible server, one async function per API.

Each function takes the endpoint's session (it carries the endpoint's headers and timeout), the
endpoint's base URL (ending in /v1), the model and a `Request`, and returns a `Result` or raises
`TransportError` with the kind of failure. What no retry can fix raises `EngineError`: a rejected
key (401/403) or an unknown model or path (404). Retries, endpoint health and accounting are the
engine's (`engine.py`, `endpoints.py`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from generator.core.errors import EngineError
from generator.llm.requests import ErrorKind, Request, Result

_RETRY_AFTER_CAP_S = 300.0


class TransportError(Exception):
    """One failed attempt. Not an `InstructforgeError`: the engine retries or records it as the
    result's `error`, and it never reaches the user. `refused` means the connection itself was
    refused (the endpoint is down, not slow)."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        refused: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.refused = refused


RequestFunc = Callable[[aiohttp.ClientSession, str, str, Request], Awaitable[Result]]


async def chat(session: aiohttp.ClientSession, base_url: str, model: str, request: Request) -> Result:
    """POST /chat/completions with `request.messages`."""
    payload = {"model": model, "messages": request.messages, **request.params}
    raw = await _post(session, base_url, "/chat/completions", model, payload)
    return _parse(raw, request, base_url, lambda choice: choice["message"].get("content") or "")


async def completions(session: aiohttp.ClientSession, base_url: str, model: str, request: Request) -> Result:
    """POST /completions with `request.prompt`."""
    payload = {"model": model, "prompt": request.prompt, **request.params}
    raw = await _post(session, base_url, "/completions", model, payload)
    return _parse(raw, request, base_url, lambda choice: choice["text"] or "")


API_FUNCS: dict[str, RequestFunc] = {"chat": chat, "completions": completions}


async def served_models(session: aiohttp.ClientSession, base_url: str) -> list[str] | None:
    """The model names the endpoint lists at /models, or None when it does not answer with a list."""
    try:
        async with session.get(base_url + "/models", timeout=aiohttp.ClientTimeout(total=10)) as resp:
            data = await resp.json(content_type=None)
        return [m["id"] for m in data["data"]]
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError, KeyError, TypeError):
        return None


async def _post(session: aiohttp.ClientSession, base_url: str, path: str, model: str, payload: dict[str, Any]) -> bytes:
    """The body of a 200 answer; any other answer raises."""
    url = base_url + path
    try:
        async with session.post(url, data=json.dumps(payload, ensure_ascii=False).encode()) as resp:
            raw = await resp.read()
            status = resp.status
            retry_after = resp.headers.get("Retry-After") if status == 429 else None
    except asyncio.TimeoutError:
        timeout_s = session.timeout.total or 0.0
        raise TransportError(ErrorKind.TIMEOUT, f"no complete answer within {timeout_s:g} s") from None
    except aiohttp.ClientConnectorError as exc:
        raise TransportError(ErrorKind.CONNECTION, f"cannot connect: {exc}", refused=True) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise TransportError(ErrorKind.CONNECTION, f"{type(exc).__name__}: {exc}") from None
    if status == 200:
        return raw
    if status in (401, 403):
        raise EngineError(
            f"{base_url} rejected the API key (HTTP {status}: {error_message(raw)}); "
            "set the right key in the environment variable named by server.api_key_env"
        )
    if status == 404:
        names = await served_models(session, base_url)
        raise EngineError(
            f"{url} answered 404 for model {model!r} ({error_message(raw)}); "
            "check model.served_name and that the endpoint URL ends in /v1"
            + (f"; it serves: {', '.join(names)}" if names else "")
        )
    raise TransportError(
        error_kind(status),
        f"HTTP {status}: {error_message(raw)}",
        status=status,
        retry_after=parse_retry_after(retry_after),
    )


def error_kind(status: int) -> ErrorKind:
    """The kind of a non-200 answer that a retry may or may not fix (not 401, 403 or 404)."""
    if status == 429:
        return ErrorKind.HTTP_429
    if status >= 500:
        return ErrorKind.HTTP_5XX
    if status == 408:
        return ErrorKind.TIMEOUT
    return ErrorKind.BAD_REQUEST


def error_message(raw: bytes) -> str:
    """The server's own explanation from an error body, else the start of the body."""
    try:
        data = json.loads(raw)
    except ValueError:
        return raw[:300].decode("utf-8", "replace").strip()
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail") or err
        else:
            msg = data.get("message") or err
        return str(msg)[:300]
    return str(data)[:300]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header, capped; None for an HTTP date (rare from inference
    servers: the engine falls back to its backoff)."""
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), _RETRY_AFTER_CAP_S)
    except ValueError:
        return None


def _parse(raw: bytes, request: Request, base_url: str, text_of: Callable[[dict[str, Any]], str]) -> Result:
    try:
        data = json.loads(raw)
        choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
        if not choices:
            raise ValueError("no choices")
        texts = [text_of(c) for c in choices]
        reasons = [c.get("finish_reason") or "unknown" for c in choices]
        usage = data.get("usage") or {}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        snippet = raw[:120].decode("utf-8", "replace")
        raise TransportError(
            ErrorKind.BAD_RESPONSE, f"unreadable answer ({type(exc).__name__}): {snippet!r}", status=200
        ) from None
    return Result(
        request.id,
        texts,
        reasons,
        prompt_tokens=usage.get("prompt_tokens") or 0,
        completion_tokens=usage.get("completion_tokens") or 0,
        endpoint=base_url,
        meta=request.meta,
    )
