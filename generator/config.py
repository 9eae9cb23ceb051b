"""The run configuration: pydantic models read from YAML. `Field(description=...)` is the one
place a setting is documented; the README's configuration reference is generated from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, PrivateAttr, ValidationError, create_model, field_validator, model_validator

from filters.specs import AnyFilterSpec, ConstraintType, JudgeSpec, PrivacySettings, json_schema_problem, parse_specs
from generator.core.errors import ConfigError, describe_errors
from generator.core.paths import builtin_path
from generator.core.section import Section
from generator.methods.registry import METHODS, all_roles


class ModelConfig(Section):
    name: str = Field(
        "bundled",
        description="`bundled` for SmolLM2-135M-Instruct prepared in the user cache, or a Hugging "
        "Face model id or local folder that vLLM can serve.",
    )
    served_name: str | None = Field(
        None, description="Model name sent in requests; defaults to the name vLLM serves it under."
    )
    revision: str | None = Field(None, description="Model revision (branch, tag or commit).")
    max_model_len: int | None = Field(
        2048, ge=128, description="Context length given to vLLM; null keeps the model's own."
    )


class ServerConfig(Section):
    endpoints: list[str] = Field(
        default_factory=list,
        description="OpenAI-compatible base URLs (`http://host:8000/v1`). When set, no server is "
        "started and these are used instead.",
    )
    api_key_env: str | None = Field(
        None,
        description="Name of the environment variable holding the key for external endpoints. "
        "The managed server gets a fresh random key every run.",
    )
    device: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="Where the managed vLLM server runs; `auto` picks the GPU if any."
    )
    port: int | None = Field(None, ge=1, le=65535, description="Port; a free one when null.")
    dtype: str | None = Field(None, description="vLLM `--dtype`; float32 on CPU, auto on GPU.")
    enforce_eager: bool | None = Field(
        None,
        description="Skip torch.compile and CUDA graphs. Default: true on CPU (starts in about 50 s "
        "instead of 160 s for 10% less speed), false on GPU.",
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one model replica spans.")
    data_parallel_size: int = Field(1, ge=1, description="Model replicas (GPU only).")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="vLLM GPU memory share.")
    cpu_kvcache_gib: int = Field(2, ge=1, description="KV cache size on CPU (VLLM_CPU_KVCACHE_SPACE).")
    cpu_threads: str | None = Field(
        None, description="Cores vLLM binds on CPU (VLLM_CPU_OMP_THREADS_BIND); all when null."
    )
    startup_timeout_s: float = Field(900, gt=0, description="Deadline for the server to be ready.")
    extra_args: list[str] = Field(default_factory=list, description="More `vllm serve` arguments, passed as they are.")


class SamplingConfig(Section):
    temperature: float = Field(0.7, ge=0, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass.")
    max_tokens: int = Field(256, ge=1, description="Most tokens generated per completion.")
    stop: list[str] = Field(default_factory=list, description="Stop sequences.")
    seed: int | None = Field(
        None,
        description="Base seed; each request derives its own from it, so sampling is reproducible. "
        "Leave null with vllm-cpu 0.32: seeded requests crash its engine under load ('CPU Generator "
        "does not use offset'). Resume does not need it: request ids are deterministic either way.",
    )


class EngineConfig(Section):
    concurrency: int = Field(
        256,
        ge=1,
        description="Requests in flight at once, over all endpoints. 256 matches vLLM's default batch "
        "(`max_num_seqs`), which keeps one GPU server full; on a CPU server 64 is enough.",
    )
    timeout_s: float = Field(
        600,
        gt=0,
        description="Per-request timeout from send to the whole answer, including the server's queue: "
        "at full concurrency on CPU a 256-token answer takes minutes.",
    )
    connect_timeout_s: float = Field(10, gt=0, description="Timeout for opening a connection.")
    max_retries: int = Field(
        4, ge=0, description="Retries per request on 429, 5xx, timeouts, dropped connections, bad bodies."
    )
    backoff_base_s: float = Field(
        1.0, gt=0, description="First retry delay; doubles per retry, with jitter, up to `backoff_max_s`."
    )
    backoff_max_s: float = Field(60, gt=0, description="Longest delay between retries.")
    retry_budget: float = Field(
        0.2,
        ge=0,
        description="Retries allowed over the run as a share of requests started (plus 20): past it a "
        "failing request is recorded as failed at once, so a broken server is not hammered.",
    )
    endpoint_down_after: int = Field(
        5,
        ge=1,
        description="Consecutive timeouts or dropped connections that take an endpoint out of rotation "
        "(a refused connection takes it out at once); it is probed until it answers again.",
    )
    probe_interval_s: float = Field(5, gt=0, description="How often an endpoint taken out is probed.")
    no_endpoint_timeout_s: float = Field(
        120, gt=0, description="How long the run waits for an endpoint to come back when none is left."
    )
    stop_grace_s: float = Field(
        10,
        ge=0,
        description="On Ctrl-C or SIGTERM: how long requests in flight may finish before they are "
        "cancelled (cancelled ones are sent again on resume).",
    )
    flush_every: int = Field(64, ge=1, description="Results buffered before the run directory is written.")
    flush_interval_s: float = Field(
        1.0, gt=0, description="Longest time a finished result waits in the buffer before it is written."
    )


class _Templates(Section):
    """Which template plays each role: a built-in name or a path (relative to the config file)."""


# One setting per role (each method's, then the shared stages'), from the method registry.
TemplatesConfig = create_model(
    "TemplatesConfig",
    __base__=_Templates,
    __module__=__name__,
    **{name: (str, Field(role.default, description=role.description)) for name, role in all_roles().items()},
)


class ShardConfig(Section):
    """One shard of a run split over many jobs (a Slurm array task, for instance)."""

    index: int = Field(..., ge=0, description="This shard, from 0 (`$SLURM_ARRAY_TASK_ID`).")
    count: int = Field(
        ...,
        ge=1,
        description="Shards in all; the shard takes every `count`-th seed from "
        "`index` and adds `index` to `sampling.seed`.",
    )

    @model_validator(mode="after")
    def _index_in_range(self) -> ShardConfig:
        if self.index >= self.count:
            raise ValueError(
                f"shard index {self.index} is not below count {self.count}; indexes run from 0 to count - 1"
            )
        return self

    def select(self, seeds: list[Any]) -> list[Any]:
        """This shard's seeds: every `count`-th one from `index`."""
        picked = seeds[self.index :: self.count]
        if not picked:
            raise ConfigError(
                f"generation.shard: shard {self.index} of {self.count} gets no seed tasks "
                f"from {len(seeds)}; use at most {len(seeds)} shards or more seed tasks"
            )
        return picked

    def sampling_seed(self, base: int | None) -> int | None:
        return None if base is None else base + self.index


