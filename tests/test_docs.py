from __future__ import annotations

from generator.docs import README, render


def test_readme_reference_sections_match_the_code() -> None:
    text = README.read_text(encoding="utf-8")
    assert render(text) == text, "README.md is stale: run `.venv/bin/python -m generator.docs`"


def test_config_reference_lists_every_setting() -> None:
    text = README.read_text(encoding="utf-8")
    for key in ("`engine.concurrency`", "`server.endpoints`", "`generation.method`", "`filters.records`"):
        assert key in text


def test_filter_catalogue_lists_every_filter_with_its_reasons() -> None:
    from filters.registry import FILTERS
    from filters.specs import SPECS

    text = README.read_text(encoding="utf-8")
    catalogue = text[text.index("<!-- BEGIN filter-catalogue -->"):text.index("<!-- END filter-catalogue -->")]
    for name in FILTERS:
        assert f"### `{name}`" in catalogue
        for reason in SPECS[name].reasons:
            assert f"| `{reason}` |" in catalogue
    assert "    - {name: length, min_words: 3, max_words: 150}" in catalogue
