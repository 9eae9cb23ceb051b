"""The generation methods: rounds of prompt -> generate -> parse -> filter that grow a pool of
instructions until the target is reached, then the stage that completes each task.

Every request id is deterministic and every round's results are processed in request order, not
arrival order, so a resumed run rebuilds the same pool from the stored results and sends exactly
the requests that are missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from filters.base import Chain, Drop, Funnel
from filters.dedup import normalize
from generator.config import Config
from generator.core.records import Record
from generator.llm.engine import Engine
from generator.llm.requests import Request, Result, request_id
from generator.prompting.parse import parse
from generator.prompting.seeds import SeedTask
from generator.prompting.templates import PromptTemplate, check_variables, load_template, render
from generator.run.progress import Progress
from generator.run.stop import interrupted
from generator.run.store import RunStore

Log = Callable[[str], None]


@dataclass
class RoundStats:
    round: int
    requests: int
    candidates: int
    accepted: int

    @property
    def acceptance(self) -> float:
        return self.accepted / self.candidates if self.candidates else 0.0


@dataclass
class BootstrapResult:
    records: list[Record]
    rounds: list[RoundStats] = field(default_factory=list)
    stop_reason: str = ""


class Generator:
    """Sends a stage's requests, reusing what the run directory already holds."""

    def __init__(self, config: Config, engine: Engine, store: RunStore, model: str, log: Log,
                 progress: Progress | None = None):
        self.config = config
        self.progress = progress or Progress(enabled=False)
        self.engine = engine
        self.store = store
        self.model = model
        self.log = log
        self.cached: dict[str, Result] = {r.request_id: r for r in store.results()}
        self.failed = 0
        self.sent = 0

    def request(self, template: PromptTemplate, variables: dict[str, Any], meta: dict[str, Any],
                **extra: Any) -> Request:
        s = self.config.sampling
        params: dict[str, Any] = {"temperature": s.temperature, "top_p": s.top_p,
                                  "max_tokens": s.max_tokens}
        if s.stop:
            params["stop"] = list(s.stop)
        params.update(template.sampling)
        params.update(extra)
        if template.response_format is not None:
            params["response_format"] = template.response_format
        if s.seed is not None:
            # One seed per prompt: reproducible, yet different prompts sample independently.
            params["seed"] = (s.seed + zlib.crc32(repr(sorted(variables.items())).encode())) % 2**31
        values = {**template.meta.defaults, **variables}
        rid = request_id(template.name, _plain(values), self.model, params)
        return Request(id=rid, messages=render(template, values), params=params,
                       meta={**meta, "template": template.name})

    async def run(self, requests: list[Request]) -> list[Result | None]:
        """Results in the order of `requests`; None for a request that failed for good."""
        missing = [r for r in requests if r.id not in self.cached]
        by_id = {r.id: r for r in missing}
        if missing:
            self.sent += len(missing)
            self.progress.restart(len(missing))  # the bar counts this stage's requests
            async with contextlib.aclosing(self.engine.run(missing)) as results:
                async for result in results:
                    self.progress.update(result)
                    result.meta = {**by_id[result.request_id].meta, **result.meta}
                    self.store.append(result)
                    if result.ok:
                        self.cached[result.request_id] = result
                    else:
                        self.failed += 1
            self.store.flush()
        if self.engine.stopped:
            raise interrupted(self.store.run_dir)
        return [self.cached.get(r.id) for r in requests]


def _plain(value: Any) -> Any:
    """Template variables as JSON-able data, for the request id."""
    if isinstance(value, SeedTask):
        return {"id": value.id, "instruction": value.instruction}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _rng(*parts: Any) -> random.Random:
    return random.Random(zlib.crc32(repr(parts).encode()))