# Rule checks a response may be put through: those that judge one output on its own. Stateful
# filters (dedup, decontamination) and instruction checks mean nothing for one of k answers.
RESPONSE_CHECKS = (
    "instance",
    "truncated",
    "repetition",
    "refusal",
    "language",
    "pii",
    "constraints",
    "schema",
    "code_exec",
)


class ResponseSampling(Section):
    """Sampling of one of the k responses; what is left null comes from the response template and
    `sampling`."""

    temperature: float | None = Field(None, ge=0, description="Sampling temperature of this response.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass of this response.")
    max_tokens: int | None = Field(None, ge=1, description="Most tokens of this response.")
    stop: list[str] | None = Field(None, description="Stop sequences of this response.")

    def params(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class PreferencesConfig(Section):
    """Preference pairs for DPO: k responses per instruction, ranked by rule checks and the judge."""

    responses: int = Field(4, ge=2, description="Responses asked for per instruction (k).")
    sampling: list[ResponseSampling] = Field(
        default_factory=list,
        description="One entry per response (as many as `responses`), e.g. `[{temperature: 0.2}, "
        "{temperature: 1.0}]`; empty: every response is sampled alike (each is its own request).",
    )
    checks: list[AnyFilterSpec] = Field(
        default_factory=lambda: [
            {"name": "instance"},
            {"name": "repetition"},
            {"name": "refusal"},
            {"name": "pii", "action": "redact"},
        ],
        validate_default=True,
        description="Rule checks each response passes, in order (any of " + ", ".join(RESPONSE_CHECKS) + "); "
        "a response that fails one ranks below every response that passes. `pii` with `action: redact` "
        "rewrites the responses (the record filters see only the chosen one).",
    )
    min_words: int = Field(1, ge=0, description="Fewest words a response may have (`too_short` below).")
    max_words: int | None = Field(None, ge=1, description="Most words a response may have (`too_long` above).")
    judge: JudgeSpec | None = Field(
        default_factory=lambda: JudgeSpec(name="judge"),
        description="The LLM judge that scores responses that passed the checks (a `judge` filter's "
        "parameters: `template`, `threshold`, `max_tokens`, `temperature`, `on_error`); a response under "
        "`threshold`, or whose judgement could not be read, ranks as failed. null: rule checks alone.",
    )
    rejected: Literal["worst", "failed_check"] = Field(
        "worst",
        description="`worst`: the lowest-ranked response; `failed_check`: only a response that failed a "
        "rule check (sets without one are dropped, `no_failed_check`).",
    )
    min_margin: float = Field(
        0.5,
        ge=0,
        description="Judge points (mean of the 1-5 criteria) by which the chosen response must beat a "
        "rejected one that passed too; less is a `tie` and the set is dropped.",
    )

    @field_validator("checks")
    @classmethod
    def _response_checks(cls, specs: list[Any]) -> list[Any]:
        wrong = [s.name for s in specs if s.name not in RESPONSE_CHECKS]
        if wrong:
            raise ValueError(
                f"{', '.join(map(repr, wrong))} cannot check one response; use any of {', '.join(RESPONSE_CHECKS)}"
            )
        return specs

    @model_validator(mode="after")
    def _one_sampling_per_response(self) -> PreferencesConfig:
        if self.sampling and len(self.sampling) != self.responses:
            raise ValueError(
                f"sampling has {len(self.sampling)} entries for {self.responses} responses; give one entry "
                "per response or none"
            )
        if self.max_words is not None and self.max_words < self.min_words:
            raise ValueError(f"max_words {self.max_words} is below min_words {self.min_words}")
        return self


class ConstraintsConfig(Section):
    """Verifiable constraints (IFEval-like) added to instructions before they are answered: each is
    worded as a sentence after the instruction and recorded with its kwargs in `meta.constraints`;
    the `constraints` filter then checks the answer (see Verifiable constraints)."""

    per_instruction: int | list[int] = Field(
        [1, 3],
        description="Constraints one instruction gets: a number, or [fewest, most] drawn uniformly; "
        "fewer when the types left conflict with those drawn.",
    )
    types: list[ConstraintType] | None = Field(
        None,
        description="Constraint types drawn from (see Verifiable constraints); null: all but "
        "`response_language` (whose answers the default `language` record filter drops).",
    )
    share: float = Field(1.0, gt=0, le=1, description="Share of instructions that get constraints.")

    @field_validator("per_instruction")
    @classmethod
    def _count(cls, value: int | list[int]) -> int | list[int]:
        low, high = (value, value) if isinstance(value, int) else (value + [0, 0])[:2]
        if isinstance(value, list) and len(value) != 2 or not 1 <= low <= high <= 5:
            raise ValueError(f"need a number from 1 to 5 or [fewest, most] within 1-5, got {value!r}")
        return value

    @field_validator("types")
    @classmethod
    def _some_types(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("name at least one type, or leave types out for all of them")
        return value

    def bounds(self) -> tuple[int, int]:
        value = self.per_instruction
        return (value, value) if isinstance(value, int) else (value[0], value[1])


class SteerConfig(Section):
    """Diversity steering (generator/run/steer.py): accepted instructions are clustered online on the
    embeddings the semantic dedup filter already computed, and each request's demonstrations (and
    custom topics and personas) are drawn toward regions with few accepted instructions."""

    enabled: bool | None = Field(
        None,
        description="Steer self_instruct, alpaca_batch and custom toward under-covered regions (evol_instruct "
        "is not steered). null (the default): on for self_instruct when `filters.instructions` has "
        "semantic_dedup, whose embeddings it reuses (only the seed tasks are encoded, once); there it covered "
        "sparse topics better with fewer requests on a clustered stand-in model, where for custom (whose "
        "topics are already crossed evenly) it gained little and not every time (BENCHMARKS.md). true: on for every "
        "steerable method, encoding the accepted instructions itself when needed; false: off.",
    )
    strength: float = Field(
        1.0,
        ge=0,
        le=2,
        description="How hard: a cluster of n accepted instructions supplies pool demonstrations with "
        "weight n^(1-strength) (0: as off, uniform over instructions; 1: uniform over clusters); a seed, "
        "topic or persona in a region holding c times the mean cluster size weighs (1+c)^-strength.",
    )
    radius: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="Cosine to the nearest cluster centre below which an accepted instruction starts a "
        "new cluster (while fewer than `max_clusters`).",
    )
    max_clusters: int = Field(64, ge=1, description="Most clusters; past it an instruction joins the nearest.")


class _Generation(Section):
    method: str = Field("self_instruct", description="How instructions are made (see Methods).")
    seeds: str = Field(
        "builtin",
        description="`builtin` for the bundled seed tasks, or any source the reader knows (see Reading "
        "data): a .jsonl, .json, .csv or .parquet file, a dataset folder, or a Hugging Face dataset "
        "(`hf:owner/name` or `owner/name`).",
    )
    seed_format: str | None = Field(
        None,
        description="The seed file's schema when its keys do not say it: `seed_tasks`, `alpaca`, `dolly`, "
        "`sharegpt`, `chat` or `own` (see Reading data); recognised from the first row's keys when null.",
    )
    seed_columns: dict[str, str] | None = Field(
        None,
        description="Column map for seeds in any format (logical field: your column), e.g. "
        "{instruction: prompt, output: answer}.",
    )
    num_records: int | None = Field(
        None,
        ge=1,
        description="Rows the dataset must hold, each past every filter and dedup: the run grows the "
        "instruction pool and completes it in refills until it has them (the surplus of the last refill "
        "is cut, in order), then stops. Null: the run makes `num_instructions` instructions and keeps "
        "what survives. Not part of the run's fingerprint: a changed target continues the run.",
    )
    num_instructions: int = Field(
        30,
        ge=1,
        description="Without `num_records`: the instruction pool's size. With it: the first refill "
        "(a pilot whose yield of kept rows per instruction sizes the later refills).",
    )
    requests_per_round: int | None = Field(
        None,
        ge=1,
        description="Most requests one round sends; null means 256. Part of the fingerprint (it decides "
        "what is sent), unlike `engine.concurrency`, which only says how many are in flight at once.",
    )
    instructions_per_prompt: int = Field(
        8, ge=1, description="Instructions (or tasks) asked for per request; for `magpie`, samples (`n`) per request."
    )
    num_demonstrations: int = Field(6, ge=1, description="Example tasks shown in each prompt.")
    machine_ratio: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Share of demonstrations drawn from the generated pool once it has "
        "some (self-instruct uses 2 of 8).",
    )
    overgenerate: float = Field(2.0, ge=1, description="Candidates asked for per instruction still needed.")
    max_rounds: int = Field(
        20, ge=1, description="Stop after this many rounds. Not part of the run's fingerprint: more rounds continue it."
    )
    min_acceptance: float = Field(
        0.05, ge=0, le=1, description="A round accepting fewer than this share of its candidates counts as stalled."
    )
    stall_rounds: int = Field(3, ge=1, description="Stop after this many stalled rounds in a row.")
    instances: Literal["self_instruct", "response"] = Field(
        "self_instruct",
        description="How outputs are made: `self_instruct` classifies each instruction "
        "and writes an instance output-first (classification) or input-first; `response` answers it "
        "(the default for `method: magpie`).",
    )
    instances_per_task: int = Field(
        2, ge=1, description="Instances asked for per instruction; the first valid one becomes the record."
    )
    turns: int = Field(
        1,
        ge=1,
        le=16,
        description="User turns per example. Above 1, after each answer the model writes the user's next "
        "message (template `user_turn`, with the conversation so far and the persona and topic when the "
        "method has them) and then answers it, so `messages` holds the whole conversation.",
    )
    turn_failure: Literal["drop", "truncate"] = Field(
        "drop",
        description="A later turn that gets no usable message or answer, or that a record filter drops: "
        "`drop` the whole conversation, or `truncate` it to the turns before (counted in the funnel either way).",
    )
    shard: ShardConfig | None = Field(None, description="Generate one shard of the seeds (see `merge`).")
    preferences: PreferencesConfig | None = Field(
        None,
        description="Make preference pairs for DPO: k responses per instruction, the best `chosen`, the "
        "worst `rejected` (see Preference pairs); null: one output per instruction.",
    )
    constraints: ConstraintsConfig | None = Field(
        None,
        description="Add verifiable constraints to instructions (`{per_instruction, types, share}`); the "
        "`constraints` record filter (added to the default chain, and to the preference checks) drops "
        "answers that break one; null: none.",
    )
    response_format: dict[str, Any] | None = Field(
        None,
        description="A JSON schema every answer must follow: sent as `response_format` with each answer "
        "request (structured output), and checked by the `schema` record filter (added to the default "
        "chain); null: free text.",
    )
    templates: TemplatesConfig = Field(default_factory=TemplatesConfig)  # type: ignore[valid-type]
    steer: SteerConfig = Field(default_factory=SteerConfig)
    quotas: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Most share of `num_records` the rows of one category may take, by a `meta` field or a "
        "dotted path into it: e.g. {task_type: {classification: 0.3}, topic: {cooking: 0.2}}; `*` caps each "
        "value not named ({source.document: {'*': 0.1}}: no document gives more than a tenth). Rows past a "
        "full quota are dropped in order (funnel: `target: quota_full`) and the run goes back for others. "
        "Needs `num_records`.",
    )

    balance: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Least share of `num_records` the rows of one group must take: by a representation attribute "
        "(`gender`, `age`, `nationality_or_region`, `ethnicity`, `religion`, `disability`, `occupation`: the groups "
        "a row mentions, see Bias and representation) or a `meta` field as for quotas, e.g. {gender: {female: 0.5, "
        "male: 0.5}}. A row that would take room the unmet minimums need is dropped in order (funnel: "
        "`target: balance_reserved`), custom's topics and personas are drawn toward groups still short, and the "
        "target is not met before the minimums are (a stop names those left). Needs `num_records`.",
    )

    @model_validator(mode="after")
    def _balance_needs_a_target(self) -> _Generation:
        if not self.balance:
            return self
        if self.num_records is None:
            raise ValueError("balance minimums are shares of the record target: set num_records too")
        # A lexicon attribute's groups are checked when the run opens (generator.run.balance.check_groups).
        for key, shares in self.balance.items():
            if not all(0 <= s <= 1 for s in shares.values()) or sum(shares.values()) > 1 + 1e-9:
                raise ValueError(
                    f"balance.{key}: shares are numbers from 0 to 1 that add up to 1 at most, got {shares}"
                )
        return self

    @model_validator(mode="after")
    def _quotas_need_a_target(self) -> _Generation:
        if self.quotas and self.num_records is None:
            raise ValueError("quotas are shares of the record target: set num_records too")
        for key, shares in self.quotas.items():
            wrong = {v: s for v, s in shares.items() if not 0 <= s <= 1}
            if wrong:
                raise ValueError(f"quotas.{key}: a share is a number from 0 to 1, got {wrong}")
        return self

    @model_validator(mode="after")
    def _method_answers(self) -> _Generation:
        # A method may answer its instructions another way by default (Magpie's are requests: `response`).
        default = METHODS[self.method].default_instances  # type: ignore[attr-defined]
        if "instances" not in self.model_fields_set and self.instances != default:
            self.instances = default
        return self

    @model_validator(mode="after")
    def _schema_needs_answers(self) -> _Generation:
        if self.response_format is not None and self.instances != "response" and self.preferences is None:
            raise ValueError(
                "response_format shapes answers, which `instances: self_instruct` does not write "
                "(it writes an input and an output together); set instances: response"
            )
        return self

    @field_validator("response_format")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        problem = json_schema_problem(value) if value is not None else None
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("seed_format")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        from generator.core.readers import FORMATS

        if value is not None and value not in FORMATS:
            raise ValueError(f"unknown format {value!r}; expected one of {', '.join(FORMATS)} (or leave it out)")
        return value


