"""`generate`: the whole flow for one config, from seeds to a Hugging Face dataset on disk.

open_run (every input checked) -> grow_pool (the method's rounds: ask, send, parse, instruction
filters) -> complete (instances or responses) -> record filters -> later turns of conversations
(`generation.turns`) -> dataset and card. With a record target (`generation.num_records`) the
middle repeats in refills until the dataset holds the target (`generator.run.target`); a budget
(`generator.run.budget`) may stop the sending first. The server and the engine open when the first
request must be sent (a finished run starts no server); a managed server that dies ends the run
within `WATCH_S` seconds. Everything the engine returns is
appended to the run directory as it arrives, so a rerun of the same config resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filters.base import Chain, Funnel
from generator.config import Config
from generator.core.errors import ConfigError
from generator.core.records import Record
from generator.llm.endpoints import Endpoint
from generator.llm.engine import Engine
from generator.llm.server import ServerInfo, served_name, server_for
from generator.publish.kept import KeptRecords
from generator.report import hardware_of, measure_records
from generator.run.budget import SAVE_EVERY_S, server_gpus
from generator.run.context import FUNNEL, ROUNDS, SOURCES, STATE, Run, fingerprint, open_run
from generator.run.cost import Costs, Estimate, Pricing
from generator.run.cost import estimate as price
from generator.run.pool import Pool
from generator.run.privacy import lock_down, masker, write_audit
from generator.run.probe import probe_for_report
from generator.run.progress import Progress
from generator.run.rounds import PoolResult, grow_pool
from generator.run.sender import Sender, Served
from generator.run.stop import interrupted
from generator.run.store import engine_totals, storage_error
from generator.run.target import REFILL_MARGIN, Stop, Target
from generator.run.turns import Conversations, converse

__all__ = ["RunResult", "estimate", "fingerprint", "generate"]

WATCH_S = 0.5  # how often the run checks that the managed server is alive
# Tasks completed and filtered at a time: what the completion stage holds at once. Larger chunks
# gain nothing measurable (scripts/bench_run.py) and cost about 3 KB a task.
CHUNK = 2_000
KEPT = "kept.jsonl"  # the records kept so far, rebuilt on every run (the chains replay all results)


@dataclass
class RunResult:
    run_dir: Path
    dataset_dir: Path
    records: int
    funnel: Funnel
    bootstrap: PoolResult
    stats: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    stop: Stop | None = None  # why the run ended
    costs: Costs | None = None  # what the run cost per stage, over every session

    def summary(self) -> str:
        splits = ", ".join(f"{k}: {v}" for k, v in self.stats.get("splits", {}).items())
        stop = self.stop.reason if self.stop is not None else self.bootstrap.stop_reason
        return "\n".join(
            [
                f"wrote {self.records} records to {self.dataset_dir}" + (f" ({splits})" if splits else ""),
                f"  funnel: {self.funnel.candidates} candidates -> {self.funnel.kept} kept "
                f"({self.run_dir / FUNNEL}); stopped: {stop}",
                "  load it with:",
                "    import datasets",
                f"    ds = datasets.load_dataset({str(self.dataset_dir)!r})",
                *([f"report: {self.stats['report']}"] if self.stats.get("report") else []),
            ]
        )


@dataclass
class _Generated:
    pool: PoolResult
    records: KeptRecords
    engine: dict[str, Any]
    model: str
    target: Target
    stop: Stop


def estimate(
    config: Config, *, fresh: bool = False, force: bool = False, progress: bool = True
) -> tuple[RunResult, Estimate | None]:
    """What `config`'s record target will cost: its first refill is run as a pilot (stored, so the
    real run goes on from it), then the rows still wanted are priced at the yield and rates the run
    directory shows so far. None when the pilot kept no row."""
    target = config.generation.num_records
    if target is None:
        raise ConfigError("--estimate needs a record target: set generation.num_records or pass --records N")
    pilot = config.model_copy(update={"generation": config.generation.model_copy(update={"num_records": None})})
    result = generate(pilot, fresh=fresh, force=force, progress=progress)
    assert result.costs is not None
    try:
        gpus = server_gpus(config)
    except ConfigError:
        gpus = None
    pricing = Pricing(config.budget, gpus)
    return result, price(result.costs, result.records, target, pricing, {"instructions": REFILL_MARGIN})


def generate(config: Config, *, fresh: bool = False, force: bool = False, progress: bool = True) -> RunResult:
    """Run `config` end to end; resume what its run directory holds. A write to the run directory
    that fails (disk full, read-only) raises `StorageError`: rerun to resume."""
    started = time.monotonic()
    run = open_run(config, fresh=fresh, force=force)  # everything wrong with the inputs is found here
    try:
        with run.stop:
            with run.store, contextlib.ExitStack() as server:  # the server, if one is started
                try:
                    out = asyncio.run(_generate(run, server, progress))
                finally:
                    run.close_filters()
            run.stop.check()
            return _finish(run, out, started)
    except KeyboardInterrupt:
        # The store was flushed and closed and the server stopped on the way out.
        raise interrupted(run.run_dir) from None
    except OSError as err:  # a write to the run directory (funnel, dataset, filter state) failed
        path = _unwritable(err, run.run_dir)
        if path is None:
            raise
        raise storage_error(path, err, run.run_dir) from None


# A full or read-only disk: a failed write() carries no file name, only this.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def _unwritable(err: OSError, run_dir: Path) -> Path | None:
    """The file in `run_dir` that `err` failed to write, `run_dir` itself for a full or read-only
    disk when the error names no file, or None when `err` is about something else."""
    if err.filename is None:
        return run_dir if err.errno in _NO_ROOM else None
    path = Path(os.path.abspath(err.filename))
    return path if path.is_relative_to(os.path.abspath(run_dir)) else None


async def _generate(run: Run, server: contextlib.ExitStack, progress: bool) -> _Generated:
    bar = Progress(progress, target=run.config.generation.num_records)
    bar.start()
    run.stop.defer()  # Ctrl-C and SIGTERM stop the engine gracefully
    model = served_name(run.config)
    async with contextlib.AsyncExitStack() as engine:
        saver = asyncio.create_task(_keep_saving(run))
        try:
            served = Served(model, run.config.sampling, run.config.model.revision)
            sender = Sender(_Connect(run, server, engine), run.store, served, bar, run.budget)
            run.setup_filters(sender.batch_chat(asyncio.get_running_loop()))
            pool, records, target, stop = await _fill(run, sender, bar)
        finally:
            saver.cancel()
            bar.stop()
    run.stop.check()
    run.store.write_stats(sender.engine_stats(), cost=run.store.costs.to_dict(len(records)))
    return _Generated(pool, records, sender.engine_stats(), model, target, stop)


async def _fill(run: Run, sender: Sender, bar: Progress) -> tuple[PoolResult, KeptRecords, Target, Stop]:
    """Refill after refill (`generator.run.target`): grow the pool, complete and filter what is
    new, until the run has a reason to stop (without a record target, after one refill); then
    the pool is released."""
    target = Target.of(run.config.generation, run.balance)
    pool = PoolResult(Pool(run.run_dir))
    stage = _Records(run, sender, bar, KeptRecords(run.run_dir / KEPT))
    while True:
        start = len(pool.records)
        pool = await grow_pool(run, sender, pool, target.pool_size(start))
        added = len(pool.records) - start
        completed = await stage.complete_and_filter(pool.records.tasks(start), added, target)
        target.add(added, completed)
        stop = target.stop(pool, run.budget)
        if stop is not None:
            pool.records.close()  # the pool is not grown again: release it
            run.log(f"stopped: {stop.reason}")
            return pool, stage.kept, target, stop
        run.log(f"refill {len(target.refills)}: {target.kept}/{target.records} records; refilling")


async def _keep_saving(run: Run) -> None:
    """The session's seconds to spent.json every few seconds, so that a killed run loses little."""
    if run.budget is None:
        return
    while True:
        run.budget.save()
        await asyncio.sleep(SAVE_EVERY_S)


