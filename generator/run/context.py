"""The run object: what one `generate` wires together, built in one place (`open_run`) after every
input was checked, so that nothing starts for a config that cannot run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filters.base import BatchChat, Filter, FilterContext
from filters.decontam import Decontaminate
from filters.registry import build_chain
from generator.config import Config
from generator.llm.server import endpoint_key
from generator.prompting.roles import load_templates
from generator.prompting.seeds import SeedTask, load_seeds
from generator.prompting.templates import PromptTemplate
from generator.publish.writer import DatasetWriter, log
from generator.run.funnel import RunFunnel
from generator.run.steer import Steering, steering_for
from generator.run.stop import StopSignals
from generator.run.store import RunStore

FUNNEL = "funnel.json"
ROUNDS = "rounds.json"
REJECTED = "rejected.jsonl"
DATASET = "dataset"
STATE = "state"


def fingerprint(config: Config) -> dict[str, Any]:
    """What decides the requests and which results are kept; a run directory holding another
    fingerprint is refused (unless --fresh or --force). Engine, server and output settings may
    change between runs."""
    return config.model_dump(mode="json", include={"model", "sampling", "generation", "filters"})


@dataclass
class Run:
    config: Config
    seeds: list[SeedTask]
    templates: dict[str, PromptTemplate]  # by role
    instruction_filters: list[Filter]
    record_filters: list[Filter]
    store: RunStore
    writer: DatasetWriter
    stop: StopSignals
    funnel: RunFunnel = field(default_factory=RunFunnel)
    steer: Steering | None = None  # generation.steer: the clusters of the accepted instructions

    @property
    def run_dir(self) -> Path:
        return Path(self.config.run_dir)

    @property
    def rejected_path(self) -> Path | None:
        return self.run_dir / REJECTED if self.config.filters.write_rejected else None

    def log(self, message: str) -> None:
        log(message)

    def setup_filters(self, chat: BatchChat) -> None:
        """Each chain keeps its state apart (`state/<chain>`): the same filter may stand in both."""
        for chain, flts in (("instructions", self.instruction_filters), ("records", self.record_filters)):
            ctx = FilterContext(state_dir=self.run_dir / STATE / chain, chat=chat)
            for flt in flts:
                flt.setup(ctx)

    def contamination(self) -> dict[str, dict[str, int]]:
        """What the decontamination filters caught, per reference, for the card."""
        out: dict[str, dict[str, int]] = {}
        for flt in (*self.instruction_filters, *self.record_filters):
            if isinstance(flt, Decontaminate):
                out.update(flt.counts())
        return out

    def close_filters(self) -> None:
        for flt in (*self.instruction_filters, *self.record_filters):
            flt.close()


def open_run(config: Config, *, fresh: bool = False, force: bool = False) -> Run:
    """Check every input (seeds, templates, filters, the Hub token), then open the run directory."""
    g = config.generation
    seeds = load_seeds(g.seeds, column_map=g.seed_columns, base_dir=config.base_dir, format=g.seed_format)
    if (shard := config.generation.shard) is not None:  # its own seeds and sampling seed
        seeds = shard.select(seeds)
        config = config.model_copy(
            update={"sampling": config.sampling.model_copy(update={"seed": shard.sampling_seed(config.sampling.seed)})}
        )
    templates = load_templates(config)
    # Files the filters name (decontamination references) are read now, relative to the config file.
    instruction_filters = build_chain(
        config.filters.instructions, base_dir=config.base_dir, where="filters.instructions"
    )
    record_filters = build_chain(config.filters.records, base_dir=config.base_dir, where="filters.records")
    run_dir = Path(config.run_dir)
    if config.server.endpoints:
        endpoint_key(config)  # a missing key is found now, not at the first request
    if config.dataset.push is not None:
        from generator.publish.hub import preflight

        preflight(config.dataset.push.repo)  # a missing or rejected token stops the run before any work
    store = RunStore(
        run_dir,
        fingerprint(config),
        fresh=fresh,
        force=force,
        flush_every=config.engine.flush_every,
        flush_interval_s=config.engine.flush_interval_s,
    )
    (run_dir / REJECTED).unlink(missing_ok=True)  # rebuilt from scratch: the chains replay every stored result
    return Run(
        config=config,
        seeds=seeds,
        templates=templates,
        instruction_filters=instruction_filters,
        record_filters=record_filters,
        store=store,
        writer=DatasetWriter(config, run_dir / DATASET),
        stop=StopSignals(run_dir),
        steer=steering_for(g.steer, instruction_filters, g.method),
    )
