"""The import rules of the design: one direction, and a small core both packages share.

- `generator/core/` imports nothing else from the project;
- `filters/` imports only `filters` and `generator.core` (never the run, the engine or the CLI);
- `generator/llm/` (the model side) does not import the run, prompting or publishing;
- `generator/prompting/` and `generator/publish/` do not import the run;
- `generator/report/` does not import the run or the CLI (the run and the CLI call it); it may use
  the filters' embedder (`filters.embed`), as dedup does;
- `generator/config.py` reads filter specs only (`filters.specs`), never filter implementations, and
  the method registry (`generator.methods`: each method declares its config section);
- `generator/methods/` (one module per generation method) imports the core and, for types and
  Magpie's chat template, prompting and the model loader, and the documents reader
  (`generator.documents`): never the run, so a method receives what it uses;
- `generator/documents/` (reading and chunking the user's documents) imports only the core;
- the store and `llm/requests.py` hold plain data: no HTTP client module (the store counts costs
  with `run/cost.py`, plain counters that name the budget's config for type checking only).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    """Every project module a file imports, at any depth (lazy imports inside functions count)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.split(".")[0] in ("generator", "filters")}


def _files(pattern: str) -> list[Path]:
    return sorted(ROOT.glob(pattern))


RULES = [
    ("generator/core/*.py", lambda m: m.startswith("generator.core") or m == "generator"),
    ("filters/*.py", lambda m: m.startswith(("filters", "generator.core"))),
    ("generator/llm/*.py", lambda m: m.startswith(("generator.core", "generator.llm", "generator.config"))),
    (
        "generator/prompting/*.py",
        lambda m: m.startswith(("generator.core", "generator.prompting", "generator.config", "generator.methods")),
    ),
    (
        "generator/methods/*.py",
        lambda m: (
            m.startswith(
                (
                    "generator.core",
                    "generator.methods",
                    "generator.prompting",
                    "generator.llm.model",
                    "generator.documents",
                    "generator.evolution",
                )
            )
            or m == "generator.llm"
        ),
    ),
    ("generator/documents/*.py", lambda m: m.startswith(("generator.core", "generator.documents"))),
    (
        "generator/publish/*.py",
        lambda m: (
            m.startswith(
                ("generator.core", "generator.publish", "generator.config", "generator.llm.model", "filters.base")
            )
            or m == "generator"
            or m == "generator.__version__"
        ),
    ),
    (
        "generator/report/*.py",
        lambda m: (
            m.startswith(
                (
                    "generator.core",
                    "generator.report",
                    "generator.config",
                    "generator.publish",
                    "generator.prompting",
                    "filters.embed",
                )
            )
            or m in ("generator", "generator.__version__", "generator.llm.server", "generator.llm.server.has_gpu")
        ),
    ),
    (
        "generator/config.py",
        lambda m: (
            m.startswith(("generator.core", "filters.specs", "generator.methods.registry")) or m == "generator.config"
        ),
    ),
    (
        "generator/run/store.py",
        lambda m: m.startswith(("generator.core", "generator.llm.requests", "generator.run.cost")),
    ),
    (
        "generator/run/cost.py",
        lambda m: m.startswith("generator.core") or m in ("generator.config", "generator.config.BudgetConfig"),
    ),
    ("generator/llm/requests.py", lambda m: False),
]


@pytest.mark.parametrize(("pattern", "allowed"), RULES, ids=[r[0] for r in RULES])
def test_imports_follow_the_layers(pattern: str, allowed) -> None:
    files = _files(pattern)
    assert files, f"no file matches {pattern}"
    wrong = sorted(
        f"{f.relative_to(ROOT)} imports {m}"
        for f in files
        for m in _imports(f)
        if not allowed(m) and not m.startswith(f"{f.relative_to(ROOT).with_suffix('')}".replace("/", "."))
    )
    assert not wrong, "\n".join(wrong)


def test_the_rule_checker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("def f():\n    from generator.run.pipeline import generate\n")
    assert "generator.run.pipeline" in _imports(bad)
