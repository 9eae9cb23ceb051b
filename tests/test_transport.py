"""One attempt per API: status codes to error kinds, error bodies, Retry-After, answer parsing
(the retries around them are tested in test_engine.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from fake_openai import FakeOpenAI

from generator.core.errors import EngineError
from generator.llm.requests import RETRYABLE, ErrorKind, Request, Result
from generator.llm.transport import (
    API_FUNCS,
    TransportError,
    error_kind,
    error_message,
    parse_retry_after,
    served_models,
)

MODEL = "fake-model"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (429, ErrorKind.HTTP_429),
        (500, ErrorKind.HTTP_5XX),
        (502, ErrorKind.HTTP_5XX),
        (503, ErrorKind.HTTP_5XX),
        (408, ErrorKind.TIMEOUT),
        (400, ErrorKind.BAD_REQUEST),
        (413, ErrorKind.BAD_REQUEST),
        (422, ErrorKind.BAD_REQUEST),
    ],
    ids=["429", "500", "502", "503", "408-timeout", "400", "413", "422"],
)
def test_status_maps_to_error_kind(status: int, kind: ErrorKind) -> None:
    assert error_kind(status) is kind
    assert (kind in RETRYABLE) is (kind is not ErrorKind.BAD_REQUEST)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error": {"message": "model overloaded", "code": 503}}', "model overloaded"),
        (b'{"error": {"detail": "bad field"}}', "bad field"),
        (b'{"error": "plain", "message": "top level"}', "top level"),
        (b'{"error": "plain"}', "plain"),
        (b'{"detail": "no error key"}', "no error key"),
        (b'{"error": {"code": 5}}', "{'code': 5}"),
        (b'["a", 1]', "['a', 1]"),
        (b"  <html>Bad Gateway</html>\n", "<html>Bad Gateway</html>"),
        (b"x" * 500, "x" * 300),
        (b"\xff\xfe broken", "\ufffd\ufffd broken"),
    ],
    ids=[
        "error-message",
        "error-detail",
        "top-message",
        "error-string",
        "dict-without-error",
        "error-without-message",
        "json-list",
        "html-stripped",
        "long-cut-at-300",
        "not-utf8",
    ],
)
def test_error_message_is_the_servers_explanation(body: bytes, message: str) -> None:
    assert error_message(body) == message


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("0.01", 0.01),
        ("2", 2.0),
        ("-5", 0.0),
        ("100000", 300.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        ("", None),
        (None, None),
    ],
    ids=["fraction", "seconds", "negative-is-zero", "capped", "http-date-falls-back", "empty", "absent"],
)
def test_retry_after_header(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


async def _attempt(server: FakeOpenAI, request: Request, url: str | None = None, timeout_s: float = 5) -> Result:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        return await API_FUNCS[request.api](session, url or server.url, MODEL, request)


def _chat(text: str, **params: Any) -> Request:
    return Request("r", messages=[{"role": "user", "content": text}], params=params, meta={"m": 1})


@pytest.mark.parametrize(
    ("fault", "kind", "status", "retry_after", "message"),
    [
        ("500", ErrorKind.HTTP_5XX, 500, None, r"^HTTP 500: "),
        ("503", ErrorKind.HTTP_5XX, 503, None, r"^HTTP 503: "),
        ("429", ErrorKind.HTTP_429, 429, 0.01, r"^HTTP 429: "),
        ("400", ErrorKind.BAD_REQUEST, 400, None, r"^HTTP 400: "),
        ("garbage", ErrorKind.BAD_RESPONSE, 200, None, r"^unreadable answer \(JSONDecodeError\): "),
        ("close", ErrorKind.CONNECTION, None, None, r"^\w+: "),  # the aiohttp error's name
        ("hang", ErrorKind.TIMEOUT, None, None, r"^no complete answer within 0.3 s$"),
    ],
    ids=["500", "503", "429-retry-after", "400", "not-json", "closed", "timeout"],
)
@pytest.mark.fake_server
def test_failed_attempt_carries_kind_status_and_retry_after(
    fault: str, kind: ErrorKind, status: int | None, retry_after: float | None, message: str
) -> None:
    async def go() -> None:
        async with FakeOpenAI(hang_s=5) as server:
            with pytest.raises(TransportError, match=message) as caught:
                await _attempt(server, _chat(f"x #faults={fault}"), timeout_s=0.3)
        failure = caught.value
        assert (failure.kind, failure.status, failure.retry_after) == (kind, status, retry_after)
        assert not failure.refused

    asyncio.run(go())


def test_refused_connection_is_marked_refused() -> None:
    async def go() -> None:
        with pytest.raises(TransportError, match="^cannot connect: ") as caught:
            await _attempt(None, _chat("x"), url="http://127.0.0.1:9/v1")  # type: ignore[arg-type]
        assert caught.value.kind is ErrorKind.CONNECTION and caught.value.refused

    asyncio.run(go())


@pytest.mark.parametrize(
    ("server_kwargs", "model", "match"),
    [
        ({"api_key": "right"}, MODEL, r"/v1 rejected the API key \(HTTP 401: invalid API key\); set the right key"),
        ({}, "nope", r"/v1/chat/completions answered 404 for model 'nope' .*; it serves: fake-model$"),
        ({"models": ()}, "nope", r"answered 404 for model 'nope' .*ends in /v1$"),
    ],
    ids=["401", "404-lists-models", "404-no-models"],
)
@pytest.mark.fake_server
def test_fatal_answers_raise_engine_error(server_kwargs: dict, model: str, match: str) -> None:
    async def go() -> None:
        async with FakeOpenAI(**server_kwargs) as server:
            async with aiohttp.ClientSession() as session:
                with pytest.raises(EngineError, match=match):
                    await API_FUNCS["chat"](session, server.url, model, _chat("x"))

    asyncio.run(go())


def test_served_models_none_when_nothing_answers() -> None:
    async def go() -> None:
        async with aiohttp.ClientSession() as session:
            assert await served_models(session, "http://127.0.0.1:9/v1") is None

    asyncio.run(go())


@pytest.mark.parametrize(
    ("request_", "texts", "reasons"),
    [
        (_chat("one two", n=2), ["echo 0: one two", "echo 1: one two"], ["stop", "stop"]),
        (_chat("one two three", max_tokens=2), ["echo: one"], ["length"]),
        (Request("r", prompt="say it", meta={"m": 1}), ["echo: say it"], ["stop"]),
    ],
    ids=["chat-n-choices", "chat-cut-at-max-tokens", "completions"],
)
@pytest.mark.fake_server
def test_answer_is_parsed_into_a_result(request_: Request, texts: list[str], reasons: list[str]) -> None:
    async def go() -> Result:
        async with FakeOpenAI() as server:
            result = await _attempt(server, request_)
            assert result.endpoint == server.url
            return result

    result = asyncio.run(go())
    assert (result.texts, result.finish_reasons, result.meta, result.ok) == (texts, reasons, {"m": 1}, True)
    assert result.prompt_tokens > 0 and result.completion_tokens > 0
