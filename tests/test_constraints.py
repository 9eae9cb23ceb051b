"""The constraint checkers (filters/constraints.py) against answers written to pass and to fail each
type, labelled by hand and, where lm-eval is installed (`pip install -e .[dev]`), against IFEval's
reference implementation (`lm_eval.tasks.ifeval`) on every type both define: agreement must be 100%.

IFEval counts sentences and capital words with NLTK's punkt data, which it downloads at import and
this machine cannot; on those two types the hand labels alone decide (the oracle is asked only when
the data is there)."""

from __future__ import annotations

import json
import random
import sys
from typing import Any

import pytest

from filters.constraints import (
    CONFLICTS,
    CONSTRAINTS,
    ConstraintError,
    ConstraintsFilter,
    check_all,
    conflicts,
    count_sentences,
    draw,
    parse_constraint,
    rng_for,
)
from filters.specs import CONSTRAINT_TYPES, SPECS
from generator.core.records import Record

PROMPT = "Write a short note to a neighbour about a lost cat"
PARAS = "First paragraph here.\n\nSecond one starts here.\n\nThird is last."

# (type, kwargs, answer, follows): at least one answer that follows and one that does not, per type,
# plus the edges each definition draws (a relation's bound, fences, dividers, quotes).
CASES: list[tuple[str, dict[str, Any], str, bool]] = [
    ("number_words", {"num_words": 5, "relation": "at least"}, "One two three four five.", True),
    ("number_words", {"num_words": 5, "relation": "at least"}, "One two three four.", False),
    ("number_words", {"num_words": 5, "relation": "less than"}, "Don't stop now.", True),  # don, t, stop, now
    ("number_words", {"num_words": 4, "relation": "less than"}, "Don't stop now.", False),
    ("number_sentences", {"num_sentences": 3, "relation": "at least"}, "It rains. We stay in! Why not?", True),
    ("number_sentences", {"num_sentences": 3, "relation": "at least"}, "Dr. Smith paid 3.5 dollars. He left.", False),
    ("number_sentences", {"num_sentences": 2, "relation": "less than"}, "Mr. Brown lives in the U.S. today.", True),
    ("number_sentences", {"num_sentences": 2, "relation": "less than"}, "Come. Go.", False),
    ("number_paragraphs", {"num_paragraphs": 2}, "Para one.\n***\nPara two.", True),
    ("number_paragraphs", {"num_paragraphs": 2}, "***\nPara one.\n***\nPara two.\n***", True),
    ("number_paragraphs", {"num_paragraphs": 2}, "Para one.\n***\n***\nPara two.", False),
    ("number_paragraphs", {"num_paragraphs": 3}, "Para one.\n***\nPara two.", False),
    ("nth_paragraph_first_word", {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "second"}, PARAS, True),
    ("nth_paragraph_first_word", {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "third"}, PARAS, False),
    ("nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 1, "first_word": "first"}, PARAS, False),
    (
        "nth_paragraph_first_word",
        {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "summary"},
        'Intro.\n\n"Summary, at last."',
        True,
    ),
    ("keywords_included", {"keywords": ["garden", "Bridge"]}, "The bridge over the GARDEN path.", True),
    ("keywords_included", {"keywords": ["garden", "bridge"]}, "The bridge over the path.", False),
    ("keywords_excluded", {"forbidden_words": ["cat", "dog"]}, "Catalogues of hotdogs.", True),
    ("keywords_excluded", {"forbidden_words": ["cat", "dog"]}, "My Cat sleeps.", False),
    ("keyword_frequency", {"keyword": "river", "frequency": 2, "relation": "at least"}, "River and river.", True),
    ("keyword_frequency", {"keyword": "river", "frequency": 2, "relation": "at least"}, "One river.", False),
    ("keyword_frequency", {"keyword": "river", "frequency": 2, "relation": "less than"}, "One river.", True),
    ("keyword_frequency", {"keyword": "river", "frequency": 2, "relation": "less than"}, "Rivers, rivers.", False),
    ("letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": "less than"}, "Zoo time.", True),
    ("letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": "less than"}, "Zig zag.", False),
    ("letter_frequency", {"letter": "a", "let_frequency": 3, "let_relation": "at least"}, "A banana.", True),
    ("letter_frequency", {"letter": "a", "let_frequency": 3, "let_relation": "at least"}, "A cab.", False),
    ("json_format", {}, '{"answer": [1, 2]}', True),
    ("json_format", {}, '```json\n{"answer": true}\n```', True),
    ("json_format", {}, 'Here it is: {"answer": true}', False),
    ("json_format", {}, '{"answer": tru', False),
    ("number_bullets", {"num_bullets": 2}, "Points:\n* one\n* two", True),
    ("number_bullets", {"num_bullets": 2}, "Points:\n- one\n  - two", True),
    ("number_bullets", {"num_bullets": 2}, "Points:\n* one\n* two\n* three", False),
    ("number_bullets", {"num_bullets": 2}, "**Bold** line\n* one", False),
    ("title", {}, "<<A Cat Lost>>\nDear neighbour...", True),
    ("title", {}, "<<  >>\nDear neighbour...", False),
    ("title", {}, "<A Cat Lost>\nDear neighbour...", False),
    ("multiple_sections", {"section_spliter": "Section", "num_sections": 2}, "Section 1\nHi.\nSection 2\nBye.", True),
    ("multiple_sections", {"section_spliter": "SECTION", "num_sections": 3}, "SECTION 1\nHi.\nSECTION 2\nBye.", False),
    ("multiple_sections", {"section_spliter": "Section", "num_sections": 2}, "Section one\nSection two", False),
    ("postscript", {"postscript_marker": "P.S."}, "Thanks.\n\nP.S. Bring milk.", True),
    ("postscript", {"postscript_marker": "P.S."}, "Thanks.\n\nPS Bring milk.", False),
    ("postscript", {"postscript_marker": "P.P.S"}, "Thanks.\nP.S. one\nP.P.S two", True),
    ("postscript", {"postscript_marker": "P.P.S"}, "Thanks.\nP.S. one", False),
    ("end_phrase", {"end_phrase": "Hope this helps."}, "Do this.\nHope this helps.", True),
    ("end_phrase", {"end_phrase": "Hope this helps."}, '"Do this. hope this helps."', True),
    ("end_phrase", {"end_phrase": "Hope this helps."}, "Hope this helps. Bye.", False),
    ("no_comma", {}, "No commas here at all.", True),
    ("no_comma", {}, "Well, here is one.", False),
    ("lowercase", {}, "this whole answer is written in lower case english words.", True),
    ("lowercase", {}, "This answer starts with a capital letter in english words.", False),
    ("uppercase", {}, "THIS WHOLE ANSWER IS WRITTEN IN CAPITAL LETTERS, IN ENGLISH.", True),
    ("uppercase", {}, "THIS WHOLE ANSWER IS WRITTEN IN CAPITAL LETTERS, except here.", False),
    ("capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"}, "It is VERY BIG.", True),
    ("capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"}, "It is Very BIG.", False),
    ("capital_word_frequency", {"capital_frequency": 2, "capital_relation": "less than"}, "It is Very BIG.", True),
    ("capital_word_frequency", {"capital_frequency": 2, "capital_relation": "less than"}, "NASA and ESA.", False),
    ("quotation", {}, '"The whole answer is quoted."', True),
    ("quotation", {}, '  "Quoted, with spaces around."\n', True),
    ("quotation", {}, '"Only the start is quoted.', False),
    ("quotation", {}, '"', False),
    ("placeholders", {"num_placeholders": 2}, "Dear [name], meet me at [address].", True),
    ("placeholders", {"num_placeholders": 2}, "Dear [name], meet me at home.", False),
    ("highlighted_sections", {"num_highlights": 2}, "A *first* point and a **second** one.", True),
    ("highlighted_sections", {"num_highlights": 2}, "A *first* point and a ** ** one.", False),
    ("highlighted_sections", {"num_highlights": 1}, "Nothing highlighted.", False),
    ("two_responses", {}, "Answer one.\n******\nAnswer two.", True),
    ("two_responses", {}, "Same.\n******\nSame.", False),
    ("two_responses", {}, "One.\n******\n******\nTwo.", False),
    ("two_responses", {}, "Only one answer.", False),
    ("repeat_prompt", {"prompt_to_repeat": PROMPT}, PROMPT.upper() + "\nDear neighbour, ...", True),
    ("repeat_prompt", {"prompt_to_repeat": PROMPT}, "Sure! " + PROMPT, False),
    (
        "response_language",
        {"language": "fr"},
        "Bonjour, je vous écris parce que notre chat a disparu hier soir près du jardin.",
        True,
    ),
    (
        "response_language",
        {"language": "fr"},
        "Hello, I am writing because our cat went missing last night near the garden.",
        False,
    ),
    (
        "response_language",
        {"language": "de"},
        "Hallo, ich schreibe Ihnen, weil unsere Katze gestern Abend verschwunden ist.",
        True,
    ),
]


