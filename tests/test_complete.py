"""The completion stage's copy check: an instance that only repeats the template's worked example
does not count, whatever its length, unless the task makes it the right answer."""

from __future__ import annotations

import pytest

from generator.core.paths import builtin_path
from generator.prompting.parse import Item
from generator.prompting.templates import load_template, render
from generator.run.complete import _copied, shown_examples


def _prompt(template: str, instruction: str) -> tuple[str, list[tuple[str, str]]]:
    tpl = load_template(builtin_path("prompts", f"{template}.jinja"))
    messages = render(tpl, {**tpl.meta.defaults, "instruction": instruction, "num_instances": 2})
    prompt = "\n".join(m["content"] for m in messages)
    return prompt, shown_examples(tpl.meta.parser, prompt)


def test_shown_examples_are_the_worked_examples_only() -> None:
    _, shown = _prompt("instance_input_first", "Name a colour. Input: x Output: y")
    assert shown == [("100 °c", "212 °f"), ("37 °c", "98.6 °f")]
    _, shown = _prompt("instance_output_first", "Is this spam?")
    assert [out for _, out in shown] == ["positive", "negative"]


CASES = [
    # (template, instruction, input, output, copied)
    ("instance_input_first", "Describe a cafe idea.", "", "212 °F", True),
    ("instance_input_first", "Describe a cafe idea.", "", "  212 °f. ", True),
    ("instance_input_first", "Describe a cafe idea.", "", "98.6 °F", True),
    ("instance_input_first", "Describe a cafe idea.", "", "212 °F\n\nThe task is a review of a cafe.", True),
    ("instance_input_first", "Describe a cafe idea.", "A cafe by the sea", "212 °F", True),
    ("instance_input_first", "Describe a cafe idea.", "37 °C", "212 °F", True),  # input and output copied
    ("instance_input_first", "Convert the temperature to Fahrenheit.", "100 °C", "212 °F", True),  # as before
    ("instance_input_first", "Convert 100 °C to Fahrenheit.", "", "212 °F", False),
    ("instance_input_first", "Convert the temperature to Fahrenheit.", "100 degrees C", "212 °F", True),
    ("instance_input_first", "Describe a cafe idea.", "", "212 °F is the boiling point.", False),
    ("instance_input_first", "Describe a cafe idea.", "", "A cafe with board games.", False),
    ("instance_input_first", "Describe a cafe idea.", "", "212", False),
    ("instance_output_first", "How many taxis can I drive?", "", "Positive", True),
    ("instance_output_first", "How many taxis can I drive?", "", "Negative\n\nHere are the examples:", True),
    ("instance_output_first", "Classify the tweet as positive or negative.", "Great day!", "Positive", False),
    ("instance_output_first", "Is the review positive or negative?", "", "Negative.", False),
    ("instance_output_first", "Classify the email as spam or not spam.", "Win a prize now", "Spam", False),
]


@pytest.mark.parametrize(
    ("template", "instruction", "input_", "output", "copied"),
    CASES,
    ids=[
        "212F-unrelated-task",
        "212F-case-spacing-dot",
        "98.6F-unrelated-task",
        "212F-then-chatter",
        "212F-other-input",
        "example-pair-mixed",
        "example-pair-verbatim",
        "instruction-holds-the-example-input",
        "same-input-in-other-words-counts-as-copy",
        "longer-output-is-not-the-example",
        "own-output",
        "different-after-normalisation",
        "label-task-names-no-labels",
        "label-then-chatter",
        "label-named-by-the-task",
        "label-named-no-input",
        "own-label",
    ],
)
def test_copied(template: str, instruction: str, input_: str, output: str, copied: bool) -> None:
    prompt, shown = _prompt(template, instruction)
    assert _copied(Item(input=input_, output=output), prompt, shown, instruction) is copied
