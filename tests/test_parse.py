"""Parsers: what models really write, table-driven, plus properties no input may break."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator.core.errors import ConfigError
from generator.prompting.parse import PARSERS, REASONS, Item, ParseResult, get_parser, parse

# The fields each parser fills; the others must keep their defaults.
KEYS = {
    "instruction_list": {"instruction"},
    "single_instruction": {"instruction"},
    "json_instructions": {"instruction"},
    "yes_no": {"is_classification"},
    "instances": {"input", "output"},
    "json_instances": {"input", "output"},
    "alpaca_batch": {"instruction", "input", "output"},
    "json_tasks": {"instruction", "input", "output"},
    "response": {"output"},
    "user_turn": {"instruction"},
    "magpie_query": {"instruction"},
}
# Fields that must never be empty in an accepted item.
NON_EMPTY = {"instruction", "output"}


def case(id, parser, text, items, reasons=(), finish_reason=None):
    """`items` as dicts of the fields the parser fills; every other field must be at its default."""
    return pytest.param(parser, text, finish_reason, [Item(**i) for i in items], list(reasons), id=id)


INS = "instruction"
CASES = [
    # -- instruction lists ----------------------------------------------------------------
    case(
        "numbered_with_preamble_and_closing",
        "instruction_list",
        "Sure! Here are 3 new tasks:\n\n1. Write a poem about autumn.\n2) Explain how a bill becomes "
        "law.\n3. **Summarize** the article.\n\nI hope these help!",
        [
            {INS: "Write a poem about autumn."},
            {INS: "Explain how a bill becomes law."},
            {INS: "Summarize the article."},
        ],
    ),
    case(
        "bullets_of_every_kind",
        "instruction_list",
        "- Write a poem.\n* Describe a cat.\n\u2022 Translate hello into Spanish.\n+ List three fruits.",
        [
            {INS: "Write a poem."},
            {INS: "Describe a cat."},
            {INS: "Translate hello into Spanish."},
            {INS: "List three fruits."},
        ],
    ),
    case(
        "task_n_labels_and_bold_numbers",
        "instruction_list",
        "Task 9: Name a color.\n**Task 10:** Give a synonym for happy.\n**11.** Add 2 and 3.",
        [{INS: "Name a color."}, {INS: "Give a synonym for happy."}, {INS: "Add 2 and 3."}],
    ),
    case(
        "truncated_last_item_dropped",
        "instruction_list",
        "1. Write a poem.\n2. Describe a ca",
        [{INS: "Write a poem."}],
        ["truncated"],
        "length",
    ),
    case(
        "cut_off_in_closing_prose_keeps_last_item",
        "instruction_list",
        "1. Write a poem.\n2. Describe a cat.\n\nThese tasks cover many sk",
        [{INS: "Write a poem."}, {INS: "Describe a cat."}],
        [],
        "length",
    ),
    case(
        "finished_answer_keeps_last_item",
        "instruction_list",
        "1. Write a poem.\n2. Describe a cat.",
        [{INS: "Write a poem."}, {INS: "Describe a cat."}],
        [],
        "stop",
    ),
    case(
        "plain_lines_without_markers",
        "instruction_list",
        "Here are some tasks:\nWrite a poem.\nName a color.",
        [{INS: "Write a poem."}, {INS: "Name a color."}],
    ),
    case(
        "continuation_line_joins_item",
        "instruction_list",
        "1. Solve for x:\n   2x + 3 = 7\n2. Name a color.",
        [{INS: "Solve for x:\n2x + 3 = 7"}, {INS: "Name a color."}],
    ),
    case(
        "empty_and_duplicate_items",
        "instruction_list",
        "1. Write a poem.\n2.\n3. write a poem.",
        [{INS: "Write a poem."}],
        ["empty_item", "duplicate_item"],
    ),
    case(
        "quoted_items_and_code_fence",
        "instruction_list",
        "```\n1. \"Write a limerick.\"\n2. 'Name a river.'\n```",
        [{INS: "Write a limerick."}, {INS: "Name a river."}],
    ),
    case(
        "plain_lines_after_a_chatty_intro",
        "instruction_list",
        "I'm ready. Here is a possible list for you.\nWrite a poem.",
        [{INS: "Write a poem."}],
    ),
    case("empty_answer", "instruction_list", "  \n ", [], ["empty_answer"]),
    case("only_a_preamble", "instruction_list", "Sure! Here are some tasks:", [], ["no_items"]),
    # -- single instruction (Evol-Instruct) -----------------------------------------------------
    case(
        "preamble_and_quotes",
        "single_instruction",
        'Sure, here is the rewritten instruction:\n\n"Write a poem about autumn in exactly 14 lines."',
        [{INS: "Write a poem about autumn in exactly 14 lines."}],
    ),
    case(
        "evol_label_on_own_line",
        "single_instruction",
        "#Rewritten Prompt#:\nWrite a sonnet about autumn.",
        [{INS: "Write a sonnet about autumn."}],
    ),
    case(
        "instruction_with_its_input_lines",
        "single_instruction",
        "Sort the following numbers in descending order:\n3, 1, 2",
        [{INS: "Sort the following numbers in descending order:\n3, 1, 2"}],
    ),
    case(
        "harder_version_intro",
        "single_instruction",
        "Here's a harder version of the instruction.\n\nWrite a sonnet with an ABAB rhyme scheme.",
        [{INS: "Write a sonnet with an ABAB rhyme scheme."}],
    ),
    case("inline_label", "single_instruction", "New instruction: Write a sonnet.", [{INS: "Write a sonnet."}]),
    case(
        "task_based_is_not_a_label",
        "single_instruction",
        "Task-based learning: explain it in two sentences.",
        [{INS: "Task-based learning: explain it in two sentences."}],
    ),
    case("truncated_single", "single_instruction", "Write a sonnet about", [], ["truncated"], "length"),
    case("empty_single", "single_instruction", "", [], ["empty_answer"]),
    # -- JSON instructions ---------------------------------------------------------------------
    case(
        "json_in_fence_with_prose",
        "json_instructions",
        'Here you go:\n```json\n{"instructions": ["Write a poem.", "Name a color."]}\n```\nLet me know!',
        [{INS: "Write a poem."}, {INS: "Name a color."}],
    ),
    case(
        "json_numbered_strings",
        "json_instructions",
        '{\n  "instructions": [\n    "1. Write a haiku about rain",\n    "2) Name a river"\n  ]\n}',
        [{INS: "Write a haiku about rain"}, {INS: "Name a river"}],
    ),
    case("json_bare_list", "json_instructions", '["Write a poem."]', [{INS: "Write a poem."}]),
    case(
        "json_truncated_salvages_complete_items",
        "json_instructions",
        '{"instructions": ["Write a poem.", "Name a col',
        [{INS: "Write a poem."}],
        ["truncated"],
        "length",
    ),
    case(
        "json_wrong_element_types",
        "json_instructions",
        '{"instructions": ["Write a poem.", 3, {"instruction": "Name a color."}, ""]}',
        [{INS: "Write a poem."}, {INS: "Name a color."}],
        ["wrong_json_shape", "empty_item"],
    ),
    case("json_invalid", "json_instructions", "{instructions: [Write a poem.]}", [], ["invalid_json"]),
    case("json_scalar", "json_instructions", "here: 42 and [1", [], ["invalid_json"]),
    case(
        "json_object_without_instruction", "json_instructions", '["a", {"x": 1}]', [{INS: "a"}], ["missing_instruction"]
    ),
    # -- JSON tasks and instances ------------------------------------------------------------------
    case(
        "json_tasks_truncated",
        "json_tasks",
        '{"tasks": [{"instruction": "Sort.", "input": "3,1", "output": "1,3"}, {"instruction": "Sum", "in',
        [{INS: "Sort.", "input": "3,1", "output": "1,3"}],
        ["truncated"],
        "length",
    ),
    case(
        "json_tasks_missing_fields",
        "json_tasks",
        '{"tasks": [{"input": "x", "output": "y"}, {"instruction": "Name a color.", "input": "none"}]}',
        [],
        ["missing_instruction", "missing_output"],
    ),
    case(
        "json_tasks_noinput_marker",
        "json_tasks",
        '{"tasks": [{"instruction": "Name a color.", "input": "<noinput>", "output": "Blue"}]}',
        [{INS: "Name a color.", "input": "", "output": "Blue"}],
    ),
    case(
        "json_instances_single_object",
        "json_instances",
        '{"input": "2+2", "output": "4"}',
        [{"input": "2+2", "output": "4"}],
    ),
    # -- yes / no -------------------------------------------------------------------------------
    case("yes_bold", "yes_no", "**Yes**, it is.", [{"is_classification": True}]),
    case("no_labelled", "yes_no", "Answer: no", [{"is_classification": False}]),
    case("true_means_yes", "yes_no", "True", [{"is_classification": True}]),
    case(
        "sentence_not_classification",
        "yes_no",
        "The task is not a classification task.",
        [{"is_classification": False}],
    ),
    case("sentence_is_classification", "yes_no", "This is a classification task.", [{"is_classification": True}]),
    case("neither", "yes_no", "Maybe, it depends.", [], ["unclear_answer"]),
    case("not_is_not_no", "yes_no", "I think not", [], ["unclear_answer"]),
    case("yes_no_empty", "yes_no", "", [], ["empty_answer"]),
    # -- instances ------------------------------------------------------------------------------
    case(
        "input_first",
        "instances",
        "Example 1\nInput: 100 C\nOutput: 212 F\n\nExample 2\nInput: <noinput>\nOutput: 32 F",
        [{"input": "100 C", "output": "212 F"}, {"input": "", "output": "32 F"}],
    ),
    case(
        "output_first_class_label",
        "instances",
        "Example 1\nClass label: Positive\nInput: Great film.\nExample 2\nClass label: Negative\nInput: Awful.",
        [{"input": "Great film.", "output": "Positive"}, {"input": "Awful.", "output": "Negative"}],
    ),
    case(
        "no_separators_multiline_output",
        "instances",
        "Sure!\nInput: a list\nOutput: line one\nline two\nInput: c\nOutput: d",
        [{"input": "a list", "output": "line one\nline two"}, {"input": "c", "output": "d"}],
    ),
    case(
        "unlabelled_input_after_separator_seen_from_smollm2",
        "instances",
        'Example 1:\n"I ordered a cake and it was lovely."\n\nOutput: Positive\n\nExample 2:\nOutput: Negative',
        [{"input": '"I ordered a cake and it was lovely."', "output": "Positive"}, {"input": "", "output": "Negative"}],
    ),
    case(
        "instances_truncated",
        "instances",
        "Input: a\nOutput: b\nInput: c\nOutput: d",
        [{"input": "a", "output": "b"}],
        ["truncated"],
        "length",
    ),
    case("instance_missing_output", "instances", "Input: a\nOutput:", [], ["missing_output"]),
    case("instances_unlabelled", "instances", "The answer is 42.", [], ["no_items"]),
    # -- alpaca batch ------------------------------------------------------------------------------
    case(
        "alpaca_numbered_fields_truncated",
        "alpaca_batch",
        "###\n1. Instruction: Sort the list.\n1. Input:\n3, 1, 2\n1. Output:\n1, 2, 3\n###\n"
        "2. Instruction: Name a color.\n2. Input: <noinput>\n2. Output: Blue.\n###\n3. Instruction: Write",
        [
            {INS: "Sort the list.", "input": "3, 1, 2", "output": "1, 2, 3"},
            {INS: "Name a color.", "input": "", "output": "Blue."},
        ],
        ["truncated"],
        "length",
    ),
    case(
        "alpaca_no_separators",
        "alpaca_batch",
        "Instruction: Add the numbers.\nInput: 2, 3\nOutput: 5\nInstruction: Name a color.\nInput: x",
        [{INS: "Add the numbers.", "input": "2, 3", "output": "5"}],
        ["missing_output"],
    ),
    case(
        "alpaca_numbered_labels",
        "alpaca_batch",
        "Task 1: Name a planet.\nInput 1: none\nOutput 1: Mars\n\nTask 2: Add 2 and 2.\nOutput 2: 4",
        [{INS: "Name a planet.", "input": "", "output": "Mars"}, {INS: "Add 2 and 2.", "input": "", "output": "4"}],
    ),
    case(
        "alpaca_plural_labels_seen_from_smollm2",
        "alpaca_batch",
        "###\nInstructions: Sentence 1\nBreak it down.\n\n###\nInstructions: Name a fruit.\nOutputs: Apple",
        [{INS: "Name a fruit.", "input": "", "output": "Apple"}],
        ["missing_output"],
    ),
    case("alpaca_missing_instruction", "alpaca_batch", "###\nInput: x\nOutput: y\n###", [], ["missing_instruction"]),
    case(
        "alpaca_markdown_labels",
        "alpaca_batch",
        "### Task 1\n**Instruction:** Name a planet.\n**Input:** None\n**Output:** Mars",
        [{INS: "Name a planet.", "input": "", "output": "Mars"}],
    ),
    # -- response -------------------------------------------------------------------------------
    case(
        "response_label_stripped", "response", "Response: Paris is the capital.", [{"output": "Paris is the capital."}]
    ),
    case(
        "response_kept_verbatim",
        "response",
        "  Step 1: add.\nStep 2: done.\n",
        [{"output": "Step 1: add.\nStep 2: done."}],
    ),
    case("response_truncated", "response", "Paris is the", [], ["truncated"], "length"),
    case("response_empty", "response", "\n", [], ["empty_answer"]),
    # -- a conversation's next user message -------------------------------------------------
    case("user_turn_plain", "user_turn", "Can you give an example?", [{INS: "Can you give an example?"}]),
    case("user_turn_label", "user_turn", "User: Why is that?", [{INS: "Why is that?"}]),
    case("user_turn_bold_label_quoted", "user_turn", '**User:** "And in French?"', [{INS: "And in French?"}]),
    case(
        "user_turn_cut_at_assistant_part",
        "user_turn",
        "What about cats?\nAssistant: Cats are",
        [{INS: "What about cats?"}],
        finish_reason="length",
    ),
    case(
        "user_turn_cut_at_next_user_message",
        "user_turn",
        "Please explain more.\n\nUser: No thanks.",
        [{INS: "Please explain more."}],
    ),
    case("user_turn_truncated", "user_turn", "Could you explain the", [], ["truncated"], "length"),
    case("user_turn_only_assistant_part", "user_turn", "Assistant: Sure, here it is.", [], ["empty_answer"]),
    case("user_turn_empty", "user_turn", "  \n", [], ["empty_answer"]),
]


@pytest.mark.parametrize(("parser", "text", "finish_reason", "items", "reasons"), CASES)
def test_parser_cases(parser, text, finish_reason, items, reasons):
    result = parse(parser, text, finish_reason)
    assert result.items == items
    assert [r.reason for r in result.rejections] == reasons


def test_rejections_keep_the_rejected_text():
    result = parse("instruction_list", "1. Write a poem.\n2. Describe a ca", "length")
    assert result.rejections[0].text == "Describe a ca"
    assert [r.reason for r in result.rejections] == ["truncated"]


def test_a_duplicate_shows_the_fields_its_parser_fills():
    result = parse("instances", "Input: a\nOutput: b\nInput: A\nOutput: B")
    assert [(r.reason, r.text) for r in result.rejections] == [("duplicate_item", "{'input': 'A', 'output': 'B'}")]


def test_unknown_parser_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown parser 'lines'; valid parsers: instruction_list, "):
        get_parser("lines")


# -- properties ----------------------------------------------------------------------------------

FRAGMENTS = st.sampled_from(
    [
        "1. ",
        "2) ",
        "- ",
        "* ",
        "Task 3: ",
        "**",
        "###",
        "Example 1",
        "Input: ",
        "Output: ",
        "Class label: ",
        "Instruction: ",
        "<noinput>",
        "\n",
        "\n\n",
        "```json\n",
        "```",
        "{",
        "}",
        "[",
        "]",
        '"',
        '{"instructions": [',
        '{"tasks": [{"instruction": ',
        '"output": ',
        ", ",
        "Yes",
        "no",
        "Sure! ",
        "Here are the tasks:",
        "\u2022 ",
        "\\",
        "\u201c",
        ":",
    ]
)
MESSY = st.one_of(st.text(), st.lists(st.one_of(FRAGMENTS, st.text(max_size=8)), max_size=40).map("".join))
FINISH = st.sampled_from([None, "stop", "length"])


def _well_formed(name: str, result: ParseResult) -> None:
    assert isinstance(result, ParseResult)
    for item in result.items:
        assert isinstance(item, Item)
        for f in fields(Item):
            key, value = f.name, getattr(item, f.name)
            if key not in KEYS[name]:
                assert value == f.default
            elif key == "is_classification":
                assert isinstance(value, bool)
            else:
                assert isinstance(value, str) and value == value.strip()
                if key in NON_EMPTY:
                    assert value
    for rejection in result.rejections:
        assert rejection.reason in REASONS and isinstance(rejection.text, str)


@pytest.mark.parametrize("name", sorted(PARSERS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=MESSY, finish_reason=FINISH)
def test_no_input_crashes_a_parser_and_output_is_well_formed(name, text, finish_reason):
    result = PARSERS[name](text, finish_reason)
    _well_formed(name, result)
    if not text.strip():
        assert result.items == [] and [r.reason for r in result.rejections] == ["empty_answer"]


def test_a_huge_bracket_soup_stays_fast():
    import time

    text = "[{" * 20000 + '"a"' + "," * 20000
    start = time.perf_counter()
    for name in PARSERS:
        _well_formed(name, PARSERS[name](text, "length"))
    assert time.perf_counter() - start < 5


WORDS = st.from_regex(r"[A-Z][a-z]{2,8}( [a-z]{2,8}){1,6}\.", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(
    instructions=st.lists(WORDS, min_size=1, max_size=10, unique_by=str.lower),
    style=st.sampled_from(["{n}. ", "{n}) ", "- ", "Task {n}: ", "**{n}.** "]),
    preamble=st.sampled_from(["", "Sure! Here are the tasks:\n\n"]),
    truncated=st.booleans(),
)
def test_numbered_list_round_trips(instructions, style, preamble, truncated):
    text = preamble + "\n".join(style.format(n=i + 1) + s for i, s in enumerate(instructions))
    result = parse("instruction_list", text, "length" if truncated else "stop")
    expected = instructions[:-1] if truncated else instructions
    assert [i.instruction for i in result.items] == expected


@settings(max_examples=60, deadline=None)
@given(
    instructions=st.lists(WORDS, min_size=1, max_size=10, unique_by=str.lower),
    prose=st.sampled_from(["", "\nHope this helps!", "\n```", " {not json"]),
    cut=st.integers(min_value=1, max_value=30),
)
def test_json_instructions_round_trip_and_salvage(instructions, prose, cut):
    text = json.dumps({"instructions": instructions}) + prose
    assert [i.instruction for i in parse("json_instructions", text).items] == instructions
    cut_text = text[: max(1, len(text) - len(prose) - cut)]
    salvaged = [i.instruction for i in parse("json_instructions", cut_text, "length").items]
    assert salvaged == instructions[: len(salvaged)]  # a prefix: never invented, never reordered


@settings(max_examples=60, deadline=None)
@given(
    pairs=st.lists(st.tuples(WORDS, WORDS), min_size=1, max_size=6, unique_by=lambda p: p[0].lower()),
    output_first=st.booleans(),
)
def test_instances_round_trip_in_either_order(pairs, output_first):
    blocks = []
    for n, (inp, out) in enumerate(pairs, 1):
        fields = [f"Class label: {out}", f"Input: {inp}"] if output_first else [f"Input: {inp}", f"Output: {out}"]
        blocks.append(f"Example {n}\n" + "\n".join(fields))
    result = parse("instances", "\n\n".join(blocks))
    assert [(i.input, i.output) for i in result.items] == pairs