def _ifeval() -> Any:
    """lm-eval's IFEval registry, loaded without its NLTK download (no network here), or None."""
    try:
        import nltk
    except ImportError:
        return None
    download, nltk.download = nltk.download, lambda *a, **k: False
    try:
        from lm_eval.tasks.ifeval import instructions_registry
    except ImportError:
        return None
    finally:
        nltk.download = download
    return instructions_registry


def _punkt() -> bool:
    import nltk

    try:
        nltk.data.find("tokenizers/punkt")
        nltk.data.find("tokenizers/punkt_tab")
    except LookupError:
        return False
    return True


NEEDS_PUNKT = {"number_sentences", "capital_word_frequency"}


@pytest.fixture(scope="module")
def ifeval() -> Any:
    """The reference, imported once for the module's tests that use it (NLTK takes seconds)."""
    registry = _ifeval()
    if registry is None:
        pytest.skip("lm-eval (the IFEval reference) is not installed: pip install -e .[dev]")
    return registry


def _oracle(registry: Any, kind: str, kwargs: dict[str, Any], answer: str) -> bool:
    ifeval_id = CONSTRAINTS[kind].ifeval
    inst = registry.INSTRUCTION_DICT[ifeval_id](ifeval_id)
    inst.build_description(**kwargs)
    return bool(inst.check_following(answer))


