"""The run's way to the model: requests built from templates, sent through the engine, and the
results the run directory already holds reused instead of sent again."""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from filters.base import BatchChat
from generator.config import SamplingConfig
from generator.llm.engine import Engine, EngineStats
from generator.llm.requests import Request, Result, request_id
from generator.prompting.seeds import SeedTask
from generator.prompting.templates import PromptTemplate, render
from generator.run.progress import Progress
from generator.run.stop import interrupted
from generator.run.store import RunStore


class Sender:
    """Sends a stage's requests, reusing what the run directory already holds (read from the store
    when asked, not held here).

    `engine` is an engine, or an async function that opens one; it is called when the first request
    must be sent, so a run whose directory holds every result it needs starts no server."""

    def __init__(
        self,
        sampling: SamplingConfig,
        engine: Engine | Callable[[], Awaitable[Engine]],
        store: RunStore,
        model: str,
        progress: Progress | None = None,
    ):
        self.sampling = sampling
        self.engine = engine if isinstance(engine, Engine) else None
        self._open = None if isinstance(engine, Engine) else engine
        self._opening = asyncio.Lock()
        self.store = store
        self.model = model
        self.progress = progress or Progress(enabled=False)

    def request(
        self, template: PromptTemplate, variables: dict[str, Any], meta: dict[str, Any], **extra: Any
    ) -> Request:
        """The request for `template` with `variables`: sampling from the config, then the
        template's own settings, then `extra`; its id is stable across runs."""
        params = self._params(template, repr(sorted(variables.items())), extra)
        values = {**template.meta.defaults, **variables}
        rid = request_id(template.name, _plain(values), self.model, params)
        return Request(
            id=rid, messages=render(template, values), params=params, meta={**meta, "template": template.name}
        )

    def chat_request(
        self, messages: list[dict[str, str]], sampling_of: PromptTemplate, meta: dict[str, Any]
    ) -> Request:
        """The request that sends `messages` as they are (a conversation to answer), sampled as
        `sampling_of` is; its id depends only on the messages, the model and the sampling."""
        params = self._params(sampling_of, repr(messages), {})
        rid = request_id(f"chat:{sampling_of.name}", {"messages": messages}, self.model, params)
        return Request(id=rid, messages=messages, params=params, meta={**meta, "template": sampling_of.name})

    def _params(self, template: PromptTemplate, seed_key: str, extra: dict[str, Any]) -> dict[str, Any]:
        """Sampling from the config, then the template's own settings, then `extra`."""
        s = self.sampling
        params: dict[str, Any] = {"temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_tokens}
        if s.stop:
            params["stop"] = list(s.stop)
        params.update(template.sampling)
        params.update(extra)
        if template.response_format is not None:
            params["response_format"] = template.response_format
        if s.seed is not None:
            # One seed per prompt: reproducible, yet different prompts sample independently.
            params["seed"] = (s.seed + zlib.crc32(seed_key.encode())) % 2**31
        return params

    async def send(self, requests: list[Request]) -> list[Result | None]:
        """Results in the order of `requests`; None for a request that failed for good. Raises
        `Interrupted` when the engine was stopped (what finished is stored)."""
        done = self.store.done_ids
        missing = [r for r in requests if r.id not in done]
        by_id = {r.id: r for r in missing}
        # What arrives now is returned as it is; what was stored before is read back from the store.
        arrived: dict[str, Result] = {}
        if missing:
            engine = await self._engine()
            self.progress.restart(len(missing))  # the bar counts this stage's requests
            try:
                async with contextlib.aclosing(engine.run(missing)) as results:
                    async for result in results:
                        self.progress.update(result)
                        result.meta = {**by_id[result.request_id].meta, **result.meta}
                        self.store.append(result)
                        if result.ok:
                            arrived[result.request_id] = result
            finally:
                self.store.flush()  # also when the engine fails: what finished is kept
        if self.engine is not None and self.engine.stopped:
            raise self.engine.failure or interrupted(self.store.run_dir)
        return [arrived[r.id] if r.id in arrived else self.store.get(r.id) for r in requests]

    async def _engine(self) -> Engine:
        async with self._opening:
            if self.engine is None:
                assert self._open is not None
                self.engine = await self._open()
        return self.engine

    def engine_stats(self) -> dict[str, Any]:
        """The engine's figures; zeros when nothing had to be sent (no engine was opened)."""
        return (self.engine.stats if self.engine is not None else EngineStats({})).to_dict()

    def batch_chat(self, loop: asyncio.AbstractEventLoop) -> BatchChat:
        """The `BatchChat` filters get: requests through this sender (so a resumed run does not
        ask twice), callable from the worker thread the filter chains run in."""

        def chat(conversations: list[list[dict[str, str]]], extra: dict[str, Any]) -> list[str | None]:
            params = {"temperature": 0.0, "max_tokens": 256, **extra}
            requests = [
                Request(
                    id=request_id("chat", {"messages": m}, self.model, params),
                    messages=m,
                    params=params,
                    meta={"stage": "filter"},
                )
                for m in conversations
            ]
            results = asyncio.run_coroutine_threadsafe(self.send(requests), loop).result()
            return [r.texts[0] if r is not None and r.texts else None for r in results]

        return chat


def _plain(value: Any) -> Any:
    """Template variables as JSON-able data, for the request id."""
    if isinstance(value, SeedTask):
        return {"id": value.id, "instruction": value.instruction}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
