"""Async generation against OpenAI-compatible servers (vLLM): bounded concurrency over several
endpoints, retries with backoff within a run-wide budget, accounting.

The parts: `requests.py` (what goes in and comes out), `transport.py` (one HTTP attempt per API),
`endpoints.py` (which endpoint gets an attempt, which are down); this module runs them.

A failed sample is data: a `Result` whose `error` is an `ErrorKind`. Only what no retry can fix
raises `EngineError`: a rejected key (401/403), an unknown model or path (404), or no endpoint left.

Stopping (Ctrl-C, SIGTERM): the caller installs the signal handlers and calls `Engine.stop()`.
The engine then sends nothing new, lets requests in flight finish for `stop_grace_s`, cancels
the rest, and `run()` ends normally after yielding every finished result; the caller flushes its
store and checks `Engine.stopped`. Cancelled and unsent requests are simply missing from the run
directory, so a resumed run sends them again. `Engine.fail(error)` stops it the same way but at
once, and `run()` raises `error` after the finished results (the managed server died).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from generator.config import EngineConfig
from generator.llm.endpoints import Endpoint, EndpointPool, EndpointState, EndpointStats
from generator.llm.requests import RETRYABLE, ErrorKind, Request, Result
from generator.llm.transport import API_FUNCS, TransportError

_RETRY_BUDGET_FLOOR = 20
# Retries that do not count against `max_retries`: the endpoint was taken out under the request.
_MAX_FREE_RETRIES = 20
_DONE = object()  # ends a run's result queue


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
    def errors(self) -> dict[ErrorKind, int]:
        """Failed attempts per error kind, over all endpoints (retried ones included)."""
        total: dict[ErrorKind, int] = {}
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


class _Source:
    """Draws requests one at a time from a sync or async iterable; None when it runs out. Only a
    run's feeder draws, so an async generator is never advanced by two tasks at once."""

    def __init__(self, requests: Iterable[Request] | AsyncIterable[Request]) -> None:
        self._it = None if hasattr(requests, "__aiter__") else iter(requests)  # type: ignore[arg-type]
        self._ait = requests.__aiter__() if self._it is None else None  # type: ignore[union-attr]

    async def next(self) -> Request | None:
        if self._it is not None:
            return next(self._it, None)
        return await anext(self._ait, None)  # type: ignore[arg-type]


