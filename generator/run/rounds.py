"""The rounds loop every method shares: ask -> send -> parse -> filter, round after round, until the
pool of instructions is full, the rounds run out, or acceptance stalls.

A method only says what to ask for in a round (`generator.run.methods`). Every request id is
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
from generator.prompting.parse import parse
from generator.run.context import Run
from generator.run.methods import METHODS, Ask
from generator.run.sender import Sender

# Request meta that an instruction's record carries on.
_LINEAGE = ("round", "seed_ids", "template", "topic", "persona")


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
    records: list[Record]
    rounds: list[RoundStats] = field(default_factory=list)
    stop_reason: str = ""


async def grow_pool(run: Run, sender: Sender) -> PoolResult:
    """Round after round of the configured method until the pool is full, the rounds run out, or
    acceptance stays below `min_acceptance` for `stall_rounds` rounds."""
    g = run.config.generation
    method = METHODS[g.method]
    pool: list[Record] = []
    chain = Chain(run.instruction_filters, run.funnel.instructions, run.rejected_path)
    seed_texts = {dedup_key(s.instruction) for s in run.seeds}
    stats: list[RoundStats] = []
    stalled = 0
    for rnd in range(g.max_rounds):
        need = g.num_instructions - len(pool)
        if need <= 0:
            return PoolResult(pool, stats, "target reached")
        asks = method(run, pool, rnd, need)
        requests = [sender.request(a.template, a.variables, a.meta) for a in asks]
        results = await sender.send(requests)
        candidates = _instructions(run, asks, requests, results, seed_texts)
        # In a worker thread: a filter that asks the LLM (a judge) sends through this event loop.
        kept = (await asyncio.to_thread(chain.run, candidates)).kept
        room = g.num_instructions - len(pool)
        for surplus in kept[room:]:
            run.funnel.over_target(surplus)
        pool.extend(kept[:room])
        st = RoundStats(rnd, len(requests), len(candidates), len(kept[:room]))
        stats.append(st)
        run.log(
            f"round {rnd}: {len(requests)} requests, {st.candidates} candidates, {st.accepted} accepted "
            f"({st.acceptance:.0%}); pool {len(pool)}/{g.num_instructions}"
        )
        stalled = stalled + 1 if st.acceptance < g.min_acceptance else 0
        if stalled >= g.stall_rounds:
            return PoolResult(pool, stats, f"acceptance below {g.min_acceptance:.0%} for {stalled} rounds")
    reason = "target reached" if len(pool) >= g.num_instructions else f"max_rounds ({g.max_rounds}) reached"
    return PoolResult(pool, stats, reason)


def _instructions(
    run: Run, asks: list[Ask], requests: list[Request], results: list[Result | None], seed_texts: set[str]
) -> list[Record]:
    """The candidate instructions in a round's answers, in request order; what cannot be parsed
    and copies of seed tasks are dropped with their reason."""
    out: list[Record] = []
    for ask, req, res in zip(asks, requests, results):
        if res is None:
            continue
        for text, finish in zip(res.texts, res.finish_reasons):
            parsed = parse(ask.template.meta.parser, text, finish)
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
                        input=item.input,
                        output=item.output,
                        meta={**{k: v for k, v in req.meta.items() if k in _LINEAGE}, "finish_reason": finish},
                    )
                )
    return out
