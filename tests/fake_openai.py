"""A small OpenAI-compatible server that fails on demand (a real one cannot be made to).

It answers /v1/chat/completions, /v1/completions, /v1/models and /health (as vLLM does) on
127.0.0.1 and a free port.
The answer echoes the prompt (the last message's content): `echo: <prompt>`, or `echo <i>: ...`
per choice when `n` > 1, cut at `max_tokens` words (finish_reason `length`) or at a stop string;
with `reply`, a function of the prompt stands in for a model and its text is the answer.

Faults, per attempt, come from one of two places:
- the prompt itself: `... #faults=500,429,ok` scripts the attempts of that prompt in order (the
  last entry repeats), so tests know exactly what each request meets;
- `rates`: `{"500": 0.1, "hang": 0.02, ...}`, drawn with a seeded generator, for stress runs.
Fault names: 500, 503, 429 (with Retry-After), hang (answer only after `hang_s`), close (the
connection closes mid-body), garbage (200 with a body that is not JSON), 400, 401, 403, 404, ok.

Run it alone (benchmarks, subprocess tests): `python tests/fake_openai.py [--delay S] [--rates ...]`
prints `http://127.0.0.1:PORT/v1` on its first line.

Faults can also be switched on and off while it serves (scripts/chaos.py does, mid-run):
`POST /_chaos` with `{"rates": {...}, "retry_after": "1" | null, "hang_s": 30, "seed": 1}`
replaces those settings (`seed` restarts the draws); `GET /_chaos` reports `served` and, as Unix
times, `first_fault` (the first fault served since the last POST) and `first_retry` (the first
request sent again after a fault: when the client noticed).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

_FAULTS = re.compile(r"#faults=([\w,]+)")


class FakeOpenAI:
    def __init__(
        self,
        *,
        rates: dict[str, float] | None = None,
        seed: int = 0,
        delay_s: float = 0.0,
        hang_s: float = 30.0,
        retry_after: str | None = "0.01",
        models: tuple[str, ...] = ("fake-model",),
        api_key: str | None = None,
        variants: bool = False,
        reply: Callable[[str], str] | None = None,
    ) -> None:
        self.rates = rates or {}
        self._rng = random.Random(seed)
        self.delay_s = delay_s
        self.hang_s = hang_s
        self.retry_after = retry_after
        self.models = models
        self.api_key = api_key
        # Mark every echoed line with a tag derived from the request, so that echoed example tasks
        # read as new text (not copies of the prompt) yet stay the same on every run.
        self.variants = variants
        # A model stand-in: the answer to a prompt, instead of the echo (tests/steer_world.py).
        self.reply = reply
        self.served: Counter[str] = Counter()  # answers given, per fault name ("ok" included)
        self.attempts: Counter[str] = Counter()  # attempts per scripted prompt
        self.models_calls = 0
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests answered at once
        self.down = False  # when True every request gets its connection closed at once
        self.first_fault: float | None = None  # Unix time of the first fault served (see /_chaos)
        self.first_retry: float | None = None  # ... and of the first request sent again after one
        self._faulted: set[str] = set()  # requests (by body) that met a fault
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_post("/_chaos", self._set_chaos)
        app.router.add_get("/_chaos", self._get_chaos)
        self._stopping = asyncio.Event()
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}/v1"
        return self.url

    async def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAI:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start_in_thread(self) -> str:
        """Serve from a thread with its own event loop (for tests that run clients elsewhere)."""
        ready = threading.Event()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.start())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self.stop())
            self._loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self.url

    def stop_thread(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    # -- handlers ------------------------------------------------------------------------------

    def _fault(self, prompt: str) -> str:
        scripted = _FAULTS.search(prompt)
        if scripted:
            plan = scripted.group(1).split(",")
            attempt = self.attempts[prompt]
            self.attempts[prompt] += 1
            return plan[min(attempt, len(plan) - 1)]
        if self.rates:
            draw = self._rng.random()
            for name, rate in self.rates.items():
                if draw < rate:
                    return name
                draw -= rate
        return "ok"

    def note(self, body: dict[str, Any], fault: str) -> None:
        """Remember which requests met a fault, to time the first one sent again."""
        key = hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()
        if key in self._faulted and self.first_retry is None:
            self.first_retry = time.time()
        if fault != "ok":
            self._faulted.add(key)
            if self.first_fault is None:
                self.first_fault = time.time()

    async def _set_chaos(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.rates = body.get("rates", self.rates)
        self.retry_after = body.get("retry_after", self.retry_after)
        self.hang_s = body.get("hang_s", self.hang_s)
        if "seed" in body:
            self._rng = random.Random(body["seed"])
        self.first_fault = self.first_retry = None
        self._faulted.clear()
        return web.json_response({"ok": True})

    async def _get_chaos(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"served": dict(self.served), "first_fault": self.first_fault, "first_retry": self.first_retry}
        )

    async def _models(self, request: web.Request) -> web.Response:
        self.models_calls += 1
        if self.down:
            raise ConnectionResetError("down")
        return web.json_response({"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]})

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        return await self._answer(request, body, body["messages"][-1]["content"], chat=True)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        return await self._answer(request, body, body["prompt"], chat=False)

    async def _answer(self, request: web.Request, body: dict[str, Any], prompt: str, chat: bool) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer_one(request, body, prompt, chat)
        finally:
            self.in_flight -= 1

    async def _answer_one(
        self, request: web.Request, body: dict[str, Any], prompt: str, chat: bool
    ) -> web.StreamResponse:
        if self.down:
            assert request.transport is not None
            request.transport.close()
            self.served["down"] += 1
            return web.Response()
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "invalid API key")
        if body.get("model") not in self.models:
            return _error(404, f"The model `{body.get('model')}` does not exist.")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        fault = self._fault(prompt)
        self.served[fault] += 1
        self.note(body, fault)
        if fault == "ok":
            return _ok(body, _variant(body, prompt) if self.variants else prompt, chat, self.reply)
        if fault == "hang":
            assert self._stopping is not None
            try:
                await asyncio.wait_for(self._stopping.wait(), self.hang_s)
            except asyncio.TimeoutError:
                pass
            return _ok(body, prompt, chat)
        if fault == "close":
            resp = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": "500"})
            await resp.prepare(request)
            await resp.write(b'{"choices": [{"index": 0, "mess')
            assert request.transport is not None
            request.transport.close()
            return resp
        if fault == "garbage":
            return web.Response(text="<html>502 Bad Gateway</html>", content_type="text/html")
        if fault == "429":
            headers = {"Retry-After": self.retry_after} if self.retry_after is not None else None
            return _error(429, "too many requests", headers)
        return _error(int(fault), f"injected {fault}")


def _variant(body: dict[str, Any], prompt: str) -> str:
    tag = hashlib.sha1(json.dumps([prompt, body.get("seed")]).encode()).hexdigest()[:6]
    return "\n".join(
        f"{line} (variant {tag}{i})" if line.strip() else line for i, line in enumerate(prompt.split("\n"))
    )


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "code": status}}, status=status, headers=headers)


def _ok(body: dict[str, Any], prompt: str, chat: bool, reply: Callable[[str], str] | None = None) -> web.Response:
    n = int(body.get("n") or 1)
    max_tokens = int(body.get("max_tokens") or 10_000)
    stops = body.get("stop") or []
    stops = [stops] if isinstance(stops, str) else stops
    choices = []
    completion_tokens = 0
    for i in range(n):
        if reply is not None:
            words = reply(prompt).split(" ")
        else:
            words = (f"echo {i}: {prompt}" if n > 1 else f"echo: {prompt}").split(" ")
        reason = "stop"
        if len(words) > max_tokens:
            words, reason = words[:max_tokens], "length"
        text = " ".join(words)
        for stop in stops:
            if stop in text:
                text, reason = text[: text.index(stop)], "stop"
        completion_tokens += len(words)
        choice: dict[str, Any] = {"index": i, "finish_reason": reason}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        choices.append(choice)
    usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": completion_tokens}
    payload = {
        "id": "cmpl-fake",
        "object": "chat.completion" if chat else "text_completion",
        "model": body["model"],
        "choices": choices[::-1],
        "usage": usage,
    }
    return web.Response(body=json.dumps(payload).encode(), content_type="application/json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--rates", default="", help="fault rates, like 500=0.1,hang=0.01")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", action="store_true", help="tag each echoed line (see FakeOpenAI)")
    parser.add_argument("--hang", type=float, default=30.0, help="seconds a `hang` fault waits before answering")
    parser.add_argument("--no-retry-after", action="store_true", help="answer 429 without a Retry-After header")
    args = parser.parse_args()
    rates = {k: float(v) for k, v in (p.split("=") for p in args.rates.split(",") if p)}
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def serve() -> None:
        server = FakeOpenAI(
            rates=rates,
            seed=args.seed,
            delay_s=args.delay,
            hang_s=args.hang,
            retry_after=None if args.no_retry_after else "0.01",
            variants=args.variants,
        )
        print(await server.start(args.port), flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