class Engine:
    """Sends requests to the endpoints, at most `config.concurrency` at once over all `run()`
    calls, each attempt to the endpoint with the fewest in flight, and yields results as they
    complete.

    Use it as `async with Engine(...) as engine:` and iterate `run()` inside
    `contextlib.aclosing(...)` so that leaving the loop early cancels what is in flight.
    """

    def __init__(self, endpoints: list[Endpoint], model: str, config: EngineConfig) -> None:
        self.model = model
        self.config = config
        self._pool = EndpointPool(endpoints, config)
        self.stats = EngineStats(self._pool.stats)
        # The one bound: a slot is held from drawing a request until its result is queued.
        self._slots: asyncio.Semaphore | None = None
        self._busy: set[asyncio.Task[Any]] = set()  # tasks sending a request (what stop() cancels)
        self._stopping = False
        self.failure: Exception | None = None  # what `fail()` ended the engine with
        self._closed = False
        self._cancel_handle: asyncio.TimerHandle | None = None
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

    def fail(self, error: Exception) -> None:
        """Stop and cancel what is in flight now: nothing more can be sent. This `run()` and every
        later one raise `error` once the results that finished are yielded."""
        self.failure = error
        self._stopping = True
        self._cancel_in_flight()

    async def run(self, requests: Iterable[Request] | AsyncIterable[Request]) -> AsyncIterator[Result]:
        """Yield one `Result` per request, in completion order (after `stop()`, only those that
        finished). Requests are drawn lazily, so memory stays flat however many there are."""
        if self._closed:
            raise RuntimeError("Engine.run() called after aclose()")
        self._pool.open()
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.config.concurrency)
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.config.concurrency)
        feeder = asyncio.create_task(self._feed(_Source(requests), queue))
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, BaseException):  # a fatal error or the caller's iterator failing
                    raise item
                yield item
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)
            if self._cancel_handle is not None:
                self._cancel_handle.cancel()

    async def aclose(self) -> None:
        self._closed = True
        await self._pool.aclose()

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- inside ------------------------------------------------------------------------------

    def _cancel_in_flight(self) -> None:
        for task in list(self._busy):
            task.cancel()

    async def _feed(self, source: _Source, queue: asyncio.Queue[Any]) -> None:
        """Draw a request whenever a slot is free and run it in a task of its own, which holds the
        slot until its result is queued; when the source runs out or the engine stops, wait for
        those tasks and end the queue."""
        slots = self._slots
        assert slots is not None
        tasks: set[asyncio.Task[None]] = set()

        def done(task: asyncio.Task[None]) -> None:
            # A callback, not the task's own `finally`: a task cancelled before it starts frees its slot too.
            tasks.discard(task)
            slots.release()

        try:
            while not self._stopping:
                await slots.acquire()
                try:
                    request = None if self._stopping else await source.next()
                except Exception as exc:  # the caller's iterator failed: end the run with it
                    slots.release()
                    await queue.put(exc)
                    break
                if request is None:
                    slots.release()
                    break
                task = asyncio.create_task(self._run_one(request, queue))
                tasks.add(task)
                task.add_done_callback(done)
            if tasks:
                await asyncio.wait(tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await queue.put(_DONE if self.failure is None else self.failure)

    async def _run_one(self, request: Request, queue: asyncio.Queue[Any]) -> None:
        """Execute one request and queue its result, or the fatal error that ends the run."""
        me = asyncio.current_task()
        assert me is not None
        self._busy.add(me)
        try:
            item: Result | BaseException | None = await self._execute(request)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            item = None  # cancelled by stop(): the request is sent again on resume
        except Exception as exc:  # a rejected key, an unknown model, no endpoint left
            item = exc
        finally:
            self._busy.discard(me)
        if item is not None:
            await queue.put(item)

    async def _execute(self, request: Request) -> Result | None:
        """Send one request until it succeeds, fails for good, or the engine stops (None)."""
        send = API_FUNCS[request.api]
        self._started += 1
        attempt = 0
        free = 0
        while True:
            ep = await self._pool.pick()
            started = time.monotonic()
            ep.in_flight += 1
            try:
                result = await send(ep.session, ep.base, self.model, request)  # type: ignore[arg-type]
            except TransportError as failure:
                fail = failure
            else:
                self._pool.succeeded(ep)
                result.attempts = attempt + free + 1
                result.latency_s = time.monotonic() - started
                ep.stats.count(result)
                return result
            finally:
                ep.in_flight -= 1
            ep.stats.errors[fail.kind] = ep.stats.errors.get(fail.kind, 0) + 1
            self._pool.failed(ep, fail)
            if self._stopping:
                return None
            if fail.kind is ErrorKind.CONNECTION and not ep.up and free < _MAX_FREE_RETRIES:
                free += 1  # the endpoint was taken out: try another, or wait for it to come back
                continue
            exhausted = ""
            if fail.kind in RETRYABLE and attempt < self.config.max_retries:
                if self._spend_retry():
                    ep.stats.retried += 1
                    await asyncio.sleep(fail.retry_after if fail.retry_after is not None else self._backoff(attempt))
                    if self._stopping:
                        return None
                    attempt += 1
                    continue
                exhausted = " (retry budget exhausted: see engine.retry_budget)"
            return self._failed(request, ep, fail, exhausted, attempt + free + 1, started)

    def _spend_retry(self) -> bool:
        """Take one retry from the run-wide budget (`retry_budget` per request started, plus a
        floor); False when it is spent."""
        if self._retries_used >= _RETRY_BUDGET_FLOOR + self.config.retry_budget * self._started:
            return False
        self._retries_used += 1
        return True

    def _backoff(self, attempt: int) -> float:
        cap = min(self.config.backoff_max_s, self.config.backoff_base_s * 2**attempt)
        return cap / 2 + random.uniform(0, cap / 2)

    @staticmethod
    def _failed(
        request: Request, ep: EndpointState, fail: TransportError, note: str, attempts: int, started: float
    ) -> Result:
        result = Result(
            request.id,
            error=fail.kind,
            error_message=fail.message + note,
            endpoint=ep.base,
            attempts=attempts,
            latency_s=time.monotonic() - started,
            meta=request.meta,
        )
        ep.stats.count(result)
        return result
