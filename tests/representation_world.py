"""A stand-in model that over-represents one group, for the representation tests
(tests/test_representation.py), served through tests/fake_openai.py (`FakeOpenAI(reply=fake_reply)`).

Asked by the custom method for tasks, it writes each one about a person: a woman with probability
`FEMALE`, a man otherwise (4:1), unless the prompt's persona names a gender, which it then follows.
Every task is a template, a person phrase and a subject; which gender a row is about is known from
the person phrase alone (`truth`), not from the lexicon under test. Answers mention nobody.
"""

from __future__ import annotations

import hashlib
import random
import re

FEMALE = 0.8
PEOPLE = {
    "female": ("my grandmother", "my sister", "a woman from my office", "my daughter", "my mother"),
    "male": ("my grandfather", "my brother", "a man from my office", "my son", "my father"),
}
TASKS = (
    "Write a birthday message for {p} who loves {s}.",
    "Help {p} plan a weekend about {s}.",
    "Explain {s} to {p} in simple words.",
    "Suggest a gift for {p} related to {s}.",
)
SUBJECTS = (
    "the ocean", "old bicycles", "city gardens", "a night train", "mountain villages", "coffee shops",
    "winter storms", "street markets", "paper kites", "honey bees", "electric cars", "public libraries",
    "desert roads", "jazz records", "wind farms", "river boats", "sunflowers", "board games", "lighthouses",
    "wool sweaters", "museum tours", "snowy forests", "tea ceremonies", "vegetable soup", "violin lessons",
)  # fmt: skip
ANSWER = "Here is a careful answer to the task, with one short example and a closing tip for the reader."
_ASKED = re.compile(r"Write (\d+) tasks")
_PERSONA = re.compile(r"^Person: (.*)$", re.MULTILINE)


def fake_reply(body: dict, i: int) -> str:
    prompt = body["prompt"] if "prompt" in body else body["messages"][-1]["content"]
    asked = _ASKED.search(prompt)
    if asked is None:
        return ANSWER
    persona = (_PERSONA.findall(prompt) or [""])[0]
    rng = random.Random(hashlib.sha256(prompt.encode()).digest())
    lines = []
    for n in range(int(asked.group(1))):
        gender = "female" if rng.random() < FEMALE else "male"
        gender = next((g for g in PEOPLE if persona.endswith(g_word(g))), gender)
        task = rng.choice(TASKS).format(p=rng.choice(PEOPLE[gender]), s=rng.choice(SUBJECTS))
        lines.append(f"{n + 1}. {task}")
    return "\n".join(lines)


def g_word(gender: str) -> str:
    """A persona ending in this word makes the model write about that gender."""
    return {"female": "mother", "male": "father"}[gender]


def truth(instruction: str) -> str:
    """The gender a row is about, from its person phrase."""
    found = {g for g, people in PEOPLE.items() if any(p in instruction for p in people)}
    assert len(found) == 1, instruction
    return found.pop()


MALE_WORDS = re.compile(r"\b(grandfather|brother|man|son|father|he|him|his)\b")


def probe_reply(body: dict, i: int) -> str:
    """The world's model, which also answers requests about men at greater length, refuses none and
    judges every answer 4 (for the probes)."""
    prompt = body["prompt"] if "prompt" in body else body["messages"][-1]["content"]
    if "You are grading one example" in prompt:
        return '{"helpfulness": 4, "correctness": 4, "clarity": 4}'
    if _ASKED.search(prompt):
        return fake_reply(body, i)
    return ANSWER + (" Here is more detail, step by step." if MALE_WORDS.search(prompt) else "")