class Bootstrap:
    """The self-instruct loop and its siblings; `run()` returns the finished records."""

    def __init__(self, config: Config, gen: Generator, seeds: list[SeedTask],
                 instruction_chain: Chain, funnel: Funnel, log: Log):
        self.config = config
        self.g = config.generation
        self.gen = gen
        self.seeds = seeds
        self.chain = instruction_chain
        self.funnel = funnel
        self.log = log
        self.pool: list[Record] = []
        self.templates = load_templates(config)
        self.seed_texts = {normalize(s.instruction) for s in seeds}

    # -- shared pieces --------------------------------------------------------------------------

    def _drop(self, record: Record, stage: str, reason: str, **detail: Any) -> None:
        self.funnel.candidates += 1
        self.funnel.add_drop(Drop(record, stage, reason, detail))

    def _parse_instructions(self, results: list[Result | None], requests: list[Request],
                            template: PromptTemplate) -> list[Record]:
        out: list[Record] = []
        for req, res in zip(requests, results):
            if res is None:
                continue
            for text, finish in zip(res.texts, res.finish_reasons):
                parsed = parse(template.meta.parser, text, finish)
                for rej in parsed.rejections:
                    self._drop(Record(instruction=rej.text[:500]), "parse", rej.reason)
                for item in parsed.items:
                    if normalize(item["instruction"]) in self.seed_texts:
                        # Small models copy their demonstrations; a seed is not new data.
                        self._drop(Record(instruction=item["instruction"]), "bootstrap", "copies_seed")
                        continue
                    out.append(Record(
                        instruction=item["instruction"].strip(),
                        input=item.get("input", "") or "",
                        output=item.get("output", "") or "",
                        meta={**{k: v for k, v in req.meta.items() if k in ("round", "seed_ids", "template")},
                              "finish_reason": finish},
                    ))
        return out

    async def _accept(self, candidates: list[Record]) -> int:
        before = self.chain.funnel.kept
        # In a worker thread: a filter that asks the LLM (a judge) sends through this event loop.
        result = await asyncio.to_thread(self.chain.run, candidates)
        room = self.g.num_instructions - len(self.pool)
        accepted = result.kept[:room]
        for surplus in result.kept[room:]:
            self.chain.funnel.kept -= 1
            self.chain.funnel.add_drop(Drop(surplus, "bootstrap", "over_target"))
        self.pool.extend(accepted)
        return self.chain.funnel.kept - before

    def _demonstrations(self, rng: random.Random) -> tuple[list[Any], list[str]]:
        k = self.g.num_demonstrations
        n_machine = min(len(self.pool), round(k * self.g.machine_ratio))
        demos: list[Any] = rng.sample(self.seeds, min(k - n_machine, len(self.seeds)))
        demos += [{"instruction": r.instruction} for r in rng.sample(self.pool, n_machine)]
        rng.shuffle(demos)
        return demos, [d.id for d in demos if isinstance(d, SeedTask)]

    async def _rounds(self, make_requests: Callable[[int, int], list[Request]],
                      template: PromptTemplate) -> BootstrapResult:
        """Round after round until the pool is full, the rounds run out, or acceptance stalls."""
        stats: list[RoundStats] = []
        stalled = 0
        for rnd in range(self.g.max_rounds):
            need = self.g.num_instructions - len(self.pool)
            if need <= 0:
                return BootstrapResult(self.pool, stats, "target reached")
            requests = make_requests(rnd, need)
            results = await self.gen.run(requests)
            candidates = self._parse_instructions(results, requests, template)
            accepted = await self._accept(candidates)
            st = RoundStats(rnd, len(requests), len(candidates), accepted)
            stats.append(st)
            self.log(f"round {rnd}: {len(requests)} requests, {st.candidates} candidates, "
                     f"{accepted} accepted ({st.acceptance:.0%}); pool {len(self.pool)}"
                     f"/{self.g.num_instructions}")
            stalled = stalled + 1 if st.acceptance < self.g.min_acceptance else 0
            if stalled >= self.g.stall_rounds:
                return BootstrapResult(self.pool, stats,
                                       f"acceptance below {self.g.min_acceptance:.0%} for {stalled} rounds")
        reason = "target reached" if len(self.pool) >= self.g.num_instructions else \
            f"max_rounds ({self.g.max_rounds}) reached"
        return BootstrapResult(self.pool, stats, reason)

    def _requests_per_round(self, need: int, per_request: int) -> int:
        # Ask for more than needed: many candidates are filtered out, and a request costs little.
        return max(1, min(self.config.engine.concurrency,
                          math.ceil(need * self.g.overgenerate / per_request)))

    # -- methods --------------------------------------------------------------------------------

    async def self_instruct(self) -> BootstrapResult:
        tpl = self.templates["instructions"]
        per = self.g.instructions_per_prompt

        def make(rnd: int, need: int) -> list[Request]:
            reqs = []
            for i in range(self._requests_per_round(need, per)):
                demos, seed_ids = self._demonstrations(_rng("self_instruct", rnd, i, len(self.pool)))
                reqs.append(self.gen.request(tpl, {"demonstrations": demos, "num_instructions": per},
                                             {"stage": "instructions", "round": rnd, "seed_ids": seed_ids}))
            return reqs

        return await self._rounds(make, tpl)

    async def alpaca_batch(self) -> BootstrapResult:
        tpl = self.templates["batch"]
        per = self.g.instructions_per_prompt

        def make(rnd: int, need: int) -> list[Request]:
            reqs = []
            for i in range(self._requests_per_round(need, per)):
                demos, seed_ids = self._demonstrations(_rng("alpaca", rnd, i, len(self.pool)))
                demos = [d for d in demos if isinstance(d, SeedTask)] or self.seeds[:3]
                reqs.append(self.gen.request(tpl, {"demonstrations": demos, "num_tasks": per},
                                             {"stage": "instructions", "round": rnd, "seed_ids": seed_ids}))
            return reqs

        return await self._rounds(make, tpl)

    async def evol_instruct(self) -> BootstrapResult:
        """Each round evolves instructions of the previous generation (seeds first) in depth or
        breadth; the evolved ones that pass the filters join the pool."""
        ops = self.g.evol.operations
        parents: list[str] = [s.instruction for s in self.seeds]
        per_round: dict[int, list[Request]] = {}

        def make(rnd: int, need: int) -> list[Request]:
            rng = _rng("evol", rnd)
            src = parents if rnd == 0 or not self.pool else [r.instruction for r in self.pool[-need:]] + parents
            reqs = []
            for i in range(self._requests_per_round(need, 1)):
                op = ops[i % len(ops)]
                tpl = self.templates["evol_breadth" if op == "broaden" else "evol_depth"]
                variables = {"instruction": src[rng.randrange(len(src))]}
                if op != "broaden":
                    variables["operation"] = op
                reqs.append(self.gen.request(tpl, variables, {"stage": "instructions", "round": rnd,
                                                              "evolution": op}))
            per_round[rnd] = reqs
            return reqs

        return await self._rounds(make, self.templates["evol_depth"])

    async def custom(self) -> BootstrapResult:
        """Crosses topics x personas x difficulties x directives from the config."""
        c = self.g.custom
        combos = [(t, p, d, x) for t in c.topics for p in c.personas for d in c.difficulties
                  for x in (c.directives or [""])]
        tpl = self.templates["custom"]
        per = self.g.instructions_per_prompt

        def make(rnd: int, need: int) -> list[Request]:
            rng = _rng("custom", rnd)
            reqs = []
            for i in range(self._requests_per_round(need, per)):
                topic, persona, difficulty, directive = combos[(rnd * 997 + i) % len(combos)]
                demos = rng.sample(self.seeds, min(2, len(self.seeds)))
                reqs.append(self.gen.request(
                    tpl, {"topic": topic, "persona": persona, "difficulty": difficulty,
                          "directive": directive, "demonstrations": demos, "num_instructions": per},
                    {"stage": "instructions", "round": rnd, "topic": topic, "persona": persona,
                     "difficulty": difficulty}))
            return reqs

        return await self._rounds(make, tpl)

    # -- completing the tasks -------------------------------------------------------------------

    async def complete(self, instructions: list[Record]) -> list[Record]:
        """Give every instruction its input and output. Self-instruct style (default): ask whether
        it is a classification task, then write an instance output-first for classification and
        input-first otherwise. Tasks that came with an output (alpaca_batch) are kept as they are;
        `generation.instances: response` instead answers each instruction directly."""
        done = [r for r in instructions if r.output]
        todo = [r for r in instructions if not r.output]
        if not todo:
            return done
        if self.g.instances == "self_instruct":
            todo = await self._classify(todo)
            return done + await self._instances(todo)
        return done + await self._responses(todo)

    async def _classify(self, records: list[Record]) -> list[Record]:
        tpl = self.templates["classify"]
        reqs = [self.gen.request(tpl, {"instruction": r.instruction}, {"stage": "classify"}) for r in records]
        results = await self.gen.run(reqs)
        out = []
        for r, res in zip(records, results):
            flag = False
            if res is not None and res.texts:
                parsed = parse(tpl.meta.parser, res.texts[0], res.finish_reasons[0])
                flag = bool(parsed.items and parsed.items[0]["is_classification"])
            out.append(r.with_meta(task_type="classification" if flag else "generation"))
        return out

    async def _instances(self, records: list[Record]) -> list[Record]:
        tpls = [self.templates["instance_output_first" if r.meta.get("task_type") == "classification"
                               else "instance_input_first"] for r in records]
        reqs = [self.gen.request(tpl, {"instruction": r.instruction, "num_instances": self.g.instances_per_task},
                                 {"stage": "instances"}) for r, tpl in zip(records, tpls)]
        results = await self.gen.run(reqs)
        out = []
        for r, tpl, req, res in zip(records, tpls, reqs, results):
            if res is None:
                self._drop_task(r, "request_failed")
                continue
            parsed = parse(tpl.meta.parser, res.texts[0], res.finish_reasons[0])
            prompt = "\n".join(m["content"] for m in req.messages or [])
            # Small models copy the template's worked example instead of writing their own.
            good = [it for it in parsed.items if (it.get("output") or "").strip()
                    and not _copied(it, prompt)]
            if not good:
                reason = ("copied_from_prompt" if parsed.items else
                          parsed.rejections[0].reason if parsed.rejections else "no_instance")
                self._drop_task(r, reason)
                continue
            first = good[0]
            out.append(r.with_(input=(first.get("input") or "").strip(), output=first["output"].strip())
                       .with_meta(finish_reason=res.finish_reasons[0], instance_template=tpl.name))
        return out

    async def _responses(self, records: list[Record]) -> list[Record]:
        tpl = self.templates["response"]
        reqs = [self.gen.request(tpl, {"instruction": r.instruction, "input": r.input}, {"stage": "response"})
                for r in records]
        results = await self.gen.run(reqs)
        out = []
        for r, res in zip(records, results):
            if res is None:
                self._drop_task(r, "request_failed")
                continue
            parsed = parse(tpl.meta.parser, res.texts[0], res.finish_reasons[0])
            if not parsed.items:
                self._drop_task(r, parsed.rejections[0].reason if parsed.rejections else "empty_response")
                continue
            out.append(r.with_(output=parsed.items[0]["output"].strip())
                       .with_meta(finish_reason=res.finish_reasons[0], task_type=r.meta.get("task_type", "generation")))
        return out

    def _drop_task(self, record: Record, reason: str) -> None:
        self.funnel.add_drop(Drop(record, "instances", reason))


