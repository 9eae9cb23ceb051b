"""Rule-based filters: each case names the record and the reason it must get ("" = kept)."""

from __future__ import annotations

import ast
import inspect
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from filters.base import Filter, FilterContext
from filters.registry import FILTERS, build_chain
from filters.specs import LINGUA_CODES, SPECS, parse_specs
from generator.core.errors import ConfigError
from generator.core.records import Record

LONG_OK = (
    "Photosynthesis turns light into chemical energy. Plants take in carbon dioxide through "
    "their leaves and water through their roots. Inside the chloroplasts, chlorophyll absorbs "
    "light, which splits water and releases oxygen. The energy is stored in molecules that "
    "later drive the Calvin cycle, where carbon is fixed into sugars that feed the plant and, "
    "through food chains, almost every other living thing on Earth."
)


def R(
    instruction: str = "Explain how photosynthesis works in plants.",
    input: str = "",
    output: str = "Plants turn light, water and carbon dioxide into sugar and oxygen.",
    **meta,
) -> Record:
    return Record(instruction, input, output, meta)


def build(spec: dict[str, Any]) -> Filter:
    """The filter a config entry describes, validated as the config validates it."""
    [flt] = build_chain(parse_specs([spec], where="filters.records"))
    return flt


def verdict_reason(flt: Filter, record: Record) -> str:
    [v] = flt.judge([record])
    assert v.keep == (v.reason == ""), v
    assert v.keep or v.reason in SPECS[flt.name].reasons, f"{flt.name} reported undeclared {v.reason!r}"
    return v.reason


CASES = [
    # length
    ("length", {}, R("Sort this."), "too_short"),
    ("length", {"max_words": 5}, R("Explain in detail how the immune system fights a virus."), "too_long"),
    ("length", {}, R(), ""),
    # blocklist
    ("blocklist", {}, R("Describe the image above in two sentences."), "blocked_keyword"),
    ("blocklist", {}, R("Go to the website and summarize its news."), "blocked_keyword"),
    ("blocklist", {}, R("Summarize the plot of Hamlet in three sentences."), ""),
    ("blocklist", {}, R("Write a Python function that reads a CSV file."), ""),
    ("blocklist", {}, R("Explain why an imagery exercise helps athletes."), ""),  # whole words only
    ("blocklist", {"words": ["poem"]}, R("Write a poem about the sea."), "blocked_keyword"),
    ("blocklist", {"extra_words": ["web page"]}, R("Summarize this web page for me."), "blocked_keyword"),
    # instruction_form
    ("instruction_form", {}, R("- Explain how photosynthesis works."), "starts_with_punctuation"),
    ("instruction_form", {}, R("¿Cómo funciona la fotosíntesis?"), "starts_with_punctuation"),
    ("instruction_form", {}, R("Ébauche un plan pour la semaine."), "starts_non_ascii"),
    ("instruction_form", {"ascii_start": False}, R("Ébauche un plan pour la semaine."), ""),
    ("instruction_form", {}, R("Explain how photosynthesis works and"), "fragment"),
    ("instruction_form", {}, R("Write a story about the"), "fragment"),
    ("instruction_form", {}, R("List the planets (from the sun outwards"), "fragment"),
    ("instruction_form", {}, R("12345 678"), "fragment"),
    ("instruction_form", {}, R("Sort the following numbers:"), ""),
    ("instruction_form", {}, R("What is a closure used for?"), ""),
    # instance
    ("instance", {}, R(output="   "), "empty_output"),
    ("instance", {"min_output_chars": 10}, R(output="Yes."), "empty_output"),
    ("instance", {}, R("Fix the grammar.", input="He go to school.", output="he go to school"), "output_equals_input"),
    ("instance", {}, R(output="Explain how photosynthesis works in plants"), "restates_instruction"),
    ("instance", {}, R("Fix the grammar.", input="He go to school.", output="He goes to school."), ""),
    ("instance", {}, R("Classify the review as positive or negative.", input="Loved it!", output="Positive"), ""),
    # truncated
    ("truncated", {}, R(finish_reason="length"), "truncated"),
    ("truncated", {}, R(finish_reason="stop"), ""),
    ("truncated", {}, R(), ""),
    # repetition
    ("repetition", {}, R(output="The answer is: " + "and then the model said " * 6 + "and th"), "degenerate_loop"),
    ("repetition", {}, R(output="Sure! " + "ha" * 30), "degenerate_loop"),
    ("repetition", {}, R(output="Section one\n" + "-" * 60), ""),  # separators are not loops
    ("repetition", {}, R(output="Plants are green. " * 3 + "They need light."), ""),  # too short to loop
    (
        "repetition",
        {},
        R(output="\n".join(["Water the plants every morning before work."] * 4 + [LONG_OK])),
        "repeated_lines",
    ),
    ("repetition", {}, R(output=LONG_OK + " " + LONG_OK[:200] + " Finally, plants grow."), "duplicate_ngrams"),
    ("repetition", {}, R(output=" ".join(f"the cat sat on mat number {i}." for i in range(10))), "repeated_ngrams"),
    ("repetition", {}, R(output=LONG_OK), ""),
    ("repetition", {"fields": ["instruction"]}, R(output="and then " * 20), ""),
    # refusal
    ("refusal", {}, R(output="I'm sorry, but I cannot help with that."), "refusal"),
    ("refusal", {}, R(output="I’m sorry, I can’t do that."), "refusal"),  # typographic apostrophe
    ("refusal", {}, R(output="Hmm. I cannot answer questions about the future."), "refusal"),
    ("refusal", {}, R(output="Photosynthesis is a process. As an AI language model, I think..."), "ai_boilerplate"),
    ("refusal", {}, R(output="Great question! My knowledge cutoff prevents me from knowing that."), "ai_boilerplate"),
    ("refusal", {}, R(output="If I cannot find the key, the function returns None."), ""),
    ("refusal", {}, R(output="An AI model such as a decision tree splits data on features."), ""),
    ("refusal", {}, R(output="As an AI researcher, she studied computer vision."), ""),
    ("refusal", {}, R(output="Photosynthesis... As an AI, I find it fascinating."), "ai_boilerplate"),
    ("refusal", {"extra_refusals": ["no can do"]}, R(output="No can do, friend."), "refusal"),
]