# `generation`: the shared settings, the method's name (one of the registry's) and each method's own
# section (`generation.<section>`), declared by its module in generator/methods/.
GenerationConfig = create_model(
    "GenerationConfig",
    __base__=_Generation,
    __module__=__name__,
    method=(
        Literal[tuple(METHODS)],  # type: ignore[valid-type]
        Field(
            "self_instruct",
            description="How instructions are made: " + ", ".join(f"`{m}`" for m in METHODS) + " (see Methods).",
        ),
    ),
    **{m.section: (m.config, Field(default_factory=m.config)) for m in METHODS.values() if m.section and m.config},
)


class BudgetConfig(Section):
    """What a run may spend, summed over every session of its run directory. The first limit
    reached stops the sending (requests in flight finish); the run then filters what it has and
    writes a complete dataset. A rerun with a larger budget continues. Not part of the fingerprint."""

    max_requests: int | None = Field(None, ge=1, description="Most requests sent (each stored result is one).")
    max_tokens: int | None = Field(
        None, ge=1, description="Most tokens, prompt and completion; requests in flight at the limit may pass it."
    )
    max_time_s: float | None = Field(None, gt=0, description="Most wall-clock seconds, summed over sessions.")
    max_gpu_hours: float | None = Field(None, gt=0, description="Most GPU-hours: wall-clock hours x `gpus`.")
    max_cost: float | None = Field(
        None,
        gt=0,
        description="Most money: GPU-hours x `price_per_gpu_hour` plus tokens / 1e6 x `price_per_million_tokens`.",
    )
    gpus: int | None = Field(
        None,
        ge=0,
        description="GPUs the server holds, for GPU-hours; null: the managed server's tensor x data x "
        "pipeline parallel size on a GPU (0 on CPU). Required for GPU-hours with `server.endpoints`.",
    )
    price_per_gpu_hour: float | None = Field(None, ge=0, description="Price of one GPU-hour, for `max_cost`.")
    price_per_million_tokens: float | None = Field(
        None, ge=0, description="Price of a million tokens (prompt and completion), for `max_cost`."
    )

    @model_validator(mode="after")
    def _cost_has_a_price(self) -> BudgetConfig:
        if self.max_cost is not None and self.price_per_gpu_hour is None and self.price_per_million_tokens is None:
            raise ValueError("max_cost needs price_per_gpu_hour or price_per_million_tokens (or both)")
        return self


