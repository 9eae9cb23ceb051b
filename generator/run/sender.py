"""The run's way to the model: requests built from templates, sent through the engine, and the
results the run directory already holds reused instead of sent again."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from filters.base import BatchChat
from generator.config import SamplingConfig
from generator.llm.engine import Engine, EngineStats
from generator.llm.requests import Request, Result, request_id
from generator.prompting.seeds import SeedTask
from generator.prompting.templates import PromptTemplate, render
from generator.run.budget import Budget
from generator.run.progress import Progress
from generator.run.stop import interrupted
from generator.run.store import RunStore


@dataclass(frozen=True)
class Served:
    """What the requests ask for: the model they name, how they sample (each template's sampling
    laid over it), and the model's configured revision (for the records' lineage)."""

    name: str
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    revision: str | None = None


class Sender:
    """Sends a stage's requests, reusing what the run directory already holds (read from the store
    when asked, not held here).

    `engine` is an engine, or an async function that opens one; it is called when the first request
    must be sent, so a run whose directory holds every result it needs starts no server.

    With a `budget`, each request is handed to the engine only while no limit is reached; once one
    is, requests in flight finish and nothing more is sent: `send` returns None for what is
    missing, and `unsent` holds those requests' ids."""

    def __init__(
        self,
        engine: Engine | Callable[[], Awaitable[Engine]],
        store: RunStore,
        model: Served,
        progress: Progress | None = None,
        budget: Budget | None = None,
    ):
        self.engine = engine if isinstance(engine, Engine) else None
        self._open = None if isinstance(engine, Engine) else engine
        self._opening = asyncio.Lock()
        self.store = store
        self.model = model.name
        self.sampling = model.sampling
        self.revision = model.revision  # the model's revision, for the records' lineage
        self._sampling_hashes: dict[str, str] = {}  # one string per setting, shared by every record
        self.progress = progress or Progress(enabled=False)
        self.budget = budget
        self.unsent: set[str] = set()  # requests the budget kept from being sent

    def request(
        self, template: PromptTemplate, variables: dict[str, Any], meta: dict[str, Any], **extra: Any
    ) -> Request:
        """The request for `template` with `variables`: sampling from the config, then the
        template's own settings, then `extra`; its id is stable across runs."""
        params = self._params(template, repr(sorted(variables.items())), extra)
        values = {**template.meta.defaults, **variables}
        rid = request_id(template.name, _plain(values), self.model, params)
        return Request(
            id=rid,
            messages=render(template, values),
            params=params,
            meta={**meta, **self.lineage(template.name, template.digest, params)},
        )

    def chat_request(
        self, messages: list[dict[str, str]], sampling_of: PromptTemplate, meta: dict[str, Any]
    ) -> Request:
        """The request that sends `messages` as they are (a conversation to answer), sampled as
        `sampling_of` is; its id depends only on the messages, the model and the sampling."""
        params = self._params(sampling_of, repr(messages), {})
        rid = request_id(f"chat:{sampling_of.name}", {"messages": messages}, self.model, params)
        lineage = self.lineage(sampling_of.name, sampling_of.digest, params)
        return Request(id=rid, messages=messages, params=params, meta={**meta, **lineage})

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
        self._seed(params, seed_key)
        return params

    def lineage(self, name: str, digest: str, params: dict[str, Any]) -> dict[str, Any]:
        """What a record made from this request says about how it was made (not part of the id):
        the template's name and the hash of its text (of the raw prompt for a completions request)."""
        # The per-prompt seed is left out: one hash for the settings every prompt of a run shares.
        shared = json.dumps({k: v for k, v in params.items() if k != "seed"}, sort_keys=True)
        if shared not in self._sampling_hashes:
            self._sampling_hashes[shared] = hashlib.sha256(shared.encode()).hexdigest()[:12]
        out = {
            "template": name,
            "template_hash": digest,
            "model": self.model,
            "sampling_hash": self._sampling_hashes[shared],
        }
        if self.revision:
            out["model_revision"] = self.revision
        return out

    def completion(
        self, name: str, prompt: str, variables: dict[str, Any], meta: dict[str, Any], params: dict[str, Any]
    ) -> Request:
        """A request for the completions API: `prompt` sent as it is with `params` (and the config's
        seed); `name` stands for the template in the id and the record's meta, and `variables`
        tell apart requests with the same prompt. Its id is stable across runs."""
        params = dict(params)
        self._seed(params, repr(sorted(variables.items())))
        rid = request_id(name, _plain({**variables, "prompt": prompt}), self.model, params)
        digest = hashlib.sha256(prompt.encode()).hexdigest()[:12]
        return Request(id=rid, prompt=prompt, params=params, meta={**meta, **self.lineage(name, digest, params)})

    def _seed(self, params: dict[str, Any], seed_key: str) -> None:
        if self.sampling.seed is not None:
            # One seed per prompt: reproducible, yet different prompts sample independently.
            params["seed"] = (self.sampling.seed + zlib.crc32(seed_key.encode())) % 2**31

    async def send(self, requests: list[Request]) -> list[Result | None]:
        """Results in the order of `requests`; None for a request that failed for good. Raises
        `Interrupted` when the engine was stopped (what finished is stored)."""
        done = self.store.done_ids
        missing = [r for r in requests if r.id not in done]
        by_id = {r.id: r for r in missing}
        # What arrives now is returned as it is; what was stored before is read back from the store.
        arrived: dict[str, Result] = {}
        if missing and not self.spent:
            engine = await self._engine()
            self.progress.restart(len(missing))  # the bar counts this stage's requests
            timer = self._arm_budget_timer(engine)
            began = time.monotonic()  # the stage's sending time, for the cost per stage
            try:
                async with contextlib.aclosing(engine.run(self._within_budget(missing))) as results:
                    async for result in results:
                        self.progress.update(result)
                        result.meta = {**by_id[result.request_id].meta, **result.meta}
                        self.store.append(result)
                        if self.budget is not None:
                            self.budget.settle()
                        if result.ok:
                            arrived[result.request_id] = result
            finally:
                if timer is not None:
                    timer.cancel()
                self.store.costs.add_seconds(missing[0].meta.get("stage"), time.monotonic() - began)
                self.store.flush()  # also when the engine fails: what finished is kept
        if self.engine is not None and self.engine.stopped and (self.engine.failure is not None or not self.spent):
            raise self.engine.failure or interrupted(self.store.run_dir)
        out = [arrived[r.id] if r.id in arrived else self.store.get(r.id) for r in requests]
        if self.spent:
            self.unsent.update(
                r.id for r, res in zip(requests, out) if res is None and r.id not in self.store.failed_ids
            )
        return out

    @property
    def spent(self) -> bool:
        """A budget limit is reached: nothing more is sent."""
        return self.budget is not None and self.budget.check()

    def cut_off(self, requests: list[Request]) -> bool:
        """The budget is spent and some of `requests` have no stored result: they would not be sent."""
        done = self.store.done_ids
        return self.spent and any(r.id not in done for r in requests)

    def _within_budget(self, requests: list[Request]) -> Iterator[Request]:
        """`requests`, drawn by the engine one at a time, until a budget limit is reached."""
        for r in requests:
            if self.budget is not None:
                if self.budget.check():
                    return
                self.budget.add_request()
            yield r

    def _arm_budget_timer(self, engine: Engine) -> asyncio.TimerHandle | None:
        """Stop the engine (in flight: `engine.stop_grace_s` to finish) when a limit that time
        alone reaches runs out while requests are out."""
        left = self.budget.seconds_left() if self.budget is not None else None
        if left is None:
            return None
        budget = self.budget

        def out_of_time() -> None:
            if budget is not None and budget.check():
                engine.stop()

        return asyncio.get_running_loop().call_later(left + 0.01, out_of_time)

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
