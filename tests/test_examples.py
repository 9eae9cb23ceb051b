"""Worked examples drawn per request from the seed tasks, and the check that catches an instance
carrying a shown example's numbers, units or names when its task does not."""

from __future__ import annotations

from collections import Counter

import pytest

from generator.core.paths import builtin_path
from generator.prompting.examples import ExamplePool, carried, distinctive
from generator.prompting.parse import Item
from generator.prompting.seeds import Instance, SeedTask, load_seeds
from generator.prompting.templates import load_template, render
from generator.run.complete import _first_own, worked_examples


def seed(id_: str, instruction: str, *instances: tuple[str, str], classification: bool = False) -> SeedTask:
    return SeedTask(id_, instruction, tuple(Instance(i, o) for i, o in instances), classification)


def test_draws_vary_per_request_and_none_dominates() -> None:
    pool = ExamplePool(load_seeds("builtin"))
    instructions = [f"Write a short note about topic number {i}." for i in range(300)]
    draws = [pool.draw(text, classification=False) for text in instructions]
    assert all(len(d) == 2 and d[0].seed_id != d[1].seed_id for d in draws)
    assert pool.draw(instructions[0], False) == draws[0]  # the same request shows the same examples
    shown = Counter(ex.seed_id for d in draws for ex in d)
    # Drawn evenly from about 120 tasks: each is shown to a few percent of the requests at most,
    # where the template's one built-in example was shown to all of them.
    assert len(shown) > 80
    assert max(shown.values()) / len(draws) < 0.05


def test_draws_keep_the_kinds_apart_and_skip_the_task_itself() -> None:
    seeds = [
        seed("c1", "Is the review positive or negative?", ("Great film", "Positive"), classification=True),
        seed("c2", "Is it spam?", ("Win a prize", "Spam"), classification=True),
        seed("g1", "Name a city in France.", ("", "Paris")),
        seed("g2", "Convert the temperature.", ("100 °C", "212 °F")),
        seed("long", "Write an essay.", ("", "word " * 100)),  # too long to show
        seed("none", "Tell a joke."),  # no instances
    ]
    pool = ExamplePool(seeds)
    assert {ex.seed_id for ex in pool.draw("Is the email urgent?", True)} == {"c1", "c2"}
    assert {ex.seed_id for ex in pool.draw("Write a poem.", False)} == {"g1", "g2"}
    assert [ex.seed_id for ex in pool.draw("Name a city in France.", False)] == ["g2"]
    assert ExamplePool([]).draw("Write a poem.", False) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100 °C\n212 °F", {"100", "°C", "212", "°F"}),
        ("It costs $40 or 35 € for 2 kg.", {"$", "40", "35", "€", "kg"}),
        ("Alice met Bob in New York.", {"Bob", "New York"}),  # not Alice: she opens the sentence
        ("- Paris\n- Lyon", {"Paris", "Lyon"}),  # short items are names, though they open their lines
        ("Step 1: mix. Step 2: bake at 180 degrees.", {"180"}),  # single digits number steps
        ("98.6 °F and 1,000 people at 10:30", {"98.6", "°F", "1,000", "10:30"}),
    ],
    ids=["temperatures", "money-and-units", "names", "short-items", "single-digits", "decimals-times"],
)
def test_distinctive(text: str, expected: set[str]) -> None:
    assert distinctive(text) == expected


TEMPERATURES = [("100 °C", "212 °F"), ("37 °C", "98.6 °F")]


