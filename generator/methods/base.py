"""What a generation method is: a small class that says what to ask for in one round of the shared
rounds loop (`generator.run.rounds.grow_pool`), and declares its config section, its template roles
and how its answers are read. The loop sends, parses, filters and grows the pool.

A method receives what it uses (`Inputs`: its section, the shared round settings, the seed tasks,
its templates, the steering), never the run.
"""

from __future__ import annotations

import math
import random
import zlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from generator.core.records import Record
    from generator.core.section import Section
    from generator.prompting.seeds import SeedTask
    from generator.prompting.templates import PromptTemplate


@dataclass(frozen=True)
class Role:
    """A template role (`generation.templates.<role>`): the built-in template that plays it, what it
    asks for, and the variables it is given (a user's template may read these and nothing else)."""

    default: str
    description: str
    variables: frozenset[str]


@dataclass(frozen=True)
class Ask:
    """One request a method wants sent: a template and its variables (a chat request), or with no
    template a raw `prompt` for the completions API (Magpie) and its request `params`, the
    variables then only telling requests apart; and meta for the record. A raw prompt's answer is
    read by `raw_parser`."""

    template: PromptTemplate | None
    variables: dict[str, Any]
    meta: dict[str, Any]
    prompt: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    raw_parser: str | None = None
    # Fields every record of this ask takes whatever the answer says: a document's passage as its
    # `input`, or (backtranslation) the passage as its `output`.
    record: dict[str, str] = field(default_factory=dict)

    @property
    def parser(self) -> str:
        """How the answer is read: the template's parser, or the raw prompt's."""
        parser = self.template.meta.parser if self.template is not None else self.raw_parser
        if parser is None:  # load_templates refuses templates without one; a raw ask names its own
            raise ValueError("an ask needs a template with a parser or a raw_parser")
        return parser


@dataclass(frozen=True)
class RoundSettings:
    """The settings of `generation` every method may read (the method's own are in its section)."""

    instructions_per_prompt: int = 8
    num_demonstrations: int = 6
    machine_ratio: float = 0.25
    overgenerate: float = 2.0
    requests_per_round: int | None = None
    stop: tuple[str, ...] = ()  # sampling.stop


class Steer(Protocol):
    """What a method asks of diversity steering (`generator.run.steer.Steering`)."""

    def demonstrations(
        self, seeds: Sequence[Any], pool: Sequence[Record], n_seeds: int, n_pool: int, rng: random.Random
    ) -> list[Any]: ...

    def combo_weights(self, pool: Sequence[Record], combos: Sequence[tuple[str, ...]]) -> list[float]: ...


class Balancer(Protocol):
    """What a method asks of `generation.balance` (`generator.run.balance.Balance`)."""

    def weights(self, combos: Sequence[tuple[str, ...]], keys: Sequence[str]) -> list[float] | None: ...


@dataclass
class Inputs:
    """What a method is given when the run opens. `model` and `base_dir` are for a method that reads
    the served model's files (Magpie's chat template)."""

    section: Any  # the method's config section (its `config` model), or None when it has none
    settings: RoundSettings
    seeds: list[SeedTask]
    templates: dict[str, PromptTemplate]  # its own roles' templates
    steer: Steer | None = None
    model: Any = None  # the run's ModelConfig
    base_dir: Path = Path(".")
    embedder: Any = None  # an `Embedder` (filters/embed.py) for a method that `embeds`
    balance: Balancer | None = None  # generation.balance: draws toward groups under their minimum
    run_dir: Path | None = None  # for a method that stores its own state (Private Evolution's votes)


# A batch of asks sent before the first round (`Method.prepare`): per ask, the candidate texts
# parsed from its answers; None when the sending stopped (a budget).
Send = Callable[[list["Ask"]], Awaitable["list[list[str]] | None"]]


