"""The rounds loop every method shares: ask -> send -> parse -> filter, round after round, until the
pool of instructions is full, the rounds run out, acceptance stalls, or the budget is spent. A run
with a record target calls it again for each refill, on the same pool.

A method only says what to ask for in a round (`generator.methods`). Every request id is
deterministic and every round's results are processed in request order, not arrival order, so a
resumed run rebuilds the same pool from the stored results and sends exactly the missing requests.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from filters.base import Chain
from generator.core.records import Record
from generator.core.text import dedup_key
from generator.llm.requests import Request, Result
from generator.methods.base import Ask
from generator.prompting.parse import parse
from generator.run.context import Run
from generator.run.pool import Pool
from generator.run.sender import Sender

# Request meta that an instruction's record carries on (Sender.lineage), with the method's own
# (`Method.lineage`).
_LINEAGE = ("round", "seed_ids", "template", "template_hash", "model", "model_revision", "sampling_hash")


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
class PoolResult:
    records: Pool
    rounds: list[RoundStats] = field(default_factory=list)
    stop_reason: str = ""
    # Why the last call stopped: `full` (it holds what was asked), `max_rounds`, `stall`, `budget`.
    stop_kind: str = ""
    stalled: int = 0  # stalled rounds in a row, carried into the next refill

    def stop(self, kind: str, reason: str) -> PoolResult:
        self.stop_kind, self.stop_reason = kind, reason
        return self


async def grow_pool(run: Run, sender: Sender, pool: PoolResult | None = None, size: int | None = None) -> PoolResult:
    """Round after round of the configured method until the pool holds `size` instructions
    (`num_instructions` by default), the rounds run out, acceptance stays below `min_acceptance`
    for `stall_rounds` rounds, or the budget is spent. Given a `pool`, it grows that one (a refill
    for a record target): its rounds and stalled rounds count on."""
    g = run.config.generation
    size = g.num_instructions if size is None else size
    pool = PoolResult(Pool(run.run_dir)) if pool is None else pool
    chain = Chain(run.instruction_filters, run.funnel.instructions, run.rejected_path)
    seed_texts = {dedup_key(s.instruction) for s in run.seeds}
    await run.method.prepare(lambda asks: _answers(run, sender, asks), run.log)  # most methods: nothing
    while (rnd := len(pool.rounds)) < g.max_rounds:
        need = size - len(pool.records)
        if need <= 0:
            return pool.stop("full", "target reached")
        asks = run.method.asks(pool.records, rnd, need)
        requests = [_request(sender, a, run.method.name) for a in asks]
        if sender.cut_off(requests):  # a round the run has not stored in full, with no budget left
            return pool.stop("budget", "budget reached")
        results = await sender.send(requests)
        candidates = _instructions(run, asks, requests, results, seed_texts)
        # In a worker thread: a filter that asks the LLM (a judge) sends through this event loop.
        kept = (await asyncio.to_thread(chain.run, candidates)).kept
        room = size - len(pool.records)
        for surplus in kept[room:]:
            run.funnel.over_target(surplus)
        pool.records.extend(kept[:room])
        st = RoundStats(rnd, len(requests), len(candidates), len(kept[:room]))
        pool.rounds.append(st)
        run.log(
            f"round {rnd}: {len(requests)} requests, {st.candidates} candidates, {st.accepted} accepted "
            f"({st.acceptance:.0%}); pool {len(pool.records)}/{size}"
        )
        if sender.unsent.intersection(r.id for r in requests):  # the budget cut this round short
            return pool.stop("budget", "budget reached")
        pool.stalled = pool.stalled + 1 if st.acceptance < g.min_acceptance else 0
        if pool.stalled >= g.stall_rounds:
            return pool.stop("stall", f"acceptance below {g.min_acceptance:.0%} for {pool.stalled} rounds")
    if len(pool.records) >= size:
        return pool.stop("full", "target reached")
    return pool.stop("max_rounds", f"max_rounds ({g.max_rounds}) reached")


def _request(sender: Sender, ask: Ask, method: str) -> Request:
    """A chat request from the ask's template, or a completions request with its raw prompt (named
    after the method, in the id and the record's lineage)."""
    if ask.template is None:
        assert ask.prompt is not None
        return sender.completion(method, ask.prompt, ask.variables, ask.meta, ask.params)
    return sender.request(ask.template, ask.variables, ask.meta)


async def _answers(run: Run, sender: Sender, asks: list[Ask]) -> list[list[str]] | None:
    """For a method's own requests (`Method.prepare`): each ask's parsed candidate texts, or None
    when the budget kept any of them from being sent."""
    requests = [_request(sender, a, run.method.name) for a in asks]
    if sender.cut_off(requests):
        return None
    results = await sender.send(requests)
    if sender.unsent.intersection(r.id for r in requests):
        return None
    out = []
    for ask, res in zip(asks, results):
        texts = zip(res.texts, res.finish_reasons) if res is not None else ()
        out.append(
            [item.instruction.strip() for text, finish in texts for item in parse(ask.parser, text, finish).items]
        )
    return out


def _instructions(
    run: Run, asks: list[Ask], requests: list[Request], results: list[Result | None], seed_texts: set[str]
) -> list[Record]:
    """The candidate instructions in a round's answers, in request order; what cannot be parsed
    and copies of seed tasks are dropped with their reason."""
    out: list[Record] = []
    lineage = _LINEAGE + run.method.lineage
    for ask, req, res in zip(asks, requests, results):
        if res is None:
            continue
        for text, finish in zip(res.texts, res.finish_reasons):
            parsed = parse(ask.parser, text, finish)
            for rej in parsed.rejections:
                run.funnel.reject(Record(instruction=rej.text[:500]), "parse", rej.reason)
            for item in parsed.items:
                if dedup_key(item.instruction) in seed_texts:
                    # Small models copy their demonstrations; a seed is not new data.
                    run.funnel.reject(Record(instruction=item.instruction), "bootstrap", "copies_seed")
                    continue
                out.append(
                    Record(
                        instruction=item.instruction.strip(),
                        input=ask.record.get("input", item.input),
                        output=ask.record.get("output", item.output),
                        meta={**{k: v for k, v in req.meta.items() if k in lineage}, "finish_reason": finish},
                    )
                )
    return out
