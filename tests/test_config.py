from __future__ import annotations

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
        ("filters:\n  instructions:\n    - name: lenght\n", r"unknown filter 'lenght'; valid filters: .*length"),
        ("filters:\n  records:\n    - name: length\n      min_word: 2\n",
         r"filter 'length' has no parameter 'min_word'; valid parameters: min_words, max_words"),
        ("filters:\n  instructions:\n    - {min_words: 2}\n", r"each filter needs a 'name'"),
    ],
    ids=["unknown-key", "wrong-type", "out-of-range", "top-p", "bad-choice", "not-a-mapping",
         "bad-yaml", "unknown-filter", "unknown-filter-param", "filter-without-name"],
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
