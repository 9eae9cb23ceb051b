from __future__ import annotations

from generator.docs import README, render


def test_readme_reference_sections_match_the_code() -> None:
    text = README.read_text(encoding="utf-8")
    assert render(text) == text, "README.md is stale: run `.venv/bin/python -m generator.docs`"


def test_config_reference_lists_every_setting() -> None:
    text = README.read_text(encoding="utf-8")
    for key in ("`engine.concurrency`", "`server.endpoints`", "`generation.method`", "`filters.records`"):
        assert key in text