@pytest.mark.parametrize(("kind", "kwargs", "answer", "follows"), CASES, ids=[f"{c[0]}-{c[3]}" for c in CASES])
def test_checker_on_hand_labelled_answers(kind: str, kwargs: dict, answer: str, follows: bool) -> None:
    assert check_all([{"type": kind, "kwargs": kwargs}], answer) == {kind: follows}


def test_every_type_has_an_answer_that_passes_and_one_that_fails() -> None:
    labels = {(kind, follows) for kind, _, _, follows in CASES}
    missing = [(k, f) for k in CONSTRAINTS for f in (True, False) if (k, f) not in labels]
    assert not missing
    assert len(CONSTRAINTS) >= 20


def test_agreement_with_ifeval_reference_is_total(ifeval: Any) -> None:
    """Every case of every type IFEval defines, ours against lm-eval's: 100% agreement, and the
    reference agrees with the hand label too (so a case cannot pass by both being wrong)."""
    asked = [c for c in CASES if c[0] not in NEEDS_PUNKT or _punkt()]
    disagree = []
    for kind, kwargs, answer, follows in asked:
        ours = check_all([{"type": kind, "kwargs": kwargs}], answer)[kind]
        theirs = _oracle(ifeval, kind, kwargs, answer)
        if not ours == theirs == follows:
            disagree.append((kind, answer, ours, theirs, follows))
    assert not disagree
    compared = {c[0] for c in asked}
    assert compared >= set(CONSTRAINTS) - NEEDS_PUNKT
    print(f"agreement {len(asked)}/{len(asked)} answers, {len(compared)} types", file=sys.stderr)


def test_every_type_names_an_ifeval_instruction_and_its_conflicts_are_declared(ifeval: Any) -> None:
    """Our ids map to IFEval's; where IFEval declares two of them in conflict, so do we."""
    ours = conflicts()
    by_ifeval = {cls.ifeval: name for name, cls in CONSTRAINTS.items()}
    assert set(by_ifeval) <= set(ifeval.INSTRUCTION_DICT)
    missing = [
        (by_ifeval[a], by_ifeval[b])
        for a, others in ifeval.INSTRUCTION_CONFLICTS.items()
        for b in others
        if a in by_ifeval and b in by_ifeval and by_ifeval[b] not in ours[by_ifeval[a]]
    ]
    assert not missing


def test_conflicts_are_symmetric_and_name_known_types() -> None:
    clash = conflicts()
    for name, others in CONFLICTS.items():
        assert name in CONSTRAINTS and others <= set(CONSTRAINTS)
    assert all(a in clash[b] for a in clash for b in clash[a])