class _Connect:
    """Starts the server (or takes the external endpoints) and opens the engine, when the sender
    first has a request to send; `servers` and `engines` close them when the run ends."""

    def __init__(self, run: Run, servers: contextlib.ExitStack, engines: contextlib.AsyncExitStack) -> None:
        self.run = run
        self.servers = servers
        self.engines = engines

    async def __call__(self) -> Engine:
        run = self.run
        with run.stop.unwinding():  # the loop waits for the start; Ctrl-C unwinds it at once
            info = self.servers.enter_context(server_for(run.config, run.run_dir / "logs"))
        engine = await self.engines.enter_async_context(
            Engine([Endpoint(url, info.api_key) for url in info.base_urls], info.model, run.config.engine)
        )
        loop = asyncio.get_running_loop()
        run.stop.engine(loop, engine.stop)
        self.engines.callback(run.stop.engine, loop, None)
        if info.process is not None:
            watch = asyncio.create_task(_watch(info, engine, run.run_dir))
            self.engines.callback(watch.cancel)
        return engine


async def _watch(server: ServerInfo, engine: Engine, run_dir: Path) -> None:
    """Fail the engine within `WATCH_S` of the managed server's death, with its log tail."""
    hint = f". Every finished request is saved in {run_dir}. Run the same command again to resume"
    while (error := server.died(hint)) is None:
        await asyncio.sleep(WATCH_S)
    engine.fail(error)


