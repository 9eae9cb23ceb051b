from __future__ import annotations

from generator.docs import README, render


def test_readme_reference_sections_match_the_code() -> None:
    text = README.read_text(encoding="utf-8")
    assert render(text) == text, "README.md is stale: run `.venv/bin/python -m generator.docs`"


def test_config_reference_lists_every_setting() -> None:
    text = README.read_text(encoding="utf-8")
    for key in ("`engine.concurrency`", "`server.endpoints`", "`generation.method`", "`filters.records`"):
        assert key in text


def test_readme_template_example_loads_and_renders(tmp_path) -> None:
    """The template-authoring example in the README is a working template for its role."""
    import re

    from generator.prompting.roles import ROLE_VARIABLES
    from generator.prompting.templates import check_variables, load_template, render

    text = README.read_text(encoding="utf-8")
    source = re.search(r"```jinja\n(.*?)```", text, re.DOTALL).group(1)
    path = tmp_path / "my_prompt.jinja"
    path.write_text(source, encoding="utf-8")
    template = load_template(path)
    check_variables(template, ROLE_VARIABLES["instructions"])
    messages = render(template, {"demonstrations": [{"instruction": "Name three rivers."}]})
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "1. Name three rivers." in messages[1]["content"] and "Write 8 new" in messages[1]["content"]


def test_readme_python_api_example_names_real_attributes() -> None:
    """The Python API example uses functions and result fields that exist."""
    import dataclasses
    import re

    import generator
    from generator.run.pipeline import RunResult
    from generator.run.rounds import PoolResult

    text = README.read_text(encoding="utf-8")
    block = text[text.index("## Python API") : text.index("## Writing templates")]
    assert callable(generator.generate) and callable(generator.load_config)
    fields = {f.name for f in dataclasses.fields(RunResult)}
    for name in re.findall(r"result\.(\w+)", block):
        assert name in fields or hasattr(RunResult, name), name
    assert {"rounds", "stop_reason"} <= {f.name for f in dataclasses.fields(PoolResult)}


def test_filter_catalogue_lists_every_filter_with_its_reasons() -> None:
    from filters.registry import FILTERS
    from filters.specs import SPECS

    text = README.read_text(encoding="utf-8")
    catalogue = text[text.index("<!-- BEGIN filter-catalogue -->") : text.index("<!-- END filter-catalogue -->")]
    for name in FILTERS:
        assert f"### `{name}`" in catalogue
        for reason in SPECS[name].reasons:
            assert f"| `{reason}` |" in catalogue
    assert "    - {name: length, min_words: 3, max_words: 150}" in catalogue
