"""Is a user turn that a model wrote by itself (Magpie) a complete request?

Given only the start of its chat template, a model may leak the template (write the end of the
turn, the assistant's header, a role label), answer instead of ask (a small model often does),
greet, or stop mid-sentence. Such text teaches a fine-tuned model nothing it should learn.
"""

from __future__ import annotations

import re

from filters.base import KEEP, Filter, FilterContext, Verdict, drop
from generator.core.records import Record

# Chat template markers of the common families, whatever model is served (ChatML, Llama 2 and 3,
# Mistral, Gemma, Phi, Zephyr); the served model's own special tokens are added in `setup`.
COMMON_MARKERS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "[INST]",
    "[/INST]",
    "<<SYS>>",
    "<</SYS>>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<|user|>",
    "<|assistant|>",
    "<|system|>",
    "<|end|>",
    "</s>",
)

_ROLE_LABEL = re.compile(
    r"^\s*(?:(?:user|assistant|system|human|ai|bot|gpt|model)\s*:|(?:user|assistant|system|model)\s*$)",
    re.IGNORECASE | re.MULTILINE,
)

# How an answer opens, and what only the assistant says; a request opens and reads otherwise.
# A user may open with "Here is my code" or "I'm sorry to bother you": those are requests.
_ANSWER_OPENING = re.compile(
    r"^\W*(?:(?:sure|certainly|of course|absolutely)\b\s*[!,.]|great question|i(?:'d| would) be (?:happy|glad) to"
    r"|i(?:'m| am) (?:an ai|a helpful|here to help)|i(?:'m| am) sorry,? but i (?:can't|cannot|can not)|as an ai\b)",
    re.IGNORECASE,
)
_ASSISTANT_PHRASE = re.compile(
    r"\b(?:how (?:can|may) i (?:help|assist)(?: you)?|is there anything (?:else )?i can (?:help|do)"
    r"|i (?:think i )?can (?:help|assist) you)\b",
    re.IGNORECASE,
)
_GREETING = re.compile(
    r"^(?:hi|hello|hey|greetings|good (?:morning|afternoon|evening)|thanks|thank you(?: (?:very|so) much)?)"
    r"(?: there| everyone| all)?$",
    re.IGNORECASE,
)
# A request does not start on a joining word, nor end on one that needs words after it.
_JOIN_START = re.compile(r"^(?:and|or|but|so|then|because|which|also)\b", re.IGNORECASE)
_DANGLING_END = re.compile(r"\b(?:a|an|the|and|or|but|of|to|with|for|my|your|its|their)\Z", re.IGNORECASE)


class QueryFormFilter(Filter):
    """Drops self-written user turns that leak the chat template or are no complete request."""

    name = "query_form"

    def __init__(self, extra_markers: list[str] | None = None):
        self.extra_markers = [m for m in extra_markers or [] if m.strip()]
        self._markers = self._compile(())

    def _compile(self, tokens: tuple[str, ...]) -> re.Pattern[str]:
        markers = sorted({*COMMON_MARKERS, *tokens, *self.extra_markers}, key=len, reverse=True)
        return re.compile("|".join(map(re.escape, markers)))

    def setup(self, ctx: FilterContext) -> None:
        self._markers = self._compile(ctx.template_tokens)

    def judge(self, records: list[Record]) -> list[Verdict]:
        return [self._judge(r.instruction) for r in records]

    def _judge(self, text: str) -> Verdict:
        text = text.strip()
        if m := self._markers.search(text):
            return drop("template_leak", marker=m.group(0))
        if m := _ROLE_LABEL.search(text):
            return drop("template_leak", marker=m.group(0).strip())
        if _ANSWER_OPENING.search(text) or _ASSISTANT_PHRASE.search(text):
            return drop("assistant_voice")
        bare = re.sub(r"[^\w\s']+", " ", text).strip()
        if _GREETING.match(" ".join(bare.split())):
            return drop("greeting_only")
        if _JOIN_START.search(text):
            return drop("fragment", why="starts mid-sentence")
        if _DANGLING_END.search(text):
            return drop("fragment", why="ends mid-sentence")
        if text.count("```") % 2:
            return drop("fragment", why="open code block")
        return KEEP
