"""Async generation against OpenAI-compatible servers (vLLM): bounded concurrency over several
endpoints, retries with backoff, per-endpoint accounting.

A failed sample is data: a `Result` whose `error` names a kind (`timeout`, `http_429`, `http_5xx`,
`connection`, `bad_response`, `bad_request`). Only what no retry can fix raises `EngineError`: a
rejected key (401/403), an unknown model or path (404), or no endpoint left.

Stopping (Ctrl-C, SIGTERM): the caller installs the signal handlers and calls `Engine.stop()`.
The engine then sends nothing new, lets requests in flight finish for `stop_grace_s`, cancels
the rest, and `run()` ends normally after yielding every finished result; the caller flushes its
store and checks `Engine.stopped`. Cancelled and unsent requests are simply missing from the run
directory, so a resumed run sends them again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import aiohttp

from generator.config import EngineConfig
from generator.core.errors import EngineError

log = logging.getLogger(__name__)

# Kinds worth another attempt: the server may answer next time. `bad_request` (other 4xx) is not.
RETRYABLE = frozenset({"timeout", "http_429", "http_5xx", "connection", "bad_response"})
_RETRY_BUDGET_FLOOR = 20
# Retries that do not count against `max_retries`: the endpoint was taken out under the request.
_MAX_FREE_RETRIES = 20
_RETRY_AFTER_CAP_S = 300.0


def request_id(template: str, variables: dict[str, Any], model: str, params: dict[str, Any]) -> str:
    """Stable id of a request: the same template, variables, model and sampling params give the
    same id in every process, whatever the dict order."""
    payload = json.dumps(
        [template, variables, model, params],
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Request:
    """One call: `messages` for /chat/completions or `prompt` for /completions. `params`
    (temperature, top_p, max_tokens, stop, seed, n, response_format, ...) are sent as they are."""

    id: str
    messages: list[dict[str, str]] | None = None
    prompt: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError(
                f"request {self.id}: give exactly one of messages (chat) or prompt (completions)"
            )


@dataclass
class Result:
    """The answer to one request; `texts` and `finish_reasons` hold one entry per choice (`n`)."""

    request_id: str
    texts: list[str] = field(default_factory=list)
    finish_reasons: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    error_message: str = ""
    endpoint: str = ""
    attempts: int = 1
    latency_s: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def truncated(self) -> bool:
        """Some choice stopped at `max_tokens` (`finish_reason == "length"`)."""
        return "length" in self.finish_reasons

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its deep copy costs a tenth of the engine's time at full speed.
        return {
            "request_id": self.request_id,
            "texts": self.texts,
            "finish_reasons": self.finish_reasons,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "error": self.error,
            "error_message": self.error_message,
            "endpoint": self.endpoint,
            "attempts": self.attempts,
            "latency_s": self.latency_s,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        """Read back `to_dict()`; keys this version does not know (a newer writer's) are ignored."""
        return cls(**{k: v for k, v in data.items() if k in _RESULT_FIELDS})


_RESULT_FIELDS = frozenset(f.name for f in fields(Result))


@dataclass(frozen=True)
class Endpoint:
    base_url: str  # ends in /v1
    api_key: str | None = None


@dataclass
class EndpointStats:
    """Accounting of one endpoint. `requests`, `ok`, `failed` and tokens count final results
    (attributed to the endpoint of their last attempt); `retried` and `errors` count attempts."""

    url: str
    requests: int = 0
    ok: int = 0
    failed: int = 0
    retried: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    taken_out: int = 0
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class EngineStats:
    endpoints: dict[str, EndpointStats]
    started: float = field(default_factory=time.monotonic)

    def _sum(self, name: str) -> int:
        return sum(getattr(e, name) for e in self.endpoints.values())

    @property
    def requests(self) -> int:
        return self._sum("requests")

    @property
    def ok(self) -> int:
        return self._sum("ok")

    @property
    def failed(self) -> int:
        return self._sum("failed")

    @property
    def retried(self) -> int:
        return self._sum("retried")

    @property
    def prompt_tokens(self) -> int:
        return self._sum("prompt_tokens")

    @property
    def completion_tokens(self) -> int:
        return self._sum("completion_tokens")

    @property
    def errors(self) -> dict[str, int]:
        """Failed attempts per error kind, over all endpoints (retried ones included)."""
        total: dict[str, int] = {}
        for e in self.endpoints.values():
            for kind, count in e.errors.items():
                total[kind] = total.get(kind, 0) + count
        return total

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def to_dict(self) -> dict[str, Any]:
        elapsed = self.elapsed_s
        return {
            "requests": self.requests,
            "ok": self.ok,
            "failed": self.failed,
            "retried": self.retried,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "errors": self.errors,
            "elapsed_s": round(elapsed, 3),
            "completion_tokens_per_s": round(self.completion_tokens / elapsed, 2) if elapsed else 0.0,
            "endpoints": {url: asdict(e) for url, e in self.endpoints.items()},
        }


class _Failure(Exception):
    """One failed attempt, with its kind; raised inside `_send` and handled by `_execute`."""

    def __init__(self, kind: str, message: str, retry_after: float | None = None, refused: bool = False):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after = retry_after
        self.refused = refused


class _EndpointState:
    def __init__(self, endpoint: Endpoint, stats: EndpointStats) -> None:
        self.base = endpoint.base_url.rstrip("/")
        self.chat_url = self.base + "/chat/completions"
        self.completions_url = self.base + "/completions"
        self.headers = {"Content-Type": "application/json"}
        if endpoint.api_key:
            self.headers["Authorization"] = f"Bearer {endpoint.api_key}"
        self.stats = stats
        self.session: aiohttp.ClientSession | None = None
        self.in_flight = 0
        self.up = True
        self.consecutive_failures = 0
        self.last_error = ""
        self.probe: asyncio.Task[None] | None = None


class _Source:
    """Pulls requests lazily, one at a time, from a sync or async iterable shared by all workers."""

    def __init__(self, requests: Iterable[Request] | AsyncIterable[Request]) -> None:
        self._done = False
        self._it = None if hasattr(requests, "__aiter__") else iter(requests)  # type: ignore[arg-type]
        self._ait = requests.__aiter__() if self._it is None else None  # type: ignore[union-attr]
        self._lock = asyncio.Lock()

    async def next(self) -> Request | None:
        if self._done:
            return None
        if self._it is not None:
            try:
                return next(self._it)
            except StopIteration:
                self._done = True
                return None
        async with self._lock:  # an async generator cannot be advanced by two tasks at once
            if self._done:
                return None
            try:
                return await self._ait.__anext__()  # type: ignore[union-attr]
            except StopAsyncIteration:
                self._done = True
                return None


def _error_message(raw: bytes) -> str:
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


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), _RETRY_AFTER_CAP_S)
    except ValueError:  # an HTTP date: rare from inference servers; fall back to backoff
        return None


