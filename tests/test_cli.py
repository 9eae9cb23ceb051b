from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from filters.specs import DecontaminateSpec, PrivacySettings, SemanticDedupSpec
from generator.cli import build_parser, main
from generator.config import ReportConfig


def test_a_user_error_is_one_line_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("engine:\n  concurency: 3\n")
    code = main(["generate", "--config", str(bad)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "unknown key 'engine.concurency'" in err
    assert "Traceback" not in err


def test_bad_set_override_is_explained(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["generate", "--set", "nonsense"])
    assert "expected KEY=VALUE" in capsys.readouterr().err


@pytest.mark.subprocess
def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "instructforge"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("generate", "serve", "model"):
        assert command in out


def test_a_run_dir_of_another_config_is_refused_with_the_flags_that_fix_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "fingerprint.json").write_text('{"model": {"name": "another"}}')
    cfg = tmp_path / "c.yaml"
    # An endpoint nobody listens on: the refusal must come before any server is needed.
    cfg.write_text(f"run_dir: {run_dir}\nserver: {{endpoints: [http://127.0.0.1:9/v1]}}\n")
    code = main(["generate", "--config", str(cfg)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.strip().count("\n") == 0
    assert "holds a run made with another config (" in err and "model.name: 'another' -> 'bundled'" in err
    assert "pass --fresh to start over there, --force to continue anyway" in err


def test_a_missing_endpoint_key_is_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_FOR_TEST", raising=False)
    run_dir = tmp_path / "run"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"run_dir: {run_dir}\nserver: {{endpoints: [http://127.0.0.1:9/v1], api_key_env: NO_SUCH_KEY_FOR_TEST}}\n"
    )
    code = main(["generate", "--config", str(cfg)])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().count("\n") == 0
    assert "server.api_key_env names NO_SUCH_KEY_FOR_TEST, but it is not set" in err
    assert not run_dir.exists()


# Each flag whose value is a spec or config setting, with that setting: the CLI must take its default
# from there (a copy written twice drifts).
MIRRORS: dict[str, tuple[type[BaseModel], str]] = {
    "dedup --threshold": (SemanticDedupSpec, "threshold"),
    "dedup --encoder": (SemanticDedupSpec, "encoder"),
    "dedup --model": (SemanticDedupSpec, "model"),
    "decontaminate --ngram": (DecontaminateSpec, "ngram"),
    "decontaminate --threshold": (DecontaminateSpec, "threshold"),
    "decontaminate --encoder": (DecontaminateSpec, "encoder"),
    "decontaminate --model": (DecontaminateSpec, "model"),
    "dedup --no-report": (ReportConfig, "enabled"),
    "decontaminate --no-report": (ReportConfig, "enabled"),
    "report --sample": (ReportConfig, "sample"),
    "report --examples": (ReportConfig, "examples"),
    "report --gpu-hour-cost": (ReportConfig, "gpu_hour_cost"),
    "audit --max-copied-tokens": (PrivacySettings, "max_copied_tokens"),
    "audit --max-similarity": (PrivacySettings, "max_similarity"),
    "audit --max-attack-auc": (PrivacySettings, "max_attack_auc"),
    "audit --encoder": (PrivacySettings, "encoder"),
    "audit --no-report": (ReportConfig, "enabled"),
}

# Flags with a default of their own, and why no model holds it.
OWN_DEFAULTS = {
    "generate --config": "a built-in config's name",
    "serve --config": "a built-in config's name",
    "templates render --config": "a built-in config's name",
    "merge --config": "a built-in config's name",
    "templates render --num-demonstrations": "preview()'s, for reading (generation.num_demonstrations is the run's)",
    "export --split": "export()'s split",
    "probe --config": "a built-in config's name",
    "probe --seed": "run_probes()'s",
    "audit --out": "the current folder, for privacy.json",
}


def _flags(parser: argparse.ArgumentParser, command: str = "") -> Iterator[tuple[str, argparse.Action]]:
    """`(command --flag, action)` for every option of every subcommand, nested ones included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _flags(sub, f"{command} {name}".strip())
        elif action.option_strings and not isinstance(action, argparse._HelpAction):
            yield f"{command} {max(action.option_strings, key=len)}", action


def test_flag_defaults_are_the_models_defaults() -> None:
    flags = dict(_flags(build_parser()))
    assert set(MIRRORS) <= set(flags), "MIRRORS names a flag the CLI lacks"
    for flag, (model, field) in MIRRORS.items():
        default = model.model_fields[field].default
        assert flags[flag].default == default, (
            f"{flag} defaults to {flags[flag].default!r}, {model.__name__}.{field} to {default!r}"
        )
        help_text = flags[flag].help or ""
        if default is not None and "(default: " in help_text:  # None: the help says what it stands for
            assert f"(default: {default})" in help_text, f"{flag}'s help names another default than {default!r}"


def test_every_flag_default_is_a_models_or_accounted_for() -> None:
    """A new flag with a default must say where it comes from: a model (MIRRORS) or its own (OWN_DEFAULTS)."""
    stray = [
        flag
        for flag, action in _flags(build_parser())
        # on/off switches (store_true: nargs 0) default to off by construction
        if action.default is not None and action.nargs != 0 and flag not in MIRRORS and flag not in OWN_DEFAULTS
    ]
    assert not stray, f"flags with a default from no model: {stray}; add them to MIRRORS (or OWN_DEFAULTS, saying why)"


def test_dedup_help_names_the_pair_checks_floor() -> None:
    flags = dict(_flags(build_parser()))
    assert f"cosine >= {SemanticDedupSpec.model_fields['candidates'].default} " in flags["dedup --no-pair-check"].help


@pytest.mark.parametrize("command", ["dedup", "decontaminate"])
def test_no_report_writes_the_dataset_without_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text(
        '{"instruction": "Name a prime.", "output": "7"}\n{"instruction": "Name a color.", "output": "Red"}\n'
    )
    bench = tmp_path / "bench.jsonl"
    bench.write_text('{"question_id": 1, "turns": ["Write a poem about the sea."]}\n')
    flags = ["--exact-only"] if command == "dedup" else ["--against", str(bench), "--ngram-only"]
    assert main([command, str(data), "-o", str(tmp_path / "out"), *flags, "--no-report"]) == 0
    assert (tmp_path / "out" / "dataset" / "README.md").is_file()
    assert not (tmp_path / "out" / "dataset" / "report.html").exists() and "report:" not in capsys.readouterr().out
