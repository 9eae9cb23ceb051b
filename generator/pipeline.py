"""`generate`: the whole flow for one config, from seeds to a Hugging Face dataset on disk.

config -> seeds + templates (checked) -> server -> bootstrap rounds (engine, parse, instruction
filters) -> instances -> record filters -> dataset + card. Everything the engine returns is
appended to the run directory as it arrives, so a rerun of the same config resumes.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filters.base import Chain, FilterContext, Funnel
from filters.registry import build_chain
from generator import __version__
from generator.bootstrap import METHODS, Bootstrap, BootstrapResult, Generator, StopRequested, load_templates
from generator.client import Endpoint, Engine, Request, request_id
from generator.config import Config
from generator.errors import Interrupted
from generator.records import Record
from generator.seeds import load_seeds
from generator.server import ServerInfo, server_for

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
    from generator.dataset import DatasetInfo, write_dataset  # heavy import (datasets, pyarrow)
    from generator.store import RunStore

    started = time.monotonic()
    # Everything that can be wrong with the inputs is found before a server starts.
    seeds = load_seeds(config.generation.seeds, column_map=config.generation.seed_columns,
                       base_dir=config.base_dir)
    load_templates(config)
    instruction_filters = build_chain(config.filters.instructions)
    record_filters = build_chain(config.filters.records)
    run_dir = Path(config.run_dir)
    store = RunStore(run_dir, fingerprint(config), fresh=fresh, force=force)
    rejected = run_dir / REJECTED
    rejected.unlink(missing_ok=True)  # rebuilt from scratch: the chains replay every stored result
    with store, server_for(config, run_dir / "logs") as server:
        try:
            records, funnel, boot, engine_stats = asyncio.run(_run(
                config, server, store, seeds, instruction_filters, record_filters,
                rejected if config.filters.write_rejected else None, progress))
        except StopRequested:
            store.flush()
            raise Interrupted(
                f"stopped; every finished request is saved in {run_dir}. Run the same command again "
                "to resume where it stopped.") from None
        finally:
            for flt in (*instruction_filters, *record_filters):
                flt.close()
    funnel.write(run_dir / FUNNEL)
    (run_dir / ROUNDS).write_text(json.dumps(
        {"stop_reason": boot.stop_reason,
         "rounds": [{**r.__dict__, "acceptance": round(r.acceptance, 4)} for r in boot.rounds]}, indent=2))
    info = DatasetInfo(
        name=run_dir.resolve().name,
        version=__version__,
        model=server.model if config.model.name != "bundled" else "HuggingFaceTB/SmolLM2-135M-Instruct",
        model_revision=config.model.revision,
        method=config.generation.method,
        templates=sorted({r.meta.get("template", "") for r in records} - {""}),
        sampling=config.sampling.model_dump(),
        seed_source=config.generation.seeds,
        funnel=funnel.to_dict(),
        engine=engine_stats,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    dataset_dir = write_dataset(records, run_dir / DATASET, info, test_ratio=config.dataset.test_ratio,
                                split_seed=config.dataset.split_seed)
    return RunResult(run_dir, dataset_dir, len(records), funnel, boot,
                     {"splits": _split_counts(dataset_dir), "engine": engine_stats},
                     time.monotonic() - started)


def _split_counts(dataset_dir: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in sorted((dataset_dir / "data").glob("*.parquet")):
        import pyarrow.parquet as pq

        split = f.name.split("-")[0]
        counts[split] = counts.get(split, 0) + pq.ParquetFile(f).metadata.num_rows
    return counts


async def _run(config: Config, server: ServerInfo, store: Any, seeds: list[Any],
               instruction_filters: list[Any], record_filters: list[Any], rejected: Path | None,
               progress: bool) -> tuple[list[Record], Funnel, BootstrapResult, dict[str, Any]]:
    endpoints = [Endpoint(url, server.api_key) for url in server.base_urls]
    loop = asyncio.get_running_loop()
    async with Engine(endpoints, server.model, config.engine, progress=progress) as engine:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, engine.stop)
        try:
            gen = Generator(config, engine, store, server.model, _log)
            ctx = FilterContext(state_dir=Path(config.run_dir) / "state", chat=_batch_chat(gen, loop))
            for flt in (*instruction_filters, *record_filters):
                flt.setup(ctx)
            ifunnel, rfunnel, funnel = Funnel(), Funnel(), Funnel()
            boot = Bootstrap(config, gen, seeds, Chain(instruction_filters, ifunnel, rejected), funnel, _log)
            result = await METHODS[config.generation.method](boot)
            completed = await boot.complete(result.records)
            final = await asyncio.to_thread(Chain(record_filters, rfunnel, rejected).run, completed)
            records = [r.with_meta(model=server.model) for r in final.kept]
            engine.add_kept(len(records))
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        store.write_stats(engine.stats.to_dict())
        # One funnel for the run: parse rejections, instruction filters, instance failures and
        # record filters, so that candidates = kept + every drop.
        funnel.candidates += ifunnel.candidates
        funnel.merge_drops(ifunnel)
        funnel.merge_drops(rfunnel)
        funnel.kept = len(records)
        return records, funnel, result, engine.stats.to_dict()


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
