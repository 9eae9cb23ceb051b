"""The run configuration: pydantic models read from YAML. `Field(description=...)` is the one
place a setting is documented; the README's configuration reference is generated from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from generator.errors import ConfigError
from generator.paths import builtin_path


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
    extra_args: list[str] = Field(
        default_factory=list, description="More `vllm serve` arguments, passed as they are."
    )


class SamplingConfig(Section):
    temperature: float = Field(0.7, ge=0, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling mass.")
    max_tokens: int = Field(256, ge=1, description="Most tokens generated per completion.")
    stop: list[str] = Field(default_factory=list, description="Stop sequences.")
    seed: int | None = Field(0, description="Base seed; each request derives its own from it.")


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


class GenerationConfig(Section):
    method: Literal["self_instruct"] = Field("self_instruct", description="How instructions are made.")
    seeds: str = Field(
        "builtin", description="`builtin` for the bundled seed tasks, or a JSONL file of seed tasks."
    )
    num_instructions: int = Field(30, ge=1, description="Instructions to generate.")
    num_demonstrations: int = Field(
        4, ge=1, description="Example tasks shown in each instruction-generation prompt."
    )
    instruction_template: str = Field(
        "instruction.jinja", description="Template that asks for new instructions."
    )
    response_template: str = Field(
        "response.jinja", description="Template that asks for the response to an instruction."
    )


class DatasetConfig(Section):
    test_ratio: float = Field(0.0, ge=0, lt=1, description="Share of records in the test split.")
    split_seed: int = Field(0, description="Seed of the deterministic train/test split.")


class Config(Section):
    run_dir: Path = Field(Path("runs/default"), description="Where the run writes everything.")
    model: ModelConfig = Field(default_factory=ModelConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    filters: list[dict[str, Any]] = Field(
        default_factory=lambda: [{"name": "length"}, {"name": "exact_dedup"}],
        description="Filters in order, each `{name: ..., <parameter>: ...}`.",
    )
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)

    @field_validator("filters")
    @classmethod
    def _known_filters(cls, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from filters.registry import check_spec

        for spec in specs:
            check_spec(spec)
        return specs

    # Where relative paths in the config file are resolved: the config file's folder.
    _base_dir: Path = PrivateAttr(default=Path("."))

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    def resolve(self, path: str | Path) -> Path:
        """A path from the config, relative to the config file's folder unless absolute."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self._base_dir / p


def _format_error(source: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}'")
        elif e["type"] == "missing":
            lines.append(f"missing key '{key}'")
        else:
            lines.append(f"key '{key}': {e['msg']} (got {e.get('input')!r})")
    return f"{source}: " + "; ".join(lines)


def parse_config(data: Any, source: str = "<config>", base_dir: Path = Path(".")) -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(source, err)) from None
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
