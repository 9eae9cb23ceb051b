"""The endpoint pool: which server gets the next attempt, which are down, when one is back.

An endpoint is taken out of rotation when its connection is refused or after
`endpoint_down_after` consecutive timeouts or dropped connections; it is then probed (GET /models)
every `probe_interval_s` until it answers. When none is left, `pick()` waits up to
`no_endpoint_timeout_s` for one to come back, then raises `EngineError`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import aiohttp

from generator.config import EngineConfig
from generator.core.errors import EngineError
from generator.llm.requests import ErrorKind, Result
from generator.llm.transport import TransportError

log = logging.getLogger(__name__)

# Failures that say the server did not answer; any other means it is up.
_UNANSWERED = frozenset({ErrorKind.TIMEOUT, ErrorKind.CONNECTION})


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
    errors: dict[ErrorKind, int] = field(default_factory=dict)

    def count(self, result: Result) -> None:
        """Count a final result (its attempts are counted by `retried` and `errors`)."""
        self.requests += 1
        if result.ok:
            self.ok += 1
            self.prompt_tokens += result.prompt_tokens
            self.completion_tokens += result.completion_tokens
        else:
            self.failed += 1


class EndpointState:
    """One endpoint in the pool: its session (headers and timeout set once), load and health."""

    def __init__(self, endpoint: Endpoint, stats: EndpointStats) -> None:
        self.base = stats.url
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


class EndpointPool:
    """The endpoints one engine sends to, checked once: at least one, none listed twice."""

    def __init__(self, endpoints: list[Endpoint], config: EngineConfig) -> None:
        if not endpoints:
            raise EngineError("no endpoint given: set server.endpoints or let instructforge start vLLM")
        urls = [e.base_url.rstrip("/") for e in endpoints]
        repeated = sorted({u for u in urls if urls.count(u) > 1})
        if repeated:
            raise EngineError(f"endpoint listed twice: {', '.join(repeated)}; list each server once")
        self.config = config
        self.stats = {u: EndpointStats(u) for u in urls}
        self.endpoints = [EndpointState(e, self.stats[u]) for e, u in zip(endpoints, urls)]
        self._timeout = aiohttp.ClientTimeout(total=config.timeout_s, sock_connect=config.connect_timeout_s)
        self._any_up: asyncio.Event | None = None
        self._all_down_since: float | None = None
        self._closed = False

    def open(self) -> None:
        """Make what is missing, inside the event loop that will use it; each `run()` calls it."""
        if self._any_up is None:
            self._any_up = asyncio.Event()
            self._any_up.set()
        for ep in self.endpoints:
            if ep.session is None:
                # The engine bounds concurrency itself; the connector must not queue behind it.
                connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
                ep.session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, headers=ep.headers)

    async def aclose(self) -> None:
        self._closed = True
        for ep in self.endpoints:
            if ep.probe is not None:
                ep.probe.cancel()
            if ep.session is not None:
                await ep.session.close()
                ep.session = None

    async def pick(self) -> EndpointState:
        """The endpoint in rotation with the fewest requests in flight, waiting for one if none is."""
        while True:
            best = None
            for ep in self.endpoints:
                if ep.up and (best is None or ep.in_flight < best.in_flight):
                    best = ep
            if best is not None:
                return best
            await self._wait_for_endpoint()

    def succeeded(self, ep: EndpointState) -> None:
        ep.consecutive_failures = 0

    def failed(self, ep: EndpointState, failure: TransportError) -> None:
        """Note a failed attempt; take the endpoint out if it stopped answering."""
        ep.last_error = f"{failure.kind}: {failure.message}"
        if failure.kind not in _UNANSWERED:
            ep.consecutive_failures = 0  # the server answered
            return
        ep.consecutive_failures += 1
        if ep.up and (failure.refused or ep.consecutive_failures >= self.config.endpoint_down_after):
            self._take_out(ep)

    def _take_out(self, ep: EndpointState) -> None:
        ep.up = False
        ep.stats.taken_out += 1
        log.warning("endpoint %s taken out (%s); probing it until it answers", ep.base, ep.last_error)
        if not any(e.up for e in self.endpoints):
            assert self._any_up is not None
            self._any_up.clear()
            self._all_down_since = time.monotonic()
        ep.probe = asyncio.create_task(self._probe(ep))

    async def _wait_for_endpoint(self) -> None:
        assert self._any_up is not None and self._all_down_since is not None
        left = self.config.no_endpoint_timeout_s - (time.monotonic() - self._all_down_since)
        try:
            if left <= 0:
                raise asyncio.TimeoutError
            await asyncio.wait_for(self._any_up.wait(), left)
        except asyncio.TimeoutError:
            down = "; ".join(f"{ep.base} ({ep.last_error})" for ep in self.endpoints)
            raise EngineError(
                f"no endpoint left: none answered for {self.config.no_endpoint_timeout_s:g} s: {down}. "
                "Check that the servers run; rerun the same command to resume"
            ) from None

    async def _probe(self, ep: EndpointState) -> None:
        assert ep.session is not None
        timeout = aiohttp.ClientTimeout(total=min(10.0, self.config.timeout_s))
        while not self._closed:
            await asyncio.sleep(self.config.probe_interval_s)
            try:
                async with ep.session.get(ep.base + "/models", timeout=timeout) as resp:
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