def _copied(item: dict[str, str], prompt: str) -> bool:
    """The instance stands in the prompt as it is: its input and output, or (with no input) an
    output long enough not to be a short label or number that may well recur."""
    output, input_ = item.get("output", "").strip(), (item.get("input") or "").strip()
    if input_:
        return input_ in prompt and output in prompt
    return len(output) >= 20 and output in prompt


METHODS: dict[str, Callable[[Bootstrap], Any]] = {
    "self_instruct": Bootstrap.self_instruct,
    "alpaca_batch": Bootstrap.alpaca_batch,
    "evol_instruct": Bootstrap.evol_instruct,
    "custom": Bootstrap.custom,
}


# The variables each template role is given by the methods above; a user's own template for a
# role may use these (and those it gives defaults for), and nothing else.
ROLE_VARIABLES: dict[str, set[str]] = {
    "instructions": {"demonstrations", "num_instructions"},
    "batch": {"demonstrations", "num_tasks"},
    "evol_depth": {"instruction", "operation"},
    "evol_breadth": {"instruction"},
    "custom": {"topic", "persona", "difficulty", "directive", "demonstrations", "num_instructions"},
    "classify": {"instruction"},
    "instance_input_first": {"instruction", "num_instances"},
    "instance_output_first": {"instruction", "num_instances"},
    "response": {"instruction", "input"},
}


def load_templates(config: Config) -> dict[str, PromptTemplate]:
    """Every template role's template, loaded and checked before any request is sent: syntax
    errors name the file and line, and variables a template needs but will not get are listed."""
    out = {}
    for role, ref in config.generation.templates.model_dump().items():
        local = config.resolve(ref)
        tpl = load_template(local if local.is_file() else ref)
        check_variables(tpl, ROLE_VARIABLES[role])
        out[role] = tpl
    return out


__all__ = ["METHODS", "Bootstrap", "BootstrapResult", "Generator", "load_templates"]