@pytest.mark.parametrize(
    ("name", "params", "record", "reason"), CASES, ids=[f"{c[0]}-{c[3] or 'kept'}-{i}" for i, c in enumerate(CASES)]
)
def test_filter_reasons(name: str, params: dict, record: Record, reason: str) -> None:
    assert verdict_reason(build({"name": name, **params}), record) == reason


# Each bad parameter is refused by the filter's spec (filters/specs.py), the one place filter
# parameters are checked: the message names the key as a config writes it.
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "length", "min_words": 10, "max_words": 5}, r"': min_words 10 is above max_words 5"),
        ({"name": "length", "min_words": -1}, r"\.min_words': Input should be greater than or equal to 0"),
        ({"name": "blocklist", "words": [" "]}, r"': need at least one non-empty word"),
        ({"name": "instance", "min_output_chars": 0}, r"\.min_output_chars': .*greater than or equal to 1 \(got 0\)"),
        (
            {"name": "repetition", "fields": ["title"]},
            r"\.fields\[0\]': Input should be 'instruction', 'input' or 'output' \(got 'title'\)",
        ),
        ({"name": "repetition", "fields": []}, r"\.fields': List should have at least 1 item"),
        ({"name": "repetition", "fields": ["output", "output"]}, r"\.fields': lists output more than once"),
        ({"name": "repetition", "ngram_scale": 0}, r"\.ngram_scale': Input should be greater than 0 \(got 0\)"),
        ({"name": "repetition", "loop_repeats": 1}, r"\.loop_repeats': .*greater than or equal to 2 \(got 1\)"),
        (
            {"name": "refusal", "extra_refusals": ["(unclosed"]},
            r"\.extra_refusals': '\(unclosed' is not a valid regular expression",
        ),
        ({"name": "language", "languages": ["english"]}, r"\.languages': has 'english', not an ISO 639-1 code"),
        ({"name": "language", "candidates": ["xx"]}, r"\.candidates': has 'xx', not an ISO 639-1 code"),
        ({"name": "language", "min_chars": 50, "max_chars": 10}, r"': min_chars 50 is above max_chars 10"),
        ({"name": "pii", "action": "mask"}, r"\.action': Input should be 'drop' or 'redact' \(got 'mask'\)"),
        ({"name": "pii", "kinds": ["dna"]}, r"\.kinds\[0\]': Input should be 'email', 'phone', .*\(got 'dna'\)"),
        ({"name": "pii", "kinds": []}, r"\.kinds': List should have at least 1 item"),
        ({"name": "pii", "phone_region": "XX"}, r"\.phone_region': 'XX' is not a region phonenumbers knows"),
    ],
    ids=[
        "length-bounds",
        "length-negative",
        "blocklist-empty",
        "instance-min",
        "repetition-field",
        "repetition-no-fields",
        "repetition-field-twice",
        "repetition-scale",
        "repetition-loop",
        "refusal-regex",
        "language-code",
        "language-candidate",
        "language-chars",
        "pii-action",
        "pii-kind",
        "pii-no-kinds",
        "pii-region",
    ],
)
def test_bad_parameters_name_the_value(spec: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^key 'filters\.records\[0\]" + message):
        parse_specs([spec], where="filters.records")


def test_unknown_parameter_lists_valid_ones() -> None:
    with pytest.raises(
        ConfigError,
        match=r"'repetition' has no parameter 'min_chars'; valid parameters: "
        r"fields, min_words",
    ):
        parse_specs([{"name": "repetition", "min_chars": 3}], where="filters.records")


def test_every_filter_has_one_spec_of_its_name() -> None:
    assert list(SPECS) == list(FILTERS)
    assert all(cls.name == name for name, cls in FILTERS.items())


# Constructor parameters a config cannot give: Python objects, and what the registry passes to a
# filter that reads files (`spec.reads_files`): the config file's folder and the filter's key.
PYTHON_ONLY = {"embedder", "texts", "base_dir", "where", "cheap"}  # cheap: a test's stand-in first-pass encoder


@pytest.mark.parametrize("name", list(FILTERS))
def test_spec_matches_the_constructor(name: str) -> None:
    """The spec's parameters are the constructor's, with the same defaults: a filter built from
    Python behaves as one built from a config that leaves them out."""
    params = {
        n: p
        for n, p in inspect.signature(FILTERS[name].__init__).parameters.items()
        if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    fields = {n: f for n, f in SPECS[name].model_fields.items() if n != "name"}
    assert set(params) - PYTHON_ONLY == set(fields)
    for n, field in fields.items():
        if field.is_required():
            continue
        assert field.default == params[n].default, (
            f"{name}.{n}: spec {field.default!r}, constructor {params[n].default!r}"
        )


def _emitted_reasons(cls: type) -> tuple[set[str], list[str]]:
    """The reason literals a filter class passes to drop() or DedupDrop(), and the patterns of the
    f-strings it passes (pii_{kind})."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    literals, patterns = set(), []
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("drop", "DedupDrop")
            and node.args
        ):
            continue
        arg = node.args[0] if node.func.id == "drop" else node.args[1]
        if isinstance(arg, ast.Constant):
            literals.add(arg.value)
        elif isinstance(arg, ast.JoinedStr):
            patterns.append(
                "".join(re.escape(part.value) if isinstance(part, ast.Constant) else r"\w+" for part in arg.values)
            )
    return literals, patterns


@pytest.mark.parametrize("name", list(FILTERS))
def test_every_reason_a_filter_reports_is_declared(name: str) -> None:
    literals, patterns = _emitted_reasons(FILTERS[name])
    declared = SPECS[name].reasons
    assert literals or patterns, f"{name}: found no drop() in its source"
    assert literals <= set(declared), f"{name} reports undeclared {sorted(literals - set(declared))}"
    for pattern in patterns:
        assert any(re.fullmatch(pattern, r) for r in declared), f"{name}: nothing declared matches {pattern}"
    assert set(declared) <= literals | {r for r in declared if any(re.fullmatch(p, r) for p in patterns)}, (
        f"{name} declares reasons it never reports"
    )


def test_lingua_codes_are_lingua_s() -> None:
    from lingua import IsoCode639_1, Language

    assert LINGUA_CODES == {lang.iso_code_639_1.name.lower() for lang in Language.all()}
    assert all(hasattr(IsoCode639_1, code.upper()) for code in LINGUA_CODES)


# Filters that cannot work without being told what to compare against.
REQUIRED = {
    "decontaminate": {"references": [str(Path(__file__).parent / "data" / "reference_prompts.jsonl")]},
    "schema": {"json_schema": {"type": "object"}},
}


def test_every_registered_filter_builds_with_defaults() -> None:
    for name, cls in FILTERS.items():
        flt = build({"name": name, **REQUIRED.get(name, {})})
        assert isinstance(flt, cls) and flt.name == name


FRENCH = R(
    "Explique la différence entre un virus et une bactérie en quelques phrases.",
    output="Un virus a besoin d'une cellule hôte pour se reproduire, une bactérie non.",
)
LANG_CASES = [
    (FRENCH, ["en"], "wrong_language"),
    (FRENCH, ["en", "fr"], ""),
    (
        R(
            "Erkläre den Unterschied zwischen einem Virus und einem Bakterium.",
            output="Ein Virus braucht eine Wirtszelle, um sich zu vermehren; ein Bakterium nicht.",
        ),
        ["en"],
        "wrong_language",
    ),
    (R(), ["en"], ""),
    (R("Name three fruits.", output="1, 2, 3"), ["de"], ""),  # under min_chars letters: kept
]


@pytest.mark.parametrize(
    ("record", "languages", "reason"),
    LANG_CASES,
    ids=["fr-not-en", "fr-allowed", "de-not-en", "en-ok", "too-short-to-tell"],
)
def test_language(record: Record, languages: list[str], reason: str) -> None:
    assert verdict_reason(build({"name": "language", "languages": languages}), record) == reason


def test_language_reports_detected_code() -> None:
    flt = build({"name": "language", "candidates": ["en", "fr", "de"]})
    [v] = flt.judge([FRENCH])
    assert (v.reason, v.detail) == ("wrong_language", {"language": "fr"})


def test_language_scores_what_it_keeps() -> None:
    english = R("Explain the difference between a virus and a bacterium in a few sentences.", output="")
    [kept, short] = build({"name": "language"}).judge([english, R("Name three fruits.", output="1, 2, 3")])
    assert kept.keep and 0.5 < kept.scores["language_confidence"] <= 1.0
    assert short.keep and short.scores == {}  # too few letters to tell: no score
    [fr] = build({"name": "language", "languages": ["en", "fr"]}).judge([FRENCH])
    assert fr.keep and fr.scores["language_confidence"] > 0.5


def test_language_replays_from_its_state_without_the_detector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What was detected is kept in the run's state: a resumed run's replay gives the same verdicts
    and loads no detector; a new text does, and another detector setting does not share the file."""
    import filters.language as language

    english = R("Explain the difference between a virus and a bacterium in a few sentences.", output="")
    first = build({"name": "language"})
    first.setup(FilterContext(state_dir=tmp_path))
    verdicts = first.judge([english, FRENCH])
    first.close()
    [memo] = tmp_path.glob("language-*.json")

    built: list[object] = []
    real = language.LanguageFilter._build
    monkeypatch.setattr(language.LanguageFilter, "_build", lambda self: built.append(self) or real(self))
    again = build({"name": "language"})
    again.setup(FilterContext(state_dir=tmp_path))
    assert again.judge([english, FRENCH]) == verdicts and not built
    assert again.judge([R("Describe how rain forms over the ocean in three sentences.", output="")])[0].keep
    assert len(built) == 1
    again.close()
    assert len(json.loads(memo.read_text())) == 3

    low = build({"name": "language", "high_accuracy": False})
    low.setup(FilterContext(state_dir=tmp_path))
    low.judge([english])
    low.close()
    assert len(list(tmp_path.glob("language-*.json"))) == 2


def test_language_accuracy_modes_on_a_short_text() -> None:
    text = R("To convert Celsius to Fahrenheit, multiply by nine fifths and add thirty-two.", output="")
    assert verdict_reason(build({"name": "language"}), text) == ""
    # lingua's low-accuracy (trigram-only) mode calls this plain English sentence German.
    assert verdict_reason(build({"name": "language", "high_accuracy": False}), text) == "wrong_language"


def test_configured_languages_join_the_candidates() -> None:
    record = R("Eleza jinsi mvua inavyonyesha.", output="Mvua hunyesha wakati mawingu yanapojaa maji mengi.")
    only_en = build({"name": "language", "languages": ["en"], "candidates": ["en", "id", "sw"]})
    assert verdict_reason(only_en, record) == "wrong_language"
    assert verdict_reason(build({"name": "language", "languages": ["sw"]}), record) == ""


def test_verdict_detail_says_what_matched() -> None:
    [v] = build({"name": "blocklist"}).judge([R("Draw a map of the city.")])
    assert v.detail == {"keyword": "draw"}
    [v] = build({"name": "repetition"}).judge([R(output="Sure. " + "again and again " * 8)])
    assert v.reason == "degenerate_loop" and v.detail["field"] == "output"
    assert sorted(v.detail["unit"].split()) == ["again", "again", "and"]  # one copy of the unit
