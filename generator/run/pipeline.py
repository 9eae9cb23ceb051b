"""`generate`: the whole flow for one config, from seeds to a Hugging Face dataset on disk.

config -> seeds + templates (checked) -> server -> bootstrap rounds (engine, parse, instruction
filters) -> instances -> record filters -> dataset + card. Everything the engine returns is
appended to the run directory as it arrives, so a rerun of the same config resumes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filters.base import Chain, FilterContext, Funnel
from filters.registry import build_chain
from generator import __version__
from generator.config import Config
from generator.core.records import Record
from generator.llm.endpoints import Endpoint
from generator.llm.engine import Engine
from generator.llm.requests import Request, request_id
from generator.llm.server import ServerInfo, server_for
from generator.prompting.seeds import load_seeds
from generator.run.methods import METHODS, Bootstrap, BootstrapResult, Generator, load_templates
from generator.run.progress import Progress
from generator.run.stop import StopSignals, interrupted

FUNNEL = "funnel.json"
ROUNDS = "rounds.json"
REJECTED = "rejected.jsonl"
DATASET = "dataset"


@dataclass
class RunResult:
    run_dir: Path
    dataset_dir: Path
    records: int
    funnel: Funnel
    bootstrap: BootstrapResult
    stats: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        splits = ", ".join(f"{k}: {v}" for k, v in self.stats.get("splits", {}).items())
        return "\n".join([
            f"wrote {self.records} records to {self.dataset_dir}" + (f" ({splits})" if splits else ""),
            f"  funnel: {self.funnel.candidates} candidates -> {self.funnel.kept} kept "
            f"({self.run_dir / FUNNEL}); bootstrap stopped: {self.bootstrap.stop_reason}",
            "  load it with:",
            "    import datasets",
            f"    ds = datasets.load_dataset({str(self.dataset_dir)!r})",
        ])


def fingerprint(config: Config) -> dict[str, Any]:
    """What decides the requests and which results are kept; a run directory holding another
    fingerprint is refused (unless --fresh or --force). Engine, server and output settings may
    change between runs."""
    return config.model_dump(mode="json", include={"model", "sampling", "generation", "filters"})


def _log(message: str) -> None:
    print(f"instructforge: {message}", file=sys.stderr, flush=True)


def generate(config: Config, *, fresh: bool = False, force: bool = False, progress: bool = True) -> RunResult:
    """Run `config` end to end; resume what its run directory holds."""
    from generator.run.store import RunStore

    started = time.monotonic()
    # Everything that can be wrong with the inputs is found before a server starts.
    seeds = load_seeds(config.generation.seeds, column_map=config.generation.seed_columns,
                       base_dir=config.base_dir)
    if (shard := config.generation.shard) is not None:  # its own seeds and sampling seed
        seeds = shard.select(seeds)
        config = config.model_copy(update={"sampling": config.sampling.model_copy(
            update={"seed": shard.sampling_seed(config.sampling.seed)})})
    load_templates(config)
    instruction_filters = build_chain(config.filters.instructions)
    record_filters = build_chain(config.filters.records)
    run_dir = Path(config.run_dir)
    push = config.dataset.push
    if push is not None:
        from generator.publish.hub import preflight

        preflight(push.repo)  # a missing or rejected token stops the run before any work
    store = RunStore(run_dir, fingerprint(config), fresh=fresh, force=force,
                     flush_every=config.engine.flush_every, flush_interval_s=config.engine.flush_interval_s)
    writer = DatasetWriter(config, run_dir / DATASET)
    rejected = run_dir / REJECTED
    rejected.unlink(missing_ok=True)  # rebuilt from scratch: the chains replay every stored result
    try:
        with StopSignals(run_dir) as stop:
            with store, server_for(config, run_dir / "logs") as server:
                try:
                    records, funnel, boot, engine_stats = asyncio.run(_run(
                        config, server, store, seeds, instruction_filters, record_filters,
                        rejected if config.filters.write_rejected else None, progress, writer, stop))
                finally:
                    for flt in (*instruction_filters, *record_filters):
                        flt.close()
            stop.check()
            return _finish(config, run_dir, writer, records, funnel, boot, engine_stats, server.model, started,
                           stop)
    except KeyboardInterrupt:
        # The store was flushed and closed and the server stopped on the way out.
        raise interrupted(run_dir) from None


def _finish(config: Config, run_dir: Path, writer: DatasetWriter, records: list[Record], funnel: Funnel,
            boot: BootstrapResult, engine_stats: dict[str, Any], model: str, started: float,
            stop: StopSignals) -> RunResult:
    funnel.write(run_dir / FUNNEL)
    (run_dir / ROUNDS).write_text(json.dumps(
        {"stop_reason": boot.stop_reason,
         "rounds": [{**r.__dict__, "acceptance": round(r.acceptance, 4)} for r in boot.rounds]}, indent=2))
    dataset_dir = writer.write(records, funnel, engine_stats, model)
    stop.check()
    if config.dataset.push is not None:
        writer.push()
    stop.check()  # a signal during the write or the push is honoured too: exit 130, as asked
    return RunResult(run_dir, dataset_dir, len(records), funnel, boot,
                     {"splits": _split_counts(dataset_dir), "engine": engine_stats},
                     time.monotonic() - started)


class DatasetWriter:
    """Writes the run's dataset folder (and pushes it when the config says so)."""

    def __init__(self, config: Config, out_dir: Path):
        self.config = config
        self.out_dir = out_dir

    def info(self, records: list[Record], funnel: dict[str, Any], engine: dict[str, Any], model: str) -> Any:
        from generator.publish.dataset import DatasetInfo

        c, d = self.config, self.config.dataset
        return DatasetInfo(
            name=d.name, pretty_name=d.pretty_name, license=d.license, languages=list(d.languages),
            model=model if c.model.name != "bundled" else "HuggingFaceTB/SmolLM2-135M-Instruct",
            model_revision=c.model.revision, method=c.generation.method,
            templates=sorted({r.meta.get("template", "") for r in records} - {""}),
            sampling=c.sampling.model_dump(), seed_source=c.generation.seeds, funnel=funnel, engine=engine,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), version=__version__,
            repo_id=d.push.repo if d.push else None,
        )

    def write(self, records: list[Record], funnel: Funnel, engine: dict[str, Any], model: str) -> Path:
        from generator.publish.dataset import write_dataset  # heavy import (datasets, pyarrow)

        d = self.config.dataset
        template = self.config.resolve(d.card_template) if d.card_template else None
        return write_dataset(records, self.out_dir, self.info(records, funnel.to_dict(), engine, model),
                             test_ratio=d.test_ratio, split_seed=d.split_seed, card_template=template,
                             save_to_disk=d.save_to_disk)

    def checkpoint(self, records: list[Record], funnel: Funnel, engine: dict[str, Any], model: str) -> None:
        """The records so far, written and pushed while the run goes on; tasks still waiting for
        their output are not in the funnel yet."""
        self.write(records, funnel, engine, model)
        self.push(f"Checkpoint: {len(records)} records so far")
        _log(f"checkpoint pushed: {len(records)} records")

    def push(self, message: str | None = None) -> None:
        from generator.publish.hub import push_dataset

        p = self.config.dataset.push
        assert p is not None
        result = push_dataset(self.out_dir, p.repo, private=p.private, revision=p.revision, message=message)
        _log(result.summary())