class Engine:
    """Sends requests to the endpoints, at most `config.concurrency` at once, each to the
    endpoint with the fewest in flight, and yields results as they complete.

    Use it as `async with Engine(...) as engine:` and iterate `run()` inside
    `contextlib.aclosing(...)` so that leaving the loop early cancels what is in flight.
    """

    def __init__(self, endpoints: list[Endpoint], model: str, config: EngineConfig) -> None:
        if not endpoints:
            raise EngineError("no endpoint given: set server.endpoints or let instructforge start vLLM")
        urls = [e.base_url.rstrip("/") for e in endpoints]
        repeated = sorted({u for u in urls if urls.count(u) > 1})
        if repeated:
            raise EngineError(f"endpoint listed twice: {', '.join(repeated)}; list each server once")
        self.model = model
        self.config = config
        self.stats = EngineStats({u: EndpointStats(u) for u in urls})
        self._eps = [_EndpointState(e, self.stats.endpoints[u]) for e, u in zip(endpoints, urls)]
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s, sock_connect=config.connect_timeout_s)
        self._stopping = False
        self._closed = False
        self._busy: set[asyncio.Task[Any]] = set()
        self._slots: asyncio.Semaphore | None = None  # bounds concurrent run() calls together
        self._cancel_handle: asyncio.TimerHandle | None = None
        self._any_up: asyncio.Event | None = None
        self._all_down_since: float | None = None
        self._started = 0
        self._retries_used = 0

    # -- the caller's side -------------------------------------------------------------------

    @property
    def stopped(self) -> bool:
        """`stop()` was called: the last `run()` may have ended before its requests ran out."""
        return self._stopping

    def stop(self, grace_s: float | None = None) -> None:
        """Send nothing new; cancel what is still in flight after `grace_s` (default
        `config.stop_grace_s`). A second call cancels at once. Call it from the event loop's
        thread (`loop.add_signal_handler` does)."""
        loop = asyncio.get_running_loop()
        if self._stopping:
            self._cancel_in_flight()
            return
        self._stopping = True
        grace = self.config.stop_grace_s if grace_s is None else grace_s
        self._cancel_handle = loop.call_later(grace, self._cancel_in_flight)

    async def run(self, requests: Iterable[Request] | AsyncIterable[Request]) -> AsyncIterator[Result]:
        """Yield one `Result` per request, in completion order (after `stop()`, only those that
        finished). Requests are drawn lazily, so memory stays flat however many there are."""
        if self._closed:
            raise RuntimeError("Engine.run() called after aclose()")
        self._open()
        source = _Source(requests)
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.config.concurrency)
        workers = [asyncio.create_task(self._worker(source, queue)) for _ in range(self.config.concurrency)]
        done = object()

        async def close_queue() -> None:
            try:
                await asyncio.gather(*workers)
            except Exception as exc:  # a fatal error or the caller's iterator failing
                await queue.put(exc)
            await queue.put(done)

        closer = asyncio.create_task(close_queue())
        try:
            while True:
                item = await queue.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            closer.cancel()
            for w in workers:
                w.cancel()
            await asyncio.gather(closer, *workers, return_exceptions=True)
            if self._cancel_handle is not None:
                self._cancel_handle.cancel()

    async def aclose(self) -> None:
        self._closed = True
        for ep in self._eps:
            if ep.probe is not None:
                ep.probe.cancel()
            if ep.session is not None:
                await ep.session.close()
                ep.session = None

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- inside ------------------------------------------------------------------------------

    def _open(self) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.config.concurrency)
        if self._any_up is None:
            self._any_up = asyncio.Event()
            self._any_up.set()
        for ep in self._eps:
            if ep.session is None:
                # The engine bounds concurrency itself; the connector must not queue behind it.
                connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
                ep.session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)

    def _cancel_in_flight(self) -> None:
        for task in list(self._busy):
            task.cancel()

    async def _worker(self, source: _Source, queue: asyncio.Queue[Any]) -> None:
        me = asyncio.current_task()
        assert me is not None
        while not self._stopping:
            request = await source.next()
            if request is None:
                return
            self._busy.add(me)
            try:
                async with self._slots:  # type: ignore[union-attr]
                    result = await self._execute(request)
            except asyncio.CancelledError:
                if self._stopping:  # cancelled by stop(): the request is sent again on resume
                    return
                raise
            finally:
                self._busy.discard(me)
            if result is not None:
                await queue.put(result)

    def _body(self, request: Request) -> tuple[str, bytes]:
        payload: dict[str, Any] = {"model": self.model}
        if request.messages is not None:
            payload["messages"] = request.messages
            kind = "chat"
        else:
            payload["prompt"] = request.prompt
            kind = "completions"
        payload.update(request.params)
        return kind, json.dumps(payload, ensure_ascii=False).encode()

    async def _execute(self, request: Request) -> Result | None:
        """Send one request until it succeeds, fails for good, or the engine stops (None)."""
        kind, body = self._body(request)
        self._started += 1
        attempt = 0
        free = 0
        while True:
            ep = await self._pick()
            started = time.monotonic()
            ep.in_flight += 1
            try:
                result = await self._send(ep, kind, body, request)
            except _Failure as failure:
                fail = failure
            else:
                ep.consecutive_failures = 0
                result.attempts = attempt + free + 1
                result.latency_s = time.monotonic() - started
                stats = ep.stats
                stats.requests += 1
                stats.ok += 1
                stats.prompt_tokens += result.prompt_tokens
                stats.completion_tokens += result.completion_tokens
                return result
            finally:
                ep.in_flight -= 1
            ep.stats.errors[fail.kind] = ep.stats.errors.get(fail.kind, 0) + 1
            ep.last_error = f"{fail.kind}: {fail.message}"
            self._note_failure(ep, fail)
            if self._stopping:
                return None
            if fail.kind == "connection" and not ep.up and free < _MAX_FREE_RETRIES:
                free += 1  # the endpoint was taken out: try another, or wait for it to come back
                continue
            exhausted = ""
            if fail.kind in RETRYABLE and attempt < self.config.max_retries:
                if self._retries_used < _RETRY_BUDGET_FLOOR + self.config.retry_budget * self._started:
                    self._retries_used += 1
                    ep.stats.retried += 1
                    delay = fail.retry_after if fail.retry_after is not None else self._backoff(attempt)
                    await asyncio.sleep(delay)
                    if self._stopping:
                        return None
                    attempt += 1
                    continue
                exhausted = " (retry budget exhausted: see engine.retry_budget)"
            ep.stats.requests += 1
            ep.stats.failed += 1
            return Result(
                request.id,
                error=fail.kind,
                error_message=fail.message + exhausted,
                endpoint=ep.base,
                attempts=attempt + free + 1,
                latency_s=time.monotonic() - started,
                meta=request.meta,
            )

    def _backoff(self, attempt: int) -> float:
        cap = min(self.config.backoff_max_s, self.config.backoff_base_s * 2**attempt)
        return cap / 2 + random.uniform(0, cap / 2)

    async def _send(self, ep: _EndpointState, kind: str, body: bytes, request: Request) -> Result:
        url = ep.chat_url if kind == "chat" else ep.completions_url
        assert ep.session is not None
        try:
            async with ep.session.post(url, data=body, headers=ep.headers) as resp:
                raw = await resp.read()
                status = resp.status
                retry_after = resp.headers.get("Retry-After") if status == 429 else None
        except asyncio.TimeoutError:
            raise _Failure("timeout", f"no complete answer within {self.config.timeout_s:g} s") from None
        except aiohttp.ClientConnectorError as exc:
            raise _Failure("connection", f"cannot connect: {exc}", refused=True) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _Failure("connection", f"{type(exc).__name__}: {exc}") from None
        if status == 200:
            return self._parse(raw, kind, ep, request)
        if status in (401, 403):
            raise EngineError(
                f"{ep.base} rejected the API key (HTTP {status}: {_error_message(raw)}); "
                "set the right key in the environment variable named by server.api_key_env"
            )
        if status == 404:
            raise EngineError(
                f"{url} answered 404 for model {self.model!r} ({_error_message(raw)}); "
                f"check model.served_name and that the endpoint URL ends in /v1"
                f"{await self._served_models(ep)}"
            )
        message = f"HTTP {status}: {_error_message(raw)}"
        if status == 429:
            raise _Failure("http_429", message, _retry_after(retry_after))
        if status >= 500:
            raise _Failure("http_5xx", message)
        if status == 408:
            raise _Failure("timeout", message)
        raise _Failure("bad_request", message)

    def _parse(self, raw: bytes, kind: str, ep: _EndpointState, request: Request) -> Result:
        try:
            data = json.loads(raw)
            choices = sorted(data["choices"], key=lambda c: c.get("index", 0))
            if not choices:
                raise ValueError("no choices")
            if kind == "chat":
                texts = [c["message"].get("content") or "" for c in choices]
            else:
                texts = [c["text"] or "" for c in choices]
            reasons = [c.get("finish_reason") or "unknown" for c in choices]
            usage = data.get("usage") or {}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            snippet = raw[:120].decode("utf-8", "replace")
            raise _Failure("bad_response", f"unreadable answer ({type(exc).__name__}): {snippet!r}") from None
        return Result(
            request.id,
            texts,
            reasons,
            prompt_tokens=usage.get("prompt_tokens") or 0,
            completion_tokens=usage.get("completion_tokens") or 0,
            endpoint=ep.base,
            meta=request.meta,
        )

    async def _served_models(self, ep: _EndpointState) -> str:
        """`; it serves: a, b` when the endpoint lists its models, else ""."""
        assert ep.session is not None
        try:
            async with ep.session.get(
                ep.base + "/models", headers=ep.headers, timeout=aiohttp.ClientTimeout(total=10)
            ) as resp:
                data = await resp.json(content_type=None)
            names = [m["id"] for m in data["data"]]
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError, KeyError, TypeError):
            return ""
        return f"; it serves: {', '.join(names)}" if names else ""

    # -- endpoint health -----------------------------------------------------------------------

    async def _pick(self) -> _EndpointState:
        while True:
            best = None
            for ep in self._eps:
                if ep.up and (best is None or ep.in_flight < best.in_flight):
                    best = ep
            if best is not None:
                return best
            await self._wait_for_endpoint()

    async def _wait_for_endpoint(self) -> None:
        assert self._any_up is not None and self._all_down_since is not None
        left = self.config.no_endpoint_timeout_s - (time.monotonic() - self._all_down_since)
        try:
            if left <= 0:
                raise asyncio.TimeoutError
            await asyncio.wait_for(self._any_up.wait(), left)
        except asyncio.TimeoutError:
            down = "; ".join(f"{ep.base} ({ep.last_error})" for ep in self._eps)
            raise EngineError(
                f"no endpoint left: none answered for {self.config.no_endpoint_timeout_s:g} s: {down}. "
                "Check that the servers run; rerun the same command to resume"
            ) from None

    def _note_failure(self, ep: _EndpointState, fail: _Failure) -> None:
        if fail.kind not in ("timeout", "connection"):
            ep.consecutive_failures = 0  # the server answered
            return
        ep.consecutive_failures += 1
        if ep.up and (fail.refused or ep.consecutive_failures >= self.config.endpoint_down_after):
            ep.up = False
            ep.stats.taken_out += 1
            log.warning("endpoint %s taken out (%s); probing it until it answers", ep.base, ep.last_error)
            if not any(e.up for e in self._eps):
                assert self._any_up is not None
                self._any_up.clear()
                self._all_down_since = time.monotonic()
            ep.probe = asyncio.create_task(self._probe(ep))

    async def _probe(self, ep: _EndpointState) -> None:
        assert ep.session is not None
        timeout = aiohttp.ClientTimeout(total=min(10.0, self.config.timeout_s))
        while not self._closed:
            await asyncio.sleep(self.config.probe_interval_s)
            try:
                async with ep.session.get(ep.base + "/models", headers=ep.headers, timeout=timeout) as resp:
                    alive = resp.status < 500
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                continue
            if alive:
                log.warning("endpoint %s is back", ep.base)
                ep.up = True
                ep.consecutive_failures = 0
                assert self._any_up is not None
                self._any_up.set()
                self._all_down_since = None
                return