def test_spec_lists_every_type_and_a_reason_for_each() -> None:
    assert tuple(CONSTRAINTS) == CONSTRAINT_TYPES
    assert set(SPECS["constraints"].reasons) == {f"constraint_{t}" for t in CONSTRAINTS} | {"constraint_invalid"}


@pytest.mark.parametrize("seed", range(40))
def test_draw_gives_non_conflicting_constraints_that_read_as_sentences(seed: int) -> None:
    rng = random.Random(seed)
    drawn = draw(list(CONSTRAINTS), 3, rng, PROMPT)
    clash = conflicts()
    names = [n for n, _ in drawn]
    assert 1 <= len(drawn) <= 3 and len(set(names)) == len(names)
    assert not any(b in clash[a] for a in names for b in names if a != b)
    for name, constraint in drawn:
        text = constraint.wording(rng)
        assert text[0].isupper() and "{" not in text, text
        # The kwargs round-trip through meta (JSON) to the same checker.
        entry = json.loads(json.dumps({"type": name, "kwargs": constraint.model_dump()}))
        assert parse_constraint(entry) == (name, constraint)


def test_same_keys_draw_the_same_constraints() -> None:
    first = draw(list(CONSTRAINTS), 3, rng_for("task", "42"), PROMPT)
    again = draw(list(CONSTRAINTS), 3, rng_for("task", "42"), PROMPT)
    assert first == again


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ({"type": "rhyme", "kwargs": {}}, "unknown constraint 'rhyme'"),
        ({"type": "number_words", "kwargs": {"num_words": 5, "relation": "about"}}, "relation"),
        ({"type": "number_words", "kwargs": {"num_words": 5}}, "relation: Field required"),
        ({"type": "no_comma", "kwargs": {"extra": 1}}, "extra"),
        ({"type": "response_language", "kwargs": {"language": "kn"}}, "lingua knows"),
    ],
)
def test_bad_entries_are_refused_with_the_key(entry: dict, match: str) -> None:
    with pytest.raises(ConstraintError, match=match):
        parse_constraint(entry)


def test_filter_drops_per_type_and_counts_every_check() -> None:
    meta = {
        "constraints": [
            {"type": "no_comma", "kwargs": {}},
            {"type": "number_words", "kwargs": {"num_words": 3, "relation": "at least"}},
        ]
    }
    records = [
        Record("Say hi.", "", "Hello there my friend.", meta=meta),
        Record("Say hi.", "", "Hi, you.", meta=meta),
        Record("Say hi.", "", "Hi.", meta=meta),
        Record("Say hi.", "", "Hi, you."),  # no constraints: kept
        Record("Say hi.", "", "Hi.", meta={"constraints": [{"type": "rhyme"}]}),
    ]
    flt = ConstraintsFilter()
    verdicts = flt.judge(records)
    assert [v.reason for v in verdicts] == [
        "",
        "constraint_no_comma",
        "constraint_number_words",
        "",
        "constraint_invalid",
    ]
    assert verdicts[1].detail["failed"] == ["no_comma", "number_words"]
    assert flt.pass_rates() == {
        "checked": 3,
        "passed": 1,
        "types": {"no_comma": {"checked": 3, "passed": 2}, "number_words": {"checked": 3, "passed": 1}},
    }


def test_sentence_count_edges() -> None:
    assert count_sentences("") == 0
    assert count_sentences("No end mark") == 1
    assert count_sentences("Wait... what? Yes!") == 3
    assert count_sentences("Prices rose 2.5% in the U.S. last year, e.g. rent.") == 1


def test_a_letter_is_any_one_character_counted_in_any_case() -> None:
    # IFEval's data asks for "#" and "!" (its reference then draws a random letter instead).
    hashes = {"type": "letter_frequency", "kwargs": {"letter": "#", "let_frequency": 2, "let_relation": "at least"}}
    assert check_all([hashes], "#one #two") == {"letter_frequency": True}
    assert check_all([hashes], "#one") == {"letter_frequency": False}
    upper = {"type": "letter_frequency", "kwargs": {"letter": "A", "let_frequency": 2, "let_relation": "at least"}}
    assert check_all([upper], "a cAt") == {"letter_frequency": True}
    with pytest.raises(ConstraintError, match="letter"):
        parse_constraint({"type": "letter_frequency", "kwargs": {**upper["kwargs"], "letter": "ab"}})