INSTRUCTION_FILTERS: tuple[dict[str, Any], ...] = (
    {"name": "length", "min_words": 3, "max_words": 150},
    {"name": "blocklist"},
    {"name": "instruction_form"},
    {"name": "repetition", "fields": ["instruction"]},
    {"name": "pii", "action": "drop", "fields": ["instruction"]},
    {"name": "language", "fields": ["instruction"]},
    {"name": "exact_dedup"},
    {"name": "semantic_dedup"},
)
"""The default instruction chain; `method: magpie` puts `query_form` before it."""


class FiltersConfig(Section):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)  # chains set from Python are specs too

    # The default chains are written as a config would write them and validated like one: a spec
    # dumps as written, so the fingerprint of a config that keeps the defaults stays what it was.
    instructions: list[AnyFilterSpec] = Field(
        default_factory=lambda: list(INSTRUCTION_FILTERS),
        validate_default=True,
        description="Filters every candidate instruction passes, in order, before it joins the pool: "
        "each `{name: ..., <parameter>: ...}`. With `generation.method: magpie` the default chain "
        "starts with `{name: query_form}`.",
    )
    records: list[AnyFilterSpec] = Field(
        default_factory=lambda: [
            {"name": "truncated"},
            {"name": "instance"},
            {"name": "repetition"},
            {"name": "refusal"},
            {"name": "pii", "action": "redact"},
            {"name": "language"},
        ],
        validate_default=True,
        description="Filters every finished record (instruction, input, output) passes, in order.",
    )
    write_rejected: bool = Field(True, description="Write every dropped record to rejected.jsonl.")