def _split_counts(dataset_dir: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in sorted((dataset_dir / "data").glob("*.parquet")):
        import pyarrow.parquet as pq

        split = f.name.split("-")[0]
        counts[split] = counts.get(split, 0) + pq.ParquetFile(f).metadata.num_rows
    return counts


async def _run(config: Config, server: ServerInfo, store: Any, seeds: list[Any],
               instruction_filters: list[Any], record_filters: list[Any], rejected: Path | None,
               progress: bool, writer: DatasetWriter, stop: StopSignals,
               ) -> tuple[list[Record], Funnel, BootstrapResult, dict[str, Any]]:
    endpoints = [Endpoint(url, server.api_key) for url in server.base_urls]
    loop = asyncio.get_running_loop()
    bar = Progress(progress)
    bar.start()
    async with Engine(endpoints, server.model, config.engine) as engine:
        stop.defer()
        stop.engine(loop, engine.stop)  # Ctrl-C and SIGTERM stop the engine gracefully
        try:
            gen = Generator(config, engine, store, server.model, _log, bar)
            chat = _batch_chat(gen, loop)
            state = Path(config.run_dir) / "state"
            # Each chain keeps its state apart: the same filter may stand in both.
            for chain_name, flts in (("instructions", instruction_filters), ("records", record_filters)):
                ctx = FilterContext(state_dir=state / chain_name, chat=chat)
                for flt in flts:
                    flt.setup(ctx)
            ifunnel, rfunnel, funnel = Funnel(), Funnel(), Funnel()
            boot = Bootstrap(config, gen, seeds, Chain(instruction_filters, ifunnel, rejected), funnel, _log)
            result = await METHODS[config.generation.method](boot)
            record_chain = Chain(record_filters, rfunnel, rejected)
            records: list[Record] = []
            # Tasks are completed in chunks so that long runs can push checkpoints as they go.
            push = config.dataset.push
            chunk = (push.checkpoint_every if push and push.checkpoint_every else 0) or len(result.records) or 1
            for start in range(0, len(result.records), chunk):
                completed = await boot.complete(result.records[start:start + chunk])
                final = await asyncio.to_thread(record_chain.run, completed)
                records += [r.with_meta(model=server.model) for r in final.kept]
                bar.add_kept(len(final.kept))
                if start + chunk < len(result.records) and push is not None:
                    snapshot = _combined(funnel, ifunnel, rfunnel, len(records))
                    await asyncio.to_thread(writer.checkpoint, records, snapshot, engine.stats.to_dict(),
                                            server.model)
        finally:
            bar.stop()
            stop.engine(loop, None)
        stop.check()
        store.write_stats(engine.stats.to_dict())
        return records, _combined(funnel, ifunnel, rfunnel, len(records)), result, engine.stats.to_dict()


def _combined(bootstrap: Funnel, instructions: Funnel, records: Funnel, kept: int) -> Funnel:
    """One funnel for the run: parse rejections and instance failures (counted by the bootstrap),
    instruction filters, record filters; at the end of a run, candidates = kept + every drop."""
    out = Funnel(candidates=bootstrap.candidates + instructions.candidates, kept=kept)
    for part in (bootstrap, instructions, records):
        out.merge_drops(part)
    return out


def _batch_chat(gen: Generator, loop: asyncio.AbstractEventLoop) -> Any:
    """The `BatchChat` filters get: requests through the run's own engine and store (so a resumed
    run does not ask twice), callable from the worker thread the filter chains run in."""

    def chat(conversations: list[list[dict[str, str]]], extra: dict[str, Any]) -> list[str | None]:
        params = {"temperature": 0.0, "max_tokens": 256, **extra}
        requests = [Request(id=request_id("chat", {"messages": m}, gen.model, params), messages=m,
                            params=params, meta={"stage": "filter"}) for m in conversations]
        results = asyncio.run_coroutine_threadsafe(gen.run(requests), loop).result()
        return [r.texts[0] if r is not None and r.texts else None for r in results]

    return chat