@dataclass
class _Records:
    """The record stage of a run: completion, record filters and later turns, into `kept`."""

    run: Run
    sender: Sender
    bar: Progress
    kept: KeptRecords

    def __post_init__(self) -> None:
        self.talk = Conversations.of(self.run)

    async def complete_and_filter(self, tasks: Iterator[Record], total: int, target: Target) -> int:
        """Complete `tasks` and pass them through the record filters, `CHUNK` tasks at a time (or
        `checkpoint_every`, to push checkpoints as the run goes), into `kept`; the number of tasks
        completed. A chunk's requests, results and records are released before the next starts.

        Tasks that came with their output go first, as the completion orders them for a whole list,
        so the records (and what the stateful filters see first) are in the same order whatever the
        chunk. `tasks` yields them in that order (`Pool.tasks`); `total` is how many it holds. The
        target admits the records (quotas, then its room: the records past it are cut, in order);
        once it has no room, the tasks not yet completed are left out: both count as over_target."""
        run, sender = self.run, self.sender
        chain = Chain(run.record_filters, run.funnel.records, run.rejected_path)
        push = run.config.dataset.push
        every = push.checkpoint_every if push and push.checkpoint_every else 0
        chunk = min(every, CHUNK) if every else CHUNK
        checkpointed = 0
        for start in range(0, total, chunk):
            if target.room == 0:
                for task in tasks:
                    run.funnel.unneeded(task)
                return start
            batch = list(itertools.islice(tasks, chunk))
            completed = await run.completion.complete(sender, batch, run.funnel)
            final = await asyncio.to_thread(chain.run, completed)
            new = await converse(self.talk, sender, final.kept)  # as they are unless generation.turns > 1
            new = target.admit(new, run.funnel)
            self.kept.extend(r.with_meta(model=sender.model) for r in new)
            self.bar.add_kept(len(new))
            del batch, completed, final, new
            end = start + chunk
            if push is not None and every and end < total and end // every > checkpointed:
                checkpointed = end // every
                await asyncio.to_thread(
                    run.writer.checkpoint,
                    self.kept,
                    run.funnel.total(len(self.kept)),
                    sender.engine_stats(),
                    sender.model,
                )
        return total


def _finish(run: Run, out: _Generated, started: float) -> RunResult:
    funnel = run.funnel.total(len(out.records))
    funnel.checks = run.checks()
    funnel.write(run.run_dir / FUNNEL)
    (run.run_dir / ROUNDS).write_text(
        json.dumps(
            {
                "stop_reason": out.stop.reason,
                "stop": out.stop.kind,
                "stopped_by_budget": out.stop.budget,
                "target": out.target.to_dict(),
                "budget": run.budget.to_dict() if run.budget is not None else None,
                "rounds": [{**r.__dict__, "acceptance": round(r.acceptance, 4)} for r in out.pool.rounds],
            },
            indent=2,
        )
    )
    if run.budget is not None:
        run.budget.save()
    sources = run.method.sources(out.records)  # a documents run's corpus coverage; None for the others
    if sources is not None:
        (run.run_dir / SOURCES).write_text(json.dumps(sources, indent=2, ensure_ascii=False))
    if run.private is not None:  # the audit of the rows kept, for privacy.json, the card and the report
        audited = write_audit(run.run_dir, out.records, run.private)
        run.writer.privacy = audited.to_dict()
        run.writer.mask = masker(run.private)
        verdict = "FAILED: " + "; ".join(audited.crossed) if audited.crossed else "no threshold crossed"
        run.log(f"privacy audit of the kept rows ({run.run_dir / 'privacy.json'}): {verdict}")
    # For the card and the report; kept in the run's state, so that a rerun that keeps the same rows
    # does not measure them again.
    measured = measure_records(
        out.records, run.seeds, run.config.report, run.vectors, cache=run.run_dir / STATE / "report_measures.json"
    )
    if measured is not None:
        measured.mask = run.writer.mask
    quality = measured.card() if measured else None
    engine = engine_totals(run.run_dir)  # every session's, so a resumed run's card shows the whole cost
    dataset_dir = run.writer.write(
        out.records,
        funnel,
        engine,
        out.model,
        run.contamination(),
        stop=_card_stop(run, out),
        quality=quality,
        sources=sources,
    )
    if measured is not None and run.config.report.probes:
        probe_for_report(run.config, run.run_dir, run.config.report.probes, run.log)
    report = measured.write(run.run_dir, hardware_of(run.config)).path if measured is not None else None
    if run.private is not None:
        lock_down(run.run_dir)
    run.stop.check()
    if run.config.dataset.push is not None:
        run.writer.push()
    run.stop.check()  # a signal during the write or the push is honoured too: exit 130, as asked
    return RunResult(
        run.run_dir,
        dataset_dir,
        len(out.records),
        funnel,
        out.pool,
        {"splits": run.writer.split_counts(), "engine": out.engine, "report": report},
        time.monotonic() - started,
        out.stop,
        run.store.costs,
    )


def _card_stop(run: Run, out: _Generated) -> dict[str, Any]:
    """What the card says about the end of the run: why it stopped, the target, the budget."""
    return {
        "reason": out.stop.reason,
        "kind": out.stop.kind,
        "num_records": out.target.records,
        "refills": len(out.target.refills),
        "rounds": len(out.pool.rounds),
        "budget": run.budget.to_dict() if run.budget is not None and run.budget.limited else None,
        "cost": run.store.costs.to_dict(len(out.records)),
    }