class PushConfig(Section):
    repo: str = Field(..., description="Hub dataset repository, `user/name`; created on the first push if missing.")
    private: bool = Field(False, description="Create the repository private.")
    revision: str | None = Field(None, description="Branch to push to; `main` when null.")
    checkpoint_every: int | None = Field(
        None,
        ge=1,
        description="Also push while generating, each time this many more records were kept; "
        "only at the end when null.",
    )


class DatasetConfig(Section):
    test_ratio: float = Field(0.0, ge=0, lt=1, description="Share of records in the test split.")
    split_seed: int = Field(0, description="Seed of the deterministic train/test split.")
    name: str = Field("instructforge-dataset", description="Dataset name, used in the card.")
    pretty_name: str | None = Field(None, description="Human-readable title of the card; `name` if null.")
    license: str = Field(
        "apache-2.0",
        description="Hub license id of the generated data (check the generating model's license).",
    )
    languages: list[str] = Field(default_factory=lambda: ["en"], description="ISO 639-1 codes.")
    card_template: str | None = Field(
        None, description="Jinja template of the dataset card; the built-in prompts/card.md.jinja if null."
    )
    save_to_disk: bool = Field(
        True, description="Also write a `save_to_disk` copy under `hf/` for `datasets.load_from_disk`."
    )
    push: PushConfig | None = Field(
        None, description="Push the dataset to the Hugging Face Hub at the end of `generate`."
    )


