"""The run object: what one `generate` wires together, built in one place (`open_run`) after every
input was checked, so that nothing starts for a config that cannot run."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filters.base import BatchChat, Filter, FilterContext
from filters.decontam import Decontaminate
from filters.embed import TextVectors, make_embedder
from filters.privacy import PrivacyFilter, PrivateSet
from filters.registry import build_chain
from generator.config import Config
from generator.llm.server import endpoint_key
from generator.methods.base import Inputs, Method, RoundSettings, Steer
from generator.methods.registry import METHODS
from generator.prompting.roles import load_templates
from generator.prompting.seeds import SeedTask, load_seeds
from generator.prompting.templates import PromptTemplate
from generator.publish.writer import DatasetWriter, log
from generator.run.balance import Balance, check_groups
from generator.run.budget import Budget, check_budget
from generator.run.complete import Completion
from generator.run.funnel import RunFunnel
from generator.run.privacy import lock_down, masker, open_private
from generator.run.steer import steering_for
from generator.run.stop import StopSignals
from generator.run.store import FINGERPRINT, Fingerprint, Flush, ForeignRun, RunStore

FUNNEL = "funnel.json"
ROUNDS = "rounds.json"
SOURCES = "sources.json"  # what a method took from its own inputs (a corpus), when it says
REJECTED = "rejected.jsonl"
DATASET = "dataset"
STATE = "state"
# Conversation settings, left out of a single-turn run's fingerprint whatever their values.
SINGLE_TURN_UNUSED = ("turns", "turn_failure")
_PARTS = {"model": True, "sampling": True, "generation": True, "filters": True, "privacy": True}
# Stop conditions: a larger record target or more rounds continue the run they stopped.
_NOT_PARTS = {"generation": {"num_records", "max_rounds"}}


def _settings(config: Config) -> dict[str, Any]:
    """The config's parts that decide the requests and which results are kept, as JSON."""
    out = config.model_dump(mode="json", include=_PARTS, exclude=_NOT_PARTS)
    if config.generation.turns == 1:  # single-turn: the conversation settings decide nothing
        for key in SINGLE_TURN_UNUSED:
            out["generation"].pop(key)
        out["generation"]["templates"].pop("user_turn")
    method = METHODS[config.generation.method]
    for other in METHODS.values():  # another method's section and roles decide nothing
        if other is not method:
            out["generation"].pop(other.section or "", None)
            for role in other.roles:
                out["generation"]["templates"].pop(role, None)
    return out


@functools.cache
def fingerprint_defaults() -> dict[str, Any]:
    """The fingerprint's parts as a config that sets nothing has them (every method's section)."""
    return Config().model_dump(mode="json", include=_PARTS, exclude=_NOT_PARTS)


def fingerprint(config: Config, method: Method | None = None) -> Fingerprint:
    """What decides the requests and which results are kept; a run directory holding another
    fingerprint is refused (unless --fresh or --force). Engine, server, budget and output settings
    may change between runs, and so may the stop conditions (`generation.num_records`,
    `generation.max_rounds`): a larger target, more rounds or a larger budget continue the run.

    Keys left at their defaults are left out, and so are other methods' sections and roles: a
    setting or section added later (with a default) leaves every existing run directory resumable.
    A fingerprint written before (with every key) compares equal to today's where it only adds
    keys at their defaults. So a changed default of a fingerprinted setting is a change of what
    existing run directories mean: do not change one without a way for them to say so."""
    defaults = fingerprint_defaults()
    settings = without_defaults(_settings(config), defaults)
    extra = method.fingerprint() if method is not None else {}
    if extra and method is not None and method.section:  # what the method read (a corpus by content)
        settings.setdefault("generation", {}).setdefault(method.section, {}).update(extra)
    ignored = tuple(f"{part}.{key}" for part, keys in _NOT_PARTS.items() for key in sorted(keys))
    return Fingerprint(settings, defaults, ignored)


