"""`generate`: the whole flow for one config, from seeds to a Hugging Face dataset on disk.

open_run (every input checked) -> grow_pool (the method's rounds: ask, send, parse, instruction
filters) -> complete (instances or responses) -> record filters -> dataset and card. The server
and the engine open when the first request must be sent (a finished run starts no server); a
managed server that dies ends the run within `WATCH_S` seconds. Everything the engine returns is
appended to the run directory as it arrives, so a rerun of the same config resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filters.base import Chain, Funnel
from generator.config import Config
from generator.llm.endpoints import Endpoint
from generator.llm.engine import Engine
from generator.llm.server import ServerInfo, served_name, server_for
from generator.publish.kept import KeptRecords
from generator.report import hardware_of, measure_records
from generator.run.complete import complete
from generator.run.context import FUNNEL, ROUNDS, Run, fingerprint, open_run
from generator.run.progress import Progress
from generator.run.rounds import PoolResult, grow_pool
from generator.run.sender import Sender
from generator.run.stop import interrupted
from generator.run.store import storage_error

__all__ = ["RunResult", "fingerprint", "generate"]

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

    def summary(self) -> str:
        splits = ", ".join(f"{k}: {v}" for k, v in self.stats.get("splits", {}).items())
        return "\n".join(
            [
                f"wrote {self.records} records to {self.dataset_dir}" + (f" ({splits})" if splits else ""),
                f"  funnel: {self.funnel.candidates} candidates -> {self.funnel.kept} kept "
                f"({self.run_dir / FUNNEL}); bootstrap stopped: {self.bootstrap.stop_reason}",
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
    bar = Progress(progress)
    bar.start()
    run.stop.defer()  # Ctrl-C and SIGTERM stop the engine gracefully
    model = served_name(run.config)
    async with contextlib.AsyncExitStack() as engine:
        try:
            sender = Sender(run.config.sampling, _Connect(run, server, engine), run.store, model, bar)
            run.setup_filters(sender.batch_chat(asyncio.get_running_loop()))
            pool = await grow_pool(run, sender)
            records = await _complete_and_filter(run, sender, pool, bar)
        finally:
            bar.stop()
    run.stop.check()
    run.store.write_stats(sender.engine_stats())
    return _Generated(pool, records, sender.engine_stats(), model)


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


async def _complete_and_filter(run: Run, sender: Sender, pool: PoolResult, bar: Progress) -> KeptRecords:
    """Complete the tasks and pass them through the record filters, `CHUNK` tasks at a time (or
    `checkpoint_every`, to push checkpoints as the run goes): a chunk's requests, results and
    records are released before the next starts, and the kept records go to the run's spill file.

    Tasks that came with their output go first, as `complete` orders them for a whole list, so the
    records (and what the stateful filters see first) are in the same order whatever the chunk.
    The pool's records are consumed (`pool.records` is left empty): each task is released once
    its chunk is done, so neither the pool nor the completed records outlive the stage."""
    chain = Chain(run.record_filters, run.funnel.records, run.rejected_path)
    push = run.config.dataset.push
    every = push.checkpoint_every if push and push.checkpoint_every else 0
    chunk = min(every, CHUNK) if every else CHUNK
    # Reversed, so that each chunk is cut off the end of the list.
    tasks = [r for r in pool.records if not r.output][::-1] + [r for r in pool.records if r.output][::-1]
    pool.records = []
    total = len(tasks)
    kept = KeptRecords(run.run_dir / KEPT)
    checkpointed = 0
    for start in range(0, total, chunk):
        batch = tasks[-chunk:][::-1]
        del tasks[-chunk:]
        completed = await complete(run, sender, batch)
        final = await asyncio.to_thread(chain.run, completed)
        kept.extend(r.with_meta(model=sender.model) for r in final.kept)
        bar.add_kept(len(final.kept))
        del batch, completed, final
        end = start + chunk
        if push is not None and every and end < total and end // every > checkpointed:
            checkpointed = end // every
            await asyncio.to_thread(
                run.writer.checkpoint, kept, run.funnel.total(len(kept)), sender.engine_stats(), sender.model
            )
    return kept


def _finish(run: Run, out: _Generated, started: float) -> RunResult:
    funnel = run.funnel.total(len(out.records))
    funnel.write(run.run_dir / FUNNEL)
    (run.run_dir / ROUNDS).write_text(
        json.dumps(
            {
                "stop_reason": out.pool.stop_reason,
                "rounds": [{**r.__dict__, "acceptance": round(r.acceptance, 4)} for r in out.pool.rounds],
            },
            indent=2,
        )
    )
    measured = measure_records(out.records, run.seeds, run.config.report)  # for the card and the report
    quality = measured.card() if measured else None
    dataset_dir = run.writer.write(out.records, funnel, out.engine, out.model, run.contamination(), quality)
    report = measured.write(run.run_dir, hardware_of(run.config)).path if measured is not None else None
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
    )