class ReportConfig(Section):
    enabled: bool = Field(
        True,
        description="Write the HTML report (`report.html` in the dataset folder) at the end of `generate`, "
        "`merge`, `dedup` and `decontaminate`.",
    )
    gpu_hour_cost: float | None = Field(
        None, ge=0, description="Price of one GPU-hour (or CPU-hour), to show the cost per 1,000 kept rows."
    )
    sample: int = Field(
        2000,
        ge=100,
        description="Rows the embedding measures (Vendi, map, clusters, self-BLEU) are computed on: encoding "
        "them is most of the report's time (about 45 s for 2,000 30-word instructions on two CPU cores).",
    )
    max_rows: int = Field(
        50_000,
        ge=1000,
        description="Most rows the report reads: a larger dataset is measured on an even sample of this many "
        "(lengths, task types and verbs too; the page says so), so the report's memory does not grow with it.",
    )
    examples: int = Field(2000, ge=0, description="Kept rows shown in the report's Examples table (a sample).")
    rejected_per_reason: int = Field(100, ge=0, description="Dropped rows the report shows for each filter and reason.")
    representation: bool = Field(
        True,
        description="Audit who the rows are about (see Bias and representation): group mentions by a declared "
        "lexicon, pronouns by role, first names, co-occurrence with occupations and sentiment words.",
    )
    probes: int = Field(
        0,
        ge=0,
        description="Counterfactual probes at the end of `generate` (see Bias and representation): this many "
        "requests of the dataset that name a group, each asked again about another group, both answered by the "
        "served model and compared in the report; 0: none (`instructforge probe RUN_DIR` runs them later).",
    )
    representation_target: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="The distribution each attribute's group shares are compared with, e.g. {gender: {female: 0.5, "
        "male: 0.5}} (normalised); an attribute not named is compared with uniform shares over the groups mentioned.",
    )

    @field_validator("representation_target")
    @classmethod
    def _shares(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        # The attributes and groups are the lexicon's, checked when a run opens (generator.run.balance).
        for key, shares in value.items():
            wrong = {g: s for g, s in shares.items() if not 0 <= s <= 1}
            if wrong:
                raise ValueError(f"{key}: a target share is a number from 0 to 1, got {wrong}")
        return value


class PrivacyConfig(PrivacySettings):
    """Private sources and the audit's thresholds (see Privacy)."""

    model_config = ConfigDict(extra="forbid")

    seeds: bool = Field(
        False, description="The seed tasks (`generation.seeds`) are private: audited against, never shown in clear."
    )
    documents: bool = Field(False, description="The documents (`generation.documents.paths`) are private, likewise.")
    sources: list[str] = Field(
        default_factory=list,
        description="More private records the run only checks against (any source the reader knows; a .txt "
        "file is one record a line), relative to the config file.",
    )
    holdout: list[str] = Field(
        default_factory=list,
        description="Private records of the same kind that the run never uses: the membership attack's "
        "non-members and the distance baseline (without them `holdout_share` of the private records is "
        "held out for the baseline and the attack is not run).",
    )

    @property
    def enabled(self) -> bool:
        return self.seeds or self.documents or bool(self.sources)


class Config(Section):
    run_dir: Path = Field(Path("runs/default"), description="Where the run writes everything.")
    model: ModelConfig = Field(default_factory=ModelConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)  # type: ignore[valid-type]
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    filters: FiltersConfig = Field(default_factory=FiltersConfig)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)

    @model_validator(mode="after")
    def _method_filters(self) -> Config:
        # A method may put checks before the default instruction chain (Magpie: `query_form`).
        first = METHODS[self.generation.method].first_filters
        if first and "instructions" not in self.filters.model_fields_set:
            self.filters.instructions = [*first, *INSTRUCTION_FILTERS]
        return self

    @model_validator(mode="after")
    def _verified_checks(self) -> Config:
        # Constraints and a response schema bring their checks: last in the default record chain, first
        # among the default preference checks (an answer that breaks one is the pair's rejected one).
        g = self.generation
        checks: list[dict[str, Any]] = []
        if g.constraints is not None:
            checks.append({"name": "constraints"})
        if g.response_format is not None:
            checks.append({"name": "schema", "json_schema": g.response_format})
        if checks and "records" not in self.filters.model_fields_set:
            self.filters.records = [*self.filters.records, *checks]
        if checks and g.preferences is not None and "checks" not in g.preferences.model_fields_set:
            where = "generation.preferences.checks"
            g.preferences.checks = [*parse_specs(checks, where), *g.preferences.checks]
        return self

    # Where relative paths in the config file are resolved: the config file's folder.
    _base_dir: Path = PrivateAttr(default=Path("."))

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    def resolve(self, path: str | Path) -> Path:
        """A path from the config, relative to the config file's folder unless absolute."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self._base_dir / p


def parse_config(data: Any, source: str = "<config>", base_dir: Path = Path(".")) -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source}: {describe_errors(err, data)}") from None
    config._base_dir = base_dir
    return config


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Read a YAML config. `path` may name a built-in config (`default.yaml`) or a file."""
    file = Path(path)
    if not file.exists():
        builtin = builtin_path("configs", str(path))
        if builtin is None:
            raise ConfigError(f"config file not found: {path}")
        file = builtin
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not a UTF-8 text file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{file}: not valid YAML: {err}") from None
    for dotted, value in (overrides or {}).items():
        data = data or {}
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return parse_config(data, source=str(file), base_dir=file.parent)
