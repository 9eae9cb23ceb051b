"""Refusals and AI boilerplate in outputs: answers that decline the task or talk about being a model
teach a fine-tuned model to do the same."""

from __future__ import annotations

import re

from filters.base import KEEP, Filter, Verdict, drop
from generator.core.records import Record

# A refusal opens the answer (perhaps after one short sentence: "Hmm. I cannot..."); the same words
# later on ("if I cannot find the key, return None") are usually part of a real answer.
REFUSAL_OPENINGS = (
    r"i'?m sorry",
    r"i am sorry",
    r"(?:i'?m|i am) (?:afraid|unable|not able)",
    r"i (?:cannot|can't|can not|won't|will not|am not able to|do not have access|don't have access)",
    r"unfortunately,? (?:i|as an)",
    r"(?:sorry|apologies),? (?:but )?i",
    r"i apologi[sz]e",
)

# Boilerplate that gives the model away anywhere in the answer, each with substrings one of which
# any match contains: a substring test is far cheaper than a regex scan of the whole output.
# "an AI language model", "an AI assistant", "an AI," - but not "an AI researcher".
_SELF = r"(?:(?: language)? (?:model|assistant)\b|[,.!])"
BOILERPLATE = (
    (r"as an? (?:ai|artificial intelligence)" + _SELF, ("an ai", "an artificial")),
    (r"as a (?:large )?language model", ("language model",)),
    (r"i (?:am|'m) (?:just |only )?an? (?:ai|artificial intelligence)" + _SELF, ("an ai", "an artificial")),
    (r"my (?:training data|knowledge cut-?off)", ("my training", "my knowledge")),
    (
        r"i (?:do not|don't) have (?:personal )?(?:opinions|feelings|emotions|beliefs)",
        ("i do not have", "i don't have"),
    ),
    (r"(?:developed|trained|created) by openai", ("openai",)),
)

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'"})


def _alternation(patterns: list[str] | tuple[str, ...]) -> str:
    return "(?:" + "|".join(f"(?:{p})" for p in patterns) + ")"


class RefusalFilter(Filter):
    """Drops outputs that open with a refusal (`refusal`) or contain AI boilerplate
    (`ai_boilerplate`). `extra_refusals`/`extra_boilerplate` add regular expressions (matched
    case-insensitively) to the built-in lists."""

    name = "refusal"

    def __init__(self, extra_refusals: list[str] | None = None, extra_boilerplate: list[str] | None = None):
        openings = _alternation(REFUSAL_OPENINGS + tuple(extra_refusals or ()))
        self.refusal = re.compile(r"\W*(?:[^.!?\n]{0,40}[.!?]\s+)?" + openings, re.IGNORECASE)
        self.boilerplate = re.compile(
            _alternation([p for p, _ in BOILERPLATE] + list(extra_boilerplate or ())), re.IGNORECASE
        )
        # With user patterns there is no known substring to test first: always scan.
        self.hints = None if extra_boilerplate else tuple({h for _, hs in BOILERPLATE for h in hs})

    def judge(self, records: list[Record]) -> list[Verdict]:
        hints = self.hints
        out = []
        for r in records:
            low = r.output.lower()
            if "\u2019" in low or "\u2018" in low:
                low = low.translate(_APOSTROPHES)
            m = self.refusal.match(low)
            if m:
                out.append(drop("refusal", match=m.group(0).strip()))
                continue
            m = self.boilerplate.search(low) if hints is None or any(h in low for h in hints) else None
            out.append(drop("ai_boilerplate", match=m.group(0)) if m else KEEP)
        return out