@pytest.mark.parametrize(
    ("task", "input_", "output", "leak"),
    [
        ("Describe a cafe idea.", "", "The cafe keeps its coffee at 212 °F.", ("212", "°F")),
        ("Describe a cafe idea.", "A cafe by the sea", "It is 98.6 °F inside.", ("98.6", "°F")),
        ("Name a colour.", "", "°C", ("°C",)),  # one token, all a short output has
        ("Name a colour.", "", "212", ("212",)),
        ("Describe a cafe idea.", "", "Serve 212 kinds of tea in a warm room by the sea.", ()),  # one, long
        ("Convert 100 °C to Fahrenheit.", "", "212 °F", ()),  # the task asks for the example's answer
        ("Convert the body temperature 37 °C to °F.", "37 °C", "98.6 °F", ()),
        ("What is water's boiling point in °F?", "", "212 °F", ()),  # the right answer: °F is the task's
        ("Describe a cafe idea.", "", "A cafe with board games and a quiet corner.", ()),
    ],
    ids=[
        "number-and-unit",
        "in-a-sentence",
        "unit-alone",
        "number-alone",
        "one-token-in-a-long-answer",
        "task-holds-the-input",
        "task-holds-input-and-unit",
        "task-asks-for-the-example-answer",
        "own-answer",
    ],
)
def test_carried(task: str, input_: str, output: str, leak: tuple[str, ...]) -> None:
    assert carried(f"{input_}\n{output}", output, TEMPERATURES, task) == leak


def test_carried_names() -> None:
    shown = [("Peru", "South America"), ("Why do cats purr?", "Open question")]
    assert carried("\nSouth America", "South America", shown, "Name a fruit.") == ("South America",)
    assert carried("Lima\nSouth America", "South America", shown, "Which continent is Peru in?") == ()


def _prompt(template: str, instruction: str, examples: list[dict[str, str]] | None) -> tuple[str, str]:
    tpl = load_template(builtin_path("prompts", f"{template}.jinja"))
    values = {**tpl.meta.defaults, "instruction": instruction, "num_instances": 2}
    if examples is not None:
        values["examples"] = examples
    return "\n".join(m["content"] for m in render(tpl, values)), tpl.meta.parser


def test_the_stage_reads_the_drawn_examples_back_from_its_prompt() -> None:
    examples = [
        {"instruction": "Name the continent the country is in.", "input": "Peru", "output": "South America"},
        {"instruction": "Convert the distance.", "input": "5 km", "output": "3.1 mi"},
    ]
    prompt, parser = _prompt("instance_input_first", "Write a poem about rain.", examples)
    assert worked_examples(parser, prompt) == [("Peru", "South America"), ("5 km", "3.1 mi")]
    prompt, parser = _prompt("instance_output_first", "Is the tweet sarcastic?", examples)
    assert worked_examples(parser, prompt) == [("Peru", "South America"), ("5 km", "3.1 mi")]
    prompt, parser = _prompt("instance_input_first", "Write a poem about rain.", None)  # the built-in one
    assert worked_examples(parser, prompt) == TEMPERATURES


def test_first_own_instance_skips_copies_and_carriers() -> None:
    task = "Write a poem about rain."
    examples = [{"instruction": "Convert the distance.", "input": "5 km", "output": "3.1 mi"}]
    prompt, parser = _prompt("instance_input_first", task, examples)
    copy = Item(input="5 km", output="3.1 mi")
    carrier = Item(input="", output="Rain fell for 3.1 mi, some 5 km of grey.")
    own = Item(input="", output="Soft rain on the roof,\nthe garden drinks in silence.")
    assert _first_own([copy, carrier, own], prompt, parser, task) is own
    reason, detail = _first_own([copy, carrier], prompt, parser, task)
    assert (reason, detail["tokens"]) == ("carries_example", ["3.1", "km", "mi"])
    assert detail["output"] == carrier.output
    assert _first_own([copy], prompt, parser, task) == ("copied_from_prompt", {})


def test_common_tokens_and_code_literals_are_not_distinctive() -> None:
    seeds = [seed(f"s{i}", f"Task {i}.", ("", f"About 10 km, case {i}{i}{i}.")) for i in range(5)]
    pool = ExamplePool(seeds)
    assert pool.common == {"10", "km"}  # in all five tasks; each task's own number is not common
    shown = [("", "About 10 km, case 111.")]
    assert carried("\nWalk 10 km today.", "Walk 10 km today.", shown, "Plan a walk.") == ("10", "km")
    assert carried("\nWalk 10 km today.", "Walk 10 km today.", shown, "Plan a walk.", pool.common) == ()
    code = [("", "def f(x):\n    return None if x else True")]
    assert distinctive(code[0][1]) == set()