class Method(ABC):
    """A generation method. Class attributes declare it; `asks` is the one thing it does."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one paragraph for the README's method list
    example: ClassVar[str]  # its example config in configs/
    section: ClassVar[str | None] = None  # its settings' key under `generation`
    config: ClassVar[type[Section] | None] = None  # the typed model of that section
    roles: ClassVar[dict[str, Role]] = {}
    steerable: ClassVar[bool] = False  # `generation.steer` can draw its demonstrations, topics, personas
    steered_by_default: ClassVar[bool] = False  # ... and does when `steer.enabled` is null
    default_instances: ClassVar[str] = "self_instruct"  # `generation.instances` unless set
    first_filters: ClassVar[tuple[dict[str, Any], ...]] = ()  # put before the default instruction chain
    lineage: ClassVar[tuple[str, ...]] = ()  # keys of its asks' meta that the records carry on
    embeds: ClassVar[bool] = False  # it is given an embedder (`Inputs.embedder`), loaded on first use
    # What it starts from when not the seed tasks (the card's "seed tasks" row); None: `generation.seeds`.
    starts_from: ClassVar[str | None] = None

    def __init__(self, inputs: Inputs) -> None:
        self.inputs = inputs

    async def prepare(self, send: Send, log: Callable[[str], None]) -> None:
        """Work with the model before the first round (Private Evolution's iterations), sent with
        `send`; called before each refill's rounds too, so a method does it once. Most do nothing."""
        return None

    def fingerprint(self) -> dict[str, Any]:
        """What the method read when it opened that decides its requests (a corpus's content
        hashes), added to its section in the run's fingerprint."""
        return {}

    def describe_change(self, old: dict[str, Any]) -> str:
        """For a run directory whose stored fingerprint `old` differs: what the method's inputs
        changed, in words ("" when it cannot tell)."""
        return ""

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """(source, reason) of each input the method skipped when it opened, for the funnel."""
        return []

    def sources(self, records: Iterable[Record]) -> dict[str, Any] | None:
        """What the kept `records` took from the method's own inputs (a corpus's coverage), written
        to the run directory as sources.json for the report and the card; None: nothing to say."""
        return None

    @property
    def template_tokens(self) -> tuple[str, ...]:
        """The served model's special tokens, for filters that look for leaked ones (Magpie)."""
        return ()

    @abstractmethod
    def asks(self, pool: Sequence[Record], rnd: int, need: int) -> list[Ask]:
        """What to send in round `rnd`, for `need` more instructions; `pool` holds those accepted so
        far (read by length, index and slice)."""


# Requests per round when `generation.requests_per_round` is null.
REQUESTS_PER_ROUND = 256


def rng_for(*parts: Any) -> random.Random:
    """A generator seeded by `parts`: the same round draws the same on every run (resume)."""
    return random.Random(zlib.crc32(repr(parts).encode()))


def requests_per_round(settings: RoundSettings, need: int, per_request: int) -> int:
    """Ask for more than needed: many candidates are filtered out, and a request costs little.
    Capped by a setting in the fingerprint, never by the engine's: what is sent must not change
    when the concurrency does."""
    cap = settings.requests_per_round or REQUESTS_PER_ROUND
    return max(1, min(cap, math.ceil(need * settings.overgenerate / per_request)))


def demonstrations(inputs: Inputs, pool: Sequence[Record], rng: random.Random) -> tuple[list[Any], list[str]]:
    """Seed tasks and (a `machine_ratio` share) pool instructions to show, and the seeds' ids. Pool
    instructions are shown as `{"instruction": ...}` dicts."""
    s = inputs.settings
    k = s.num_demonstrations
    n_machine = min(len(pool), round(k * s.machine_ratio))
    n_seeds = min(k - n_machine, len(inputs.seeds))
    if inputs.steer is not None:  # toward under-covered regions (generator/run/steer.py)
        demos = inputs.steer.demonstrations(inputs.seeds, pool, n_seeds, n_machine, rng)
    else:
        demos = rng.sample(inputs.seeds, n_seeds)
        demos += [{"instruction": r.instruction} for r in rng.sample(pool, n_machine)]
    rng.shuffle(demos)
    return demos, seed_ids(demos)


@dataclass(frozen=True)
class DemoAsk:
    """How a method that shows demonstrations asks: its template role, the template variable that
    says how many it wants, the label its draws are seeded by, and what of the drawn demonstrations
    it shows (all of them by default)."""

    role: str
    count: str
    label: str
    shown: Callable[[list[Any], Inputs], list[Any]] | None = None


def demonstration_asks(inputs: Inputs, how: DemoAsk, pool: Sequence[Record], rnd: int, need: int) -> list[Ask]:
    """The round's asks of a method like self-instruct: each request shows demonstrations drawn from
    the seeds and the pool (the same draws on every run: resume) and asks for
    `instructions_per_prompt` new tasks."""
    per = inputs.settings.instructions_per_prompt
    asks = []
    for i in range(requests_per_round(inputs.settings, need, per)):
        demos, ids = demonstrations(inputs, pool, rng_for(how.label, rnd, i, len(pool)))
        if how.shown is not None:
            demos = how.shown(demos, inputs)
        meta = {"stage": "instructions", "round": rnd, "seed_ids": ids}
        asks.append(Ask(inputs.templates[how.role], {"demonstrations": demos, how.count: per}, meta))
    return asks


def seed_ids(demos: Sequence[Any]) -> list[str]:
    """The ids of the seed tasks among `demos` (pool instructions are dicts)."""
    return [d.id for d in demos if not isinstance(d, dict)]
