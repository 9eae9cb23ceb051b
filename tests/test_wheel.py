"""A non-editable install (a built wheel) carries the built-in prompts, seeds and configs, and the
dedup pair check's lexicon and weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.subprocess

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_lists_and_uses_builtin_templates_and_configs(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(ROOT)],
        check=True,
        capture_output=True,
    )
    [wheel] = (tmp_path / "dist").glob("instructforge-*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    probe = (
        "from generator.core.paths import builtin_dir\n"
        "from generator.prompting.templates import list_templates\n"
        "from generator.prompting.seeds import load_seeds\n"
        "from generator.config import load_config\n"
        "print(builtin_dir('prompts'))\n"
        "print(len(list_templates()), len(load_seeds('builtin')), load_config('default.yaml').run_dir)\n"
        "from filters.pairs import PairCheck, lexicon, LEXICON\n"
        "print(LEXICON, PairCheck.fitted('st:all-MiniLM-L6-v2'), lexicon().opposite('ascending', 'descending'))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, check=True, capture_output=True, text=True
    ).stdout.splitlines()
    assert out[0] == str(target / "generator" / "_data" / "prompts")
    templates, seeds, run_dir = out[1].split()
    assert int(templates) >= 10 and int(seeds) >= 150 and run_dir == "runs/default"
    assert out[2] == f"{target / 'filters' / 'data' / 'wordnet.json.gz'} True True"
