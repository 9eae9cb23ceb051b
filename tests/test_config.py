from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from generator.config import load_config, parse_config
from generator.core.errors import ConfigError
from generator.core.paths import builtin_dir


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("engine:\n  concurency: 8\n", r"cfg\.yaml: unknown key 'engine\.concurency'"),
        ("engine:\n  concurrency: many\n", r"key 'engine\.concurrency': .*integer.*'many'"),
        ("engine:\n  concurrency: 0\n", r"key 'engine\.concurrency': .*greater than or equal to 1"),
        ("sampling:\n  top_p: 2\n", r"key 'sampling\.top_p'"),
        ("server:\n  device: tpu\n", r"key 'server\.device': .*'auto', 'cpu' or 'gpu'"),
        ("[1, 2]\n", r"expected a mapping of settings, got list"),
        ("model: {name: [unclosed\n", r"not valid YAML"),
        (
            "filters:\n  instructions:\n    - name: lenght\n",
            r"key 'filters\.instructions\[0\]\.name': unknown name 'lenght'; valid: .*length",
        ),
        (
            "filters:\n  records:\n    - name: length\n      min_word: 2\n",
            r"filter 'length' has no parameter 'min_word'; valid parameters: min_words, max_words",
        ),
        ("filters:\n  instructions:\n    - {min_words: 2}\n", r"key 'filters\.instructions\[0\]': missing key 'name'"),
    ],
    ids=[
        "unknown-key",
        "wrong-type",
        "out-of-range",
        "top-p",
        "bad-choice",
        "not-a-mapping",
        "bad-yaml",
        "unknown-filter",
        "unknown-filter-param",
        "filter-without-name",
    ],
)
def test_config_errors_name_file_and_key(tmp_path: Path, yaml_text: str, message: str) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message):
        load_config(cfg)


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_non_utf8_config_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "latin1.yaml"
    cfg.write_bytes("run_dir: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        load_config(cfg)


@pytest.mark.parametrize("name", sorted(p.name for p in builtin_dir("configs").glob("*.yaml")))
def test_every_builtin_config_loads(name: str) -> None:
    config = load_config(name)
    assert config.base_dir == builtin_dir("configs")


def test_overrides_and_relative_paths(tmp_path: Path) -> None:
    cfg = tmp_path / "sub" / "c.yaml"
    cfg.parent.mkdir()
    cfg.write_text("generation:\n  seeds: my_seeds.jsonl\n")
    config = load_config(cfg, overrides={"engine.concurrency": 7})
    assert config.engine.concurrency == 7
    assert config.resolve(config.generation.seeds) == tmp_path / "sub" / "my_seeds.jsonl"


def test_empty_config_gives_defaults() -> None:
    config = parse_config(None)
    assert config.model.name == "bundled"
    assert config.server.endpoints == []


TWO_FILTERS = "filters:\n  instructions:\n    - {name: length}\n    - {name: blocklist}\n"


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (
            "filters:\n  records:\n    - {name: length, min_words: 10, max_words: 5}\n",
            r"key 'filters\.records\[0\]': min_words 10 is above max_words 5",
        ),
        (
            "filters:\n  records:\n    - {name: length, min_words: three}\n",
            r"key 'filters\.records\[0\]\.min_words': Input should be a valid integer.*\(got 'three'\)",
        ),
        (
            "filters:\n  records:\n    - {name: repetition, min_chars: 3}\n",
            r"key 'filters\.records\[0\]': filter 'repetition' has no parameter 'min_chars'; valid parameters: "
            r"fields, min_words, loop_repeats",
        ),
        (
            TWO_FILTERS + "    - {name: lenght}\n",
            r"key 'filters\.instructions\[2\]\.name': unknown name 'lenght'; valid: length, blocklist, "
            r"instruction_form, .*, decontaminate",
        ),
        (
            TWO_FILTERS + "    - {name: pii, fields: [instruction, title]}\n",
            r"key 'filters\.instructions\[2\]\.fields\[1\]': Input should be 'instruction', 'input' or 'output' "
            r"\(got 'title'\)",
        ),
    ],
    ids=["min-above-max", "not-a-number", "unknown-parameter", "unknown-filter", "bad-field"],
)
def test_bad_filter_specs_name_file_and_key(tmp_path: Path, yaml_text: str, message: str) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ConfigError, match=rf"^{tmp_path}/cfg\.yaml: {message}"):
        load_config(cfg)


# The default chains as config.py wrote them before filter specs were typed: a run directory made
# then holds this in its fingerprint, and resuming it must still match.
OLD_DEFAULT_FILTERS = {
    "instructions": [
        {"name": "length", "min_words": 3, "max_words": 150},
        {"name": "blocklist"},
        {"name": "instruction_form"},
        {"name": "repetition", "fields": ["instruction"]},
        {"name": "pii", "action": "drop", "fields": ["instruction"]},
        {"name": "language", "fields": ["instruction"]},
        {"name": "exact_dedup"},
        {"name": "semantic_dedup"},
    ],
    "records": [
        {"name": "truncated"},
        {"name": "instance"},
        {"name": "repetition"},
        {"name": "refusal"},
        {"name": "pii", "action": "redact"},
        {"name": "language"},
    ],
    "write_rejected": True,
}


def test_default_fingerprint_is_unchanged() -> None:
    from generator.run.pipeline import fingerprint
    from generator.run.store import fingerprint_changes

    fp = fingerprint(parse_config(None))
    assert "filters" not in fp.settings  # the default chains are left out, as every default
    assert json.dumps(fp.defaults["filters"]) == json.dumps(OLD_DEFAULT_FILTERS)
    assert fingerprint_changes({"filters": OLD_DEFAULT_FILTERS}, fp.settings, fp.defaults) == []


def test_a_filter_spec_dumps_as_written() -> None:
    from generator.run.pipeline import fingerprint

    written = [
        {"on_error": "keep", "name": "judge", "threshold": 4},
        {"name": "semantic_dedup", "judge_band": [0.8, 0.95], "pair_check": False},
    ]
    config = parse_config({"filters": {"records": written}})
    assert config.filters.records[0].threshold == 4.0 and config.filters.records[0].max_tokens == 64
    # Not every default, not 4.0 for 4, and the keys in the order written.
    assert json.dumps(fingerprint(config).settings["filters"]["records"]) == json.dumps(written)


@pytest.mark.subprocess
def test_loading_a_config_imports_no_filter() -> None:
    code = (
        "import sys\nimport generator.config, generator.cli\n"
        "generator.config.parse_config({'filters': {'records': [{'name': 'pii'}, {'name': 'judge'}]}})\n"
        # SciPy and dp-accounting (Private Evolution's): 1.2-1.6 s of every command's start when
        # the method's module loaded them.
        "heavy = ('phonenumbers', 'stdnum', 'faiss', 'torch', 'lingua', 'filters.pii', 'filters.dedup', 'scipy',\n"
        "    'dp_accounting', 'datasets', 'sentence_transformers')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.strip() == "[]", out.stdout
