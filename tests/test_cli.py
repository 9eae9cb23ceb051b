from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from generator.cli import main


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