def without_defaults(data: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """`data` without the keys whose value is the default's, at any depth; a section left empty goes too."""
    out = {}
    for key, value in data.items():
        default = defaults.get(key, _NO_DEFAULT)
        if isinstance(value, dict) and isinstance(default, dict):
            value = without_defaults(value, default)
            if value:
                out[key] = value
        elif value != default:
            out[key] = value
    return out


def with_defaults(data: dict[str, Any], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """A fingerprint read back with the keys it leaves out at their defaults (for the card of a merge)."""
    defaults = fingerprint_defaults() if defaults is None else defaults
    out = dict(defaults)
    for key, value in data.items():
        base = out.get(key)
        out[key] = with_defaults(value, base) if isinstance(value, dict) and isinstance(base, dict) else value
    return out


_NO_DEFAULT = object()


@dataclass
class Run:
    """What one `generate` wires together. Stages take from it what they use: the rounds loop its
    method and instruction chain, the completion stage its own object."""

    config: Config
    seeds: list[SeedTask]
    templates: dict[str, PromptTemplate]  # by role
    method: Method
    completion: Completion
    instruction_filters: list[Filter]
    record_filters: list[Filter]
    store: RunStore
    writer: DatasetWriter
    stop: StopSignals
    funnel: RunFunnel = field(default_factory=RunFunnel)
    budget: Budget | None = None  # the spending limits; None: unlimited
    vectors: TextVectors = field(default_factory=TextVectors)  # the seeds' vectors, for steering and the report
    balance: Balance | None = None  # generation.balance: the target admits by it, custom draws by it
    private: PrivateSet | None = None  # the private records, when the config marks any (generator/run/privacy.py)

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
        tokens = self.method.template_tokens
        for chain, flts in (("instructions", self.instruction_filters), ("records", self.record_filters)):
            ctx = FilterContext(state_dir=self.run_dir / STATE / chain, chat=chat, template_tokens=tokens)
            for flt in flts:
                flt.setup(ctx)
        self.completion.setup(FilterContext(state_dir=self.run_dir / STATE / "preferences"), chat)

    def contamination(self) -> dict[str, dict[str, int]]:
        """What the decontamination filters caught, per reference, for the card."""
        out: dict[str, dict[str, int]] = {}
        for flt in (*self.instruction_filters, *self.record_filters):
            if isinstance(flt, Decontaminate):
                out.update(flt.counts())
        return out

    def checks(self) -> dict[str, dict[str, Any]]:
        """The verifiable checks' pass rates (filters with `pass_rates()`), for the funnel: the record
        chain's by name, the preference checks' as `<name> (responses)`."""
        pairs = self.completion.pairs
        chains = (("", self.record_filters), (" (responses)", pairs.checks if pairs is not None else []))
        return {
            flt.name + suffix: flt.pass_rates() for suffix, flts in chains for flt in flts if hasattr(flt, "pass_rates")
        }

    def close_filters(self) -> None:
        for flt in (*self.instruction_filters, *self.record_filters):
            flt.close()
        self.completion.close()


def open_method(
    config: Config,
    seeds: list[SeedTask],
    templates: dict[str, PromptTemplate],
    steer: Steer | None = None,
    balance: Balance | None = None,
) -> Method:
    """The configured method, given what it uses: its section, the round settings, the seeds, its
    roles' templates and the steering (Magpie reads the served model's chat template now)."""
    g = config.generation
    cls = METHODS[g.method]
    settings = RoundSettings(
        instructions_per_prompt=g.instructions_per_prompt,
        num_demonstrations=g.num_demonstrations,
        machine_ratio=g.machine_ratio,
        overgenerate=g.overgenerate,
        requests_per_round=g.requests_per_round,
        stop=tuple(config.sampling.stop),
    )
    section = getattr(g, cls.section) if cls.section else None
    own = {role: templates[role] for role in cls.roles}
    embedder = make_embedder("minilm") if cls.embeds else None  # the model loads on the first encode
    run_dir = Path(config.run_dir)
    inputs = Inputs(section, settings, seeds, own, steer, config.model, config.base_dir, embedder, balance, run_dir)
    return cls(inputs)


def _open_store(config: Config, method: Method, *, fresh: bool, force: bool) -> RunStore:
    """The run directory's store; a foreign fingerprint's error says what the method's inputs changed."""
    run_dir = Path(config.run_dir)
    flush = Flush(config.engine.flush_every, config.engine.flush_interval_s)
    try:
        return RunStore(run_dir, fingerprint(config, method), fresh=fresh, force=force, flush=flush)
    except ForeignRun as err:
        try:
            old = json.loads((run_dir / FINGERPRINT).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise err from None
        change = method.describe_change(old)
        if not change:
            raise
        raise ForeignRun(f"{err.problem}; {change}") from None


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
    vectors = TextVectors(Path(config.run_dir) / STATE / "vectors")  # kept for the run's next session
    steer = steering_for(g.steer, instruction_filters, METHODS[g.method], vectors)
    check_groups(g.balance, config.report.representation_target)
    balance = Balance(g.balance, g.num_records) if g.balance and g.num_records else None
    method = open_method(config, seeds, templates, steer, balance)  # Magpie's chat template is read now
    completion = Completion.for_config(config, templates, seeds)  # the preference judge's template is read now
    # Private sources are read (and indexed) now; their filter sees every finished record last.
    private = open_private(config.privacy, seeds, getattr(method, "chunks", ()), config.base_dir)
    if private is not None:
        record_filters.append(PrivacyFilter(private))
    run_dir = Path(config.run_dir)
    if config.server.endpoints:
        endpoint_key(config)  # a missing key is found now, not at the first request
    if config.dataset.push is not None:
        from generator.publish.hub import preflight

        preflight(config.dataset.push.repo)  # a missing or rejected token stops the run before any work
    gpus = check_budget(config)  # a limit that cannot work is refused before any work too
    store = _open_store(config, method, fresh=fresh, force=force)
    (run_dir / REJECTED).unlink(missing_ok=True)  # rebuilt from scratch: the chains replay every stored result
    if private is not None:
        lock_down(run_dir, private)
    funnel = RunFunnel()
    funnel.mask_with(masker(private))
    for source, reason in method.skipped:  # inputs the method could not read (documents.on_bad_file: skip)
        funnel.skip_source(source, reason)
    return Run(
        funnel=funnel,
        config=config,
        seeds=seeds,
        templates=templates,
        method=method,
        completion=completion,
        instruction_filters=instruction_filters,
        record_filters=record_filters,
        store=store,
        writer=DatasetWriter(config, run_dir / DATASET, method.starts_from),
        stop=StopSignals(run_dir),
        budget=Budget(config.budget, gpus, run_dir, store.costs, fresh=fresh),
        vectors=vectors,
        balance=balance,
        private=private,
    )
