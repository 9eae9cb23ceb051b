"""Generation methods as modules: the registry, what each method declares, what it asks for, and
fingerprints that survive a new method or setting (run directories made before still resume)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI
from fake_run import ECHO_CHAINS, fake_settings

from generator.config import GenerationConfig, load_config, parse_config
from generator.core.errors import ConfigError
from generator.core.readers import read_records
from generator.methods.base import Ask
from generator.methods.registry import METHODS, STAGE_ROLES, all_roles
from generator.prompting.roles import load_templates
from generator.prompting.seeds import load_seeds
from generator.prompting.templates import render
from generator.run.context import fingerprint, open_method
from generator.run.store import ForeignRun, RunStore

ROOT = Path(__file__).resolve().parents[1]
FINGERPRINTS = Path(__file__).parent / "data" / "fingerprints"


@pytest.mark.parametrize("name", list(METHODS))
def test_each_method_declares_what_a_run_and_the_docs_need(name: str) -> None:
    method = METHODS[name]
    assert method.name == name and method.summary
    config = load_config(ROOT / "configs" / method.example)  # its example config loads and uses it
    assert config.generation.method == name
    if method.section is not None:  # its section is a setting of `generation`, typed by its model
        assert GenerationConfig.model_fields[method.section].annotation is method.config
        assert isinstance(getattr(config.generation, method.section), method.config)
    templates = load_templates(config)  # each role's built-in template loads and takes its variables
    for role, spec in method.roles.items():
        assert templates[role].name == spec.default and templates[role].meta.parser is not None


def test_role_names_are_unique_across_methods_and_stages() -> None:
    names = [role for m in METHODS.values() for role in m.roles] + list(STAGE_ROLES)
    assert len(names) == len(set(names)) == len(all_roles())


def test_an_unknown_method_names_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"generation.method.*'self_instruct'.*'paraphrase'.*\(got 'nope'\)"):
        parse_config({"generation": {"method": "nope"}})


# Magpie: tests/test_magpie.py; documents (it needs documents): tests/test_documents_method.py;
# private_evolution (it needs private records and an evolution): tests/test_private_evolution.py
@pytest.mark.parametrize("name", [n for n in METHODS if n not in ("magpie", "documents", "private_evolution")])
def test_each_method_asks_the_same_renderable_requests_every_time(name: str) -> None:
    config = parse_config({"generation": {"method": name, "instructions_per_prompt": 3, "requests_per_round": 4}})
    seeds, templates = load_seeds("builtin"), load_templates(config)
    asks = [open_method(config, seeds, templates).asks([], 0, 10) for _ in range(2)]
    assert asks[0] == asks[1] and len(asks[0]) == 4
    for ask in asks[0]:
        assert isinstance(ask, Ask) and ask.template is not None
        assert ask.template.name in {templates[role].name for role in METHODS[name].roles}
        messages = render(ask.template, ask.variables)  # every variable the template reads is given
        assert messages[-1]["role"] == "user" and ask.meta["stage"] == "instructions"


def test_paraphrase_takes_the_styles_in_turn_and_names_its_seed() -> None:
    styles = ["like a pirate", "in one word", "politely"]
    config = parse_config({"generation": {"method": "paraphrase", "paraphrase": {"styles": styles}}})
    seeds, templates = load_seeds("builtin"), load_templates(config)
    asks = open_method(config, seeds, templates).asks([], 0, 24)
    assert [a.variables["style"] for a in asks[:4]] == [*styles, styles[0]]
    by_id = {s.id: s.instruction for s in seeds}
    for ask in asks:
        assert by_id[ask.meta["seed_ids"][0]] == ask.variables["instruction"]
        assert ask.variables["style"] in render(ask.template, ask.variables)[-1]["content"]


def test_a_method_run_end_to_end_carries_its_lineage(tmp_path: Path, fake: FakeOpenAI) -> None:
    from generator.run.pipeline import generate

    data = fake_settings(
        tmp_path / "run",
        fake.url,
        generation={"method": "paraphrase", "num_instructions": 6, "instances": "response", "max_rounds": 3},
        filters=ECHO_CHAINS,
        report={"enabled": False},
    )
    result = generate(parse_config(data), progress=False)
    rows = read_records([result.dataset_dir])
    assert rows and all(r.meta.get("paraphrase_style") for r in rows)
    assert {r.meta["template"] for r in rows} == {"paraphrase"}


# --- fingerprints ------------------------------------------------------------------------------------


def test_settings_at_their_defaults_stay_out_of_the_fingerprint() -> None:
    assert fingerprint(parse_config({})).settings == {}
    fp = fingerprint(parse_config({"generation": {"num_demonstrations": 4}, "sampling": {"temperature": 0.2}}))
    assert fp.settings == {"generation": {"num_demonstrations": 4}, "sampling": {"temperature": 0.2}}
    # Another method's section and roles decide nothing, even when set.
    other = parse_config({"generation": {"custom": {"topics": ["tax"]}, "templates": {"custom": "x.jinja"}}})
    assert fingerprint(other).settings == {}


@pytest.mark.parametrize("path", sorted(FINGERPRINTS.glob("*.json")), ids=lambda p: p.stem)
def test_a_run_directory_written_before_methods_were_modules_resumes(tmp_path: Path, path: Path) -> None:
    """Each file is the fingerprint.json that the code of 2026-12-06 (before this change: every key,
    at its default or not) wrote for `configs/<name>.yaml`."""
    (tmp_path / "fingerprint.json").write_text(path.read_text())
    (tmp_path / "results.jsonl").write_text("")
    config = load_config(ROOT / "configs" / f"{path.stem}.yaml")
    with RunStore(tmp_path, fingerprint(config)):
        pass  # not refused
    changed = config.model_copy(update={"sampling": config.sampling.model_copy(update={"temperature": 0.01})})
    (tmp_path / "fingerprint.json").write_text(path.read_text())
    with pytest.raises(ForeignRun, match=r"sampling.temperature: 0\.\d+ -> 0\.01"):
        RunStore(tmp_path, fingerprint(changed))


def test_the_stored_fingerprint_holds_only_what_differs(tmp_path: Path) -> None:
    config = parse_config({"generation": {"method": "custom", "custom": {"topics": ["tax"]}}})
    with RunStore(tmp_path, fingerprint(config)):
        pass
    stored = json.loads((tmp_path / "fingerprint.json").read_text())
    assert stored == {"generation": {"method": "custom", "custom": {"topics": ["tax"]}}}
