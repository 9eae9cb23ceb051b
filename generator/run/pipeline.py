"""`generate`: the whole flow for one config, from seeds to a Hugging Face dataset on disk.

open_run (every input checked) -> server -> engine -> grow_pool (the method's rounds: ask, send,
parse, instruction filters) -> complete (instances or responses) -> record filters -> dataset and
card. Everything the engine returns is appended to the run directory as it arrives, so a rerun of
the same config resumes.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filters.base import Chain, Funnel
from generator.config import Config
from generator.core.records import Record
from generator.llm.endpoints import Endpoint
from generator.llm.engine import Engine
from generator.llm.server import ServerInfo, server_for
from generator.run.complete import complete
from generator.run.context import FUNNEL, ROUNDS, Run, fingerprint, open_run
from generator.run.progress import Progress
from generator.run.rounds import PoolResult, grow_pool
from generator.run.sender import Sender
from generator.run.stop import interrupted
from generator.run.store import storage_error

__all__ = ["RunResult", "fingerprint", "generate"]


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
            ]
        )


@dataclass
class _Generated:
    pool: PoolResult
    records: list[Record]
    engine: dict[str, Any]
    model: str


def generate(config: Config, *, fresh: bool = False, force: bool = False, progress: bool = True) -> RunResult:
    """Run `config` end to end; resume what its run directory holds. A write to the run directory
    that fails (disk full, read-only) raises `StorageError`: rerun to resume."""
    started = time.monotonic()
    run = open_run(config, fresh=fresh, force=force)  # everything wrong with the inputs is found here
    try:
        with run.stop:
            with run.store, server_for(run.config, run.run_dir / "logs") as server:
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


async def _generate(run: Run, server: ServerInfo, progress: bool) -> _Generated:
    loop = asyncio.get_running_loop()
    bar = Progress(progress)
    bar.start()
    async with Engine(
        [Endpoint(url, server.api_key) for url in server.base_urls], server.model, run.config.engine
    ) as engine:
        run.stop.defer()
        run.stop.engine(loop, engine.stop)  # Ctrl-C and SIGTERM stop the engine gracefully
        try:
            sender = Sender(run.config.sampling, engine, run.store, server.model, bar)
            run.setup_filters(sender.batch_chat(loop))
            pool = await grow_pool(run, sender)
            records = await _complete_and_filter(run, sender, pool.records, bar, engine)
        finally:
            bar.stop()
            run.stop.engine(loop, None)
        run.stop.check()
        run.store.write_stats(engine.stats.to_dict())
        return _Generated(pool, records, engine.stats.to_dict(), server.model)


async def _complete_and_filter(
    run: Run, sender: Sender, instructions: list[Record], bar: Progress, engine: Engine
) -> list[Record]:
    """Complete the tasks and pass them through the record filters. Tasks are completed in chunks
    so that long runs can push checkpoints as they go."""
    chain = Chain(run.record_filters, run.funnel.records, run.rejected_path)
    push = run.config.dataset.push
    chunk = (push.checkpoint_every if push and push.checkpoint_every else 0) or len(instructions) or 1
    records: list[Record] = []
    for start in range(0, len(instructions), chunk):
        completed = await complete(run, sender, instructions[start : start + chunk])
        final = await asyncio.to_thread(chain.run, completed)
        records += [r.with_meta(model=sender.model) for r in final.kept]
        bar.add_kept(len(final.kept))
        if start + chunk < len(instructions) and push is not None:
            await asyncio.to_thread(
                run.writer.checkpoint, records, run.funnel.total(len(records)), engine.stats.to_dict(), sender.model
            )
    return records


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
    dataset_dir = run.writer.write(out.records, funnel, out.engine, out.model)
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
        {"splits": run.writer.split_counts(), "engine": out.engine},
        time.monotonic() - started,
    )
