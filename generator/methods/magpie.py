"""Magpie (Xu et al., 2024): the served model writes each instruction itself, given only the start
of its own chat template up to the user turn (the pre-query, derived from the tokenizer's template:
generator/prompting/magpie.py); no seeds, no instructions to it."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from generator.core.files import write_json
from generator.core.records import Record
from generator.core.section import Section
from generator.methods.base import Ask, Inputs, Method, requests_per_round


class MagpieConfig(Section):
    """Magpie: the served model writes each instruction itself, given only the start of its own chat
    template (the pre-query, derived from the template; see `instructforge templates render magpie`)."""

    system_prompts: list[str] = Field(
        default_factory=list,
        description="System prompts the requests take in turn; empty: no system message, so the "
        "template's own default (SmolLM2 adds one; Llama 3 has none).",
    )
    topics: list[str] = Field(
        default_factory=list,
        description="Topic hints the requests take in turn (crossed with `system_prompts`): each adds "
        "`topic_hint` to the system prompt. Needs a template with a system turn.",
    )
    topic_hint: str = Field(
        "The user will ask you about {topic}.",
        description="The sentence a topic adds to the system prompt; `{topic}` is replaced by the topic.",
    )
    tokenizer: str | None = Field(
        None,
        description="Where the chat template is read: a local folder, or a Hugging Face id already "
        "in the local cache (nothing is downloaded); null: `model.name` (the bundled model's folder).",
    )
    temperature: float = Field(1.0, ge=0, description="Sampling temperature of the instruction requests.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass of the instruction requests.")
    max_tokens: int = Field(
        128, ge=1, description="Most tokens of an instruction; one cut off there is dropped (`truncated`)."
    )

    @model_validator(mode="after")
    def _hint_names_topic(self) -> MagpieConfig:
        if self.topics and "{topic}" not in self.topic_hint:
            raise ValueError(
                f"topic_hint {self.topic_hint!r} has no {{topic}}; write where the topic goes, as in "
                "'The user will ask you about {topic}.'"
            )
        return self


@dataclass(frozen=True)
class MagpiePrompts:
    """What Magpie derives from the served model's chat template (`magpie_prompts`)."""

    source: str  # where the template was read: the setting and its value
    queries: list[Any]  # PreQuery, one per system prompt and topic
    template_tokens: tuple[str, ...]


def magpie_prompts(section: MagpieConfig, model: Any, base_dir: Path) -> MagpiePrompts:
    """The pre-queries of the served model's chat template (`model`: the run's ModelConfig), one per
    configured system prompt and topic, read from local files (no server is needed). Kept in the user
    cache by the tokenizer files' contents and the section: loading a tokenizer imports transformers
    (about 7 s here), which a finished run's rerun should not pay."""
    from generator.llm.model import tokenizer_files

    key, name = ("generation.magpie.tokenizer", section.tokenizer) if section.tokenizer else ("model.name", model.name)
    if section.tokenizer:
        local = Path(section.tokenizer).expanduser()
        local = local if local.is_absolute() else base_dir / local
        name = str(local) if local.exists() else section.tokenizer
    revision = None if section.tokenizer else model.revision
    where = f"{key} {name!r}"
    files = tokenizer_files(name, revision)
    cached = _cache_file(files, section, where) if files else None
    if cached is not None and cached.is_file():
        try:
            return _from_json(json.loads(cached.read_text()))
        except (OSError, ValueError, TypeError, KeyError):
            pass  # unreadable: made again below
    prompts = _derive(section, name, revision, key, where)
    if cached is not None:
        with contextlib.suppress(OSError):  # a read-only cache only costs the next run the derivation
            cached.parent.mkdir(parents=True, exist_ok=True)
            write_json(cached, _to_json(prompts))
    return prompts


def _derive(section: MagpieConfig, name: str, revision: str | None, key: str, where: str) -> MagpiePrompts:
    from generator.llm.model import load_tokenizer
    from generator.prompting.magpie import pre_queries, special_tokens

    tokenizer = load_tokenizer(name, revision, key=key)
    queries = pre_queries(tokenizer, section.system_prompts, section.topics, section.topic_hint, where=where)
    return MagpiePrompts(where, queries, special_tokens(tokenizer))


CACHE_VERSION = 1  # of what the cache holds and how it is derived: a change makes every entry stale


def _cache_file(files: list[Path], section: MagpieConfig, where: str) -> Path:
    from generator.core.paths import cache_dir

    digest = hashlib.sha256(json.dumps([CACHE_VERSION, where, section.model_dump(mode="json")]).encode())
    for f in files:
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    return cache_dir() / "magpie" / f"{digest.hexdigest()}.json"


def _to_json(prompts: MagpiePrompts) -> dict[str, Any]:
    return {
        "source": prompts.source,
        "queries": [asdict(q) for q in prompts.queries],
        "template_tokens": list(prompts.template_tokens),
    }


def _from_json(data: dict[str, Any]) -> MagpiePrompts:
    from generator.prompting.magpie import PreQuery

    queries = [PreQuery(q["text"], tuple(q["stop"]), q["system"], q["topic"]) for q in data["queries"]]
    return MagpiePrompts(data["source"], queries, tuple(data["template_tokens"]))


class Magpie(Method):
    name = "magpie"
    starts_from = "none (Magpie: the model's chat template alone)"
    summary = (
        "needs no seeds and no prompt at all: the served chat model is given only the start of its own chat "
        "template up to the user turn and writes the user's request itself, which a second call answers "
        "(`instances: response`); the `query_form` filter goes first in its default instruction chain"
    )
    example = "magpie.yaml"
    section = "magpie"
    config = MagpieConfig
    default_instances = "response"
    # A model writing its own user turn leaks its template or writes fragments: check that first.
    first_filters = ({"name": "query_form"},)
    lineage = ("magpie",)

    def __init__(self, inputs: Inputs) -> None:
        super().__init__(inputs)
        self.prompts = magpie_prompts(inputs.section, inputs.model, inputs.base_dir)

    @property
    def template_tokens(self) -> tuple[str, ...]:
        return self.prompts.template_tokens

    def asks(self, pool: Sequence[Record], rnd: int, need: int) -> list[Ask]:
        """`instructions_per_prompt` samples (`n`) per request, the system prompts and topics taken in turn."""
        m, settings = self.inputs.section, self.inputs.settings
        per = settings.instructions_per_prompt
        queries = self.prompts.queries
        asks = []
        for i in range(requests_per_round(settings, need, per)):
            query = queries[(rnd * 997 + i) % len(queries)]
            params: dict[str, Any] = {
                "temperature": m.temperature,
                "top_p": m.top_p,
                "max_tokens": m.max_tokens,
                "n": per,
                "stop": [*query.stop, *settings.stop],
                # The prompt is the rendered template, special tokens included: add none, and show the
                # ones the model writes so that a leaked template is seen.
                "add_special_tokens": False,
                "skip_special_tokens": False,
            }
            lineage = {k: v for k, v in (("system", query.system), ("topic", query.topic)) if v is not None}
            meta: dict[str, Any] = {"stage": "instructions", "round": rnd, **({"magpie": lineage} if lineage else {})}
            variables = {"round": rnd, "request": i}
            asks.append(Ask(None, variables, meta, prompt=query.text, params=params, raw_parser="magpie_query"))
        return asks
