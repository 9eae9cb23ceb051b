"""Magpie's pre-query: the start of a model's own chat template, up to where a user message's text
begins. Given only that, an aligned chat model writes a user message by itself.

Nothing is written per model. A conversation whose user message is a sentinel word is rendered
through the tokenizer's own `apply_chat_template`: what comes before the sentinel is the
pre-query, and what the template puts right after it (`<|im_end|>`, `<|eot_id|>`, `[/INST]`,
`<end_of_turn>`) is where the model's user message ends, the stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from generator.core.errors import ConfigError

# A plain word, so that templates that trim or escape a message's text leave it whole.
SENTINEL = "MagpieUserTurnSentinel7d1f"


class ChatTokenizer(Protocol):
    """What the derivation needs of a Hugging Face tokenizer."""

    eos_token: Any

    def apply_chat_template(self, conversation: list[dict[str, str]], **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class PreQuery:
    """One pre-query: the prompt text (sent as it is, no special tokens added), the strings that end
    the user turn, and the system prompt and topic it was made with (None: the template's default)."""

    text: str
    stop: tuple[str, ...]
    system: str | None = None
    topic: str | None = None


def pre_query(tokenizer: ChatTokenizer, system: str | None = None, *, where: str = "the model") -> PreQuery:
    """The pre-query of `tokenizer`'s chat template, with `system` as the system turn (None: no
    system message, so the template's own default, if it has one). `where` names the model in errors."""
    messages = [{"role": "user", "content": SENTINEL}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    except Exception as err:  # a template's raise_exception(), or any Jinja error, as jinja2 raises it
        if system is not None:
            raise ConfigError(
                f"{where}: its chat template refuses a system turn ({err}); leave out "
                "generation.magpie.system_prompts and generation.magpie.topics for this model"
            ) from None
        raise ConfigError(f"{where}: its chat template cannot render a user message ({err})") from None
    if not isinstance(text, str) or text.count(SENTINEL) != 1:
        raise ConfigError(
            f"{where}: its chat template does not render a user message's text as it is, so no "
            "pre-query can be cut from it; use a model whose chat template does"
        )
    before, after = text.split(SENTINEL)
    if system is not None and system.strip() not in before:
        raise ConfigError(
            f"{where}: its chat template leaves out the system prompt {system[:60]!r}; leave out "
            "generation.magpie.system_prompts and generation.magpie.topics for this model"
        )
    return PreQuery(before, _stops(after, tokenizer.eos_token), system)


def _stops(after: str, eos: Any) -> tuple[str, ...]:
    """The end of the user turn: the first thing the template writes after the user's text, and the
    end-of-sequence token when it is another one."""
    stops = []
    first = after.strip().split("\n")[0].strip()
    if first:
        stops.append(first)
    if isinstance(eos, str) and eos and eos not in stops:
        stops.append(eos)
    return tuple(stops)


def pre_queries(
    tokenizer: ChatTokenizer,
    system_prompts: list[str],
    topics: list[str],
    topic_hint: str,
    *,
    where: str = "the model",
) -> list[PreQuery]:
    """One pre-query per system prompt and topic (each list may be empty): a topic adds `topic_hint`
    (its `{topic}` replaced) to the system prompt."""
    out = []
    for system in system_prompts or [None]:
        for topic in topics or [None]:
            hint = topic_hint.replace("{topic}", topic) if topic is not None else None
            text = "\n\n".join(part for part in (system, hint) if part) if hint else system
            out.append(_with_topic(pre_query(tokenizer, text, where=where), topic))
    return out


def _with_topic(query: PreQuery, topic: str | None) -> PreQuery:
    return PreQuery(query.text, query.stop, query.system, topic)


def special_tokens(tokenizer: Any) -> tuple[str, ...]:
    """The tokenizer's special tokens (its chat template's markers among them), longest first."""
    found = set(getattr(tokenizer, "all_special_tokens", None) or [])
    for token in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(token, "special", False):
            found.add(str(token))
    return tuple(sorted((t for t in found if t.strip()), key=lambda t: (-len(t), t)))
