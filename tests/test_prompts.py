"""Prompt templates: loading, checking and rendering, with the errors a user sees."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import pytest

from generator.cli import main
from generator.core.errors import ConfigError
from generator.prompting.parse import PARSERS
from generator.prompting.templates import (
    FILTER_PRODUCES,
    TemplateMeta,
    check_variables,
    list_templates,
    load_template,
    render,
    template_from_string,
)

BAD = Path(__file__).parent / "data" / "templates"

EXPECTED_BUILTINS = {
    "self_instruct",
    "self_instruct_json",
    "classify",
    "instance_input_first",
    "instance_input_first_json",
    "instance_output_first",
    "alpaca_batch",
    "alpaca_batch_json",
    "evol_deepen",
    "evol_broaden",
    "custom",
    "custom_json",
    "response",
}
FILTER_PROMPTS = {"judge", "judge_faithfulness", "dedup_judge"}


@dataclass
class Seed:
    """Shaped like generator.prompting.seeds.SeedTask: the instance lives in `instances`."""

    instruction: str
    instances: list[dict[str, str]]


DEMOS = [
    Seed("Write a haiku about rain.", [{"input": "", "output": "Soft rain on tin roofs"}]),
    {"instruction": "Sort the numbers in ascending order.", "input": "3, 1, 2", "output": "1, 2, 3"},
]
VALUES = {
    "demonstrations": DEMOS,
    "instruction": "Classify the email as spam or not spam.",
    "topic": "household budgeting",
    "persona": "a night-shift nurse",
    "difficulty": "expert",
    "directive": "include a leap-year date",
    "input": "Win a free cruise now!!!",
}


def test_every_builtin_loads_with_consistent_metadata():
    templates = {t.name: t for t in list_templates()}
    assert EXPECTED_BUILTINS | FILTER_PROMPTS <= set(templates)
    for t in templates.values():
        assert t.meta.produces in get_args(TemplateMeta.model_fields["produces"].annotation)
        assert set(t.meta.variables) == t.variables
        if t.meta.produces in FILTER_PRODUCES:  # the filter reads the answer: no parser, no schema
            assert t.name in FILTER_PROMPTS and t.meta.parser is None and t.meta.json_schema is None
            continue
        assert t.meta.parser in PARSERS
        # JSON templates must pair a schema with a JSON parser, and list templates must not.
        assert (t.meta.json_schema is not None) == t.meta.parser.startswith("json_"), t.name


@pytest.mark.parametrize("name", sorted(EXPECTED_BUILTINS))
def test_every_builtin_renders_system_then_user(name):
    t = load_template(name)
    messages = render(t, {k: VALUES[k] for k in t.required})
    assert [m["role"] for m in messages] == ["system", "user"]
    for m in messages:
        assert m["content"] == m["content"].strip() and m["content"]
        assert "{{" not in m["content"] and "{%" not in m["content"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("self_instruct", {"demonstrations"}),
        ("classify", {"instruction"}),
        ("response", {"instruction"}),
        ("custom", {"topic", "persona", "difficulty"}),
        ("evol_deepen", {"instruction"}),
        ("alpaca_batch", {"demonstrations"}),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_required_variables_are_derived_from_the_source(name, expected):
    assert load_template(name).required == expected


def test_self_instruct_numbers_demonstrations_from_seeds_and_pool_alike():
    user = render(load_template("self_instruct"), {"demonstrations": DEMOS, "num_instructions": 3})[1]
    assert "1. Write a haiku about rain.\n2. Sort the numbers in ascending order." in user["content"]
    assert "Write 3 new tasks" in user["content"]


def test_alpaca_batch_takes_the_first_instance_of_a_seed_and_input_of_a_record():
    user = render(load_template("alpaca_batch"), {"demonstrations": DEMOS})[1]["content"]
    assert "Instruction: Write a haiku about rain.\nInput: <noinput>\nOutput: Soft rain on tin roofs" in user
    assert "Input: 3, 1, 2\nOutput: 1, 2, 3" in user


def test_alpaca_batch_json_writes_unescaped_json_in_field_order():
    demo = {"instruction": "Say <hi> & 'bye'", "input": "", "output": "ok"}
    user = render(load_template("alpaca_batch_json"), {"demonstrations": [demo]})[1]["content"]
    assert '{"instruction": "Say <hi> & \'bye\'", "input": "", "output": "ok"}' in user


def test_response_user_turn_matches_the_record_layout():
    from generator.core.records import user_content

    msgs = render(load_template("response"), {"instruction": "Translate to French.", "input": "Good night"})
    assert msgs[1]["content"] == user_content("Translate to French.", "Good night")
    msgs = render(load_template("response"), {"instruction": "Name a prime."})
    assert msgs[1]["content"] == "Name a prime."


def test_custom_leaves_out_empty_directive_and_demonstrations():
    user = render(load_template("custom"), {"topic": "tax", "persona": "a farmer", "difficulty": "easy"})[1]
    assert "Special requirement" not in user["content"] and "Examples of the style" not in user["content"]


def test_json_template_gives_an_openai_response_format():
    t = load_template("self_instruct_json")
    rf = t.response_format
    assert rf["type"] == "json_schema" and rf["json_schema"]["name"] == "self_instruct_json"
    assert rf["json_schema"]["schema"]["required"] == ["instructions"]
    assert load_template("self_instruct").response_format is None


def test_sampling_only_lists_what_the_template_sets():
    assert load_template("classify").sampling == {"temperature": 0.0, "max_tokens": 8}


def test_load_by_name_with_suffix_and_by_path():
    by_name = load_template("classify.jinja")
    assert load_template(str(by_name.path)).source == by_name.source


def test_user_template_by_path_with_top_level_macro_renders_user_only():
    t = load_template(BAD / "only_user.jinja")
    assert t.variables == {"name"}
    assert render(t, {"name": "Ada"}) == [{"role": "user", "content": "Hello, Ada!"}]


@pytest.mark.parametrize(
    ("file", "match"),
    [
        ("syntax_error.jinja", r"syntax_error\.jinja:8: template syntax error: .*\(in: Write about"),
        ("bad_yaml.jinja", r"bad_yaml\.jinja:\d: template metadata is not valid YAML"),
        ("no_metadata.jinja", r"no_metadata\.jinja:1: the template has no metadata; start it with"),
        ("unknown_parser.jinja", r"unknown parser 'bullet_points'; valid parsers: instruction_list"),
        ("unknown_key.jinja", r"unknown key 'temprature'"),
        (
            "undocumented_variable.jinja",
            r"used but not listed under 'variables': audience; listed under 'variables' but never used: persona",
        ),
        ("text_outside_blocks.jinja", r"text_outside_blocks\.jinja:7: text outside the 'system' and 'user'"),
        ("unknown_block.jinja", r"unknown block 'assistant'"),
    ],
    ids=lambda v: v.removesuffix(".jinja") if v.endswith(".jinja") else None,
)
def test_bad_templates_fail_at_load_naming_file_and_problem(file, match):
    with pytest.raises(ConfigError, match=match):
        load_template(BAD / file)


def test_bad_yaml_points_at_the_broken_line():
    with pytest.raises(ConfigError, match=r"bad_yaml\.jinja:[45]:"):
        load_template(BAD / "bad_yaml.jinja")


def test_unknown_name_lists_the_builtins():
    with pytest.raises(ConfigError, match=r"template not found: 'self_instrct'.*self_instruct, self_instruct_json"):
        load_template("self_instrct")


def test_missing_variables_are_all_listed_before_rendering():
    t = load_template("custom")
    with pytest.raises(
        ConfigError,
        match=r"not given: difficulty \(.*\); persona \(.*\); topic \(.*\)\. "
        r"Given: directive\.",
    ):
        check_variables(t, {"directive": "x"})
    with pytest.raises(ConfigError, match="difficulty"):
        render(t, {"topic": "tax", "persona": "a farmer"})


def test_defaults_fill_optional_variables_and_can_be_overridden():
    t = load_template("self_instruct")
    check_variables(t, {"demonstrations"})
    assert "Write 8 new tasks" in render(t, {"demonstrations": DEMOS})[1]["content"]
    assert "Write 2 new tasks" in render(t, {"demonstrations": DEMOS, "num_instructions": 2})[1]["content"]


def test_sandbox_blocks_unsafe_attribute_access():
    with pytest.raises(ConfigError, match=r"unsafe access blocked by the sandbox"):
        render(load_template(BAD / "unsafe.jinja"), {"instruction": "x"})


def test_strict_undefined_stops_a_missing_attribute():
    with pytest.raises(ConfigError, match=r"rendering failed: .*has no attribute 'instruction'"):
        render(load_template("self_instruct"), {"demonstrations": [{"text": "no instruction key"}]})


def test_unknown_evol_operation_fails_loudly():
    with pytest.raises(ConfigError, match=r"rendering failed: .*'shorten'"):
        render(load_template("evol_deepen"), {"instruction": "Sort a list.", "operation": "shorten"})


def test_empty_user_message_is_an_error():
    src = (
        "{#---\ndescription: d\nproduces: response\nparser: response\nvariables: {x: y}\n---#}\n"
        "{% block user %}{{ x }}{% endblock %}"
    )
    with pytest.raises(ConfigError, match="rendered an empty user message"):
        render(template_from_string(src), {"x": "  "})


# -- CLI --------------------------------------------------------------------------------------


def test_cli_templates_list_names_every_builtin(capsys):
    assert main(["templates", "list"]) == 0
    out = capsys.readouterr().out
    for name in EXPECTED_BUILTINS:
        assert f"\n{name} " in "\n" + out


def test_cli_templates_show_prints_metadata_and_source(capsys):
    assert main(["templates", "show", "classify"]) == 0
    out = capsys.readouterr().out
    assert "parser:      yes_no" in out and "instruction (required)" in out and "{% block user %}" in out


def test_cli_templates_render_json_is_the_request_body(capsys):
    assert main(["templates", "render", "evol_broaden", "--json", "--var", "instruction=Sort: 3, 1, 2"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["messages"] == render(load_template("evol_broaden"), {"instruction": "Sort: 3, 1, 2"})
    assert body["max_tokens"] == 256 and "response_format" not in body


def test_cli_templates_render_missing_variable_exits_2(capsys):
    assert main(["templates", "render", "classify"]) == 2
    assert "needs variables that were not given: instruction" in capsys.readouterr().err


def test_cli_templates_render_with_builtin_seeds(capsys):
    pytest.importorskip("generator.prompting.seeds")
    assert main(["templates", "render", "self_instruct", "--seeds", "builtin", "--num-demonstrations", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("--- system ---\n") and "\n--- user ---\nHere are 3 example tasks:\n\n" in out
    demos = out.split("example tasks:\n\n")[1].split("\n\n")[0].splitlines()
    assert [d[:3] for d in demos] == ["1. ", "2. ", "3. "]


def test_a_template_without_a_user_block_is_rejected():
    src = (
        "{#---\ndescription: d\nproduces: response\nparser: response\n---#}\n{% block system %}Be brief.{% endblock %}"
    )
    with pytest.raises(ConfigError, match=r"mine\.jinja: no 'user' block; wrap the prompt in"):
        template_from_string(src, path="mine.jinja")


def test_a_filter_prompt_cannot_play_a_generation_role() -> None:
    from generator.config import parse_config
    from generator.core.errors import ConfigError
    from generator.prompting.roles import load_templates

    config = parse_config({"generation": {"templates": {"response": "judge"}}})
    with pytest.raises(ConfigError, match=r"generation.templates.response: 'judge' is a filter's prompt.*'response'"):
        load_templates(config)
