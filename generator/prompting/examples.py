"""Worked examples for the instance templates: drawn per request from the seed tasks that have
instances, so that no single example is shown to every request (a small model copies what it is
shown), and the check that an instance carries a shown example's distinctive tokens (its numbers,
units and names) when its task does not.

The draw depends on the instruction alone (a hash seeds it): a resumed run asks the same requests.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from generator.prompting.seeds import SeedTask

SHOWN = 2  # examples per request, each from a different seed task
MAX_CHARS = 300  # longer inputs or outputs make the prompt long for a small model: not shown

# Distinctive tokens. Numbers of two characters or more ("212", "98.6", "1,000", "10:30"; single
# digits number lists and steps everywhere); units and symbols after a number or standing alone
# ("°F", "kg", "%", "$"); names: capitalised words not opening a sentence or a line, or that are
# the whole of one (a label, a list item).
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,:]\d+)*")
_UNIT = re.compile(r"°\s?[CFK]\b|[%$€£¥]|(?<=\d)\s?(?:kg|km|cm|mm|mg|ml|mph|lbs?|oz|ft|mi|kWh|GB|MB|Hz|m|g|s|h|l)\b")
_NAME = re.compile(r"\b[A-Z][a-z]{2,}(?:[ \t]+[A-Z][a-z]{2,})*")
_SENTENCE = re.compile(r"[^.!?\n]*")
_OPENS = re.compile(r"(?:\A|[.!?:\n\"'(])\s*(?:[-*]|\d+[.)])?\s*\Z")  # what precedes a sentence's first word
COMMON_IN = 5  # a token in the instances of this many seed tasks is common vocabulary, not distinctive
LITERALS = frozenset({"True", "False", "None", "Null", "NaN"})  # code's capitalised words are no names
SHORT_WORDS = 3  # an output this short, all of whose distinctive tokens are an example's, copies it


@dataclass(frozen=True)
class Example:
    """One shown example: a seed task's instruction and one of its instances."""

    seed_id: str
    instruction: str
    input: str
    output: str

    def to_dict(self) -> dict[str, str]:
        return {"instruction": self.instruction, "input": self.input, "output": self.output}


class ExamplePool:
    """The seed tasks with a short enough instance, apart by kind (classification or not)."""

    def __init__(self, seeds: Sequence[SeedTask]):
        self.tasks: dict[bool, list[tuple[SeedTask, list[Example]]]] = {True: [], False: []}
        seen: Counter[str] = Counter()
        for seed in seeds:
            examples = [
                Example(seed.id, seed.instruction, i.input.strip(), i.output.strip())
                for i in seed.instances
                if i.output.strip() and len(i.output) <= MAX_CHARS and len(i.input) <= MAX_CHARS
            ]
            if examples:
                self.tasks[seed.is_classification].append((seed, examples))
                seen.update(set().union(*(distinctive(f"{ex.input}\n{ex.output}") for ex in examples)))
        # Tokens in the examples of `COMMON_IN` seed tasks or more ("10", "%", "km" in the bundled
        # seeds): shared with an example, they say nothing of a copy.
        self.common = frozenset(t for t, n in seen.items() if n >= COMMON_IN)

    def draw(self, instruction: str, classification: bool, k: int = SHOWN) -> list[Example]:
        """`k` examples of `k` different seed tasks of the kind, chosen by the instruction's hash
        (none of the task itself); fewer when the seeds have fewer."""
        digest = hashlib.sha256(f"{classification}\0{instruction}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        tasks = [t for t in self.tasks[classification] if t[0].instruction.strip() != instruction.strip()]
        return [rng.choice(examples) for _, examples in rng.sample(tasks, min(k, len(tasks)))]


def distinctive(text: str) -> set[str]:
    """The numbers, units and names in `text` (see the patterns above)."""
    tokens = {m.group(0) for m in _NUMBER.finditer(text) if len(m.group(0)) >= 2}
    tokens |= {re.sub(r"\s+", "", m.group(0)) for m in _UNIT.finditer(text)}
    for m in _NAME.finditer(text):
        # Capitalised words opening a sentence are a name only when they are the whole of it: a
        # label or a list item ("South America"), not "Alice met Bob in the park."
        sentence = _SENTENCE.match(text, m.start())
        if not _OPENS.search(text[: m.start()]) or (sentence and sentence.group(0).strip(" ,;:") == m.group(0)):
            tokens.add(" ".join(m.group(0).split()))
    return tokens - LITERALS


def carried(
    text: str, output: str, shown: Sequence[tuple[str, str]], task: str, common: frozenset[str] = frozenset()
) -> tuple[str, ...]:
    """The distinctive tokens of one shown example (input, output) that `text` (an instance's input
    and output) carries and the task does not: two or more, or the only ones of an output of
    `SHORT_WORDS` words or fewer ("212", "°C"); () when none does. An example whose input the task
    holds ("Convert 100 °C to Fahrenheit.") is skipped: its output may be the right answer. `common`
    tokens never count (`ExamplePool.common`)."""
    own = distinctive(text) - common
    if not own:
        return ()
    task_low = task.casefold()

    def in_task(token: str) -> bool:
        return re.search(rf"(?<!\w){re.escape(token.casefold())}(?!\w)", task_low) is not None

    for example_input, example_output in shown:
        given = distinctive(example_input)
        if given and all(in_task(t) for t in given):
            continue  # the task asks about the example's input: its output may be the right answer
        shared = {t for t in own & distinctive(f"{example_input}\n{example_output}") if not in_task(t)}
        if len(shared) >= 2 or (shared and shared == distinctive(output) and len(output.split()) <= SHORT_WORDS):
            return tuple(sorted(shared))
    return ()
