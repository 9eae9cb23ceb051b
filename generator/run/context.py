"""The run object: what one `generate` wires together, built in one place (`open_run`) after every
input was checked, so that nothing starts for a config that cannot run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filters.base import BatchChat, Filter, FilterContext
from filters.decontam import Decontaminate
from filters.embed import TextVectors
from filters.registry import build_chain
from generator.config import Config
from generator.llm.model import load_tokenizer
from generator.llm.server import endpoint_key
from generator.prompting.magpie import PreQuery, pre_queries, special_tokens
from generator.prompting.roles import load_templates
from generator.prompting.seeds import SeedTask, load_seeds
from generator.prompting.templates import PromptTemplate
from generator.publish.writer import DatasetWriter, log
from generator.run.budget import Budget, check_budget
from generator.run.funnel import RunFunnel
from generator.run.preferences import PairMaker
from generator.run.steer import Steering, steering_for
from generator.run.stop import StopSignals
from generator.run.store import RunStore

FUNNEL = "funnel.json"
ROUNDS = "rounds.json"
REJECTED = "rejected.jsonl"
DATASET = "dataset"
STATE = "state"
# Conversation settings, left out of a single-turn run's fingerprint: run directories made before
# they existed resume as they did.
SINGLE_TURN_UNUSED = ("turns", "turn_failure")


def fingerprint(config: Config) -> dict[str, Any]:
    """What decides the requests and which results are kept; a run directory holding another
    fingerprint is refused (unless --fresh or --force). Engine, server, budget and output settings
    may change between runs, and so may the record target (`generation.num_records`): a larger
    one, or a larger budget, continues the run."""
    out = config.model_dump(
        mode="json",
        include={"model": True, "sampling": True, "generation": True, "filters": True},
        exclude={"generation": {"num_records"}},
    )
    if config.generation.turns == 1:  # single-turn: the conversation settings decide nothing
        for key in SINGLE_TURN_UNUSED:
            out["generation"].pop(key)
        out["generation"]["templates"].pop("user_turn")
    if config.generation.method != "magpie":  # Magpie's settings decide nothing for other methods
        out["generation"].pop("magpie")
    if not config.generation.quotas:  # none set: run directories made before quotas existed resume
        out["generation"].pop("quotas")
    return out


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
    budget: Budget | None = None  # the spending limits; None: unlimited
    pre_queries: list[PreQuery] = field(default_factory=list)  # Magpie's, one per system prompt and topic
    template_tokens: tuple[str, ...] = ()  # the served model's special tokens (Magpie)
    preferences: PairMaker | None = None  # the preference stage's checks and judge, when configured
    steer: Steering | None = None  # generation.steer: the clusters of the accepted instructions
    vectors: TextVectors = field(default_factory=TextVectors)  # the seeds' vectors, for steering and the report

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
            ctx = FilterContext(state_dir=self.run_dir / STATE / chain, chat=chat, template_tokens=self.template_tokens)
            for flt in flts:
                flt.setup(ctx)
        if self.preferences is not None:
            self.preferences.setup(FilterContext(state_dir=self.run_dir / STATE / "preferences"), chat)

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
        if self.preferences is not None:
            self.preferences.close()


@dataclass(frozen=True)
class MagpiePrompts:
    """What Magpie derives from the served model's chat template (`magpie_prompts`)."""

    source: str  # where the template was read: the setting and its value
    queries: list[PreQuery]
    template_tokens: tuple[str, ...]


def magpie_prompts(config: Config) -> MagpiePrompts:
    """The pre-queries of the served model's chat template, one per configured system prompt and
    topic, read from local files (no server is needed)."""
    m = config.generation.magpie
    key, name = ("generation.magpie.tokenizer", m.tokenizer) if m.tokenizer else ("model.name", config.model.name)
    if m.tokenizer:
        local = config.resolve(m.tokenizer)
        name = str(local) if local.exists() else m.tokenizer
    tokenizer = load_tokenizer(name, None if m.tokenizer else config.model.revision, key=key)
    where = f"{key} {name!r}"
    queries = pre_queries(tokenizer, m.system_prompts, m.topics, m.topic_hint, where=where)
    return MagpiePrompts(where, queries, special_tokens(tokenizer))


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
    magpie = magpie_prompts(config) if g.method == "magpie" else None
    preferences = PairMaker.for_config(config)  # its judge template is read now
    run_dir = Path(config.run_dir)
    if config.server.endpoints:
        endpoint_key(config)  # a missing key is found now, not at the first request
    if config.dataset.push is not None:
        from generator.publish.hub import preflight

        preflight(config.dataset.push.repo)  # a missing or rejected token stops the run before any work
    gpus = check_budget(config)  # a limit that cannot work is refused before any work too
    store = RunStore(
        run_dir,
        fingerprint(config),
        fresh=fresh,
        force=force,
        flush_every=config.engine.flush_every,
        flush_interval_s=config.engine.flush_interval_s,
    )
    (run_dir / REJECTED).unlink(missing_ok=True)  # rebuilt from scratch: the chains replay every stored result
    vectors = TextVectors()
    return Run(
        config=config,
        seeds=seeds,
        templates=templates,
        instruction_filters=instruction_filters,
        record_filters=record_filters,
        store=store,
        writer=DatasetWriter(config, run_dir / DATASET),
        stop=StopSignals(run_dir),
        budget=Budget(config.budget, gpus, run_dir, store.costs, fresh=fresh),
        pre_queries=magpie.queries if magpie else [],
        template_tokens=magpie.template_tokens if magpie else (),
        preferences=preferences,
        steer=steering_for(g.steer, instruction_filters, g.method, vectors),
        vectors=vectors,
    )
